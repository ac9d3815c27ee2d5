//! Layer 3, the controller core: one owner of the desired state and of the data plane, which
//! applies each change whole (backends first, then the ring swap, then the VIP; removals in
//! reverse) or not at all. Its rooms: ids, the commit path, telemetry, views, the state file,
//! the mailbox.
mod apply;
mod commit;
mod conns;
mod ids;
mod mailbox;
mod persist;
mod telemetry;
mod trace;
mod views;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_common::{VipKey, VipMeta, MAX_VIPS};

use self::ids::{BackendIds, RingSpace};
pub use self::mailbox::{spawn, Command, Handle};
use crate::{
    balance::plan,
    dataplane::Dataplane,
    model::{
        config::{AttachMode, BackendConfig, Config, Daemon, Proto, VipConfig},
        msg::{AgentReport, HealthBoard},
        validate_backend, validate_vips,
        wire::{AttachedView, BackendChange, ChangeResult, Plan, PlanOp, PlanRequest, VipView},
        Error, Result,
    },
};

/// A VIP as applied to the data path.
struct Vip {
    cfg: VipConfig,
    id: u32,
    /// Live `VipMeta::ring` value.
    ring: u32,
    /// First slots of its two ring buffers in `LB_RINGS`.
    base: [u32; 2],
    /// Slots each buffer holds (0: none allocated yet).
    buf_len: u32,
    /// The live Maglev table (backend ids), to measure what a rebuild would move.
    table: Vec<u32>,
    /// Ring weight of each backend in the live table, in `cfg.backends` order.
    ring_weights: Vec<u32>,
    /// When telemetry last updated the weight factors.
    weights_updated: Instant,
}

/// Owner of the desired state and of every map handle.
pub struct Controller {
    dp: Dataplane,
    instance: String,
    /// Interfaces the balancer is attached to (configured ones, then VMs'), with their hooks.
    attached: Vec<AttachedView>,
    /// The attach mode for VMs' interfaces (`lbd.attach`).
    vm_attach: AttachMode,
    vips: Vec<Vip>,
    ids: BackendIds,
    /// The prefilter bitmaps as last written.
    filter: Vec<u64>,
    /// Applied changes: count, seconds in all, seconds of the last one.
    timings: (u64, f64, f64),
    /// When each backend with weight 0 started draining, by (VIP name, backend).
    drain_started: HashMap<(String, SocketAddr), Instant>,
    /// After this long a draining backend counts as drained (0: no deadline).
    drain_timeout: Duration,
    /// What backends' agents last reported (weight percentage, load), by (VIP name, backend).
    agent: HashMap<(String, SocketAddr), AgentReport>,
    /// Telemetry weight factors (1 = the configured weight), by (VIP name, backend).
    factor: HashMap<(String, SocketAddr), f64>,
    /// The smoothed measured targets those factors follow, by (VIP name, backend).
    smoothed: HashMap<(String, SocketAddr), f64>,
    /// When each backend last came up (joined, or passed its health checks), for slow-start.
    up_since: HashMap<(String, SocketAddr), Instant>,
    /// Which join of the backend to its VIP this is (see `HealthTarget::generation`);
    /// absent for backends there from the start, and `joins` counts them all.
    generation: HashMap<(String, SocketAddr), u64>,
    joins: u64,
    /// (VIP name, backend) pairs whose health checks say down.
    down: HashSet<(String, SocketAddr)>,
    /// Which `LB_RINGS` slots VIPs' buffers take.
    rings: RingSpace,
    /// VIPs found in adopted (pinned) maps and not claimed by the config yet.
    pinned_vips: HashMap<VipKey, VipMeta>,
    /// Backend records found in adopted maps and not claimed yet: address -> id.
    pinned_backends: HashMap<SocketAddr, u32>,
    /// Where the desired state is written after every change.
    persist: Option<persist::Persist>,
    /// A batch of changes is being applied: the state file is written once, at its end.
    batch: bool,
    /// What the health checkers last found, per (VIP name, backend).
    board: HealthBoard,
}

impl Controller {
    /// A controller over a loaded data plane, with no VIPs yet.
    /// If the maps were adopted from an earlier controller, their VIP ids, live ring buffers
    /// and backend ids are reused for the same VIPs and backends, so tracked flows keep their
    /// backends and a ring swap never writes the buffer packets are reading.
    pub fn new(dp: Dataplane, instance: &str, attached: &[AttachedView]) -> Self {
        let pinned = dp.pinned_state();
        let dp_slots = dp.ring_slots();
        Controller {
            dp,
            instance: instance.to_string(),
            attached: attached.to_vec(),
            vm_attach: AttachMode::Auto,
            vips: Vec::new(),
            ids: BackendIds::default(),
            filter: vec![0; lb_common::filter::TOTAL_WORDS as usize],
            down: Default::default(),
            agent: HashMap::new(),
            factor: HashMap::new(),
            smoothed: HashMap::new(),
            up_since: HashMap::new(),
            generation: HashMap::new(),
            joins: 0,
            drain_started: HashMap::new(),
            drain_timeout: Duration::from_secs(300),
            timings: (0, 0.0, 0.0),
            rings: {
                let mut rings = RingSpace::new(dp_slots);
                // The buffers of pinned VIPs are live: nothing else may be written there.
                for (_, meta) in &pinned.vips {
                    for b in meta.base {
                        rings.reserve(b, adopted_len(meta));
                    }
                }
                rings
            },
            pinned_vips: pinned.vips.into_iter().collect(),
            pinned_backends: pinned
                .backends
                .into_iter()
                .map(|(id, b)| (b.socket_addr(), id))
                .collect(),
            persist: None,
            batch: false,
            board: HealthBoard::default(),
        }
    }

    /// After every change, writes the desired state to the state file `path`, with the
    /// daemon settings and the digest of the config it derives from; takes the drain
    /// deadline from the daemon settings.
    pub fn persist_to(&mut self, path: std::path::PathBuf, daemon: Daemon, config_digest: String) {
        self.drain_timeout = Duration::from_secs(daemon.drain_timeout_s);
        self.vm_attach = daemon.attach;
        self.persist = Some(persist::Persist {
            path,
            daemon,
            config_digest,
        });
    }

    /// The desired state: every VIP as it runs now, runtime changes included.
    pub fn desired(&self) -> Vec<VipConfig> {
        self.vips.iter().map(|v| v.cfg.clone()).collect()
    }

    /// Checks the desired state `change` would make, whole, before anything is touched: the
    /// same validation a config file passes.
    /// Within a batch the state it leads to was checked whole already.
    fn check_whole(&self, change: impl FnOnce(&mut Vec<VipConfig>)) -> Result<()> {
        if self.batch {
            return Ok(());
        }
        let mut vips = self.desired();
        change(&mut vips);
        validate_vips(&vips)
    }

    /// Applies every VIP of a validated config, then drops whatever adopted maps held that
    /// the config no longer has.
    pub fn apply_config(&mut self, cfg: &Config) -> Result<()> {
        for vip in &cfg.vips {
            self.add_vip(vip.clone())?;
        }
        for (key, meta) in std::mem::take(&mut self.pinned_vips) {
            self.dp.remove_vip(&key, meta.vip_id)?;
            for b in meta.base {
                self.rings.free(b);
            }
        }
        for (_, id) in std::mem::take(&mut self.pinned_backends) {
            self.dp.clear_backend(id)?;
        }
        self.save();
        Ok(())
    }

    /// The data plane, e.g. for tests that run packets through it.
    pub fn dataplane(&mut self) -> &mut Dataplane {
        &mut self.dp
    }

    /// Attaches the balancer to a VM's interface, at the hook `lbd.attach` resolves to there.
    pub fn attach_vm(&mut self, iface: &str) -> Result<()> {
        let view = self.dp.attach(iface, self.vm_attach)?;
        self.attached.retain(|a| a.iface != iface);
        self.attached.push(view);
        Ok(())
    }

    /// Detaches the balancer from a VM's interface.
    pub fn detach_vm(&mut self, iface: &str) -> Result<()> {
        self.dp.detach(iface)?;
        self.attached.retain(|a| a.iface != iface);
        Ok(())
    }

    /// Gives the data plane back (to unpin it on shutdown).
    pub fn into_dataplane(self) -> Dataplane {
        self.dp
    }

    /// Adds a VIP with its backends.
    pub fn add_vip(&mut self, cfg: VipConfig) -> Result<()> {
        cfg.validate("vip")?;
        if self.vips.iter().any(|v| v.cfg.name == cfg.name) {
            return Err(Error::conflict(
                "vip",
                format!("{:?} exists already", cfg.name),
            ));
        }
        if let Some(other) = self.vips.iter().find(|v| vip_key(&v.cfg) == vip_key(&cfg)) {
            return Err(Error::conflict(
                "vip",
                format!(
                    "{} is served by VIP {:?} already",
                    vip_label(&cfg),
                    other.cfg.name
                ),
            ));
        }
        self.check_whole(|vips| vips.push(cfg.clone()))?;
        let used: Vec<u32> = self.vips.iter().map(|v| v.id).collect();
        let reserved: Vec<u32> = self.pinned_vips.values().map(|m| m.vip_id).collect();
        // An adopted VIP keeps its id and its buffers (reserved at the live size since the
        // controller started; a commit moves them if its ring size is another now).
        let (id, ring, base, buf_len) = match self.pinned_vips.remove(&vip_key(&cfg)) {
            Some(meta) if !used.contains(&meta.vip_id) => {
                (meta.vip_id, meta.ring, meta.base, adopted_len(&meta))
            }
            _ => (
                (0..MAX_VIPS)
                    .find(|i| !used.contains(i) && !reserved.contains(i))
                    .ok_or_else(|| {
                        Error::conflict("vip", format!("all {MAX_VIPS} VIP slots are in use"))
                    })?,
                0,
                [0; 2],
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
            base,
            buf_len,
            table: Vec::new(),
            ring_weights: Vec::new(),
            weights_updated: Instant::now(),
        });
        let idx = self.vips.len() - 1;
        if let Err(e) = self.commit(idx, backends) {
            let vip = self.vips.pop();
            // Adopted buffers stay the pinned VIP's; new ones were never allocated.
            if let Some(v) = vip.filter(|v| v.buf_len > 0) {
                for b in v.base {
                    self.rings.free(b);
                }
            }
            return Err(e);
        }
        // The filter already admits ICMP (port 0) to this address: see `filter_bits`.
        Ok(self.dp.answer_pings(self.vips[idx].cfg.addr)?)
    }

    /// Removes a VIP: new packets to it pass to the stack (removals in reverse order: the VIP
    /// entry first, then its ping entry if no other VIP shares the address, then backend ids
    /// and filter bits).
    pub fn remove_vip(&mut self, name: &str) -> Result<()> {
        let idx = self.vip_index(name)?;
        let key = vip_key(&self.vips[idx].cfg);
        self.dp.remove_vip(&key, self.vips[idx].id)?;
        let vip = self.vips.remove(idx);
        self.dp.retire_ring(&live_meta(&vip));
        if vip.buf_len > 0 {
            for b in vip.base {
                self.rings.free(b);
            }
        }
        if !self.vips.iter().any(|v| v.cfg.addr == vip.cfg.addr) {
            self.dp.stop_answering_pings(vip.cfg.addr)?;
        }
        for b in &vip.cfg.backends {
            self.release(b.socket_addr())?;
        }
        self.forget(|v, _| v != vip.cfg.name);
        // Recompute the filter without the VIP (index past the end: no VIP is replaced).
        let next = commit::filter_bits(&self.vips, usize::MAX, &[]);
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
                Error::not_found(
                    "vip",
                    format!("no VIP named {name:?} (known: {})", known.join(", ")),
                )
            })
    }

    /// Adds a backend to a VIP, or changes its weight if it is there.
    pub fn add_backend(&mut self, change: &BackendChange) -> Result<ChangeResult> {
        let idx = self.vip_index(&change.vip)?;
        let target = SocketAddr::new(change.addr, change.port);
        let weight = Some(change.weight.unwrap_or(1));
        let set = self.proposed_set(idx, PlanOp::Add, target, weight)?;
        self.change_set(idx, set)
    }

    /// Removes a backend from a VIP; its tracked flows move to the remaining backends.
    pub fn remove_backend(&mut self, change: &BackendChange) -> Result<ChangeResult> {
        let idx = self.vip_index(&change.vip)?;
        let target = SocketAddr::new(change.addr, change.port);
        let set = self.proposed_set(idx, PlanOp::Remove, target, None)?;
        self.change_set(idx, set)
    }

    /// Applies `set` to VIP `idx` and says what it moved (the live tables before and after).
    fn change_set(&mut self, idx: usize, set: Vec<BackendConfig>) -> Result<ChangeResult> {
        let before = self.vips[idx].table.clone();
        self.apply_set(idx, set)?;
        let vip = &self.vips[idx];
        Ok(ChangeResult {
            vip: vip.cfg.name.clone(),
            backends: vip.cfg.backends.len(),
            moved_share: crate::balance::maglev::moved_share(&before, &vip.table),
        })
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
                PlanOp::Weight => weight
                    .ok_or_else(|| Error::invalid("backend.weight", "required for op weight"))?,
                _ => weight.unwrap_or(1),
            },
        };
        match (op, present) {
            (PlanOp::Remove, Some(i)) => {
                set.remove(i);
                return Ok(set);
            }
            (PlanOp::Remove | PlanOp::Weight, None) => {
                return Err(Error::not_found(
                    "backend",
                    format!("{target} is not a backend of {:?}", vip.name),
                ))
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
        self.check_whole(|vips| vips[idx].backends = set.clone())?;
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
        self.smoothed.retain(|(v, a), _| keep(v, a));
        self.up_since.retain(|(v, a), _| keep(v, a));
        self.generation.retain(|(v, a), _| keep(v, a));
    }

    /// Replaces the whole backend set of a VIP in one ring swap.
    pub fn replace_backends(&mut self, vip: &str, backends: Vec<BackendConfig>) -> Result<VipView> {
        let idx = self.vip_index(vip)?;
        self.check_whole(|vips| vips[idx].backends = backends.clone())?;
        self.commit(idx, backends)?;
        Ok(self.view_of(idx))
    }

    /// Plans a change to one backend of a VIP and, if asked, applies exactly that change.
    pub fn plan(&mut self, req: &PlanRequest) -> Result<Plan> {
        let idx = self.vip_index(&req.vip)?;
        let target = SocketAddr::new(req.addr, req.port);
        let after = self.proposed_set(idx, req.op, target, req.weight)?;
        let vip = &self.vips[idx].cfg;
        let mut p = plan::plan(&vip.name, vip.table, &vip.backends, &after, vip.ring_size);
        if req.apply {
            self.apply_set(idx, after)?;
            p.applied = true;
        }
        Ok(p)
    }
}

/// The slots an adopted VIP's buffers are known to hold: its live ring's size (at least one).
fn adopted_len(meta: &VipMeta) -> u32 {
    (meta.ring & !lb_common::RING_BUF_BIT).max(1)
}

/// The `VipMeta` of `vip` as the data path has it now.
fn live_meta(vip: &Vip) -> VipMeta {
    VipMeta {
        vip_id: vip.id,
        ring: vip.ring,
        mode: vip.cfg.mode.code(),
        _pad: [0; 3],
        base: vip.base,
    }
}

/// The data-path key of a VIP.
pub fn vip_key(vip: &VipConfig) -> VipKey {
    VipKey::new(vip.addr, vip.port, vip.proto.number())
}

/// `ADDR:PORT/PROTO` label of a VIP, accepted wherever a VIP name is.
pub fn vip_label(vip: &VipConfig) -> String {
    let proto = match vip.proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    };
    format!("{}/{proto}", SocketAddr::new(vip.addr, vip.port))
}
