//! `lbd`: the balancer daemon: argument parsing, logging, and a call into the library's daemon.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};
use lb_userspace::{daemon, model::config::Config, workers::reload::Source};

#[derive(Parser, Debug)]
#[command(
    name = "lbd",
    version,
    about = "XDP L4 load balancer daemon",
    after_help = "Examples:\n  lbd --config /etc/lbd.toml\n  lbd --config lab.toml --iface eth1 --iface eth2\n  lbd --check-config /etc/lbd.toml\n  kill -HUP $(pidof lbd)    # reload the config"
)]
struct Args {
    /// TOML config: VIPs, backends, interfaces.
    #[arg(
        long,
        short,
        value_name = "FILE",
        required_unless_present_any = ["check_config", "man"]
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
    /// On exit, leave the data path running whatever `lbd.on_stop` says (programs, links and
    /// maps stay pinned; the next lbd adopts them).
    #[arg(long)]
    detach: bool,
    /// Start from the config when the state file is empty or unusable, keeping the bad file
    /// aside as `<state file>.bad`.
    #[arg(long)]
    reset_state: bool,
    /// Print the man page (roff) and exit.
    #[arg(long, hide = true)]
    man: bool,
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
    if args.man {
        clap_mangen::Man::new(Args::command())
            .render(&mut std::io::stdout())
            .context("writing the man page")?;
        return Ok(());
    }
    if let Some(path) = &args.check_config {
        let cfg = Config::read(path)?;
        cfg.validate_runnable()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let backends: usize = cfg.vips.iter().map(|v| v.backends.len()).sum();
        println!(
            "{}: OK ({} VIPs, {backends} backends)",
            path.display(),
            cfg.vips.len()
        );
        return Ok(());
    }
    let source = Source {
        path: args.config.clone().context("--config FILE is required")?,
        ifaces: args.ifaces.clone(),
        socket: args.socket.clone(),
    };
    let startup = daemon::desired_state(&source, args.reset_state)?;
    daemon::preflight(&startup.cfg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(daemon::run(startup, args.detach))?;
    Ok(())
}
