//! Applies what a syscall does to the caller's fd table to the
//! outstanding-fd map. What it does is decided by the pure
//! `leaktrace_common::fd::classify` (at exit) and `classify_entry`.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user},
    EbpfContext,
};
use leaktrace_common::{
    counters,
    event::{CloseRangeEvent, CodeMappedEvent, EventHeader, KIND_CLOSE_RANGE, KIND_CODE_MAPPED},
    fd::{Cloexec, FdEntry, FdKey, FdOp, Resource, FLAG_CLOEXEC, FLAG_STACK_LOST},
    process::ProcState,
    stack::NO_STACK,
    syscalls as sc,
};

use crate::{config, counters::bump, events, maps::OUTSTANDING, socket, stack, syscall::Caller, tcp};

const EEXIST: i64 = 17;
const SIGSTOP: u32 = 19;

#[inline(always)]
pub(crate) fn apply<C: EbpfContext>(ctx: &C, caller: &Caller, proc: &ProcState, nr: u64, op: FdOp) -> Result<(), i64> {
    let key = |fd: u32| FdKey { tgid: caller.tgid, fd, gen: proc.gen };
    match op {
        FdOp::Nothing => {}
        FdOp::Acquire { fd, resource, cloexec } => {
            if sampled_out() {
                return Ok(());
            }
            let cloexec = resolve_cloexec(cloexec);
            let stack_id = stack::capture(ctx, caller, proc);
            record(caller, proc, key(fd), nr, resource, cloexec, stack_id, (0, 0));
        }
        FdOp::AcquirePair { fds_at, resource, cloexec } => {
            // The kernel has already written the pair to user memory.
            let fds: [i32; 2] = match unsafe { bpf_probe_read_user(fds_at as *const [i32; 2]) } {
                Ok(fds) => fds,
                Err(e) => {
                    bump(counters::ACQUIRED);
                    bump(counters::ACQUIRED);
                    bump(counters::READ_ERRORS);
                    return Err(e as i64);
                }
            };
            // One draw for the pair: both ends are recorded, or neither.
            if sampled_out() {
                bump(counters::ACQUIRED);
                bump(counters::SAMPLED_OUT);
                return Ok(());
            }
            let cloexec = resolve_cloexec(cloexec);
            let stack_id = stack::capture(ctx, caller, proc);
            record(caller, proc, key(fds[0] as u32), nr, resource, cloexec, stack_id, (0, 0));
            record(caller, proc, key(fds[1] as u32), nr, resource, cloexec, stack_id, (0, 0));
        }
        FdOp::Dup { old, new, cloexec, replaces } => {
            if replaces && release(key(new)) {
                bump(counters::RELEASED);
            }
            // The copy refers to the same object as the original.
            let (resource, sock) = match unsafe { OUTSTANDING.get(key(old)) } {
                Some(entry) => (Resource::from_u8(entry.resource), (entry.sock_family, entry.sock_type)),
                None => (Resource::Unknown, (0, 0)),
            };
            if sampled_out() {
                return Ok(());
            }
            let cloexec = resolve_cloexec(cloexec);
            let stack_id = stack::capture(ctx, caller, proc);
            record(caller, proc, key(new), nr, resource, cloexec, stack_id, sock);
        }
        FdOp::Release { fd } => {
            if release(key(fd)) {
                bump(counters::RELEASED);
            }
        }
        FdOp::SetCloexec { fd, cloexec } => {
            if let Some(entry) = OUTSTANDING.get_ptr_mut(key(fd)) {
                unsafe {
                    if cloexec {
                        (*entry).flags |= FLAG_CLOEXEC;
                    } else {
                        (*entry).flags &= !FLAG_CLOEXEC;
                    }
                }
            }
        }
        FdOp::CloseRange { first, last, flags } => {
            // Walking an unbounded fd range is not possible here; userspace
            // releases the matching entries acquired before this timestamp,
            // taken at entry, before any number in the range can be reused.
            let event = CloseRangeEvent { header: header(KIND_CLOSE_RANGE, caller, proc), first, last, flags, _pad: 0 };
            events::send(&event);
        }
        FdOp::CodeMapped => {
            let event = CodeMappedEvent {
                header: header(KIND_CODE_MAPPED, caller, proc),
                tid: caller.tid,
                exec_seq: proc.exec_seq,
            };
            events::send(&event);
            if config::stop_on_code_map() {
                // The signal is taken on the way back to user space, before the
                // new code can run; the ptrace tracer reads the mappings and
                // suppresses it, so the program never sees it.
                unsafe { aya_ebpf::helpers::generated::bpf_send_signal_thread(SIGSTOP) };
            }
        }
    }
    Ok(())
}

/// `--sample N`: true for the acquisitions left out (N-1 in N on average),
/// which are counted but neither unwound nor stored. (An entry still under
/// the fd's number was released by a close_range or exec that userspace has
/// not applied yet: it will, from the event, so nothing is looked up here.)
#[inline(always)]
fn sampled_out() -> bool {
    let n = config::sample();
    if n <= 1 || unsafe { aya_ebpf::helpers::bpf_get_prandom_u32() } % n == 0 {
        return false;
    }
    bump(counters::ACQUIRED);
    bump(counters::SAMPLED_OUT);
    true
}

#[inline(always)]
fn header(kind: u32, caller: &Caller, proc: &ProcState) -> EventHeader {
    EventHeader { kind, tgid: caller.tgid, gen: proc.gen, ts_ns: unsafe { bpf_ktime_get_ns() } }
}

#[inline(always)]
fn resolve_cloexec(cloexec: Cloexec) -> bool {
    if cloexec.open_how == 0 {
        return cloexec.set;
    }
    match unsafe { bpf_probe_read_user(cloexec.open_how as *const u64) } {
        Ok(flags) => flags & sc::O_CLOEXEC != 0,
        Err(_) => {
            bump(counters::READ_ERRORS);
            false
        }
    }
}

/// `sock` is the socket family and type a dup inherits from its original.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn record(
    caller: &Caller,
    proc: &ProcState,
    key: FdKey,
    nr: u64,
    resource: Resource,
    cloexec: bool,
    stack_id: u64,
    sock: (u16, u16),
) {
    bump(counters::ACQUIRED);
    // A socket created or accepted (not a dup of one): what it is.
    let socket = if matches!(nr, sc::SOCKET | sc::SOCKETPAIR | sc::ACCEPT | sc::ACCEPT4) {
        socket::of_fd(key.fd).unwrap_or_else(|()| {
            bump(counters::READ_ERRORS);
            None
        })
    } else {
        None
    };
    let (sock_family, sock_type) = match &socket {
        Some(s) => (s.family, s.kind),
        None => sock,
    };
    let sk = match &socket {
        Some(s) if tcp::followed(s) => s.sk,
        _ => 0,
    };
    let mut flags = if cloexec { FLAG_CLOEXEC } else { 0 };
    if stack_id == NO_STACK {
        flags |= FLAG_STACK_LOST;
    }
    let entry = FdEntry {
        acquired_ns: unsafe { bpf_ktime_get_ns() },
        stack_id,
        tid: caller.tid,
        exec_seq: proc.exec_seq,
        syscall: nr as u16,
        resource: resource as u8,
        flags,
        sock_family,
        sock_type,
        sk,
    };
    let stored = match OUTSTANDING.insert(key, entry, BPF_NOEXIST as u64) {
        Ok(()) => true,
        // The number was handed out again, so its old holder was released in a
        // way userspace has not applied yet (close_range, exec).
        Err(e) if e as i64 == -EEXIST => {
            bump(counters::REPLACED);
            bump(counters::RELEASED);
            release(key);
            let ok = OUTSTANDING.insert(key, entry, BPF_ANY as u64).is_ok();
            if !ok {
                bump(counters::DROPPED_MAP_FULL);
            }
            ok
        }
        Err(_) => {
            bump(counters::DROPPED_MAP_FULL);
            false
        }
    };
    if stored && sk != 0 && tcp::link(&key, entry.acquired_ns, sk, sock_family).is_err() {
        bump(counters::READ_ERRORS);
    }
}

/// Removes an fd's entry, and its connection's: once the fd is closed, the
/// socket's remaining states (FIN_WAIT, TIME_WAIT) are the kernel's, not the
/// process's. True when there was an entry.
#[inline(always)]
fn release(key: FdKey) -> bool {
    let Some(entry) = (unsafe { OUTSTANDING.get(key) }) else {
        return false;
    };
    if entry.sk != 0 {
        tcp::forget(entry.sk);
    }
    OUTSTANDING.remove(key).is_ok()
}
