//! The balancer's XDP program `lb_xdp`: parse, VIP lookup, conntrack, Maglev, NAT, forward.
#![no_std]
#![no_main]

mod csum;
mod forward;
mod icmp;
mod maps;
mod parse;
mod pipeline;
mod stats;

use aya_ebpf::{macros::xdp, programs::XdpContext};

/// The balancer: parse -> vip -> conntrack -> select -> rewrite -> forward, counted on every exit.
#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let reason = match pipeline::run(&ctx) {
        Ok(r) | Err(r) => r,
    };
    stats::count(reason)
}

/// ICMP to VIP addresses (tail-called by `lb_xdp`): pings answered, errors about DSR flows
/// sent to the owning backend. Counted like every other packet.
#[xdp]
pub fn lb_icmp(ctx: XdpContext) -> u32 {
    let reason = match icmp::run(&ctx) {
        Ok(r) | Err(r) => r,
    };
    stats::count(reason)
}

/// A DSR packet too big for the egress MTU once encapsulated (tail-called by `lb_xdp`):
/// answered with "fragmentation needed" / "packet too big" from the VIP.
#[xdp]
pub fn lb_too_big(ctx: XdpContext) -> u32 {
    let reason = match icmp::too_big(&ctx) {
        Ok(r) | Err(r) => r,
    };
    stats::count(reason)
}

/// License the kernel requires for GPL-only helpers such as `bpf_fib_lookup`.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
