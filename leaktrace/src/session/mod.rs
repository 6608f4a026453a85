//! A tracing session: owns the loaded kernel side, the symbolization service
//! and the tracker state, and turns the kernel's outstanding set and events
//! into aggregated stacks.
//!
//! Work happens at a few moments only: when events arrive (process exits,
//! execs, close_range, memory mapping operations), on a periodic sweep, when
//! the ptrace tracer of `run` holds a process at exit or exec, and at the
//! end. fd acquisitions and their releases never reach userspace
//! individually; mapping operations do (see `leaktrace_common::mmap`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aya::maps::{MapData, RingBuf};
use leaktrace_common::{
    counters,
    fd::{FdEntry, FdKey, Resource, FLAG_STACK_LOST},
    mmap::PAGE_SHIFT,
    process::{ProcState, USER_GEN_BIT},
    stack::{StackTrace, NO_STACK},
};

use crate::config::Config;
use crate::decode::{self, Event};
use crate::kernel::RowsArray;
use crate::kernel::{Kernel, KernelError};
use crate::procfs;
use crate::report::{KernelMaps, Losses, MapUse};
use crate::symbolize::maps::{Mapping, MapsSnapshot};
use crate::symbolize::{NormStack, Resolver};
use crate::track::aggregate::{Aggregator, Group, GroupKey, Held, HeldFd, HeldMapping, What};
use crate::track::fd::{plan_releases, CloexecMarks, RangeKind, RangeOp};
use crate::track::history::History;
use crate::track::mappings::Mappings;
use crate::track::mmap::Acquisition;
use crate::track::process::{FdLinks, Processes};
use crate::track::tcp;
use crate::track::{ImageId, ProcId};
use crate::unwind::Unwinder;

/// Readiness of the session's event ring buffer for the event loop (a
/// duplicate descriptor: the session keeps reading through its own).
pub struct Events(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>);

impl Events {
    /// Resolves when the kernel has queued events; the loop then reads them
    /// with [`Session::drain_events`]. Readiness is cleared first, so events
    /// queued while the loop reads wake it again.
    pub async fn ready(&self) {
        if let Ok(mut guard) = self.0.readable().await {
            guard.clear_ready();
        }
    }
}

pub fn readiness(session: &Session) -> Result<Events, crate::failure::Failure> {
    use crate::failure::Failure;
    let fd = session.events_fd().try_clone_to_owned().map_err(Failure::Runtime)?;
    // SAFETY: the AsyncFd owns this duplicate and nothing else closes it.
    let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| Failure::Runtime(e.into()))?;
    Ok(Events(fd))
}

/// SIGINT and SIGTERM, either of which ends tracing (and writes the report).
pub struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn new() -> Result<StopSignals, crate::failure::Failure> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind| signal(kind).map_err(crate::failure::Failure::Runtime);
        Ok(StopSignals { interrupt: listen(SignalKind::interrupt())?, terminate: listen(SignalKind::terminate())? })
    }

    /// Resolves at the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// A live process's fd table is read whole (for the paths of its fds) at
/// every sweep and at the end while it holds at most this many outstanding
/// fds; past it, only the examples' paths are read, one fd at a time, at the
/// end. A whole read costs a readlink per fd.
const LINKS_FULL_READ: usize = 4096;

fn held_per_process(entries: &[(FdKey, FdEntry)]) -> HashMap<ProcId, usize> {
    let mut held = HashMap::new();
    for (key, _) in entries {
        *held.entry(ProcId { tgid: key.tgid, gen: key.gen }).or_default() += 1;
    }
    held
}

pub struct Session {
    kernel: Kernel,
    events: RingBuf<MapData>,
    resolver: Resolver,
    /// None when stacks are walked with frame pointers only.
    unwinder: Option<Unwinder>,
    rows: RowsArray,
    procs: Processes,
    marks: CloexecMarks,
    /// Range releases from events, applied at the next sweep, in order.
    pending_ops: Vec<RangeOp>,
    /// Processes whose exit event arrived and whose entries await harvest.
    exited: HashSet<ProcId>,
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
    /// (daemon `--comm` and friends); None traces all.
    filter: Option<ProcessFilter>,
    /// Processes the filter left out that the kernel still knows.
    filtered: HashSet<ProcId>,
}

/// Says whether the process with this pid is to be traced.
pub type ProcessFilter = Box<dyn Fn(u32) -> bool>;

/// The end state of a session, ready to become a report.
pub struct Outcome {
    pub groups: Vec<Group>,
    pub acquired: u64,
    pub released: u64,
    pub losses: Losses,
    pub kernel_maps: KernelMaps,
    pub mappings: crate::track::mappings::Totals,
    /// fd acquisitions left out by `--sample`.
    pub sampled_out: u64,
}

impl Session {
    pub fn new(mut kernel: Kernel, config: &Config, held_by_tracer: bool) -> Result<Session, KernelError> {
        let events = kernel.take_events().ok_or(KernelError::Map { name: "EVENTS", detail: "already taken".into() })?;
        let rows =
            kernel.take_rows().ok_or(KernelError::Map { name: "UNWIND_ROWS", detail: "already taken".into() })?;
        // With frame pointers only, no tables are loaded: the kernel then
        // walks every stack with bpf_get_stack.
        let unwinder = match config.unwind {
            crate::cli::Unwind::Cfi => Some(Unwinder::new(kernel.options().max_unwind_rows)),
            crate::cli::Unwind::FramePointers => None,
        };
        Ok(Session {
            kernel,
            events,
            resolver: Resolver::new(),
            unwinder,
            rows,
            procs: Processes::default(),
            marks: CloexecMarks::default(),
            pending_ops: Vec::new(),
            exited: HashSet::new(),
            agg: Aggregator::new(config.examples),
            released_here: 0,
            bad_events: 0,
            unreferenced_stacks: HashSet::new(),
            held_by_tracer,
            kernel_maps: KernelMaps::default(),
            mappings: Mappings::new(config.max_mappings as usize),
            history: History::new(config.max_series as usize),
            max_examples: config.examples,
            stack_since: HashMap::new(),
            per_process: false,
            filter: None,
            filtered: HashSet::new(),
        })
    }

    /// Follows and judges each process's stacks apart from other processes'.
    pub fn per_process(&mut self) {
        self.per_process = true;
        self.agg = self.aggregator();
    }

    /// Traces only the processes `filter` accepts.
    pub fn set_filter(&mut self, filter: ProcessFilter) {
        self.filter = Some(filter);
    }

    fn aggregator(&self) -> Aggregator {
        Aggregator::new(self.max_examples).per_process(self.per_process)
    }

    /// Asks the filter about a process that appeared, forked or exec'd; one
    /// it leaves out is not traced from now on, and what it holds is dropped
    /// at the next sweep.
    fn judge_process(&mut self, proc: ProcId) {
        let Some(filter) = &self.filter else { return };
        if filter(proc.tgid) {
            self.filtered.remove(&proc);
        } else {
            self.kernel.filter_out(proc.tgid);
            self.filtered.insert(proc);
            self.mappings.take(proc);
            // Its exit sends no event to forget it by.
            self.procs.remove(proc);
        }
    }

    fn events_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.events.as_fd()
    }

    /// Starts tracing `tgid` as a target; returns its identity.
    pub fn trace_target(&mut self, tgid: u32) -> Result<ProcId, KernelError> {
        let gen = USER_GEN_BIT | procfs::monotonic_ns();
        self.kernel.trace_process(tgid, ProcState { gen, exec_seq: 0, _pad: 0 })?;
        Ok(ProcId { tgid, gen })
    }

    /// The identity and current image of a traced process, if it has one.
    fn image_of(&self, tgid: u32) -> Option<ImageId> {
        let state = self.kernel.proc_state(tgid)?;
        Some(ImageId { proc: ProcId { tgid, gen: state.gen }, exec_seq: state.exec_seq })
    }

    /// Records comm and exe and the code mappings of the live process's
    /// current image (best effort: it may be gone already).
    pub fn observe(&mut self, tgid: u32) -> Option<ProcId> {
        let image = self.image_of(tgid)?;
        let info = self.procs.entry(image.proc);
        if let Some(comm) = procfs::comm(tgid) {
            info.comm = Some(comm);
        }
        if let Some(exe) = procfs::exe(tgid) {
            info.exe = Some(exe);
        }
        self.capture_image(tgid);
        self.note_ns_pid(image.proc);
        Some(image.proc)
    }

    /// Reads a live process's pid in its own pid namespace, once: it never
    /// changes, and it cannot be read after the exit. Kept only if the pid
    /// still belongs to `proc` after the read, not to a later process that
    /// was given it. (Threads have none of their own.) Not for processes
    /// the filter left out: their exits send no event, and what is kept of
    /// them would stay for good.
    fn note_ns_pid(&mut self, proc: ProcId) {
        if self.filtered.contains(&proc) || self.procs.get(proc).is_some_and(|p| p.ns_pid.is_some()) {
            return;
        }
        let Some(ns_pid) = procfs::process_namespace_pid(proc.tgid) else { return };
        if self.kernel.proc_state(proc.tgid).is_some_and(|s| s.gen == proc.gen) {
            self.procs.entry(proc).ns_pid = Some(ns_pid);
        }
    }

    /// Reads the live process's current image through thread `tid`: its
    /// code mappings, kept for symbolization, and their unwinding tables,
    /// published to the kernel.
    fn capture_image_as(&mut self, tgid: u32, tid: u32) -> Option<ImageId> {
        let image = self.image_of(tgid)?;
        let snapshot = MapsSnapshot::read(tgid, tid).ok()?;
        // An exec between the two reads would file the new image's mappings
        // under the old one; the next hold or event reads them again. A
        // thread whose mm is already gone shows nothing: keep what we had.
        if self.image_of(tgid) != Some(image) || snapshot.mappings.is_empty() {
            return None;
        }
        let snapshot = Arc::new(snapshot);
        self.resolver.insert(image, snapshot.clone());
        self.note_ns_pid(image.proc);
        if let Some(unwinder) = &mut self.unwinder {
            let resolver = &mut self.resolver;
            let mut read = |m: &Mapping| {
                let open = resolver.open_module(tgid, m)?;
                // SAFETY: a read-only private view; a module rewritten on disk
                // while mapped yields a wrong table at worst.
                unsafe { memmap2::Mmap::map(&*open) }.ok()
            };
            let mappings = unwinder.mappings(&snapshot, image.exec_seq, &mut read, &mut self.rows);
            let _ = self.kernel.set_proc_mappings(tgid, mappings.as_ref());
        }
        Some(image)
    }

    pub fn proc_info(&self, proc: ProcId) -> Option<&crate::track::process::ProcInfo> {
        self.procs.get(proc)
    }

    /// Reads the fd table of a live process through one of its threads, for
    /// the paths of its entries.
    fn read_fd_links(&mut self, proc: ProcId, tid: u32) {
        let read_ns = procfs::monotonic_ns();
        if let Ok(links) = procfs::fd_links(proc.tgid, tid) {
            self.procs.entry(proc).fd_links = Some(FdLinks { read_ns, links });
            self.note_ns_pid(proc);
        }
    }

    fn capture_image(&mut self, tgid: u32) -> Option<ImageId> {
        self.capture_image_as(tgid, tgid)
    }

    /// Captures the live process's current image unless it was.
    fn ensure_snapshot(&mut self, tgid: u32) {
        if let Some(image) = self.image_of(tgid) {
            if !self.resolver.has_snapshot(image) {
                self.capture_image(tgid);
            }
        }
    }

    /// The tracer holds thread `tid` of `tgid` just before it exits: the fds
    /// and mappings may be there for the last time. The thread's own view is
    /// read, since the leader may already have dropped its fd table.
    pub fn before_exit(&mut self, tgid: u32, tid: u32) {
        self.drain_events();
        if self.image_of(tgid).is_none() {
            return;
        }
        // Read the mappings again: code mapped without a hold (anonymous,
        // JIT) must be in the last snapshot.
        self.capture_image_as(tgid, tid);
        if let Some(image) = self.image_of(tgid) {
            self.read_fd_links(image.proc, tid);
            self.name_mapped_files(image.proc, tid);
            // A target's last sample, while it still holds everything: the
            // history then ends where the report's counts are taken. (Every
            // thread's exit is a hold; the leader's stands for the process.)
            if tid == tgid && image.proc.gen & USER_GEN_BIT != 0 {
                let _ = self.sample(true);
            }
        }
    }

    /// The tracer holds `tgid` after an exec, before the new image runs.
    pub fn after_exec(&mut self, tgid: u32) {
        self.drain_events();
        self.observe(tgid);
    }

    /// The tracer holds `tgid` after it mapped new code.
    pub fn code_mapped(&mut self, tgid: u32) {
        self.capture_image(tgid);
    }

    /// The tracer holds a parent whose new child has not run yet.
    pub fn forked(&mut self, child: u32) {
        self.drain_events();
        self.capture_image(child);
    }

    /// Reads every event the kernel has queued, without waiting.
    pub fn drain_events(&mut self) {
        let mut decoded = Vec::new();
        while let Some(item) = self.events.next() {
            match decode::decode(&item) {
                Ok(event) => decoded.push(event),
                Err(_) => self.bad_events += 1,
            }
        }
        for event in decoded {
            self.on_event(event);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Exit { proc, at_ns } => {
                self.procs.entry(proc).exited_ns = Some(at_ns);
                self.exited.insert(proc);
            }
            Event::Exec { proc, at_ns, .. } => {
                self.judge_process(proc);
                self.pending_ops.push(RangeOp { proc, at_ns, kind: RangeKind::Exec });
                self.mappings.exec(proc, at_ns);
                if !self.held_by_tracer {
                    // Best effort: the image may be gone again already.
                    self.capture_image(proc.tgid);
                }
            }
            Event::CloseRange { proc, at_ns, first, last, flags } => {
                self.pending_ops.push(RangeOp::close_range(proc, at_ns, first, last, flags));
            }
            Event::CodeMapped { proc, .. } => {
                self.judge_process(proc);
                if !self.held_by_tracer {
                    self.capture_image(proc.tgid);
                }
            }
            Event::Mmap { proc, at_ns, event } => {
                // The mapped file, read while the mapping is likely still
                // there (and named again from the process's maps later).
                let path = (event.fd >= 0)
                    .then(|| {
                        let len = leaktrace_common::mmap::round_up(event.len, PAGE_SHIFT)?;
                        procfs::mapped_file(proc.tgid, event.start, event.start.checked_add(len)?)
                    })
                    .flatten();
                self.mappings.mmap(proc, at_ns, &event, path);
            }
            Event::Munmap { proc, at_ns, start, len } => self.mappings.munmap(proc, at_ns, start, len),
            Event::MremapStart { proc, at_ns, event } => self.mappings.mremap_start(proc, at_ns, &event),
            Event::MremapDone { proc, at_ns, tid, result } => self.mappings.mremap_done(proc, at_ns, tid, result),
            Event::Fork { child, parent_tgid } => {
                self.judge_process(child);
                // Under run's tracer the fork is a hold, which reads it then;
                // otherwise now, as a child may live for a moment only.
                if !self.held_by_tracer {
                    self.note_ns_pid(child);
                }
                // A child that never execs runs its parent's code. (For a thread
                // this adds a harmless snapshot under its tid, dropped at exit.)
                if let Some(parent) = self.image_of(parent_tgid) {
                    self.resolver.inherit(parent, ImageId { proc: child, exec_seq: 0 });
                }
            }
        }
    }

    /// The event loop's periodic work: reads the events the kernel queued
    /// without waking it (mapping operations), then applies what is pending.
    pub fn tick(&mut self) -> Result<(), KernelError> {
        self.drain_events();
        if !self.exited.is_empty() || !self.pending_ops.is_empty() {
            self.sweep()?;
        }
        Ok(())
    }

    /// Applies pending releases and moves the entries of exited processes
    /// into the aggregate (live processes' are sampled, not taken). Returns
    /// the entries left, those of live processes, so a sample that follows
    /// need not read the map again.
    pub fn sweep(&mut self) -> Result<Vec<(FdKey, FdEntry)>, KernelError> {
        self.drain_events();
        let now = procfs::monotonic_ns();
        let mut entries = self.kernel.outstanding()?;

        if !self.pending_ops.is_empty() {
            let released = plan_releases(&self.pending_ops, &entries, &mut self.marks);
            self.pending_ops.clear();
            if !released.is_empty() {
                let released: HashSet<FdKey> = released.into_iter().collect();
                // Deleted by key only while the entry is still the one read:
                // the process may have had a released number handed out again
                // since, and the kernel then keeps the new acquisition under
                // the same key (seen as one fd too few after a close_range,
                // when the sweep was slow).
                let planned: Vec<(FdKey, u64)> =
                    entries.iter().filter(|(k, _)| released.contains(k)).map(|(k, e)| (*k, e.acquired_ns)).collect();
                let unchanged = self.kernel.unchanged_outstanding(&planned);
                self.released_here += self.kernel.remove_outstanding(&unchanged)? as u64;
                let connections: Vec<u64> =
                    entries.iter().filter(|(k, e)| e.sk != 0 && released.contains(k)).map(|(_, e)| e.sk).collect();
                self.kernel.remove_tcp_socks(&connections)?;
                entries.retain(|(k, _)| !released.contains(k));
            }
        }

        if !self.filtered.is_empty() {
            self.drop_filtered(&mut entries)?;
        }

        let mut alive: HashMap<ProcId, bool> = HashMap::new();
        for (key, _) in &entries {
            let proc = ProcId { tgid: key.tgid, gen: key.gen };
            alive.entry(proc).or_insert_with(|| {
                !self.exited.contains(&proc) && self.kernel.proc_state(key.tgid).is_some_and(|s| s.gen == key.gen)
            });
        }

        // The kernel's TCP sockets, joined to the entries they were acquired as.
        let socks = self.kernel.tcp_socks()?;
        let tcp = tcp::index(&socks);

        let mut taken = Vec::new();
        let mut taken_socks = Vec::new();
        for (key, entry) in &entries {
            let proc = ProcId { tgid: key.tgid, gen: key.gen };
            if alive[&proc] {
                continue;
            }
            let until = self.procs.get(proc).and_then(|p| p.exited_ns).unwrap_or(now);
            let connection = tcp.get(&(key.tgid, key.gen, key.fd, entry.acquired_ns)).copied();
            let held = self.held(key, entry, until, connection);
            self.agg.add(held);
            taken.push(*key);
            if entry.sk != 0 {
                taken_socks.push(entry.sk);
            }
        }
        self.kernel.remove_outstanding(&taken)?;
        // Their TCP sockets too: those of exited processes stay frozen in the
        // kernel until taken here. So do the sockets of exited processes that
        // no entry names (its acquisition was dropped, or released in a way
        // the programs do not see): drop them, or they would stay for good.
        let owners: HashSet<ProcId> = entries.iter().map(|(k, _)| ProcId { tgid: k.tgid, gen: k.gen }).collect();
        taken_socks.extend(
            socks
                .iter()
                .filter(|(_, s)| {
                    let owner = ProcId { tgid: s.tgid, gen: s.gen };
                    !owners.contains(&owner) && self.kernel.proc_state(s.tgid).is_none_or(|p| p.gen != s.gen)
                })
                .map(|(sk, _)| *sk),
        );
        self.kernel.remove_tcp_socks(&taken_socks)?;
        self.harvest_mappings(now);
        // Processes that ended are fully reported now: drop what was kept for them.
        let ended: Vec<ProcId> =
            self.exited.drain().chain(alive.iter().filter(|(_, l)| !**l).map(|(p, _)| *p)).collect();
        for proc in ended {
            self.resolver.forget(proc);
            self.marks.forget(proc);
            if proc.gen & USER_GEN_BIT == 0 {
                // Targets keep their info for the report header.
                self.procs.remove(proc);
            }
        }
        entries.retain(|(k, _)| alive[&ProcId { tgid: k.tgid, gen: k.gen }]);
        Ok(entries)
    }

    /// Drops what processes the filter left out acquired before it judged
    /// them, and forgets those that are gone.
    fn drop_filtered(&mut self, entries: &mut Vec<(FdKey, FdEntry)>) -> Result<(), KernelError> {
        let filtered = &self.filtered;
        let (dropped, kept): (Vec<_>, Vec<_>) = std::mem::take(entries)
            .into_iter()
            .partition(|(k, _)| filtered.contains(&ProcId { tgid: k.tgid, gen: k.gen }));
        *entries = kept;
        if !dropped.is_empty() {
            let keys: Vec<FdKey> = dropped.iter().map(|(k, _)| *k).collect();
            self.kernel.remove_outstanding(&keys)?;
            let socks: Vec<u64> = dropped.iter().filter(|(_, e)| e.sk != 0).map(|(_, e)| e.sk).collect();
            self.kernel.remove_tcp_socks(&socks)?;
        }
        for proc in self.filtered.iter().copied().collect::<Vec<_>>() {
            self.mappings.take(proc);
        }
        let kernel = &self.kernel;
        self.filtered.retain(|p| kernel.proc_state(p.tgid).is_some_and(|s| s.gen == p.gen));
        Ok(())
    }

    /// Forgets the history of processes that are gone (or filtered out),
    /// and the symbols of code no process runs any more: the daemon
    /// reported them while they were there, and a busy host's short-lived
    /// processes must not fill its memory.
    pub fn forget_gone(&mut self) {
        self.resolver.trim();
        let mut live: HashMap<ProcId, bool> = HashMap::new();
        let (kernel, filtered, exited) = (&self.kernel, &self.filtered, &self.exited);
        self.history.retain(|key| {
            key.owner.is_none_or(|p| {
                *live.entry(p).or_insert_with(|| {
                    !filtered.contains(&p)
                        && !exited.contains(&p)
                        && kernel.proc_state(p.tgid).is_some_and(|s| s.gen == p.gen)
                })
            })
        });
    }

    /// The periodic sweep: reads paths of live processes' fds while they can
    /// be read, samples what each stack holds, and frees stacks no
    /// outstanding entry uses any more. Returns the sample.
    pub fn refresh(&mut self) -> Result<Aggregator, KernelError> {
        // Unconditional, unlike the sample's: it also finds processes whose
        // exit event was lost.
        let entries = self.sweep()?;
        for (proc, held) in held_per_process(&entries) {
            if held <= LINKS_FULL_READ {
                self.read_fd_links(proc, proc.tgid);
            }
            self.ensure_snapshot(proc.tgid);
        }
        for proc in self.mappings.procs() {
            if self.mappings.space_mut(proc).is_some_and(|s| s.has_unnamed_files()) {
                self.name_mapped_files(proc, proc.tgid);
            }
        }
        let live = self.sample_of(&entries, false, false)?;
        self.free_stacks(&entries)?;
        Ok(live)
    }

    /// The periodic sweep without a sample (recordings): what live processes
    /// hold now, entry by entry, with their fd paths and code mappings read.
    pub fn live_entries(&mut self) -> Result<Vec<(FdKey, FdEntry)>, KernelError> {
        let entries = self.sweep()?;
        for (proc, held) in held_per_process(&entries) {
            if held <= LINKS_FULL_READ {
                self.read_fd_links(proc, proc.tgid);
            }
            self.ensure_snapshot(proc.tgid);
        }
        self.free_stacks(&entries)?;
        // What ended processes held was taken by the sweep; a recording has
        // it already (it sees it gone at this checkpoint).
        self.agg = self.aggregator();
        Ok(entries)
    }

    /// `entries` of live processes as held resources, with their stacks and
    /// TCP connections.
    pub fn held_entries(&mut self, entries: &[(FdKey, FdEntry)]) -> Result<Vec<Held>, KernelError> {
        let now = procfs::monotonic_ns();
        let socks = self.kernel.tcp_socks()?;
        let tcp = tcp::index(&socks);
        Ok(entries
            .iter()
            .map(|(key, entry)| {
                let connection = tcp.get(&(key.tgid, key.gen, key.fd, entry.acquired_ns)).copied();
                self.held(key, entry, now, connection)
            })
            .collect())
    }

    /// The mappings live processes hold now, one by one (recordings).
    pub fn live_mappings(&mut self) -> Vec<Held> {
        let now = procfs::monotonic_ns();
        let mut held = Vec::new();
        for proc in self.mappings.procs() {
            let live =
                !self.exited.contains(&proc) && self.kernel.proc_state(proc.tgid).is_some_and(|s| s.gen == proc.gen);
            if live {
                if self.mappings.space_mut(proc).is_some_and(|s| s.has_unnamed_files()) {
                    self.name_mapped_files(proc, proc.tgid);
                }
                held.extend(self.held_mappings(proc, now, false));
            }
        }
        held
    }

    /// A stack's frames, symbolized.
    pub fn symbolize(&mut self, stack: &NormStack) -> Vec<crate::symbolize::SymFrame> {
        self.resolver.symbolize(stack)
    }

    /// Takes one sample of what live processes hold, per stack, into the
    /// history; returns it aggregated (for live views).
    pub fn sample(&mut self, keep: bool) -> Result<Aggregator, KernelError> {
        self.sample_as(keep, false)
    }

    /// A sample; `end` makes it the end of the window: fd paths, mapped
    /// files and code mappings of live processes are read as they are now,
    /// and the maps' use is noted for the report.
    fn sample_as(&mut self, keep: bool, end: bool) -> Result<Aggregator, KernelError> {
        self.drain_events();
        // Releases by close_range and exec, and exits, first.
        let entries = if !self.exited.is_empty() || !self.pending_ops.is_empty() {
            self.sweep()?
        } else {
            self.kernel.outstanding()?
        };
        self.sample_of(&entries, keep, end)
    }

    /// A sample of `entries`, the outstanding map as just read.
    fn sample_of(&mut self, entries: &[(FdKey, FdEntry)], keep: bool, end: bool) -> Result<Aggregator, KernelError> {
        let now = procfs::monotonic_ns();
        let socks = self.kernel.tcp_socks()?;
        let tcp = tcp::index(&socks);
        {
            let options = self.kernel.options();
            self.kernel_maps.outstanding = MapUse { used: entries.len() as u64, capacity: options.max_entries.into() };
            self.kernel_maps.tcp =
                MapUse { used: socks.len() as u64, capacity: if options.tcp { options.max_entries.into() } else { 0 } };
            self.kernel_maps.mapping_regions =
                MapUse { used: self.mappings.regions() as u64, capacity: self.mappings.max_regions() as u64 };
        }
        let held = if end { held_per_process(entries) } else { HashMap::new() };
        let mut live = self.aggregator();
        let mut alive: HashMap<ProcId, bool> = HashMap::new();
        for (key, entry) in entries {
            let proc = ProcId { tgid: key.tgid, gen: key.gen };
            let is_live = match alive.get(&proc) {
                Some(live) => *live,
                None => {
                    let live = !self.exited.contains(&proc)
                        && self.kernel.proc_state(key.tgid).is_some_and(|s| s.gen == key.gen);
                    alive.insert(proc, live);
                    if live && end {
                        if held[&proc] <= LINKS_FULL_READ {
                            self.read_fd_links(proc, proc.tgid);
                        }
                        self.ensure_snapshot(proc.tgid);
                    }
                    live
                }
            };
            if is_live {
                let connection = tcp.get(&(key.tgid, key.gen, key.fd, entry.acquired_ns)).copied();
                let held = self.held(key, entry, now, connection);
                live.add(held);
            }
        }
        for proc in self.mappings.procs() {
            let is_live =
                !self.exited.contains(&proc) && self.kernel.proc_state(proc.tgid).is_some_and(|s| s.gen == proc.gen);
            if is_live {
                if end {
                    self.name_mapped_files(proc, proc.tgid);
                    self.ensure_snapshot(proc.tgid);
                }
                for held in self.held_mappings(proc, now, false) {
                    live.add(held);
                }
            }
        }
        // Under run's tracer the last sample was taken as the command
        // exited; what is left now are processes it left behind.
        if !(end && self.held_by_tracer) {
            self.history.record(now, &live.observed(), keep);
        }
        Ok(live)
    }

    /// What each stack held at each sample.
    /// Series the history follows, and how many it may.
    pub fn series_use(&self) -> MapUse {
        MapUse { used: self.history.len() as u64, capacity: self.history.max_series() as u64 }
    }

    pub fn history(&self) -> &History<GroupKey> {
        &self.history
    }

    /// Deletes kernel stacks that no entry has referenced for two sweeps in a
    /// row (one sweep could race with an acquisition that just found the stack).
    /// Only done past half capacity, so short sessions never lose a stack.
    fn free_stacks(&mut self, entries: &[(FdKey, FdEntry)]) -> Result<(), KernelError> {
        let ids = self.kernel.stack_ids()?;
        self.kernel_maps.stacks = MapUse { used: ids.len() as u64, capacity: self.kernel.options().max_stacks.into() };
        if (ids.len() as u64) * 2 < u64::from(self.kernel.options().max_stacks) {
            self.unreferenced_stacks.clear();
            return Ok(());
        }
        let referenced: HashSet<u64> =
            entries.iter().map(|(_, e)| e.stack_id).chain(self.mappings.stack_ids()).collect();
        let unreferenced: HashSet<u64> = ids.into_iter().filter(|id| !referenced.contains(id)).collect();
        let stale: Vec<u64> = unreferenced.intersection(&self.unreferenced_stacks).copied().collect();
        self.kernel.remove_stacks(&stale)?;
        for id in &stale {
            self.stack_since.remove(id);
        }
        self.unreferenced_stacks = unreferenced;
        for id in stale {
            self.unreferenced_stacks.remove(&id);
        }
        Ok(())
    }

    /// Moves the mappings of processes that ended into the aggregate.
    fn harvest_mappings(&mut self, now: u64) {
        for proc in self.mappings.procs() {
            let live =
                !self.exited.contains(&proc) && self.kernel.proc_state(proc.tgid).is_some_and(|s| s.gen == proc.gen);
            if live {
                continue;
            }
            let until = self.procs.get(proc).and_then(|p| p.exited_ns).unwrap_or(now);
            for held in self.held_mappings(proc, until, true) {
                self.agg.add(held);
            }
        }
    }

    /// The mappings `proc` holds, with their stacks; with `take`, they are
    /// forgotten here.
    fn held_mappings(&mut self, proc: ProcId, until: u64, take: bool) -> Vec<Held> {
        let held: Vec<(Acquisition, u64)> = {
            let mut taken = if take { self.mappings.take(proc) } else { None };
            let space = if take { taken.as_mut() } else { self.mappings.space_mut(proc) };
            let Some(space) = space else { return Vec::new() };
            space.held().into_iter().map(|h| (h.acquisition.clone(), h.address)).collect()
        };
        held.into_iter()
            .map(|(acq, address)| {
                let image = ImageId { proc, exec_seq: acq.exec_seq };
                let stack = self.stack_of(image, acq.stack_id, false);
                Held {
                    proc,
                    ns_pid: self.procs.get(proc).and_then(|p| p.other_ns_pid(proc.tgid)),
                    acquired_ns: acq.acquired_ns,
                    held_until_ns: until,
                    stack_since_ns: self.since(acq.stack_id),
                    stack,
                    what: What::Mapping(HeldMapping {
                        address,
                        bytes: acq.bytes,
                        regions: acq.regions,
                        prot: acq.prot,
                        flags: acq.flags,
                        resource: acq.resource,
                        path: acq.path,
                    }),
                }
            })
            .collect()
    }

    /// Names the file mappings of a live process from its maps, as thread
    /// `tid` sees them.
    fn name_mapped_files(&mut self, proc: ProcId, tid: u32) {
        if let Some(space) = self.mappings.space_mut(proc) {
            if let Ok(files) = procfs::file_mappings(proc.tgid, tid) {
                space.name_files(&files);
            }
        }
    }

    fn stack_of(&mut self, image: ImageId, stack_id: u64, lost: bool) -> Arc<NormStack> {
        if lost || stack_id == NO_STACK {
            self.resolver.normalize(image, NO_STACK, None)
        } else if let Some(done) = self.resolver.cached_stack(image, stack_id) {
            done
        } else {
            let trace: Option<StackTrace> = self.kernel.stack(stack_id);
            if let Some(t) = &trace {
                self.stack_since.entry(stack_id).or_insert(t.first_ns);
            }
            self.resolver.normalize(image, stack_id, trace.as_ref())
        }
    }

    /// When the kernel first saw stack `stack_id` (0: not known).
    fn since(&self, stack_id: u64) -> u64 {
        self.stack_since.get(&stack_id).copied().unwrap_or(0)
    }

    fn held(&mut self, key: &FdKey, entry: &FdEntry, until: u64, tcp: Option<tcp::TcpInfo>) -> Held {
        let proc = ProcId { tgid: key.tgid, gen: key.gen };
        let image = ImageId { proc, exec_seq: entry.exec_seq };
        let stack = self.stack_of(image, entry.stack_id, entry.flags & FLAG_STACK_LOST != 0);
        let link = self
            .procs
            .get(proc)
            .and_then(|p| p.fd_links.as_ref())
            .and_then(|l| l.link_for(key.fd, entry.acquired_ns))
            .map(str::to_owned);
        Held {
            proc,
            ns_pid: self.procs.get(proc).and_then(|p| p.other_ns_pid(proc.tgid)),
            acquired_ns: entry.acquired_ns,
            held_until_ns: until,
            stack_since_ns: self.since(entry.stack_id),
            stack,
            what: What::Fd(HeldFd {
                fd: key.fd,
                resource: Resource::from_u8(entry.resource),
                link,
                socket: (entry.sock_family, entry.sock_type),
                tcp,
            }),
        }
    }

    /// Stops tracing every process: no more entries or signals for any.
    pub fn untrace_all(&mut self) {
        self.kernel.untrace_all();
    }

    pub fn is_traced(&self, tgid: u32) -> bool {
        self.kernel.is_traced(tgid)
    }

    /// What a report is built from besides the outcome.
    pub fn history_and_resolver(&mut self) -> (&History<GroupKey>, &mut Resolver) {
        (&self.history, &mut self.resolver)
    }

    /// Takes everything still outstanding and returns the final state.
    pub fn finish(&mut self) -> Result<Outcome, KernelError> {
        let stacks = self.kernel.stack_ids()?.len() as u64;
        self.kernel_maps.stacks = MapUse { used: stacks, capacity: self.kernel.options().max_stacks.into() };
        // What ended processes held is aggregated already; what live ones
        // hold is the last sample, which the history ends with. Their
        // entries stay in the kernel's maps, which go with the tracer.
        // (The sample applies pending releases and exits first.)
        let live = self.sample_as(true, true)?;
        let mut agg = std::mem::replace(&mut self.agg, Aggregator::new(0));
        agg.merge(live);
        // Examples without paths (processes too large for a full read of
        // their fd table, or that no sweep saw): their paths, one by one,
        // from the processes that hold them still: not from a process that
        // exited, whose pid another process may have been given since.
        let kernel = &self.kernel;
        agg.fill_paths(|p| kernel.proc_state(p.tgid).is_some_and(|s| s.gen == p.gen), procfs::fd_link);
        self.outcome(agg)
    }

    /// What live processes hold now, as the end state of a report, for live
    /// views; what processes that ended held is dropped (it is not held
    /// any more, and a view of a busy host must not accumulate it).
    pub fn live_outcome(&mut self, live: Aggregator) -> Result<Outcome, KernelError> {
        self.agg = self.aggregator();
        self.outcome(live)
    }

    /// What live processes hold now, with what processes that ended since
    /// the last call held at their exit, marked so (the daemon reports
    /// those once, then forgets them). Per process, a process that exited
    /// and a live one given its pid since stay apart.
    pub fn interval_outcome(&mut self, live: Aggregator) -> Result<Outcome, KernelError> {
        let fresh = self.aggregator();
        let mut ended = std::mem::replace(&mut self.agg, fresh);
        ended.mark_exited();
        ended.merge(live);
        self.outcome(ended)
    }

    /// fds acquired and released since the start, and what was lost.
    pub fn totals(&self) -> Result<(u64, u64, Losses), KernelError> {
        let c = self.kernel.counters()?;
        Ok((c[counters::ACQUIRED as usize], c[counters::RELEASED as usize] + self.released_here, self.losses(&c)))
    }

    fn losses(&self, c: &[u64]) -> Losses {
        Losses {
            map_full: c[counters::DROPPED_MAP_FULL as usize],
            stacks_dropped: c[counters::STACKS_DROPPED as usize],
            stack_errors: c[counters::STACK_ERRORS as usize],
            events_lost: c[counters::EVENTS_LOST as usize],
            procs_dropped: c[counters::PROCS_DROPPED as usize],
            read_errors: c[counters::READ_ERRORS as usize],
            undecodable_events: self.bad_events,
            unwind_modules_dropped: self.unwinder.as_ref().map_or(0, |u| u.stats().modules_dropped),
            unwind_mappings_dropped: self.unwinder.as_ref().map_or(0, |u| u.stats().mappings_dropped),
            mappings_dropped: self.mappings.totals().dropped,
            series_dropped: self.history.dropped(),
        }
    }

    fn outcome(&mut self, agg: Aggregator) -> Result<Outcome, KernelError> {
        let c = self.kernel.counters()?;
        let losses = self.losses(&c);
        Ok(Outcome {
            groups: agg.into_groups(),
            acquired: c[counters::ACQUIRED as usize],
            released: c[counters::RELEASED as usize] + self.released_here,
            losses,
            kernel_maps: self.kernel_maps,
            mappings: self.mappings.totals(),
            sampled_out: c[counters::SAMPLED_OUT as usize],
        })
    }
}
