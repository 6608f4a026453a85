//! Memory mapping operations of traced processes, sent to userspace as
//! events (see `leaktrace_common::mmap` for why they do not stay here).
//! Releases are stamped when the call starts, acquisitions when it returns,
//! so a range freed by one thread and mapped again by another is ordered.

use aya_ebpf::{helpers::bpf_ktime_get_ns, EbpfContext};
use leaktrace_common::{
    event::{
        EventHeader, MmapEvent, MremapDoneEvent, MremapStartEvent, MunmapEvent, KIND_MMAP, KIND_MREMAP_DONE,
        KIND_MREMAP_START, KIND_MUNMAP,
    },
    mmap::{EntryOp, ExitOp},
    process::ProcState,
};

use crate::{events, stack, syscall::Caller};

#[inline(always)]
fn header(kind: u32, caller: &Caller, proc: &ProcState) -> EventHeader {
    EventHeader { kind, tgid: caller.tgid, gen: proc.gen, ts_ns: unsafe { bpf_ktime_get_ns() } }
}

/// munmap and mremap, as they start.
#[inline(always)]
pub(crate) fn on_entry(caller: &Caller, proc: &ProcState, op: EntryOp) {
    match op {
        EntryOp::Nothing => {}
        EntryOp::Unmap { start, len } => {
            events::send_batched(&MunmapEvent { header: header(KIND_MUNMAP, caller, proc), start, len });
        }
        EntryOp::RemapStart { old, old_len, new_len, flags, new_addr } => {
            events::send_batched(&MremapStartEvent {
                header: header(KIND_MREMAP_START, caller, proc),
                old,
                old_len,
                new_len,
                new_addr,
                tid: caller.tid,
                flags: flags as u32,
            });
        }
    }
}

/// mmap and mremap, as they return.
#[inline(always)]
pub(crate) fn on_exit<C: EbpfContext>(ctx: &C, caller: &Caller, proc: &ProcState, op: ExitOp) {
    match op {
        ExitOp::Nothing => {}
        ExitOp::Map { start, len, prot, flags, fd } => {
            let stack_id = stack::capture(ctx, caller, proc);
            events::send_batched(&MmapEvent {
                header: header(KIND_MMAP, caller, proc),
                start,
                len,
                stack_id,
                tid: caller.tid,
                exec_seq: proc.exec_seq,
                prot: prot as u32,
                flags: flags as u32,
                fd,
                _pad: 0,
            });
        }
        ExitOp::RemapDone { result } => {
            events::send_batched(&MremapDoneEvent {
                header: header(KIND_MREMAP_DONE, caller, proc),
                result,
                tid: caller.tid,
                _pad: 0,
            });
        }
    }
}
