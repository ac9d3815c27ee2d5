//! Tier 1: `[vip.pool]` and `[vip.weights]` parse with their defaults, and each bad setting is
//! rejected with a message naming the field.
use lb_userspace::config::{Config, Policy, ProviderKind};

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

fn rejects(text: &str, field: &str, words: &str) {
    let err = Config::parse(text).expect_err("bad config must be rejected");
    let msg = err.to_string();
    assert!(msg.contains(field), "{msg:?} does not name {field:?}");
    assert!(msg.contains(words), "{msg:?} does not say {words:?}");
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
