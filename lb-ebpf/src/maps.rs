//! The maps of the balancer (shared by its XDP and tc programs); layouts, units and byte
//! order are documented in `lb-common`.
use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use lb_common::{
    filter, Backend, ConnEntry, FlowKey, FlowRate, NextHop, TraceCtl, TraceScratch, TrafficStats,
    VipKey, VipMeta, CONNS_MAP_FLAGS, MAX_BACKENDS, MAX_CONNS, MAX_PROBATION, MAX_TX_PORTS,
    MAX_VIPS, NUM_REASONS, RINGS_MAP_FLAGS, RING_SLOTS, TRACE_RING_BYTES,
};

/// VIP:port/proto -> VIP metadata and live ring, and the ping entry (port 0) of every VIP
/// address: at most two entries a VIP.
#[map]
pub static LB_VIPS: HashMap<VipKey, VipMeta> = HashMap::pinned(2 * MAX_VIPS, 0);

/// vip id -> VIP key, to rewrite replies back to the VIP.
#[map]
pub static LB_VIP_ADDRS: Array<VipKey> = Array::pinned(MAX_VIPS, 0);

/// backend id -> backend address; id 0 is never used.
#[map]
pub static LB_BACKENDS: Array<Backend> = Array::pinned(MAX_BACKENDS, 0);

/// Maglev rings: backend ids, two slots an element; each VIP's two buffers start where its
/// `VipMeta::base` says. Sized by the loader (`lbd.ring_slots`).
#[map]
pub static LB_RINGS: Array<[u32; 2]> = Array::pinned(RING_SLOTS / 2, RINGS_MAP_FLAGS);

/// Flow table, both directions of every flow; least recently used entries are evicted from
/// per-CPU LRU lists.
#[map]
pub static LB_CONNS: LruHashMap<FlowKey, ConnEntry> =
    LruHashMap::pinned(MAX_CONNS, CONNS_MAP_FLAGS);

/// Flows a CPU met past its new-flow limit, both directions, on probation until their second
/// forward packet moves them to `LB_CONNS`: a flood of spoofed SYNs churns this table instead.
#[map]
pub static LB_PROBATION: LruHashMap<FlowKey, ConnEntry> =
    LruHashMap::pinned(MAX_PROBATION, CONNS_MAP_FLAGS);

/// Per-CPU packet counters indexed by `lb_common::Reason`.
#[map]
pub static LB_STATS: PerCpuArray<u64> = PerCpuArray::pinned(NUM_REASONS, 0);

/// Interfaces (by ifindex) that frames may be redirected to.
#[map]
pub static LB_TX_PORTS: DevMapHash = DevMapHash::pinned(MAX_TX_PORTS, 0);

/// Prefilter bitmaps (`lb_common::filter`), written by the controller through mmap.
#[map]
pub static LB_FILTER: Array<u64> = Array::pinned(filter::TOTAL_WORDS, RINGS_MAP_FLAGS);

/// backend id -> cached next hop towards that backend.
#[map]
pub static LB_BACKEND_NH: Array<NextHop> = Array::pinned(MAX_BACKENDS, 0);

/// Next-hop cache epoch (one element); see `lb_common::NextHop`.
#[map]
pub static LB_NH_EPOCH: Array<u32> = Array::pinned(1, 0);

/// vip id -> per-CPU traffic counters.
#[map]
pub static LB_VIP_STATS: PerCpuArray<TrafficStats> = PerCpuArray::pinned(MAX_VIPS, 0);

/// backend id -> per-CPU traffic counters.
#[map]
pub static LB_BACKEND_STATS: PerCpuArray<TrafficStats> = PerCpuArray::pinned(MAX_BACKENDS, 0);

/// Scratch space for `bpf_fib_lookup` parameters (one per CPU): kept off the 512-byte stack.
#[map]
pub static LB_FIB_SCRATCH: PerCpuArray<aya_ebpf::bindings::bpf_fib_lookup> =
    PerCpuArray::with_max_entries(1, 0);

/// Per-CPU new-flow limit state (one element); see `lb_common::NEW_FLOW_LIMIT_GLOBAL`.
#[map]
pub static LB_FLOW_RATE: PerCpuArray<FlowRate> = PerCpuArray::with_max_entries(1, 0);

/// Slot 0: `lb_icmp`, tail-called for ICMP to VIP addresses; slot 1: `lb_too_big`, for a DSR
/// packet too big to encapsulate.
#[map]
pub static LB_PROGS: ProgramArray = ProgramArray::pinned(2, 0);

/// The same two slots for the tc programs: `lb_tc_icmp`, `lb_tc_too_big`.
#[map]
pub static LB_TC_PROGS: ProgramArray = ProgramArray::pinned(2, 0);

/// `LB_PROGS` / `LB_TC_PROGS` slot of the ICMP program.
pub const PROG_ICMP: u32 = 0;
/// `LB_PROGS` / `LB_TC_PROGS` slot of the too-big program.
pub const PROG_TOO_BIG: u32 = 1;

/// The egress MTU (bytes) `lb_xdp` hands `lb_too_big` across the tail call, per CPU.
#[map]
pub static LB_TOO_BIG_MTU: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// What `lbctl trace` samples; all zero (off) unless someone traces. Not pinned: each loaded
/// program has its own, owned by the lbd that loaded it.
#[map]
pub static LB_TRACE_CTL: Array<TraceCtl> = Array::with_max_entries(1, 0);

/// Sampled decisions, for lbd to read while someone traces.
#[map]
pub static LB_TRACE: RingBuf = RingBuf::with_byte_size(TRACE_RING_BYTES, 0);

/// The record being staged on each CPU.
#[map]
pub static LB_TRACE_SCRATCH: PerCpuArray<TraceScratch> = PerCpuArray::with_max_entries(1, 0);
