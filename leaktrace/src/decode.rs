//! Decodes the records the programs send through the ring buffer. This is the
//! only place bytes from the kernel become typed values: each record's length
//! is checked against its kind before it is read.

use std::mem::size_of;

use leaktrace_common::event::{
    CloseRangeEvent, CodeMappedEvent, EventHeader, ExecEvent, ExitEvent, ForkEvent, MmapEvent, MremapDoneEvent,
    MremapStartEvent, MunmapEvent, KIND_CLOSE_RANGE, KIND_CODE_MAPPED, KIND_EXEC, KIND_EXIT, KIND_FORK, KIND_MMAP,
    KIND_MREMAP_DONE, KIND_MREMAP_START, KIND_MUNMAP,
};
use thiserror::Error;

use crate::proc_id::ProcId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Exit {
        proc: ProcId,
        at_ns: u64,
    },
    Exec {
        proc: ProcId,
        at_ns: u64,
        exec_seq: u32,
    },
    CloseRange {
        proc: ProcId,
        at_ns: u64,
        first: u32,
        last: u32,
        flags: u32,
    },
    CodeMapped {
        proc: ProcId,
        at_ns: u64,
        tid: u32,
        exec_seq: u32,
    },
    /// `child` may be a thread's tid rather than a new process.
    Fork {
        child: ProcId,
        parent_tgid: u32,
    },
    Mmap {
        proc: ProcId,
        at_ns: u64,
        event: MmapEvent,
    },
    Munmap {
        proc: ProcId,
        at_ns: u64,
        start: u64,
        len: u64,
    },
    MremapStart {
        proc: ProcId,
        at_ns: u64,
        event: MremapStartEvent,
    },
    MremapDone {
        proc: ProcId,
        at_ns: u64,
        tid: u32,
        result: i64,
    },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("event of {len} bytes is shorter than its header")]
    Short { len: usize },
    #[error("event kind {kind} needs {want} bytes, got {len}")]
    Truncated { kind: u32, want: usize, len: usize },
    #[error("unknown event kind {kind}")]
    UnknownKind { kind: u32 },
}

/// Reads a `T` from the start of `bytes`, which the caller checked is long enough.
fn read<T: Copy>(bytes: &[u8]) -> T {
    debug_assert!(bytes.len() >= size_of::<T>());
    // SAFETY: the length was checked and every `T` here is a `#[repr(C)]`
    // struct of integers, valid for any bit pattern; the ring buffer gives no
    // alignment guarantee beyond 8 bytes, hence the unaligned read.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

fn checked<T: Copy>(kind: u32, bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Truncated { kind, want: size_of::<T>(), len: bytes.len() });
    }
    Ok(read(bytes))
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < size_of::<EventHeader>() {
        return Err(DecodeError::Short { len: bytes.len() });
    }
    let header: EventHeader = read(bytes);
    let proc = ProcId { tgid: header.tgid, gen: header.gen };
    let at_ns = header.ts_ns;
    Ok(match header.kind {
        KIND_EXIT => {
            checked::<ExitEvent>(KIND_EXIT, bytes)?;
            Event::Exit { proc, at_ns }
        }
        KIND_EXEC => {
            let e: ExecEvent = checked(KIND_EXEC, bytes)?;
            Event::Exec { proc, at_ns, exec_seq: e.exec_seq }
        }
        KIND_CLOSE_RANGE => {
            let e: CloseRangeEvent = checked(KIND_CLOSE_RANGE, bytes)?;
            Event::CloseRange { proc, at_ns, first: e.first, last: e.last, flags: e.flags }
        }
        KIND_CODE_MAPPED => {
            let e: CodeMappedEvent = checked(KIND_CODE_MAPPED, bytes)?;
            Event::CodeMapped { proc, at_ns, tid: e.tid, exec_seq: e.exec_seq }
        }
        KIND_FORK => {
            let e: ForkEvent = checked(KIND_FORK, bytes)?;
            Event::Fork { child: proc, parent_tgid: e.parent_tgid }
        }
        KIND_MMAP => Event::Mmap { proc, at_ns, event: checked(KIND_MMAP, bytes)? },
        KIND_MUNMAP => {
            let e: MunmapEvent = checked(KIND_MUNMAP, bytes)?;
            Event::Munmap { proc, at_ns, start: e.start, len: e.len }
        }
        KIND_MREMAP_START => Event::MremapStart { proc, at_ns, event: checked(KIND_MREMAP_START, bytes)? },
        KIND_MREMAP_DONE => {
            let e: MremapDoneEvent = checked(KIND_MREMAP_DONE, bytes)?;
            Event::MremapDone { proc, at_ns, tid: e.tid, result: e.result }
        }
        kind => return Err(DecodeError::UnknownKind { kind }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain `#[repr(C)]` integer struct.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()).to_vec() }
    }

    fn header(kind: u32) -> EventHeader {
        EventHeader { kind, tgid: 4242, gen: 77, ts_ns: 123_456 }
    }

    const PROC: ProcId = ProcId { tgid: 4242, gen: 77 };

    #[test]
    fn every_kind_round_trips() {
        let exit = ExitEvent { header: header(KIND_EXIT) };
        assert_eq!(decode(&bytes_of(&exit)), Ok(Event::Exit { proc: PROC, at_ns: 123_456 }));

        let exec = ExecEvent { header: header(KIND_EXEC), exec_seq: 3, _pad: 0 };
        assert_eq!(decode(&bytes_of(&exec)), Ok(Event::Exec { proc: PROC, at_ns: 123_456, exec_seq: 3 }));

        let cr = CloseRangeEvent { header: header(KIND_CLOSE_RANGE), first: 3, last: u32::MAX, flags: 4, _pad: 0 };
        assert_eq!(
            decode(&bytes_of(&cr)),
            Ok(Event::CloseRange { proc: PROC, at_ns: 123_456, first: 3, last: u32::MAX, flags: 4 })
        );

        let cm = CodeMappedEvent { header: header(KIND_CODE_MAPPED), tid: 4243, exec_seq: 1 };
        assert_eq!(
            decode(&bytes_of(&cm)),
            Ok(Event::CodeMapped { proc: PROC, at_ns: 123_456, tid: 4243, exec_seq: 1 })
        );

        let fork = ForkEvent { header: header(KIND_FORK), parent_tgid: 4000, _pad: 0 };
        assert_eq!(decode(&bytes_of(&fork)), Ok(Event::Fork { child: PROC, parent_tgid: 4000 }));

        let mmap = MmapEvent {
            header: header(KIND_MMAP),
            start: 0x7f00_0000_0000,
            len: 8192,
            stack_id: 9,
            tid: 4243,
            exec_seq: 1,
            prot: 3,
            flags: 0x22,
            fd: -1,
            _pad: 0,
        };
        assert_eq!(decode(&bytes_of(&mmap)), Ok(Event::Mmap { proc: PROC, at_ns: 123_456, event: mmap }));

        let munmap = MunmapEvent { header: header(KIND_MUNMAP), start: 0x1000, len: 4096 };
        assert_eq!(
            decode(&bytes_of(&munmap)),
            Ok(Event::Munmap { proc: PROC, at_ns: 123_456, start: 0x1000, len: 4096 })
        );

        let start = MremapStartEvent {
            header: header(KIND_MREMAP_START),
            old: 0x1000,
            old_len: 4096,
            new_len: 8192,
            new_addr: 0,
            tid: 4243,
            flags: 1,
        };
        assert_eq!(decode(&bytes_of(&start)), Ok(Event::MremapStart { proc: PROC, at_ns: 123_456, event: start }));

        let done = MremapDoneEvent { header: header(KIND_MREMAP_DONE), result: -12, tid: 4243, _pad: 0 };
        assert_eq!(
            decode(&bytes_of(&done)),
            Ok(Event::MremapDone { proc: PROC, at_ns: 123_456, tid: 4243, result: -12 })
        );
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        assert_eq!(decode(&[1, 0, 0]), Err(DecodeError::Short { len: 3 }));
        let exec = bytes_of(&ExecEvent { header: header(KIND_EXEC), exec_seq: 1, _pad: 0 });
        assert_eq!(
            decode(&exec[..size_of::<EventHeader>()]),
            Err(DecodeError::Truncated { kind: KIND_EXEC, want: 32, len: 24 })
        );
        assert_eq!(decode(&bytes_of(&header(99))), Err(DecodeError::UnknownKind { kind: 99 }));
    }
}
