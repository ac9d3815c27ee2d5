//! Rewriting and sending: NAT of one address and port with incremental checksums, TTL / hop
//! limit decrement, a cached next hop (from `bpf_fib_lookup` on a miss or a new epoch), and
//! redirect through `LB_TX_PORTS`.
use aya_ebpf::{
    bindings::{bpf_fib_lookup, xdp_action},
    helpers::generated,
    programs::XdpContext,
    EbpfContext,
};
use lb_common::{NextHop, Reason, FAMILY_V4, PROTO_UDP};

use crate::{
    csum,
    maps::{LB_NH_EPOCH, LB_TX_PORTS},
    packet,
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
const IP6_LEN: usize = 40;

/// Rewrites `side` of the packet to `addr:port` (raw network-order values), decrements the
/// TTL or hop limit, fixes the checksums, and sends the frame to the next hop cached in `nh`
/// (filled on a miss). `ok` is the reason to report when the frame was redirected.
#[inline(always)]
pub fn nat(
    ctx: &XdpContext,
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
    let l4_check: u16 = packet::load(ctx, pkt.l4 + pkt.l4_check)?;
    // A zero UDP checksum over IPv4 means "none" and stays zero.
    if !(v4 && pkt.key.proto == PROTO_UDP && l4_check == 0) {
        let mut c = l4_check;
        if v4 {
            c = csum::replace4(c, old_addr[0], addr[0]);
        } else {
            for i in 0..4 {
                c = csum::replace4(c, old_addr[i], addr[i]);
            }
        }
        c = csum::replace2(c, old_port, port);
        if pkt.key.proto == PROTO_UDP && c == 0 {
            c = 0xffff;
        }
        packet::store(ctx, pkt.l4 + pkt.l4_check, c)?;
    }
    packet::store(ctx, pkt.l4 + port_off, port)?;
    let epoch = LB_NH_EPOCH.get(0).copied().unwrap_or(0);
    if nh.ifindex == 0 || nh.epoch != epoch {
        lookup_next_hop(ctx, v4, nh)?;
        nh.epoch = epoch;
    }
    packet::store(ctx, 0, nh.dmac)?;
    packet::store(ctx, 6, nh.smac)?;
    match LB_TX_PORTS.redirect(nh.ifindex, u64::from(xdp_action::XDP_PASS)) {
        Ok(action) if action == xdp_action::XDP_REDIRECT => Ok(ok),
        _ => Err(Reason::PassSlowPath),
    }
}

/// IPv4: TTL check and decrement, address rewrite, header checksum update.
#[inline(always)]
fn rewrite_ip_v4(ctx: &XdpContext, side: Side, addr: u32) -> Result<(), Reason> {
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
fn rewrite_ip_v6(ctx: &XdpContext, side: Side, addr: [u32; 4]) -> Result<(), Reason> {
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

/// Looks up the next hop of the (already rewritten) packet and caches it in `nh`. Anything
/// the fast path cannot finish goes to the stack.
#[inline(always)]
fn lookup_next_hop(ctx: &XdpContext, v4: bool, nh: &mut NextHop) -> Result<(), Reason> {
    // SAFETY: `bpf_fib_lookup` is plain data (integers and unions of integers); all-zero is
    // a valid value and the documented way to start a lookup.
    let mut fib: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    if v4 {
        fib.family = AF_INET;
        fib.l4_protocol = packet::load(ctx, L3 + 9)?;
        fib.__bindgen_anon_1.tot_len = u16::from_be(packet::load(ctx, L3 + 2)?);
        fib.__bindgen_anon_2.tos = packet::load(ctx, L3 + 1)?;
        fib.__bindgen_anon_3.ipv4_src = packet::load(ctx, L3 + 12)?;
        fib.__bindgen_anon_4.ipv4_dst = packet::load(ctx, L3 + 16)?;
    } else {
        fib.family = AF_INET6;
        fib.l4_protocol = packet::load(ctx, L3 + 6)?;
        let payload = u16::from_be(packet::load(ctx, L3 + 4)?);
        fib.__bindgen_anon_1.tot_len = payload.saturating_add(IP6_LEN as u16);
        fib.__bindgen_anon_3.ipv6_src = packet::load(ctx, L3 + 8)?;
        fib.__bindgen_anon_4.ipv6_dst = packet::load(ctx, L3 + 24)?;
    }
    fib.ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: `fib` is a live, correctly sized `bpf_fib_lookup` and the context is the
    // program's own XDP context.
    let rc = unsafe {
        generated::bpf_fib_lookup(
            ctx.as_ptr(),
            &mut fib,
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
            Ok(())
        }
        // BLACKHOLE, UNREACHABLE, PROHIBIT
        1..=3 => Err(Reason::DropNoRoute),
        // NO_NEIGH
        7 => Err(Reason::PassNoNeigh),
        // NOT_FWDED, FWD_DISABLED, UNSUPP_LWT, FRAG_NEEDED, NO_SRC_ADDR: the stack knows best.
        _ => Err(Reason::PassSlowPath),
    }
}
