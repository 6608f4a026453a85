//! Load-time settings, written by the loader into `.rodata` before the
//! verifier sees the programs (see `leaktrace_common::config`).

use leaktrace_common::config::TracepointOffsets;

#[no_mangle]
static LT_TRACE_ALL: u32 = 0;

#[no_mangle]
static LT_STOP_ON_CODE_MAP: u32 = 0;

#[no_mangle]
static LT_OFFSETS: TracepointOffsets =
    TracepointOffsets { fork_child_pid: 0, exit_group_dead: 0, exec_pid: 0, exec_old_pid: 0 };

// Volatile reads: without them the compiler folds the defaults above into the
// code and the loader's values are never read.

#[inline(always)]
pub fn trace_all() -> bool {
    unsafe { core::ptr::read_volatile(&LT_TRACE_ALL) != 0 }
}

#[inline(always)]
pub fn stop_on_code_map() -> bool {
    unsafe { core::ptr::read_volatile(&LT_STOP_ON_CODE_MAP) != 0 }
}

#[inline(always)]
pub fn offsets() -> TracepointOffsets {
    unsafe { core::ptr::read_volatile(&LT_OFFSETS) }
}
