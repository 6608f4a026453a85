//! The sweep: applies what events left pending (releases by close_range and
//! exec, exits), moves what ended processes held into the aggregate of the
//! ended, and keeps the kernel's maps and the session's own state bounded
//! (the entries and sockets of processes that are gone or filtered out,
//! stacks no entry uses, histories of processes that are gone).

use std::collections::{HashMap, HashSet};

use leaktrace_common::fd::{FdEntry, FdKey};

use crate::kernel::{KernelError, Seam};
use crate::proc_id::ProcId;
use crate::procfs;
use crate::track::fd::plan_releases;
use crate::track::tcp::TcpIndex;

use super::Session;

/// The outstanding entries a sweep read, less those it took.
pub(super) type Entries = Vec<(FdKey, FdEntry)>;

impl<K: Seam> Session<K> {
    /// Applies pending releases and moves the entries of exited processes
    /// into the aggregate (live processes' are sampled, not taken). Returns
    /// the entries left, those of live processes, so a sample that follows
    /// need not read the map again.
    pub(crate) fn sweep(&mut self) -> Result<Entries, KernelError> {
        self.drain_events();
        let now = procfs::monotonic_ns();
        let mut entries = self.kernel.outstanding()?;
        self.apply_range_releases(&mut entries)?;
        if !self.filtered.is_empty() {
            self.drop_filtered(&mut entries)?;
        }
        let alive = self.liveness(&entries);
        self.take_ended(&entries, &alive, now)?;
        self.harvest_mappings(now);
        // Processes that ended are fully reported now: drop what was kept for them.
        let ended: Vec<ProcId> =
            self.exited.drain().chain(alive.iter().filter(|(_, l)| !**l).map(|(p, _)| *p)).collect();
        for proc in ended {
            self.resolver.forget(proc);
            self.marks.forget(proc);
            if !proc.is_target() {
                // Targets keep their info for the report header.
                self.procs.remove(proc);
            }
        }
        entries.retain(|(k, _)| alive[&ProcId::of_fd(k)]);
        Ok(entries)
    }

    /// Whether each process holding `entries` is still live, each asked
    /// about once (a kernel map lookup each: there can be a million entries).
    pub(super) fn liveness(&self, entries: &Entries) -> HashMap<ProcId, bool> {
        let mut alive: HashMap<ProcId, bool> = HashMap::new();
        for (key, _) in entries {
            let proc = ProcId::of_fd(key);
            alive.entry(proc).or_insert_with(|| self.is_live(proc));
        }
        alive
    }

    /// Releases by close_range and exec, in the order they happened, from
    /// `entries` and the kernel's maps.
    fn apply_range_releases(&mut self, entries: &mut Entries) -> Result<(), KernelError> {
        if self.pending_ops.is_empty() {
            return Ok(());
        }
        let released = plan_releases(&self.pending_ops, entries, &mut self.marks);
        self.pending_ops.clear();
        if released.is_empty() {
            return Ok(());
        }
        let released: HashSet<FdKey> = released.into_iter().collect();
        // Deleted by key only while the entry is still the one read: the
        // process may have had a released number handed out again since, and
        // the kernel then keeps the new acquisition under the same key (seen
        // as one fd too few after a close_range, when the sweep was slow).
        let planned: Vec<(FdKey, u64)> =
            entries.iter().filter(|(k, _)| released.contains(k)).map(|(k, e)| (*k, e.acquired_ns)).collect();
        let unchanged = self.kernel.unchanged_outstanding(&planned);
        self.released_here += self.kernel.remove_outstanding(&unchanged)? as u64;
        let connections: Vec<u64> =
            entries.iter().filter(|(k, e)| e.sk != 0 && released.contains(k)).map(|(_, e)| e.sk).collect();
        self.kernel.remove_tcp_socks(&connections)?;
        entries.retain(|(k, _)| !released.contains(k));
        Ok(())
    }

    /// Moves what processes that ended held into the aggregate of the ended,
    /// out of the kernel's maps; and drops the TCP sockets of ended
    /// processes that no entry names.
    fn take_ended(&mut self, entries: &Entries, alive: &HashMap<ProcId, bool>, now: u64) -> Result<(), KernelError> {
        let socks = self.kernel.tcp_socks()?;
        let tcp = TcpIndex::new(&socks);
        let mut taken = Vec::new();
        let mut taken_socks = Vec::new();
        for (key, entry) in entries {
            let proc = ProcId::of_fd(key);
            if alive[&proc] {
                continue;
            }
            let until = self.procs.get(proc).and_then(|p| p.exited_ns).unwrap_or(now);
            let held = self.held_fd(key, entry, until, tcp.get(key, entry));
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
        let owners: HashSet<ProcId> = entries.iter().map(|(k, _)| ProcId::of_fd(k)).collect();
        taken_socks.extend(
            socks
                .iter()
                .filter(|(_, s)| {
                    let owner = ProcId { tgid: s.tgid, gen: s.gen };
                    !owners.contains(&owner) && !self.kernel.runs(owner)
                })
                .map(|(sk, _)| *sk),
        );
        self.kernel.remove_tcp_socks(&taken_socks)?;
        Ok(())
    }

    /// Moves the mappings of processes that ended into the aggregate.
    fn harvest_mappings(&mut self, now: u64) {
        for proc in self.mappings.procs() {
            if self.is_live(proc) {
                continue;
            }
            let until = self.procs.get(proc).and_then(|p| p.exited_ns).unwrap_or(now);
            for held in self.take_mappings(proc, until) {
                self.agg.add(held);
            }
        }
    }

    /// Drops what processes the filter left out acquired before it judged
    /// them, and forgets those that are gone.
    fn drop_filtered(&mut self, entries: &mut Entries) -> Result<(), KernelError> {
        let filtered = &self.filtered;
        let (dropped, kept): (Vec<_>, Vec<_>) =
            std::mem::take(entries).into_iter().partition(|(k, _)| filtered.contains(&ProcId::of_fd(k)));
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
        self.filtered.retain(|p| kernel.runs(*p));
        Ok(())
    }

    /// Forgets the history of processes that are gone (or filtered out),
    /// and the symbols of code no process runs any more: the daemon
    /// reported them while they were there, and a busy host's short-lived
    /// processes must not fill its memory.
    pub(crate) fn forget_gone(&mut self) {
        self.resolver.trim();
        let mut live: HashMap<ProcId, bool> = HashMap::new();
        let (kernel, filtered, exited) = (&self.kernel, &self.filtered, &self.exited);
        self.history.retain(|key| {
            key.owner.is_none_or(|p| {
                *live.entry(p).or_insert_with(|| !filtered.contains(&p) && !exited.contains(&p) && kernel.runs(p))
            })
        });
    }

    /// Deletes kernel stacks that no entry has referenced for two sweeps in a
    /// row (one sweep could race with an acquisition that just found the stack).
    /// Only done past half capacity, so short sessions never lose a stack.
    pub(super) fn free_stacks(&mut self, entries: &Entries) -> Result<(), KernelError> {
        let ids = self.kernel.stack_ids()?;
        let capacity = self.kernel.capacities().stacks;
        self.kernel_maps.stacks = super::MapUse { used: ids.len() as u64, capacity: capacity.into() };
        if (ids.len() as u64) * 2 < u64::from(capacity) {
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
}
