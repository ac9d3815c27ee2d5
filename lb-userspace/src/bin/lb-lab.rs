//! `lb-lab`: the embedded lab behind `cargo xtask run`: a client, the balancer and backend VMs
//! in network namespaces, a bounded burst of connections to the VIP, and a per-backend tally.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use lb_userspace::{
    api::StatsView,
    client,
    lab::{self, tcp_hello, TempFile, Topology, VIP, VIP6, VIP6_DSR, VIP_DSR, VIP_PORT},
    netns::unique_name,
};

#[derive(Parser, Debug)]
#[command(
    name = "lb-lab",
    version,
    about = "Run the balancer in a namespace lab and tally traffic"
)]
struct Args {
    /// Backend VMs.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=16))]
    backends: u8,
    /// TCP connections to open to each VIP (IPv4, then IPv6).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook_like::SIGINT, signal_hook_like::SIGTERM] {
        signal_hook_like::flag(sig, stop.clone());
    }
    match run(&args, &stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C sets a flag that the connection loop checks, so the guards run and clean up.
mod signal_hook_like {
    use std::sync::{atomic::AtomicBool, Arc, OnceLock};

    pub use nix::sys::signal::Signal::{SIGINT, SIGTERM};
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

    extern "C" fn on_signal(_: i32) {
        if let Some(f) = FLAG.get() {
            f.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    pub fn flag(sig: Signal, flag: Arc<AtomicBool>) {
        let _ = FLAG.set(flag);
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler only performs an atomic store, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .ok_or_else(|| anyhow!("no directory for {}", exe.display()))?
        .join(name);
    if !path.exists() {
        return Err(anyhow!("{} not found next to lb-lab", path.display()));
    }
    Ok(path)
}

fn step(what: &str) {
    println!("==> {what}");
}

fn run(args: &Args, stop: &AtomicBool) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(anyhow!(
            "the lab creates namespaces and loads XDP: run it as root"
        ));
    }
    let n = usize::from(args.backends);
    step(&format!(
        "creating namespaces: client, balancer, {n} backend VMs"
    ));
    let mut topo = Topology::build(n)?;
    step("starting lb-backend and lb-decap in each VM (DSR VIPs on their loopback)");
    topo.start_backends(&sibling("lb-backend")?, &sibling("lb-decap")?)?;
    let instance = unique_name("lab");
    let socket = std::env::temp_dir().join(format!("{instance}.sock"));
    let config = TempFile::new(
        &format!("{instance}.toml"),
        &topo.config_toml(&instance, &socket),
    )?;
    step(&format!(
        "starting lbd in {} on {} (NAT VIPs {VIP}, {VIP6}; DSR VIPs {VIP_DSR}, {VIP6_DSR})",
        topo.lb.name(),
        topo.lb_interfaces().join(", ")
    ));
    let _state = TempFile::adopt(lab::state_file(&socket));
    topo.start_lbd(&sibling("lbd")?, config.path(), &socket)?;
    let mut failed = 0;
    let vips = [
        ("NAT", SocketAddr::from((VIP, VIP_PORT))),
        ("NAT", SocketAddr::from((VIP6, VIP_PORT))),
        ("DSR", SocketAddr::from((VIP_DSR, VIP_PORT))),
        ("DSR", SocketAddr::from((VIP6_DSR, VIP_PORT))),
    ];
    for (mode, vip) in vips {
        step(&format!(
            "opening {} TCP connections from the client to {vip} ({mode})",
            args.connections
        ));
        failed += burst(&topo, vip, args.connections, stop)?;
        if stop.load(Ordering::SeqCst) {
            println!("interrupted: cleaning up");
            break;
        }
    }
    print_stats(&socket)?;
    step("cleaning up (lbd stops, namespaces are deleted)");
    drop(topo);
    drop(config);
    if failed > 0 {
        return Err(anyhow!("{failed} connections failed"));
    }
    Ok(())
}

/// Opens `total` connections to `vip` from the client, prints the tally, returns the failures.
fn burst(topo: &Topology, vip: SocketAddr, total: u32, stop: &AtomicBool) -> Result<u32> {
    let started = Instant::now();
    let (tally, failed) = topo.as_client(move || {
        let mut tally: BTreeMap<String, u32> = BTreeMap::new();
        let mut failed = 0u32;
        for _ in 0..total {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            match tcp_hello(vip) {
                Ok(name) => *tally.entry(name).or_default() += 1,
                Err(_) => failed += 1,
            }
        }
        (tally, failed)
    })?;
    print_tally(&tally, failed, started.elapsed().as_secs_f64());
    Ok(failed)
}

fn print_tally(tally: &BTreeMap<String, u32>, failed: u32, secs: f64) {
    let ok: u32 = tally.values().sum();
    println!();
    println!("  {:<10} {:>11} {:>7}", "BACKEND", "CONNECTIONS", "SHARE");
    for (name, count) in tally {
        let share = 100.0 * f64::from(*count) / f64::from(ok.max(1));
        println!("  {name:<10} {count:>11} {share:>6.1}%");
    }
    println!(
        "  {ok} succeeded, {failed} failed in {secs:.2} s ({:.0} connections/s)",
        f64::from(ok) / secs.max(1e-9)
    );
    println!();
}

fn print_stats(socket: &Path) -> Result<()> {
    let v = client::call(socket, "GET", "/v1/stats", None)?;
    let stats: StatsView = serde_json::from_value(v).context("decoding stats")?;
    println!("  data-path counters (non-zero):");
    for (name, n) in stats.counters.iter().filter(|(_, n)| **n > 0) {
        println!("    {name:<18} {n:>10}");
    }
    println!();
    Ok(())
}
