//! Captures the user stack of an acquisition and stores it once per distinct
//! stack.

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::generated::bpf_get_stack,
    EbpfContext,
};
use leaktrace_common::{
    counters,
    stack::{hash_finish, hash_step, HASH_SEED, MAX_FRAMES, NO_STACK},
};

use crate::{
    counters::bump,
    maps::{STACKS, STACK_SCRATCH},
};

const EEXIST: i32 = 17;

/// Returns the stack's id, or [`NO_STACK`] when none could be stored (counted).
///
/// `bpf_get_stack` walks frame pointers from the user registers saved at
/// syscall entry (arch/x86/events/core.c, perf_callchain_user).
#[inline(always)]
pub fn capture<C: EbpfContext>(ctx: &C) -> u64 {
    let Some(buf) = STACK_SCRATCH.get_ptr_mut(0) else {
        return NO_STACK;
    };
    let size = (MAX_FRAMES * 8) as u32;
    let written = unsafe { bpf_get_stack(ctx.as_ptr(), (*buf).ips.as_mut_ptr().cast(), size, BPF_F_USER_STACK as u64) };
    if written < 0 {
        bump(counters::STACK_ERRORS);
        return NO_STACK;
    }
    let len = (written as u32 / 8).min(MAX_FRAMES as u32);
    let mut h = HASH_SEED;
    for i in 0..MAX_FRAMES {
        if i as u32 >= len {
            break;
        }
        h = hash_step(h, unsafe { *(*buf).ips.as_ptr().add(i) });
    }
    let id = hash_finish(h, len);
    unsafe { (*buf).len = len };
    if STACKS.get_ptr(id).is_some() {
        return id;
    }
    match STACKS.insert(id, unsafe { &*buf }, BPF_NOEXIST as u64) {
        Ok(()) => id,
        // Another CPU stored the same stack in between.
        Err(e) if e as i32 == -EEXIST => id,
        Err(_) => {
            bump(counters::STACKS_DROPPED);
            NO_STACK
        }
    }
}
