//! Rewriting and sending: NAT of one address and port with incremental checksums and TTL / hop
//! limit decrement, or DSR encapsulation (a packet too big for the egress MTU once
//! encapsulated goes to `lb_too_big` instead); then a cached next hop (from `bpf_fib_lookup`
//! on a miss or a new epoch) and redirect through `LB_TX_PORTS`.
use aya_ebpf::{bindings::bpf_fib_lookup, helpers::generated};
use lb_common::{
    encap_source_low, NextHop, Reason, ENCAP_SRC_V4_PREFIX, ENCAP_SRC_V6_PREFIX, ETH_P_IP,
    ETH_P_IPV6, FAMILY_V4, PROTO_IPIP, PROTO_IPV6, PROTO_UDP,
};

use lb_ebpf::packet;

use crate::{
    csum,
    hook::{Hook, L4Change},
    maps::{LB_FIB_SCRATCH, LB_NH_EPOCH, LB_TOO_BIG_MTU, PROG_TOO_BIG},
    parse::{Flow, L3},
};

/// Which end of the packet the NAT rewrites.
#[derive(Clone, Copy)]
pub enum Side {
    /// Destination address and port (client -> VIP becomes client -> backend).
    Dst,
    /// Source address and port (backend -> client becomes VIP -> client).
    Src,
}

/// `AF_INET`, the family `bpf_fib_lookup` expects for IPv4.
const AF_INET: u8 = 2;
/// `AF_INET6`.
const AF_INET6: u8 = 10;
/// Offset of the IPv4 header checksum within the header.
const IP_CHECK: usize = 10;
/// Offset of the TTL byte (followed by the protocol byte) within the IPv4 header.
const IP_TTL: usize = 8;
/// Offset of the hop limit within the IPv6 header.
const IP6_HOP_LIMIT: usize = 7;
/// Length of the IPv6 header.
pub const IP6_LEN: usize = 40;
/// Length of an IPv4 header without options.
pub const IP_LEN: usize = 20;
/// TTL / hop limit of DSR outer headers.
const ENCAP_TTL: u8 = 64;

/// Rewrites `side` of the packet to `addr:port` (raw network-order values), decrements the
/// TTL or hop limit, fixes the checksums, and sends the frame to the next hop cached in `nh`
/// (filled on a miss). `ok` is the reason to report when the frame was redirected.
#[inline(always)]
pub fn nat<C: Hook>(
    ctx: &C,
    pkt: &Flow,
    side: Side,
    addr: [u32; 4],
    port: u16,
    nh: &mut NextHop,
    ok: Reason,
) -> Result<Reason, Reason> {
    let v4 = pkt.key.family == FAMILY_V4;
    let (old_addr, old_port) = match side {
        Side::Src => (pkt.key.src, pkt.key.sport),
        Side::Dst => (pkt.key.dst, pkt.key.dport),
    };
    let port_off = match side {
        Side::Src => 0,
        Side::Dst => 2,
    };
    if v4 {
        rewrite_ip_v4(ctx, side, addr[0])?;
    } else {
        rewrite_ip_v6(ctx, side, addr)?;
    }
    ctx.fix_l4(&L4Change {
        check_off: pkt.l4 + pkt.l4_check,
        udp: pkt.key.proto == PROTO_UDP,
        v4,
        addr: (&old_addr, &addr),
        port: (old_port, port),
    })?;
    packet::store(ctx, pkt.l4 + port_off, port)?;
    send(ctx, v4, nh, ok)
}

/// Rewrites the destination address to `addr` (TTL / hop limit decremented, IPv4 header
/// checksum updated) and sends the packet to the next hop cached in `nh`: for packets whose
/// transport checksum the caller has already fixed (an ICMP error).
#[inline(always)]
pub fn forward_to<C: Hook>(
    ctx: &C,
    v4: bool,
    addr: [u32; 4],
    nh: &mut NextHop,
    ok: Reason,
) -> Result<Reason, Reason> {
    if v4 {
        rewrite_ip_v4(ctx, Side::Dst, addr[0])?;
    } else {
        rewrite_ip_v6(ctx, Side::Dst, addr)?;
    }
    send(ctx, v4, nh, ok)
}

/// DSR: encapsulates the packet (IPv4-in-IPv4 or IPv6-in-IPv6, same family as the flow) to
/// `backend` and sends it to the backend's next hop. The inner packet is left untouched. A
/// packet that would exceed the egress MTU encapsulated is handed to `lb_too_big` as received.
#[inline(always)]
pub fn encap<C: Hook>(
    ctx: &C,
    pkt: &Flow,
    backend: [u32; 4],
    nh: &mut NextHop,
) -> Result<Reason, Reason> {
    let v4 = pkt.key.family == FAMILY_V4;
    let low = encap_source_low(&pkt.key).to_be_bytes();
    // The received Ethernet addresses go in front of the outer header, so a frame the stack
    // has to finish (unresolved neighbour) is still addressed to this host.
    let macs: [u8; 12] = packet::load(ctx, 0)?;
    let epoch = current_epoch();
    let cached = nh.ifindex != 0 && nh.epoch == epoch;
    // Bytes the outer header adds, and the IP length of the encapsulated packet.
    let (grown, total) = if v4 {
        let tos: u8 = packet::load(ctx, L3 + 1)?;
        let inner_len = u16::from_be(packet::load(ctx, L3 + 2)?);
        let outer_len = inner_len
            .checked_add(IP_LEN as u16)
            .ok_or(Reason::DropMalformed)?;
        // Outer header as five 32-bit words in wire order; the checksum is summed from the
        // 16-bit words that are not zero.
        let dst = backend[0].to_ne_bytes();
        let sum = u32::from(u16::from_be_bytes([0x45, tos]))
            + u32::from(outer_len)
            + u32::from(u16::from_be_bytes([ENCAP_TTL, PROTO_IPIP]))
            + u32::from(u16::from_be_bytes(ENCAP_SRC_V4_PREFIX))
            + u32::from(u16::from_be_bytes(low))
            + u32::from(u16::from_be_bytes([dst[0], dst[1]]))
            + u32::from(u16::from_be_bytes([dst[2], dst[3]]));
        let check = csum::finish(sum);
        if cached && exceeds(ctx, outer_len, nh.mtu) {
            return too_big(ctx, nh.mtu);
        }
        let len = outer_len.to_be_bytes();
        let chk = check.to_be_bytes();
        let h: [u32; 5] = [
            u32::from_ne_bytes([0x45, tos, len[0], len[1]]),
            0,
            u32::from_ne_bytes([ENCAP_TTL, PROTO_IPIP, chk[0], chk[1]]),
            u32::from_ne_bytes([
                ENCAP_SRC_V4_PREFIX[0],
                ENCAP_SRC_V4_PREFIX[1],
                low[0],
                low[1],
            ]),
            backend[0],
        ];
        ctx.grow(IP_LEN, Some(true))?;
        packet::store(ctx, 0, macs)?;
        packet::store(ctx, 12, ETH_P_IP)?;
        packet::store(ctx, L3, h)?;
        (IP_LEN, outer_len)
    } else {
        let inner_payload = u16::from_be(packet::load(ctx, L3 + 4)?);
        let outer_payload = inner_payload
            .checked_add(IP6_LEN as u16)
            .ok_or(Reason::DropMalformed)?;
        let total = outer_payload.saturating_add(IP6_LEN as u16);
        if cached && exceeds(ctx, total, nh.mtu) {
            return too_big(ctx, nh.mtu);
        }
        let mut h = [0u8; IP6_LEN];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&outer_payload.to_be_bytes());
        h[6] = PROTO_IPV6;
        h[7] = ENCAP_TTL;
        h[8..22].copy_from_slice(&ENCAP_SRC_V6_PREFIX);
        h[22] = low[0];
        h[23] = low[1];
        for (i, w) in backend.iter().enumerate() {
            h[24 + 4 * i..28 + 4 * i].copy_from_slice(&w.to_ne_bytes());
        }
        ctx.grow(IP6_LEN, Some(false))?;
        packet::store(ctx, 0, macs)?;
        packet::store(ctx, 12, ETH_P_IPV6)?;
        packet::store(ctx, L3, h)?;
        (IP6_LEN, total)
    };
    if !cached {
        let found = lookup_next_hop(ctx, v4, nh, false);
        nh.epoch = epoch;
        // At tc the kernel checks the buffer against the route's MTU (aggregates included).
        let over =
            found == Err(Reason::IcmpTooBig) || (found.is_ok() && exceeds(ctx, total, nh.mtu));
        if over {
            // Take the outer header off again: the answer quotes the packet as it came.
            ctx.shrink(grown)?;
            packet::store(ctx, 0, macs)?;
            packet::store(ctx, 12, if v4 { ETH_P_IP } else { ETH_P_IPV6 })?;
            return too_big(ctx, nh.mtu);
        }
        found?;
    }
    transmit(ctx, nh, Reason::FwdNat)
}

/// An IP packet of `len` bytes does not fit an egress `mtu` (0: not known, so it fits; an
/// aggregate is cut to the MTU on its way out).
#[inline(always)]
fn exceeds<C: Hook>(ctx: &C, len: u16, mtu: u16) -> bool {
    mtu != 0 && len > mtu && !ctx.aggregate()
}

/// Hands the packet (as received) to `lb_too_big`, which answers "fragmentation needed" /
/// "packet too big" for an egress MTU of `mtu` bytes.
#[inline(always)]
fn too_big<C: Hook>(ctx: &C, mtu: u16) -> Result<Reason, Reason> {
    let slot = LB_TOO_BIG_MTU.get_ptr_mut(0).ok_or(Reason::PassSlowPath)?;
    // SAFETY: a per-CPU array value of this run; the tail call below reads it on this CPU.
    unsafe { *slot = u32::from(mtu) };
    // On success this does not return.
    ctx.tail_call(PROG_TOO_BIG);
    // `lb_too_big` is not installed: the stack gets the packet (and cannot route it).
    Err(Reason::PassSlowPath)
}

/// The next-hop cache epoch now (its low 16 bits, as `NextHop` keeps it).
#[inline(always)]
fn current_epoch() -> u16 {
    LB_NH_EPOCH.get(0).copied().unwrap_or(0) as u16
}

/// Sends the rewritten frame (its IP header at `L3`) to the next hop cached in `nh`, looking
/// it up first when the cache is empty or stale.
#[inline(always)]
fn send<C: Hook>(ctx: &C, v4: bool, nh: &mut NextHop, ok: Reason) -> Result<Reason, Reason> {
    let epoch = current_epoch();
    if nh.ifindex == 0 || nh.epoch != epoch {
        // Too big for the route: the stack answers with the ICMP error itself.
        lookup_next_hop(ctx, v4, nh, true).map_err(|r| match r {
            Reason::IcmpTooBig => Reason::PassSlowPath,
            r => r,
        })?;
        nh.epoch = epoch;
    }
    transmit(ctx, nh, ok)
}

/// Addresses the frame to the next hop in `nh` and redirects it there.
#[inline(always)]
fn transmit<C: Hook>(ctx: &C, nh: &NextHop, ok: Reason) -> Result<Reason, Reason> {
    packet::store(ctx, 0, nh.dmac)?;
    packet::store(ctx, 6, nh.smac)?;
    if ctx.redirect(nh.ifindex) {
        Ok(ok)
    } else {
        Err(Reason::PassSlowPath)
    }
}

/// IPv4: TTL check and decrement, address rewrite, header checksum update.
#[inline(always)]
fn rewrite_ip_v4<C: Hook>(ctx: &C, side: Side, addr: u32) -> Result<(), Reason> {
    let addr_off = match side {
        Side::Src => 12,
        Side::Dst => 16,
    };
    let ttl_proto: u16 = packet::load(ctx, L3 + IP_TTL)?;
    let [ttl, proto] = ttl_proto.to_ne_bytes();
    if ttl <= 1 {
        return Err(Reason::PassTtl);
    }
    let new_ttl_proto = u16::from_ne_bytes([ttl - 1, proto]);
    let old_addr: u32 = packet::load(ctx, L3 + addr_off)?;
    let check: u16 = packet::load(ctx, L3 + IP_CHECK)?;
    let check = csum::replace2(check, ttl_proto, new_ttl_proto);
    packet::store(ctx, L3 + IP_CHECK, csum::replace4(check, old_addr, addr))?;
    packet::store(ctx, L3 + IP_TTL, new_ttl_proto)?;
    packet::store(ctx, L3 + addr_off, addr)
}

/// IPv6: hop limit check and decrement, address rewrite (IPv6 has no header checksum).
#[inline(always)]
fn rewrite_ip_v6<C: Hook>(ctx: &C, side: Side, addr: [u32; 4]) -> Result<(), Reason> {
    let addr_off = match side {
        Side::Src => 8,
        Side::Dst => 24,
    };
    let hops: u8 = packet::load(ctx, L3 + IP6_HOP_LIMIT)?;
    if hops <= 1 {
        return Err(Reason::PassTtl);
    }
    packet::store(ctx, L3 + IP6_HOP_LIMIT, hops - 1)?;
    packet::store(ctx, L3 + addr_off, addr)
}

/// Looks up the next hop of the (already rewritten) packet and caches it in `nh`, with the
/// egress interface's MTU. With `check_mtu`, a packet longer than the route's MTU goes to the
/// stack (which answers it); without, the caller checks `nh.mtu` itself. Anything the fast
/// path cannot finish goes to the stack.
#[inline(always)]
fn lookup_next_hop<C: Hook>(
    ctx: &C,
    v4: bool,
    nh: &mut NextHop,
    check_mtu: bool,
) -> Result<(), Reason> {
    let fib = LB_FIB_SCRATCH.get_ptr_mut(0).ok_or(Reason::PassSlowPath)?;
    // SAFETY: a per-CPU array value of this run, used by no one else; `bpf_fib_lookup` is
    // plain data, so all-zero is valid and the documented way to start a lookup.
    let fib = unsafe {
        core::ptr::write_bytes(fib, 0, 1);
        &mut *fib
    };
    if v4 {
        fib.family = AF_INET;
        fib.l4_protocol = packet::load(ctx, L3 + 9)?;
        if check_mtu {
            fib.__bindgen_anon_1.tot_len = ctx.fib_len(u16::from_be(packet::load(ctx, L3 + 2)?));
        }
        fib.__bindgen_anon_2.tos = packet::load(ctx, L3 + 1)?;
        fib.__bindgen_anon_3.ipv4_src = packet::load(ctx, L3 + 12)?;
        fib.__bindgen_anon_4.ipv4_dst = packet::load(ctx, L3 + 16)?;
    } else {
        fib.family = AF_INET6;
        fib.l4_protocol = packet::load(ctx, L3 + 6)?;
        if check_mtu {
            let payload = u16::from_be(packet::load(ctx, L3 + 4)?);
            fib.__bindgen_anon_1.tot_len = ctx.fib_len(payload.saturating_add(IP6_LEN as u16));
        }
        fib.__bindgen_anon_3.ipv6_src = packet::load(ctx, L3 + 8)?;
        fib.__bindgen_anon_4.ipv6_dst = packet::load(ctx, L3 + 24)?;
    }
    fib.ifindex = ctx.ifindex();
    // SAFETY: `fib` is a live, correctly sized `bpf_fib_lookup` and the context is the
    // program's own XDP context.
    let rc = unsafe {
        generated::bpf_fib_lookup(
            ctx.as_ptr(),
            fib,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    match rc as u32 {
        // BPF_FIB_LKUP_RET_SUCCESS
        0 => {
            nh.dmac = fib.dmac;
            nh.smac = fib.smac;
            nh.ifindex = fib.ifindex;
            let mut mtu: u32 = 0;
            // SAFETY: the program's own context and a live `u32` for the answer. The helper
            // writes the interface's MTU whatever the frame's length.
            let rc = unsafe { generated::bpf_check_mtu(ctx.as_ptr(), fib.ifindex, &mut mtu, 0, 0) };
            nh.mtu = if rc < 0 {
                0
            } else {
                mtu.min(u32::from(u16::MAX)) as u16
            };
            Ok(())
        }
        // BLACKHOLE, UNREACHABLE, PROHIBIT
        1..=3 => Err(Reason::DropNoRoute),
        // NO_NEIGH
        7 => Err(Reason::PassNoNeigh),
        // FRAG_NEEDED (tc only: the kernel checked the buffer against the route's MTU):
        // answered with "too big" where the caller can, else the stack knows best.
        8 => {
            // SAFETY: on FRAG_NEEDED the kernel wrote the route's MTU into this union member.
            nh.mtu = unsafe { fib.__bindgen_anon_1.mtu_result };
            Err(Reason::IcmpTooBig)
        }
        // NOT_FWDED, FWD_DISABLED, UNSUPP_LWT, NO_SRC_ADDR: the stack knows best.
        _ => Err(Reason::PassSlowPath),
    }
}
