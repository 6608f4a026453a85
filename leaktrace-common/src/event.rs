//! Events the programs send to userspace through the ring buffer.
//!
//! Only process lifecycle and range operations travel as events: single
//! acquisitions and releases stay in the kernel maps, so matched pairs cost
//! userspace nothing. Every event starts with [`EventHeader`]; the loader
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

crate::user_pod!(EventHeader, ExitEvent, ExecEvent, CloseRangeEvent, CodeMappedEvent, ForkEvent);
