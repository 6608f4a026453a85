//! User stacks: the stack map's value and the hash that names a stack.
//!
//! The programs keep their own hash map of stacks instead of a
//! BPF_MAP_TYPE_STACK_TRACE: that map indexes buckets by a short hash and
//! refuses (or overwrites) a stack whose bucket is taken, which with a few
//! hundred stacks in a 16K-bucket map already happens in one run out of four.
//! A 64-bit hash of the frames makes collisions negligible.

/// Frames kept per stack. Deeper stacks are cut at the outermost frames and
/// marked truncated.
pub const MAX_FRAMES: usize = 64;

/// The CFI walk reached the outermost frame (`_start`, a thread start) or
/// a frame-pointer chain ended with rbp 0.
pub const COMPLETE: u32 = 1;
/// More frames than [`MAX_FRAMES`].
pub const TRUNCATED_DEPTH: u32 = 2;
/// The walk stopped early: no CFI for an address, an unreadable stack slot.
pub const TRUNCATED_UNWIND: u32 = 4;
/// Taken by the kernel's frame-pointer walk (`bpf_get_stack`), or ended by a
/// frame-pointer step in code with no known mapping: either way, whether it
/// reached the outermost frame is not known.
pub const FRAME_POINTERS: u32 = 8;

/// Stack id meaning "no stack was stored".
pub const NO_STACK: u64 = 0;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackTrace {
    /// Number of valid entries in `ips`.
    pub len: u32,
    /// How the walk ended: [`COMPLETE`], [`TRUNCATED_DEPTH`],
    /// [`TRUNCATED_UNWIND`], or [`FRAME_POINTERS`] alone.
    pub flags: u32,
    /// CLOCK_MONOTONIC ns of the first acquisition with this stack: where
    /// its history starts, released acquisitions included.
    pub first_ns: u64,
    /// Return addresses, innermost first; `ips[0]` is the syscall site.
    pub ips: [u64; MAX_FRAMES],
}
const _: () = assert!(core::mem::size_of::<StackTrace>() == 16 + 8 * MAX_FRAMES);

crate::user_pod!(StackTrace);

/// Names a stack by its frames. Never returns [`NO_STACK`].
///
/// A multiply-xorshift step per frame: cheap in eBPF (no byte loops) and well
/// mixed for addresses that differ in few bits.
#[inline(always)]
pub fn hash_step(h: u64, ip: u64) -> u64 {
    let x = (h ^ ip).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

#[inline(always)]
pub fn hash_finish(h: u64, len: u32) -> u64 {
    let h = hash_step(h, len as u64 | 0x5bd1_e995_0000_0000);
    if h == NO_STACK {
        1
    } else {
        h
    }
}

pub const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// The hash of a whole stack, as the programs compute it frame by frame.
pub fn hash(ips: &[u64]) -> u64 {
    let mut h = HASH_SEED;
    for &ip in ips {
        h = hash_step(h, ip);
    }
    hash_finish(h, ips.len() as u32)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn different_stacks_hash_differently() {
        let a = hash(&[0x401136, 0x401200, 0x7f00_0000_1000]);
        let b = hash(&[0x401136, 0x401201, 0x7f00_0000_1000]);
        let c = hash(&[0x401136, 0x401200]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, NO_STACK);
        assert_eq!(a, hash(&[0x401136, 0x401200, 0x7f00_0000_1000]));
    }

    #[test]
    fn empty_stack_has_a_name() {
        assert_ne!(hash(&[]), NO_STACK);
    }
}
