//! Per-CPU verdict counters: one increment per packet, on every exit of the pipeline.
use lb_common::Reason;

use crate::maps::LB_STATS;

/// Counts `reason` and returns the XDP action it implies.
#[inline(always)]
pub fn count(reason: Reason) -> u32 {
    if let Some(counter) = LB_STATS.get_ptr_mut(reason as u32) {
        // SAFETY: the pointer comes from a per-CPU array lookup, so it is valid and no other
        // CPU writes this slot; XDP programs are not preempted mid-run.
        unsafe { *counter += 1 };
    }
    reason.action()
}
