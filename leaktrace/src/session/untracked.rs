//! Acquisitions the kernel could not store (its outstanding map was full)
//! that are still held. The kernel counts every acquisition it could not
//! store, most of which a churning program releases again; what is still
//! held is what the process's fd table has that no entry stores and that
//! was there before tracing began: counted fd by fd from /proc.

use std::collections::{HashMap, HashSet};

use crate::kernel::{KernelError, Seam};
use crate::proc_id::ProcId;
use crate::procfs;

use super::Session;

/// What is known of one process's fds that tracing did not see acquired.
#[derive(Default)]
pub(super) struct Untracked {
    /// The fds a process held before it was traced, by number (a command's
    /// inherited ones, a process's open at attach).
    before: HashMap<ProcId, HashMap<u32, String>>,
    /// Unstored acquisitions still held, summed over the processes counted.
    held: u64,
    /// Whether any process was counted.
    counted: bool,
}

impl<K: Seam> Session<K> {
    /// Remembers the fds `proc` holds before it is traced: they are not
    /// acquisitions the kernel dropped.
    pub(crate) fn note_fds_before_tracing(&mut self, proc: ProcId, links: HashMap<u32, String>) {
        self.untracked.before.insert(proc, links);
    }

    /// Whether the kernel had to drop acquisitions: only then is counting
    /// worth a read of the fd table.
    fn map_was_full(&self) -> bool {
        self.kernel.counters().is_ok_and(|c| c[leaktrace_common::counters::DROPPED_MAP_FULL as usize] > 0)
    }

    /// Counts what `proc` (read as its thread `tid`, whose fd table is
    /// there while it exits) holds that no entry stores and that it did
    /// not hold before tracing, once the map has been full.
    pub(crate) fn count_untracked(&mut self, proc: ProcId, tid: u32) -> Result<(), KernelError> {
        if !self.map_was_full() {
            return Ok(());
        }
        let Ok(links) = procfs::fd_links(proc.tgid, tid) else { return Ok(()) };
        let stored: HashSet<u32> =
            self.kernel.outstanding()?.iter().filter(|(k, _)| ProcId::of_fd(k) == proc).map(|(k, _)| k.fd).collect();
        let before = self.untracked.before.get(&proc);
        let held = links
            .iter()
            .filter(|(fd, link)| !stored.contains(fd) && before.and_then(|b| b.get(fd)) != Some(*link))
            .count() as u64;
        self.untracked.held += held;
        self.untracked.counted = true;
        Ok(())
    }

    /// Unstored acquisitions still held by the processes counted; None when
    /// none was (the map never filled, or no process could be read).
    pub(crate) fn untracked_held(&self) -> Option<u64> {
        self.untracked.counted.then_some(self.untracked.held)
    }
}
