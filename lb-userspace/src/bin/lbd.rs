//! `lbd`: the balancer daemon: argument parsing, logging, and a call into the library's daemon.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::Parser;
use lb_userspace::{daemon, model::config::Config};

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
    daemon::init_logging();
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
    let (cfg, state_file) = daemon::desired_state(path, &args.ifaces, args.socket.as_deref())?;
    daemon::preflight(&cfg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(daemon::run(cfg, state_file, args.detach))?;
    Ok(())
}
