//! Traced processes: the per-process state the programs keep, and how a
//! process's identity survives pid reuse.

/// Value of the process map, keyed by tgid.
///
/// `gen` makes (tgid, gen) unique over time: it is the CLOCK_MONOTONIC
/// nanosecond at which the tracer started following the process (fork time
/// for children, attach time for targets). A pid reused by a new process gets
/// a new stamp, so it never matches, releases or inherits the old entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcState {
    pub gen: u64,
    /// Number of successful execs since tracing began; stacks are resolved
    /// against the image they were taken in.
    pub exec_seq: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ProcState>() == 16);

crate::user_pod!(ProcState);

/// Generations the loader assigns to the processes it was asked to trace have
/// this bit set; the programs assign kernel timestamps, which never reach it.
pub const USER_GEN_BIT: u64 = 1 << 63;
