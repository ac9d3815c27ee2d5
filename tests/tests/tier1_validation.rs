//! Tier 1: every port-, address- and range-like field of the config, one table: a good file
//! passes, and each bad value of each field is refused with the field named (the API takes
//! the same validation: `tier2_validation`).
use lb_userspace::model::config::Config;

/// Every line is unique, so each case replaces exactly one field.
const BASE: &str = r#"
[lbd]
instance = "edge1"
interfaces = ["eth1", "eth2"]
metrics = "127.0.0.1:9669"
udp_idle_timeout_s = 30
drain_timeout_s = 300

[[vip]]
name = "web"
addr = "192.0.2.10"
port = 80
proto = "tcp"
ring_size = 4093
[vip.health]
kind = "http"
path = "/"
expect_status = 200
inter_ms = 2000
fastinter_ms = 500
downinter_ms = 3000
timeout_ms = 1000
rise = 2
fall = 3
[vip.weights]
policy = "least-conn"
interval_ms = 1000
damping = 0.5
max_step = 0.5
min_change = 0.05
max_moved = 0.25
slow_start_s = 10
[[vip.backend]]
addr = "10.0.0.2"
port = 8080
weight = 2

[[vip]]
name = "pooled"
addr = "192.0.2.11"
port = 443
proto = "tcp"
[vip.health]
kind = "agent"
agent_port = 9000
[vip.pool]
provider = "netns"
min = 1
max = 4
target_utilisation = 0.6
hysteresis = 0.25
cpu_limit = 0.5
memory_mb = 128
network = "10.201.0.0/24"
"#;

/// (line to replace, replacement, field the error must name).
const CASES: &[(&str, &str, &str)] = &[
    // [lbd]
    ("instance = \"edge1\"", "instance = \"\"", "lbd.instance"),
    ("instance = \"edge1\"", "instance = \"a/b\"", "lbd.instance"),
    (
        "interfaces = [\"eth1\", \"eth2\"]",
        "interfaces = [\"eth1\", \"eth1\"]",
        "lbd.interfaces[1]",
    ),
    (
        "interfaces = [\"eth1\", \"eth2\"]",
        "interfaces = [\"an-interface-name\"]",
        "lbd.interfaces[0]",
    ),
    (
        "metrics = \"127.0.0.1:9669\"",
        "metrics = \"127.0.0.1:0\"",
        "lbd.metrics",
    ),
    (
        "metrics = \"127.0.0.1:9669\"",
        "metrics = \"0.0.0.0:9669\"",
        "lbd.metrics",
    ),
    (
        "udp_idle_timeout_s = 30",
        "udp_idle_timeout_s = 0",
        "lbd.udp_idle_timeout_s",
    ),
    (
        "udp_idle_timeout_s = 30",
        "udp_idle_timeout_s = 86401",
        "lbd.udp_idle_timeout_s",
    ),
    (
        "drain_timeout_s = 300",
        "drain_timeout_s = 86401",
        "lbd.drain_timeout_s",
    ),
    // VIP addresses and ports
    ("port = 80\n", "port = 0\n", "vip[0].port"),
    ("addr = \"192.0.2.10\"", "addr = \"0.0.0.0\"", "vip[0].addr"),
    (
        "addr = \"192.0.2.10\"",
        "addr = \"255.255.255.255\"",
        "vip[0].addr",
    ),
    (
        "addr = \"192.0.2.10\"",
        "addr = \"224.0.0.1\"",
        "vip[0].addr",
    ),
    (
        "addr = \"192.0.2.10\"",
        "addr = \"127.0.0.1\"",
        "vip[0].addr",
    ),
    (
        "addr = \"192.0.2.10\"\nport = 80\n",
        "addr = \"10.0.0.2\"\nport = 8080\n",
        "vip[0].addr",
    ),
    ("ring_size = 4093", "ring_size = 4096", "vip[0].ring_size"),
    // the VIP's backends
    (
        "port = 8080\nweight = 2",
        "port = 0\nweight = 2",
        "vip[0].backend[0].port",
    ),
    (
        "addr = \"10.0.0.2\"",
        "addr = \"255.255.255.255\"",
        "vip[0].backend[0].addr",
    ),
    (
        "addr = \"10.0.0.2\"",
        "addr = \"0.0.0.0\"",
        "vip[0].backend[0].addr",
    ),
    (
        "addr = \"10.0.0.2\"",
        "addr = \"2001:db8::2\"",
        "vip[0].backend[0].addr",
    ),
    ("weight = 2", "weight = 65536", "vip[0].backend[0].weight"),
    // health checks
    (
        "expect_status = 200",
        "expect_status = 999",
        "vip[0].health.expect_status",
    ),
    (
        "expect_status = 200",
        "expect_status = 99",
        "vip[0].health.expect_status",
    ),
    ("path = \"/\"", "path = \"health\"", "vip[0].health.path"),
    (
        "timeout_ms = 1000",
        "timeout_ms = 3000",
        "vip[0].health.timeout_ms",
    ),
    ("inter_ms = 2000", "inter_ms = 5", "vip[0].health.inter_ms"),
    (
        "fastinter_ms = 500",
        "fastinter_ms = 3600001",
        "vip[0].health.fastinter_ms",
    ),
    (
        "downinter_ms = 3000",
        "downinter_ms = 9",
        "vip[0].health.downinter_ms",
    ),
    ("rise = 2", "rise = 0", "vip[0].health.rise"),
    ("fall = 3", "fall = 101", "vip[0].health.fall"),
    (
        "agent_port = 9000",
        "agent_port = 0",
        "vip[1].health.agent_port",
    ),
    // weights
    (
        "interval_ms = 1000",
        "interval_ms = 50",
        "vip[0].weights.interval_ms",
    ),
    ("damping = 0.5", "damping = 0.0", "vip[0].weights.damping"),
    (
        "max_step = 0.5",
        "max_step = 5.0",
        "vip[0].weights.max_step",
    ),
    (
        "min_change = 0.05",
        "min_change = 1.5",
        "vip[0].weights.min_change",
    ),
    (
        "max_moved = 0.25",
        "max_moved = 0.0",
        "vip[0].weights.max_moved",
    ),
    (
        "slow_start_s = 10",
        "slow_start_s = 3601",
        "vip[0].weights.slow_start_s",
    ),
    // pools
    ("port = 443", "port = 0", "vip[1].port"),
    ("min = 1", "min = 5", "vip[1].pool.min/max"),
    ("max = 4", "max = 65", "vip[1].pool.min/max"),
    (
        "target_utilisation = 0.6",
        "target_utilisation = 1.5",
        "vip[1].pool.target_utilisation",
    ),
    (
        "hysteresis = 0.25",
        "hysteresis = 0.95",
        "vip[1].pool.hysteresis",
    ),
    (
        "cpu_limit = 0.5",
        "cpu_limit = 0.0",
        "vip[1].pool.cpu_limit",
    ),
    ("memory_mb = 128", "memory_mb = 8", "vip[1].pool.memory_mb"),
    (
        "network = \"10.201.0.0/24\"",
        "network = \"10.201.0.1/24\"",
        "vip[1].pool.network",
    ),
    (
        "network = \"10.201.0.0/24\"",
        "network = \"10.201.0.0/30\"",
        "vip[1].pool.network",
    ),
    (
        "network = \"10.201.0.0/24\"",
        "network = \"10.201.0.0/29\"",
        "vip[1].pool.network",
    ),
];

#[test]
fn the_base_config_is_valid() {
    Config::parse(BASE).expect("the base of the table must pass");
}

#[test]
fn each_bad_value_of_each_field_is_refused_naming_the_field() {
    for (from, to, field) in CASES {
        assert_eq!(
            BASE.matches(from).count(),
            1,
            "{from:?} is not unique in the base"
        );
        let text = BASE.replacen(from, to, 1);
        match Config::parse(&text) {
            Ok(_) => panic!("{to:?} (for {field}) was accepted"),
            Err(e) => assert!(
                e.to_string().starts_with(&format!("{field}:")),
                "{to:?}: {e} does not name {field}"
            ),
        }
    }
}

#[test]
fn an_empty_interface_list_is_valid_as_a_document_but_not_runnable() {
    let text = BASE.replacen("interfaces = [\"eth1\", \"eth2\"]", "interfaces = []", 1);
    let cfg = Config::parse(&text).expect("VIPs alone are a valid document");
    let e = cfg
        .validate_runnable()
        .expect_err("lbd cannot run without an interface");
    assert!(e.to_string().starts_with("lbd.interfaces:"), "{e}");
    Config::parse(BASE)
        .expect("base")
        .validate_runnable()
        .expect("the base runs");
}

#[test]
fn a_long_name_is_not_echoed_back_whole() {
    let long = "x".repeat(10_000);
    let text = BASE.replacen("name = \"web\"", &format!("name = \"{long}\""), 1);
    let e = Config::parse(&text).expect_err("a 10 KB name").to_string();
    assert!(
        e.starts_with("vip[0].name:") && e.len() < 200,
        "{} bytes: {e:.300}",
        e.len()
    );
    assert!(e.contains("(10000 bytes)"), "{e:.300}");
}

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
