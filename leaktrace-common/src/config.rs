//! Load-time settings of the eBPF programs, written into their read-only data
//! by the loader (`EbpfLoader::set_global`) before verification, so disabled
//! branches are pruned by the verifier.

/// Tracepoint record offsets differ between kernels (6.18's `sched_process_fork`
/// stores comms as `__data_loc`, older kernels as `char[16]`), so the loader
/// reads them from tracefs `format` files instead of compiling them in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointOffsets {
    /// `sched:sched_process_fork` `child_pid`.
    pub fork_child_pid: u32,
    /// `sched:sched_process_exit` `group_dead`, or [`ABSENT`] before Linux 6.16.
    pub exit_group_dead: u32,
    /// `sched:sched_process_exec` `pid`.
    pub exec_pid: u32,
    /// `sched:sched_process_exec` `old_pid`.
    pub exec_old_pid: u32,
}

/// Marks a tracepoint field this kernel does not have.
pub const ABSENT: u32 = u32::MAX;

const _: () = assert!(core::mem::size_of::<TracepointOffsets>() == 16);

crate::user_pod!(TracepointOffsets);

/// Global names, shared so the loader and the programs cannot drift apart.
pub mod globals {
    /// `u32`: non-zero traces every process on the host (no pid filter).
    pub const TRACE_ALL: &str = "LT_TRACE_ALL";
    /// `u32`: non-zero makes a traced thread that maps new code stop with a
    /// kernel-sent SIGSTOP, so the ptrace-based `run` mode reads its mappings
    /// before they can disappear (the tracer suppresses the signal).
    pub const STOP_ON_CODE_MAP: &str = "LT_STOP_ON_CODE_MAP";
    /// [`super::TracepointOffsets`].
    pub const OFFSETS: &str = "LT_OFFSETS";
}
