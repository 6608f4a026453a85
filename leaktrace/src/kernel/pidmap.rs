//! The traced-pid bitmap, shared with the programs through a memory-mapped
//! array map so both sides change bits with atomic operations.

use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

pub struct PidBitmap {
    words: NonNull<u64>,
    len: usize,
    mapped_bytes: usize,
}

// SAFETY: the mapping is only accessed through atomics.
unsafe impl Send for PidBitmap {}
unsafe impl Sync for PidBitmap {}

impl PidBitmap {
    /// Maps the array map behind `fd`, which has `len` u64 entries and was
    /// created with BPF_F_MMAPABLE.
    pub fn map(fd: BorrowedFd<'_>, len: usize) -> std::io::Result<Self> {
        let page = 4096usize;
        let mapped_bytes = (len * 8).div_ceil(page) * page;
        let size = std::num::NonZeroUsize::new(mapped_bytes).ok_or(std::io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh shared mapping of the map's value area; nothing else
        // in this process aliases it.
        let ptr = unsafe {
            mmap(None, size, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, fd.as_fd(), 0)
        }
        .map_err(std::io::Error::from)?;
        Ok(Self { words: ptr.cast(), len, mapped_bytes })
    }

    fn word(&self, pid: u32) -> Option<(&AtomicU64, u64)> {
        let index = (pid / 64) as usize;
        if index >= self.len {
            return None;
        }
        // SAFETY: index is in bounds of the mapping, which is 8-byte aligned
        // and lives as long as `self`.
        let word = unsafe { AtomicU64::from_ptr(self.words.as_ptr().add(index)) };
        Some((word, 1u64 << (pid % 64)))
    }

    /// Returns false when the pid is beyond the bitmap (larger than pid_max).
    pub fn set(&self, pid: u32) -> bool {
        self.word(pid).map(|(w, bit)| w.fetch_or(bit, Ordering::SeqCst)).is_some()
    }

    pub fn clear_all(&self) {
        for index in 0..self.len {
            // SAFETY: index is in bounds of the live, aligned mapping.
            unsafe { AtomicU64::from_ptr(self.words.as_ptr().add(index)) }.store(0, Ordering::SeqCst);
        }
    }

    pub fn contains(&self, pid: u32) -> bool {
        self.word(pid).is_some_and(|(w, bit)| w.load(Ordering::SeqCst) & bit != 0)
    }
}

impl Drop for PidBitmap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped.
        let _ = unsafe { munmap(self.words.cast(), self.mapped_bytes) };
    }
}
