//! The balancer: one pipeline (parse, VIP lookup, conntrack, Maglev, NAT, forward) built for
//! two hooks, native XDP (`lb_xdp`, physical NICs) and tc clsact ingress (`lb_tc`, virtual
//! interfaces), each with its ICMP and too-big programs for tail calls.
#![no_std]
#![no_main]

mod csum;
mod forward;
mod hook;
mod icmp;
mod maps;
mod parse;
mod pipeline;
mod stats;
mod trace;

use aya_ebpf::{
    helpers::generated::bpf_skb_pull_data,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use hook::Hook;
use lb_common::Reason;
use lb_ebpf::packet;

/// Bytes of headers a tc program wants directly readable: the deepest parse (an ICMPv6 error
/// quoting an IPv6 header and ports) stays inside.
const TC_HEAD: u32 = 128;

/// Runs `stage` on a packet at hook `C` and turns its reason, counted (and sampled while
/// someone traces), into the hook's action.
#[inline(always)]
fn run<C: Hook>(ctx: &C, stage: fn(&C) -> Result<Reason, Reason>) -> i32 {
    let traced = trace::begin(ctx);
    let reason = match stage(ctx) {
        Ok(r) | Err(r) => r,
    };
    if traced {
        trace::end(ctx, reason);
    }
    ctx.verdict(stats::count(reason))
}

/// A tc buffer's headers may sit in paged fragments: makes the first [`TC_HEAD`] bytes (or
/// all, if fewer) directly readable, unless they already are.
#[inline(always)]
fn linearize(ctx: &TcContext) {
    let want = ctx.len().min(TC_HEAD);
    if packet::len(ctx) < want as usize {
        // SAFETY: the helper takes this program's buffer; every packet pointer is derived
        // again (through `packet`) after it. Failing, the parse sees a short packet.
        let _ = unsafe { bpf_skb_pull_data(ctx.skb.skb, want) };
    }
}

/// The balancer at XDP: parse -> vip -> conntrack -> select -> rewrite -> forward, counted
/// on every exit.
#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    run(&ctx, pipeline::run) as u32
}

/// ICMP to VIP addresses (tail-called by `lb_xdp`): pings answered, errors about DSR flows
/// sent to the owning backend. Counted like every other packet.
#[xdp]
pub fn lb_icmp(ctx: XdpContext) -> u32 {
    run(&ctx, icmp::run) as u32
}

/// A DSR packet too big for the egress MTU once encapsulated (tail-called by `lb_xdp`):
/// answered with "fragmentation needed" / "packet too big" from the VIP.
#[xdp]
pub fn lb_too_big(ctx: XdpContext) -> u32 {
    run(&ctx, icmp::too_big) as u32
}

/// The balancer at tc clsact ingress: the same pipeline over a socket buffer.
#[classifier]
pub fn lb_tc(ctx: TcContext) -> i32 {
    linearize(&ctx);
    run(&ctx, pipeline::run)
}

/// `lb_icmp` at tc (tail-called by `lb_tc`).
#[classifier]
pub fn lb_tc_icmp(ctx: TcContext) -> i32 {
    run(&ctx, icmp::run)
}

/// `lb_too_big` at tc (tail-called by `lb_tc`).
#[classifier]
pub fn lb_tc_too_big(ctx: TcContext) -> i32 {
    run(&ctx, icmp::too_big)
}

/// License the kernel requires for GPL-only helpers such as `bpf_fib_lookup`.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
