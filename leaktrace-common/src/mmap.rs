//! Memory mappings: what mmap, munmap and mremap do to a process's address
//! space, decided from a syscall's arguments and result.
//!
//! Unlike fds, mappings are ranges: an unmap may trim, split or span
//! mappings, MAP_FIXED may land on part of one, mremap resizes and moves.
//! Eviction of a range needs an ordered index of a process's mappings,
//! which eBPF maps do not provide, so every mapping operation of a traced
//! process travels to userspace as an event, stamped with the moment it
//! takes effect, and userspace keeps the ranges.

use crate::syscalls as sc;

pub const MAP_SHARED: u64 = 0x01;
pub const MAP_PRIVATE: u64 = 0x02;
pub const MAP_SHARED_VALIDATE: u64 = 0x03;
pub const MAP_TYPE: u64 = 0x0f;
pub const MAP_FIXED: u64 = 0x10;
pub const MAP_ANONYMOUS: u64 = 0x20;
pub const MAP_HUGETLB: u64 = 0x40000;
pub const MAP_FIXED_NOREPLACE: u64 = 0x100000;
/// MAP_HUGETLB's page size, as log2 in these bits (0: the default size).
pub const MAP_HUGE_SHIFT: u64 = 26;
pub const MAP_HUGE_MASK: u64 = 0x3f;

pub const MREMAP_MAYMOVE: u64 = 1;
pub const MREMAP_FIXED: u64 = 2;
pub const MREMAP_DONTUNMAP: u64 = 4;

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// The default huge page size on x86_64.
pub const HUGE_PAGE_SHIFT: u32 = 21;

/// What a mapping is, for reports.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapResource {
    /// Private anonymous memory (malloc arenas, buffers, thread stacks).
    Anon = 0,
    /// A file (private or shared): page cache, loaded libraries, data files.
    File = 1,
    /// Shared anonymous memory (shared with children across fork).
    Shared = 2,
}

impl MapResource {
    pub fn of(flags: u64) -> MapResource {
        let shared = matches!(flags & MAP_TYPE, MAP_SHARED | MAP_SHARED_VALIDATE);
        match (flags & MAP_ANONYMOUS != 0, shared) {
            (false, _) => MapResource::File,
            (true, true) => MapResource::Shared,
            (true, false) => MapResource::Anon,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MapResource::Anon => "anon",
            MapResource::File => "file",
            MapResource::Shared => "shared",
        }
    }
}

/// log2 of the page size a mapping with these mmap flags is made of.
pub fn page_shift(flags: u64) -> u32 {
    if flags & MAP_HUGETLB == 0 {
        return PAGE_SHIFT;
    }
    match ((flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK) as u32 {
        0 => HUGE_PAGE_SHIFT,
        shift => shift,
    }
}

/// `len` rounded up to whole pages of `1 << shift` bytes, as the kernel
/// maps and unmaps; `None` when it overflows.
pub fn round_up(len: u64, shift: u32) -> Option<u64> {
    let page = 1u64.checked_shl(shift)?;
    let rounded = len.checked_add(page - 1)? & !(page - 1);
    Some(rounded)
}

/// An operation as the call starts: its effect on existing mappings must be
/// ordered before anything another thread maps into the freed range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryOp {
    Nothing,
    /// munmap: `[start, start + len)` is released (len in bytes as passed).
    Unmap {
        start: u64,
        len: u64,
    },
    /// mremap starts: the old range is taken out of the address space.
    RemapStart {
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    },
}

/// What a syscall does to mappings, from its number and arguments at entry.
// Inlined: called out of line, LLVM may keep values in argument registers
// across the call, which the eBPF verifier rejects.
#[inline(always)]
pub fn classify_entry(nr: u64, args: &[u64; 6]) -> EntryOp {
    match nr {
        // munmap fails (EINVAL) for an unaligned start or a zero length, and
        // then unmaps nothing: only calls that can succeed are sent.
        sc::MUNMAP if args[0] & (PAGE_SIZE - 1) == 0 && args[1] != 0 => EntryOp::Unmap { start: args[0], len: args[1] },
        sc::MREMAP if args[0] & (PAGE_SIZE - 1) == 0 => {
            EntryOp::RemapStart { old: args[0], old_len: args[1], new_len: args[2], flags: args[3], new_addr: args[4] }
        }
        _ => EntryOp::Nothing,
    }
}

/// An operation as the call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitOp {
    Nothing,
    /// mmap succeeded: `[start, start + len)` is a new mapping.
    Map {
        start: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: i32,
    },
    /// mremap finished, with its result (an address, or an error).
    RemapDone {
        result: i64,
    },
}

/// What a syscall did to mappings, from its number, arguments and result.
// Inlined: called out of line, LLVM may keep values in argument registers
// across the call, which the eBPF verifier rejects.
#[inline(always)]
pub fn classify_exit(nr: u64, args: &[u64; 6], ret: i64) -> ExitOp {
    match nr {
        sc::MMAP if !sc::is_error(ret) => ExitOp::Map {
            start: ret as u64,
            len: args[1],
            prot: args[2],
            flags: args[3],
            fd: if args[3] & MAP_ANONYMOUS != 0 { -1 } else { args[4] as i32 },
        },
        sc::MREMAP => ExitOp::RemapDone { result: ret },
        _ => ExitOp::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[u64]) -> [u64; 6] {
        let mut out = [0; 6];
        out[..a.len()].copy_from_slice(a);
        out
    }

    #[test]
    fn resources_from_flags() {
        assert_eq!(MapResource::of(MAP_PRIVATE | MAP_ANONYMOUS), MapResource::Anon);
        assert_eq!(MapResource::of(MAP_SHARED | MAP_ANONYMOUS), MapResource::Shared);
        assert_eq!(MapResource::of(MAP_SHARED_VALIDATE | MAP_ANONYMOUS), MapResource::Shared);
        assert_eq!(MapResource::of(MAP_PRIVATE), MapResource::File);
        assert_eq!(MapResource::of(MAP_SHARED), MapResource::File);
    }

    #[test]
    fn lengths_round_to_pages() {
        assert_eq!(round_up(1, PAGE_SHIFT), Some(4096));
        assert_eq!(round_up(4096, PAGE_SHIFT), Some(4096));
        assert_eq!(round_up(4097, PAGE_SHIFT), Some(8192));
        assert_eq!(round_up(u64::MAX, PAGE_SHIFT), None);
        assert_eq!(page_shift(MAP_PRIVATE | MAP_ANONYMOUS), 12);
        assert_eq!(page_shift(MAP_HUGETLB), 21);
        assert_eq!(page_shift(MAP_HUGETLB | (30 << MAP_HUGE_SHIFT)), 30);
        assert_eq!(round_up(100, page_shift(MAP_HUGETLB)), Some(2 << 20));
    }

    #[test]
    fn munmap_that_cannot_succeed_is_nothing() {
        assert_eq!(classify_entry(sc::MUNMAP, &args(&[0x1000, 10])), EntryOp::Unmap { start: 0x1000, len: 10 });
        assert_eq!(classify_entry(sc::MUNMAP, &args(&[0x1001, 10])), EntryOp::Nothing);
        assert_eq!(classify_entry(sc::MUNMAP, &args(&[0x1000, 0])), EntryOp::Nothing);
        assert_eq!(classify_entry(sc::CLOSE, &args(&[3])), EntryOp::Nothing);
    }

    #[test]
    fn mremap_at_both_ends() {
        let a = args(&[0x10000, 8192, 16384, MREMAP_MAYMOVE, 0]);
        assert_eq!(
            classify_entry(sc::MREMAP, &a),
            EntryOp::RemapStart { old: 0x10000, old_len: 8192, new_len: 16384, flags: MREMAP_MAYMOVE, new_addr: 0 }
        );
        assert_eq!(classify_exit(sc::MREMAP, &a, 0x20000), ExitOp::RemapDone { result: 0x20000 });
        assert_eq!(classify_exit(sc::MREMAP, &a, -12), ExitOp::RemapDone { result: -12 });
    }

    #[test]
    fn mmap_results() {
        let anon = args(&[0, 100, 3, MAP_PRIVATE | MAP_ANONYMOUS, u64::MAX, 0]);
        assert_eq!(
            classify_exit(sc::MMAP, &anon, 0x7f00_0000_0000),
            ExitOp::Map { start: 0x7f00_0000_0000, len: 100, prot: 3, flags: MAP_PRIVATE | MAP_ANONYMOUS, fd: -1 }
        );
        assert_eq!(classify_exit(sc::MMAP, &anon, -12), ExitOp::Nothing);
        let file = args(&[0, 4096, 1, MAP_SHARED, 5, 0]);
        assert!(matches!(classify_exit(sc::MMAP, &file, 0x1000), ExitOp::Map { fd: 5, .. }));
    }
}
