//! Pools of backend VMs: one manager task per pooled VIP owns its VMs. It adopts the VMs an
//! earlier lbd left, keeps at least `min`, replaces VMs whose server died, and autoscales on
//! the agents' CPU reports (target utilisation, cooldowns, hysteresis): scale-out creates VMs
//! that join the ring after `rise` good checks (then slow-start), scale-in drains the
//! least-loaded VM, waits for drain-complete from the data path (or the drain deadline) and
//! deletes it. Every decision is logged with its reason and kept for `lbctl vm list`.
use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::{
    api::{BackendChange, BackendView},
    config::{PoolConfig, Proto, VipConfig},
    controller::{Command, Handle},
    vm::{now_ms, Provider, Vm, VmProvider, VmSpec, VmStatus},
};

/// How often a manager looks at its pool.
const TICK: Duration = Duration::from_millis(500);
/// Decisions kept per pool.
const EVENTS_KEPT: usize = 64;

/// A VM as `lbctl vm list` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VmView {
    /// Name (`<pool>-<slot>`).
    pub name: String,
    /// Address:port the VIP sends it flows on.
    pub backend: SocketAddr,
    /// Provider status: `created`, `running`, `stopped`, `missing`.
    pub status: VmStatus,
    /// `joining` (not yet `rise` good checks), `active`, `draining`, `drained`, `down`.
    pub state: String,
    /// Ring weight now (see `BackendView::ring_weight`).
    pub ring_weight: u32,
    /// CPU use against its limit, from its agent.
    pub cpu: Option<f64>,
    /// CPU limit in cores.
    pub cpu_limit: f64,
    /// Requests in flight, from its agent.
    pub inflight: Option<u64>,
    /// Open flows in the connection table.
    pub active_flows: u64,
    /// Flows balanced to it so far.
    pub new_flows: u64,
    /// Seconds since it was created.
    pub age_s: f64,
    /// Milliseconds from create to serving (joined the ring), once it has; none for a VM
    /// adopted from an earlier lbd.
    pub serving_after_ms: Option<u64>,
}

/// A scaling decision or lifecycle event.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened and why.
    pub what: String,
}

/// A pool as `lbctl vm list` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PoolView {
    /// VIP name.
    pub vip: String,
    /// Provider kind.
    pub provider: String,
    /// Fewest VMs.
    pub min: u32,
    /// Most VMs.
    pub max: u32,
    /// Target mean CPU use.
    pub target_utilisation: f64,
    /// Mean CPU use of the active VMs (None: no reports yet).
    pub utilisation: Option<f64>,
    /// The VMs.
    pub vms: Vec<VmView>,
    /// Latest decisions, oldest first.
    pub events: Vec<Event>,
    /// VMs created or drained so far, by reason: `scale_out`, `scale_in`, `min` (below
    /// min), `replace` (server died), `requested` (lbctl).
    pub decisions: BTreeMap<String, u64>,
}

/// Operator requests to a pool manager.
pub enum PoolCommand {
    /// Create one VM now (optionally with its own CPU limit).
    Create(Option<f64>, oneshot::Sender<Result<String>>),
    /// Drain VM `name`, then delete it.
    Delete(String, oneshot::Sender<Result<()>>),
    /// Stop managing; with `true`, delete every VM first.
    Shutdown(bool, oneshot::Sender<()>),
}

/// Every pool: its latest view and its manager's channel, shared with the API.
pub type Pools = Arc<Mutex<BTreeMap<String, (PoolView, mpsc::Sender<PoolCommand>)>>>;

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
}

impl Manager {
    /// A manager for `vip` (which has a pool) over `provider`.
    pub fn new(vip: VipConfig, provider: Provider, handle: Handle, pools: Pools) -> Result<Self> {
        let cfg = vip
            .pool
            .clone()
            .ok_or_else(|| anyhow!("vip {:?} has no pool", vip.name))?;
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
        })
    }

    /// Counts one decision of `kind` (see [`PoolView::decisions`]).
    fn decided(&mut self, kind: &str) {
        *self.decisions.entry(kind.to_string()).or_default() += 1;
    }

    fn event(&mut self, what: String) {
        log::info!("pool {}: {what}", self.vip.name);
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
            .ok_or_else(|| anyhow!("vip {:?} is gone", self.vip.name))
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

    /// Creates, starts and attaches one VM and adds it to the VIP (it joins the ring after
    /// `rise` good checks); on failure nothing of it is left.
    async fn create(&mut self, cpu_limit: Option<f64>, why: &str) -> Result<String> {
        let slot = (0..)
            .find(|s| !self.vms.iter().any(|m| m.vm.slot == *s))
            .unwrap_or(0);
        let mut vm = self.provider.create(&self.spec(slot, cpu_limit)).await?;
        let joined = async {
            self.provider.start(&mut vm).await?;
            if let Some(iface) = vm.meta.get("iface") {
                self.handle
                    .call(|tx| Command::Attach(iface.clone(), tx))
                    .await??;
            }
            let addr = vm.backend();
            self.handle
                .call(|tx| Command::AddBackend(self.change(addr, Some(1)), tx))
                .await??;
            Ok::<_, anyhow::Error>(())
        }
        .await;
        if let Err(e) = joined {
            self.destroy(&vm).await;
            bail!("creating {}: {e:#}", vm.name);
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
            log::error!("pool {}: deleting {}: {e}", self.vip.name, vm.name);
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
            let state = b.as_ref().map_or("missing", |b| b.state.as_str());
            let m = &mut self.vms[i];
            if status != VmStatus::Running {
                let vm = self.vms.remove(i).vm;
                self.event(format!("{}: server {status:?}; replacing it", vm.name));
                self.decided("replace");
                self.destroy(&vm).await;
                continue;
            }
            if m.joined == Joined::No && state == "active" {
                let took = age(&m.vm);
                m.joined = Joined::After(took);
                let msg = format!("{} serving {} ms after create", m.vm.name, took.as_millis());
                self.event(msg);
            }
            let m = &self.vms[i];
            if m.draining.is_some() && state == "drained" {
                let vm = self.vms.remove(i).vm;
                self.event(format!("{} drained; deleting it", vm.name));
                self.destroy(&vm).await;
                continue;
            }
            views.push(VmView {
                name: m.vm.name.clone(),
                backend: m.vm.backend(),
                status,
                state: if m.joined == Joined::No && state == "down" {
                    "joining".into()
                } else {
                    state.into()
                },
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
            });
            i += 1;
        }
        let live: Vec<&VmView> = views
            .iter()
            .filter(|v| v.state != "draining" && v.state != "drained")
            .collect();
        let active: Vec<&VmView> = live
            .iter()
            .copied()
            .filter(|v| v.state == "active")
            .collect();
        let reports: Vec<f64> = active.iter().filter_map(|v| v.cpu).collect();
        let utilisation =
            (!reports.is_empty()).then(|| reports.iter().sum::<f64>() / reports.len() as f64);
        let joining = live.iter().any(|v| v.state == "joining");
        self.publish(&views, utilisation);
        let n = live.len() as u32;
        let since = |t: Option<Instant>| t.map_or(Duration::MAX, |t| t.elapsed());
        if n < self.cfg.min {
            let why = format!("{n} VMs, below min {}", self.cfg.min);
            self.create(None, &why).await?;
            self.decided("min");
            self.last_change = Some(Instant::now());
            return Ok(());
        }
        let Some(u) = utilisation else {
            return Ok(());
        };
        let target = self.cfg.target_utilisation;
        if u > target
            && n < self.cfg.max
            && !joining
            && since(self.last_out) >= Duration::from_secs(self.cfg.scale_out_cooldown_s)
        {
            // Enough VMs to bring the mean to the target, at least one more.
            let want = ((f64::from(n) * u / target).ceil() as u32).clamp(n + 1, self.cfg.max);
            let why = format!(
                "cpu {:.0}% > target {:.0}%: {n} -> {want} VMs",
                u * 100.0,
                target * 100.0
            );
            for _ in n..want {
                self.create(None, &why).await?;
                self.decided("scale_out");
            }
            self.last_out = Some(Instant::now());
            self.last_change = self.last_out;
            return Ok(());
        }
        let projected = if n > 1 {
            u * f64::from(n) / f64::from(n - 1)
        } else {
            f64::MAX
        };
        if n > self.cfg.min
            && !joining
            && projected < target * (1.0 - self.cfg.hysteresis)
            && since(self.last_change) >= Duration::from_secs(self.cfg.scale_in_cooldown_s)
        {
            // The least-loaded active VM: fewest open flows break nothing if it drains.
            let pick = active
                .iter()
                .min_by(|a, b| {
                    (a.active_flows, a.cpu.unwrap_or(0.0))
                        .partial_cmp(&(b.active_flows, b.cpu.unwrap_or(0.0)))
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
                .map(|v| v.name.clone());
            if let Some(name) = pick {
                let i = self
                    .vms
                    .iter()
                    .position(|m| m.vm.name == name)
                    .ok_or_else(|| anyhow!("{name} vanished"))?;
                let why = format!(
                    "cpu {:.0}%, {:.0}% on {} VMs < {:.0}%",
                    u * 100.0,
                    projected * 100.0,
                    n - 1,
                    target * (1.0 - self.cfg.hysteresis) * 100.0
                );
                self.drain(i, why).await?;
                self.decided("scale_in");
                self.last_change = Some(Instant::now());
            }
        }
        Ok(())
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
        };
        if let Ok(mut pools) = self.pools.lock() {
            if let Some(entry) = pools.get_mut(&self.vip.name) {
                entry.0 = view;
            }
        }
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
                            None => Err(anyhow!("vm: no VM named {name:?} in pool {:?}", self.vip.name)),
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

/// The latest view of every pool.
pub fn snapshot(pools: &Pools) -> Vec<PoolView> {
    pools
        .lock()
        .map(|p| p.values().map(|(v, _)| v.clone()).collect())
        .unwrap_or_default()
}

/// Starts a manager for every pooled VIP of `vips`; returns the shared registry.
pub fn spawn_all(
    vips: &[VipConfig],
    handle: &Handle,
    make: impl Fn(&VipConfig) -> Result<Provider>,
) -> Result<(Pools, Vec<tokio::task::JoinHandle<()>>)> {
    let pools: Pools = Arc::default();
    let mut tasks = Vec::new();
    for vip in vips.iter().filter(|v| v.pool.is_some()) {
        let (tx, rx) = mpsc::channel(8);
        let manager = Manager::new(vip.clone(), make(vip)?, handle.clone(), pools.clone())?;
        if let Ok(mut p) = pools.lock() {
            p.insert(vip.name.clone(), (PoolView::default(), tx));
        }
        tasks.push(tokio::spawn(manager.run(rx)));
    }
    Ok((pools, tasks))
}

/// Tells every manager to stop (deleting its VMs if `delete`) and waits for them.
pub async fn shutdown(pools: &Pools, tasks: Vec<tokio::task::JoinHandle<()>>, delete: bool) {
    let senders: Vec<_> = pools
        .lock()
        .map(|p| p.values().map(|(_, tx)| tx.clone()).collect())
        .unwrap_or_default();
    for tx in senders {
        let (done, wait) = oneshot::channel();
        if tx.send(PoolCommand::Shutdown(delete, done)).await.is_ok() {
            let _ = wait.await;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// The pools as a text table: per pool a header, its VMs, and its last `events` decisions.
pub fn render_pools(pools: &[PoolView], events: usize) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.0}%", v * 100.0));
    for p in pools {
        let _ = writeln!(
            out,
            "pool {} ({}): {} VMs (min {}, max {}), cpu {} (target {:.0}%)",
            p.vip,
            p.provider,
            p.vms.len(),
            p.min,
            p.max,
            pct(p.utilisation),
            p.target_utilisation * 100.0
        );
        let _ = writeln!(
            out,
            "  {:<10} {:<18} {:<9} {:>5} {:>6} {:>7} {:>9} {:>7} {:>7}",
            "VM", "BACKEND", "STATE", "CPU", "LIMIT", "WEIGHT", "NEW FLOWS", "ACTIVE", "SERVING"
        );
        for v in &p.vms {
            let _ = writeln!(
                out,
                "  {:<10} {:<18} {:<9} {:>5} {:>6.2} {:>7} {:>9} {:>7} {:>7}",
                v.name,
                v.backend.to_string(),
                v.state,
                pct(v.cpu),
                v.cpu_limit,
                v.ring_weight,
                v.new_flows,
                v.active_flows,
                v.serving_after_ms
                    .map_or("-".to_string(), |ms| format!("{ms}ms"))
            );
        }
        let skip = p.events.len().saturating_sub(events);
        for e in &p.events[skip..] {
            let secs = (now_ms().saturating_sub(e.at_ms)) as f64 / 1000.0;
            let _ = writeln!(out, "  {:>6.1}s ago  {}", secs, e.what);
        }
    }
    out
}
