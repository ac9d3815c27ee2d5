//! Tier 1: every port-, address- and range-like field of the config, one table: a good file
//! passes, and each bad value of each field is refused with the field named (the API takes
//! the same validation: `tier2_validation`).
use lb_userspace::model::config::Config;
use tests::config::BASE;

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
