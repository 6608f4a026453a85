//! What a session reads of live processes from /proc, best effort (a
//! process may be gone by the time it is read): names, namespace pids, fd
//! tables (for paths), the code mappings of each program image (kept for
//! symbolization, their unwinding tables published to the kernel side) and
//! the files behind memory mappings. Also whether a process is traced at
//! all, which the filter judges when it appears, forks or execs.

use std::sync::Arc;

use leaktrace_common::process::{ProcState, USER_GEN_BIT};

use crate::kernel::{KernelError, Seam};
use crate::proc_id::{ImageId, ProcId};
use crate::procfs;
use crate::symbolize::maps::{Mapping, MapsSnapshot, Module};
use crate::track::process::FdLinks;

use super::Session;

/// A live process's fd table is read whole (for the paths of its fds) at
/// every sweep and at the end while it holds at most this many outstanding
/// fds; past it, only the examples' paths are read, one fd at a time, at the
/// end. A whole read costs a readlink per fd.
pub(super) const LINKS_FULL_READ: usize = 4096;

impl<K: Seam> Session<K> {
    /// Starts tracing `tgid` as a target; returns its identity.
    pub(crate) fn trace_target(&mut self, tgid: u32) -> Result<ProcId, KernelError> {
        let gen = USER_GEN_BIT | procfs::monotonic_ns();
        self.kernel.trace_process(tgid, ProcState { gen, exec_seq: 0, _pad: 0 })?;
        Ok(ProcId { tgid, gen })
    }

    /// Records comm and exe and the code mappings of the live process's
    /// current image (best effort: it may be gone already).
    pub(crate) fn observe(&mut self, tgid: u32) -> Option<ProcId> {
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

    /// Asks the filter about a process that appeared, forked or exec'd; one
    /// it leaves out is not traced from now on, and what it holds is dropped
    /// at the next sweep.
    pub(super) fn judge_process(&mut self, proc: ProcId) {
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

    /// Reads a live process's pid in its own pid namespace, once: it never
    /// changes, and it cannot be read after the exit. Kept only if the pid
    /// still belongs to `proc` after the read, not to a later process that
    /// was given it. (Threads have none of their own.) Not for processes
    /// the filter left out: their exits send no event, and what is kept of
    /// them would stay for good.
    pub(super) fn note_ns_pid(&mut self, proc: ProcId) {
        if self.filtered.contains(&proc) || self.procs.get(proc).is_some_and(|p| p.ns_pid.is_some()) {
            return;
        }
        let Some(ns_pid) = procfs::process_namespace_pid(proc.tgid) else { return };
        if self.kernel.runs(proc) {
            self.procs.entry(proc).ns_pid = Some(ns_pid);
        }
    }

    /// Reads the live process's current image through thread `tid`: its
    /// code mappings, kept for symbolization, and their unwinding tables,
    /// published to the kernel.
    pub(super) fn capture_image_as(&mut self, tgid: u32, tid: u32) -> Option<ImageId> {
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
            let mappings = unwinder.mappings(&snapshot, image.exec_seq, &mut read, self.kernel.unwind_rows());
            let _ = self.kernel.set_proc_mappings(tgid, mappings.as_ref());
        }
        Some(image)
    }

    /// Loads the unwinding tables of the shared libraries leaktrace itself
    /// maps (the C library, the dynamic loader, libm, libgcc): nearly every
    /// process maps the same files, and tables are kept per file. A process
    /// that starts after tracing began is then unwound completely from its
    /// first acquisitions, instead of only once its tables are built (the C
    /// library's 28,000 rows take a second or more under emulation, while
    /// the process runs on with frame-pointer walks that end in glibc).
    /// Returns the rows loaded.
    pub(crate) fn preload_shared_libraries(&mut self) -> u64 {
        let Some(unwinder) = &mut self.unwinder else { return 0 };
        let me = std::process::id();
        let Ok(mine) = MapsSnapshot::read(me, me) else { return 0 };
        let exe = std::env::current_exe().ok();
        let libraries = MapsSnapshot {
            mappings: mine
                .mappings
                .into_iter()
                .filter(|m| match &m.module {
                    Module::File { path, .. } => exe.as_deref() != Some(&**path),
                    Module::Special(_) => false,
                })
                .collect(),
        };
        let before = unwinder.stats().rows;
        let resolver = &mut self.resolver;
        let mut read = |m: &Mapping| {
            let open = resolver.open_module(me, m)?;
            // SAFETY: a read-only private view of a library leaktrace runs.
            unsafe { memmap2::Mmap::map(&*open) }.ok()
        };
        // Nothing is published: leaktrace does not trace itself.
        let _ = unwinder.mappings(&libraries, 0, &mut read, self.kernel.unwind_rows());
        unwinder.stats().rows - before
    }

    pub(super) fn capture_image(&mut self, tgid: u32) -> Option<ImageId> {
        self.capture_image_as(tgid, tgid)
    }

    /// Captures the live process's current image unless it was.
    pub(super) fn ensure_snapshot(&mut self, tgid: u32) {
        if let Some(image) = self.image_of(tgid) {
            if !self.resolver.has_snapshot(image) {
                self.capture_image(tgid);
            }
        }
    }

    /// Reads the fd table of a live process through one of its threads, for
    /// the paths of its entries.
    pub(super) fn read_fd_links(&mut self, proc: ProcId, tid: u32) {
        let read_ns = procfs::monotonic_ns();
        if let Ok(links) = procfs::fd_links(proc.tgid, tid) {
            self.procs.entry(proc).fd_links = Some(FdLinks { read_ns, links });
            self.note_ns_pid(proc);
        }
    }

    /// Names the file mappings of a live process from its maps, as thread
    /// `tid` sees them.
    pub(super) fn name_mapped_files(&mut self, proc: ProcId, tid: u32) {
        if let Some(space) = self.mappings.space_mut(proc) {
            if let Ok(files) = procfs::file_mappings(proc.tgid, tid) {
                space.name_files(&files);
            }
        }
    }

    /// Names the file mappings of live processes that have unnamed ones.
    pub(super) fn name_new_mapped_files(&mut self) {
        for proc in self.mappings.procs() {
            if self.mappings.space_mut(proc).is_some_and(|s| s.has_unnamed_files()) {
                self.name_mapped_files(proc, proc.tgid);
            }
        }
    }
}
