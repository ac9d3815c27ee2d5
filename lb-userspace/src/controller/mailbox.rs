//! The controller's mailbox: the one task that owns the controller takes commands (with a reply
//! channel where there is an answer) from the API, the workers and the tickers.
use std::net::SocketAddr;

use aya::maps::{MapData, RingBuf};
use tokio::sync::{mpsc, oneshot};

use super::Controller;
use crate::model::{
    config::VipConfig,
    msg::{AgentReport, HealthBoard, HealthTarget},
    trace::TraceQuery,
    wire::{
        ApplyReport, BackendChange, BackendHealth, ChangeResult, ConnList, ConnQuery, Plan,
        PlanRequest, StatsView, StatusView, VipView,
    },
    Error, Result,
};

/// A request to the controller task, with where to send the answer.
pub enum Command {
    /// List VIPs.
    Vips(oneshot::Sender<Vec<VipView>>),
    /// Add a backend or change its weight.
    AddBackend(BackendChange, oneshot::Sender<Result<ChangeResult>>),
    /// Remove a backend.
    RemoveBackend(BackendChange, oneshot::Sender<Result<ChangeResult>>),
    /// Make a whole VIP set the desired state, or preview that (see [`Controller::apply`]).
    Apply {
        /// The VIPs wanted.
        vips: Vec<VipConfig>,
        /// Only report.
        dry_run: bool,
        /// Digest of the config they come from, for the state file.
        digest: Option<String>,
        /// The report.
        reply: oneshot::Sender<Result<ApplyReport>>,
    },
    /// The desired state as it runs.
    Desired(oneshot::Sender<Vec<VipConfig>>),
    /// The health checking of every checked backend.
    Health(oneshot::Sender<Vec<BackendHealth>>),
    /// The tracked flows a query matches.
    Conns(ConnQuery, oneshot::Sender<Result<ConnList>>),
    /// Read counters.
    Stats(oneshot::Sender<Result<StatsView>>),
    /// Identity and size.
    Status(oneshot::Sender<StatusView>),
    /// Plan (and maybe apply) a change.
    Plan(PlanRequest, oneshot::Sender<Result<Plan>>),
    /// Add a VIP.
    AddVip(Box<VipConfig>, oneshot::Sender<Result<()>>),
    /// Remove a VIP by name.
    RemoveVip(String, oneshot::Sender<Result<()>>),
    /// A health checker's verdict on a backend.
    SetHealth {
        /// VIP name.
        vip: String,
        /// Backend.
        addr: SocketAddr,
        /// Up or down.
        up: bool,
    },
    /// The board the health checkers write their results on.
    HealthBoard(oneshot::Sender<HealthBoard>),
    /// What to health-check.
    HealthTargets(oneshot::Sender<Vec<HealthTarget>>),
    /// A backend's agent reported: weight percentage (0 = drain) and load.
    SetAgentReport {
        /// VIP name.
        vip: String,
        /// Backend.
        addr: SocketAddr,
        /// What it said.
        report: AgentReport,
    },
    /// Time for a telemetry round (see [`Controller::update_weights`]).
    UpdateWeights,
    /// Make cached next hops stale so routes and neighbours are looked up again.
    RefreshNextHops,
    /// Attach the balancer to an interface (a new VM's link).
    Attach(String, oneshot::Sender<Result<()>>),
    /// Detach the balancer from an interface (a VM being deleted).
    Detach(String, oneshot::Sender<Result<()>>),
    /// Start sampling decisions (`lbctl trace`); the answer is the ring buffer to read.
    TraceStart(TraceQuery, oneshot::Sender<Result<RingBuf<MapData>>>),
    /// Stop sampling, giving the ring buffer back.
    TraceStop(RingBuf<MapData>),
}

/// What a call to a controller that has stopped gets.
fn stopped() -> Error {
    Error::busy("controller", "stopped")
}

/// Cloneable handle to the controller task.
#[derive(Clone)]
pub struct Handle(mpsc::Sender<Command>);

impl Handle {
    /// Sends a command that has no answer.
    pub async fn send(&self, cmd: Command) -> Result<()> {
        self.0.send(cmd).await.map_err(|_| stopped())
    }

    /// Sends a command built around a reply channel and waits for the answer.
    pub async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.0.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }
}

/// Runs the controller as the task that owns it; returns the handle and the task, which
/// gives the controller back once every handle is dropped.
pub fn spawn(mut ctl: Controller) -> (Handle, tokio::task::JoinHandle<Controller>) {
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::Vips(reply) => {
                    let _ = reply.send(ctl.vips());
                }
                Command::AddBackend(change, reply) => {
                    let _ = reply.send(ctl.add_backend(&change));
                }
                Command::RemoveBackend(change, reply) => {
                    let _ = reply.send(ctl.remove_backend(&change));
                }
                Command::Apply {
                    vips,
                    dry_run,
                    digest,
                    reply,
                } => {
                    let _ = reply.send(ctl.apply(vips, dry_run, digest));
                }
                Command::Desired(reply) => {
                    let _ = reply.send(ctl.desired());
                }
                Command::Health(reply) => {
                    let _ = reply.send(ctl.health());
                }
                Command::Conns(query, reply) => {
                    let _ = reply.send(ctl.conns(&query));
                }
                Command::Stats(reply) => {
                    let _ = reply.send(ctl.stats());
                }
                Command::Status(reply) => {
                    let _ = reply.send(ctl.status());
                }
                Command::Plan(req, reply) => {
                    let _ = reply.send(ctl.plan(&req));
                }
                Command::AddVip(cfg, reply) => {
                    let _ = reply.send(ctl.add_vip(*cfg));
                }
                Command::RemoveVip(name, reply) => {
                    let _ = reply.send(ctl.remove_vip(&name));
                }
                Command::SetHealth { vip, addr, up } => {
                    if let Err(e) = ctl.set_health(&vip, addr, up) {
                        tracing::warn!("health of {addr} on {vip}: {e:#}");
                    }
                }
                Command::HealthBoard(reply) => {
                    let _ = reply.send(ctl.board.clone());
                }
                Command::HealthTargets(reply) => {
                    let _ = reply.send(ctl.health_targets());
                }
                Command::SetAgentReport { vip, addr, report } => {
                    if let Err(e) = ctl.set_agent_report(&vip, addr, report) {
                        tracing::warn!("agent report of {addr} on {vip}: {e:#}");
                    }
                }
                Command::UpdateWeights => {
                    if let Err(e) = ctl.update_weights() {
                        tracing::warn!("weight update failed: {e:#}");
                    }
                    // The same 250 ms tick carries the data path's log records.
                    ctl.dp.drain_logs();
                }
                Command::Attach(iface, reply) => {
                    let _ = reply.send(ctl.attach_vm(&iface));
                }
                Command::Detach(iface, reply) => {
                    let _ = reply.send(ctl.detach_vm(&iface));
                }
                Command::TraceStart(query, reply) => {
                    let _ = reply.send(ctl.start_trace(&query));
                }
                Command::TraceStop(ring) => {
                    if let Err(e) = ctl.stop_trace(ring) {
                        tracing::warn!("stopping a trace: {e:#}");
                    }
                }
                Command::RefreshNextHops => {
                    if let Err(e) = ctl.dp.bump_nh_epoch() {
                        tracing::warn!("next-hop refresh failed: {e:#}");
                    }
                }
            }
        }
        ctl
    });
    (Handle(tx), task)
}
