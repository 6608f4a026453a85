//! Captures the user stack of an acquisition and stores it once per distinct
//! stack: with the CFI unwinder when userspace loaded tables for the
//! process's image, with the kernel's frame-pointer walk otherwise.

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::generated::bpf_get_stack,
    EbpfContext,
};
use leaktrace_common::{
    counters,
    process::ProcState,
    stack::{hash_finish, hash_step, FRAME_POINTERS, HASH_SEED, MAX_FRAMES, NO_STACK},
};

use crate::{
    counters::bump,
    maps::{STACKS, STACK_SCRATCH},
    syscall::Caller,
    unwind,
};

const EEXIST: i32 = 17;

/// Returns the stack's id, or [`NO_STACK`] when none could be stored (counted).
#[inline(always)]
pub(crate) fn capture<C: EbpfContext>(ctx: &C, caller: &Caller, proc: &ProcState) -> u64 {
    let Some(buf) = STACK_SCRATCH.get_ptr_mut(0) else {
        return NO_STACK;
    };
    if !unwind::walk(caller.tgid, proc.exec_seq, caller.ip, caller.sp, caller.bp) {
        // `bpf_get_stack` walks frame pointers from the user registers saved
        // at syscall entry (arch/x86/events/core.c, perf_callchain_user).
        let size = (MAX_FRAMES * 8) as u32;
        let written =
            unsafe { bpf_get_stack(ctx.as_ptr(), (*buf).ips.as_mut_ptr().cast(), size, BPF_F_USER_STACK as u64) };
        if written < 0 {
            bump(counters::STACK_ERRORS);
            return NO_STACK;
        }
        unsafe {
            (*buf).len = (written as u32 / 8).min(MAX_FRAMES as u32);
            (*buf).flags = FRAME_POINTERS;
        }
    }
    let len = unsafe { (*buf).len }.min(MAX_FRAMES as u32);
    let mut h = HASH_SEED;
    for i in 0..MAX_FRAMES {
        if i as u32 >= len {
            break;
        }
        h = hash_step(h, unsafe { *(*buf).ips.as_ptr().add(i) });
    }
    let id = hash_finish(h, len);
    if STACKS.get_ptr(id).is_some() {
        return id;
    }
    unsafe { (*buf).first_ns = aya_ebpf::helpers::bpf_ktime_get_ns() };
    // By reference, whatever clippy says: `*buf` would copy the 528-byte
    // trace onto the 512-byte BPF stack.
    #[allow(clippy::needless_borrows_for_generic_args)]
    let stored = STACKS.insert(id, unsafe { &*buf }, BPF_NOEXIST as u64);
    match stored {
        Ok(()) => id,
        // Another CPU stored the same stack in between.
        Err(e) if e == -EEXIST => id,
        Err(_) => {
            bump(counters::STACKS_DROPPED);
            NO_STACK
        }
    }
}
