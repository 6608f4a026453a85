//! Sends events to userspace through the ring buffer, counting the ones that
//! do not fit.

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE};
use leaktrace_common::counters;

use crate::{counters::bump, maps::EVENTS};

/// Sends an event and wakes userspace: lifecycle events it acts on now. The
/// wake-up is forced: the ring's adaptive notification skips it while
/// batched events wait unread, which would delay an exec's unwinding tables
/// until the next poll.
#[inline(always)]
pub(crate) fn send<T: 'static>(event: &T) {
    if EVENTS.output::<T>(event, BPF_RB_FORCE_WAKEUP as u64).is_err() {
        bump(counters::EVENTS_LOST);
    }
}

/// Sends an event without waking userspace unless the ring is a quarter
/// full: frequent events (memory mappings) are read by userspace's periodic
/// poll, and a wake-up per event would cost more than the event.
#[inline(always)]
pub(crate) fn send_batched<T: 'static>(event: &T) {
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let size = EVENTS.query(BPF_RB_RING_SIZE as u64);
    let flags = if pending * 4 >= size { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
    if EVENTS.output::<T>(event, flags as u64).is_err() {
        bump(counters::EVENTS_LOST);
    }
}
