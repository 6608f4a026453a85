//! Load-time settings, written by the loader into `.rodata` before the
//! verifier sees the programs (see `leaktrace_common::config`).

use leaktrace_common::config::{KernelOffsets, TracepointOffsets};

#[no_mangle]
static LT_TRACE_ALL: u32 = 0;

#[no_mangle]
static LT_STOP_ON_CODE_MAP: u32 = 0;

#[no_mangle]
static LT_TCP: u32 = 0;

#[no_mangle]
static LT_MMAP: u32 = 0;

#[no_mangle]
static LT_SAMPLE: u32 = 0;

#[no_mangle]
static LT_TRACER_TGID: u32 = 0;

// Zero defaults; the loader writes the real values.
#[no_mangle]
static LT_OFFSETS: TracepointOffsets =
    TracepointOffsets { fork_child_pid: 0, exit_group_dead: 0, exec_pid: 0, exec_old_pid: 0 };

#[no_mangle]
static LT_KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    task_files: 0,
    files_fdt: 0,
    fdtable_fd: 0,
    file_private_data: 0,
    socket_type: 0,
    socket_sk: 0,
    skc_family: 0,
    skc_state: 0,
    skc_daddr: 0,
    skc_rcv_saddr: 0,
    skc_dport: 0,
    inet_sport: 0,
    skc_v6_daddr: 0,
    skc_v6_rcv_saddr: 0,
    task_signal: 0,
    signal_live: 0,
};

// Volatile reads: without them the compiler folds the defaults above into the
// code and the loader's values are never read.

#[inline(always)]
pub(crate) fn trace_all() -> bool {
    unsafe { core::ptr::read_volatile(&LT_TRACE_ALL) != 0 }
}

#[inline(always)]
pub(crate) fn stop_on_code_map() -> bool {
    unsafe { core::ptr::read_volatile(&LT_STOP_ON_CODE_MAP) != 0 }
}

#[inline(always)]
pub(crate) fn offsets() -> TracepointOffsets {
    unsafe { core::ptr::read_volatile(&LT_OFFSETS) }
}

#[inline(always)]
pub(crate) fn tcp() -> bool {
    unsafe { core::ptr::read_volatile(&LT_TCP) != 0 }
}

#[inline(always)]
pub(crate) fn mmap() -> bool {
    unsafe { core::ptr::read_volatile(&LT_MMAP) != 0 }
}

/// The tracer's own process, never traced.
#[inline(always)]
pub(crate) fn tracer_tgid() -> u32 {
    unsafe { core::ptr::read_volatile(&LT_TRACER_TGID) }
}

/// Record one fd acquisition in this many (0 and 1: every one).
#[inline(always)]
pub(crate) fn sample() -> u32 {
    unsafe { core::ptr::read_volatile(&LT_SAMPLE) }
}

#[inline(always)]
pub(crate) fn kernel_offsets() -> KernelOffsets {
    unsafe { core::ptr::read_volatile(&LT_KERNEL_OFFSETS) }
}

/// A field of a classic tracepoint's record, by its offset from tracefs.
#[inline(always)]
pub(crate) fn field<T: Copy>(ctx: &aya_ebpf::programs::TracePointContext, offset: u32) -> Result<T, i64> {
    unsafe { ctx.read_at(offset as usize) }.map_err(|e| e as i64)
}
