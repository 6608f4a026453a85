//! What a session does when the kernel side tells it something: process
//! events from the ring buffer (exits, execs, forks, close_range, code and
//! memory mappings), and the moments `run`'s ptrace tracer holds a process
//! (before it exits, after it execs or maps code, when it forks).
//!
//! Range releases and exits are only queued here; the next sweep applies
//! them (`sweep.rs`) against the outstanding set as the kernel has it then.

use leaktrace_common::mmap::PAGE_SHIFT;

use crate::decode::{self, Event};
use crate::kernel::{KernelError, Seam};
use crate::proc_id::ImageId;
use crate::procfs;
use crate::track::fd::{RangeKind, RangeOp};

use super::sample::Moment;
use super::Session;

impl<K: Seam> Session<K> {
    /// Reads every event the kernel has queued, without waiting.
    pub(crate) fn drain_events(&mut self) {
        let mut decoded = Vec::new();
        let mut bad = 0;
        self.kernel.read_events(&mut |bytes| match decode::decode(bytes) {
            Ok(event) => decoded.push(event),
            Err(_) => bad += 1,
        });
        self.bad_events += bad;
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
                // The parent may be gone by the time its fork is read (a storm
                // of short-lived children it reaped before exiting): its image
                // is then the last one read of it.
                let parent = self.image_of(parent_tgid).or_else(|| self.resolver.latest_image(parent_tgid));
                if let Some(parent) = parent {
                    self.resolver.inherit(parent, ImageId { proc: child, exec_seq: 0 });
                }
            }
        }
    }

    /// The event loop's frequent work: reads the events the kernel queued
    /// without waking it (mapping operations), then applies what is pending.
    pub(crate) fn tick(&mut self) -> Result<(), KernelError> {
        self.drain_events();
        if self.has_pending() {
            self.sweep()?;
        }
        Ok(())
    }

    /// Exits or range releases wait for a sweep.
    pub(super) fn has_pending(&self) -> bool {
        !self.exited.is_empty() || !self.pending_ops.is_empty()
    }

    /// The tracer holds thread `tid` of `tgid` just before it exits: the fds
    /// and mappings may be there for the last time. The thread's own view is
    /// read, since the leader may already have dropped its fd table.
    pub(crate) fn before_exit(&mut self, tgid: u32, tid: u32) {
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
            if tid == tgid && image.proc.is_target() {
                let _ = self.sample_at(Moment::TargetExit);
                // Its fd table for the last time: what it holds that the
                // kernel could not store.
                let _ = self.count_untracked(image.proc, tid);
            }
        }
    }

    /// The tracer holds `tgid` after an exec, before the new image runs.
    pub(crate) fn after_exec(&mut self, tgid: u32) {
        self.drain_events();
        self.observe(tgid);
    }

    /// The tracer holds `tgid` after it mapped new code.
    pub(crate) fn code_mapped(&mut self, tgid: u32) {
        self.capture_image(tgid);
    }

    /// The tracer holds a parent whose new child has not run yet.
    pub(crate) fn forked(&mut self, child: u32) {
        self.drain_events();
        self.capture_image(child);
    }
}
