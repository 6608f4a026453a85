//! CFI unwinding tables: what userspace computes from each module's
//! `.eh_frame` and the programs use to unwind code without frame pointers.
//!
//! x86_64 only. For every instruction address a row says where the caller's
//! frame starts (the CFA: rsp or rbp plus an offset), where rbp was saved,
//! and whether this is the outermost frame. The return address is always at
//! CFA-8 on x86_64 (System V ABI), so it needs no column.

/// One row of a module's table, valid from `pc` to the next row's `pc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UnwindRow {
    /// Address relative to the module's lowest loaded virtual address.
    pub pc: u32,
    pub cfa_offset: i32,
    /// Where rbp was saved, relative to the CFA (with [`RBP_SAVED`]).
    pub rbp_offset: i16,
    /// `CFA_RBP`, `RBP_SAVED`, `END`, `NO_INFO` bits.
    pub kind: u8,
    pub _pad: u8,
    /// Array maps store values 8-byte aligned (kernel/bpf/arraymap.c,
    /// `round_up(value_size, 8)`); the memory-mapped rows must have that stride.
    pub _reserved: u32,
}
const _: () = assert!(core::mem::size_of::<UnwindRow>() == 16);

/// CFA = rbp + cfa_offset (otherwise rsp + cfa_offset).
pub const CFA_RBP: u8 = 1;
/// The caller's rbp is at CFA + rbp_offset (otherwise rbp is unchanged).
pub const RBP_SAVED: u8 = 2;
/// The return address is undefined: the outermost frame (`_start`, a
/// thread's start). A stack that gets here is complete.
pub const END: u8 = 4;
/// No usable rule: between functions, or a rule the programs cannot follow
/// (CFA expressions). Unwinding stops and the stack is marked truncated.
pub const NO_INFO: u8 = 8;

/// One executable mapping of a process, with its module's rows.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ModuleMapping {
    pub start: u64,
    pub end: u64,
    /// `ip - bias` is the row address (`UnwindRow::pc`) of `ip`.
    pub bias: u64,
    /// Index of the module's first row in the rows array.
    pub rows_start: u32,
    /// 0 when the module has no CFI (Go, JIT code): frame pointers are used.
    pub rows_len: u32,
    /// Index of the module's first bucket in the buckets array.
    pub buckets_start: u32,
    /// Buckets of the module, the last one a sentinel (see [`buckets`]).
    pub buckets_len: u32,
}
const _: () = assert!(core::mem::size_of::<ModuleMapping>() == 40);

/// Executable mappings kept per process; more are not unwound with CFI.
pub const MAX_MAPPINGS: usize = 64;

/// Value of the per-process mappings map, keyed by tgid.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcMappings {
    /// The image these mappings belong to (see `ProcState::exec_seq`).
    pub exec_seq: u32,
    pub count: u32,
    /// Sorted by `start`, not overlapping.
    pub mappings: [ModuleMapping; MAX_MAPPINGS],
}
const _: () = assert!(core::mem::size_of::<ProcMappings>() == 8 + 40 * MAX_MAPPINGS);

impl Default for ProcMappings {
    fn default() -> Self {
        ProcMappings { exec_seq: 0, count: 0, mappings: [ModuleMapping::default(); MAX_MAPPINGS] }
    }
}

crate::user_pod!(UnwindRow, ModuleMapping, ProcMappings);

/// Code bytes per bucket: a bucket narrows the search for a pc to the rows
/// that start within its 256 bytes (at most 256, usually a few).
pub const BUCKET_SHIFT: u32 = 8;

/// The bucket index of a module: for bucket `b`, the row covering the
/// bucket's first byte (or 0); one more entry past the last bucket. The rows
/// covering any pc of bucket `b` lie in `buckets[b]..=buckets[b + 1]`.
pub fn buckets(rows: &[UnwindRow]) -> alloc_free::Buckets<'_> {
    alloc_free::Buckets { rows, next: 0 }
}

/// Buckets as an iterator, so the no_std crate needs no allocation.
pub mod alloc_free {
    use super::{find_row, UnwindRow, BUCKET_SHIFT};

    pub struct Buckets<'a> {
        pub(super) rows: &'a [UnwindRow],
        pub(super) next: u64,
    }

    impl Iterator for Buckets<'_> {
        type Item = u32;

        fn next(&mut self) -> Option<u32> {
            let last = self.rows.last()?;
            let count = (u64::from(last.pc) >> BUCKET_SHIFT) + 2;
            if self.next >= count {
                return None;
            }
            let start = (self.next << BUCKET_SHIFT).min(u64::from(u32::MAX)) as u32;
            self.next += 1;
            Some(find_row(self.rows, start).unwrap_or(0) as u32)
        }
    }
}

/// [`find_row`] narrowed by the module's buckets, as the programs search.
pub fn find_row_bucketed(rows: &[UnwindRow], buckets: &[u32], pc: u32) -> Option<usize> {
    let b = (pc >> BUCKET_SHIFT) as usize;
    let last = buckets.len().checked_sub(1)?;
    let lo = buckets[b.min(last)] as usize;
    let hi = (buckets[(b + 1).min(last)] as usize + 1).min(rows.len());
    let within = find_row(rows.get(lo..hi)?, pc)?;
    Some(lo + within)
}

/// Index of the row covering `pc` among `rows` (sorted by pc): the last row
/// whose pc is not above it.
pub fn find_row(rows: &[UnwindRow], pc: u32) -> Option<usize> {
    let (mut lo, mut hi) = (0usize, rows.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if rows[mid].pc <= pc {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo.checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pc: u32) -> UnwindRow {
        UnwindRow { pc, ..Default::default() }
    }

    #[test]
    fn buckets_narrow_the_search_to_the_same_row() {
        extern crate std;
        use std::vec::Vec;
        // Rows at irregular pcs over a few buckets, including empty buckets.
        let pcs = [0x10u32, 0x20, 0x130, 0x1ff, 0x200, 0x2f0, 0x700, 0x701, 0x800];
        let rows: Vec<UnwindRow> = pcs.iter().map(|&pc| row(pc)).collect();
        let buckets: Vec<u32> = buckets(&rows).collect();
        assert_eq!(buckets.len(), (0x800 >> BUCKET_SHIFT) + 2);
        for pc in 0..0x900u32 {
            assert_eq!(find_row_bucketed(&rows, &buckets, pc), find_row(&rows, pc), "pc {pc:#x}");
        }
    }

    #[test]
    fn finds_the_covering_row() {
        let rows = [row(0x10), row(0x20), row(0x30)];
        assert_eq!(find_row(&rows, 0x0f), None);
        assert_eq!(find_row(&rows, 0x10), Some(0));
        assert_eq!(find_row(&rows, 0x1f), Some(0));
        assert_eq!(find_row(&rows, 0x20), Some(1));
        assert_eq!(find_row(&rows, 0x1000), Some(2));
        assert_eq!(find_row(&[], 5), None);
    }
}
