//! Unwinds user stacks with the CFI tables userspace loads for each module,
//! for code built without frame pointers (glibc, -O2 C, Rust release builds).
//!
//! One `bpf_loop` iteration per frame: the loop body is verified once,
//! however deep the stack. Frames in modules without CFI (Go binaries, JIT
//! code) are stepped with their frame pointer instead.

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_probe_read_user, generated::bpf_loop};
use leaktrace_common::{
    stack::{COMPLETE, MAX_FRAMES, TRUNCATED_DEPTH, TRUNCATED_UNWIND},
    unwind::{CFA_RBP, END, MAX_MAPPINGS, NO_INFO, RBP_SAVED},
};

use crate::maps::{PROC_UNWIND, STACK_SCRATCH, UNWIND_ROWS};

/// The walk's state, on the program's stack and handed to every iteration.
/// Plain integers only: copying structs makes LLVM emit a byte-wise memcpy
/// that the verifier walks one byte at a time.
#[repr(C)]
struct Walk {
    ip: u64,
    sp: u64,
    bp: u64,
    tgid: u32,
    /// Frames written to the scratch stack so far.
    len: u32,
    flags: u32,
    /// Whether the `module_*` fields describe the mapping `ip` was last found in.
    cached: u32,
    module_start: u64,
    module_end: u64,
    module_bias: u64,
    rows_start: u32,
    rows_len: u32,
}

/// Walks from the syscall's saved registers into the scratch stack buffer.
/// Returns false when the process has no usable tables for this image.
#[inline(always)]
pub fn walk(tgid: u32, exec_seq: u32, ip: u64, sp: u64, bp: u64) -> bool {
    leaktrace_unwind(tgid, exec_seq, ip, sp, bp) != 0
}

/// A global function: the verifier checks it once on its own, with scalar
/// arguments, instead of once per call site and path of the syscall program,
/// which would exceed its instruction budget.
#[no_mangle]
#[inline(never)]
pub extern "C" fn leaktrace_unwind(tgid: u32, exec_seq: u32, ip: u64, sp: u64, bp: u64) -> i32 {
    match unsafe { PROC_UNWIND.get(tgid) } {
        Some(maps) if maps.exec_seq == exec_seq && maps.count > 0 => {}
        _ => return 0,
    }
    let mut walk = Walk {
        ip,
        sp,
        bp,
        tgid,
        len: 0,
        flags: 0,
        cached: 0,
        module_start: 0,
        module_end: 0,
        module_bias: 0,
        rows_start: 0,
        rows_len: 0,
    };
    unsafe {
        bpf_loop(MAX_FRAMES as u32, step as *mut c_void, (&mut walk as *mut Walk).cast(), 0);
    }
    let Some(buf) = STACK_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let flags = if walk.flags == 0 { TRUNCATED_DEPTH } else { walk.flags };
    unsafe {
        (*buf).len = walk.len;
        (*buf).flags = flags;
    }
    1
}

const CONTINUE: i64 = 0;
const STOP: i64 = 1;

/// One frame: record `ip`, then compute the caller's ip, sp and bp.
#[inline(never)]
extern "C" fn step(_index: u64, ctx: *mut c_void) -> i64 {
    let walk = unsafe { &mut *(ctx as *mut Walk) };
    let Some(buf) = STACK_SCRATCH.get_ptr_mut(0) else {
        return STOP;
    };
    let n = walk.len as usize;
    if n >= MAX_FRAMES {
        walk.flags = TRUNCATED_DEPTH;
        return STOP;
    }
    unsafe { (*buf).ips[n] = walk.ip };
    walk.len += 1;
    // Return addresses point after their call; the call's own row is wanted.
    let lookup = if n == 0 { walk.ip } else { walk.ip.wrapping_sub(1) };
    if walk.cached == 0 || walk.ip < walk.module_start || walk.ip >= walk.module_end {
        walk.cached = u32::from(find_mapping(walk));
    }
    let stepped = if walk.cached != 0 && walk.rows_len > 0 { cfi_step(walk, lookup) } else { frame_pointer_step(walk) };
    match stepped {
        Ok(true) => CONTINUE,
        Ok(false) => {
            walk.flags = COMPLETE;
            STOP
        }
        Err(()) => {
            walk.flags = TRUNCATED_UNWIND;
            STOP
        }
    }
}

/// Finds the mapping containing `walk.ip` by binary search over the
/// process's sorted mappings and caches it in `walk`.
#[inline(always)]
fn find_mapping(walk: &mut Walk) -> bool {
    let Some(maps) = (unsafe { PROC_UNWIND.get(walk.tgid) }) else {
        return false;
    };
    let count = (maps.count as usize).min(MAX_MAPPINGS);
    let (mut lo, mut hi) = (0usize, count);
    // 64 mappings need 7 halvings.
    for _ in 0..8 {
        if lo >= hi {
            break;
        }
        let mid = (lo + hi) / 2;
        let Some(m) = maps.mappings.get(mid) else {
            return false;
        };
        if m.start <= walk.ip {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let Some(m) = lo.checked_sub(1).and_then(|i| maps.mappings.get(i)) else {
        return false;
    };
    if walk.ip >= m.end {
        return false;
    }
    walk.module_start = m.start;
    walk.module_end = m.end;
    walk.module_bias = m.bias;
    walk.rows_start = m.rows_start;
    walk.rows_len = m.rows_len;
    true
}

/// Ok(true): stepped to the caller; Ok(false): the outermost frame; Err: stop.
#[inline(always)]
fn cfi_step(walk: &mut Walk, lookup: u64) -> Result<bool, ()> {
    let pc = lookup.wrapping_sub(walk.module_bias);
    if pc > u32::MAX as u64 {
        return Err(());
    }
    let index = find_row(walk.rows_start, walk.rows_len, pc as u32).ok_or(())?;
    let row = UNWIND_ROWS.get(index).ok_or(())?;
    let (kind, cfa_offset, rbp_offset) = (row.kind, row.cfa_offset, row.rbp_offset);
    if kind & NO_INFO != 0 {
        return Err(());
    }
    if kind & END != 0 {
        return Ok(false);
    }
    let base = if kind & CFA_RBP != 0 { walk.bp } else { walk.sp };
    let cfa = base.wrapping_add(cfa_offset as i64 as u64);
    let ra: u64 = unsafe { bpf_probe_read_user((cfa - 8) as *const u64) }.map_err(|_| ())?;
    if kind & RBP_SAVED != 0 {
        walk.bp =
            unsafe { bpf_probe_read_user(cfa.wrapping_add(rbp_offset as i64 as u64) as *const u64) }.map_err(|_| ())?;
    }
    walk.sp = cfa;
    walk.ip = ra;
    Ok(ra != 0)
}

/// Index in the rows array of the row covering `pc` among the module's rows
/// (the search of `leaktrace_common::unwind::find_row`, over the map).
#[inline(always)]
fn find_row(start: u32, len: u32, pc: u32) -> Option<u32> {
    let (mut lo, mut hi) = (0u32, len);
    // 2^24 rows at most per module: 25 halvings.
    for _ in 0..25 {
        if lo >= hi {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        let row_pc = UNWIND_ROWS.get(start.wrapping_add(mid))?.pc;
        if row_pc <= pc {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Some(start.wrapping_add(lo.checked_sub(1)?))
}

/// A frame-pointer step: the caller's rbp and return address sit at rbp.
#[inline(always)]
fn frame_pointer_step(walk: &mut Walk) -> Result<bool, ()> {
    if walk.bp == 0 {
        return Ok(false);
    }
    let frame: [u64; 2] = unsafe { bpf_probe_read_user(walk.bp as *const [u64; 2]) }.map_err(|_| ())?;
    walk.sp = walk.bp + 16;
    walk.bp = frame[0];
    walk.ip = frame[1];
    Ok(frame[1] != 0)
}
