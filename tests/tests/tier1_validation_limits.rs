//! Tier 1: each limit of the config at its edge (accepted) and one past it (refused, naming the
//! field), and each cross-field rule on a value that passes it beside one that breaks it.
use lb_userspace::model::config::Config;
use tests::config::BASE;

/// Replacements in the base, and the field the error must name (None: accepted by
/// `validate_runnable`). Each limit is tried at its edge (accepted) and one past it
/// (refused), and each rule on a value that passes it beside one that breaks it.
type Limit = (
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

const LIMITS: &[Limit] = &[
    // [lbd]: names at their longest, with every allowed punctuation
    (
        &[("instance = \"edge1\"", "instance = \"edge-1_xxxxxxxxxxxxxxxxxxxxxxxxx\"")],
        None,
    ),
    (
        &[("instance = \"edge1\"", "instance = \"edge-1_xxxxxxxxxxxxxxxxxxxxxxxxxy\"")],
        Some("lbd.instance"),
    ),
    (
        &[("\"eth2\"]", "\"veth-pool_abcde\"]")],
        None,
    ),
    (
        &[("\"eth2\"]", "\"veth-pool_abcdef\"]")],
        Some("lbd.interfaces[1]"),
    ),
    (
        &[("drain_timeout_s = 300", "drain_timeout_s = 300\nread_group = \"lb-ops_ggggggggggggggggggggggggg\"")],
        None,
    ),
    (
        &[("drain_timeout_s = 300", "drain_timeout_s = 300\nread_group = \"lb-ops_gggggggggggggggggggggggggg\"")],
        Some("lbd.read_group"),
    ),
    (
        &[("drain_timeout_s = 300", "drain_timeout_s = 300\nread_group = \"\"")],
        Some("lbd.read_group"),
    ),
    (
        &[("drain_timeout_s = 300", "drain_timeout_s = 300\nread_group = \"lb/ops\"")],
        Some("lbd.read_group"),
    ),
    (&[("drain_timeout_s = 300", "drain_timeout_s = 86400")], None),
    // the per-interface hook names a listed interface
    (
        &[("drain_timeout_s = 300", "drain_timeout_s = 300\n[lbd.attach_per_interface]\neth2 = \"tc\"")],
        None,
    ),
    (
        &[("drain_timeout_s = 300", "drain_timeout_s = 300\n[lbd.attach_per_interface]\neth3 = \"tc\"")],
        Some("lbd.attach_per_interface.eth3"),
    ),
    // ring memory: the base's rings (4093 and the default 65537) need 139260 slots
    (&[("drain_timeout_s = 300", "drain_timeout_s = 300\nring_slots = 139260")], None),
    (
        &[("drain_timeout_s = 300", "drain_timeout_s = 300\nring_slots = 139258")],
        Some("lbd.ring_slots"),
    ),
    // ... and with small rings, the slots' own range: even, two buffers of 65537 at least
    (
        &[
            ("drain_timeout_s = 300", "drain_timeout_s = 300\nring_slots = 131074"),
            ("port = 443\n", "port = 443\nring_size = 1021\n"),
        ],
        None,
    ),
    (
        &[
            ("drain_timeout_s = 300", "drain_timeout_s = 300\nring_slots = 131072"),
            ("port = 443\n", "port = 443\nring_size = 1021\n"),
        ],
        Some("lbd.ring_slots"),
    ),
    (
        &[
            ("drain_timeout_s = 300", "drain_timeout_s = 300\nring_slots = 131075"),
            ("port = 443\n", "port = 443\nring_size = 1021\n"),
        ],
        Some("lbd.ring_slots"),
    ),
    (&[("slow_start_s = 10", "slow_start_s = 3600")], None),
    // health: a check may take its whole interval
    (&[("timeout_ms = 1000", "timeout_ms = 2000")], None),
    (&[("weight = 2", "weight = 65535")], None),
    // dsr does not rewrite ports: a backend serves on the VIP's
    (&[("port = 80\n", "port = 8080\nmode = \"dsr\"\n")], None),
    (
        &[("port = 80\n", "port = 80\nmode = \"dsr\"\n")],
        Some("vip[0].backend[0].port"),
    ),
    // pools: min = max, max at its limit and at its network's room
    (&[("min = 1", "min = 4")], None),
    (&[("max = 4", "max = 64")], None),
    (
        &[("network = \"10.201.0.0/24\"", "network = \"10.201.0.0/28\"")],
        None,
    ),
    // a dsr pool of netns VMs serves on the VIP's port
    (&[("port = 443\n", "port = 443\nmode = \"dsr\"\n")], None),
    (
        &[
            ("port = 443\n", "port = 443\nmode = \"dsr\"\n"),
            ("memory_mb = 128", "memory_mb = 128\nport = 8443"),
        ],
        Some("vip[1].pool.port"),
    ),
    // a docker pool is nat only
    (
        &[
            ("provider = \"netns\"", "provider = \"docker\""),
            ("network = \"10.201.0.0/24\"", "network = \"10.201.0.0/24\"\n[vip.pool.docker]\nimage = \"xlb-backend\""),
        ],
        None,
    ),
    (
        &[
            ("port = 443\n", "port = 443\nmode = \"dsr\"\n"),
            ("provider = \"netns\"", "provider = \"docker\""),
            ("network = \"10.201.0.0/24\"", "network = \"10.201.0.0/24\"\n[vip.pool.docker]\nimage = \"xlb-backend\""),
        ],
        Some("vip[1].pool.provider"),
    ),
    // a static pool lists max addresses of the VIP's family
    (
        &[(
            "provider = \"netns\"",
            "provider = \"static\"\naddrs = [\"10.0.0.3\", \"10.0.0.4\", \"10.0.0.5\", \"10.0.0.6\"]",
        )],
        None,
    ),
    (
        &[(
            "provider = \"netns\"",
            "provider = \"static\"\naddrs = [\"10.0.0.3\", \"10.0.0.4\", \"10.0.0.5\"]",
        )],
        Some("vip[1].pool.addrs"),
    ),
    (
        &[(
            "provider = \"netns\"",
            "provider = \"static\"\naddrs = [\"10.0.0.3\", \"10.0.0.4\", \"10.0.0.5\", \"2001:db8::6\"]",
        )],
        Some("vip[1].pool.addrs"),
    ),
];

#[test]
fn each_limit_holds_at_its_edge_and_not_past_it() {
    for (edits, refused) in LIMITS {
        let mut text = BASE.to_string();
        for (from, to) in *edits {
            assert_eq!(text.matches(from).count(), 1, "{from:?} is not unique");
            text = text.replacen(from, to, 1);
        }
        let verdict = Config::parse(&text).and_then(|c| c.validate_runnable());
        match (verdict, refused) {
            (Ok(()), None) => {}
            (Ok(()), Some(field)) => panic!("{edits:?} (for {field}) was accepted"),
            (Err(e), None) => panic!("{edits:?} is at the edge, yet refused: {e}"),
            (Err(e), Some(field)) => assert!(
                e.to_string().starts_with(&format!("{field}:")),
                "{edits:?}: {e} does not name {field}"
            ),
        }
    }
}

#[test]
fn at_most_max_vips_vips() {
    let doc = |n: u32| {
        let mut text = "[lbd]\ninterfaces = [\"eth1\"]\nring_slots = 1048576\n".to_string();
        for i in 0..n {
            text += &format!(
                "[[vip]]\nname = \"v{i}\"\naddr = \"192.0.2.10\"\nport = {}\nproto = \"udp\"\nring_size = 1021\n",
                i + 1
            );
        }
        Config::parse(&text)
    };
    doc(lb_common::MAX_VIPS).expect("MAX_VIPS VIPs");
    let e = doc(lb_common::MAX_VIPS + 1).expect_err("one more");
    assert!(e.to_string().starts_with("vip:"), "{e}");
}

#[test]
fn long_names_paths_and_backend_counts_hold_at_their_limits() {
    let check = |from: &str, to: String| {
        Config::parse(&BASE.replacen(from, &to, 1)).map_err(|e| e.to_string())
    };
    let name = |n: usize| format!("name = \"{}\"", &"w-_.".repeat(17)[..n]);
    check("name = \"web\"", name(64)).expect("a name of 64");
    let e = check("name = \"web\"", name(65)).expect_err("a name of 65");
    assert!(e.starts_with("vip[0].name:"), "{e}");
    let path = |n: usize| format!("path = \"/{}\"", "p".repeat(n - 1));
    check("path = \"/\"", path(1024)).expect("a path of 1024 bytes");
    let e = check("path = \"/\"", path(1025)).expect_err("a path of 1025");
    assert!(e.starts_with("vip[0].health.path:"), "{e}");
    // The data path numbers backends 1..MAX_BACKENDS: one fewer than it has ids.
    let backends = |n: u32| {
        (0..n)
            .map(|i| {
                format!(
                    "[[vip.backend]]\naddr = \"10.1.{}.{}\"\nport = 8080\n",
                    i / 250,
                    i % 250 + 1
                )
            })
            .collect::<String>()
    };
    let most = lb_common::MAX_BACKENDS - 1;
    check(
        "weight = 2\n",
        format!("weight = 2\n{}", backends(most - 1)),
    )
    .expect("MAX_BACKENDS - 1");
    let e = check("weight = 2\n", format!("weight = 2\n{}", backends(most))).expect_err("one more");
    assert!(e.starts_with("vip:"), "{e}");
}
