//! The benchmark harness object: `lb_bench` makes every BPF_PROG_TEST_RUN iteration start from
//! the original frame (the kernel re-runs a program on its own output), then tail-calls the
//! program under test; `lb_pass` is `return XDP_PASS` (the harness tail-calling it is the
//! floor every figure is net of) and `lb_tx` is the raw forwarding ceiling (`bench e2e`).
//! `lb_bench_tc` and `lb_pass_tc` are the same harness and floor for the tc programs.
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, xdp_action, TC_ACT_OK, TC_ACT_SHOT},
    helpers::generated::{
        bpf_skb_adjust_room, bpf_skb_store_bytes, bpf_xdp_adjust_head, bpf_xdp_store_bytes,
    },
    macros::{classifier, map, xdp},
    maps::{Array, PerCpuArray, ProgramArray},
    programs::{TcContext, XdpContext},
};
use lb_common::bench::{BenchFrame, FRAME_LEN};
// The panic handler lives in the crate's library.
use lb_ebpf as _;

/// The frame each iteration starts from.
#[map]
static BENCH_FRAME: Array<BenchFrame> = Array::with_max_entries(1, 0);

/// Slot 0: the program under test.
#[map]
static BENCH_TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Slot 0: the tc program under test (a program array holds programs of one type).
#[map]
static BENCH_TC_TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Iteration counter, per CPU.
#[map]
static BENCH_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Restores the frame, optionally stamps the iteration number into it, runs the target.
#[xdp]
pub fn lb_bench(ctx: XdpContext) -> u32 {
    let Some(frame) = BENCH_FRAME.get_ptr(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // A previous iteration may have grown the frame (encapsulation): move the head back.
    let grown = (ctx.data_end() - ctx.data()) as i32 - FRAME_LEN as i32;
    // SAFETY: `ctx.ctx` is this program's context; the helpers bound-check offsets and lengths
    // against the frame, and `frame` points at a map value of `FRAME_LEN` bytes plus header.
    unsafe {
        if grown != 0 && bpf_xdp_adjust_head(ctx.ctx, grown) != 0 {
            return xdp_action::XDP_ABORTED;
        }
        let bytes = (*frame).bytes.as_ptr() as *mut c_void;
        if bpf_xdp_store_bytes(ctx.ctx, 0, bytes, FRAME_LEN as u32) != 0 {
            return xdp_action::XDP_ABORTED;
        }
        if let Some((off, mut stamp)) = next_stamp(&*frame) {
            let p = &mut stamp as *mut u32 as *mut c_void;
            if bpf_xdp_store_bytes(ctx.ctx, off, p, 4) != 0 {
                return xdp_action::XDP_ABORTED;
            }
        }
        BENCH_TARGET.tail_call(&ctx, 0);
    }
    xdp_action::XDP_ABORTED
}

/// The next iteration number to stamp into a varied frame (a new source address each
/// iteration), network byte order, if the frame varies.
#[inline(always)]
fn next_stamp(frame: &BenchFrame) -> Option<(u32, u32)> {
    if frame.vary_off == 0 {
        return None;
    }
    let seq = BENCH_SEQ.get_ptr_mut(0)?;
    // SAFETY: a per-CPU array value of this run; no other CPU writes this copy.
    let seq = unsafe {
        *seq = (*seq).wrapping_add(1);
        *seq
    };
    Some((frame.vary_off, seq.to_be()))
}

/// [`lb_bench`] for tc programs: restores the buffer (shrinking what the program grew),
/// stamps the iteration number, runs the tc target.
#[classifier]
pub fn lb_bench_tc(ctx: TcContext) -> i32 {
    let Some(frame) = BENCH_FRAME.get_ptr(0) else {
        return TC_ACT_SHOT as i32;
    };
    // SAFETY: a map value of this run, valid for reads.
    let frame = unsafe { &*frame };
    let skb = ctx.skb.skb;
    let grown = ctx.len() as i32 - FRAME_LEN as i32;
    // SAFETY: the helpers take this program's buffer and bound-check offsets and lengths;
    // `frame.bytes` is `FRAME_LEN` readable bytes of a map value.
    unsafe {
        if grown > 0 && bpf_skb_adjust_room(skb, -grown, BPF_ADJ_ROOM_MAC, 0) != 0 {
            return TC_ACT_SHOT as i32;
        }
        let bytes = frame.bytes.as_ptr() as *const c_void;
        if bpf_skb_store_bytes(skb, 0, bytes, FRAME_LEN as u32, 0) != 0 {
            return TC_ACT_SHOT as i32;
        }
        if let Some((off, stamp)) = next_stamp(frame) {
            let p = &stamp as *const u32 as *const c_void;
            if bpf_skb_store_bytes(skb, off, p, 4, 0) != 0 {
                return TC_ACT_SHOT as i32;
            }
        }
        let _ = BENCH_TC_TARGET.tail_call(&ctx, 0);
    }
    TC_ACT_SHOT as i32
}

/// `return TC_ACT_OK`: the tc floor.
#[classifier]
pub fn lb_pass_tc(_ctx: TcContext) -> i32 {
    TC_ACT_OK as i32
}

/// `return XDP_PASS`: what the harness tail-calls for the floor.
#[xdp]
pub fn lb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// `return XDP_TX`: bounces every frame out of the interface it came in on, the fastest
/// forwarding XDP can do; `bench e2e` compares `lb_xdp`'s live-frame rate with it.
#[xdp]
pub fn lb_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// License the kernel requires for GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
