//! The controller: owns the desired state and the data plane, and applies each change whole
//! (backends first, then the ring swap, then the VIP; removals in reverse) or not at all.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use anyhow::{anyhow, bail, Result};
use lb_common::{
    filter, Backend, Reason, VipKey, VipMeta, FAMILY_V4, FAMILY_V6, MAX_BACKENDS, MAX_VIPS,
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    api::{
        backend_state, BackendChange, BackendView, PlanOp, PlanRequest, StatsView, StatusView,
        VipView,
    },
    config::{validate_backend, BackendConfig, Config, Daemon, Mode, Policy, VipConfig},
    dataplane::Dataplane,
    health::AgentReport,
    maglev::{self, Member},
    plan::{self, Plan},
    weights::{self, Telemetry},
};

/// Raw network-order words of an address, as `lb-common` stores them.
pub fn addr_words(addr: IpAddr) -> [u32; 4] {
    match addr {
        IpAddr::V4(a) => [u32::from_ne_bytes(a.octets()), 0, 0, 0],
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

fn family(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        FAMILY_V4
    } else {
        FAMILY_V6
    }
}

/// The data-path key of a VIP.
pub fn vip_key(vip: &VipConfig) -> VipKey {
    VipKey {
        addr: addr_words(vip.addr),
        port: vip.port.to_be(),
        proto: vip.proto.number(),
        family: family(vip.addr),
    }
}

/// A VIP as applied to the data path.
struct Vip {
    cfg: VipConfig,
    id: u32,
    /// Live `VipMeta::ring` value.
    ring: u32,
    /// The live Maglev table (backend ids), to measure what a rebuild would move.
    table: Vec<u32>,
    /// Ring weight of each backend in the live table, in `cfg.backends` order.
    ring_weights: Vec<u32>,
    /// When telemetry last updated the weight factors.
    weights_updated: std::time::Instant,
}

/// Backend ids shared by every VIP that uses the same address:port.
#[derive(Default)]
struct BackendIds {
    by_addr: HashMap<SocketAddr, (u32, u32)>,
}

impl BackendIds {
    fn get(&self, addr: &SocketAddr) -> Option<u32> {
        self.by_addr.get(addr).map(|(id, _)| *id)
    }

    /// A free id, skipping `reserved` ones (pinned records not yet claimed or released).
    fn free_id(&self, reserved: &HashMap<SocketAddr, u32>) -> Option<u32> {
        let used: std::collections::HashSet<u32> = self
            .by_addr
            .values()
            .map(|(id, _)| *id)
            .chain(reserved.values().copied())
            .collect();
        (1..MAX_BACKENDS).find(|id| !used.contains(id))
    }
}

/// Owner of the desired state and of every map handle.
pub struct Controller {
    dp: Dataplane,
    instance: String,
    interfaces: Vec<String>,
    vips: Vec<Vip>,
    ids: BackendIds,
    /// The prefilter bitmaps as last written.
    filter: Vec<u64>,
    /// Applied changes: count, seconds in all, seconds of the last one.
    timings: (u64, f64, f64),
    /// When each backend with weight 0 started draining, by (VIP name, backend).
    drain_started: HashMap<(String, SocketAddr), std::time::Instant>,
    /// After this long a draining backend counts as drained (0: no deadline).
    drain_timeout: std::time::Duration,
    /// What backends' agents last reported (weight percentage, load), by (VIP name, backend).
    agent: HashMap<(String, SocketAddr), AgentReport>,
    /// Telemetry weight factors (1 = the configured weight), by (VIP name, backend).
    factor: HashMap<(String, SocketAddr), f64>,
    /// When each backend last came up (joined, or passed its health checks), for slow-start.
    up_since: HashMap<(String, SocketAddr), std::time::Instant>,
    /// Which join of the backend to its VIP this is (see `health::Target::generation`);
    /// absent for backends there from the start, and `joins` counts them all.
    generation: HashMap<(String, SocketAddr), u64>,
    joins: u64,
    /// (VIP name, backend) pairs whose health checks say down.
    down: std::collections::HashSet<(String, SocketAddr)>,
    /// VIPs found in adopted (pinned) maps and not claimed by the config yet.
    pinned_vips: HashMap<VipKey, VipMeta>,
    /// Backend records found in adopted maps and not claimed yet: address -> id.
    pinned_backends: HashMap<SocketAddr, u32>,
    /// Where the desired state is written after every change, with the daemon settings.
    persist: Option<(std::path::PathBuf, Daemon)>,
}

/// The address of a backend record.
fn record_addr(b: &Backend) -> SocketAddr {
    let bytes: Vec<u8> = b.addr.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = if b.family == FAMILY_V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&bytes);
        IpAddr::from(a)
    };
    SocketAddr::new(ip, u16::from_be(b.port))
}

/// Prefilter bitmaps for a set of VIPs, where VIP `idx` has `backends` instead of its own.
fn filter_bits(vips: &[Vip], idx: usize, backends: &[BackendConfig]) -> Vec<u64> {
    let mut words = vec![0u64; filter::TOTAL_WORDS as usize];
    let mut set = |map: u32, value: u16| {
        let (word, bit) = filter::locate(map, value);
        words[word as usize] |= bit;
    };
    for (i, vip) in vips.iter().enumerate() {
        set(filter::VIP_PORTS, vip.cfg.port);
        // ICMP has no ports: the ping entry of every VIP address is found under port 0.
        set(filter::VIP_PORTS, 0);
        set(filter::VIP_ADDRS, filter::fold(&addr_words(vip.cfg.addr)));
        let set_backends = if i == idx {
            backends
        } else {
            &vip.cfg.backends
        };
        // Only NAT replies come back through the balancer.
        if vip.cfg.mode == Mode::Nat {
            for b in set_backends {
                set(filter::BACKEND_PORTS, b.port);
            }
        }
    }
    words
}

impl Controller {
    /// A controller over a loaded data plane, with no VIPs yet.
    /// If the maps were adopted from an earlier controller, their VIP ids, live ring buffers
    /// and backend ids are reused for the same VIPs and backends, so tracked flows keep their
    /// backends and a ring swap never writes the buffer packets are reading.
    pub fn new(dp: Dataplane, instance: &str, interfaces: &[String]) -> Self {
        let pinned = dp.pinned_state();
        Controller {
            dp,
            instance: instance.to_string(),
            interfaces: interfaces.to_vec(),
            vips: Vec::new(),
            ids: BackendIds::default(),
            filter: vec![0; filter::TOTAL_WORDS as usize],
            down: Default::default(),
            agent: HashMap::new(),
            factor: HashMap::new(),
            up_since: HashMap::new(),
            generation: HashMap::new(),
            joins: 0,
            drain_started: HashMap::new(),
            drain_timeout: std::time::Duration::from_secs(300),
            timings: (0, 0.0, 0.0),
            pinned_vips: pinned.vips.into_iter().collect(),
            pinned_backends: pinned
                .backends
                .into_iter()
                .map(|(id, b)| (record_addr(&b), id))
                .collect(),
            persist: None,
        }
    }

    /// After every change, writes the desired state (as a config file) to `path`; takes the
    /// drain deadline from the daemon settings.
    pub fn persist_to(&mut self, path: std::path::PathBuf, daemon: Daemon) {
        self.drain_timeout = std::time::Duration::from_secs(daemon.drain_timeout_s);
        self.persist = Some((path, daemon));
    }

    /// Applies every VIP of a validated config, then drops whatever adopted maps held that
    /// the config no longer has.
    pub fn apply_config(&mut self, cfg: &Config) -> Result<()> {
        for vip in &cfg.vips {
            self.add_vip(vip.clone())?;
        }
        for (key, meta) in std::mem::take(&mut self.pinned_vips) {
            self.dp.remove_vip(&key, meta.vip_id)?;
        }
        for (_, id) in std::mem::take(&mut self.pinned_backends) {
            self.dp.clear_backend(id)?;
        }
        self.save();
        Ok(())
    }

    /// Writes the desired state if persistence is on. A failure is logged: the change is
    /// already live, and the next successful change writes the file again.
    fn save(&self) {
        let Some((path, daemon)) = &self.persist else {
            return;
        };
        let cfg = Config {
            lbd: daemon.clone(),
            vips: self.vips.iter().map(|v| v.cfg.clone()).collect(),
        };
        let write = || -> Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, toml::to_string(&cfg)?)?;
            std::fs::rename(&tmp, path)?;
            Ok(())
        };
        if let Err(e) = write() {
            log::error!("could not save the state to {}: {e:#}", path.display());
        }
    }

    /// The data plane, e.g. for tests that run packets through it.
    pub fn dataplane(&mut self) -> &mut Dataplane {
        &mut self.dp
    }

    /// Gives the data plane back (to unpin it on shutdown).
    pub fn into_dataplane(self) -> Dataplane {
        self.dp
    }

    /// Adds a VIP with its backends.
    pub fn add_vip(&mut self, cfg: VipConfig) -> Result<()> {
        cfg.validate("vip")?;
        if self.vips.iter().any(|v| v.cfg.name == cfg.name) {
            bail!("vip: {:?} exists already", cfg.name);
        }
        let used: Vec<u32> = self.vips.iter().map(|v| v.id).collect();
        let reserved: Vec<u32> = self.pinned_vips.values().map(|m| m.vip_id).collect();
        let (id, ring) = match self.pinned_vips.remove(&vip_key(&cfg)) {
            Some(meta) if !used.contains(&meta.vip_id) => (meta.vip_id, meta.ring),
            _ => (
                (0..MAX_VIPS)
                    .find(|i| !used.contains(i) && !reserved.contains(i))
                    .ok_or_else(|| anyhow!("vip: all {MAX_VIPS} VIP slots are in use"))?,
                0,
            ),
        };
        let backends = cfg.backends.clone();
        self.vips.push(Vip {
            cfg: VipConfig {
                backends: Vec::new(),
                ..cfg
            },
            id,
            ring,
            table: Vec::new(),
            ring_weights: Vec::new(),
            weights_updated: std::time::Instant::now(),
        });
        let idx = self.vips.len() - 1;
        if let Err(e) = self.commit(idx, backends) {
            self.vips.pop();
            return Err(e);
        }
        // The filter already admits ICMP (port 0) to this address: see `filter_bits`.
        self.dp.answer_pings(self.vips[idx].cfg.addr)
    }

    /// Removes a VIP: new packets to it pass to the stack (removals in reverse order: the VIP
    /// entry first, then its ping entry if no other VIP shares the address, then backend ids
    /// and filter bits).
    pub fn remove_vip(&mut self, name: &str) -> Result<()> {
        let idx = self.vip_index(name)?;
        let key = vip_key(&self.vips[idx].cfg);
        self.dp.remove_vip(&key, self.vips[idx].id)?;
        let vip = self.vips.remove(idx);
        if !self.vips.iter().any(|v| v.cfg.addr == vip.cfg.addr) {
            self.dp.stop_answering_pings(vip.cfg.addr)?;
        }
        for b in &vip.cfg.backends {
            self.release(b.socket_addr())?;
        }
        self.forget(|v, _| v != vip.cfg.name);
        // Recompute the filter without the VIP (index past the end: no VIP is replaced).
        let next = filter_bits(&self.vips, usize::MAX, &[]);
        self.dp.set_filter(&next);
        self.filter = next;
        self.save();
        Ok(())
    }

    fn vip_index(&self, name: &str) -> Result<usize> {
        self.vips
            .iter()
            .position(|v| v.cfg.name == name || vip_label(&v.cfg) == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.vips.iter().map(|v| v.cfg.name.as_str()).collect();
                anyhow!("vip: no VIP named {name:?} (known: {})", known.join(", "))
            })
    }

    /// Adds a backend to a VIP, or changes its weight if it is there.
    pub fn add_backend(&mut self, change: &BackendChange) -> Result<VipView> {
        let idx = self.vip_index(&change.vip)?;
        let target = SocketAddr::new(change.addr, change.port);
        let weight = Some(change.weight.unwrap_or(1));
        let set = self.proposed_set(idx, PlanOp::Add, target, weight)?;
        self.apply_set(idx, set)?;
        Ok(self.view_of(idx))
    }

    /// Removes a backend from a VIP; its tracked flows move to the remaining backends.
    pub fn remove_backend(&mut self, change: &BackendChange) -> Result<VipView> {
        let idx = self.vip_index(&change.vip)?;
        let target = SocketAddr::new(change.addr, change.port);
        let set = self.proposed_set(idx, PlanOp::Remove, target, None)?;
        self.apply_set(idx, set)?;
        Ok(self.view_of(idx))
    }

    /// The backend set of VIP `idx` after `op` on `target` (weight: `add` defaults to 1,
    /// `weight` needs one). The changed backend is validated; the others already were.
    fn proposed_set(
        &self,
        idx: usize,
        op: PlanOp,
        target: SocketAddr,
        weight: Option<u32>,
    ) -> Result<Vec<BackendConfig>> {
        let vip = &self.vips[idx].cfg;
        let mut set = vip.backends.clone();
        let present = set.iter().position(|b| b.socket_addr() == target);
        let changed = BackendConfig {
            addr: target.ip(),
            port: target.port(),
            weight: match op {
                PlanOp::Weight => {
                    weight.ok_or_else(|| anyhow!("backend.weight: required for op weight"))?
                }
                _ => weight.unwrap_or(1),
            },
        };
        match (op, present) {
            (PlanOp::Remove, Some(i)) => {
                set.remove(i);
                return Ok(set);
            }
            (PlanOp::Remove | PlanOp::Weight, None) => {
                bail!("backend: {target} is not a backend of {:?}", vip.name)
            }
            (PlanOp::Add | PlanOp::Weight, Some(i)) => set[i].weight = changed.weight,
            (PlanOp::Add, None) => set.push(changed.clone()),
        }
        validate_backend("backend", vip, &changed)?;
        Ok(set)
    }

    /// Commits a new backend set for VIP `idx`. With health checks, a backend new to the VIP
    /// joins the ring only after `rise` good checks; backends that leave forget their health.
    fn apply_set(&mut self, idx: usize, set: Vec<BackendConfig>) -> Result<()> {
        let name = self.vips[idx].cfg.name.clone();
        let old: Vec<SocketAddr> = self.vips[idx]
            .cfg
            .backends
            .iter()
            .map(BackendConfig::socket_addr)
            .collect();
        let kept: Vec<SocketAddr> = set.iter().map(BackendConfig::socket_addr).collect();
        let mut joining = Vec::new();
        if self.vips[idx].cfg.health.is_some() {
            for addr in kept.iter().filter(|a| !old.contains(a)) {
                if self.down.insert((name.clone(), *addr)) {
                    joining.push((name.clone(), *addr));
                }
            }
        }
        if let Err(e) = self.commit(idx, set) {
            for key in joining {
                self.down.remove(&key);
            }
            return Err(e);
        }
        self.forget(|v, a| v != name || kept.contains(a));
        for addr in kept.iter().filter(|a| !old.contains(a)) {
            self.joins += 1;
            self.generation.insert((name.clone(), *addr), self.joins);
        }
        Ok(())
    }

    /// Drops the health, agent, telemetry and slow-start state of every (VIP, backend) pair
    /// `keep` refuses, so a backend that comes back later (a new VM at a reused address)
    /// starts afresh.
    fn forget(&mut self, keep: impl Fn(&str, &SocketAddr) -> bool) {
        self.down.retain(|(v, a)| keep(v, a));
        self.agent.retain(|(v, a), _| keep(v, a));
        self.factor.retain(|(v, a), _| keep(v, a));
        self.up_since.retain(|(v, a), _| keep(v, a));
        self.generation.retain(|(v, a), _| keep(v, a));
    }

    /// Replaces the whole backend set of a VIP in one ring swap.
    pub fn replace_backends(&mut self, vip: &str, backends: Vec<BackendConfig>) -> Result<VipView> {
        let idx = self.vip_index(vip)?;
        let mut check = self.vips[idx].cfg.clone();
        check.backends = backends;
        check.validate("vip")?;
        self.commit(idx, check.backends)?;
        Ok(self.view_of(idx))
    }

    /// Applies a health check's verdict: a down backend leaves the ring (its tracked flows
    /// stay, as when draining) and an up one returns with its weight.
    pub fn set_health(&mut self, vip: &str, addr: SocketAddr, up: bool) -> Result<()> {
        let Some(idx) = self.vip_with_backend(vip, addr)? else {
            return Ok(());
        };
        let key = (vip.to_string(), addr);
        let changed = if up {
            self.down.remove(&key)
        } else {
            self.down.insert(key)
        };
        if changed {
            log::info!(
                "{vip}: backend {addr} is {}",
                if up { "up" } else { "down" }
            );
            if up {
                self.up_since
                    .insert((vip.to_string(), addr), std::time::Instant::now());
            }
            self.rebuild(idx)?;
        }
        Ok(())
    }

    /// Records an agent's report: its weight percentage (0 = drain) scales the backend's
    /// configured weight at once; its load feeds the `resource` policy.
    pub fn set_agent_report(
        &mut self,
        vip: &str,
        addr: SocketAddr,
        report: AgentReport,
    ) -> Result<()> {
        let Some(idx) = self.vip_with_backend(vip, addr)? else {
            return Ok(());
        };
        let old = self.agent.insert((vip.to_string(), addr), report);
        if old.map_or(100, |r| r.percent) != report.percent {
            log::info!("{vip}: agent of {addr} reports {}%", report.percent);
            self.rebuild(idx)?;
        }
        Ok(())
    }

    /// One telemetry round: for every VIP whose update interval has passed, moves each
    /// backend's weight factor toward its policy's target and advances slow-start, then
    /// rebuilds the ring if a weight moved enough to matter, shortening the step until the
    /// rebuild moves at most `max_moved` of the table.
    pub fn update_weights(&mut self) -> Result<()> {
        let due = |v: &Vip| {
            let w = &v.cfg.weights;
            // Static weights without slow-start never move on their own.
            (w.policy != Policy::Static || w.slow_start_s > 0)
                && v.weights_updated.elapsed() >= std::time::Duration::from_millis(w.interval_ms)
        };
        // Walking the connection table is the expensive part: only for least-conn.
        let active = if self
            .vips
            .iter()
            .any(|v| due(v) && v.cfg.weights.policy == Policy::LeastConn)
        {
            self.dp.active_flows().unwrap_or_default()
        } else {
            HashMap::new()
        };
        for idx in 0..self.vips.len() {
            if !due(&self.vips[idx]) {
                continue;
            }
            let vip = &self.vips[idx];
            let w = &vip.cfg.weights;
            let name = vip.cfg.name.clone();
            let telemetry: Vec<Telemetry> = vip
                .cfg
                .backends
                .iter()
                .map(|b| {
                    let report = self.agent.get(&(name.clone(), b.socket_addr()));
                    let id = self.ids.get(&b.socket_addr()).unwrap_or(0);
                    Telemetry {
                        weight: b.weight,
                        active_flows: active.get(&id).copied().unwrap_or(0),
                        cpu: report.and_then(|r| r.cpu),
                        capacity: report.and_then(|r| r.capacity),
                    }
                })
                .collect();
            let targets = weights::targets(w.policy, &telemetry);
            let before: Vec<f64> = vip
                .cfg
                .backends
                .iter()
                .zip(&targets)
                .map(|(b, t)| {
                    // A backend new to telemetry starts at its target: slow-start, not the
                    // damping, eases it in.
                    *self
                        .factor
                        .get(&(name.clone(), b.socket_addr()))
                        .unwrap_or(t)
                })
                .collect();
            let cfg = w.clone();
            let mut scale = 1.0;
            for _ in 0..6 {
                let next: Vec<f64> = before
                    .iter()
                    .zip(&targets)
                    .map(|(f, t)| f + (weights::step(*f, *t, &cfg) - f) * scale)
                    .collect();
                for (b, f) in self.vips[idx].cfg.backends.clone().iter().zip(&next) {
                    self.factor.insert((name.clone(), b.socket_addr()), *f);
                }
                let weights = self.ring_weights(idx);
                if !weights::worth_rebuild(&self.vips[idx].ring_weights, &weights, cfg.min_change) {
                    break;
                }
                let moved = self.moved_share(idx);
                if moved == 0.0 {
                    // The same table (a lone live backend, say): nothing to swap.
                    self.vips[idx].ring_weights = weights;
                    break;
                }
                if moved <= cfg.max_moved || scale < 0.05 {
                    log::info!(
                        "{name}: {:?} weights {:?} (moves {:.1}% of the table)",
                        cfg.policy,
                        weights,
                        moved * 100.0
                    );
                    self.rebuild(idx)?;
                    break;
                }
                scale /= 2.0;
            }
            self.vips[idx].weights_updated = std::time::Instant::now();
        }
        Ok(())
    }

    /// The ring weight of every backend of VIP `idx`, in its `cfg.backends` order.
    fn ring_weights(&self, idx: usize) -> Vec<u32> {
        let vip = &self.vips[idx].cfg;
        vip.backends
            .iter()
            .map(|b| self.effective_weight(vip, b))
            .collect()
    }

    /// Share of VIP `idx`'s live table that rebuilding it from current weights would move.
    fn moved_share(&self, idx: usize) -> f64 {
        let members = self.members(idx);
        let vip = &self.vips[idx];
        let table = maglev::build(&members, vip.cfg.ring_size);
        let moved = table.iter().zip(&vip.table).filter(|(a, b)| a != b).count();
        moved as f64 / table.len().max(1) as f64
    }

    /// VIP `idx`'s backends as Maglev members with their ring weights (ids must exist).
    fn members(&self, idx: usize) -> Vec<Member> {
        let vip = &self.vips[idx].cfg;
        vip.backends
            .iter()
            .map(|b| Member {
                id: self.ids.get(&b.socket_addr()).unwrap_or(0),
                addr: b.socket_addr(),
                weight: self.effective_weight(vip, b),
            })
            .collect()
    }

    /// The index of VIP `vip` if `addr` is one of its backends (a checker's verdict can arrive
    /// just after the backend was removed).
    fn vip_with_backend(&self, vip: &str, addr: SocketAddr) -> Result<Option<usize>> {
        let idx = self.vip_index(vip)?;
        let has = self.vips[idx]
            .cfg
            .backends
            .iter()
            .any(|b| b.socket_addr() == addr);
        Ok(has.then_some(idx))
    }

    /// Rebuilds VIP `idx`'s ring from its backends' effective weights.
    fn rebuild(&mut self, idx: usize) -> Result<()> {
        let set = self.vips[idx].cfg.backends.clone();
        self.commit(idx, set)
    }

    /// The weight a backend of `vip` has in the ring: 0 while its health checks say down,
    /// else its configured weight scaled by its agent's percentage, its telemetry factor and
    /// slow-start (see [`weights::ring_weight`]).
    fn effective_weight(&self, vip: &VipConfig, b: &BackendConfig) -> u32 {
        let key = (vip.name.clone(), b.socket_addr());
        if self.down.contains(&key) {
            return 0;
        }
        let percent = self.agent.get(&key).map_or(100, |r| r.percent);
        let factor = self.factor.get(&key).copied().unwrap_or(1.0);
        let ramp = std::time::Duration::from_secs(vip.weights.slow_start_s);
        let slow = self
            .up_since
            .get(&key)
            .map_or(1.0, |t| weights::slow_start(t.elapsed(), ramp));
        weights::ring_weight(b.weight, percent, factor, slow)
    }

    /// What the health checkers should check, and whether each backend is up now.
    pub fn health_targets(&self) -> Vec<crate::health::Target> {
        self.vips
            .iter()
            .filter_map(|v| Some((v, v.cfg.health.clone()?)))
            .flat_map(|(v, h)| {
                v.cfg.backends.iter().map(move |b| {
                    let key = (v.cfg.name.clone(), b.socket_addr());
                    crate::health::Target {
                        up: !self.down.contains(&key),
                        generation: self.generation.get(&key).copied().unwrap_or(0),
                        vip: key.0,
                        addr: key.1,
                        cfg: h.clone(),
                    }
                })
            })
            .collect()
    }

    /// Plans a change to one backend of a VIP and, if asked, applies exactly that change.
    pub fn plan(&mut self, req: &PlanRequest) -> Result<Plan> {
        let idx = self.vip_index(&req.vip)?;
        let target = SocketAddr::new(req.addr, req.port);
        let after = self.proposed_set(idx, req.op, target, req.weight)?;
        let vip = &self.vips[idx].cfg;
        let mut p = plan::plan(&vip.name, &vip.backends, &after, vip.ring_size);
        if req.apply {
            self.apply_set(idx, after)?;
            p.applied = true;
        }
        Ok(p)
    }

    /// Makes `backends` the backend set of VIP `idx`: new backend records, then the ring swap
    /// (one atomic VIP update), then release of ids no VIP uses any more. On error nothing the
    /// data path reads has changed.
    fn commit(&mut self, idx: usize, backends: Vec<BackendConfig>) -> Result<()> {
        let started = std::time::Instant::now();
        let name = self.vips[idx].cfg.name.clone();
        for b in &backends {
            let key = (name.clone(), b.socket_addr());
            if b.weight == 0 {
                self.drain_started.entry(key).or_insert(started);
            } else {
                self.drain_started.remove(&key);
            }
        }
        self.commit_timed(idx, backends)?;
        let took = started.elapsed().as_secs_f64();
        self.timings = (self.timings.0 + 1, self.timings.1 + took, took);
        Ok(())
    }

    fn commit_timed(&mut self, idx: usize, backends: Vec<BackendConfig>) -> Result<()> {
        // Filter bits are set before the entries they guard exist, cleared after they are gone.
        let next = filter_bits(&self.vips, idx, &backends);
        let union: Vec<u64> = self.filter.iter().zip(&next).map(|(a, b)| a | b).collect();
        self.dp.set_filter(&union);
        let mut created = Vec::new();
        let result = self.commit_inner(idx, &backends, &mut created);
        if result.is_err() {
            self.dp.set_filter(&self.filter);
            for addr in created {
                if let Some((id, _)) = self.ids.by_addr.remove(&addr) {
                    let _ = self.dp.clear_backend(id);
                }
            }
            return result;
        }
        let old = std::mem::replace(&mut self.vips[idx].cfg.backends, backends);
        for b in &self.vips[idx].cfg.backends {
            if let Some(entry) = self.ids.by_addr.get_mut(&b.socket_addr()) {
                entry.1 += 1;
            }
        }
        for b in old {
            self.release(b.socket_addr())?;
        }
        self.dp.set_filter(&next);
        self.filter = next;
        self.save();
        Ok(())
    }

    fn commit_inner(
        &mut self,
        idx: usize,
        backends: &[BackendConfig],
        created: &mut Vec<SocketAddr>,
    ) -> Result<()> {
        for b in backends {
            let addr = b.socket_addr();
            if self.ids.get(&addr).is_some() {
                continue;
            }
            let id = match self.pinned_backends.remove(&addr) {
                Some(id) => id,
                None => self
                    .ids
                    .free_id(&self.pinned_backends)
                    .ok_or_else(|| anyhow!("backend: all {MAX_BACKENDS} ids are in use"))?,
            };
            let record = Backend {
                addr: addr_words(b.addr),
                port: b.port.to_be(),
                family: family(b.addr),
                _pad: 0,
            };
            self.dp.set_backend(id, &record)?;
            self.ids.by_addr.insert(addr, (id, 0));
            created.push(addr);
        }
        // A backend whose health checks failed takes no new flows, like a drained one. The
        // members are computed with the new set in place, then the old set is put back: the
        // caller installs the new one only if this commit succeeds.
        let old = std::mem::replace(&mut self.vips[idx].cfg.backends, backends.to_vec());
        let members = self.members(idx);
        let weights = self.ring_weights(idx);
        self.vips[idx].cfg.backends = old;
        let vip = &self.vips[idx];
        let table = maglev::build(&members, vip.cfg.ring_size);
        let live = table.iter().any(|&id| id != lb_common::BACKEND_NONE);
        let ring = self.dp.stage_ring(vip.id, vip.ring, &table)?;
        let ring = if live {
            ring
        } else {
            ring & lb_common::RING_BUF_BIT
        };
        let meta = VipMeta {
            vip_id: vip.id,
            ring,
            mode: vip.cfg.mode.code(),
            _pad: [0; 3],
        };
        let key = vip_key(&vip.cfg);
        self.dp.set_vip(&key, &meta)?;
        let old_ring = vip.ring;
        let vip_id = vip.id;
        self.dp.retire_ring(vip_id, old_ring);
        self.vips[idx].ring = ring;
        self.vips[idx].table = table;
        self.vips[idx].ring_weights = weights;
        Ok(())
    }

    /// Drops one reference to a backend id; the record is cleared when no VIP uses it.
    fn release(&mut self, addr: SocketAddr) -> Result<()> {
        if let Some(entry) = self.ids.by_addr.get_mut(&addr) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                let id = entry.0;
                self.ids.by_addr.remove(&addr);
                self.dp.clear_backend(id)?;
            }
        }
        Ok(())
    }

    /// A VIP with its backends and their counters. `active` is [`Dataplane::active_flows`].
    fn vip_view(&self, vip: &Vip, active: &HashMap<u32, u64>) -> VipView {
        // Counters are informational: a failed read shows zeros rather than failing the call.
        let vt = self.dp.traffic(true, vip.id).unwrap_or_default();
        VipView {
            name: vip.cfg.name.clone(),
            addr: vip.cfg.addr,
            port: vip.cfg.port,
            proto: vip.cfg.proto,
            mode: vip.cfg.mode,
            ring_size: vip.cfg.ring_size,
            packets: vt.packets,
            bytes: vt.bytes,
            new_flows: vt.new_flows,
            backends: vip
                .cfg
                .backends
                .iter()
                .map(|b| {
                    let id = self.ids.get(&b.socket_addr()).unwrap_or(0);
                    let bt = self.dp.traffic(false, id).unwrap_or_default();
                    let report = self.agent.get(&(vip.cfg.name.clone(), b.socket_addr()));
                    BackendView {
                        ring_weight: self.effective_weight(&vip.cfg, b),
                        cpu: report.and_then(|r| r.cpu),
                        inflight: report.and_then(|r| r.inflight),
                        id,
                        addr: b.addr,
                        port: b.port,
                        weight: b.weight,
                        packets: bt.packets,
                        bytes: bt.bytes,
                        new_flows: bt.new_flows,
                        active_flows: active.get(&id).copied().unwrap_or(0),
                        state: if self.down.contains(&(vip.cfg.name.clone(), b.socket_addr())) {
                            "down".to_string()
                        } else {
                            let weight = self.effective_weight(&vip.cfg, b);
                            let key = (vip.cfg.name.clone(), b.socket_addr());
                            let overdue = self
                                .drain_started
                                .get(&key)
                                .is_some_and(|t| t.elapsed() >= self.drain_timeout);
                            let open = active.get(&id).copied().unwrap_or(0);
                            backend_state(weight, if overdue { 0 } else { open }).to_string()
                        },
                    }
                })
                .collect(),
        }
    }

    fn view_of(&self, idx: usize) -> VipView {
        let active = self.dp.active_flows().unwrap_or_default();
        self.vip_view(&self.vips[idx], &active)
    }

    /// Every VIP with its backends and counters.
    pub fn vips(&self) -> Vec<VipView> {
        let active = self.dp.active_flows().unwrap_or_default();
        self.vips
            .iter()
            .map(|v| self.vip_view(v, &active))
            .collect()
    }

    /// Data-path counters.
    pub fn stats(&self) -> Result<StatsView> {
        let counts = self.dp.stats()?;
        Ok(StatsView {
            counters: Reason::ALL
                .iter()
                .map(|r| (r.name().to_string(), counts[*r as usize]))
                .collect(),
            changes: self.timings.0,
            change_seconds_total: self.timings.1,
            last_change_seconds: self.timings.2,
        })
    }

    /// Identity and size of this instance.
    pub fn status(&self) -> StatusView {
        StatusView {
            instance: self.instance.clone(),
            interfaces: self.interfaces.clone(),
            pin_dir: self.dp.pin_dir().display().to_string(),
            vips: self.vips.len(),
            backends: self.ids.by_addr.len(),
        }
    }
}

/// `ADDR:PORT/PROTO` label of a VIP, accepted wherever a VIP name is.
pub fn vip_label(vip: &VipConfig) -> String {
    let proto = match vip.proto {
        crate::config::Proto::Tcp => "tcp",
        crate::config::Proto::Udp => "udp",
    };
    format!("{}/{proto}", SocketAddr::new(vip.addr, vip.port))
}

/// A request to the controller task, with where to send the answer.
pub enum Command {
    /// List VIPs.
    Vips(oneshot::Sender<Vec<VipView>>),
    /// Add a backend or change its weight.
    AddBackend(BackendChange, oneshot::Sender<Result<VipView>>),
    /// Remove a backend.
    RemoveBackend(BackendChange, oneshot::Sender<Result<VipView>>),
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
    /// What to health-check.
    HealthTargets(oneshot::Sender<Vec<crate::health::Target>>),
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
    /// Attach `lb_xdp` to an interface (a new VM's link).
    Attach(String, oneshot::Sender<Result<()>>),
    /// Detach `lb_xdp` from an interface (a VM being deleted).
    Detach(String, oneshot::Sender<Result<()>>),
}

/// Cloneable handle to the controller task.
#[derive(Clone)]
pub struct Handle(mpsc::Sender<Command>);

impl Handle {
    /// Sends a command that has no answer.
    pub async fn send(&self, cmd: Command) -> Result<()> {
        self.0
            .send(cmd)
            .await
            .map_err(|_| anyhow!("controller stopped"))
    }

    /// Sends a command built around a reply channel and waits for the answer.
    pub async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(make(tx))
            .await
            .map_err(|_| anyhow!("controller stopped"))?;
        rx.await.map_err(|_| anyhow!("controller stopped"))
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
                        log::warn!("health of {addr} on {vip}: {e:#}");
                    }
                }
                Command::HealthTargets(reply) => {
                    let _ = reply.send(ctl.health_targets());
                }
                Command::SetAgentReport { vip, addr, report } => {
                    if let Err(e) = ctl.set_agent_report(&vip, addr, report) {
                        log::warn!("agent report of {addr} on {vip}: {e:#}");
                    }
                }
                Command::UpdateWeights => {
                    if let Err(e) = ctl.update_weights() {
                        log::warn!("weight update failed: {e:#}");
                    }
                    // The same 250 ms tick carries the data path's log records.
                    ctl.dp.drain_logs();
                }
                Command::Attach(iface, reply) => {
                    let _ = reply.send(ctl.dp.attach(&iface));
                }
                Command::Detach(iface, reply) => {
                    let _ = reply.send(ctl.dp.detach(&iface));
                }
                Command::RefreshNextHops => {
                    if let Err(e) = ctl.dp.bump_nh_epoch() {
                        log::warn!("next-hop refresh failed: {e:#}");
                    }
                }
            }
        }
        ctl
    });
    (Handle(tx), task)
}
