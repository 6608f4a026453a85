//! The mapped ranges of one traced process, kept from its mmap, munmap and
//! mremap events: an ordered map of pieces, each belonging to the
//! acquisition (the mmap call) that created it.
//!
//! Every operation carries the moment it took effect and applies only to
//! pieces that were in place before it: a munmap stamped at its start does
//! not touch what another thread mapped into the freed range afterwards,
//! even if that mapping's event was read first.

use std::collections::{BTreeMap, HashMap};

use leaktrace_common::mmap::{round_up, MapResource, MREMAP_DONTUNMAP, PAGE_SHIFT};

/// One mmap call and what is left of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Acquisition {
    pub stack_id: u64,
    pub exec_seq: u32,
    pub tid: u32,
    pub acquired_ns: u64,
    pub prot: u32,
    pub flags: u32,
    pub resource: MapResource,
    pub page_shift: u32,
    /// The mapped file, when known.
    pub path: Option<String>,
    /// Bytes still mapped, over all its pieces.
    pub bytes: u64,
    /// Its pieces (a munmap in the middle makes two).
    pub regions: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    end: u64,
    acq: u64,
    /// When the piece got its current place: its mmap, or the mremap that
    /// moved it.
    since_ns: u64,
}

/// An mremap between its start and its return, per thread.
#[derive(Clone, Debug)]
struct Move {
    at_ns: u64,
    old: u64,
    old_len: u64,
    new_len: u64,
    flags: u64,
    /// (offset from `old`, length, acquisition, since) of what left.
    pieces: Vec<(u64, u64, u64, u64)>,
    /// For an old length of 0 (a second mapping of shared memory): the
    /// acquisition the old address belongs to.
    source: Option<u64>,
}

/// What an operation did, for the session's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    pub bytes_mapped: u64,
    pub bytes_unmapped: u64,
    /// Acquisitions whose last byte went.
    pub released: u64,
}

impl Change {
    pub(crate) fn add(&mut self, other: Change) {
        self.bytes_mapped += other.bytes_mapped;
        self.bytes_unmapped += other.bytes_unmapped;
        self.released += other.released;
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct AddressSpace {
    pieces: BTreeMap<u64, Piece>,
    acqs: HashMap<u64, Acquisition>,
    moves: HashMap<u32, Move>,
    next_id: u64,
    /// Acquisitions whose bytes reached 0 during the current operation.
    emptied: Vec<u64>,
}

/// An acquisition still holding bytes, with where its pieces are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeldMapping<'a> {
    pub acquisition: &'a Acquisition,
    /// The lowest address it still holds.
    pub address: u64,
}

impl AddressSpace {
    pub(crate) fn pieces(&self) -> usize {
        self.pieces.len()
    }

    /// The stack ids of its acquisitions.
    pub(crate) fn stack_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.acqs.values().map(|a| a.stack_id)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.acqs.is_empty() && self.moves.is_empty()
    }

    /// A new mapping `[start, start + len)` (len as passed to mmap), made at
    /// `acq.acquired_ns`: whatever older pieces it lands on are released
    /// (MAP_FIXED). Returns its id, or `None` for an impossible length.
    pub(crate) fn map(&mut self, start: u64, len: u64, mut acq: Acquisition) -> (Option<u64>, Change) {
        let Some(len) = round_up(len, acq.page_shift) else {
            return (None, Change::default());
        };
        let Some(end) = start.checked_add(len) else {
            return (None, Change::default());
        };
        let at_ns = acq.acquired_ns;
        let mut change = self.release(start, end, at_ns);
        let id = self.next_id;
        self.next_id += 1;
        acq.bytes = 0;
        acq.regions = 0;
        self.acqs.insert(id, acq);
        change.add(self.insert(start, end, id, at_ns));
        change.released += self.drop_empty();
        (Some(id), change)
    }

    /// munmap of `[start, start + len)` stamped `at_ns`.
    pub(crate) fn unmap(&mut self, start: u64, len: u64, at_ns: u64) -> Change {
        let Some(end) = round_up(len, PAGE_SHIFT).and_then(|len| start.checked_add(len)) else {
            return Change::default();
        };
        self.release(start, end, at_ns)
    }

    /// exec: the whole address space goes.
    pub(crate) fn exec(&mut self, at_ns: u64) -> Change {
        // Pieces an mremap took out go with the address space.
        for m in std::mem::take(&mut self.moves).into_values() {
            self.emptied.extend(m.pieces.iter().map(|p| p.2).chain(m.source));
        }
        self.release(0, u64::MAX, at_ns)
    }

    /// mremap starts on thread `tid`: the old range leaves its place.
    pub(crate) fn remap_start(
        &mut self,
        tid: u32,
        at_ns: u64,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
    ) -> Change {
        let (Some(old_len), Some(new_len)) = (round_up(old_len, PAGE_SHIFT), round_up(new_len, PAGE_SHIFT)) else {
            return Change::default();
        };
        let source = if old_len == 0 { self.piece_at(old).map(|(_, p)| p.acq) } else { None };
        // Taken out, not released: the bytes come back at the return.
        let pieces = match old.checked_add(old_len) {
            Some(old_end) if old_len > 0 => self
                .cut(old, old_end, at_ns)
                .into_iter()
                .map(|(start, end, piece)| (start - old, end - start, piece.acq, piece.since_ns))
                .collect(),
            _ => Vec::new(),
        };
        self.moves.insert(tid, Move { at_ns, old, old_len, new_len, flags, pieces, source });
        Change::default()
    }

    /// mremap returns on thread `tid` with `result` (an address or -errno),
    /// stamped `at_ns`.
    pub(crate) fn remap_done(&mut self, tid: u32, at_ns: u64, result: i64) -> Change {
        let Some(m) = self.moves.remove(&tid) else {
            return Change::default();
        };
        let mut change = Change::default();
        if leaktrace_common::syscalls::is_error(result) {
            // Nothing moved: the pieces go back where they were.
            for (offset, len, acq, since) in m.pieces {
                change.add(self.insert(m.old + offset, m.old + offset + len, acq, since));
            }
            // Put back, not mapped anew.
            change.bytes_mapped = 0;
            change.released += self.drop_empty();
            return change;
        }
        let new = result as u64;
        let Some(new_end) = new.checked_add(m.new_len) else {
            return change;
        };
        // A fixed target replaced whatever was there before the call. (Empty
        // acquisitions are dropped at the end: the moving ones are empty now.)
        for (s, e, _) in self.cut(new, new_end, m.at_ns) {
            change.bytes_unmapped += e - s;
        }
        if m.old_len == 0 {
            if let Some(acq) = m.source.filter(|a| self.acqs.contains_key(a)) {
                change.add(self.insert(new, new_end, acq, at_ns));
            }
            change.released += self.drop_empty();
            return change;
        }
        let keep_old = m.flags & MREMAP_DONTUNMAP != 0;
        for &(offset, len, acq, since) in &m.pieces {
            if keep_old {
                let mut back = self.insert(m.old + offset, m.old + offset + len, acq, since);
                back.bytes_mapped = 0;
                change.add(back);
            }
            // A shrink drops what lies past the new length.
            let end = (offset + len).min(m.new_len);
            if offset < end {
                let mut moved = self.insert(new + offset, new + end, acq, at_ns);
                // Moved bytes are not new, unless the old ones stayed.
                if !keep_old {
                    moved.bytes_mapped = 0;
                }
                change.add(moved);
            }
            change.bytes_unmapped += len - end.saturating_sub(offset);
        }
        // A growth belongs to the acquisition that held the old range's end.
        let last = m.pieces.iter().find(|(offset, len, _, _)| offset + len == m.old_len);
        if let Some(&(_, _, acq, _)) = last.filter(|_| m.new_len > m.old_len) {
            change.add(self.insert(new + m.old_len, new_end, acq, at_ns));
        }
        change.released += self.drop_empty();
        change
    }

    /// Acquisitions still holding bytes (mremaps in flight put back first:
    /// the process is gone before they returned).
    pub(crate) fn held(&mut self) -> Vec<HeldMapping<'_>> {
        let tids: Vec<u32> = self.moves.keys().copied().collect();
        for tid in tids {
            self.remap_done(tid, 0, -1);
        }
        let mut lowest: HashMap<u64, u64> = HashMap::new();
        for (&start, piece) in &self.pieces {
            lowest.entry(piece.acq).or_insert(start);
        }
        let mut held: Vec<HeldMapping<'_>> = self
            .acqs
            .iter()
            .filter(|(_, a)| a.bytes > 0)
            .filter_map(|(id, acquisition)| Some(HeldMapping { acquisition, address: *lowest.get(id)? }))
            .collect();
        held.sort_by_key(|h| h.address);
        held
    }

    /// Whether a file acquisition has no path yet.
    pub(crate) fn has_unnamed_files(&self) -> bool {
        self.acqs.values().any(|a| a.resource == MapResource::File && a.path.is_none())
    }

    /// Sets the path of file acquisitions that have none, from the
    /// process's file mappings (sorted by start).
    pub(crate) fn name_files(&mut self, files: &[(u64, u64, String)]) {
        for (&start, piece) in &self.pieces {
            let Some(acq) = self.acqs.get_mut(&piece.acq) else { continue };
            if acq.path.is_some() || acq.resource != MapResource::File {
                continue;
            }
            let i = files.partition_point(|(_, end, _)| *end <= start);
            if let Some((s, _, path)) = files.get(i) {
                if *s <= start {
                    acq.path = Some(path.clone());
                }
            }
        }
    }

    fn piece_at(&self, addr: u64) -> Option<(u64, Piece)> {
        let (&start, piece) = self.pieces.range(..=addr).next_back()?;
        (addr < piece.end).then_some((start, *piece))
    }

    /// Releases the parts of pieces older than `at_ns` that overlap
    /// `[start, end)`.
    fn release(&mut self, start: u64, end: u64, at_ns: u64) -> Change {
        let mut change = Change::default();
        for (s, e, _) in self.cut(start, end, at_ns) {
            change.bytes_unmapped += e - s;
        }
        change.released += self.drop_empty();
        change
    }

    /// Removes the parts of pieces older than `at_ns` overlapping `[start,
    /// end)`, keeping what lies outside; returns the removed parts.
    fn cut(&mut self, start: u64, end: u64, at_ns: u64) -> Vec<(u64, u64, Piece)> {
        if start >= end {
            return Vec::new();
        }
        // The piece starting before `start` may reach into the range.
        let first = self.pieces.range(..start).next_back().filter(|(_, p)| p.end > start).map(|(s, _)| *s);
        let overlapping: Vec<(u64, Piece)> = first
            .into_iter()
            .map(|s| (s, self.pieces[&s]))
            .chain(self.pieces.range(start..end).map(|(s, p)| (*s, *p)))
            .filter(|(_, p)| p.since_ns < at_ns)
            .collect();
        let mut removed = Vec::new();
        for (s, piece) in overlapping {
            self.pieces.remove(&s);
            let (cut_start, cut_end) = (s.max(start), piece.end.min(end));
            // The whole piece leaves; what lies outside the range comes back.
            if let Some(acq) = self.acqs.get_mut(&piece.acq) {
                acq.bytes -= piece.end - s;
                acq.regions -= 1;
                if acq.bytes == 0 {
                    self.emptied.push(piece.acq);
                }
            }
            if s < cut_start {
                self.put_back(s, cut_start, piece.acq, piece.since_ns);
            }
            if cut_end < piece.end {
                self.put_back(cut_end, piece.end, piece.acq, piece.since_ns);
            }
            removed.push((cut_start, cut_end, piece));
        }
        removed
    }

    /// Places a piece of an acquisition. Anything still there is evicted:
    /// an address holds one mapping, and what is there is stale (a release
    /// whose event told of a range that was not mapped yet when it was
    /// stamped).
    fn insert(&mut self, start: u64, end: u64, acq: u64, since_ns: u64) -> Change {
        let mut change = Change::default();
        for (s, e, _) in self.cut(start, end, u64::MAX) {
            change.bytes_unmapped += e - s;
        }
        if self.acqs.contains_key(&acq) {
            change.bytes_mapped += end - start;
        }
        self.put_back(start, end, acq, since_ns);
        change
    }

    /// Places a piece, joined to adjacent pieces of the same acquisition (a
    /// growth in place, a hole filled again), as the kernel joins them.
    fn put_back(&mut self, start: u64, end: u64, acq: u64, since_ns: u64) {
        let Some(a) = self.acqs.get_mut(&acq) else { return };
        a.bytes += end - start;
        let mut piece = Piece { end, acq, since_ns };
        let mut start = start;
        let mut joined = 0;
        if let Some((&prev_start, prev)) = self.pieces.range(..start).next_back() {
            if prev.end == start && prev.acq == acq {
                piece.since_ns = piece.since_ns.max(prev.since_ns);
                start = prev_start;
                joined += 1;
            }
        }
        if let Some(next) = self.pieces.get(&end).copied().filter(|n| n.acq == acq) {
            self.pieces.remove(&end);
            piece.end = next.end;
            piece.since_ns = piece.since_ns.max(next.since_ns);
            joined += 1;
        }
        a.regions = a.regions + 1 - joined;
        self.pieces.insert(start, piece);
    }

    /// Forgets acquisitions left without bytes by this operation (not those
    /// an mremap in flight holds); returns how many.
    fn drop_empty(&mut self) -> u64 {
        let mut dropped = 0;
        for id in std::mem::take(&mut self.emptied) {
            let in_flight = || self.moves.values().any(|m| m.source == Some(id) || m.pieces.iter().any(|p| p.2 == id));
            if self.acqs.get(&id).is_some_and(|a| a.bytes == 0) && !in_flight() {
                self.acqs.remove(&id);
                dropped += 1;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktrace_common::mmap::{MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MREMAP_FIXED, MREMAP_MAYMOVE};

    const PAGE: u64 = 4096;
    #[allow(dead_code)]
    const _P: i64 = PAGE as i64;

    fn acq(at: u64, stack: u64) -> Acquisition {
        Acquisition {
            stack_id: stack,
            exec_seq: 1,
            tid: 1,
            acquired_ns: at,
            prot: 3,
            flags: (MAP_PRIVATE | MAP_ANONYMOUS) as u32,
            resource: MapResource::Anon,
            page_shift: PAGE_SHIFT,
            path: None,
            bytes: 0,
            regions: 0,
        }
    }

    /// (stack, bytes, regions) of every acquisition holding bytes.
    fn held(space: &mut AddressSpace) -> Vec<(u64, u64, u32)> {
        let mut out: Vec<(u64, u64, u32)> =
            space.held().iter().map(|h| (h.acquisition.stack_id, h.acquisition.bytes, h.acquisition.regions)).collect();
        out.sort();
        out
    }

    fn total(space: &mut AddressSpace) -> u64 {
        held(space).iter().map(|h| h.1).sum()
    }

    #[test]
    fn lengths_are_whole_pages() {
        let mut s = AddressSpace::default();
        let (_, c) = s.map(0x10000, 100, acq(1, 7));
        assert_eq!(c.bytes_mapped, PAGE);
        assert_eq!(held(&mut s), vec![(7, PAGE, 1)]);
    }

    #[test]
    fn a_whole_unmap_releases_the_acquisition() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 4 * PAGE, acq(1, 7));
        let c = s.unmap(0x10000, 4 * PAGE, 2);
        assert_eq!(c, Change { bytes_mapped: 0, bytes_unmapped: 4 * PAGE, released: 1 });
        assert!(held(&mut s).is_empty());
        assert!(s.is_empty());
    }

    #[test]
    fn trimming_the_tail_and_the_head() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 8 * PAGE, acq(1, 7));
        s.unmap(0x10000 + 6 * PAGE, 2 * PAGE, 2);
        assert_eq!(held(&mut s), vec![(7, 6 * PAGE, 1)]);
        s.unmap(0x10000, PAGE, 3);
        assert_eq!(held(&mut s), vec![(7, 5 * PAGE, 1)]);
        assert_eq!(s.held()[0].address, 0x10000 + PAGE);
    }

    #[test]
    fn unmapping_the_middle_splits_one_acquisition_in_two_regions() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 8 * PAGE, acq(1, 7));
        let c = s.unmap(0x10000 + 2 * PAGE, 3 * PAGE, 2);
        assert_eq!(c.bytes_unmapped, 3 * PAGE);
        assert_eq!(c.released, 0);
        assert_eq!(held(&mut s), vec![(7, 5 * PAGE, 2)]);
    }

    #[test]
    fn one_unmap_across_two_mappings() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 4 * PAGE, acq(1, 7));
        s.map(0x10000 + 4 * PAGE, 4 * PAGE, acq(2, 8));
        let c = s.unmap(0x10000 + 2 * PAGE, 4 * PAGE, 3);
        assert_eq!(c.bytes_unmapped, 4 * PAGE);
        assert_eq!(held(&mut s), vec![(7, 2 * PAGE, 1), (8, 2 * PAGE, 1)]);
        let c = s.unmap(0x10000, 8 * PAGE, 4);
        assert_eq!(c, Change { bytes_mapped: 0, bytes_unmapped: 4 * PAGE, released: 2 });
    }

    #[test]
    fn map_fixed_replaces_part_of_a_mapping() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 8 * PAGE, acq(1, 7));
        let mut fixed = acq(2, 8);
        fixed.flags |= MAP_FIXED as u32;
        let (_, c) = s.map(0x10000 + 2 * PAGE, 2 * PAGE, fixed);
        assert_eq!(c, Change { bytes_mapped: 2 * PAGE, bytes_unmapped: 2 * PAGE, released: 0 });
        assert_eq!(held(&mut s), vec![(7, 6 * PAGE, 2), (8, 2 * PAGE, 1)]);
    }

    #[test]
    fn operations_do_not_touch_what_was_mapped_after_them() {
        // Thread A's munmap starts at t=5; thread B then maps into the freed
        // range at t=6, and B's event is read before A's.
        let mut s = AddressSpace::default();
        s.map(0x10000, 4 * PAGE, acq(1, 7));
        s.map(0x10000, 4 * PAGE, acq(6, 8));
        assert_eq!(held(&mut s), vec![(8, 4 * PAGE, 1)], "the newer mapping replaced the stale one");
        let c = s.unmap(0x10000, 4 * PAGE, 5);
        assert_eq!(c.bytes_unmapped, 0);
        assert_eq!(held(&mut s), vec![(8, 4 * PAGE, 1)]);
    }

    #[test]
    fn mremap_grows_in_place_and_keeps_its_stack() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 2 * PAGE, acq(1, 7));
        s.remap_start(9, 2, 0x10000, 2 * PAGE, 5 * PAGE, 0);
        let c = s.remap_done(9, 3, 0x10000);
        assert_eq!(c.bytes_mapped, 3 * PAGE);
        assert_eq!(held(&mut s), vec![(7, 5 * PAGE, 1)], "one region, as the kernel joins it");
    }

    #[test]
    fn mremap_shrinks() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 8 * PAGE, acq(1, 7));
        s.remap_start(9, 2, 0x10000, 8 * PAGE, 3 * PAGE, 0);
        let c = s.remap_done(9, 3, 0x10000);
        assert_eq!(c.bytes_unmapped, 5 * PAGE);
        assert_eq!(total(&mut s), 3 * PAGE);
    }

    #[test]
    fn mremap_moves_and_grows() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 2 * PAGE, acq(1, 7));
        s.map(0x10000 + 2 * PAGE, PAGE, acq(1, 8));
        s.remap_start(9, 2, 0x10000, 2 * PAGE, 4 * PAGE, MREMAP_MAYMOVE);
        s.remap_done(9, 3, 0x80000);
        assert_eq!(held(&mut s), vec![(7, 4 * PAGE, 1), (8, PAGE, 1)]);
        assert_eq!(s.held().iter().find(|h| h.acquisition.stack_id == 7).map(|h| h.address), Some(0x80000));
        // The old place is free: unmapping it changes nothing.
        assert_eq!(s.unmap(0x10000, 2 * PAGE, 4).bytes_unmapped, 0);
        assert_eq!(s.unmap(0x80000, 4 * PAGE, 5), Change { bytes_mapped: 0, bytes_unmapped: 4 * PAGE, released: 1 });
    }

    #[test]
    fn mremap_to_a_fixed_place_replaces_what_was_there() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 2 * PAGE, acq(1, 7));
        s.map(0x80000, 4 * PAGE, acq(1, 8));
        s.remap_start(9, 2, 0x10000, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED);
        s.remap_done(9, 3, 0x80000 + PAGE as i64);
        assert_eq!(held(&mut s), vec![(7, 2 * PAGE, 1), (8, 2 * PAGE, 2)]);
    }

    #[test]
    fn a_failed_mremap_changes_nothing() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 2 * PAGE, acq(1, 7));
        s.remap_start(9, 2, 0x10000, 2 * PAGE, 64 * PAGE, 0);
        s.remap_done(9, 3, -12);
        assert_eq!(held(&mut s), vec![(7, 2 * PAGE, 1)]);
    }

    #[test]
    fn exec_releases_everything_before_it() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 2 * PAGE, acq(1, 7));
        s.map(0x20000, 2 * PAGE, acq(5, 8));
        let c = s.exec(3);
        assert_eq!(c.released, 1);
        assert_eq!(held(&mut s), vec![(8, 2 * PAGE, 1)]);
    }

    #[test]
    fn an_exec_during_an_mremap_forgets_it() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 2 * PAGE, acq(1, 7));
        s.remap_start(9, 2, 0x10000, 2 * PAGE, 4 * PAGE, MREMAP_MAYMOVE);
        let c = s.exec(3);
        assert_eq!(c.released, 1);
        assert!(s.is_empty());
    }

    #[test]
    fn an_mremap_cut_short_by_exit_is_put_back() {
        let mut s = AddressSpace::default();
        s.map(0x10000, 2 * PAGE, acq(1, 7));
        s.remap_start(9, 2, 0x10000, 2 * PAGE, 4 * PAGE, MREMAP_MAYMOVE);
        assert_eq!(held(&mut s), vec![(7, 2 * PAGE, 1)]);
    }

    #[test]
    fn file_mappings_are_named_from_the_process_maps() {
        let mut s = AddressSpace::default();
        let mut file = acq(1, 7);
        file.resource = MapResource::File;
        s.map(0x10000, 2 * PAGE, file);
        s.map(0x30000, PAGE, acq(1, 8));
        s.name_files(&[(0x10000, 0x12000, "/data/x".into()), (0x30000, 0x31000, "/other".into())]);
        let held = s.held();
        assert_eq!(held[0].acquisition.path.as_deref(), Some("/data/x"));
        assert_eq!(held[1].acquisition.path, None, "anonymous memory has no path");
    }
}
