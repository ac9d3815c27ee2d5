//! Layer 2, the map owner: typed access to the loaded balancer programs (`lb_xdp`, `lb_tc`)
//! and their maps, the only code that writes them; it loads, attaches, pins under
//! `/sys/fs/bpf/<instance>/` and adopts what an earlier controller pinned. Imports the model
//! and the system layer only.
pub mod attach;
mod conns;
mod mmap;
pub mod object;
mod trace;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::{
    maps::{Array, DevMapHash, HashMap, Map, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{Program, ProgramFd, SchedClassifier, Xdp},
    Ebpf,
};
use lb_common::{
    filter, map_names, prog_names, Backend, ConnEntry, FlowKey, NextHop, Reason, TraceCtl,
    TrafficStats, VipKey, VipMeta, NUM_REASONS, RING_BUF_BIT, RING_MAX,
};

use self::{
    mmap::MmapArray,
    object::{time_units, LoadOptions},
};
use crate::{
    model::{
        config::{AttachMode, Hook},
        wire::AttachedView,
    },
    sys::error::{fail, Context, Result},
};

/// A ring buffer may be rewritten only this long after it stopped being live, so that no
/// packet that read the old `VipMeta::ring` can still be reading that buffer (an XDP run
/// lasts microseconds).
const RING_REUSE_GRACE: Duration = Duration::from_millis(2);

/// What adopted maps held when a controller started.
pub struct PinnedState {
    /// VIP keys with their metadata (id and live ring).
    pub vips: Vec<(VipKey, VipMeta)>,
    /// Backend records by id.
    pub backends: Vec<(u32, Backend)>,
}

/// The loaded program and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    vips: HashMap<MapData, VipKey, VipMeta>,
    vip_addrs: Array<MapData, VipKey>,
    backends: Array<MapData, Backend>,
    backend_nh: Array<MapData, NextHop>,
    conns: HashMap<MapData, FlowKey, ConnEntry>,
    probation: HashMap<MapData, FlowKey, ConnEntry>,
    vip_stats: PerCpuArray<MapData, TrafficStats>,
    backend_stats: PerCpuArray<MapData, TrafficStats>,
    /// UDP idle timeout in data-path time units.
    udp_idle: u32,
    /// `LB_PROGS` and `LB_TC_PROGS`, held open (and pinned) so the tail calls to the ICMP
    /// and too-big programs of either hook stay installed.
    _progs: [ProgramArray<MapData>; 2],
    nh_epoch: Array<MapData, u32>,
    stats: PerCpuArray<MapData, u64>,
    tx_ports: DevMapHash<MapData>,
    rings: MmapArray,
    /// Slots of `rings`.
    ring_slots: u32,
    filter: MmapArray,
    /// When each ring buffer (by its first slot) stopped being live.
    retired: std::collections::HashMap<u32, Instant>,
    /// What `lbctl trace` samples (`LB_TRACE_CTL`).
    trace_ctl: Array<MapData, TraceCtl>,
    /// The ring buffer sampled decisions go to, while no trace has it out.
    trace_ring: Option<RingBuf<MapData>>,
    /// Records the programs write with aya-log (rare events), forwarded to `log`.
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

fn take<T: TryFrom<Map>>(ebpf: &mut Ebpf, name: &str) -> Result<T>
where
    T::Error: std::error::Error + Send + Sync + 'static,
{
    let map = ebpf
        .take_map(name)
        .with_context(|| format!("object has no map {name}"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

/// Loads program `name` of the object (the verifier runs now) and returns a descriptor of it,
/// to install in a program array.
fn load_prog(ebpf: &mut Ebpf, name: &str) -> Result<ProgramFd> {
    let prog = ebpf
        .program_mut(name)
        .with_context(|| format!("object has no program {name}"))?;
    let loaded = match prog {
        Program::Xdp(p) => p.load(),
        Program::SchedClassifier(p) => p.load(),
        _ => return Err(fail(name, "neither an XDP nor a tc program")),
    };
    loaded.with_context(|| format!("verifier rejected {name}"))?;
    prog.fd()
        .with_context(|| format!("{name} is not loaded"))?
        .try_clone()
        .with_context(|| format!("duplicating the descriptor of {name}"))
}

/// Loads a balancer entry program and the two programs it tail-calls (ICMP, too big), which
/// go into program array `array` (slots `PROG_ICMP` = 0, `PROG_TOO_BIG` = 1).
fn load_hook(ebpf: &mut Ebpf, names: [&str; 3], array: &str) -> Result<ProgramArray<MapData>> {
    load_prog(ebpf, names[0])?;
    let mut progs: ProgramArray<MapData> = take(ebpf, array)?;
    for (slot, name) in names[1..].iter().enumerate() {
        let fd = load_prog(ebpf, name)?;
        progs
            .set(slot as u32, &fd, 0)
            .with_context(|| format!("installing {name} in {array}"))?;
    }
    Ok(progs)
}

impl Dataplane {
    /// Loads the object with maps pinned under `pin_dir` and the given load-time settings.
    /// If it fails, a pin directory it created is removed again (an adopted one is kept).
    pub fn open(pin_dir: &Path, opts: LoadOptions) -> Result<Self> {
        let adopted = pin_dir.exists();
        let opened = Self::open_inner(pin_dir, opts);
        if opened.is_err() && !adopted {
            let _ = std::fs::remove_dir_all(pin_dir);
        }
        opened
    }

    fn open_inner(pin_dir: &Path, opts: LoadOptions) -> Result<Self> {
        let mut ebpf = object::load(pin_dir, opts)?;
        // Load before taking maps out: the programs' map references are resolved now.
        let progs = [
            load_hook(
                &mut ebpf,
                [
                    prog_names::LB_XDP,
                    prog_names::LB_ICMP,
                    prog_names::LB_TOO_BIG,
                ],
                map_names::PROGS,
            )?,
            load_hook(
                &mut ebpf,
                [
                    prog_names::LB_TC,
                    prog_names::LB_TC_ICMP,
                    prog_names::LB_TC_TOO_BIG,
                ],
                map_names::TC_PROGS,
            )?,
        ];
        let mut mmap = |name: &str, entries: u32| match ebpf.take_map(name) {
            Some(Map::Array(data)) => MmapArray::map(data, entries),
            _ => Err(fail(
                format!("map {name}"),
                "the object has no such array map",
            )),
        };
        let rings = mmap(map_names::RINGS, opts.ring_slots / 2)?;
        let filter = mmap(map_names::FILTER, filter::TOTAL_WORDS)?;
        let logger = aya_log::EbpfLogger::init(&mut ebpf)
            .map_err(|e| tracing::warn!("data-path log records will not be read: {e}"))
            .ok();
        Ok(Dataplane {
            vips: take(&mut ebpf, map_names::VIPS)?,
            vip_addrs: take(&mut ebpf, map_names::VIP_ADDRS)?,
            backends: take(&mut ebpf, map_names::BACKENDS)?,
            backend_nh: take(&mut ebpf, map_names::BACKEND_NH)?,
            conns: take(&mut ebpf, map_names::CONNS)?,
            probation: take(&mut ebpf, map_names::PROBATION)?,
            vip_stats: take(&mut ebpf, map_names::VIP_STATS)?,
            backend_stats: take(&mut ebpf, map_names::BACKEND_STATS)?,
            udp_idle: time_units(opts.udp_idle_timeout_s),
            _progs: progs,
            nh_epoch: take(&mut ebpf, map_names::NH_EPOCH)?,
            stats: take(&mut ebpf, map_names::STATS)?,
            tx_ports: take(&mut ebpf, map_names::TX_PORTS)?,
            trace_ctl: take(&mut ebpf, map_names::TRACE_CTL)?,
            trace_ring: Some(take(&mut ebpf, map_names::TRACE)?),
            rings,
            ring_slots: opts.ring_slots,
            filter,
            ebpf,
            pin_dir: pin_dir.to_path_buf(),
            retired: Default::default(),
            logger,
        })
    }

    /// Writes the log records the programs left (aya-log) to `log`.
    pub fn drain_logs(&mut self) {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
    }

    /// Directory holding the pinned maps.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The loaded `lb_xdp` program (for attaching and for BPF_PROG_TEST_RUN).
    pub fn program(&mut self) -> Result<&mut Xdp> {
        self.ebpf
            .program_mut(prog_names::LB_XDP)
            .with_context(|| format!("object has no program {}", prog_names::LB_XDP))?
            .try_into()
            .context("lb_xdp is not an XDP program")
    }

    /// The loaded `lb_tc` program (for attaching and for BPF_PROG_TEST_RUN).
    pub fn tc_program(&mut self) -> Result<&mut SchedClassifier> {
        self.ebpf
            .program_mut(prog_names::LB_TC)
            .with_context(|| format!("object has no program {}", prog_names::LB_TC))?
            .try_into()
            .context("lb_tc is not a tc program")
    }

    /// Attaches the balancer to `iface` at the hook `mode` resolves to there, and lets it
    /// redirect packets out of that interface. The link is pinned under `<pin_dir>/links/`,
    /// so the program stays attached if the controller dies; a link pinned by an earlier
    /// controller is adopted and gets this program in one atomic replacement, so forwarding
    /// never stops. A link of the other hook (the mode changed) goes once the new one is in.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<AttachedView> {
        let ifindex = ifindex(iface)?;
        let (hook, why) = attach::resolve(iface, mode)?;
        if hook == Hook::Xdp {
            if let Some(caveat) = attach::xdp_caveat(iface) {
                tracing::warn!("{caveat}");
            }
        }
        let links = self.pin_dir.join("links");
        std::fs::create_dir_all(&links).with_context(|| format!("creating {}", links.display()))?;
        let pin = attach::pin(hook, &links, iface);
        let adopting = pin.exists();
        match hook {
            Hook::Xdp => attach::attach_xdp(self.program()?, iface, ifindex, &pin)?,
            Hook::Tc => attach::attach_tc(self.tc_program()?, iface, &pin)?,
        }
        attach::unpin(&attach::pin(attach::other(hook), &links, iface))?;
        let verb = if adopting { "adopted" } else { "attached" };
        tracing::info!("balancer {verb} on {iface} at {} ({why})", hook.name());
        self.add_tx_port(ifindex)
            .with_context(|| format!("adding {iface} to {}", map_names::TX_PORTS))?;
        Ok(AttachedView {
            iface: iface.to_string(),
            hook,
            why,
        })
    }

    /// Detaches the balancer from `iface` (unpins its link, at either hook) and stops
    /// redirecting to it; an interface that is already gone (its VM deleted) only loses the
    /// pin.
    pub fn detach(&mut self, iface: &str) -> Result<()> {
        if let Ok(ifindex) = ifindex(iface) {
            let _ = self.tx_ports.remove(ifindex);
        }
        let links = self.pin_dir.join("links");
        for hook in [Hook::Xdp, Hook::Tc] {
            attach::unpin(&attach::pin(hook, &links, iface))?;
        }
        Ok(())
    }

    /// VIPs (not the ping entries) and backend records found in the maps, as a controller
    /// that adopts pinned maps finds them.
    pub fn pinned_state(&self) -> PinnedState {
        let vips = self
            .vips
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| k.port != 0)
            .collect();
        let backends = (1..lb_common::MAX_BACKENDS)
            .filter_map(|id| Some((id, self.backends.get(&id, 0).ok()?)))
            .filter(|(_, b)| b.family != 0)
            .collect();
        PinnedState { vips, backends }
    }

    /// Lets `lb_xdp` redirect frames out of interface `ifindex`.
    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<()> {
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .with_context(|| format!("adding ifindex {ifindex} to {}", map_names::TX_PORTS))
    }

    /// Writes the backend record of `id` (and forgets the next hop cached for the id).
    pub fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<()> {
        self.backend_nh
            .set(id, NextHop::default(), 0)
            .with_context(|| format!("clearing the next hop of backend {id}"))?;
        self.backends
            .set(id, backend, 0)
            .with_context(|| format!("writing backend {id}"))
    }

    /// Marks backend `id` as unused: flows still tracked to it pick a new backend.
    pub fn clear_backend(&mut self, id: u32) -> Result<()> {
        self.backends
            .set(id, Backend::default(), 0)
            .with_context(|| format!("clearing backend {id}"))?;
        self.backend_nh
            .set(id, NextHop::default(), 0)
            .with_context(|| format!("clearing the next hop of backend {id}"))
    }

    /// Makes every cached next hop stale, so each flow and backend looks its route and
    /// neighbour up again on its next packet (after a route or neighbour change).
    pub fn bump_nh_epoch(&mut self) -> Result<()> {
        let epoch = self
            .nh_epoch
            .get(&0, 0)
            .context("reading the next-hop epoch")?;
        self.nh_epoch
            .set(0, epoch.wrapping_add(1), 0)
            .context("bumping the next-hop epoch")
    }

    /// Writes `table` into the buffer of the VIP of `meta` that is not live, and returns the
    /// `VipMeta::ring` value that makes it live. Nothing the data path reads changes until the
    /// caller stores that value in the VIP's `VipMeta`.
    pub fn stage_ring(&mut self, meta: &VipMeta, table: &[u32]) -> Result<u32> {
        let buf = u32::from(meta.ring & RING_BUF_BIT == 0);
        let base = meta.base[buf as usize];
        let fits = table.len() <= RING_MAX as usize
            && u64::from(base) + table.len() as u64 <= u64::from(self.ring_slots);
        if !fits {
            return Err(fail(
                format!("ring of vip {}", meta.vip_id),
                format!("{} slots from slot {base} do not fit", table.len()),
            ));
        }
        if let Some(at) = self.retired.get(&base) {
            let since = at.elapsed();
            if since < RING_REUSE_GRACE {
                std::thread::sleep(RING_REUSE_GRACE - since);
            }
        }
        self.rings.write_u32(base, table);
        Ok((buf << 31) | table.len() as u32)
    }

    /// Records that the buffer live in `old` stopped being live now.
    pub fn retire_ring(&mut self, old: &VipMeta) {
        let buf = (old.ring >> 31) as usize;
        self.retired.insert(old.base[buf], Instant::now());
    }

    /// Slots of `LB_RINGS`.
    pub fn ring_slots(&self) -> u32 {
        self.ring_slots
    }

    /// Writes the prefilter bitmaps (`lb_common::filter`), `TOTAL_WORDS` words.
    pub fn set_filter(&mut self, words: &[u64]) {
        assert_eq!(words.len(), filter::TOTAL_WORDS as usize, "filter size");
        self.filter.write_u64(words);
    }

    /// Creates or replaces a VIP (one atomic map update).
    pub fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<()> {
        self.vip_addrs
            .set(meta.vip_id, key, 0)
            .with_context(|| format!("writing the address of vip {}", meta.vip_id))?;
        self.vips
            .insert(key, meta, 0)
            .with_context(|| format!("writing vip {}", meta.vip_id))
    }

    /// Makes the data path answer pings to `addr` (an address-level `LB_VIPS` entry: port 0,
    /// proto ICMP or ICMPv6). Idempotent.
    pub fn answer_pings(&mut self, addr: std::net::IpAddr) -> Result<()> {
        self.vips
            .insert(ping_key(addr), VipMeta::default(), 0)
            .with_context(|| format!("answering pings to {addr}"))
    }

    /// Stops answering pings to `addr`.
    pub fn stop_answering_pings(&mut self, addr: std::net::IpAddr) -> Result<()> {
        self.vips
            .remove(&ping_key(addr))
            .with_context(|| format!("no longer answering pings to {addr}"))
    }

    /// Removes VIP `vip_id`: new packets to it pass to the stack, and so do those of its
    /// tracked flows (their entries name a VIP id that no longer holds this key).
    pub fn remove_vip(&mut self, key: &VipKey, vip_id: u32) -> Result<()> {
        self.vips
            .remove(key)
            .with_context(|| format!("removing vip {vip_id}"))?;
        self.vip_addrs
            .set(vip_id, VipKey::default(), 0)
            .with_context(|| format!("clearing the address of vip {vip_id}"))
    }

    /// Packet counters summed over CPUs, indexed like [`Reason::ALL`].
    pub fn stats(&self) -> Result<[u64; NUM_REASONS as usize]> {
        let mut out = [0u64; NUM_REASONS as usize];
        for reason in Reason::ALL {
            let per_cpu = self
                .stats
                .get(&(reason as u32), 0)
                .with_context(|| format!("reading counter {}", reason.name()))?;
            out[reason as usize] = per_cpu.iter().sum();
        }
        Ok(out)
    }

    /// Traffic counters of a VIP (`vip: true`) or a backend, summed over CPUs.
    pub fn traffic(&self, vip: bool, id: u32) -> Result<TrafficStats> {
        let map = if vip {
            &self.vip_stats
        } else {
            &self.backend_stats
        };
        let mut sum = TrafficStats::default();
        let per_cpu = map
            .get(&id, 0)
            .with_context(|| format!("reading the traffic of id {id}"))?;
        for s in per_cpu.iter() {
            sum.packets += s.packets;
            sum.bytes += s.bytes;
            sum.new_flows += s.new_flows;
        }
        Ok(sum)
    }

    /// Removes the pinned maps and links: the program is detached and the data path stops.
    pub fn unpin(self) -> Result<()> {
        let dir = self.pin_dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
    }
}

/// The address-level `LB_VIPS` key under which pings to `addr` are answered.
fn ping_key(addr: std::net::IpAddr) -> VipKey {
    let proto = if addr.is_ipv4() {
        lb_common::PROTO_ICMP
    } else {
        lb_common::PROTO_ICMPV6
    };
    VipKey::new(addr, 0, proto)
}

/// The index of interface `name` in the current network namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(|e| fail(format!("no interface named {name:?}"), e))
}
