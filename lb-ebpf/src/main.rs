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

/// License the kernel requires for GPL-only helpers such as `bpf_fib_lookup`.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
