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
pub struct PidBitmap {
    map: Mapped,
    words: usize,
}

impl PidBitmap {
    pub fn map(fd: BorrowedFd<'_>, words: usize) -> std::io::Result<Self> {
        Ok(PidBitmap { map: Mapped::new(fd, words, 8)?, words })
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        debug_assert!(index < self.words);
        // SAFETY: in bounds of the live mapping, which is page (so 8-byte) aligned.
        unsafe { AtomicU64::from_ptr(self.map.ptr.as_ptr().cast::<u64>().add(index)) }
    }

    /// Returns false when the pid is beyond the bitmap (larger than pid_max).
    pub fn set(&self, pid: u32) -> bool {
        let index = (pid / 64) as usize;
        if index >= self.words {
            return false;
        }
        self.word(index).fetch_or(1 << (pid % 64), Ordering::SeqCst);
        true
    }

    pub fn clear_all(&self) {
        for index in 0..self.words {
            self.word(index).store(0, Ordering::SeqCst);
        }
    }

    pub fn contains(&self, pid: u32) -> bool {
        let index = (pid / 64) as usize;
        index < self.words && self.word(index).load(Ordering::SeqCst) & (1 << (pid % 64)) != 0
    }
}

// Values of a memory-mapped array are 8-byte aligned: the row size must be
// the stride the kernel uses, or rows land between the kernel's slots.
const _: () = assert!(std::mem::size_of::<UnwindRow>().is_multiple_of(8));

/// The programs' `UNWIND_ROWS`. Userspace only appends rows to parts no
/// process refers to yet, and publishes them afterwards through the
/// per-process mappings map, so the programs never read a half-written row.
pub struct RowsArray {
    map: Mapped,
    len: usize,
}

impl RowsArray {
    pub fn map(fd: BorrowedFd<'_>, len: usize) -> std::io::Result<Self> {
        Ok(RowsArray { map: Mapped::new(fd, len, std::mem::size_of::<UnwindRow>())?, len })
    }
}

impl RowSink for RowsArray {
    fn write(&mut self, start: u32, rows: &[UnwindRow]) -> std::io::Result<()> {
        let start = start as usize;
        if start + rows.len() > self.len {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        // SAFETY: in bounds (checked); UnwindRow is Pod with 4-byte alignment,
        // which the page-aligned mapping satisfies at every index.
        unsafe {
            let dst = self.map.ptr.as_ptr().cast::<UnwindRow>().add(start);
            std::ptr::copy_nonoverlapping(rows.as_ptr(), dst, rows.len());
        }
        Ok(())
    }
}

const _: () = {
    // RowsArray writes UnwindRow with plain copies.
    fn assert_pod<T: Pod>() {}
    let _ = assert_pod::<UnwindRow>;
};
