//! `lb-lab`: the embedded lab behind `cargo xtask run`. By default, the full lab: a client
//! namespace ramps HTTP load up and down against a VIP served by a `netns` pool of backend VMs
//! that lbd creates, health-checks, weights by their load, scales out and drains back in,
//! with a live view refreshing in place. `--burst` instead opens a burst of connections to
//! four static VIPs (NAT and DSR, IPv4 and IPv6) and tallies who served them.
use std::{
    collections::BTreeMap,
    io::IsTerminal,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use lb_lab::{
    self as lab, netns::unique_name, tcp_hello, Load, PoolLab, TempFile, Topology, VIP, VIP6,
    VIP6_DSR, VIP_DSR, VIP_PORT,
};
use lb_userspace::{
    face::{client, render},
    model::wire::{PoolView, StatsView},
    workers::vm::netns::PurgeGuard,
};

#[derive(Parser, Debug)]
#[command(
    name = "lb-lab",
    version,
    about = "Run the balancer in a namespace lab: an autoscaled VM pool under a load ramp"
)]
struct Args {
    /// Seconds the load ramp lasts (up, hold, down, idle).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(20..=3600))]
    duration: u64,
    /// Peak offered load, HTTP requests per second (each on a new connection).
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=5000))]
    peak: u64,
    /// Instead: a burst of connections to four static VIPs, tallied per backend.
    #[arg(long)]
    burst: bool,
    /// `--burst`: backend VMs.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=16))]
    backends: u8,
    /// `--burst`: TCP connections to open to each VIP.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// What the pool's VMs are: netns (namespaces), libvirt (QEMU guests under software
    /// emulation: a smaller ramp, 2-3 VMs) or docker (containers through podman's API).
    #[arg(long, default_value = "netns", value_parser = ["netns", "libvirt", "docker"])]
    provider: String,
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
    if args.burst {
        burst_lab(args, stop)
    } else {
        pool_lab(args, stop)
    }
}

/// The offered load at `t` of a ramp lasting `total`: a trickle, up to `peak` by 40%, held
/// to 60%, down to the trickle by 75%, then the trickle (so the pool scales back in).
fn offered(t: f64, total: f64, peak: u64) -> u64 {
    let low = (peak as f64 * 0.08).max(1.0);
    let x = t / total;
    let r = if x < 0.1 {
        low
    } else if x < 0.4 {
        low + (peak as f64 - low) * (x - 0.1) / 0.3
    } else if x < 0.6 {
        peak as f64
    } else if x < 0.75 {
        peak as f64 - (peak as f64 - low) * (x - 0.6) / 0.15
    } else {
        low
    };
    r.round() as u64
}

/// The engine of `--provider`, started for the lab (with what removes its VMs afterwards),
/// and the pool settings that suit it.
enum Engine {
    Netns,
    /// libvirtd (its guard stops it).
    Libvirt {
        _daemons: lab::engines::Libvirt,
    },
    Docker(lab::engines::Podman),
}

impl Engine {
    fn start(provider: &str) -> Result<(Engine, PoolLab)> {
        let guest = sibling("lbd")?
            .parent()
            .and_then(Path::parent)
            .map(|target| target.join("guest"))
            .ok_or_else(|| anyhow!("no target directory"))?;
        Ok(match provider {
            "libvirt" => {
                step("starting virtlogd and libvirtd");
                let engine = lab::engines::Libvirt::start()?;
                let pool = PoolLab {
                    engine: lab::PoolEngine::Libvirt {
                        kernel: guest.join("vmlinuz"),
                        initrd: guest.join("initramfs-release.cpio"),
                    },
                    memory_mb: 256,
                    max: 3,
                    cpu_limit: 0.5,
                    work_us: 1000,
                    ..PoolLab::default()
                };
                (Engine::Libvirt { _daemons: engine }, pool)
            }
            "docker" => {
                step("starting podman's Docker-compatible API service");
                let engine = lab::engines::Podman::start()?;
                let pool = PoolLab {
                    engine: lab::PoolEngine::Docker {
                        socket: engine.socket.clone(),
                        image: "xlb-backend:release".into(),
                    },
                    ..PoolLab::default()
                };
                (Engine::Docker(engine), pool)
            }
            _ => (Engine::Netns, PoolLab::default()),
        })
    }

    /// Removes whatever VMs of `instance` are left (after lbd stopped).
    fn purge(&self, instance: &str) {
        match self {
            Engine::Netns => {}
            Engine::Libvirt { .. } => lab::engines::purge_domains(instance),
            Engine::Docker(podman) => podman.purge(instance),
        }
    }
}

fn pool_lab(args: &Args, stop: &AtomicBool) -> Result<()> {
    let (engine, lab) = Engine::start(&args.provider)?;
    step(&format!(
        "creating namespaces: a client and the balancer; lbd creates {}..{} backend VMs itself \
         ({})",
        lab.min, lab.max, args.provider
    ));
    let instance = unique_name("lab");
    let socket = std::env::temp_dir().join(format!("{instance}.sock"));
    // Declared before the namespaces, so it drops after lbd stops: whatever happens below, no
    // VM of this lab outlives it.
    let _vms = PurgeGuard::new(&instance, &lab::state_file(&socket));
    let mut topo = Topology::build(0)?;
    let config = TempFile::new(
        &format!("{instance}.toml"),
        &lab.config_toml(&topo, &instance, &socket),
    )?;
    let _state = TempFile::adopt(lab::state_file(&socket));
    step(&format!(
        "starting lbd in {}: VIP {VIP}:{VIP_PORT}, {} pool (cpu limit {} cores per VM, \
         target {:.0}% cpu), weights from agent load, slow-start {} s",
        topo.lb.name(),
        args.provider,
        lab.cpu_limit,
        lab.target * 100.0,
        lab.slow_start_s
    ));
    let tty = std::io::stdout().is_terminal();
    if tty && std::env::var_os("RUST_LOG").is_none() {
        // lbd's decisions are in the live view; its log lines would tear it.
        std::env::set_var("RUST_LOG", "warn");
    }
    topo.start_lbd(&sibling("lbd")?, config.path(), &socket)?;
    step(&format!(
        "waiting for the pool's first {} VMs to serve (at most {} s)",
        lab.min,
        SERVING_WAIT.as_secs()
    ));
    let waited = Instant::now();
    while serving(&socket) < lab.min as usize {
        if waited.elapsed() > SERVING_WAIT || stop.load(Ordering::SeqCst) {
            anyhow::bail!(
                "the pool did not serve within {} s: see `lbctl --socket {} vm list`",
                SERVING_WAIT.as_secs(),
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("    serving after {:.1} s", waited.elapsed().as_secs_f64());
    let vip = SocketAddr::from((VIP, VIP_PORT));
    let load = Load::start(&topo.client, vip, 0, 16)?;
    let total = args.duration as f64;
    // Emulated guests serve far less: the ramp peaks lower.
    let peak = if args.provider == "libvirt" {
        args.peak.min(40)
    } else {
        args.peak
    };
    let started = Instant::now();
    let mut frame = 0u64;
    let mut last_ok = 0;
    let mut peak_vms = 0;
    while started.elapsed().as_secs_f64() < total && !stop.load(Ordering::SeqCst) {
        let t = started.elapsed().as_secs_f64();
        let rate = offered(t, total, peak);
        load.rate.store(rate, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(1));
        let pools: Vec<PoolView> = client::call(&socket, "GET", "/v1/vms", None)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        peak_vms = peak_vms.max(pools.first().map_or(0, |p| p.vms.len()));
        let ok = load.tally.ok.load(Ordering::Relaxed);
        let failed = load.tally.failed.load(Ordering::Relaxed);
        let view = format!(
            "xlb lab  {:>3.0}/{total:.0} s   offered {rate:>4} req/s   served {:>4} req/s   \
             {ok} ok, {failed} failed\n\n{}",
            t,
            ok - last_ok,
            render::pools(&pools, 10)
        );
        last_ok = ok;
        if tty {
            // Home the cursor and clear: the view refreshes in place.
            print!("\x1b[H\x1b[2J{view}");
        } else if frame.is_multiple_of(10) {
            println!("{view}");
        }
        frame += 1;
    }
    let load_ok = load.tally.ok.load(Ordering::Relaxed);
    let load_failed = load.tally.failed.load(Ordering::Relaxed);
    drop(load);
    if stop.load(Ordering::SeqCst) {
        println!("interrupted: cleaning up");
    }
    step("cleaning up (lbd stops and deletes its VMs, namespaces are deleted)");
    drop(topo);
    engine.purge(&instance);
    println!(
        "peak pool size {peak_vms} VMs; {} requests answered, {} failed",
        load_ok, load_failed
    );
    Ok(())
}

/// How long the lab waits for the pool's first VMs (emulated guests boot in ~6 s each).
const SERVING_WAIT: Duration = Duration::from_secs(90);

/// How many of the first pool's VMs have joined the ring.
fn serving(socket: &std::path::Path) -> usize {
    let pools: Vec<PoolView> = client::call(socket, "GET", "/v1/vms", None)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    pools.first().map_or(0, |p| {
        p.vms
            .iter()
            .filter(|vm| vm.serving_after_ms.is_some())
            .count()
    })
}

fn burst_lab(args: &Args, stop: &AtomicBool) -> Result<()> {
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
