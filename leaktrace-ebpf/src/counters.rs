//! Per-CPU counters of what happened and of what could not be stored.

use crate::maps::COUNTERS;

/// Tracepoint programs run with preemption disabled, so a plain increment of
/// this CPU's slot cannot race.
#[inline(always)]
pub(crate) fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        unsafe { *slot += 1 };
    }
}
