//! The address spaces of all traced processes, fed by mapping events, with
//! the totals of the window and a bound on the regions kept.

use std::collections::HashMap;

use leaktrace_common::event::{MmapEvent, MremapStartEvent};
use leaktrace_common::mmap::{page_shift, MapResource};

use super::mmap::{Acquisition, AddressSpace, Change};
use crate::proc_id::ProcId;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// mmap calls seen.
    pub acquired: u64,
    /// Acquisitions whose last byte was unmapped (or went with an exec).
    pub released: u64,
    pub bytes_mapped: u64,
    pub bytes_unmapped: u64,
    /// mmap calls not kept: the region bound was reached.
    pub dropped: u64,
}

pub(crate) struct Mappings {
    spaces: HashMap<ProcId, AddressSpace>,
    totals: Totals,
    /// Regions kept over all processes, and the bound.
    regions: usize,
    max_regions: usize,
}

impl Mappings {
    pub(crate) fn new(max_regions: usize) -> Self {
        Mappings { spaces: HashMap::new(), totals: Totals::default(), regions: 0, max_regions }
    }

    pub(crate) fn totals(&self) -> Totals {
        self.totals
    }

    pub(crate) fn regions(&self) -> usize {
        self.regions
    }

    pub(crate) fn max_regions(&self) -> usize {
        self.max_regions
    }

    /// Applies `op` to `proc`'s space and keeps the counts.
    fn apply(&mut self, proc: ProcId, op: impl FnOnce(&mut AddressSpace) -> Change) {
        let space = self.spaces.entry(proc).or_default();
        let before = space.pieces();
        let change = op(space);
        let after = space.pieces();
        if space.is_empty() {
            self.spaces.remove(&proc);
        }
        self.regions = self.regions + after - before;
        self.totals.released += change.released;
        self.totals.bytes_mapped += change.bytes_mapped;
        self.totals.bytes_unmapped += change.bytes_unmapped;
    }

    /// A successful mmap; `path` is the mapped file when it could be read.
    pub(crate) fn mmap(&mut self, proc: ProcId, at_ns: u64, e: &MmapEvent, path: Option<String>) {
        self.totals.acquired += 1;
        if self.regions >= self.max_regions {
            self.totals.dropped += 1;
            return;
        }
        let flags = u64::from(e.flags);
        let acq = Acquisition {
            stack_id: e.stack_id,
            exec_seq: e.exec_seq,
            tid: e.tid,
            acquired_ns: at_ns,
            prot: e.prot,
            flags: e.flags,
            resource: MapResource::of(flags),
            page_shift: page_shift(flags),
            path,
            bytes: 0,
            regions: 0,
        };
        self.apply(proc, |space| space.map(e.start, e.len, acq).1);
    }

    pub(crate) fn munmap(&mut self, proc: ProcId, at_ns: u64, start: u64, len: u64) {
        if self.spaces.contains_key(&proc) {
            self.apply(proc, |space| space.unmap(start, len, at_ns));
        }
    }

    pub(crate) fn mremap_start(&mut self, proc: ProcId, at_ns: u64, e: &MremapStartEvent) {
        if self.spaces.contains_key(&proc) {
            self.apply(proc, |space| space.remap_start(e.tid, at_ns, e.old, e.old_len, e.new_len, u64::from(e.flags)));
        }
    }

    pub(crate) fn mremap_done(&mut self, proc: ProcId, at_ns: u64, tid: u32, result: i64) {
        if self.spaces.contains_key(&proc) {
            self.apply(proc, |space| space.remap_done(tid, at_ns, result));
        }
    }

    pub(crate) fn exec(&mut self, proc: ProcId, at_ns: u64) {
        if self.spaces.contains_key(&proc) {
            self.apply(proc, |space| space.exec(at_ns));
        }
    }

    /// Takes a process's space out (its process ended, or the window did).
    pub(crate) fn take(&mut self, proc: ProcId) -> Option<AddressSpace> {
        let space = self.spaces.remove(&proc)?;
        self.regions -= space.pieces();
        Some(space)
    }

    pub(crate) fn procs(&self) -> Vec<ProcId> {
        self.spaces.keys().copied().collect()
    }

    pub(crate) fn space_mut(&mut self, proc: ProcId) -> Option<&mut AddressSpace> {
        self.spaces.get_mut(&proc)
    }

    /// Stack ids the kept mappings refer to (the kernel must keep them).
    pub(crate) fn stack_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.spaces.values().flat_map(AddressSpace::stack_ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktrace_common::event::{EventHeader, KIND_MMAP};

    const P: ProcId = ProcId { tgid: 10, gen: 1 };

    fn mmap(start: u64, len: u64) -> MmapEvent {
        MmapEvent {
            header: EventHeader { kind: KIND_MMAP, tgid: 10, gen: 1, ts_ns: 0 },
            start,
            len,
            stack_id: 5,
            tid: 10,
            exec_seq: 1,
            prot: 3,
            flags: 0x22,
            fd: -1,
            _pad: 0,
        }
    }

    #[test]
    fn totals_follow_the_operations() {
        let mut m = Mappings::new(100);
        m.mmap(P, 1, &mmap(0x10000, 8192), None);
        m.mmap(P, 2, &mmap(0x20000, 4096), None);
        m.munmap(P, 3, 0x10000, 4096);
        m.munmap(P, 4, 0x20000, 4096);
        let t = m.totals();
        assert_eq!((t.acquired, t.released, t.bytes_mapped, t.bytes_unmapped), (2, 1, 12288, 8192));
        assert_eq!(m.regions(), 1);
        assert_eq!(m.stack_ids().collect::<Vec<_>>(), vec![5]);
        let mut space = m.take(P).expect("space");
        assert_eq!(space.held().len(), 1);
        assert_eq!(m.regions(), 0);
    }

    #[test]
    fn regions_are_bounded_and_drops_counted() {
        let mut m = Mappings::new(2);
        for i in 0..5 {
            m.mmap(P, i + 1, &mmap(0x10000 * (i + 1), 4096), None);
        }
        assert_eq!(m.regions(), 2);
        assert_eq!(m.totals().dropped, 3);
    }

    #[test]
    fn a_process_that_unmaps_everything_keeps_nothing() {
        let mut m = Mappings::new(10);
        m.mmap(P, 1, &mmap(0x10000, 4096), None);
        m.munmap(P, 2, 0x10000, 4096);
        assert!(m.procs().is_empty());
        // Unmapping what was never seen (mapped before tracing) costs nothing.
        m.munmap(P, 3, 0x50000, 4096);
        assert!(m.procs().is_empty());
    }
}
