//! Unwinds user stacks with the CFI tables userspace loads for each module,
//! for code built without frame pointers (glibc, -O2 C, Rust release builds).
//!
//! One `bpf_loop` iteration per frame: the loop body is verified once,
//! however deep the stack. Frames in modules without CFI (Go binaries, JIT
//! code) are stepped with their frame pointer instead.

use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_probe_read_user,
    generated::{bpf_loop, bpf_probe_read_user as probe_read_user_raw},
};
use leaktrace_common::{
    stack::{COMPLETE, FRAME_POINTERS, MAX_FRAMES, TRUNCATED_DEPTH, TRUNCATED_UNWIND},
    unwind::{BUCKET_SHIFT, CFA_RBP, END, MAX_MAPPINGS, NO_INFO, RBP_SAVED},
};

use crate::maps::{PROC_UNWIND, STACK_SCRATCH, STACK_WINDOW, UNWIND_BUCKETS, UNWIND_ROWS, UNWIND_WALK};

/// Words of user stack read at once: 1 KiB holds the frames of a typical
/// -O2 call chain a few levels deep; deeper walks read the next window.
pub(crate) const WINDOW_WORDS: usize = 128;

/// The walk's state, in a per-CPU map (`UNWIND_WALK`) that every iteration
/// looks up. Not on the program's stack: the syscall program and this
/// global function it calls share the 512 bytes, which kernels before 6.13
/// (no private stacks) check for the pair (6.1: "combined stack size of 2
/// calls is 544. Too large"), and bpf_loop takes only a stack pointer as
/// its context. Plain integers only: copying structs makes LLVM emit a
/// byte-wise memcpy that the verifier walks one byte at a time.
#[repr(C)]
pub(crate) struct Walk {
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
    buckets_start: u32,
    buckets_len: u32,
    /// User address of `STACK_WINDOW[0]`, when `window_valid`.
    window_base: u64,
    window_valid: u32,
    _pad: u32,
}

/// Walks from the syscall's saved registers into the scratch stack buffer.
/// Returns false when the process has no usable tables for this image.
#[inline(always)]
pub(crate) fn walk(tgid: u32, exec_seq: u32, ip: u64, sp: u64, bp: u64) -> bool {
    leaktrace_unwind(tgid, exec_seq, ip, sp, bp) != 0
}

/// A global function: the verifier checks it once on its own, with scalar
/// arguments, instead of once per call site and path of the syscall program,
/// which would exceed its instruction budget.
#[no_mangle]
#[inline(never)]
pub(crate) extern "C" fn leaktrace_unwind(tgid: u32, exec_seq: u32, ip: u64, sp: u64, bp: u64) -> i32 {
    match unsafe { PROC_UNWIND.get(tgid) } {
        Some(maps) if maps.exec_seq == exec_seq && maps.count > 0 => {}
        _ => return 0,
    }
    let Some(w) = UNWIND_WALK.get_ptr_mut(0) else {
        return 0;
    };
    // Field by field, with volatile stores: LLVM turns a zeroing struct
    // literal into a byte-wise memset loop that the verifier walks byte by byte.
    unsafe {
        core::ptr::write_volatile(&raw mut (*w).ip, ip);
        core::ptr::write_volatile(&raw mut (*w).sp, sp);
        core::ptr::write_volatile(&raw mut (*w).bp, bp);
        core::ptr::write_volatile(&raw mut (*w).tgid, tgid);
        core::ptr::write_volatile(&raw mut (*w).len, 0);
        core::ptr::write_volatile(&raw mut (*w).flags, 0);
        core::ptr::write_volatile(&raw mut (*w).cached, 0);
        core::ptr::write_volatile(&raw mut (*w).module_start, 0);
        core::ptr::write_volatile(&raw mut (*w).module_end, 0);
        core::ptr::write_volatile(&raw mut (*w).module_bias, 0);
        core::ptr::write_volatile(&raw mut (*w).rows_start, 0);
        core::ptr::write_volatile(&raw mut (*w).rows_len, 0);
        core::ptr::write_volatile(&raw mut (*w).buckets_start, 0);
        core::ptr::write_volatile(&raw mut (*w).buckets_len, 0);
        core::ptr::write_volatile(&raw mut (*w).window_base, 0);
        core::ptr::write_volatile(&raw mut (*w).window_valid, 0);
        core::ptr::write_volatile(&raw mut (*w)._pad, 0);
    }
    unsafe {
        bpf_loop(MAX_FRAMES as u32, step as *mut c_void, core::ptr::null_mut(), 0);
    }
    // Used in place: copying it out would bring the memset back.
    let walk = unsafe { &*w };
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
extern "C" fn step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(walk) = UNWIND_WALK.get_ptr_mut(0) else {
        return STOP;
    };
    let walk = unsafe { &mut *walk };
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
            // A frame-pointer chain ending in code with no known mapping
            // (mapped an instant ago, before its tables were pushed) may end
            // anywhere: userspace judges it by its last frame's symbol.
            walk.flags = if walk.cached == 0 { FRAME_POINTERS } else { COMPLETE };
            STOP
        }
        Err(()) => {
            walk.flags = TRUNCATED_UNWIND;
            STOP
        }
    }
}

/// Finds the mapping containing `walk.ip` and caches it in `walk`.
#[inline(always)]
fn find_mapping(walk: &mut Walk) -> bool {
    let index = leaktrace_find_mapping(walk.tgid, walk.ip);
    // A comparison, not a mask: LLVM folds masks into the address arithmetic
    // and the verifier then sees an unbounded offset.
    if !(0..MAX_MAPPINGS as i64).contains(&index) {
        return false;
    }
    let Some(maps) = (unsafe { PROC_UNWIND.get(walk.tgid) }) else {
        return false;
    };
    let Some(m) = maps.mappings.get(index as usize) else {
        return false;
    };
    walk.module_start = m.start;
    walk.module_end = m.end;
    walk.module_bias = m.bias;
    walk.rows_start = m.rows_start;
    walk.rows_len = m.rows_len;
    walk.buckets_start = m.buckets_start;
    walk.buckets_len = m.buckets_len;
    true
}

/// Index of the mapping of process `tgid` that contains `ip`, or -1: a
/// binary search over its sorted mappings. A global function, verified once
/// on its own: inside the loop callback the verifier would explore the
/// search once per combination of known bounds.
#[no_mangle]
#[inline(never)]
pub(crate) extern "C" fn leaktrace_find_mapping(tgid: u32, ip: u64) -> i64 {
    let Some(maps) = (unsafe { PROC_UNWIND.get(tgid) }) else {
        return -1;
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
            return -1;
        };
        if m.start <= ip {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let Some(index) = lo.checked_sub(1) else {
        return -1;
    };
    match maps.mappings.get(index) {
        Some(m) if ip < m.end => index as i64,
        _ => -1,
    }
}

/// Ok(true): stepped to the caller; Ok(false): the outermost frame; Err: stop.
#[inline(always)]
fn cfi_step(walk: &mut Walk, lookup: u64) -> Result<bool, ()> {
    let pc = lookup.wrapping_sub(walk.module_bias);
    if pc > u32::MAX as u64 {
        return Err(());
    }
    let index = find_row(walk, pc as u32);
    if index < 0 {
        return Err(());
    }
    let row = UNWIND_ROWS.get(index as u32).ok_or(())?;
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

/// Index in the rows array of the row covering `pc`, or -1: the module's
/// buckets give the few rows that can cover it, a short binary search picks
/// one (`leaktrace_common::unwind::find_row_bucketed`, over the maps).
#[inline(always)]
fn find_row(walk: &Walk, pc: u32) -> i64 {
    if walk.buckets_len == 0 {
        return -1;
    }
    let last = walk.buckets_len - 1;
    let b = (pc >> BUCKET_SHIFT).min(last);
    let Some(&lo) = UNWIND_BUCKETS.get(walk.buckets_start.wrapping_add(b)) else {
        return -1;
    };
    let Some(&next) = UNWIND_BUCKETS.get(walk.buckets_start.wrapping_add((b + 1).min(last))) else {
        return -1;
    };
    let (lo, next) = (lo as u32, next as u32);
    let hi = next.saturating_add(1).min(walk.rows_len);
    leaktrace_find_row(walk.rows_start, lo, hi, pc)
}

/// The last row in `start + lo .. start + hi` whose pc is not above `pc`, or
/// -1. A global function: inside the loop callback the verifier would
/// explore the search once per combination of known bounds.
#[no_mangle]
#[inline(never)]
pub(crate) extern "C" fn leaktrace_find_row(start: u32, lo: u32, hi: u32, pc: u32) -> i64 {
    let (mut lo_, mut hi_) = (lo, hi);
    // A bucket holds the rows of 256 bytes of code: 9 halvings.
    for _ in 0..10 {
        if lo_ >= hi_ {
            break;
        }
        let mid = lo_ + (hi_ - lo_) / 2;
        let Some(row) = UNWIND_ROWS.get(start.wrapping_add(mid)) else {
            return -1;
        };
        if row.pc <= pc {
            lo_ = mid + 1;
        } else {
            hi_ = mid;
        }
    }
    // Ending at `lo` means even the bucket's first row starts above pc, which
    // happens only below the module's first row.
    if lo_ == lo {
        return -1;
    }
    i64::from(start.wrapping_add(lo_ - 1))
}

/// A frame-pointer step: the caller's rbp and return address sit at rbp.
#[inline(always)]
fn frame_pointer_step(walk: &mut Walk) -> Result<bool, ()> {
    if walk.bp == 0 {
        return Ok(false);
    }
    let bp = walk.bp;
    let saved_bp = read_stack(walk, bp)?;
    let ra = read_stack(walk, bp.wrapping_add(8))?;
    walk.sp = bp.wrapping_add(16);
    walk.bp = saved_bp;
    walk.ip = ra;
    Ok(ra != 0)
}

/// One word of the user stack, from the window when it holds `addr`.
#[inline(always)]
fn read_stack(walk: &mut Walk, addr: u64) -> Result<u64, ()> {
    let window = STACK_WINDOW.get_ptr_mut(0).ok_or(())?;
    let span = (WINDOW_WORDS * 8) as u64;
    if addr & 7 == 0 {
        if walk.window_valid == 0 || addr < walk.window_base || addr >= walk.window_base + span {
            // The walk moves up the stack: the new window starts here.
            let copied = unsafe { probe_read_user_raw(window.cast(), span as u32, addr as *const c_void) };
            walk.window_valid = u32::from(copied == 0);
            walk.window_base = addr;
        }
        if walk.window_valid != 0 {
            let index = ((addr - walk.window_base) / 8) as usize;
            if index < WINDOW_WORDS {
                return Ok(unsafe { (*window)[index] });
            }
        }
    }
    // Unaligned, or too close to the end of the stack mapping for a window.
    unsafe { bpf_probe_read_user(addr as *const u64) }.map_err(|_| ())
}
