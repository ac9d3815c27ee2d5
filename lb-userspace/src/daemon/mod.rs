//! Layer 6, the daemon assembled: the desired state read from the config and the state file,
//! the data path loaded (or adopted) and attached, the controller, its workers and its faces
//! started in order, and stopped in reverse; SIGHUP reloads. `lbd` parses arguments and calls
//! [`run`]; tests drive a [`Daemon`] in-process.
mod startup;

use std::path::Path;

use tokio::{sync::oneshot, task::JoinHandle};

use self::startup::InstanceLock;
pub use self::startup::{default_state_file, desired_state, pin_dir, preflight, Startup};
use crate::{
    controller::{self, Command, Controller, Handle},
    dataplane::{object::LoadOptions, Dataplane},
    face::{
        api::{self, ApiContext},
        metrics,
    },
    model::{
        config::{Config, OnStop},
        Error, Result,
    },
    workers::{
        health,
        pool::Pools,
        reload::{self, Source},
        ticker::{self, every},
        vm,
    },
};

/// A running daemon: the controller task and everything that talks to it.
pub struct Daemon {
    cfg: Config,
    source: Source,
    handle: Handle,
    controller: JoinHandle<Controller>,
    tickers: Vec<JoinHandle<()>>,
    checks: JoinHandle<()>,
    pools: Pools,
    stop_faces: Vec<oneshot::Sender<()>>,
    faces: Vec<JoinHandle<crate::sys::Result<()>>>,
    sockets: Vec<std::path::PathBuf>,
    _lock: InstanceLock,
}

impl Daemon {
    /// Starts the daemon on `startup` (its desired state validated), holding the instance's
    /// lock for its life. A data path pinned by an earlier lbd is adopted; if starting fails
    /// it is left running as it was, and only what this start created is removed.
    pub async fn start(startup: Startup) -> Result<Daemon> {
        let Startup {
            cfg,
            state_file,
            config_digest,
            source,
        } = startup;
        let lock = InstanceLock::take(&cfg.lbd.instance)?;
        startup::raise_file_limit();
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
            max_flows: cfg.lbd.max_flows,
            ring_slots: cfg.lbd.ring_slots,
        };
        let adopted = pin_dir.exists();
        let mut dp = Dataplane::open(&pin_dir, opts)?;
        let mut attached = Vec::new();
        for iface in &cfg.lbd.interfaces {
            match dp.attach(iface, cfg.lbd.attach_for(iface)) {
                Ok(view) => attached.push(view),
                Err(e) => {
                    if !adopted {
                        let _ = dp.unpin();
                    }
                    return Err(e.into());
                }
            }
        }
        let mut ctl = Controller::new(dp, &cfg.lbd.instance, &attached);
        ctl.persist_to(state_file.clone(), cfg.lbd.clone(), config_digest);
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
        let read_only = match &cfg.lbd.read_group {
            Some(group) => Some(api::bind_read_only(&api::read_only_socket(&socket), group)?),
            None => None,
        };
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
        let host = vm::Host {
            instance: cfg.lbd.instance.clone(),
            state_file,
            bin_dir,
            attach: cfg.lbd.attach,
        };
        let pools = Pools::new(
            handle.clone(),
            std::sync::Arc::new(move |vip| vm::provider_for(vip, &host)),
        );
        pools.reconcile(&cfg.vips).await?;
        let mut stop_faces = Vec::new();
        let mut faces = Vec::new();
        let mut stopper = || {
            let (stop, stopped) = oneshot::channel::<()>();
            stop_faces.push(stop);
            async {
                let _ = stopped.await;
            }
        };
        if let Some(listener) = metrics_listener {
            let stopped = stopper();
            faces.push(tokio::spawn(metrics::serve(
                listener,
                handle.clone(),
                pools.clone(),
                stopped,
            )));
        }
        let context = ApiContext {
            handle: handle.clone(),
            pools: pools.clone(),
            source: source.clone(),
            running: cfg.lbd.clone(),
        };
        let mut sockets = vec![socket.clone()];
        if let Some(listener) = read_only {
            sockets.push(api::read_only_socket(&socket));
            let stopped = stopper();
            faces.push(tokio::spawn(api::serve(
                listener,
                context.clone(),
                true,
                stopped,
            )));
        }
        let stopped = stopper();
        faces.push(tokio::spawn(api::serve(listener, context, false, stopped)));
        tracing::info!(
            "serving {} VIPs; API on {} (root only)",
            cfg.vips.len(),
            socket.display()
        );
        Ok(Daemon {
            cfg,
            source,
            handle,
            controller,
            tickers,
            checks,
            pools,
            stop_faces,
            faces,
            sockets,
            _lock: lock,
        })
    }

    /// The controller's handle, to send it commands.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Reads the config again and applies it (see [`reload::reload`]).
    pub async fn reload(&self) -> Result<crate::model::wire::ApplyReport> {
        reload::reload(
            &self.source,
            &self.cfg.lbd,
            &self.handle,
            &self.pools,
            false,
        )
        .await
    }

    /// Stops in reverse order of starting: the faces (no new requests), the pools, the
    /// workers, then the controller. With `keep` the data path stays attached and pinned
    /// for the next lbd and the pools' VMs keep serving; without, the data path is detached
    /// and unpinned and the VMs deleted.
    pub async fn stop(self, keep: bool) -> Result<()> {
        let mut served = Ok(());
        for stop in self.stop_faces {
            let _ = stop.send(());
        }
        for face in self.faces {
            if let Ok(Err(e)) = face.await {
                served = Err(Error::from(e));
            }
        }
        self.pools.shutdown(!keep).await;
        drop(self.pools);
        for task in self.tickers.into_iter().chain([self.checks]) {
            task.abort();
            let _ = task.await;
        }
        for socket in &self.sockets {
            let _ = std::fs::remove_file(socket);
        }
        drop(self.handle);
        let ctl = self
            .controller
            .await
            .map_err(|e| Error::internal("controller task", e))?;
        let interfaces = self.cfg.lbd.interfaces.join(", ");
        let pins = pin_dir(&self.cfg.lbd.instance);
        if keep {
            tracing::info!(
                "stopped, data path left running: the balancer stays attached to {interfaces} with \
                 its maps and links pinned under {}; the next lbd adopts them",
                pins.display()
            );
        } else {
            ctl.into_dataplane().unpin()?;
            tracing::info!(
                "stopped, data path removed: the balancer detached from {interfaces}, maps and links \
                 unpinned from {} (lbd.on_stop = \"keep\" leaves it running)",
                pins.display()
            );
        }
        served
    }

    /// Whether a stop keeps the data path: `lbd.on_stop`, or `detach` from the command line.
    pub fn keeps_on_stop(&self, detach: bool) -> bool {
        detach || self.cfg.lbd.on_stop == OnStop::Keep
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

/// Runs a daemon on `startup` until SIGTERM or SIGINT, reloading its config on SIGHUP, then
/// stops it (keeping the data path per `lbd.on_stop`, or whatever it says with `detach`).
pub async fn run(startup: Startup, detach: bool) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handler = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| Error::internal(format!("installing the {name} handler"), e))
    };
    let mut term = handler(SignalKind::terminate(), "SIGTERM")?;
    let mut int = handler(SignalKind::interrupt(), "SIGINT")?;
    let mut hup = handler(SignalKind::hangup(), "SIGHUP")?;
    let daemon = Daemon::start(startup).await?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match daemon.reload().await {
                Ok(report) => tracing::info!("SIGHUP: reloaded: {}", reload::summary(&report)),
                Err(e) => tracing::error!("SIGHUP: reload refused, nothing changed: {e}"),
            },
        }
    }
    tracing::info!("shutting down");
    let keep = daemon.keeps_on_stop(detach);
    daemon.stop(keep).await
}
