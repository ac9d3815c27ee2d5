//! `lbd`: loads the balancer, attaches it, applies the config and serves the API.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{bail, Context, Result};
use clap::Parser;
use lb_userspace::{
    api,
    config::{Config, Mode, ProviderKind, VipConfig},
    controller::{self, Controller},
    dataplane::{self, Dataplane},
    health, metrics,
    object::LoadOptions,
    pool,
    vm::{self, fixed::StaticProvider, netns::NetnsProvider, Provider},
};

#[derive(Parser, Debug)]
#[command(
    name = "lbd",
    version,
    about = "XDP L4 load balancer daemon",
    after_help = "Examples:\n  lbd --config /etc/lbd.toml\n  lbd --config lab.toml --iface eth1 --iface eth2\n  lbd --check-config /etc/lbd.toml"
)]
struct Args {
    /// TOML config: VIPs, backends, interfaces.
    #[arg(
        long,
        short,
        value_name = "FILE",
        required_unless_present = "check_config"
    )]
    config: Option<PathBuf>,
    /// Validate FILE and exit, without touching the kernel.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Interface to attach to (repeatable); replaces `lbd.interfaces` of the config.
    #[arg(long = "iface", value_name = "IFACE")]
    ifaces: Vec<String>,
    /// API socket path; replaces `lbd.socket` of the config.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// On exit, leave the data path running (programs, links and maps stay pinned; the next
    /// lbd adopts them). Without it, a clean exit detaches and unpins everything.
    #[arg(long)]
    detach: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lbd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    if let Some(path) = &args.check_config {
        let cfg = Config::load(path)?;
        let backends: usize = cfg.vips.iter().map(|v| v.backends.len()).sum();
        println!(
            "{}: OK ({} VIPs, {backends} backends)",
            path.display(),
            cfg.vips.len()
        );
        return Ok(());
    }
    let path = args.config.as_ref().context("--config FILE is required")?;
    let mut cfg = Config::load(path)?;
    if !args.ifaces.is_empty() {
        cfg.lbd.interfaces = args.ifaces.clone();
    }
    if let Some(socket) = &args.socket {
        cfg.lbd.socket = Some(socket.clone());
    }
    cfg.validate()?;
    let state_file = cfg
        .lbd
        .state_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/var/lib/lbd/{}.toml", cfg.lbd.instance)));
    if state_file.exists() {
        let saved = Config::load(&state_file)
            .with_context(|| format!("restoring the state saved in {}", state_file.display()))?;
        log::info!(
            "restoring {} VIPs from {} (the state of the last run; delete it to start from the config)",
            saved.vips.len(),
            state_file.display()
        );
        cfg.vips = saved.vips;
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("must run as root: it loads XDP programs (CAP_BPF, CAP_NET_ADMIN)");
    }
    if cfg.lbd.interfaces.is_empty() {
        bail!("no interface to attach to: give --iface IFACE or set lbd.interfaces");
    }
    for iface in &cfg.lbd.interfaces {
        dataplane::ifindex(iface).with_context(|| format!("interface {iface:?} does not exist"))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(cfg, state_file, args.detach))
}

async fn serve(cfg: Config, state_file: PathBuf, detach: bool) -> Result<()> {
    // Bound before the kernel is touched: a busy port then leaves nothing behind.
    let metrics_listener = match cfg.lbd.metrics {
        Some(addr) => {
            let listener = metrics::bind(addr).await?;
            log::info!("metrics on http://{addr}/metrics");
            Some(listener)
        }
        None => None,
    };
    let pin_dir = PathBuf::from("/sys/fs/bpf").join(&cfg.lbd.instance);
    let opts = LoadOptions {
        hash_seed: cfg.lbd.hash_seed,
        udp_idle_timeout_s: cfg.lbd.udp_idle_timeout_s,
        max_new_flows_per_cpu: cfg.lbd.max_new_flows_per_cpu,
    };
    // A data path pinned by an earlier lbd is adopted; if starting fails it is left running
    // as it was, and only what this lbd created is removed.
    let adopted = pin_dir.exists();
    let mut dp = Dataplane::open(&pin_dir, opts)?;
    for iface in &cfg.lbd.interfaces {
        if let Err(e) = dp.attach(iface) {
            if !adopted {
                let _ = dp.unpin();
            }
            return Err(e);
        }
        log::info!("lb_xdp attached to {iface}");
    }
    let mut ctl = Controller::new(dp, &cfg.lbd.instance, &cfg.lbd.interfaces);
    ctl.persist_to(state_file.clone(), cfg.lbd.clone());
    if let Err(e) = ctl.apply_config(&cfg) {
        if !adopted {
            let _ = ctl.into_dataplane().unpin();
        }
        return Err(e.context("applying the config"));
    }
    let socket = cfg
        .lbd
        .socket
        .clone()
        .unwrap_or_else(|| api::default_socket(&cfg.lbd.instance));
    let listener = api::bind(&socket)?;
    let (handle, task) = controller::spawn(ctl);
    let refresher = tokio::spawn(every(NEXT_HOP_REFRESH, handle.clone(), || {
        controller::Command::RefreshNextHops
    }));
    let weigher = tokio::spawn(every(WEIGHTS_TICK, handle.clone(), || {
        controller::Command::UpdateWeights
    }));
    let checks = tokio::spawn(health::run(handle.clone()));
    let (pools, pool_tasks) = pool::spawn_all(&cfg.vips, &handle, |vip| {
        provider(vip, &cfg.lbd.instance, &state_file)
    })?;
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = metrics_listener.map(|listener| {
        let stopped = async {
            let _ = metrics_stopped.await;
        };
        tokio::spawn(metrics::serve(
            listener,
            handle.clone(),
            pools.clone(),
            stopped,
        ))
    });
    log::info!(
        "serving {} VIPs; API on {} (root only)",
        cfg.vips.len(),
        socket.display()
    );
    let served = api::serve(listener, handle, pools.clone(), shutdown_signal()).await;
    // A clean stop removes what lbd made, VMs included; --detach leaves them serving.
    pool::shutdown(&pools, pool_tasks, !detach).await;
    for task in [refresher, weigher] {
        task.abort();
        let _ = task.await;
    }
    checks.abort();
    let _ = checks.await;
    let _ = stop_metrics.send(());
    if let Some(task) = metrics {
        let _ = task.await;
    }
    let _ = std::fs::remove_file(&socket);
    let ctl = task.await.context("controller task")?;
    if detach {
        log::info!(
            "stopped, data path left running: lb_xdp stays attached to {} with its maps and \
             links pinned under {}; the next lbd adopts them",
            cfg.lbd.interfaces.join(", "),
            pin_dir.display()
        );
    } else {
        ctl.into_dataplane().unpin()?;
        log::info!(
            "stopped, data path removed: lb_xdp detached from {}, maps and links unpinned \
             from {} (use --detach to leave it running)",
            cfg.lbd.interfaces.join(", "),
            pin_dir.display()
        );
    }
    served
}

/// How often cached next hops (route + neighbour per backend and per reply flow) are looked up
/// again, so a changed MAC or route is picked up within this time.
const NEXT_HOP_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// The VM provider of a pooled VIP.
fn provider(vip: &VipConfig, instance: &str, state_file: &Path) -> Result<Provider> {
    let pool = vip.pool.as_ref().context("not a pooled VIP")?;
    Ok(match pool.provider {
        ProviderKind::Static => Provider::Static(StaticProvider::new(pool.addrs.clone())),
        ProviderKind::Netns => {
            let network = pool.network().map_err(anyhow::Error::msg)?;
            let exe = std::env::current_exe()?;
            let bin_dir = exe.parent().context("lbd has no directory")?.to_path_buf();
            let dsr = (vip.mode == Mode::Dsr).then_some(vip.addr);
            Provider::Netns(NetnsProvider::new(
                instance,
                vm::records_dir(state_file),
                network,
                bin_dir,
                dsr,
            ))
        }
    })
}

/// How often the controller looks at telemetry; each VIP updates its weights at its own
/// `weights.interval_ms`.
const WEIGHTS_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Sends the controller `make()` every `period` until it stops.
async fn every(
    period: std::time::Duration,
    handle: controller::Handle,
    make: impl Fn() -> controller::Command,
) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        if handle.send(make()).await.is_err() {
            return;
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    log::info!("shutting down");
}
