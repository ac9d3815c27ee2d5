//! `lb_decap`, for backend hosts of DSR VIPs: strips the IPv4-in-IPv4 or IPv6-in-IPv6 header
//! the balancer added and hands the inner packet (addressed to the VIP, which the host holds on
//! a loopback) to the stack. Everything else passes untouched. This kernel has no IPIP module;
//! this program is what makes DSR work on it.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_xdp_adjust_head, macros::xdp,
    programs::XdpContext,
};
use lb_common::{ETH_P_IP, ETH_P_IPV6, PROTO_IPIP, PROTO_IPV6};
use lb_ebpf::packet;
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

fn decap(ctx: &XdpContext) -> Result<(), lb_common::Reason> {
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
    // SAFETY: `ctx.ctx` is this program's context; the helper checks the length, and every
    // packet pointer is derived again (through `packet`) after it.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer_len as i32) } != 0 {
        return Ok(());
    }
    packet::store(ctx, 0, eth.dst_addr)?;
    packet::store(ctx, 6, eth.src_addr)?;
    packet::store(ctx, 12, inner_type)
}

/// License of the program.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
