//! Array maps shared with the programs through a memory mapping
//! (BPF_F_MMAPABLE): the traced-pid bitmap, changed with atomic operations on
//! both sides, and the unwinding rows, written in bulk by userspace.

use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use aya::Pod;
use leaktrace_common::unwind::UnwindRow;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::unwind::RowSink;

/// The value area of an array map, mapped into this process.
struct Mapped {
    ptr: NonNull<u8>,
    bytes: usize,
}

// SAFETY: the mapping is plain shared memory; the types built on it decide
// how it is accessed (atomics, or writes the programs only read).
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps an array map of `len` values of `value_size` bytes.
    fn new(fd: BorrowedFd<'_>, len: usize, value_size: usize) -> std::io::Result<Self> {
        let page = 4096usize;
        let bytes = (len * value_size).div_ceil(page) * page;
        let size = std::num::NonZeroUsize::new(bytes).ok_or(std::io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh shared mapping of the map's value area; nothing else
        // in this process aliases it.
        let ptr =
            unsafe { mmap(None, size, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, fd, 0) }
                .map_err(std::io::Error::from)?;
        Ok(Mapped { ptr: ptr.cast(), bytes })
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        let _ = unsafe { munmap(self.ptr.cast(), self.bytes) };
    }
}

/// One bit per pid, shared with the programs' `TRACED_PIDS`.
pub(super) struct PidBitmap {
    map: Mapped,
    words: usize,
}

impl PidBitmap {
    pub(super) fn map(fd: BorrowedFd<'_>, words: usize) -> std::io::Result<Self> {
        Ok(PidBitmap { map: Mapped::new(fd, words, 8)?, words })
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        debug_assert!(index < self.words);
        // SAFETY: in bounds of the live mapping, which is page (so 8-byte) aligned.
        unsafe { AtomicU64::from_ptr(self.map.ptr.as_ptr().cast::<u64>().add(index)) }
    }

    /// Returns false when the pid is beyond the bitmap (larger than pid_max).
    pub(super) fn set(&self, pid: u32) -> bool {
        let index = (pid / 64) as usize;
        if index >= self.words {
            return false;
        }
        self.word(index).fetch_or(1 << (pid % 64), Ordering::SeqCst);
        true
    }

    pub(super) fn clear_all(&self) {
        self.fill(0);
    }

    pub(super) fn set_all(&self) {
        self.fill(u64::MAX);
    }

    fn fill(&self, value: u64) {
        for index in 0..self.words {
            self.word(index).store(value, Ordering::SeqCst);
        }
    }

    pub(super) fn contains(&self, pid: u32) -> bool {
        let index = (pid / 64) as usize;
        index < self.words && self.word(index).load(Ordering::SeqCst) & (1 << (pid % 64)) != 0
    }
}

/// An array map of `T` written by userspace in bulk.
struct Table<T> {
    map: Mapped,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: Pod> Table<T> {
    /// Array maps store values at an 8-byte stride whatever their size
    /// (kernel/bpf/arraymap.c, `round_up(value_size, 8)`): a smaller `T`
    /// written back to back would land between the kernel's slots.
    const STRIDE_OK: () = assert!(std::mem::size_of::<T>().is_multiple_of(8));

    fn map(fd: BorrowedFd<'_>, len: usize) -> std::io::Result<Self> {
        #[allow(clippy::let_unit_value)]
        let () = Self::STRIDE_OK;
        Ok(Table { map: Mapped::new(fd, len, std::mem::size_of::<T>())?, len, _t: std::marker::PhantomData })
    }

    fn write(&mut self, start: u32, items: &[T]) -> std::io::Result<()> {
        let start = start as usize;
        if start + items.len() > self.len {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        // SAFETY: in bounds (checked); T is Pod and its size a multiple of the
        // kernel's 8-byte value stride (STRIDE_OK), so every index is aligned
        // in the page-aligned mapping and matches the kernel's slot.
        unsafe {
            let dst = self.map.ptr.as_ptr().cast::<T>().add(start);
            std::ptr::copy_nonoverlapping(items.as_ptr(), dst, items.len());
        }
        Ok(())
    }
}

/// The programs' `UNWIND_ROWS` and `UNWIND_BUCKETS`. Userspace only appends
/// to parts no process refers to yet, and publishes them afterwards through
/// the per-process mappings map, so the programs never read a half-written row.
pub(super) struct RowsArray {
    rows: Table<UnwindRow>,
    buckets: Table<u64>,
}

impl RowsArray {
    pub(super) fn map(rows: BorrowedFd<'_>, buckets: BorrowedFd<'_>, len: usize) -> std::io::Result<Self> {
        Ok(RowsArray { rows: Table::map(rows, len)?, buckets: Table::map(buckets, len)? })
    }
}

impl RowSink for RowsArray {
    fn write(&mut self, start: u32, rows: &[UnwindRow]) -> std::io::Result<()> {
        self.rows.write(start, rows)
    }

    fn write_buckets(&mut self, start: u32, buckets: &[u64]) -> std::io::Result<()> {
        self.buckets.write(start, buckets)
    }
}

const _: () = {
    // RowsArray writes UnwindRow with plain copies.
    fn assert_pod<T: Pod>() {}
    let _ = assert_pod::<UnwindRow>;
};
