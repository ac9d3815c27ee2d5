//! The stages of `lb_xdp` after parsing: VIP lookup, connection tracking, ring selection, and
//! the NAT rewrite in each direction.
use aya_ebpf::programs::XdpContext;
use lb_common::{
    flow_hash, ring_base, Backend, ConnEntry, FlowKey, Reason, VipKey, VipMeta, BACKEND_NONE,
    DIR_FORWARD, DIR_REPLY, RING_BUF_BIT,
};

use crate::{
    forward::{self, Side},
    maps::{LB_BACKENDS, LB_CONNS, LB_RINGS, LB_VIPS, LB_VIP_ADDRS},
    parse::{self, Ipv4Flow, TCP_ACK, TCP_SYN},
};

/// Flow hash seed, set by the loader (`lb_common::HASH_SEED_GLOBAL`).
#[unsafe(no_mangle)]
static LB_HASH_SEED: u32 = 0;

/// Runs one packet through the pipeline; both arms carry the reason to count.
#[inline(always)]
pub fn run(ctx: &XdpContext) -> Result<Reason, Reason> {
    let pkt = parse::parse(ctx)?;
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
fn to_backend(ctx: &XdpContext, pkt: &Ipv4Flow, meta: VipMeta) -> Result<Reason, Reason> {
    let backend = match tracked_backend(pkt, &meta) {
        Some(b) => b,
        None => new_flow(pkt, &meta)?,
    };
    forward::nat_v4(
        ctx,
        pkt,
        Side::Dst,
        backend.addr[0],
        backend.port,
        Reason::FwdNat,
    )
}

/// The backend of an established flow, unless the packet opens a new connection (a SYN
/// ignores a stale entry) or the entry's backend has been removed.
#[inline(always)]
fn tracked_backend(pkt: &Ipv4Flow, meta: &VipMeta) -> Option<Backend> {
    if pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        return None;
    }
    // SAFETY: map lookup pointers are valid for reads during this program run.
    let entry = unsafe { *LB_CONNS.get_ptr(pkt.key)? };
    if entry.dir != DIR_FORWARD || entry.vip_id != meta.vip_id {
        return None;
    }
    let backend = *LB_BACKENDS.get(entry.backend_id)?;
    (backend.family != 0).then_some(backend)
}

/// Chooses a backend from the VIP's live ring and records both directions of the flow.
#[inline(always)]
fn new_flow(pkt: &Ipv4Flow, meta: &VipMeta) -> Result<Backend, Reason> {
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
    let fwd = ConnEntry {
        backend_id,
        vip_id: meta.vip_id,
        dir: DIR_FORWARD,
        _pad: [0; 3],
    };
    let reply_key = FlowKey {
        src: backend.addr,
        dst: pkt.key.src,
        sport: backend.port,
        dport: pkt.key.sport,
        ..pkt.key
    };
    let reply = ConnEntry {
        dir: DIR_REPLY,
        ..fwd
    };
    LB_CONNS
        .insert(pkt.key, fwd, 0)
        .map_err(|_| Reason::DropConnTable)?;
    LB_CONNS
        .insert(reply_key, reply, 0)
        .map_err(|_| Reason::DropConnTable)?;
    Ok(backend)
}

/// Backend -> client: if the packet is the reply of a tracked NAT flow, rewrite its source
/// back to VIP:port; anything else is not ours and goes to the stack.
#[inline(always)]
fn to_client(ctx: &XdpContext, pkt: &Ipv4Flow) -> Result<Reason, Reason> {
    // SAFETY: map lookup pointers are valid for reads during this program run.
    let entry = unsafe { *LB_CONNS.get_ptr(pkt.key).ok_or(Reason::PassNotVip)? };
    if entry.dir != DIR_REPLY {
        return Err(Reason::PassNotVip);
    }
    let vip = *LB_VIP_ADDRS.get(entry.vip_id).ok_or(Reason::PassNotVip)?;
    forward::nat_v4(ctx, pkt, Side::Src, vip.addr[0], vip.port, Reason::FwdReply)
}
