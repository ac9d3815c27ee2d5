//! `lb_decap`, for backend hosts of DSR VIPs: strips the IPv4-in-IPv4 or IPv6-in-IPv6 header
//! the balancer added and hands the inner packet (addressed to the VIP, which the host holds on
//! a loopback) to the stack. Everything else passes untouched. This kernel has no IPIP module;
//! this program is what makes DSR work on it. `lb_decap` runs at XDP, `lb_decap_tc` at tc
//! clsact ingress (virtual interfaces).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, xdp_action, TC_ACT_OK},
    helpers::generated::{bpf_skb_adjust_room, bpf_skb_pull_data, bpf_xdp_adjust_head},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use lb_common::{ETH_P_IP, ETH_P_IPV6, PROTO_IPIP, PROTO_IPV6};
use lb_ebpf::packet::{self, Frame};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

/// Decapsulates DSR traffic; always passes the result to the stack.
#[xdp]
pub fn lb_decap(ctx: XdpContext) -> u32 {
    // Frames that are not ours, and ones too short to be, pass untouched.
    let _ = decap(&ctx);
    xdp_action::XDP_PASS
}

/// Decapsulates DSR traffic at tc; always passes the result to the stack.
#[classifier]
pub fn lb_decap_tc(ctx: TcContext) -> i32 {
    let outer = EthHdr::LEN + Ipv6Hdr::LEN;
    if packet::len(&ctx) < outer {
        // SAFETY: the helper takes this program's buffer; packet pointers are derived again
        // after it. Failing, the packet is too short to be ours and passes.
        let _ = unsafe { bpf_skb_pull_data(ctx.skb.skb, (ctx.len() as usize).min(outer) as u32) };
    }
    let _ = decap(&ctx);
    TC_ACT_OK as i32
}

/// Removing the outer header of a packet, at either hook.
trait Strip: Frame {
    /// Removes the `len` bytes after the Ethernet header (the Ethernet header is written again
    /// by the caller at the new start).
    fn strip(&self, len: usize) -> bool;
}

impl Strip for XdpContext {
    fn strip(&self, len: usize) -> bool {
        // SAFETY: `self.ctx` is this program's context; the helper checks the length, and
        // every packet pointer is derived again (through `packet`) after it.
        unsafe { bpf_xdp_adjust_head(self.ctx, len as i32) == 0 }
    }
}

impl Strip for TcContext {
    fn strip(&self, len: usize) -> bool {
        // SAFETY: the helper takes this program's buffer and keeps the Ethernet header in
        // place (MAC mode); packet pointers are derived again after it.
        unsafe { bpf_skb_adjust_room(self.skb.skb, -(len as i32), BPF_ADJ_ROOM_MAC, 0) == 0 }
    }
}

fn decap<C: Strip>(ctx: &C) -> Result<(), lb_common::Reason> {
    let eth: EthHdr = packet::load(ctx, 0)?;
    let (outer_len, inner_type) = match eth.ether_type {
        ETH_P_IP => {
            let ip: Ipv4Hdr = packet::load(ctx, EthHdr::LEN)?;
            if ip.proto != PROTO_IPIP || ip.vihl != 0x45 {
                return Ok(());
            }
            (Ipv4Hdr::LEN, ETH_P_IP)
        }
        ETH_P_IPV6 => {
            let ip: Ipv6Hdr = packet::load(ctx, EthHdr::LEN)?;
            if ip.next_hdr != PROTO_IPV6 {
                return Ok(());
            }
            (Ipv6Hdr::LEN, ETH_P_IPV6)
        }
        _ => return Ok(()),
    };
    if !ctx.strip(outer_len) {
        return Ok(());
    }
    // XDP moved the frame's start past the old Ethernet header: write it again (at tc the
    // helper kept it, and this rewrites the same bytes).
    packet::store(ctx, 0, eth.dst_addr)?;
    packet::store(ctx, 6, eth.src_addr)?;
    packet::store(ctx, 12, inner_type)
}

/// License of the program.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
