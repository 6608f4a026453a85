//! A tracing session: owns the kernel side (behind its [`Seam`]), the
//! symbolization service and the tracker state, and turns the kernel's
//! outstanding set and events into aggregated stacks. The modes drive it
//! (`cmd/drive.rs`); what they make of it is theirs.
//!
//! Work happens at a few moments only: when events arrive (process exits,
//! execs, close_range, memory mapping operations; `events.rs`), when the
//! ptrace tracer of `run` holds a process at exit or exec (`events.rs`), on a
//! periodic sweep and sample (`sweep.rs`, `sample.rs`), and at the end
//! (`outcome.rs`). What is read of live processes from /proc is `images.rs`'s.
//! fd acquisitions and their releases never reach userspace individually;
//! mapping operations do (see `leaktrace_common::mmap`).

mod events;
mod images;
mod outcome;
mod sample;
mod sweep;
mod untracked;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use leaktrace_common::fd::{FdEntry, FdKey};

use crate::kernel::{Kernel, Seam};
use crate::proc_id::{ImageId, ProcId};
use crate::symbolize::{NormStack, Resolver, SymFrame};
use crate::track::aggregate::{Aggregator, GroupKey};
use crate::track::fd::{CloexecMarks, RangeOp};
use crate::track::history::History;
use crate::track::mappings::Mappings;
use crate::track::process::{ProcInfo, Processes};
use crate::unwind::{Unwind, Unwinder};

pub(crate) use outcome::{KernelMaps, Losses, MapUse, Outcome};

/// What a session keeps and how it walks stacks (from the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SessionOptions {
    pub unwind: Unwind,
    /// Example resources kept per stack.
    pub examples: usize,
    /// Mapped regions kept for all traced processes.
    pub max_mappings: u32,
    /// Stacks whose history is kept.
    pub max_series: u32,
}

/// Says whether the process with this pid is to be traced.
pub(crate) type ProcessFilter = Box<dyn Fn(u32) -> bool>;

pub(crate) struct Session<K: Seam = Kernel> {
    kernel: K,
    resolver: Resolver,
    /// None when stacks are walked with frame pointers only.
    unwinder: Option<Unwinder>,
    procs: Processes,
    marks: CloexecMarks,
    /// Range releases from events, applied at the next sweep, in order.
    pending_ops: Vec<RangeOp>,
    /// Processes whose exit event arrived and whose entries await harvest.
    exited: HashSet<ProcId>,
    /// What processes that ended held at their exit, aggregated.
    agg: Aggregator,
    /// Entries released by range operations applied here.
    released_here: u64,
    /// Events that could not be decoded (a bug, reported rather than hidden).
    bad_events: u64,
    /// Stack ids unreferenced at the previous stack sweep.
    unreferenced_stacks: HashSet<u64>,
    /// Ptrace holds processes at exec and exit (run mode): snapshots are
    /// taken then, not guessed from events.
    held_by_tracer: bool,
    /// Map use seen by the last sweep that took every entry.
    kernel_maps: KernelMaps,
    /// The traced processes' memory mappings.
    mappings: Mappings,
    /// What each stack held at each sample.
    history: History<GroupKey>,
    max_examples: usize,
    /// When each kernel stack was first seen (its first acquisition),
    /// forgotten with the stack.
    stack_since: HashMap<u64, u64>,
    /// Each process's stacks are aggregated and followed apart (daemon).
    per_process: bool,
    /// Which processes are traced, judged when they appear, fork and exec
    /// (`--comm` and friends); None traces all.
    filter: Option<ProcessFilter>,
    /// Processes the filter left out that the kernel still knows.
    filtered: HashSet<ProcId>,
    /// What is known of fds the kernel did not store (`untracked.rs`).
    untracked: untracked::Untracked,
}

impl<K: Seam> Session<K> {
    pub(crate) fn new(kernel: K, options: &SessionOptions) -> Session<K> {
        // With frame pointers only, no tables are loaded: the kernel then
        // walks every stack with bpf_get_stack.
        let unwinder = match options.unwind {
            Unwind::Cfi => Some(Unwinder::new(kernel.capacities().unwind_rows)),
            Unwind::FramePointers => None,
        };
        Session {
            kernel,
            resolver: Resolver::new(),
            unwinder,
            procs: Processes::default(),
            marks: CloexecMarks::default(),
            pending_ops: Vec::new(),
            exited: HashSet::new(),
            agg: Aggregator::new(options.examples),
            released_here: 0,
            bad_events: 0,
            unreferenced_stacks: HashSet::new(),
            held_by_tracer: false,
            kernel_maps: KernelMaps::default(),
            mappings: Mappings::new(options.max_mappings as usize),
            history: History::new(options.max_series as usize),
            max_examples: options.examples,
            stack_since: HashMap::new(),
            per_process: false,
            filter: None,
            filtered: HashSet::new(),
            untracked: untracked::Untracked::default(),
        }
    }

    /// `run`'s ptrace tracer holds processes at exec, exit and when they map
    /// code: their images and fd tables are read then rather than on events.
    pub(crate) fn held_by_tracer(mut self) -> Self {
        self.held_by_tracer = true;
        self
    }

    /// Follows and judges each process's stacks apart from other processes'.
    pub(crate) fn per_process(mut self) -> Self {
        self.per_process = true;
        self.agg = self.aggregator();
        self
    }

    /// Traces only the processes `filter` accepts.
    pub(crate) fn with_filter(mut self, filter: ProcessFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    fn aggregator(&self) -> Aggregator {
        Aggregator::new(self.max_examples).per_process(self.per_process)
    }

    /// Whether `proc` is still running as the process it was, and traced:
    /// its exit has not been seen, the kernel still knows its pid under its
    /// generation (not a later process given the pid), and the filter did
    /// not leave it out (what it held before is dropped at the next sweep,
    /// and is no sample's).
    fn is_live(&self, proc: ProcId) -> bool {
        !self.exited.contains(&proc) && !self.filtered.contains(&proc) && self.kernel.runs(proc)
    }

    /// The identity and current image of a traced process, if it has one.
    fn image_of(&self, tgid: u32) -> Option<ImageId> {
        let state = self.kernel.proc_state(tgid)?;
        Some(ImageId { proc: ProcId { tgid, gen: state.gen }, exec_seq: state.exec_seq })
    }

    /// The session's kernel side, for readiness of its events.
    pub(crate) fn kernel(&self) -> &K {
        &self.kernel
    }

    pub(crate) fn proc_info(&self, proc: ProcId) -> Option<&ProcInfo> {
        self.procs.get(proc)
    }

    /// Series the history follows, and how many it may.
    pub(crate) fn series_use(&self) -> MapUse {
        MapUse { used: self.history.len() as u64, capacity: self.history.max_series() as u64 }
    }

    /// What each stack held at each sample.
    pub(crate) fn history(&self) -> &History<GroupKey> {
        &self.history
    }

    /// What a report is built from besides the outcome.
    pub(crate) fn history_and_resolver(&mut self) -> (&History<GroupKey>, &mut Resolver) {
        (&self.history, &mut self.resolver)
    }

    /// A stack's frames, symbolized.
    pub(crate) fn symbolize(&mut self, stack: &NormStack) -> Vec<SymFrame> {
        self.resolver.symbolize(stack)
    }

    /// Stops tracing every process: no more entries or signals for any.
    pub(crate) fn untrace_all(&mut self) {
        self.kernel.untrace_all();
    }

    pub(crate) fn is_traced(&self, tgid: u32) -> bool {
        self.kernel.is_traced(tgid)
    }
}

/// The fds the processes of `entries` hold, per process.
fn held_per_process(entries: &[(FdKey, FdEntry)]) -> HashMap<ProcId, usize> {
    let mut held = HashMap::new();
    for (key, _) in entries {
        *held.entry(ProcId::of_fd(key)).or_default() += 1;
    }
    held
}
