//! Per-CPU verdict counters: one increment per packet, on every exit of the pipeline.
use lb_common::Reason;

use crate::maps::LB_STATS;

/// Counts `reason` and hands it on (for the hook to turn into its action).
#[inline(always)]
pub fn count(reason: Reason) -> Reason {
    if let Some(counter) = LB_STATS.get_ptr_mut(reason as u32) {
        // SAFETY: the pointer comes from a per-CPU array lookup, so it is valid and no other
        // CPU writes this slot; the programs are not preempted mid-run.
        unsafe { *counter += 1 };
    }
    reason
}
