//! The ABI shared by the eBPF programs and the loader.
//!
//! Everything that crosses the kernel/user boundary is defined here once:
//! `#[repr(C)]`, `Copy`, fixed-width integers, padding as named fields and a
//! size assertion per struct. The pure parts of the kernel-side logic (what a
//! syscall does to the fd table, the stack hash) also live here so they can be
//! unit-tested on the host.
#![no_std]

pub mod config;
pub mod counters;
pub mod event;
pub mod fd;
pub mod mmap;
pub mod process;
pub mod socket;
pub mod stack;
pub mod syscalls;
pub mod tcp;
pub mod unwind;

/// Implements `aya::Pod` for ABI structs on the userspace side only.
macro_rules! user_pod {
    ($($t:ty),* $(,)?) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: the type is `#[repr(C)]`, `Copy`, made of integers only and
            // has no implicit padding (asserted next to its definition).
            unsafe impl aya::Pod for $t {}
        )*
    };
}
pub(crate) use user_pod;
