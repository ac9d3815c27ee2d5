//! Layer 4 worker, pools of backend VMs: one manager task per pooled VIP owns its VMs. It
//! adopts the VMs an earlier lbd left, keeps at least `min`, replaces VMs whose server died, and autoscales on
//! the agents' CPU reports (target utilisation, cooldowns, hysteresis): scale-out creates VMs
//! that join the ring after `rise` good checks (then slow-start), scale-in drains the
//! least-loaded VM, waits for drain-complete from the data path (or the drain deadline) and
//! deletes it. Every decision is logged with its reason and kept for `lbctl vm list`.
mod registry;
mod scale;

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

pub use registry::Pools;

use tokio::sync::{mpsc, oneshot};

use super::vm::{now_ms, Provider, Vm, VmProvider, VmSpec, VmStatus};
use crate::{
    controller::{Command, Handle},
    model::{
        config::{PoolConfig, Proto, VipConfig},
        wire::{BackendChange, BackendState, BackendView, Event, PoolView, VmState, VmView},
        Error, Result,
    },
};

/// How often a manager looks at its pool.
const TICK: Duration = Duration::from_millis(500);
/// Decisions kept per pool.
const EVENTS_KEPT: usize = 64;
/// How long a pool waits after its provider failed to make a VM before it tries again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Operator requests to a pool manager.
pub enum PoolCommand {
    /// Create one VM now (optionally with its own CPU limit).
    Create(Option<f64>, oneshot::Sender<Result<String>>),
    /// Drain VM `name`, then delete it.
    Delete(String, oneshot::Sender<Result<()>>),
    /// Stop managing; with `true`, delete every VM first.
    Shutdown(bool, oneshot::Sender<()>),
}

/// Whether a VM has served yet.
#[derive(Clone, Copy, PartialEq)]
enum Joined {
    /// Created, waiting for `rise` good checks.
    No,
    /// Joined the ring this long after it was created.
    After(Duration),
    /// Found serving when lbd started.
    Adopted,
}

/// A VM the manager owns.
struct Managed {
    vm: Vm,
    joined: Joined,
    /// Set when the manager decided to drain it: delete once drained.
    draining: Option<String>,
}

/// Time since `vm` was created (from its record, so it survives a restart of lbd).
fn age(vm: &Vm) -> Duration {
    Duration::from_millis(now_ms().saturating_sub(vm.created_ms))
}

/// The manager of one pooled VIP.
pub struct Manager {
    vip: VipConfig,
    cfg: PoolConfig,
    provider: Provider,
    handle: Handle,
    pools: Pools,
    vms: Vec<Managed>,
    events: VecDeque<Event>,
    decisions: BTreeMap<String, u64>,
    last_out: Option<Instant>,
    last_change: Option<Instant>,
    /// The provider's failures by kind, the last one, and when making VMs may be tried again.
    errors: BTreeMap<String, u64>,
    last_error: Option<Event>,
    retry_at: Option<Instant>,
}

impl Manager {
    /// A manager for `vip` (which has a pool) over `provider`.
    pub fn new(vip: VipConfig, provider: Provider, handle: Handle, pools: Pools) -> Result<Self> {
        let cfg = vip
            .pool
            .clone()
            .ok_or_else(|| Error::invalid("pool", format!("vip {:?} has no pool", vip.name)))?;
        Ok(Manager {
            vip,
            cfg,
            provider,
            handle,
            pools,
            vms: Vec::new(),
            events: VecDeque::new(),
            decisions: BTreeMap::new(),
            last_out: None,
            last_change: None,
            errors: BTreeMap::new(),
            last_error: None,
            retry_at: None,
        })
    }

    /// Counts one decision of `kind` (see [`PoolView::decisions`]).
    fn decided(&mut self, kind: &str) {
        *self.decisions.entry(kind.to_string()).or_default() += 1;
    }

    fn event(&mut self, what: String) {
        tracing::info!("pool {}: {what}", self.vip.name);
        self.events.push_back(Event {
            at_ms: now_ms(),
            what,
        });
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
    }

    fn port(&self) -> u16 {
        self.cfg.backend_port(self.vip.mode, self.vip.port)
    }

    fn change(&self, addr: SocketAddr, weight: Option<u32>) -> BackendChange {
        BackendChange {
            vip: self.vip.name.clone(),
            addr: addr.ip(),
            port: addr.port(),
            weight,
        }
    }

    async fn backends(&self) -> Result<Vec<BackendView>> {
        let vips = self.handle.call(Command::Vips).await?;
        vips.into_iter()
            .find(|v| v.name == self.vip.name)
            .map(|v| v.backends)
            .ok_or_else(|| Error::not_found("vip", format!("{:?} is gone", self.vip.name)))
    }

    /// Adopts the VMs an earlier lbd left and drops backends no VM stands behind.
    async fn adopt(&mut self) -> Result<()> {
        let backends = self.backends().await?;
        let mut vms = self.provider.list(&self.vip.name).await?;
        if let Provider::Static(_) = self.provider {
            // Static VMs are their addresses: the ones among the VIP's backends are ours.
            for (slot, addr) in self.cfg.addrs.clone().iter().enumerate() {
                let sa = SocketAddr::new(*addr, self.port());
                if backends.iter().any(|b| b.socket_addr() == sa) {
                    vms.push(self.provider.create(&self.spec(slot as u32, None)).await?);
                }
            }
        }
        for vm in vms {
            let addr = vm.backend();
            if self.provider.status(&vm).await? != VmStatus::Running {
                self.event(format!(
                    "{}: found stopped after restart; deleting",
                    vm.name
                ));
                self.provider.delete(&vm).await?;
                continue;
            }
            if let Some(iface) = vm.meta.get("iface") {
                self.handle
                    .call(|tx| Command::Attach(iface.clone(), tx))
                    .await??;
            }
            let present = backends.iter().find(|b| b.socket_addr() == addr);
            if present.is_none() {
                self.handle
                    .call(|tx| Command::AddBackend(self.change(addr, Some(1)), tx))
                    .await??;
            }
            let draining = present.is_some_and(|b| b.weight == 0);
            self.vms.push(Managed {
                joined: Joined::Adopted,
                draining: draining.then(|| "drain in progress before the restart".to_string()),
                vm,
            });
        }
        for b in &backends {
            let addr = b.socket_addr();
            if !self.vms.iter().any(|m| m.vm.backend() == addr) {
                self.handle
                    .call(|tx| Command::RemoveBackend(self.change(addr, None), tx))
                    .await??;
            }
        }
        if !self.vms.is_empty() {
            let names: Vec<&str> = self.vms.iter().map(|m| m.vm.name.as_str()).collect();
            let msg = format!("adopted {} VMs: {}", names.len(), names.join(", "));
            self.event(msg);
        }
        Ok(())
    }

    fn spec(&self, slot: u32, cpu_limit: Option<f64>) -> VmSpec {
        VmSpec {
            pool: self.vip.name.clone(),
            slot,
            cpu_limit: cpu_limit.unwrap_or(self.cfg.cpu_limit),
            memory_mb: self.cfg.memory_mb,
            port: self.port(),
            udp: self.vip.proto == Proto::Udp,
            agent_port: self.vip.health.as_ref().map_or(0, |h| h.agent_port),
            work_us: self.cfg.work_us,
        }
    }

    /// Notes a failure of the provider: counted by kind, logged, shown, and no VM is made
    /// for [`RETRY_AFTER`] (a missing image or an engine that is down is not retried at every
    /// look). Other pools are not concerned.
    fn failed(&mut self, e: &super::vm::VmError) {
        *self.errors.entry(e.kind().to_string()).or_default() += 1;
        let what = format!("provider failed ({}): {e}", e.kind());
        self.event(what.clone());
        tracing::warn!("pool {}: {what}", self.vip.name);
        self.last_error = Some(Event {
            at_ms: now_ms(),
            what,
        });
        self.retry_at = Some(Instant::now() + RETRY_AFTER);
    }

    /// Whether a failure of the provider holds VM making back now.
    fn backing_off(&self) -> bool {
        self.retry_at.is_some_and(|t| Instant::now() < t)
    }

    /// Creates, starts and attaches one VM and adds it to the VIP (it joins the ring after
    /// `rise` good checks); on failure nothing of it is left.
    async fn create(&mut self, cpu_limit: Option<f64>, why: &str) -> Result<String> {
        let slot = (0..)
            .find(|s| !self.vms.iter().any(|m| m.vm.slot == *s))
            .unwrap_or(0);
        let mut vm = match self.provider.create(&self.spec(slot, cpu_limit)).await {
            Ok(vm) => vm,
            Err(e) => {
                self.failed(&e);
                return Err(e.into());
            }
        };
        let joined = async {
            if let Err(e) = self.provider.start(&mut vm).await {
                self.failed(&e);
                return Err(e.into());
            }
            if let Some(iface) = vm.meta.get("iface") {
                self.handle
                    .call(|tx| Command::Attach(iface.clone(), tx))
                    .await??;
            }
            let addr = vm.backend();
            self.handle
                .call(|tx| Command::AddBackend(self.change(addr, Some(1)), tx))
                .await??;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = joined {
            self.destroy(&vm).await;
            return Err(Error {
                message: format!("creating {}: {}", vm.name, e.message),
                ..e
            });
        }
        let name = vm.name.clone();
        self.event(format!("created {name} ({why})"));
        self.vms.push(Managed {
            vm,
            joined: Joined::No,
            draining: None,
        });
        Ok(name)
    }

    /// Takes a VM out of the VIP, detaches it and deletes it (errors are logged: a VM that
    /// cannot be deleted now is retried by `purge` or the next start).
    async fn destroy(&mut self, vm: &Vm) {
        let addr = vm.backend();
        let change = self.change(addr, None);
        let _ = self
            .handle
            .call(|tx| Command::RemoveBackend(change, tx))
            .await;
        if let Some(iface) = vm.meta.get("iface") {
            let _ = self
                .handle
                .call(|tx| Command::Detach(iface.clone(), tx))
                .await;
        }
        if let Err(e) = self.provider.delete(vm).await {
            tracing::error!("pool {}: deleting {}: {e}", self.vip.name, vm.name);
        }
    }

    /// Starts draining VM `i` (weight 0: no new flows, open ones finish).
    async fn drain(&mut self, i: usize, why: String) -> Result<()> {
        let addr = self.vms[i].vm.backend();
        self.handle
            .call(|tx| Command::AddBackend(self.change(addr, Some(0)), tx))
            .await??;
        let msg = format!("draining {} ({why})", self.vms[i].vm.name);
        self.vms[i].draining = Some(why);
        self.event(msg);
        Ok(())
    }

    /// One look at the pool: lifecycle first, then at most one scaling decision.
    async fn tick(&mut self) -> Result<()> {
        let backends = self.backends().await?;
        let find = |vm: &Vm| {
            backends
                .iter()
                .find(|b| b.socket_addr() == vm.backend())
                .cloned()
        };
        let mut views = Vec::new();
        let mut i = 0;
        while i < self.vms.len() {
            let status = self.provider.status(&self.vms[i].vm).await?;
            let b = find(&self.vms[i].vm);
            let state = b.as_ref().map(|b| b.state);
            let m = &mut self.vms[i];
            if status != VmStatus::Running {
                let vm = self.vms.remove(i).vm;
                self.event(format!("{}: server {status:?}; replacing it", vm.name));
                self.decided("replace");
                self.destroy(&vm).await;
                continue;
            }
            if m.joined == Joined::No && state == Some(BackendState::Active) {
                let took = age(&m.vm);
                m.joined = Joined::After(took);
                let msg = format!("{} serving {} ms after create", m.vm.name, took.as_millis());
                self.event(msg);
            }
            let m = &self.vms[i];
            if m.draining.is_some() && state == Some(BackendState::Drained) {
                let vm = self.vms.remove(i).vm;
                self.event(format!("{} drained; deleting it", vm.name));
                self.destroy(&vm).await;
                continue;
            }
            views.push(VmView {
                name: m.vm.name.clone(),
                backend: m.vm.backend(),
                status,
                state: VmState::of(state, m.joined != Joined::No),
                ring_weight: b.as_ref().map_or(0, |b| b.ring_weight),
                cpu: b.as_ref().and_then(|b| b.cpu),
                cpu_limit: m.vm.cpu_limit,
                inflight: b.as_ref().and_then(|b| b.inflight),
                active_flows: b.as_ref().map_or(0, |b| b.active_flows),
                new_flows: b.as_ref().map_or(0, |b| b.new_flows),
                age_s: age(&m.vm).as_secs_f64(),
                serving_after_ms: match m.joined {
                    Joined::After(d) => Some(d.as_millis() as u64),
                    _ => None,
                },
                host: m.vm.meta.get("uri").cloned(),
            });
            i += 1;
        }
        self.scale(&views).await
    }

    fn publish(&self, vms: &[VmView], utilisation: Option<f64>) {
        let view = PoolView {
            vip: self.vip.name.clone(),
            provider: format!("{:?}", self.cfg.provider).to_lowercase(),
            min: self.cfg.min,
            max: self.cfg.max,
            target_utilisation: self.cfg.target_utilisation,
            utilisation,
            vms: vms.to_vec(),
            events: self.events.iter().cloned().collect(),
            decisions: self.decisions.clone(),
            errors: self.errors.clone(),
            last_error: self.last_error.clone(),
        };
        self.pools.publish(&self.vip.name, view);
    }

    /// Runs the pool until it is told to shut down (or the controller stops).
    pub async fn run(mut self, mut commands: mpsc::Receiver<PoolCommand>) {
        if let Err(e) = self.adopt().await {
            self.event(format!("adopting VMs failed: {e:#}"));
        }
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.tick().await {
                        self.event(format!("error: {e:#}"));
                        if self.handle.call(Command::Status).await.is_err() {
                            return;
                        }
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(PoolCommand::Create(cpu, reply)) => {
                        let created = self.create(cpu, "requested").await;
                        if created.is_ok() {
                            self.decided("requested");
                        }
                        let _ = reply.send(created);
                    }
                    Some(PoolCommand::Delete(name, reply)) => {
                        let i = self.vms.iter().position(|m| m.vm.name == name);
                        let result = match i {
                            Some(i) => self.drain(i, "requested".into()).await,
                            None => Err(Error::not_found(
                                "vm",
                                format!("no VM named {name:?} in pool {:?}", self.vip.name),
                            )),
                        };
                        let _ = reply.send(result);
                    }
                    Some(PoolCommand::Shutdown(delete, reply)) => {
                        if delete {
                            for m in std::mem::take(&mut self.vms) {
                                self.destroy(&m.vm).await;
                            }
                        }
                        let _ = reply.send(());
                        return;
                    }
                    None => return,
                },
            }
        }
    }
}
