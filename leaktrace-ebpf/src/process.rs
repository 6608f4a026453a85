//! Which processes are traced, and their lifecycle: fork adds children and
//! threads, exec starts a new image, the last thread's exit ends the process.

use core::intrinsics::{atomic_and, atomic_or, AtomicOrdering};

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns},
    programs::TracePointContext,
};
use leaktrace_common::{
    config::ABSENT,
    counters,
    event::{
        CodeMappedEvent, EventHeader, ExecEvent, ExitEvent, ForkEvent, KIND_CODE_MAPPED, KIND_EXEC, KIND_EXIT,
        KIND_FORK,
    },
    process::ProcState,
};

use crate::{
    config,
    counters::bump,
    events,
    maps::{PROCS, PROC_UNWIND, TRACED_PIDS},
};

#[inline(always)]
fn bit_word(pid: u32) -> Option<(*mut u64, u64)> {
    let word = TRACED_PIDS.get_ptr_mut(pid / 64)?;
    Some((word, 1u64 << (pid % 64)))
}

#[inline(always)]
fn bit_set(pid: u32) -> bool {
    match bit_word(pid) {
        // SAFETY: `word` is a live, aligned slot of the array map.
        Some((word, bit)) => {
            // An aligned 64-bit load is atomic on BPF; LLVM cannot select an
            // `atomic_load` for it.
            let bits = unsafe { core::ptr::read_volatile(word) };
            bits & bit != 0
        }
        None => false,
    }
}

/// With every process traced (`attach --all`, `daemon`), a pid's bit means
/// the opposite: userspace filtered the process out (`daemon --comm` and
/// friends), and so are the children it forks until one execs.
#[inline(always)]
pub(crate) fn is_traced(pid: u32) -> bool {
    if config::trace_all() {
        // Not the tracer itself: its own reads of /proc would be traced.
        return pid != config::tracer_tgid() && !bit_set(pid);
    }
    bit_set(pid)
}

/// A process userspace filtered out while every process is traced.
#[inline(always)]
fn filtered_out(pid: u32) -> bool {
    config::trace_all() && pid != config::tracer_tgid() && bit_set(pid)
}

/// The state of a traced process. With every process traced (`attach
/// --all`), processes that were running before tracing began have none
/// until their first acquisition, which makes one: its generation is that
/// moment.
#[inline(always)]
pub(crate) fn state(tgid: u32) -> Option<&'static ProcState> {
    if let Some(state) = unsafe { PROCS.get(tgid) } {
        return Some(state);
    }
    if !config::trace_all() {
        return None;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let state = ProcState { gen: now, exec_seq: 0, _pad: 0 };
    // Another thread may have made it first: then its state is the one.
    match PROCS.insert(tgid, state, BPF_NOEXIST as u64) {
        Ok(()) => {
            // Userspace reads the new process's code mappings and publishes
            // their unwinding tables, as for code mapped by a traced process;
            // until then its stacks are walked with frame pointers.
            let event = CodeMappedEvent {
                header: EventHeader { kind: KIND_CODE_MAPPED, tgid, gen: now, ts_ns: now },
                tid: bpf_get_current_pid_tgid() as u32,
                exec_seq: 0,
            };
            events::send(&event);
        }
        Err(_) if unsafe { PROCS.get(tgid) }.is_none() => {
            bump(counters::PROCS_DROPPED);
            return None;
        }
        Err(_) => {}
    }
    unsafe { PROCS.get(tgid) }
}

// Bits of different pids share words and are changed on several CPUs at once,
// hence atomic read-modify-writes. The intrinsics are used directly because
// the bpfel target declares no compare-and-swap, which hides `fetch_or` and
// `fetch_and` of `AtomicU64`, while BPF itself has atomic or/and (ISA v3).
#[inline(always)]
fn set_traced(pid: u32) {
    if let Some((word, bit)) = bit_word(pid) {
        unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(word, bit) };
    }
}

#[inline(always)]
fn clear_traced(pid: u32) {
    if let Some((word, bit)) = bit_word(pid) {
        unsafe { atomic_and::<u64, u64, { AtomicOrdering::Relaxed }>(word, !bit) };
    }
}

/// `sched:sched_process_fork`, in the parent's context, before the child runs.
pub(crate) fn try_fork(ctx: &TracePointContext) -> Result<(), i64> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_traced(tgid) {
        if filtered_out(tgid) {
            let child: u32 = config::field(ctx, config::offsets().fork_child_pid)?;
            set_traced(child);
        }
        return Ok(());
    }
    let child: u32 = config::field(ctx, config::offsets().fork_child_pid)?;
    // The child may be a thread (its tid) or a process (its tgid): the record
    // does not say. Both get state; a thread's is unused and dropped when it
    // exits. Overwriting a stale entry of a dead process with this pid is
    // what gives the new process a new generation.
    let now = unsafe { bpf_ktime_get_ns() };
    let state = ProcState { gen: now, exec_seq: 0, _pad: 0 };
    if PROCS.insert(child, state, BPF_ANY as u64).is_err() {
        bump(counters::PROCS_DROPPED);
        return Ok(());
    }
    // A stale bit of an earlier process with this pid must not filter the
    // child out.
    if config::trace_all() {
        clear_traced(child);
    } else {
        set_traced(child);
    }
    // Until it execs, a child runs its parent's mappings: it inherits the
    // parent's unwinding tables if they describe the parent's current image.
    // They are copied map to map by reference, whatever clippy says: `*maps`
    // would copy the 2,568-byte table onto the 512-byte BPF stack.
    #[allow(clippy::needless_borrows_for_generic_args)]
    if let (Some(parent), Some(maps)) = (unsafe { PROCS.get(tgid) }, PROC_UNWIND.get_ptr(tgid)) {
        if unsafe { (*maps).exec_seq } == parent.exec_seq
            && PROC_UNWIND.insert(child, unsafe { &*maps }, BPF_ANY as u64).is_ok()
        {
            if let Some(copy) = PROC_UNWIND.get_ptr_mut(child) {
                unsafe { (*copy).exec_seq = 0 };
            }
        }
    }
    let event = ForkEvent {
        header: EventHeader { kind: KIND_FORK, tgid: child, gen: now, ts_ns: now },
        parent_tgid: tgid,
        _pad: 0,
    };
    events::send(&event);
    Ok(())
}

/// `sched:sched_process_exec`, in the new image's context.
pub(crate) fn try_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if filtered_out(tgid) {
        // A new image is judged again (a shell that execs the service the
        // filter names): the process is traced as new, and userspace sees it
        // at its first acquisition, when its state is made.
        clear_traced(tgid);
        let _ = PROCS.remove(tgid);
        return Ok(());
    }
    if !is_traced(tgid) {
        return Ok(());
    }
    let offsets = config::offsets();
    let old_pid: u32 = config::field(ctx, offsets.exec_old_pid)?;
    // A non-leader thread that execs takes over the tgid; its old tid vanishes
    // without an exit event (fs/exec.c, de_thread)?.
    if old_pid != tgid {
        let _ = PROCS.remove(old_pid);
        let _ = PROC_UNWIND.remove(old_pid);
        clear_traced(old_pid);
    }
    // The old image's tables are useless now; userspace loads the new ones.
    let _ = PROC_UNWIND.remove(tgid);
    let Some(state) = PROCS.get_ptr_mut(tgid) else {
        return Ok(());
    };
    let (gen, exec_seq) = unsafe {
        (*state).exec_seq += 1;
        ((*state).gen, (*state).exec_seq)
    };
    let event = ExecEvent {
        header: EventHeader { kind: KIND_EXEC, tgid, gen, ts_ns: unsafe { bpf_ktime_get_ns() } },
        exec_seq,
        _pad: 0,
    };
    events::send(&event);
    Ok(())
}

/// `current->signal->live`, the threads of the current process not yet
/// exiting, when the kernel's BTF gave the offsets.
#[inline(always)]
fn live_threads() -> Option<i32> {
    let o = config::kernel_offsets();
    if o.task_signal == 0 {
        return None;
    }
    let task = unsafe { bpf_get_current_task() };
    let signal: u64 = crate::socket::read(task + o.task_signal as u64).ok()?;
    crate::socket::read(signal + o.signal_live as u64).ok()
}

/// `sched:sched_process_exit`, for every exiting thread.
pub(crate) fn try_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    let traced = is_traced(tgid);
    // A filtered-out process's state and bits go too, so its pid, reused,
    // starts afresh.
    if !traced && !filtered_out(tgid) {
        return Ok(());
    }
    let offsets = config::offsets();
    let group_dead = if offsets.exit_group_dead != ABSENT {
        config::field::<u8>(ctx, offsets.exit_group_dead)? != 0
    } else if let Some(live) = live_threads() {
        // Before Linux 6.16 the record has no group_dead, but do_exit has
        // already counted this thread out of signal->live: none left means
        // this is the last (two threads dying at once may both see none
        // and both send the exit, which userspace takes once).
        live == 0
    } else {
        // No BTF: the leader's exit stands for the process's (a leader that
        // calls pthread_exit early, or a thread's exec, is the cost).
        tid == tgid
    };
    if tid != tgid {
        let _ = PROCS.remove(tid);
        let _ = PROC_UNWIND.remove(tid);
        clear_traced(tid);
    }
    if !group_dead {
        return Ok(());
    }
    if let Some(state) = unsafe { PROCS.get(tgid) }.filter(|_| traced) {
        let event = ExitEvent {
            header: EventHeader { kind: KIND_EXIT, tgid, gen: state.gen, ts_ns: unsafe { bpf_ktime_get_ns() } },
        };
        events::send(&event);
    }
    let _ = PROCS.remove(tgid);
    let _ = PROC_UNWIND.remove(tgid);
    clear_traced(tgid);
    Ok(())
}
