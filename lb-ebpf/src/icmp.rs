//! ICMP to VIP addresses, in `lb_icmp` (tail-called by `lb_xdp`, so it has a stack of its
//! own): echo requests (ping) are answered by the balancer itself, from the VIP, with XDP_TX.
//! Errors that quote a packet a DSR backend sent from the VIP (destination unreachable,
//! fragmentation needed among them; packet too big) are encapsulated to the backend that owns
//! the quoted flow, so its path MTU discovery works. Other ICMP to a VIP, and errors about NAT
//! flows, go to the stack.
use aya_ebpf::programs::XdpContext;
use lb_common::{FlowKey, Reason, VipKey, FAMILY_V4, MODE_DSR};
use lb_ebpf::packet;

use crate::{
    csum, forward,
    maps::{LB_BACKENDS, LB_BACKEND_NH, LB_CONNS, LB_VIPS},
    parse::{self, Flow, L3},
};

/// ICMP echo request / reply types.
const ECHO_V4: (u8, u8) = (8, 0);
/// ICMPv6 echo request / reply types.
const ECHO_V6: (u8, u8) = (128, 129);
/// ICMP destination unreachable (fragmentation needed is its code 4).
const UNREACHABLE_V4: u8 = 3;
/// ICMPv6 destination unreachable.
const UNREACHABLE_V6: u8 = 1;
/// ICMPv6 packet too big.
const TOO_BIG_V6: u8 = 2;
/// TTL / hop limit of the replies.
const REPLY_TTL: u8 = 64;

/// Parses the packet again (it arrives through a tail call) and handles it.
#[inline(always)]
pub fn run(ctx: &XdpContext) -> Result<Reason, Reason> {
    let pkt = parse::parse(ctx)?;
    answer(ctx, &pkt)
}

/// Answers an echo request to a VIP address in place, or forwards an error about a DSR flow.
#[inline(always)]
fn answer(ctx: &XdpContext, pkt: &Flow) -> Result<Reason, Reason> {
    let vip = VipKey {
        addr: pkt.key.dst,
        port: 0,
        proto: pkt.key.proto,
        family: pkt.key.family,
    };
    #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
    if LB_VIPS.get_ptr(&vip).is_none() {
        return Err(Reason::PassNotVip);
    }
    let v4 = pkt.key.family == FAMILY_V4;
    let (request, reply) = if v4 { ECHO_V4 } else { ECHO_V6 };
    // Type, code and checksum in one access: separate accesses at offsets from `l4` get
    // their bounds checks merged by LLVM in a way the verifier cannot follow.
    let [kind, code, c0, c1]: [u8; 4] = packet::load(ctx, pkt.l4)?;
    if (v4 && kind == UNREACHABLE_V4) || (!v4 && (kind == UNREACHABLE_V6 || kind == TOO_BIG_V6)) {
        return to_owner(ctx, pkt);
    }
    if kind != request || code != 0 {
        return Err(Reason::PassNotVip);
    }
    // Type changes; swapping the addresses changes neither the IPv4 header checksum nor the
    // ICMPv6 pseudo-header sum.
    let old = u16::from_ne_bytes([request, 0]);
    let new = u16::from_ne_bytes([reply, 0]);
    let [n0, n1] = csum::replace2(u16::from_ne_bytes([c0, c1]), old, new).to_ne_bytes();
    packet::store(ctx, pkt.l4, [reply, code, n0, n1])?;
    if v4 {
        let ttl_proto: u16 = packet::load(ctx, L3 + 8)?;
        let new_ttl_proto = u16::from_ne_bytes([REPLY_TTL, pkt.key.proto]);
        let ip_check: u16 = packet::load(ctx, L3 + 10)?;
        packet::store(
            ctx,
            L3 + 10,
            csum::replace2(ip_check, ttl_proto, new_ttl_proto),
        )?;
        packet::store(ctx, L3 + 8, new_ttl_proto)?;
        packet::store(ctx, L3 + 12, pkt.key.dst[0])?;
        packet::store(ctx, L3 + 16, pkt.key.src[0])?;
    } else {
        packet::store(ctx, L3 + 7, REPLY_TTL)?;
        packet::store(ctx, L3 + 8, pkt.key.dst)?;
        packet::store(ctx, L3 + 24, pkt.key.src)?;
    }
    let macs: [[u8; 6]; 2] = packet::load(ctx, 0)?;
    packet::store(ctx, 0, [macs[1], macs[0]])?;
    Ok(Reason::IcmpEchoReply)
}

/// Sends an ICMP error quoting a packet from VIP:port to a client to the DSR backend that owns
/// that flow, encapsulated like the flow's own packets.
#[inline(always)]
fn to_owner(ctx: &XdpContext, pkt: &Flow) -> Result<Reason, Reason> {
    // The quoted packet: an IP header (without options) and the first 8 bytes of its payload.
    let quoted = pkt.l4 + 8;
    let v4 = pkt.key.family == FAMILY_V4;
    // One load each: separate loads at offsets from the same base get their bounds checks
    // merged by LLVM in a way the verifier cannot follow. A quote too short to read is not
    // ours to judge: the stack gets it.
    let word = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let (src, dst, proto, sport, dport) = if v4 {
        let q: [u8; 24] = packet::load(ctx, quoted).map_err(|_| Reason::PassNotVip)?;
        if q[0] != 0x45 {
            return Err(Reason::PassNotVip);
        }
        let ports = [
            u16::from_ne_bytes([q[20], q[21]]),
            u16::from_ne_bytes([q[22], q[23]]),
        ];
        (
            [word(&q, 12), 0, 0, 0],
            [word(&q, 16), 0, 0, 0],
            q[9],
            ports[0],
            ports[1],
        )
    } else {
        let q: [u8; 44] = packet::load(ctx, quoted).map_err(|_| Reason::PassNotVip)?;
        let addr = |at: usize| {
            [
                word(&q, at),
                word(&q, at + 4),
                word(&q, at + 8),
                word(&q, at + 12),
            ]
        };
        let ports = [
            u16::from_ne_bytes([q[40], q[41]]),
            u16::from_ne_bytes([q[42], q[43]]),
        ];
        (addr(8), addr(24), q[6], ports[0], ports[1])
    };
    // The quoted packet went VIP -> client; the flow's key is client -> VIP.
    let key = FlowKey {
        src: dst,
        dst: src,
        sport: dport,
        dport: sport,
        proto,
        family: pkt.key.family,
        _pad: [0; 2],
    };
    let vip = VipKey {
        addr: src,
        port: sport,
        proto,
        family: pkt.key.family,
    };
    #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
    let meta = LB_VIPS.get_ptr(&vip).ok_or(Reason::PassNotVip)?;
    // SAFETY: a pointer returned by a map lookup is valid for reads during this program run.
    if unsafe { (*meta).mode } != MODE_DSR {
        return Err(Reason::PassNotVip);
    }
    #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
    let entry = LB_CONNS.get_ptr(&key).ok_or(Reason::PassNotVip)?;
    // SAFETY: as above.
    let backend_id = unsafe { (*entry).backend_id };
    let backend = *LB_BACKENDS.get(backend_id).ok_or(Reason::PassNotVip)?;
    let nh = LB_BACKEND_NH
        .get_ptr_mut(backend_id)
        .ok_or(Reason::PassNotVip)?;
    // SAFETY: an array value pointer from this run; racing writers store the same lookup.
    let nh = unsafe { &mut *nh };
    let owner = Flow {
        l4: pkt.l4,
        key,
        tcp_flags: 0,
        l4_check: pkt.l4_check,
    };
    forward::encap(ctx, &owner, backend.addr, nh).map(|_| Reason::FwdIcmpError)
}
