//! The stages of `lb_xdp` after parsing: prefilters, VIP lookup, connection tracking (with UDP
//! idle expiry, and the new-flow limit with its probation table), ring selection, counters,
//! and handing the packet to NAT or DSR forwarding; NAT replies are rewritten back to the VIP.
use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;
use lb_common::{
    filter, flow_hash, Backend, ConnEntry, FlowKey, Reason, TrafficStats, VipKey, VipMeta,
    BACKEND_NONE, CONN_F_CLOSED, DIR_FORWARD, DIR_REPLY, MODE_DSR, PROTO_ICMP, PROTO_ICMPV6,
    PROTO_UDP, RING_BUF_BIT, TIME_UNIT_SHIFT,
};

use crate::{
    forward::{self, Side},
    hook::Hook,
    maps::{
        LB_BACKENDS, LB_BACKEND_NH, LB_BACKEND_STATS, LB_CONNS, LB_FILTER, LB_FLOW_RATE,
        LB_PROBATION, LB_RINGS, LB_VIPS, LB_VIP_ADDRS, LB_VIP_STATS, PROG_ICMP,
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
pub fn run<C: Hook>(ctx: &C) -> Result<Reason, Reason> {
    let pkt = parse::parse(ctx)?;
    let to_vip = maybe(filter::VIP_PORTS, u16::from_be(pkt.key.dport))
        && maybe(filter::VIP_ADDRS, filter::fold(&pkt.key.dst));
    if to_vip && (pkt.key.proto == PROTO_ICMP || pkt.key.proto == PROTO_ICMPV6) {
        // On success this does not return.
        ctx.tail_call(PROG_ICMP);
        // `lb_icmp` is not installed: the stack gets the packet.
        return Err(Reason::PassNotVip);
    }
    // A SYN opens a new connection: it ignores a stale entry and is balanced afresh.
    let opens = pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let mut reply = None;
    let mut choice = None;
    // Established flows first: one lookup finds either direction, without the VIP's.
    if !opens && (to_vip || maybe(filter::BACKEND_PORTS, u16::from_be(pkt.key.sport))) {
        #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
        if let Some(ptr) = LB_CONNS.get_ptr_mut(&pkt.key) {
            // SAFETY: the pointer came from a map lookup in this run; writers on other CPUs
            // only store a newer time or the same flag, so racing updates are benign.
            let entry = unsafe { &mut *ptr };
            if entry.dir == DIR_REPLY {
                reply = Some(ptr);
            } else {
                choice = established(&pkt, entry).map(|backend| Choice {
                    vip_id: entry.vip_id,
                    backend_id: entry.backend_id,
                    mode: entry.mode,
                    backend,
                    seen: Seen::Tracked,
                });
            }
        }
    }
    if reply.is_none() && choice.is_none() {
        let meta = if to_vip {
            LB_VIPS.get_ptr(VipKey {
                addr: pkt.key.dst,
                port: pkt.key.dport,
                proto: pkt.key.proto,
                family: pkt.key.family,
            })
        } else {
            None
        };
        match meta {
            // SAFETY: a pointer returned by a map lookup is valid for reads during this run.
            Some(meta) => choice = Some(choose(&pkt, unsafe { &*meta }, opens)?),
            None => reply = probation_reply(&pkt, opens),
        }
    }
    if let Some(ptr) = reply {
        // SAFETY: the pointer came from a map lookup in this run; see above on races.
        return to_client(ctx, &pkt, unsafe { &mut *ptr });
    }
    match choice {
        Some(c) => to_backend(ctx, &pkt, &c),
        None => Err(Reason::PassNotVip),
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

/// The backend a client -> VIP packet goes to, and what is known of its flow.
struct Choice {
    vip_id: u32,
    backend_id: u32,
    /// `MODE_NAT` or `MODE_DSR`.
    mode: u8,
    backend: Backend,
    seen: Seen,
}

/// The backend of a packet to VIP `meta` that the connection table does not know: from the
/// probation table, or from the ring.
#[inline(always)]
fn choose(pkt: &Flow, meta: &VipMeta, opens: bool) -> Result<Choice, Reason> {
    let probation = if opens || flow_limit() == 0 {
        None
    } else {
        #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
        LB_PROBATION.get_ptr_mut(&pkt.key).and_then(|ptr| {
            // SAFETY: the pointer came from a map lookup in this run; see `run` on races.
            let entry = unsafe { &mut *ptr };
            let backend = established(pkt, entry).filter(|_| entry.dir == DIR_FORWARD)?;
            Some((entry.backend_id, backend))
        })
    };
    let ((backend_id, backend), seen) = match probation {
        Some(found) => (found, Seen::OnProbation),
        None => (select(pkt, meta)?, Seen::New),
    };
    Ok(Choice {
        vip_id: meta.vip_id,
        backend_id,
        mode: meta.mode,
        backend,
        seen,
    })
}

/// Client -> VIP: rewrite (NAT) or encapsulate (DSR) the packet to its backend, then record
/// a flow that is new (in the connection table, or on probation past the new-flow limit) or
/// promoted from probation.
#[inline(always)]
fn to_backend<C: Hook>(ctx: &C, pkt: &Flow, c: &Choice) -> Result<Reason, Reason> {
    let nh = LB_BACKEND_NH
        .get_ptr_mut(c.backend_id)
        .ok_or(Reason::DropNoBackend)?;
    // SAFETY: the pointer came from an array lookup in this run; concurrent writers only
    // ever store the same lookup result, so a racing update is benign.
    let nh = unsafe { &mut *nh };
    let new = c.seen == Seen::New;
    count_traffic(c.vip_id, c.backend_id, ctx.wire_len() as u64, new);
    let (addr, port) = (c.backend.addr, c.backend.port);
    let verdict = if c.mode == MODE_DSR {
        forward::encap(ctx, pkt, addr, nh)
    } else {
        forward::nat(ctx, pkt, Side::Dst, addr, port, nh, Reason::FwdNat)
    };
    if c.seen == Seen::Tracked || verdict == Err(Reason::PassTtl) {
        // Established, or not forwarded: nothing to record.
        return verdict;
    }
    // Keys and values are passed by reference: by value they would be copied onto the
    // 512-byte stack once more. One entry serves both directions, its `dir` flipped.
    let now = now();
    let probation = new && !within_flow_limit(now);
    let table = if probation { &LB_PROBATION } else { &LB_CONNS };
    let mut entry = ConnEntry {
        backend_id: c.backend_id,
        vip_id: c.vip_id,
        last_seen: now,
        dir: DIR_FORWARD,
        mode: c.mode,
        ..ConnEntry::default()
    };
    #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
    table
        .insert(&pkt.key, &entry, 0)
        .map_err(|_| Reason::DropConnTable)?;
    if !new {
        #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
        let _ = LB_PROBATION.remove(&pkt.key);
    }
    if c.mode != MODE_DSR {
        // Both directions are recorded even when the stack has to finish this packet; DSR
        // replies go straight from the backend to the client and need no state.
        let reply_key = FlowKey {
            src: addr,
            dst: pkt.key.src,
            sport: port,
            dport: pkt.key.sport,
            ..pkt.key
        };
        entry.dir = DIR_REPLY;
        #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
        table
            .insert(&reply_key, &entry, 0)
            .map_err(|_| Reason::DropConnTable)?;
        if !new {
            #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
            let _ = LB_PROBATION.remove(&reply_key);
        }
    }
    if probation {
        return verdict.map(|_| Reason::FwdProbation);
    }
    verdict
}

/// The live backend of a forward entry for `pkt`, unless its VIP has gone (the entry's VIP id
/// no longer holds the packet's destination), its UDP flow has been idle too long, or its
/// backend has been removed. Notes a client FIN or RST for the active-flow estimate.
#[inline(always)]
fn established(pkt: &Flow, entry: &mut ConnEntry) -> Option<Backend> {
    let vip = LB_VIP_ADDRS.get(entry.vip_id)?;
    if vip.addr != pkt.key.dst
        || vip.port != pkt.key.dport
        || vip.proto != pkt.key.proto
        || vip.family != pkt.key.family
    {
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
    (backend.family != 0).then_some(backend)
}

/// The reply entry of a NAT flow on probation (its handshake has not completed yet), if
/// `pkt` is one.
#[inline(always)]
fn probation_reply(pkt: &Flow, opens: bool) -> Option<*mut ConnEntry> {
    if opens || flow_limit() == 0 || !maybe(filter::BACKEND_PORTS, u16::from_be(pkt.key.sport)) {
        return None;
    }
    #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
    let ptr = LB_PROBATION.get_ptr_mut(&pkt.key)?;
    // SAFETY: the pointer came from a map lookup in this run.
    (unsafe { (*ptr).dir } == DIR_REPLY).then_some(ptr)
}

/// The new-flow limit per CPU and time unit; 0 = none, so nothing is ever on probation.
#[inline(always)]
fn flow_limit() -> u32 {
    // SAFETY: reading a read-only global that the loader initialised.
    unsafe { core::ptr::read_volatile(&LB_NEW_FLOW_LIMIT) }
}

/// Counts a new flow against this CPU's limit; false once the limit is reached this unit.
#[inline(always)]
fn within_flow_limit(now: u32) -> bool {
    let limit = flow_limit();
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
    // SAFETY: reading a read-only global that the loader initialised.
    let seed = unsafe { core::ptr::read_volatile(&LB_HASH_SEED) };
    let slot = meta.slot(flow_hash(seed, &pkt.key) % size);
    let pair = LB_RINGS.get(slot >> 1).ok_or(Reason::DropNoBackend)?;
    let backend_id = pair[(slot & 1) as usize];
    if backend_id == BACKEND_NONE {
        return Err(Reason::DropNoBackend);
    }
    let backend = *LB_BACKENDS.get(backend_id).ok_or(Reason::DropNoBackend)?;
    if backend.family == 0 {
        return Err(Reason::DropNoBackend);
    }
    Ok((backend_id, backend))
}

/// Backend -> client, the reply of a tracked NAT flow: rewrite its source back to VIP:port,
/// unless the VIP has gone (then it is not ours and goes to the stack).
#[inline(always)]
fn to_client<C: Hook>(ctx: &C, pkt: &Flow, entry: &mut ConnEntry) -> Result<Reason, Reason> {
    let vip = *LB_VIP_ADDRS.get(entry.vip_id).ok_or(Reason::PassNotVip)?;
    if vip.family == 0 {
        return Err(Reason::PassNotVip);
    }
    forward::nat(
        ctx,
        pkt,
        Side::Src,
        vip.addr,
        vip.port,
        &mut entry.nh,
        Reason::FwdReply,
    )
}
