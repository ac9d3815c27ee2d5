//! A config document for the Tier 1 validation tables: two VIPs (one with backends, health
//! and weights, one with a pool) that set most fields, each on a line of its own.
/// Every line is unique, so each case replaces exactly one field.
pub const BASE: &str = r#"
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
