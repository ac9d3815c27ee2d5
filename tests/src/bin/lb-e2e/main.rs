//! `lb-e2e` (run by `cargo xtask bench e2e`): the balancer end to end against what operators
//! run today, in two topologies: a routed one (`routed`: nftables DNAT, HAProxy, ours, a
//! direct ceiling) and a one-armed one on a bridge with everyone's default offloads
//! (`bridge`: nftables DNAT with and without a trivial XDP program, ours at tc and at forced
//! XDP, a direct ceiling). Setups run interleaved, rounds of each; one load generator. Then the
//! raw forwarding rate of `lb_xdp` against `return XDP_TX` (`raw`). Prints tables, writes JSON.
mod bridge;
mod measure;
mod raw;
mod report;
mod routed;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use lb_lab::{http_get, wait_until};
use measure::Sample;

/// Backend VMs.
const BACKENDS: usize = 4;
/// Interleaved rounds; the tables show medians over them.
const ROUNDS: usize = 3;
/// Seconds of load per setup, mode and round.
const SECONDS: f64 = 4.0;
/// Concurrent client connections.
const CONNECTIONS: usize = 64;
/// The CPU the load generator runs on; everything else (servers, balancer processes) gets the
/// other one. Softirq work (XDP, tc, nftables, forwarding) runs on the CPU that sent the packet.
const CLIENT_CPU: usize = 0;
const SERVER_CPU: usize = 1;

/// A way of putting a balancer between the client and the backends.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Setup {
    Direct,
    Nftables,
    /// nftables DNAT with `return XDP_PASS` attached to the balancer's veth: what XDP on a
    /// veth costs the kernel's own path.
    NftablesXdpPass,
    Haproxy,
    OursNat,
    OursDsr,
    /// Ours forced to XDP, with the peers set up as lbd's warning says.
    OursNatXdp,
    OursDsrXdp,
    /// The direct run with our balancer attached, passing it by.
    DirectAttached,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Direct => "direct (ceiling)",
            Setup::Nftables => "nftables DNAT",
            Setup::NftablesXdpPass => "nftables DNAT, XDP_PASS on veth",
            Setup::Haproxy => "HAProxy (tcp, roundrobin)",
            Setup::OursNat => "xlb nat (tc)",
            Setup::OursDsr => "xlb dsr (tc)",
            Setup::OursNatXdp => "xlb nat (xdp, forced)",
            Setup::OursDsrXdp => "xlb dsr (xdp, forced)",
            Setup::DirectAttached => "direct, xlb attached",
        }
    }
}

/// A topology with its setups.
trait Topo {
    /// One line saying what it is.
    fn title(&self) -> String;
    /// Its setups, in the order each round runs them.
    fn setups(&self) -> &[Setup];
    /// Starts `setup` and waits until it reaches every backend.
    fn up(&mut self, setup: Setup) -> Result<()>;
    /// One load run through `setup` in `mode`.
    fn measure(&mut self, setup: Setup, mode: &str) -> Result<Sample>;
    /// Stops `setup`.
    fn down(&mut self, setup: Setup) -> Result<()>;
}

/// Samples of one topology, by setup and mode.
type Samples = BTreeMap<(Setup, &'static str), Vec<Sample>>;

/// Ready when every backend has answered through `targets` (bounded: 10 s).
fn reaches_every_backend(targets: &[SocketAddr]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    let mut n = 0usize;
    wait_until(Duration::from_secs(10), || {
        n += 1;
        if let Ok(name) = http_get(targets[n % targets.len()], "/") {
            seen.insert(name);
        }
        seen.len() == BACKENDS
    })
}

/// kube-proxy's nftables mode in miniature: DNAT `vip`:80 to a backend of `map` (`i : addr .
/// port` entries) picked by `numgen`.
fn nft_dnat(vip: std::net::Ipv4Addr, map: &[String]) -> String {
    let port = lb_lab::VIP_PORT;
    format!(
        "table ip e2e {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat;\n    \
         ip daddr {vip} tcp dport {port} dnat ip addr . port to numgen random mod \
         {BACKENDS} map {{ {} }}\n  }}\n}}\n",
        map.join(", ")
    )
}

/// Runs every round of `topo`.
fn run(topo: &mut dyn Topo) -> Result<Samples> {
    let mut samples = Samples::new();
    let title = topo.title();
    for round in 0..ROUNDS {
        for setup in topo.setups().to_vec() {
            topo.up(setup)
                .with_context(|| format!("{}: starting", setup.name()))?;
            for mode in ["keepalive", "close"] {
                let s = topo.measure(setup, mode)?;
                println!(
                    "[e2e] {} round {}/{ROUNDS} {:<32} {mode:<9} {:>8.0} req/s p99 {:>6.0} µs errors {}",
                    title.split(':').next().unwrap_or(""),
                    round + 1,
                    setup.name(),
                    s.rps,
                    s.p99,
                    s.errors
                );
                samples.entry((setup, mode)).or_default().push(s);
            }
            topo.down(setup)?;
        }
    }
    Ok(samples)
}

fn main() -> Result<()> {
    let json_path = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/bench/e2e.json".into()),
    );
    tests::require_root();
    // Run-time statistics of BPF programs, for the balancer's own CPU time (off again on drop).
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF run-time stats")?;
    // `lb-e2e JSON [routed|bridge|raw]...`: only those parts (default: all).
    let parts: Vec<String> = std::env::args().skip(2).collect();
    let wants = |p: &str| parts.is_empty() || parts.iter().any(|x| x == p);
    let mut doc = serde_json::json!({
        "machine": measure::machine_description(),
        "backends": BACKENDS, "connections": CONNECTIONS, "seconds": SECONDS, "rounds": ROUNDS,
    });
    if wants("routed") {
        let mut routed = routed::Routed::build()?;
        let samples = run(&mut routed)?;
        let baselines = [Setup::Nftables, Setup::Haproxy];
        doc["routed"] = report::table(&routed.title(), &samples, &baselines);
    }
    if wants("bridge") {
        let mut bridge = bridge::Bridge::build()?;
        let samples = run(&mut bridge)?;
        doc["bridge"] = report::table(&bridge.title(), &samples, &[Setup::Nftables]);
        doc["bridge_targets"] = report::bridge_targets(&samples);
    }
    if wants("raw") {
        doc["raw_forwarding"] = raw::raw_rate()?;
    }
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)?)?;
    println!("JSON: {}", json_path.display());
    Ok(())
}
