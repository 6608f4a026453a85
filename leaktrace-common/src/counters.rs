//! Indices of the per-CPU counters the kernel side keeps: everything it could
//! not store is counted here and reported, never lost silently.

/// Successful acquisitions by traced processes (stored or not).
pub const ACQUIRED: u32 = 0;
/// Tracked fds released by close, dup2/dup3 over them, or reuse of their number.
pub const RELEASED: u32 = 1;
/// Acquisitions not stored because the outstanding map was full.
pub const DROPPED_MAP_FULL: u32 = 2;
/// Stacks not stored because the stack map was full (the entry keeps no stack).
pub const STACKS_DROPPED: u32 = 3;
/// `bpf_get_stack` failures (the entry keeps no stack).
pub const STACK_ERRORS: u32 = 4;
/// Events not delivered because the ring buffer was full.
pub const EVENTS_LOST: u32 = 5;
/// New processes not tracked because the process map was full.
pub const PROCS_DROPPED: u32 = 6;
/// Entries replaced because their fd number was handed out again before
/// userspace applied the release (close_range, exec); counted as released.
pub const REPLACED: u32 = 7;
/// Reads of syscall registers or user memory that failed.
pub const READ_ERRORS: u32 = 8;
/// Acquisitions left out by `--sample N` (N-1 in N on average): neither
/// stored nor unwound.
pub const SAMPLED_OUT: u32 = 9;

pub const COUNT: u32 = 10;

/// Names for reports and debugging, indexed like the counters.
pub const NAMES: [&str; COUNT as usize] = [
    "acquired",
    "released",
    "dropped_map_full",
    "stacks_dropped",
    "stack_errors",
    "events_lost",
    "procs_dropped",
    "replaced",
    "read_errors",
    "sampled_out",
];
