//! Tier 1: the config parser accepts a good file and rejects each class of bad file with a
//! message naming the field.
use lb_userspace::model::config::{Config, Policy, Proto, ProviderKind};

const GOOD: &str = r#"
[lbd]
instance = "edge1"
interfaces = ["eth1", "eth2"]
hash_seed = 42

[[vip]]
name = "web"
addr = "192.0.2.10"
port = 80
proto = "tcp"

[[vip.backend]]
addr = "10.0.0.2"
port = 8080
weight = 2

[[vip.backend]]
addr = "10.0.0.3"
port = 8080

[[vip]]
name = "dns"
addr = "192.0.2.10"
port = 53
proto = "udp"
ring_size = 4093
"#;

#[test]
fn good_config_parses_with_defaults() {
    let cfg = Config::parse(GOOD).expect("good config");
    assert_eq!(cfg.lbd.instance, "edge1");
    assert_eq!(cfg.lbd.interfaces, ["eth1", "eth2"]);
    assert_eq!(cfg.lbd.hash_seed, 42);
    assert_eq!(cfg.vips.len(), 2);
    assert_eq!(cfg.vips[0].ring_size, 65537, "default ring size");
    assert_eq!(cfg.vips[0].backends[1].weight, 1, "default weight");
    assert_eq!(cfg.vips[1].proto, Proto::Udp);
    assert!(cfg.vips[1].backends.is_empty());
}

fn rejects(text: &str, field: &str, words: &str) {
    let err = Config::parse(text).expect_err("bad config must be rejected");
    let msg = err.to_string();
    assert!(msg.contains(field), "{msg:?} does not name {field:?}");
    assert!(msg.contains(words), "{msg:?} does not say {words:?}");
}

#[test]
fn unknown_field_is_named() {
    rejects(
        &GOOD.replace("hash_seed = 42", "hash_sed = 42"),
        "line 5",
        "hash_sed",
    );
}

#[test]
fn bad_address_is_rejected() {
    rejects(
        &GOOD.replace("192.0.2.10\"\nport = 80", "192.0.2.300\"\nport = 80"),
        "line",
        "address",
    );
}

#[test]
fn port_zero_is_rejected() {
    rejects(
        &GOOD.replace("port = 8080\nweight = 2", "port = 0\nweight = 2"),
        "vip[0].backend[0].port",
        "1-65535",
    );
}

#[test]
fn duplicate_vip_name_is_rejected() {
    rejects(
        &GOOD.replace("name = \"dns\"", "name = \"web\""),
        "vip[1].name",
        "twice",
    );
}

#[test]
fn duplicate_backend_is_rejected() {
    rejects(
        &GOOD.replace("10.0.0.3", "10.0.0.2"),
        "vip[0].backend[1]",
        "twice",
    );
}

#[test]
fn ring_size_must_be_a_supported_prime() {
    rejects(
        &GOOD.replace("ring_size = 4093", "ring_size = 4096"),
        "vip[1].ring_size",
        "4096",
    );
}

#[test]
fn backend_family_must_match_vip() {
    rejects(
        &GOOD.replace("\"10.0.0.3\"", "\"fd00::3\""),
        "vip[0].backend[1].addr",
        "family",
    );
}

#[test]
fn weight_above_limit_is_rejected() {
    rejects(
        &GOOD.replace("weight = 2", "weight = 70000"),
        "vip[0].backend[0].weight",
        "0-65535",
    );
}

#[test]
fn bad_instance_name_is_rejected() {
    rejects(
        &GOOD.replace("\"edge1\"", "\"../etc\""),
        "lbd.instance",
        "must be",
    );
}

#[test]
fn unknown_protocol_is_rejected() {
    rejects(&GOOD.replace("\"udp\"", "\"sctp\""), "line", "sctp");
}

#[test]
fn ipv6_vip_with_ipv6_backends_parses() {
    let text = GOOD
        .replace("192.0.2.10\"\nport = 80", "2001:db8::10\"\nport = 80")
        .replace("\"10.0.0.2\"", "\"fd00::2\"")
        .replace("\"10.0.0.3\"", "\"fd00::3\"");
    let cfg = Config::parse(&text).expect("IPv6 config");
    assert!(cfg.vips[0].addr.is_ipv6());
}

#[test]
fn multicast_vip_is_rejected() {
    rejects(
        &GOOD.replace("192.0.2.10\"\nport = 53", "224.0.0.1\"\nport = 53"),
        "vip[1].addr",
        "unicast",
    );
}

#[test]
fn metrics_must_listen_on_loopback() {
    rejects(
        &GOOD.replace(
            "hash_seed = 42",
            "hash_seed = 42\nmetrics = \"0.0.0.0:9100\"",
        ),
        "lbd.metrics",
        "loopback",
    );
    let ok = GOOD.replace(
        "hash_seed = 42",
        "hash_seed = 42\nmetrics = \"127.0.0.1:9100\"",
    );
    assert!(Config::parse(&ok).is_ok());
}

// `[vip.pool]` and `[vip.weights]`.

const POOLED: &str = r#"
[[vip]]
name = "web"
addr = "192.0.2.10"
port = 80
proto = "tcp"

[vip.health]
kind = "agent"
agent_port = 9000

[vip.weights]
policy = "resource"
slow_start_s = 10

[vip.pool]
min = 2
max = 6
"#;

#[test]
fn a_pooled_vip_parses_with_defaults() {
    let cfg = Config::parse(POOLED).expect("pooled config");
    let vip = &cfg.vips[0];
    let pool = vip.pool.as_ref().expect("pool");
    assert_eq!(pool.provider, ProviderKind::Netns);
    assert_eq!((pool.min, pool.max), (2, 6));
    assert_eq!(pool.target_utilisation, 0.6);
    assert_eq!(pool.network().expect("network").1, 24);
    assert_eq!(
        pool.backend_port(vip.mode, vip.port),
        8080,
        "NAT default port"
    );
    assert_eq!(vip.weights.policy, Policy::Resource);
    assert_eq!(vip.weights.slow_start_s, 10);
    assert_eq!(vip.weights.interval_ms, 1000, "default interval");
}

#[test]
fn a_vip_without_a_pool_keeps_static_weights() {
    let text = POOLED.replace("[vip.pool]\nmin = 2\nmax = 6\n", "");
    let text = text.replace("policy = \"resource\"", "");
    let cfg = Config::parse(&text).expect("config");
    assert!(cfg.vips[0].pool.is_none());
    assert_eq!(cfg.vips[0].weights.policy, Policy::Static);
}

#[test]
fn min_above_max_is_rejected() {
    rejects(
        &POOLED.replace("min = 2", "min = 7"),
        "vip[0].pool.min/max",
        "min <= max",
    );
}

#[test]
fn a_pool_needs_health_checks() {
    let text = POOLED.replace("[vip.health]\nkind = \"agent\"\nagent_port = 9000\n", "");
    let text = text.replace("policy = \"resource\"", "policy = \"least-conn\"");
    rejects(&text, "vip[0].pool", "needs [vip.health]");
}

#[test]
fn resource_weights_need_an_agent_check() {
    rejects(
        &POOLED.replace("kind = \"agent\"", "kind = \"tcp\""),
        "vip[0].weights.policy",
        "agent",
    );
}

#[test]
fn a_bad_pool_network_is_rejected() {
    rejects(
        &POOLED.replace("max = 6", "max = 6\nnetwork = \"10.201.0.1/24\""),
        "vip[0].pool.network",
        "host bits",
    );
    rejects(
        &POOLED.replace("max = 6", "max = 6\nnetwork = \"10.201.0.0/29\""),
        "vip[0].pool.network",
        "room for 2 VMs",
    );
}

#[test]
fn a_static_pool_needs_max_addresses() {
    rejects(
        &POOLED.replace(
            "max = 6",
            "max = 3\nprovider = \"static\"\naddrs = [\"10.0.0.2\"]",
        ),
        "vip[0].pool.addrs",
        "lists 1 addresses, max is 3",
    );
}

#[test]
fn out_of_range_damping_is_rejected() {
    rejects(
        &POOLED.replace("slow_start_s = 10", "damping = 0"),
        "vip[0].weights.damping",
        "must be",
    );
}

#[test]
fn an_unknown_policy_is_rejected() {
    rejects(
        &POOLED.replace("\"resource\"", "\"fastest\""),
        "line",
        "fastest",
    );
}
