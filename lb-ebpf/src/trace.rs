//! Sampling decisions for `lbctl trace`: when `LB_TRACE_CTL` says someone traces, a packet the
//! filter lets through has its first bytes staged as it arrives ([`begin`]) and, once its
//! reason is known, goes to the `LB_TRACE` ring buffer with where it was sent ([`end`]). When
//! nobody traces this is one array read per packet.
use aya_ebpf::helpers::generated::bpf_ktime_get_ns;
use lb_common::{
    Reason, TraceRecord, TraceScratch, ETH_P_IP, ETH_P_IPV6, PROTO_TCP, PROTO_UDP, TRACE_SNAP,
};
use lb_ebpf::packet;

use crate::{
    hook::Hook,
    maps::{LB_TRACE, LB_TRACE_CTL, LB_TRACE_SCRATCH},
    parse::L3,
};

/// Stages the packet if someone traces and the filter and sampling let it through; true if
/// it did (then [`end`] sends it).
#[inline(always)]
pub fn begin<C: Hook>(ctx: &C) -> bool {
    let Some(ctl) = LB_TRACE_CTL.get(0) else {
        return false;
    };
    if ctl.on == 0 {
        return false;
    }
    begin_traced(ctx, ctl.every, ctl.addr, ctl.port)
}

/// [`begin`] past the "is anyone tracing" check (inlined: its stack slots are reused by the
/// pipeline, which a call's frame on top of the pipeline's could not be).
#[inline(always)]
fn begin_traced<C: Hook>(ctx: &C, every: u32, addr: [u32; 4], port: u16) -> bool {
    let Some((src, dst, ports)) = endpoints(ctx) else {
        return false;
    };
    if addr != [0; 4] && src != addr && dst != addr {
        return false;
    }
    if port != 0 && ports[0] != port && ports[1] != port {
        return false;
    }
    let Some(s) = LB_TRACE_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a per-CPU array value of this run; no other CPU writes this copy.
    let s: &mut TraceScratch = unsafe { &mut *s };
    s.seen = s.seen.wrapping_add(1);
    if every > 1 && s.seen % every != 0 {
        s.armed = 0;
        return false;
    }
    let len = ctx.total_len();
    let n = len.min(TRACE_SNAP);
    if n == 0 || !ctx.copy_out(s.record.bytes.as_mut_ptr(), n) {
        s.armed = 0;
        return false;
    }
    // SAFETY: the helper has no arguments and no preconditions.
    s.record.ns = unsafe { bpf_ktime_get_ns() };
    s.record.ifindex = ctx.ifindex();
    s.record.len = len as u32;
    s.record.captured = n as u16;
    s.record.hook = ctx.hook_id();
    s.armed = 1;
    true
}

/// Sends the staged record with `reason` and where the packet went.
#[inline(never)]
pub fn end<C: Hook>(ctx: &C, reason: Reason) {
    let Some(s) = LB_TRACE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU array value of this run; no other CPU writes this copy.
    let s: &mut TraceScratch = unsafe { &mut *s };
    if s.armed == 0 {
        return;
    }
    s.armed = 0;
    s.record.reason = reason as u8;
    let (addr, port) = if reason.action() == lb_common::xdp_action::PASS {
        ([0; 4], 0)
    } else {
        destination(ctx)
    };
    s.record.out_addr = addr;
    s.record.out_port = port;
    // A full ring drops the record: tracing never holds a packet up.
    let _ = LB_TRACE.output::<TraceRecord>(&s.record, 0);
}

/// An IP packet's source and destination addresses (raw words) and, for TCP and UDP, its
/// ports (network byte order; zero otherwise).
#[inline(always)]
fn endpoints<C: Hook>(ctx: &C) -> Option<([u32; 4], [u32; 4], [u16; 2])> {
    let ethertype: u16 = packet::load(ctx, 12).ok()?;
    let (src, dst, proto, l4) = match ethertype {
        ETH_P_IP => {
            let a: [u32; 2] = packet::load(ctx, L3 + 12).ok()?;
            let vihl: u8 = packet::load(ctx, L3).ok()?;
            let proto: u8 = packet::load(ctx, L3 + 9).ok()?;
            let l4 = L3 + usize::from(vihl & 0x0f) * 4;
            ([a[0], 0, 0, 0], [a[1], 0, 0, 0], proto, l4)
        }
        ETH_P_IPV6 => {
            let a: [[u32; 4]; 2] = packet::load(ctx, L3 + 8).ok()?;
            let proto: u8 = packet::load(ctx, L3 + 6).ok()?;
            (a[0], a[1], proto, L3 + 40)
        }
        _ => return None,
    };
    let ports = if proto == PROTO_TCP || proto == PROTO_UDP {
        packet::load(ctx, l4).unwrap_or([0; 2])
    } else {
        [0; 2]
    };
    Some((src, dst, ports))
}

/// The packet's destination now and its port, if it has one (an encapsulated packet: the
/// outer destination).
#[inline(always)]
fn destination<C: Hook>(ctx: &C) -> ([u32; 4], u16) {
    endpoints(ctx).map_or(([0; 4], 0), |(_, dst, ports)| (dst, ports[1]))
}
