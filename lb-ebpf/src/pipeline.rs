//! The stages of `lb_xdp` after parsing: VIP lookup, connection tracking, ring selection, and
//! the NAT rewrite in each direction.
use aya_ebpf::programs::XdpContext;
use lb_common::{
    filter, flow_hash, ring_base, Backend, ConnEntry, FlowKey, Reason, VipKey, VipMeta,
    BACKEND_NONE, DIR_FORWARD, DIR_REPLY, MODE_DSR, RING_BUF_BIT,
};

use crate::{
    forward::{self, Side},
    maps::{LB_BACKENDS, LB_BACKEND_NH, LB_CONNS, LB_FILTER, LB_RINGS, LB_VIPS, LB_VIP_ADDRS},
    parse::{self, Flow, TCP_ACK, TCP_SYN},
};

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

/// Client -> VIP: pick the flow's backend and rewrite the destination to it.
#[inline(always)]
fn to_backend(ctx: &XdpContext, pkt: &Flow, meta: VipMeta) -> Result<Reason, Reason> {
    let (backend_id, backend, new) = match tracked(pkt, &meta) {
        Some((id, b)) => (id, b, false),
        None => {
            let (id, b) = select(pkt, &meta)?;
            (id, b, true)
        }
    };
    let nh = LB_BACKEND_NH
        .get_ptr_mut(backend_id)
        .ok_or(Reason::DropNoBackend)?;
    // SAFETY: the pointer came from an array lookup in this run; concurrent writers only
    // ever store the same lookup result, so a racing update is benign.
    let nh = unsafe { &mut *nh };
    let (addr, port) = (backend.addr, backend.port);
    let verdict = if meta.mode == MODE_DSR {
        forward::encap(ctx, pkt, backend.addr, nh)
    } else {
        forward::nat(ctx, pkt, Side::Dst, addr, port, nh, Reason::FwdNat)
    };
    if !new || verdict == Err(Reason::PassTtl) {
        // Established, or not forwarded: nothing to record.
        return verdict;
    }
    let fwd = ConnEntry {
        backend_id,
        vip_id: meta.vip_id,
        dir: DIR_FORWARD,
        ..ConnEntry::default()
    };
    // Both directions are recorded even when the stack has to finish this packet.
    let reply_key = FlowKey {
        src: backend.addr,
        dst: pkt.key.src,
        sport: backend.port,
        dport: pkt.key.sport,
        ..pkt.key
    };
    let reply = ConnEntry {
        backend_id,
        vip_id: meta.vip_id,
        dir: DIR_REPLY,
        ..ConnEntry::default()
    };
    LB_CONNS
        .insert(pkt.key, fwd, 0)
        .map_err(|_| Reason::DropConnTable)?;
    if meta.mode != MODE_DSR {
        // DSR replies go straight from the backend to the client: no reply state.
        LB_CONNS
            .insert(reply_key, reply, 0)
            .map_err(|_| Reason::DropConnTable)?;
    }
    verdict
}

/// The backend of an established flow, unless the packet opens a new connection (a SYN
/// ignores a stale entry) or the entry's backend has been removed.
#[inline(always)]
fn tracked(pkt: &Flow, meta: &VipMeta) -> Option<(u32, Backend)> {
    if pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        return None;
    }
    // SAFETY: map lookup pointers are valid for reads during this program run.
    let entry = unsafe { *LB_CONNS.get_ptr(pkt.key)? };
    if entry.dir != DIR_FORWARD || entry.vip_id != meta.vip_id {
        return None;
    }
    let backend = *LB_BACKENDS.get(entry.backend_id)?;
    (backend.family != 0).then_some((entry.backend_id, backend))
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
    let ptr = LB_CONNS.get_ptr_mut(pkt.key).ok_or(Reason::PassNotVip)?;
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
