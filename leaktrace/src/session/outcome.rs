//! The end of a window, or of an interval: what is held (and what ended
//! processes held), the totals, and what the kernel side and the session
//! lost, as a report is built from (`report::build`).

use serde::{Deserialize, Serialize};

use leaktrace_common::counters;

use crate::kernel::{Counters, KernelError, Seam};
use crate::procfs;
use crate::track::aggregate::{Aggregator, Group};

use super::sample::Moment;
use super::Session;

/// The end state of a session, ready to become a report.
pub(crate) struct Outcome {
    pub groups: Vec<Group>,
    pub acquired: u64,
    pub released: u64,
    pub losses: Losses,
    pub kernel_maps: KernelMaps,
    pub mappings: crate::track::mappings::Totals,
    /// fd acquisitions left out by `--sample`.
    pub sampled_out: u64,
    /// Of the acquisitions the kernel could not store, those still held by
    /// the processes whose fd tables were counted (`untracked.rs`); None
    /// when none was counted.
    pub dropped_held: Option<u64>,
}

/// How full the kernel's maps were at the end of the window, before its
/// entries were taken into the report: a tracer in steady state keeps these
/// bounded.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct KernelMaps {
    pub outstanding: MapUse,
    pub tcp: MapUse,
    pub stacks: MapUse,
    /// Mapped regions, kept by userspace (`--max-mappings`).
    pub mapping_regions: MapUse,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct MapUse {
    pub used: u64,
    pub capacity: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct Losses {
    /// Acquisitions not stored: the outstanding map was full (`--max-entries`).
    pub map_full: u64,
    /// Acquisitions stored without a stack: the stack map was full (`--max-stacks`).
    pub stacks_dropped: u64,
    /// Stacks the kernel could not read.
    pub stack_errors: u64,
    /// Process events not delivered: the ring buffer was full.
    pub events_lost: u64,
    /// Child processes not followed: the process map was full (`--max-procs`).
    pub procs_dropped: u64,
    /// Register or user-memory reads that failed.
    pub read_errors: u64,
    /// Events from the kernel that could not be decoded.
    pub undecodable_events: u64,
    /// Modules whose unwinding table did not fit (`--max-unwind-rows`); their
    /// frames were unwound with frame pointers.
    pub unwind_modules_dropped: u64,
    /// Code mappings beyond the per-process limit of the unwinder.
    pub unwind_mappings_dropped: u64,
    /// mmap calls not followed: `--max-mappings` regions were kept already.
    pub mappings_dropped: u64,
    /// Stacks followed without history or verdict: `--max-series` were.
    pub series_dropped: u64,
}

impl Losses {
    /// Anything at all was lost (the counts may still be exact: a stack can
    /// be missing while its acquisition is counted).
    pub(crate) fn any(&self) -> bool {
        *self != Losses::default()
    }

    /// Every cause: its name (the JSON key, and the `cause` label of
    /// `leaktrace_lost_total`), its count, and what it means for a report,
    /// the most telling first.
    pub(crate) fn by_cause(&self) -> [(&'static str, u64, &'static str); 11] {
        [
            (
                "map_full",
                self.map_full,
                "acquisitions were dropped because the outstanding map was full (raise --max-entries)",
            ),
            (
                "stacks_dropped",
                self.stacks_dropped,
                "acquisitions have no stack: the stack map was full (raise --max-stacks)",
            ),
            ("events_lost", self.events_lost, "process events were lost: the ring buffer was full"),
            ("undecodable_events", self.undecodable_events, "kernel events could not be decoded"),
            (
                "procs_dropped",
                self.procs_dropped,
                "child processes were not followed: the process map was full (raise --max-procs)",
            ),
            (
                "unwind_modules_dropped",
                self.unwind_modules_dropped,
                "modules got no unwinding table (raise --max-unwind-rows); their stacks may be cut short",
            ),
            (
                "unwind_mappings_dropped",
                self.unwind_mappings_dropped,
                "code mappings exceeded the unwinder's per-process limit; stacks through them may be cut short",
            ),
            (
                "mappings_dropped",
                self.mappings_dropped,
                "mmap calls were not followed: the mapping table was full (raise --max-mappings)",
            ),
            (
                "series_dropped",
                self.series_dropped,
                "stacks got no history and no verdict: the history was full (raise --max-series)",
            ),
            ("stack_errors", self.stack_errors, "stacks could not be read"),
            ("read_errors", self.read_errors, "syscall arguments could not be read"),
        ]
    }
}

impl<K: Seam> Session<K> {
    /// Takes everything still outstanding and returns the final state.
    pub(crate) fn finish(&mut self) -> Result<Outcome, KernelError> {
        let stacks = self.kernel.stack_ids()?.len() as u64;
        self.kernel_maps.stacks = MapUse { used: stacks, capacity: self.kernel.capacities().stacks.into() };
        // What ended processes held is aggregated already; what live ones
        // hold is the last sample, which the history ends with. Their
        // entries stay in the kernel's maps, which go with the tracer.
        // (The sample applies pending releases and exits first.)
        let live = self.sample_at(Moment::End)?;
        let mut agg = std::mem::replace(&mut self.agg, Aggregator::new(0));
        // Marked, so that what exited processes held at their exit is told
        // apart from what live ones hold (`attach`'s `held_at_exit`).
        agg.mark_exited();
        agg.merge(live);
        // Examples without paths (processes too large for a full read of
        // their fd table, or that no sweep saw): their paths, one by one,
        // from the processes that hold them still: not from a process that
        // exited, whose pid another process may have been given since.
        let kernel = &self.kernel;
        agg.fill_paths(|p| kernel.runs(p), procfs::fd_link);
        self.outcome(agg)
    }

    /// What live processes hold now, as the end state of a report, for live
    /// views; what processes that ended held is dropped (it is not held
    /// any more, and a view of a busy host must not accumulate it).
    pub(crate) fn live_outcome(&mut self, live: Aggregator) -> Result<Outcome, KernelError> {
        self.agg = self.aggregator();
        self.outcome(live)
    }

    /// What live processes hold now, with what processes that ended since
    /// the last call held at their exit, marked so (the daemon reports
    /// those once, then forgets them). Per process, a process that exited
    /// and a live one given its pid since stay apart.
    pub(crate) fn interval_outcome(&mut self, live: Aggregator) -> Result<Outcome, KernelError> {
        let fresh = self.aggregator();
        let mut ended = std::mem::replace(&mut self.agg, fresh);
        ended.mark_exited();
        ended.merge(live);
        self.outcome(ended)
    }

    /// fds acquired and released since the start, and what was lost.
    pub(crate) fn totals(&self) -> Result<(u64, u64, Losses), KernelError> {
        let c = self.kernel.counters()?;
        Ok((c[counters::ACQUIRED as usize], c[counters::RELEASED as usize] + self.released_here, self.losses(&c)))
    }

    fn losses(&self, c: &Counters) -> Losses {
        let unwind = self.unwinder.as_ref().map(|u| u.stats()).unwrap_or_default();
        Losses {
            map_full: c[counters::DROPPED_MAP_FULL as usize],
            stacks_dropped: c[counters::STACKS_DROPPED as usize],
            stack_errors: c[counters::STACK_ERRORS as usize],
            events_lost: c[counters::EVENTS_LOST as usize],
            procs_dropped: c[counters::PROCS_DROPPED as usize],
            read_errors: c[counters::READ_ERRORS as usize],
            undecodable_events: self.bad_events,
            unwind_modules_dropped: unwind.modules_dropped,
            unwind_mappings_dropped: unwind.mappings_dropped,
            mappings_dropped: self.mappings.totals().dropped,
            series_dropped: self.history.dropped(),
        }
    }

    fn outcome(&mut self, agg: Aggregator) -> Result<Outcome, KernelError> {
        let c = self.kernel.counters()?;
        Ok(Outcome {
            groups: agg.into_groups(),
            acquired: c[counters::ACQUIRED as usize],
            released: c[counters::RELEASED as usize] + self.released_here,
            losses: self.losses(&c),
            kernel_maps: self.kernel_maps,
            mappings: self.mappings.totals(),
            sampled_out: c[counters::SAMPLED_OUT as usize],
            dropped_held: self.untracked_held(),
        })
    }
}
