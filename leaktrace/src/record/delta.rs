//! What changed in the outstanding set between two checkpoints of a
//! recording: the acquisitions that appeared (written with their stacks)
//! and those that went (released, or gone with their process). Pure.
//!
//! A recording holds what a checkpoint saw, not every call: a pair that
//! opens and closes between two checkpoints never reaches the file, which
//! keeps the recorder's cost bounded whatever the acquisition rate.

// foldhash rather than the default SipHash: these sets hold every
// outstanding acquisition and are rebuilt at every checkpoint, and their
// keys come from the kernel, not from an attacker choosing collisions.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

/// One acquisition over its life: its process instance, its fd or mapping
/// address, and when it was acquired (an fd number is reused; this is not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AcqId {
    pub tgid: u32,
    pub gen: u64,
    pub slot: u64,
    pub acquired_ns: u64,
    /// Mappings: the bytes still mapped. A partial unmap makes the mapping
    /// a new acquisition (same call, fewer bytes) and releases the old one,
    /// so the recording follows it; 0 for fds.
    pub bytes: u64,
}

/// The acquisitions written so far and still held, with their row ids.
pub(crate) struct Tracker {
    rows: HashMap<AcqId, i64>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker { rows: HashMap::new() }
    }
}

/// One checkpoint's changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Delta {
    /// Held now, not written yet.
    pub new: Vec<AcqId>,
    /// Written before, not held any more: their rows.
    pub gone: Vec<(AcqId, i64)>,
}

impl Tracker {
    /// Compares what is held now with what was written and still held.
    pub(crate) fn step(&mut self, now: &[AcqId]) -> Delta {
        let mut held: HashSet<&AcqId> = HashSet::with_capacity(now.len());
        held.extend(now);
        let mut gone: Vec<(AcqId, i64)> =
            self.rows.iter().filter(|(id, _)| !held.contains(id)).map(|(id, row)| (*id, *row)).collect();
        gone.sort();
        for (id, _) in &gone {
            self.rows.remove(id);
        }
        let mut new: Vec<AcqId> = now.iter().filter(|id| !self.rows.contains_key(id)).copied().collect();
        new.sort();
        new.dedup();
        Delta { new, gone }
    }

    /// Records that `id` was written as row `row`.
    pub(crate) fn written(&mut self, id: AcqId, row: i64) {
        self.rows.insert(id, row);
    }

    /// Acquisitions written and still held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(fd: u64, at: u64) -> AcqId {
        AcqId { tgid: 10, gen: 1, slot: fd, acquired_ns: at, bytes: 0 }
    }

    #[test]
    fn new_and_gone_acquisitions_between_checkpoints() {
        let mut t = Tracker::default();
        let first = t.step(&[id(3, 100), id(4, 110)]);
        assert_eq!(first.new, vec![id(3, 100), id(4, 110)]);
        assert!(first.gone.is_empty());
        t.written(id(3, 100), 1);
        t.written(id(4, 110), 2);
        // fd 3 closed and opened again: a new acquisition in the same slot.
        let second = t.step(&[id(3, 250), id(4, 110)]);
        assert_eq!(second.new, vec![id(3, 250)]);
        assert_eq!(second.gone, vec![(id(3, 100), 1)]);
        t.written(id(3, 250), 3);
        assert_eq!(t.len(), 2);
        // The process exited: everything goes.
        let third = t.step(&[]);
        assert_eq!(third.gone, vec![(id(3, 250), 3), (id(4, 110), 2)]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_process_instance_is_not_its_pid() {
        let mut t = Tracker::default();
        t.step(&[id(3, 100)]);
        t.written(id(3, 100), 1);
        let reused = AcqId { gen: 2, ..id(3, 100) };
        let d = t.step(&[reused]);
        assert_eq!(d.new, vec![reused]);
        assert_eq!(d.gone, vec![(id(3, 100), 1)]);
    }
}
