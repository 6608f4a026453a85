//! The `raw_syscalls:sys_exit` program: decodes the finished syscall from the
//! saved user registers and hands fd-table changes to [`crate::fd`].

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    programs::RawTracePointContext,
};
use leaktrace_common::{counters, fd::classify, syscalls as sc};

use crate::{counters::bump, fd, maps::PROCS, process};

/// `struct pt_regs` on x86_64 (arch/x86/include/asm/ptrace.h). Its layout is
/// part of the user ABI (PTRACE_GETREGS), so it is the same on every kernel.
#[repr(C)]
struct PtRegs {
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

/// The calling thread and its user registers at the syscall.
pub struct Caller {
    pub tgid: u32,
    pub tid: u32,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

#[inline(always)]
pub fn try_sys_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Filter before anything else: this runs for every syscall on the host.
    if !process::is_traced(tgid) {
        return Ok(());
    }
    // TP_PROTO(struct pt_regs *regs, long ret) (include/trace/events/syscalls.h).
    let regs_ptr: *const PtRegs = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    let regs = match unsafe { bpf_probe_read_kernel(regs_ptr) } {
        Ok(regs) => regs,
        Err(e) => {
            bump(counters::READ_ERRORS);
            return Err(e as i64);
        }
    };
    // ia32 and x32 syscall numbers mean other calls; only the native ABI is decoded.
    if regs.cs != sc::USER_CS_64 || regs.orig_ax & sc::X32_SYSCALL_BIT != 0 {
        return Ok(());
    }
    let args = [regs.di, regs.si, regs.dx, regs.r10, regs.r8, regs.r9];
    let op = classify(regs.orig_ax, &args, ret);
    if let leaktrace_common::fd::FdOp::Nothing = op {
        return Ok(());
    }
    // A traced pid without process state: the process map was full when it
    // was created (counted then).
    let Some(proc) = (unsafe { PROCS.get(tgid) }) else {
        return Ok(());
    };
    let caller = Caller { tgid, tid: pid_tgid as u32, ip: regs.ip, sp: regs.sp, bp: regs.bp };
    fd::apply(ctx, &caller, proc, regs.orig_ax, op)
}
