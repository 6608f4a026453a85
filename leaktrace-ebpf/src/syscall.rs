//! The `raw_syscalls` programs: decode a syscall from the saved user
//! registers and hand fd-table changes to [`crate::fd`]; acquisitions when
//! the call returns, releases by close and close_range when it starts.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel, generated},
    programs::RawTracePointContext,
};
use leaktrace_common::{
    counters,
    fd::{classify, classify_entry, exit_matters, FdOp},
    mmap, syscalls as sc,
};

use crate::{
    config,
    counters::bump,
    fd,
    maps::{PROCS, SYSCALL_REGS},
    process,
};

/// `struct pt_regs` on x86_64 (arch/x86/include/asm/ptrace.h). Its layout is
/// part of the user ABI (PTRACE_GETREGS), so it is the same on every kernel.
#[repr(C)]
pub(crate) struct PtRegs {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    bp: u64,
    bx: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    ax: u64,
    cx: u64,
    dx: u64,
    si: u64,
    di: u64,
    orig_ax: u64,
    ip: u64,
    cs: u64,
    flags: u64,
    sp: u64,
    ss: u64,
}

/// Reads kernel memory; a failure is counted (`READ_ERRORS`) and ends the
/// program.
#[inline(always)]
fn read_kernel<T>(src: *const T) -> Result<T, i64> {
    unsafe { bpf_probe_read_kernel(src) }.map_err(|e| {
        bump(counters::READ_ERRORS);
        e as i64
    })
}

/// The calling thread and its user registers at the syscall.
pub(crate) struct Caller {
    pub tgid: u32,
    pub tid: u32,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

#[inline(always)]
pub(crate) fn try_sys_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Filter before anything else: this runs for every syscall on the host.
    if !process::is_traced(tgid) {
        return Ok(());
    }
    // TP_PROTO(struct pt_regs *regs, long ret) (include/trace/events/syscalls.h).
    let regs_ptr: *const PtRegs = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    // The number first, 8 bytes: most calls of a traced process (reads,
    // writes, closes) need nothing more. x32 numbers carry a high bit, so
    // they are ruled out here too.
    let nr: u64 = read_kernel(unsafe { core::ptr::addr_of!((*regs_ptr).orig_ax) })?;
    if !exit_matters(nr) {
        return Ok(());
    }
    // 168 bytes: read into a per-CPU map rather than onto the stack, which
    // this program shares with the unwinder it calls (see `unwind::Walk`).
    let Some(slot) = SYSCALL_REGS.get_ptr_mut(0) else {
        return Ok(());
    };
    let size = core::mem::size_of::<PtRegs>() as u32;
    let read = unsafe { generated::bpf_probe_read_kernel(slot.cast(), size, regs_ptr.cast()) };
    if read < 0 {
        bump(counters::READ_ERRORS);
        return Err(read);
    }
    let regs = unsafe { &*slot };
    // ia32 and x32 syscall numbers mean other calls; only the native ABI is decoded.
    if regs.cs != sc::USER_CS_64 || regs.orig_ax & sc::X32_SYSCALL_BIT != 0 {
        return Ok(());
    }
    let args = [regs.di, regs.si, regs.dx, regs.r10, regs.r8, regs.r9];
    let nr = regs.orig_ax;
    let map_op = if config::mmap() { mmap::classify_exit(nr, &args, ret) } else { mmap::ExitOp::Nothing };
    let op = classify(nr, &args, ret);
    if matches!(op, FdOp::Nothing) && matches!(map_op, mmap::ExitOp::Nothing) {
        return Ok(());
    }
    // A traced pid without process state: the process map was full when it
    // was created (counted then).
    let Some(proc) = process::state(tgid) else {
        return Ok(());
    };
    let caller = Caller { tgid, tid: pid_tgid as u32, ip: regs.ip, sp: regs.sp, bp: regs.bp };
    crate::mmap::on_exit(ctx, &caller, proc, map_op);
    fd::apply(ctx, &caller, proc, nr, op)
}

/// Releases are applied when close and close_range start (see
/// `leaktrace_common::fd::classify_entry`). A raw tracepoint on every
/// syscall entry costs other processes less here than the `syscalls:
/// sys_enter_close` event, which on this kernel adds about 0.3 µs to every
/// close on the host.
#[inline(always)]
pub(crate) fn try_sys_enter(ctx: &RawTracePointContext) -> Result<(), i64> {
    // TP_PROTO(struct pt_regs *regs, long id): the number alone filters most.
    let id: u64 = ctx.arg(1);
    let unmaps = (id == sc::MUNMAP || id == sc::MREMAP) && config::mmap();
    if id != sc::CLOSE && id != sc::CLOSE_RANGE && !unmaps {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !process::is_traced(tgid) {
        return Ok(());
    }
    let regs_ptr: *const PtRegs = ctx.arg(0);
    let regs = read_kernel(regs_ptr)?;
    if regs.cs != sc::USER_CS_64 || regs.orig_ax & sc::X32_SYSCALL_BIT != 0 {
        return Ok(());
    }
    let Some(proc) = (unsafe { PROCS.get(tgid) }) else {
        return Ok(());
    };
    // Releases need no registers: no stack is taken for them.
    let caller = Caller { tgid, tid: pid_tgid as u32, ip: 0, sp: 0, bp: 0 };
    if unmaps {
        let args = [regs.di, regs.si, regs.dx, regs.r10, regs.r8, regs.r9];
        crate::mmap::on_entry(&caller, proc, mmap::classify_entry(id, &args));
        return Ok(());
    }
    let op = classify_entry(id, &[regs.di, regs.si, regs.dx, 0, 0, 0]);
    fd::apply(ctx, &caller, proc, id, op)
}
