//! The stages of `lb_xdp` after parsing: prefilters, VIP lookup, connection tracking (with UDP
//! idle expiry, and the new-flow limit with its probation table), ring selection, counters,
//! and handing the packet to NAT or DSR forwarding; NAT replies are rewritten back to the VIP.
use aya_ebpf::{
    helpers::generated::bpf_ktime_get_coarse_ns, maps::LruHashMap, programs::XdpContext,
};
use lb_common::{
    filter, flow_hash, ring_base, Backend, ConnEntry, FlowKey, Reason, TrafficStats, VipKey,
    VipMeta, BACKEND_NONE, CONN_F_CLOSED, DIR_FORWARD, DIR_REPLY, MODE_DSR, PROTO_ICMP,
    PROTO_ICMPV6, PROTO_UDP, RING_BUF_BIT, TIME_UNIT_SHIFT,
};
use lb_ebpf::packet;

use crate::{
    forward::{self, Side},
    maps::{
        LB_BACKENDS, LB_BACKEND_NH, LB_BACKEND_STATS, LB_CONNS, LB_FILTER, LB_FLOW_RATE,
        LB_PROBATION, LB_PROGS, LB_RINGS, LB_VIPS, LB_VIP_ADDRS, LB_VIP_STATS, PROG_ICMP,
    },
    parse::{self, Flow, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

/// UDP idle timeout, set by the loader (`lb_common::UDP_IDLE_GLOBAL`).
#[unsafe(no_mangle)]
static LB_UDP_IDLE: u32 = 28;

/// New flows one CPU records in `LB_CONNS` per time unit, set by the loader
/// (`lb_common::NEW_FLOW_LIMIT_GLOBAL`); 0 = no limit.
#[unsafe(no_mangle)]
static LB_NEW_FLOW_LIMIT: u32 = 0;

/// Flow hash seed, set by the loader (`lb_common::HASH_SEED_GLOBAL`).
#[unsafe(no_mangle)]
static LB_HASH_SEED: u32 = 0;

/// Whether `value` may be in prefilter bitmap `map` (a clear bit proves it is not).
#[inline(always)]
fn maybe(map: u32, value: u16) -> bool {
    let (word, bit) = filter::locate(map, value);
    LB_FILTER.get(word).is_none_or(|w| w & bit != 0)
}

/// Runs one packet through the pipeline; both arms carry the reason to count.
#[inline(always)]
pub fn run(ctx: &XdpContext) -> Result<Reason, Reason> {
    let pkt = parse::parse(ctx)?;
    if !maybe(filter::VIP_PORTS, u16::from_be(pkt.key.dport))
        || !maybe(filter::VIP_ADDRS, filter::fold(&pkt.key.dst))
    {
        return to_client(ctx, &pkt);
    }
    if pkt.key.proto == PROTO_ICMP || pkt.key.proto == PROTO_ICMPV6 {
        // SAFETY: `ctx` is this program's context; on success the call does not return.
        unsafe { LB_PROGS.tail_call(ctx, PROG_ICMP) };
        // `lb_icmp` is not installed: the stack gets the packet.
        return Err(Reason::PassNotVip);
    }
    let vip = VipKey {
        addr: pkt.key.dst,
        port: pkt.key.dport,
        proto: pkt.key.proto,
        family: pkt.key.family,
    };
    match LB_VIPS.get_ptr(vip) {
        // SAFETY: a pointer returned by a map lookup is valid for reads during this program run.
        Some(meta) => to_backend(ctx, &pkt, unsafe { *meta }),
        None => to_client(ctx, &pkt),
    }
}

/// Where a flow's backend came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The connection table.
    Tracked,
    /// The probation table: this packet promotes the flow to the connection table.
    OnProbation,
    /// Nowhere: a new flow, balanced by the ring.
    New,
}

/// Client -> VIP: pick the flow's backend and rewrite the destination to it.
#[inline(always)]
fn to_backend(ctx: &XdpContext, pkt: &Flow, meta: VipMeta) -> Result<Reason, Reason> {
    let (backend_id, backend, seen) = match tracked(&LB_CONNS, pkt, &meta) {
        Some((id, b)) => (id, b, Seen::Tracked),
        None => match tracked(&LB_PROBATION, pkt, &meta) {
            Some((id, b)) => (id, b, Seen::OnProbation),
            None => {
                let (id, b) = select(pkt, &meta)?;
                (id, b, Seen::New)
            }
        },
    };
    let nh = LB_BACKEND_NH
        .get_ptr_mut(backend_id)
        .ok_or(Reason::DropNoBackend)?;
    // SAFETY: the pointer came from an array lookup in this run; concurrent writers only
    // ever store the same lookup result, so a racing update is benign.
    let nh = unsafe { &mut *nh };
    count_traffic(
        meta.vip_id,
        backend_id,
        packet::len(ctx) as u64,
        seen == Seen::New,
    );
    let (addr, port) = (backend.addr, backend.port);
    let verdict = if meta.mode == MODE_DSR {
        forward::encap(ctx, pkt, backend.addr, nh)
    } else {
        forward::nat(ctx, pkt, Side::Dst, addr, port, nh, Reason::FwdNat)
    };
    if seen == Seen::Tracked || verdict == Err(Reason::PassTtl) {
        // Established, or not forwarded: nothing to record.
        return verdict;
    }
    // Keys and values are passed by reference: by value they would be copied onto the
    // 512-byte stack once more. One entry serves both directions, its `dir` flipped.
    let now = now();
    let probation = seen == Seen::New && !within_flow_limit(now);
    let table = if probation { &LB_PROBATION } else { &LB_CONNS };
    let mut entry = ConnEntry {
        backend_id,
        vip_id: meta.vip_id,
        last_seen: now,
        dir: DIR_FORWARD,
        ..ConnEntry::default()
    };
    #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
    table
        .insert(&pkt.key, &entry, 0)
        .map_err(|_| Reason::DropConnTable)?;
    if seen == Seen::OnProbation {
        #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
        let _ = LB_PROBATION.remove(&pkt.key);
    }
    if meta.mode != MODE_DSR {
        // Both directions are recorded even when the stack has to finish this packet; DSR
        // replies go straight from the backend to the client and need no state.
        let reply_key = FlowKey {
            src: backend.addr,
            dst: pkt.key.src,
            sport: backend.port,
            dport: pkt.key.sport,
            ..pkt.key
        };
        entry.dir = DIR_REPLY;
        #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
        table
            .insert(&reply_key, &entry, 0)
            .map_err(|_| Reason::DropConnTable)?;
        if seen == Seen::OnProbation {
            #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
            let _ = LB_PROBATION.remove(&reply_key);
        }
    }
    if probation {
        return verdict.map(|_| Reason::FwdProbation);
    }
    verdict
}

/// The backend of a flow recorded in `table`, unless the packet opens a new connection (a SYN
/// ignores a stale entry) or the entry's backend has been removed.
#[inline(always)]
fn tracked(
    table: &LruHashMap<FlowKey, ConnEntry>,
    pkt: &Flow,
    meta: &VipMeta,
) -> Option<(u32, Backend)> {
    if pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        return None;
    }
    #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
    let ptr = table.get_ptr_mut(&pkt.key)?;
    // SAFETY: the pointer came from a map lookup in this run; writers on other CPUs only
    // store a newer time or the same flag, so racing updates are benign.
    let entry = unsafe { &mut *ptr };
    if entry.dir != DIR_FORWARD || entry.vip_id != meta.vip_id {
        return None;
    }
    if pkt.key.proto == PROTO_UDP {
        let now = now();
        // SAFETY: reading a read-only global that the loader initialised.
        let idle = unsafe { core::ptr::read_volatile(&LB_UDP_IDLE) };
        if now.wrapping_sub(entry.last_seen) > idle {
            return None;
        }
        if entry.last_seen != now {
            entry.last_seen = now;
        }
    } else if pkt.tcp_flags & (TCP_FIN | TCP_RST) != 0 && entry.flags & CONN_F_CLOSED == 0 {
        entry.flags |= CONN_F_CLOSED;
    }
    let backend = *LB_BACKENDS.get(entry.backend_id)?;
    (backend.family != 0).then_some((entry.backend_id, backend))
}

/// Counts a new flow against this CPU's limit; false once the limit is reached this unit.
#[inline(always)]
fn within_flow_limit(now: u32) -> bool {
    // SAFETY: reading a read-only global that the loader initialised.
    let limit = unsafe { core::ptr::read_volatile(&LB_NEW_FLOW_LIMIT) };
    if limit == 0 {
        return true;
    }
    let Some(rate) = LB_FLOW_RATE.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: a per-CPU array pointer from this run; no other CPU writes this copy.
    let rate = unsafe { &mut *rate };
    if rate.window != now {
        rate.window = now;
        rate.count = 0;
    }
    rate.count += 1;
    rate.count <= limit
}

/// Coarse monotonic time in units of 2^`TIME_UNIT_SHIFT` ns.
#[inline(always)]
fn now() -> u32 {
    // SAFETY: the helper has no arguments and no preconditions.
    (unsafe { bpf_ktime_get_coarse_ns() } >> TIME_UNIT_SHIFT) as u32
}

/// Adds one packet of `len` bytes (and a flow, if `new`) to the VIP's and backend's counters.
#[inline(always)]
fn count_traffic(vip_id: u32, backend_id: u32, len: u64, new: bool) {
    if let Some(stats) = LB_VIP_STATS.get_ptr_mut(vip_id) {
        add(stats, len, new);
    }
    if let Some(stats) = LB_BACKEND_STATS.get_ptr_mut(backend_id) {
        add(stats, len, new);
    }
}

#[inline(always)]
fn add(stats: *mut TrafficStats, len: u64, new: bool) {
    // SAFETY: a per-CPU array pointer from this run; no other CPU writes this copy.
    let stats = unsafe { &mut *stats };
    stats.packets += 1;
    stats.bytes += len;
    stats.new_flows += u64::from(new);
}

/// Chooses a backend for a new flow from the VIP's live ring.
#[inline(always)]
fn select(pkt: &Flow, meta: &VipMeta) -> Result<(u32, Backend), Reason> {
    let size = meta.ring & !RING_BUF_BIT;
    if size == 0 {
        return Err(Reason::DropNoBackend);
    }
    let buf = meta.ring >> 31;
    // SAFETY: reading a read-only global that the loader initialised.
    let seed = unsafe { core::ptr::read_volatile(&LB_HASH_SEED) };
    let slot = ring_base(meta.vip_id, buf) + flow_hash(seed, &pkt.key) % size;
    let backend_id = *LB_RINGS.get(slot).ok_or(Reason::DropNoBackend)?;
    if backend_id == BACKEND_NONE {
        return Err(Reason::DropNoBackend);
    }
    let backend = *LB_BACKENDS.get(backend_id).ok_or(Reason::DropNoBackend)?;
    if backend.family == 0 {
        return Err(Reason::DropNoBackend);
    }
    Ok((backend_id, backend))
}

/// Backend -> client: if the packet is the reply of a tracked NAT flow, rewrite its source
/// back to VIP:port; anything else is not ours and goes to the stack.
#[inline(always)]
fn to_client(ctx: &XdpContext, pkt: &Flow) -> Result<Reason, Reason> {
    if !maybe(filter::BACKEND_PORTS, u16::from_be(pkt.key.sport)) {
        return Err(Reason::PassNotVip);
    }
    // A reply of a flow on probation is rewritten too: its handshake has not completed yet.
    #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
    let ptr = LB_CONNS
        .get_ptr_mut(&pkt.key)
        .or_else(|| LB_PROBATION.get_ptr_mut(&pkt.key))
        .ok_or(Reason::PassNotVip)?;
    // SAFETY: the pointer came from a map lookup in this run; see `to_backend` on races.
    let entry = unsafe { &mut *ptr };
    if entry.dir != DIR_REPLY {
        return Err(Reason::PassNotVip);
    }
    let vip = *LB_VIP_ADDRS.get(entry.vip_id).ok_or(Reason::PassNotVip)?;
    let (addr, port) = (vip.addr, vip.port);
    forward::nat(
        ctx,
        pkt,
        Side::Src,
        addr,
        port,
        &mut entry.nh,
        Reason::FwdReply,
    )
}
