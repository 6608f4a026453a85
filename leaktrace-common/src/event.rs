//! Events the programs send to userspace through the ring buffer.
//!
//! Process lifecycle and fd range operations travel as events: single fd
//! acquisitions and releases stay in the kernel maps, so matched pairs cost
//! userspace nothing. Memory mapping operations all travel as events (see
//! `crate::mmap` for why). Every event starts with [`EventHeader`]; the loader
//! decodes them in one place, after checking the length.

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// One of the `KIND_*` constants.
    pub kind: u32,
    pub tgid: u32,
    pub gen: u64,
    /// `bpf_ktime_get_ns()` when it happened.
    pub ts_ns: u64,
}
const _: () = assert!(core::mem::size_of::<EventHeader>() == 24);

/// The last thread of a traced process exited (or, on kernels without
/// `group_dead`, its leader did). Its outstanding entries are now leaks.
pub const KIND_EXIT: u32 = 1;
/// A traced process completed an exec: its FD_CLOEXEC entries older than the
/// event are released, and its image changed.
pub const KIND_EXEC: u32 = 2;
/// close_range(2) returned success.
pub const KIND_CLOSE_RANGE: u32 = 3;
/// A traced process mapped a file executable (dynamic loader, dlopen).
pub const KIND_CODE_MAPPED: u32 = 4;
/// A traced process created a task that is now traced too: a child process
/// or a thread (the fork tracepoint cannot tell them apart).
pub const KIND_FORK: u32 = 5;
/// mmap succeeded (stamped at its return).
pub const KIND_MMAP: u32 = 6;
/// munmap is called (stamped at its start).
pub const KIND_MUNMAP: u32 = 7;
/// mremap is called (stamped at its start): the old range leaves.
pub const KIND_MREMAP_START: u32 = 8;
/// mremap returned: where the range went, or that it stayed (an error).
pub const KIND_MREMAP_DONE: u32 = 9;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    pub header: EventHeader,
}
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 24);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// The process's exec count after this exec.
    pub exec_seq: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 32);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseRangeEvent {
    pub header: EventHeader,
    pub first: u32,
    pub last: u32,
    /// `CLOSE_RANGE_*` flags as passed.
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<CloseRangeEvent>() == 40);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeMappedEvent {
    pub header: EventHeader,
    pub tid: u32,
    pub exec_seq: u32,
}
const _: () = assert!(core::mem::size_of::<CodeMappedEvent>() == 32);

/// `header.tgid` and `header.gen` are the new task's pid and generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub parent_tgid: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 32);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmapEvent {
    pub header: EventHeader,
    pub start: u64,
    /// As passed (userspace rounds it to the mapping's pages).
    pub len: u64,
    /// Key in the stack map, or [`crate::stack::NO_STACK`].
    pub stack_id: u64,
    pub tid: u32,
    pub exec_seq: u32,
    pub prot: u32,
    pub flags: u32,
    /// The mapped file's fd, -1 for anonymous memory.
    pub fd: i32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<MmapEvent>() == 72);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MunmapEvent {
    pub header: EventHeader,
    pub start: u64,
    pub len: u64,
}
const _: () = assert!(core::mem::size_of::<MunmapEvent>() == 40);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MremapStartEvent {
    pub header: EventHeader,
    pub old: u64,
    pub old_len: u64,
    pub new_len: u64,
    pub new_addr: u64,
    pub tid: u32,
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<MremapStartEvent>() == 64);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MremapDoneEvent {
    pub header: EventHeader,
    /// The new address, or a negative errno.
    pub result: i64,
    pub tid: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<MremapDoneEvent>() == 40);

crate::user_pod!(
    EventHeader,
    ExitEvent,
    ExecEvent,
    CloseRangeEvent,
    CodeMappedEvent,
    ForkEvent,
    MmapEvent,
    MunmapEvent,
    MremapStartEvent,
    MremapDoneEvent
);
