//! Sends events to userspace through the ring buffer, counting the ones that
//! do not fit.

use leaktrace_common::counters;

use crate::{counters::bump, maps::EVENTS};

#[inline(always)]
pub fn send<T: 'static>(event: &T) {
    if EVENTS.output::<T>(event, 0).is_err() {
        bump(counters::EVENTS_LOST);
    }
}
