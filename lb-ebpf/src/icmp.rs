//! ICMP to VIP addresses, in `lb_icmp` (tail-called by `lb_xdp`, so it has a stack of its
//! own): echo requests (ping) are answered by the balancer itself, from the VIP, with XDP_TX.
//! Errors that quote a packet a DSR backend sent from the VIP (destination unreachable,
//! fragmentation needed among them; packet too big) are encapsulated to the backend that owns
//! the quoted flow, so its path MTU discovery works; about a NAT flow, they are translated
//! (outer destination and quoted source become the backend's) and forwarded to it. Other ICMP
//! to a VIP goes to the stack. And `lb_too_big`: a DSR packet too big for the egress MTU once
//! encapsulated is answered, from the VIP, with "fragmentation needed" / "packet too big".
use lb_common::{
    Backend, FlowKey, NextHop, Reason, VipKey, ETH_P_IP, FAMILY_V4, MODE_DSR, PROTO_ICMP,
    PROTO_ICMPV6,
};
use lb_ebpf::packet;

use crate::{
    csum,
    forward::{self, IP6_LEN, IP_LEN},
    hook::Hook,
    maps::{LB_BACKENDS, LB_BACKEND_NH, LB_CONNS, LB_PROBATION, LB_TOO_BIG_MTU, LB_VIPS},
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
/// Fragmentation needed: code of destination unreachable.
const FRAG_NEEDED_V4: u8 = 4;
/// ICMP header length, bytes.
const ICMP_LEN: usize = 8;
/// Bytes of the offending packet a "too big" answer quotes: its IP header and the start of
/// its payload (the packet is always longer, being too big for a link).
const QUOTE: usize = 64;

/// Parses the packet again (it arrives through a tail call) and handles it.
#[inline(always)]
pub fn run<C: Hook>(ctx: &C) -> Result<Reason, Reason> {
    let pkt = parse::parse(ctx)?;
    answer(ctx, &pkt)
}

/// Answers an echo request to a VIP address in place, or forwards an error about a DSR flow.
#[inline(always)]
fn answer<C: Hook>(ctx: &C, pkt: &Flow) -> Result<Reason, Reason> {
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

/// Sends an ICMP error quoting a packet from VIP:port to a client to the backend that owns
/// that flow: encapsulated like the flow's own packets (DSR), or translated (NAT).
#[inline(always)]
fn to_owner<C: Hook>(ctx: &C, pkt: &Flow) -> Result<Reason, Reason> {
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
    let dsr = unsafe { (*meta).mode } == MODE_DSR;
    #[allow(clippy::needless_borrows_for_generic_args, reason = "saves BPF stack")]
    let entry = LB_CONNS
        .get_ptr(&key)
        .or_else(|| LB_PROBATION.get_ptr(&key))
        .ok_or(Reason::PassNotVip)?;
    // SAFETY: as above.
    let backend_id = unsafe { (*entry).backend_id };
    let backend = *LB_BACKENDS.get(backend_id).ok_or(Reason::PassNotVip)?;
    let nh = LB_BACKEND_NH
        .get_ptr_mut(backend_id)
        .ok_or(Reason::PassNotVip)?;
    // SAFETY: an array value pointer from this run; racing writers store the same lookup.
    let nh = unsafe { &mut *nh };
    if !dsr {
        return translate(ctx, pkt, quoted, src, sport, &backend, nh);
    }
    let owner = Flow {
        l4: pkt.l4,
        key,
        tcp_flags: 0,
        l4_check: pkt.l4_check,
    };
    forward::encap(ctx, &owner, backend.addr, nh).map(|_| Reason::FwdIcmpError)
}

/// NAT: rewrites an ICMP error about a reply the balancer sent from `vip:vip_port` (raw wire
/// values) into the error the backend would have got for the packet it sent: the outer
/// destination and the quoted source become the backend's, with every checksum the change
/// touches (outer IPv4 header, quoted IPv4 header, ICMP / ICMPv6 with its pseudo header)
/// updated; then forwards it to the backend. The quoted transport checksum is left as it is:
/// receivers do not check a quoted segment (for TCP it is not even among the 8 bytes quoted).
#[inline(always)]
fn translate<C: Hook>(
    ctx: &C,
    pkt: &Flow,
    quoted: usize,
    vip: [u32; 4],
    vip_port: u16,
    backend: &Backend,
    nh: &mut NextHop,
) -> Result<Reason, Reason> {
    let v4 = pkt.key.family == FAMILY_V4;
    let mut check: u16 = packet::load(ctx, pkt.l4 + 2)?;
    if v4 {
        let q_check: u16 = packet::load(ctx, quoted + 10)?;
        let new_q_check = csum::replace4(q_check, vip[0], backend.addr[0]);
        check = csum::replace2(check, q_check, new_q_check);
        check = csum::replace4(check, vip[0], backend.addr[0]);
        packet::store(ctx, quoted + 10, new_q_check)?;
        packet::store(ctx, quoted + 12, backend.addr[0])?;
        packet::store(ctx, quoted + 20, backend.port)?;
    } else {
        // The quoted source and, in the pseudo header, the outer destination: both the VIP.
        for _ in 0..2 {
            for i in 0..4 {
                check = csum::replace4(check, vip[i], backend.addr[i]);
            }
        }
        packet::store(ctx, quoted + 8, backend.addr)?;
        packet::store(ctx, quoted + 40, backend.port)?;
    }
    check = csum::replace2(check, vip_port, backend.port);
    packet::store(ctx, pkt.l4 + 2, check)?;
    forward::forward_to(ctx, v4, backend.addr, nh, Reason::FwdIcmpError)
}

/// One's-complement sum of 32-bit words as read natively from the packet.
#[inline(always)]
fn sum_words(acc: u32, words: &[u32]) -> u32 {
    let mut acc = acc;
    for w in words {
        acc += (w & 0xffff) + (w >> 16);
    }
    acc
}

/// One's-complement sum (unfolded) of the `QUOTE` quoted bytes at frame offset `off`, by the
/// kernel (`bpf_csum_diff`): a loop here would be vectorised onto the BPF stack.
#[inline(always)]
fn quote_sum<C: Hook>(ctx: &C, off: usize) -> Result<u32, Reason> {
    let p = packet::ptr_at::<[u8; QUOTE], C>(ctx, off)?;
    // SAFETY: `ptr_at` checked that `QUOTE` bytes at `p` lie inside the frame; the helper only
    // reads them.
    let sum = unsafe {
        aya_ebpf::helpers::generated::bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            p.cast(),
            QUOTE as u32,
            0,
        )
    };
    if sum < 0 {
        return Err(Reason::DropMalformed);
    }
    // Folded to 16 bits, so the caller's sums cannot overflow.
    Ok(u32::from(csum::fold(sum as u32)))
}

/// Turns the packet (a DSR packet as the client sent it) into ICMP "fragmentation needed"
/// (IPv4) or "packet too big" (IPv6) from the VIP back to the client, quoting its first
/// `QUOTE` bytes and naming the largest packet that fits once encapsulated.
#[inline(always)]
pub fn too_big<C: Hook>(ctx: &C) -> Result<Reason, Reason> {
    let mtu = LB_TOO_BIG_MTU.get(0).copied().ok_or(Reason::PassSlowPath)? as u16;
    let macs: [[u8; 6]; 2] = packet::load(ctx, 0)?;
    let ethertype: u16 = packet::load(ctx, 12)?;
    let v4 = ethertype == ETH_P_IP;
    // Client (source) and VIP (destination), in one load each (see `answer`).
    let (client, vip): ([u32; 4], [u32; 4]) = if v4 {
        let a: [u32; 2] = packet::load(ctx, L3 + 12)?;
        ([a[0], 0, 0, 0], [a[1], 0, 0, 0])
    } else {
        let a: [[u32; 4]; 2] = packet::load(ctx, L3 + 8)?;
        (a[0], a[1])
    };
    let hdr = if v4 { IP_LEN } else { IP6_LEN } + ICMP_LEN;
    ctx.grow(hdr, None)?;
    // The packet: [Ethernet][new header room][the packet]; keep `QUOTE` bytes of it.
    ctx.resize(14 + hdr + QUOTE)?;
    let quoted = quote_sum(ctx, 14 + hdr)?;
    packet::store(ctx, 0, [macs[1], macs[0]])?;
    packet::store(ctx, 12, ethertype)?;
    let w = |b: [u8; 4]| u32::from_ne_bytes(b);
    if v4 {
        // The client may send packets of `mtu - IP_LEN` bytes: encapsulated, they fit.
        let next = mtu.saturating_sub(IP_LEN as u16).to_be_bytes();
        let mut icmp = [
            w([UNREACHABLE_V4, FRAG_NEEDED_V4, 0, 0]),
            w([0, 0, next[0], next[1]]),
        ];
        let c = csum::finish(sum_words(quoted, &icmp)).to_ne_bytes();
        icmp[0] = w([UNREACHABLE_V4, FRAG_NEEDED_V4, c[0], c[1]]);
        let len = ((IP_LEN + ICMP_LEN + QUOTE) as u16).to_be_bytes();
        // From the VIP (the packet's destination) to the client (its source).
        let mut ip = [
            w([0x45, 0, len[0], len[1]]),
            0,
            w([REPLY_TTL, PROTO_ICMP, 0, 0]),
            vip[0],
            client[0],
        ];
        let c = csum::finish(sum_words(0, &ip)).to_ne_bytes();
        ip[2] = w([REPLY_TTL, PROTO_ICMP, c[0], c[1]]);
        packet::store(ctx, L3, ip)?;
        packet::store(ctx, L3 + IP_LEN, icmp)?;
    } else {
        let next = u32::from(mtu.saturating_sub(IP6_LEN as u16)).to_be();
        let plen = ((ICMP_LEN + QUOTE) as u16).to_be_bytes();
        let mut icmp = [w([TOO_BIG_V6, 0, 0, 0]), next];
        // Pseudo header: both addresses, the upper-layer length and the next header.
        let mut sum = sum_words(quoted, &vip);
        sum = sum_words(sum, &client);
        sum = sum_words(
            sum,
            &[w([0, 0, plen[0], plen[1]]), w([0, 0, 0, PROTO_ICMPV6])],
        );
        let c = csum::finish(sum_words(sum, &icmp)).to_ne_bytes();
        icmp[0] = w([TOO_BIG_V6, 0, c[0], c[1]]);
        packet::store(ctx, L3, w([0x60, 0, 0, 0]))?;
        packet::store(ctx, L3 + 4, w([plen[0], plen[1], PROTO_ICMPV6, REPLY_TTL]))?;
        packet::store(ctx, L3 + 8, [vip, client])?;
        packet::store(ctx, L3 + IP6_LEN, icmp)?;
    }
    // Rare (path MTU discovery at work): a line in lbd's log, through aya-log's ring buffer.
    aya_log_ebpf::info!(
        ctx,
        "DSR packet over the egress MTU of {} bytes: answered with ICMP too big",
        u32::from(mtu)
    );
    Ok(Reason::IcmpTooBig)
}
