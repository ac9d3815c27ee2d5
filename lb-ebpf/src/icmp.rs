//! ICMP to VIP addresses: echo requests (ping) are answered by the balancer itself, from the
//! VIP, with XDP_TX. Other ICMP to a VIP, errors quoting a flow included, goes to the stack:
//! forwarding those to the owning backend needs stack room the program does not have yet.
use aya_ebpf::programs::XdpContext;
use lb_common::{Reason, VipKey, FAMILY_V4};
use lb_ebpf::packet;

use crate::{csum, maps::LB_VIPS, parse::Flow, parse::L3};

/// ICMP echo request / reply types.
const ECHO_V4: (u8, u8) = (8, 0);
/// ICMPv6 echo request / reply types.
const ECHO_V6: (u8, u8) = (128, 129);
/// TTL / hop limit of the replies.
const REPLY_TTL: u8 = 64;

/// Answers an echo request to a VIP address in place. A BPF subprogram, not inlined: rare
/// traffic, kept out of the forwarding path's stack frame.
#[inline(never)]
pub fn answer(ctx: &XdpContext, pkt: &Flow) -> Result<Reason, Reason> {
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
    let [kind, code]: [u8; 2] = packet::load(ctx, pkt.l4)?;
    if kind != request || code != 0 {
        return Err(Reason::PassNotVip);
    }
    // Type changes; swapping the addresses changes neither the IPv4 header checksum nor the
    // ICMPv6 pseudo-header sum.
    let check: u16 = packet::load(ctx, pkt.l4 + pkt.l4_check)?;
    let old = u16::from_ne_bytes([request, 0]);
    let new = u16::from_ne_bytes([reply, 0]);
    packet::store(ctx, pkt.l4 + pkt.l4_check, csum::replace2(check, old, new))?;
    packet::store(ctx, pkt.l4, reply)?;
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
