//! Tier 1: the config parser accepts a good file and rejects each class of bad file with a
//! message naming the field.
use lb_userspace::config::{Config, Proto};

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
