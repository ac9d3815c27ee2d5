//! Layer 6, the daemon assembled: the desired state read from the config and the state file,
//! the data path loaded (or adopted) and attached, the controller, its workers and its faces
//! started in order, and stopped in reverse. `lbd` parses arguments and calls [`run`]; tests
//! drive a [`Daemon`] in-process.
use std::path::{Path, PathBuf};

use tokio::{sync::oneshot, task::JoinHandle};

use crate::{
    controller::{self, Command, Controller, Handle},
    dataplane::{self, object::LoadOptions, Dataplane},
    face::{api, metrics},
    model::{config::Config, Error, Result},
    workers::{
        health,
        pool::{self, Pools},
        ticker::{self, every},
        vm,
    },
};

/// Where an instance keeps its desired state unless the config says otherwise.
pub fn default_state_file(instance: &str) -> PathBuf {
    PathBuf::from(format!("/var/lib/lbd/{instance}.toml"))
}

/// Where an instance pins its maps, links and programs.
pub fn pin_dir(instance: &str) -> PathBuf {
    PathBuf::from("/sys/fs/bpf").join(instance)
}

/// The desired state to start from: the config at `path` (with `ifaces` and `socket`
/// replacing its settings when given), whose VIPs are replaced by those of its state file when
/// one exists (the state of the last run, CLI changes included). Returns it with the state
/// file's path.
pub fn desired_state(
    path: &Path,
    ifaces: &[String],
    socket: Option<&Path>,
) -> Result<(Config, PathBuf)> {
    let mut cfg = Config::load(path)?;
    if !ifaces.is_empty() {
        cfg.lbd.interfaces = ifaces.to_vec();
    }
    if let Some(socket) = socket {
        cfg.lbd.socket = Some(socket.to_path_buf());
    }
    cfg.validate()?;
    let state_file = cfg
        .lbd
        .state_file
        .clone()
        .unwrap_or_else(|| default_state_file(&cfg.lbd.instance));
    if state_file.exists() {
        let saved = Config::load(&state_file).map_err(|e| Error {
            message: format!("{} (restoring the state saved there)", e.message),
            ..e
        })?;
        tracing::info!(
            "restoring {} VIPs from {} (the state of the last run; delete it to start from the config)",
            saved.vips.len(),
            state_file.display()
        );
        cfg.vips = saved.vips;
    }
    Ok((cfg, state_file))
}

/// Checks what starting needs from the machine: root, and interfaces that exist.
pub fn preflight(cfg: &Config) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::invalid(
            "lbd",
            "must run as root: it loads XDP programs (CAP_BPF, CAP_NET_ADMIN)",
        ));
    }
    if cfg.lbd.interfaces.is_empty() {
        return Err(Error::invalid(
            "lbd.interfaces",
            "no interface to attach to: give --iface IFACE or set lbd.interfaces",
        ));
    }
    for iface in &cfg.lbd.interfaces {
        dataplane::ifindex(iface).map_err(|_| {
            Error::invalid(
                "lbd.interfaces",
                format!("interface {iface:?} does not exist"),
            )
        })?;
    }
    Ok(())
}

/// A running daemon: the controller task and everything that talks to it.
pub struct Daemon {
    cfg: Config,
    handle: Handle,
    controller: JoinHandle<Controller>,
    tickers: Vec<JoinHandle<()>>,
    checks: JoinHandle<()>,
    pools: Pools,
    pool_tasks: Vec<JoinHandle<()>>,
    stop_faces: Vec<oneshot::Sender<()>>,
    faces: Vec<JoinHandle<crate::sys::Result<()>>>,
    socket: PathBuf,
}

impl Daemon {
    /// Starts the daemon on `cfg` (validated; its VIPs are the desired state), keeping the
    /// state in `state_file`. A data path pinned by an earlier lbd is adopted; if starting
    /// fails it is left running as it was, and only what this start created is removed.
    pub async fn start(cfg: Config, state_file: PathBuf) -> Result<Daemon> {
        // Bound before the kernel is touched: a busy port then leaves nothing behind.
        let metrics_listener = match cfg.lbd.metrics {
            Some(addr) => {
                let listener = metrics::bind(addr).await?;
                tracing::info!("metrics on http://{addr}/metrics");
                Some(listener)
            }
            None => None,
        };
        let pin_dir = pin_dir(&cfg.lbd.instance);
        let opts = LoadOptions {
            hash_seed: cfg.lbd.hash_seed,
            udp_idle_timeout_s: cfg.lbd.udp_idle_timeout_s,
            max_new_flows_per_cpu: cfg.lbd.max_new_flows_per_cpu,
        };
        let adopted = pin_dir.exists();
        let mut dp = Dataplane::open(&pin_dir, opts)?;
        for iface in &cfg.lbd.interfaces {
            if let Err(e) = dp.attach(iface) {
                if !adopted {
                    let _ = dp.unpin();
                }
                return Err(e.into());
            }
            tracing::info!("lb_xdp attached to {iface}");
        }
        let mut ctl = Controller::new(dp, &cfg.lbd.instance, &cfg.lbd.interfaces);
        ctl.persist_to(state_file.clone(), cfg.lbd.clone());
        if let Err(e) = ctl.apply_config(&cfg) {
            if !adopted {
                let _ = ctl.into_dataplane().unpin();
            }
            return Err(Error {
                message: format!("{} (applying the config)", e.message),
                ..e
            });
        }
        let socket = cfg
            .lbd
            .socket
            .clone()
            .unwrap_or_else(|| api::default_socket(&cfg.lbd.instance));
        let listener = api::bind(&socket)?;
        let (handle, controller) = controller::spawn(ctl);
        let tickers = vec![
            tokio::spawn(every(ticker::NEXT_HOP_REFRESH, handle.clone(), || {
                Command::RefreshNextHops
            })),
            tokio::spawn(every(ticker::WEIGHTS_TICK, handle.clone(), || {
                Command::UpdateWeights
            })),
        ];
        let checks = tokio::spawn(health::run(handle.clone()));
        let bin_dir = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .ok_or_else(|| Error::internal("lbd", "cannot find its own directory"))?;
        let (pools, pool_tasks) = pool::spawn_all(&cfg.vips, &handle, |vip| {
            vm::provider_for(vip, &cfg.lbd.instance, &state_file, &bin_dir)
        })?;
        let mut stop_faces = Vec::new();
        let mut faces = Vec::new();
        if let Some(listener) = metrics_listener {
            let (stop, stopped) = oneshot::channel::<()>();
            stop_faces.push(stop);
            faces.push(tokio::spawn(metrics::serve(
                listener,
                handle.clone(),
                pools.clone(),
                async {
                    let _ = stopped.await;
                },
            )));
        }
        let (stop, stopped) = oneshot::channel::<()>();
        stop_faces.push(stop);
        faces.push(tokio::spawn(api::serve(
            listener,
            handle.clone(),
            pools.clone(),
            async {
                let _ = stopped.await;
            },
        )));
        tracing::info!(
            "serving {} VIPs; API on {} (root only)",
            cfg.vips.len(),
            socket.display()
        );
        Ok(Daemon {
            cfg,
            handle,
            controller,
            tickers,
            checks,
            pools,
            pool_tasks,
            stop_faces,
            faces,
            socket,
        })
    }

    /// The controller's handle, to send it commands.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Stops in reverse order of starting: the faces (no new requests), the pools (deleting
    /// their VMs unless `detach`), the workers, then the controller; with `detach` the data
    /// path stays attached and pinned for the next lbd, else it is detached and unpinned.
    pub async fn stop(self, detach: bool) -> Result<()> {
        let mut served = Ok(());
        for stop in self.stop_faces {
            let _ = stop.send(());
        }
        for face in self.faces {
            if let Ok(Err(e)) = face.await {
                served = Err(Error::from(e));
            }
        }
        pool::shutdown(&self.pools, self.pool_tasks, !detach).await;
        for task in self.tickers.into_iter().chain([self.checks]) {
            task.abort();
            let _ = task.await;
        }
        let _ = std::fs::remove_file(&self.socket);
        drop(self.handle);
        let ctl = self
            .controller
            .await
            .map_err(|e| Error::internal("controller task", e))?;
        let interfaces = self.cfg.lbd.interfaces.join(", ");
        let pins = pin_dir(&self.cfg.lbd.instance);
        if detach {
            tracing::info!(
                "stopped, data path left running: lb_xdp stays attached to {interfaces} with \
                 its maps and links pinned under {}; the next lbd adopts them",
                pins.display()
            );
        } else {
            ctl.into_dataplane().unpin()?;
            tracing::info!(
                "stopped, data path removed: lb_xdp detached from {interfaces}, maps and links \
                 unpinned from {} (use --detach to leave it running)",
                pins.display()
            );
        }
        served
    }
}

/// Logs to stderr through `tracing` at `RUST_LOG`'s filter (default `info`); `log` records,
/// the data path's among them (aya-log), are forwarded into it.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::internal("installing the SIGTERM handler", e))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    Ok(())
}

/// Runs a daemon on `cfg` until SIGTERM or SIGINT, then stops it (see [`Daemon::stop`]).
pub async fn run(cfg: Config, state_file: PathBuf, detach: bool) -> Result<()> {
    let daemon = Daemon::start(cfg, state_file).await?;
    let signalled = shutdown_signal().await;
    let stopped = daemon.stop(detach).await;
    signalled.and(stopped)
}
