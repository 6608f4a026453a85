//! leaktrace's kernel side: follows the fd tables of traced processes.
//!
//! Entry points are thin; each hands its context to the module that owns the
//! logic. Acquisitions and releases stay in kernel maps (matched pairs cost
//! userspace nothing); only process lifecycle and range operations are sent
//! to userspace as events.
#![no_std]
#![no_main]
// Atomic or/and on the pid bitmap (see process.rs).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod config;
mod counters;
mod events;
mod fd;
mod maps;
mod mmap;
mod process;
mod socket;
mod stack;
mod syscall;
mod tcp;
mod unwind;

use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

/// Every syscall exit on the host. One program for all syscalls is cheaper
/// per event than a classic tracepoint per syscall, and the registers it sees
/// still hold the arguments (x86_64 pt_regs keeps them until the return).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub(crate) fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let _ = syscall::try_sys_exit(&ctx);
    0
}

#[tracepoint]
pub(crate) fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let _ = process::try_fork(&ctx);
    0
}

#[tracepoint]
pub(crate) fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = process::try_exec(&ctx);
    0
}

#[tracepoint]
pub(crate) fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = process::try_exit(&ctx);
    0
}

/// Every syscall entry on the host; only close and close_range of traced
/// processes go further.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub(crate) fn sys_enter(ctx: RawTracePointContext) -> i32 {
    let _ = syscall::try_sys_enter(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub(crate) fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    let _ = tcp::try_set_state(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "tcp_destroy_sock")]
pub(crate) fn tcp_destroy_sock(ctx: RawTracePointContext) -> i32 {
    tcp::destroy(&ctx);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
