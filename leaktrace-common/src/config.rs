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

/// Byte offsets of the kernel struct members the TCP tracker reads to get
/// from an fd to its `struct sock`, from the running kernel's BTF: they
/// change between kernel versions and configurations.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub file_private_data: u32,
    pub socket_type: u32,
    pub socket_sk: u32,
    pub skc_family: u32,
    pub skc_state: u32,
    pub skc_daddr: u32,
    pub skc_rcv_saddr: u32,
    pub skc_dport: u32,
    /// `struct inet_sock` (which begins with the `struct sock`).
    pub inet_sport: u32,
    pub skc_v6_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    /// `task_struct.signal`, 0 when unknown. With `signal_live`, how a thread
    /// exiting on a kernel before 6.16 (no `group_dead` in the exit record)
    /// tells whether it is its process's last: do_exit decrements
    /// `signal->live` before the tracepoint fires.
    pub task_signal: u32,
    /// `signal_struct.live`, the thread group's count of live threads.
    pub signal_live: u32,
}
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 64);

crate::user_pod!(TracepointOffsets, KernelOffsets);

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
    /// `u32`: non-zero links TCP sockets to their fds and follows their states.
    pub const TCP: &str = "LT_TCP";
    /// `u32`: non-zero sends the memory mapping operations of traced
    /// processes as events.
    pub const MMAP: &str = "LT_MMAP";
    /// u32: record one fd acquisition in this many (0 and 1: all).
    pub const SAMPLE: &str = "LT_SAMPLE";
    /// u32: the tracer's own pid, left out when every process is traced.
    pub const TRACER_TGID: &str = "LT_TRACER_TGID";
    /// [`super::KernelOffsets`].
    pub const KERNEL_OFFSETS: &str = "LT_KERNEL_OFFSETS";
}
