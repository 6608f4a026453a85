//! File descriptors: the outstanding-fd map's key and value, resource types,
//! and what each syscall does to a process's fd table.
//!
//! [`classify`] is the whole syscall table of the fd tracker. It is pure so the
//! same code runs in the eBPF program and in host unit tests.

use crate::syscalls as sc;

/// Key of the outstanding-fd map. Threads share one fd table, so the key is
/// the process (tgid), never the thread. `gen` is the process's start stamp
/// (see [`crate::process::ProcState`]): a reused pid gets a new one, so it never
/// sees or releases an old process's entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdKey {
    pub tgid: u32,
    pub fd: u32,
    pub gen: u64,
}
const _: () = assert!(core::mem::size_of::<FdKey>() == 16);

/// Value of the outstanding-fd map: one acquisition not yet released.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdEntry {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at acquisition.
    pub acquired_ns: u64,
    /// Key in the stack map, or [`crate::stack::NO_STACK`].
    pub stack_id: u64,
    /// Thread that acquired it.
    pub tid: u32,
    /// The process image (number of execs) the stack's addresses belong to.
    pub exec_seq: u32,
    /// Syscall that acquired it.
    pub syscall: u16,
    /// One of [`Resource`] as `u8`.
    pub resource: u8,
    /// [`FLAG_CLOEXEC`] and [`FLAG_STACK_LOST`].
    pub flags: u8,
    /// For sockets: the family and type (`crate::socket`), 0 when unknown.
    pub sock_family: u16,
    pub sock_type: u16,
    /// For TCP sockets followed as connections: the `struct sock`, the key
    /// of their entry in the TCP map (removed with this entry); else 0.
    pub sk: u64,
}
const _: () = assert!(core::mem::size_of::<FdEntry>() == 40);

/// The fd is closed by a successful exec.
pub const FLAG_CLOEXEC: u8 = 1;
/// No stack could be stored for this acquisition (counted separately).
pub const FLAG_STACK_LOST: u8 = 2;

crate::user_pod!(FdKey, FdEntry);

/// What kind of object an fd refers to, as far as the acquiring syscall says.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// A dup of an fd the tracker does not know; userspace decides from
    /// /proc when it can.
    Unknown = 0,
    File = 1,
    Socket = 2,
    Pipe = 3,
    EventFd = 4,
    Epoll = 5,
    TimerFd = 6,
    SignalFd = 7,
    Inotify = 8,
    MemFd = 9,
    PidFd = 10,
    Fanotify = 11,
    UserFaultFd = 12,
    PerfEvent = 13,
    IoUring = 14,
    Mount = 15,
}

impl Resource {
    pub const fn from_u8(v: u8) -> Resource {
        match v {
            1 => Resource::File,
            2 => Resource::Socket,
            3 => Resource::Pipe,
            4 => Resource::EventFd,
            5 => Resource::Epoll,
            6 => Resource::TimerFd,
            7 => Resource::SignalFd,
            8 => Resource::Inotify,
            9 => Resource::MemFd,
            10 => Resource::PidFd,
            11 => Resource::Fanotify,
            12 => Resource::UserFaultFd,
            13 => Resource::PerfEvent,
            14 => Resource::IoUring,
            15 => Resource::Mount,
            _ => Resource::Unknown,
        }
    }
}

/// Where the close-on-exec flag of a new fd comes from: `set`, unless
/// `open_how` is not 0 (openat2), when it is in `open_how.flags`, the first
/// `u64` of the struct at that user address.
///
/// Two fields rather than an enum with data: an enum's payload is undefined
/// in its other variants, and the eBPF program's match on one left a register
/// unset on a path the verifier of Linux 6.1 cannot rule out (it does not
/// narrow [0, 1] to 1 after `!= 0`), so it refused the program ("R3 !read_ok").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cloexec {
    pub set: bool,
    pub open_how: u64,
}

impl Cloexec {
    pub const NO: Cloexec = Cloexec { set: false, open_how: 0 };
    pub const YES: Cloexec = Cloexec { set: true, open_how: 0 };

    const fn when(set: bool) -> Cloexec {
        Cloexec { set, open_how: 0 }
    }

    pub const fn from_open_how(open_how: u64) -> Cloexec {
        Cloexec { set: false, open_how }
    }
}

/// The effect of one completed syscall on the calling process's fd table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdOp {
    /// Nothing the tracker follows (including every failed call).
    Nothing,
    /// A new fd.
    Acquire {
        fd: u32,
        resource: Resource,
        cloexec: Cloexec,
    },
    /// Two new fds written to the `int[2]` at this user address (pipe, socketpair).
    AcquirePair {
        fds_at: u64,
        resource: Resource,
        cloexec: Cloexec,
    },
    /// `new` now refers to what `old` refers to. With `replaces`, `new` may
    /// have been open before and is released first (dup2/dup3).
    Dup {
        old: u32,
        new: u32,
        cloexec: Cloexec,
        replaces: bool,
    },
    Release {
        fd: u32,
    },
    /// close_range: userspace applies it to entries older than the call.
    CloseRange {
        first: u32,
        last: u32,
        flags: u32,
    },
    SetCloexec {
        fd: u32,
        cloexec: bool,
    },
    /// A file was mapped executable: the process's code mappings changed.
    CodeMapped,
}

/// What close(2) or close_range(2) with these arguments will do, decided
/// when the call starts.
///
/// Releases are applied at syscall entry, not exit: once a close has freed
/// fd M, another thread can be handed M and finish its syscall first, and a
/// release applied at the close's exit would then take the new holder's
/// entry. At entry the entry is certainly the old one. close() frees the
/// descriptor whatever it returns, except EBADF for an fd that was not open
/// and so has no entry (fs/open.c: `file_close_fd` precedes `filp_flush`).
// Inlined: called out of line, LLVM may keep values in argument registers
// across the call, which the eBPF verifier rejects.
#[inline(always)]
pub fn classify_entry(nr: u64, args: &[u64; 6]) -> FdOp {
    let known_flags = u64::from(sc::CLOSE_RANGE_UNSHARE | sc::CLOSE_RANGE_CLOEXEC);
    match nr {
        sc::CLOSE => FdOp::Release { fd: args[0] as u32 },
        // Unknown flags make the call fail (EINVAL) without closing anything.
        sc::CLOSE_RANGE if args[2] & !known_flags == 0 => {
            FdOp::CloseRange { first: args[0] as u32, last: args[1] as u32, flags: args[2] as u32 }
        }
        _ => FdOp::Nothing,
    }
}

/// Whether [`classify`] or the mappings' `classify_exit` can see anything in
/// syscall `nr`: the exit program reads the caller's registers only then (a
/// traced process's reads and writes cost it one 8-byte read).
#[inline(always)]
pub fn exit_matters(nr: u64) -> bool {
    matches!(
        nr,
        sc::OPEN
            | sc::OPENAT
            | sc::OPEN_BY_HANDLE_AT
            | sc::OPENAT2
            | sc::CREAT
            | sc::SOCKET
            | sc::ACCEPT
            | sc::ACCEPT4
            | sc::SOCKETPAIR
            | sc::PIPE
            | sc::PIPE2
            | sc::DUP
            | sc::DUP2
            | sc::DUP3
            | sc::FCNTL
            | sc::IOCTL
            | sc::EVENTFD
            | sc::EVENTFD2
            | sc::EPOLL_CREATE
            | sc::EPOLL_CREATE1
            | sc::TIMERFD_CREATE
            | sc::SIGNALFD
            | sc::SIGNALFD4
            | sc::INOTIFY_INIT
            | sc::INOTIFY_INIT1
            | sc::MEMFD_CREATE
            | sc::MEMFD_SECRET
            | sc::PIDFD_OPEN
            | sc::PIDFD_GETFD
            | sc::FANOTIFY_INIT
            | sc::USERFAULTFD
            | sc::PERF_EVENT_OPEN
            | sc::IO_URING_SETUP
            | sc::OPEN_TREE
            | sc::FSOPEN
            | sc::FSPICK
            | sc::FSMOUNT
            | sc::MMAP
            | sc::MREMAP
    )
}

/// What syscall `nr` with arguments `args`, having returned `ret`, did to the
/// fd table. Failed calls are not acquisitions. Releases by close and
/// close_range are decided at entry ([`classify_entry`]).
// Inlined: called out of line, LLVM may keep values in argument registers
// across the call, which the eBPF verifier rejects.
#[inline(always)]
pub fn classify(nr: u64, args: &[u64; 6], ret: i64) -> FdOp {
    if sc::is_error(ret) {
        return FdOp::Nothing;
    }
    let fd = ret as u32;
    let acquire = |resource, cloexec| FdOp::Acquire { fd, resource, cloexec };
    let flag = |arg: u64, bit: u64| Cloexec::when(arg & bit != 0);
    use Resource as R;
    match nr {
        sc::OPEN => acquire(R::File, flag(args[1], sc::O_CLOEXEC)),
        sc::OPENAT | sc::OPEN_BY_HANDLE_AT => acquire(R::File, flag(args[2], sc::O_CLOEXEC)),
        sc::OPENAT2 => acquire(R::File, Cloexec::from_open_how(args[2])),
        sc::CREAT => acquire(R::File, Cloexec::NO),
        sc::SOCKET => acquire(R::Socket, flag(args[1], sc::O_CLOEXEC)),
        sc::ACCEPT => acquire(R::Socket, Cloexec::NO),
        sc::ACCEPT4 => acquire(R::Socket, flag(args[3], sc::O_CLOEXEC)),
        sc::SOCKETPAIR => {
            FdOp::AcquirePair { fds_at: args[3], resource: R::Socket, cloexec: flag(args[1], sc::O_CLOEXEC) }
        }
        sc::PIPE => FdOp::AcquirePair { fds_at: args[0], resource: R::Pipe, cloexec: Cloexec::NO },
        sc::PIPE2 => FdOp::AcquirePair { fds_at: args[0], resource: R::Pipe, cloexec: flag(args[1], sc::O_CLOEXEC) },
        sc::DUP => FdOp::Dup { old: args[0] as u32, new: fd, cloexec: Cloexec::NO, replaces: false },
        // dup2(fd, fd) returns fd and changes nothing.
        sc::DUP2 if args[0] as u32 == fd => FdOp::Nothing,
        sc::DUP2 => FdOp::Dup { old: args[0] as u32, new: fd, cloexec: Cloexec::NO, replaces: true },
        sc::DUP3 => FdOp::Dup { old: args[0] as u32, new: fd, cloexec: flag(args[2], sc::O_CLOEXEC), replaces: true },
        sc::FCNTL => match args[1] {
            sc::F_DUPFD => FdOp::Dup { old: args[0] as u32, new: fd, cloexec: Cloexec::NO, replaces: false },
            sc::F_DUPFD_CLOEXEC => FdOp::Dup { old: args[0] as u32, new: fd, cloexec: Cloexec::YES, replaces: false },
            sc::F_SETFD => FdOp::SetCloexec { fd: args[0] as u32, cloexec: args[2] & sc::FD_CLOEXEC != 0 },
            _ => FdOp::Nothing,
        },
        sc::IOCTL => match args[1] & 0xffff_ffff {
            sc::FIOCLEX => FdOp::SetCloexec { fd: args[0] as u32, cloexec: true },
            sc::FIONCLEX => FdOp::SetCloexec { fd: args[0] as u32, cloexec: false },
            _ => FdOp::Nothing,
        },
        sc::EVENTFD => acquire(R::EventFd, Cloexec::NO),
        sc::EVENTFD2 => acquire(R::EventFd, flag(args[1], sc::O_CLOEXEC)),
        sc::EPOLL_CREATE => acquire(R::Epoll, Cloexec::NO),
        sc::EPOLL_CREATE1 => acquire(R::Epoll, flag(args[0], sc::O_CLOEXEC)),
        sc::TIMERFD_CREATE => acquire(R::TimerFd, flag(args[1], sc::O_CLOEXEC)),
        // signalfd on an existing signalfd (first argument not -1) only
        // changes its mask and returns the same fd.
        sc::SIGNALFD | sc::SIGNALFD4 if args[0] as i32 != -1 => FdOp::Nothing,
        sc::SIGNALFD => acquire(R::SignalFd, Cloexec::NO),
        sc::SIGNALFD4 => acquire(R::SignalFd, flag(args[3], sc::O_CLOEXEC)),
        sc::INOTIFY_INIT => acquire(R::Inotify, Cloexec::NO),
        sc::INOTIFY_INIT1 => acquire(R::Inotify, flag(args[0], sc::O_CLOEXEC)),
        sc::MEMFD_CREATE => acquire(R::MemFd, flag(args[1], sc::CLOEXEC_BIT0)),
        sc::MEMFD_SECRET => acquire(R::MemFd, flag(args[0], sc::O_CLOEXEC)),
        // Both always set O_CLOEXEC (kernel/pid.c pidfd_create, pidfd_getfd).
        sc::PIDFD_OPEN => acquire(R::PidFd, Cloexec::YES),
        sc::PIDFD_GETFD => acquire(R::Unknown, Cloexec::YES),
        sc::FANOTIFY_INIT => acquire(R::Fanotify, flag(args[0], sc::CLOEXEC_BIT0)),
        sc::USERFAULTFD => acquire(R::UserFaultFd, flag(args[0], sc::O_CLOEXEC)),
        sc::PERF_EVENT_OPEN => acquire(R::PerfEvent, flag(args[4], sc::PERF_FLAG_FD_CLOEXEC)),
        // io_uring fds are always O_CLOEXEC (io_uring/io_uring.c io_uring_install_fd).
        sc::IO_URING_SETUP => acquire(R::IoUring, Cloexec::YES),
        sc::OPEN_TREE => acquire(R::Mount, flag(args[2], sc::O_CLOEXEC)),
        sc::FSOPEN | sc::FSPICK => acquire(R::Mount, flag(args[1], sc::CLOEXEC_BIT0)),
        sc::FSMOUNT => acquire(R::Mount, flag(args[1], sc::CLOEXEC_BIT0)),
        sc::MMAP if args[2] & sc::PROT_EXEC != 0 && args[4] as i32 >= 0 => FdOp::CodeMapped,
        _ => FdOp::Nothing,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// The exit program skips every syscall `exit_matters` rules out: none of
    /// them may be one that `classify` or `classify_exit` acts on, whatever
    /// the arguments.
    #[test]
    fn exit_matters_covers_everything_classified() {
        let interesting = [
            0u64,
            1,
            2,
            3,
            u64::MAX,
            sc::O_CLOEXEC,
            sc::PROT_EXEC,
            sc::F_DUPFD,
            sc::F_DUPFD_CLOEXEC,
            sc::F_SETFD,
            sc::FIOCLEX,
            sc::FIONCLEX,
        ];
        for nr in 0..1024u64 {
            if exit_matters(nr) {
                continue;
            }
            for &a in &interesting {
                for &b in &interesting {
                    let args = [a, b, a, b, a, b];
                    for ret in [0i64, 3, 1 << 40] {
                        assert_eq!(classify(nr, &args, ret), FdOp::Nothing, "nr {nr}");
                        assert_eq!(crate::mmap::classify_exit(nr, &args, ret), crate::mmap::ExitOp::Nothing, "nr {nr}");
                    }
                }
            }
        }
    }

    fn args(a: &[u64]) -> [u64; 6] {
        let mut out = [0u64; 6];
        out[..a.len()].copy_from_slice(a);
        out
    }

    #[test]
    fn failed_calls_acquire_nothing() {
        assert_eq!(classify(sc::OPENAT, &args(&[0, 0, 0]), -2), FdOp::Nothing);
        assert_eq!(classify(sc::SOCKET, &args(&[2, 1]), -24), FdOp::Nothing);
        assert_eq!(classify(sc::PIPE2, &args(&[0x1000, 0]), -14), FdOp::Nothing);
    }

    #[test]
    fn close_releases_at_entry_not_at_exit() {
        assert_eq!(classify_entry(sc::CLOSE, &args(&[7])), FdOp::Release { fd: 7 });
        assert_eq!(classify(sc::CLOSE, &args(&[7]), 0), FdOp::Nothing);
        assert_eq!(classify_entry(sc::OPENAT, &args(&[0, 0, 0])), FdOp::Nothing);
    }

    #[test]
    fn open_family_reads_cloexec_from_the_right_argument() {
        let ro = 0u64;
        assert_eq!(
            classify(sc::OPEN, &args(&[0, sc::O_CLOEXEC]), 3),
            FdOp::Acquire { fd: 3, resource: Resource::File, cloexec: Cloexec::YES }
        );
        assert_eq!(
            classify(sc::OPENAT, &args(&[-100i64 as u64, 0, ro]), 4),
            FdOp::Acquire { fd: 4, resource: Resource::File, cloexec: Cloexec::NO }
        );
        assert_eq!(
            classify(sc::OPENAT, &args(&[-100i64 as u64, 0, sc::O_CLOEXEC | 2]), 4),
            FdOp::Acquire { fd: 4, resource: Resource::File, cloexec: Cloexec::YES }
        );
        assert_eq!(
            classify(sc::OPENAT2, &args(&[0, 0, 0xdead0]), 5),
            FdOp::Acquire { fd: 5, resource: Resource::File, cloexec: Cloexec::from_open_how(0xdead0) }
        );
        assert_eq!(
            classify(sc::CREAT, &args(&[0, 0o644]), 6),
            FdOp::Acquire { fd: 6, resource: Resource::File, cloexec: Cloexec::NO }
        );
    }

    #[test]
    fn pairs_come_from_user_memory() {
        assert_eq!(
            classify(sc::PIPE2, &args(&[0x7000, sc::O_CLOEXEC]), 0),
            FdOp::AcquirePair { fds_at: 0x7000, resource: Resource::Pipe, cloexec: Cloexec::YES }
        );
        assert_eq!(
            classify(sc::SOCKETPAIR, &args(&[1, 1, 0, 0x8000]), 0),
            FdOp::AcquirePair { fds_at: 0x8000, resource: Resource::Socket, cloexec: Cloexec::NO }
        );
    }

    #[test]
    fn dup_family() {
        assert_eq!(
            classify(sc::DUP, &args(&[3]), 9),
            FdOp::Dup { old: 3, new: 9, cloexec: Cloexec::NO, replaces: false }
        );
        assert_eq!(classify(sc::DUP2, &args(&[3, 3]), 3), FdOp::Nothing);
        assert_eq!(
            classify(sc::DUP2, &args(&[3, 5]), 5),
            FdOp::Dup { old: 3, new: 5, cloexec: Cloexec::NO, replaces: true }
        );
        assert_eq!(
            classify(sc::DUP3, &args(&[3, 5, sc::O_CLOEXEC]), 5),
            FdOp::Dup { old: 3, new: 5, cloexec: Cloexec::YES, replaces: true }
        );
        assert_eq!(
            classify(sc::FCNTL, &args(&[3, sc::F_DUPFD_CLOEXEC, 10]), 10),
            FdOp::Dup { old: 3, new: 10, cloexec: Cloexec::YES, replaces: false }
        );
        assert_eq!(
            classify(sc::FCNTL, &args(&[3, sc::F_DUPFD, 10]), 11),
            FdOp::Dup { old: 3, new: 11, cloexec: Cloexec::NO, replaces: false }
        );
    }

    #[test]
    fn cloexec_changes() {
        assert_eq!(classify(sc::FCNTL, &args(&[4, sc::F_SETFD, 1]), 0), FdOp::SetCloexec { fd: 4, cloexec: true });
        assert_eq!(classify(sc::FCNTL, &args(&[4, sc::F_SETFD, 0]), 0), FdOp::SetCloexec { fd: 4, cloexec: false });
        assert_eq!(classify(sc::FCNTL, &args(&[4, 3, 0]), 2), FdOp::Nothing, "F_GETFL");
        assert_eq!(classify(sc::IOCTL, &args(&[4, sc::FIOCLEX]), 0), FdOp::SetCloexec { fd: 4, cloexec: true });
        assert_eq!(
            classify_entry(sc::CLOSE_RANGE, &args(&[3, u32::MAX as u64, 4])),
            FdOp::CloseRange { first: 3, last: u32::MAX, flags: 4 }
        );
        assert_eq!(classify_entry(sc::CLOSE_RANGE, &args(&[3, 9, 0x80])), FdOp::Nothing, "EINVAL: unknown flag");
        assert_eq!(classify(sc::CLOSE_RANGE, &args(&[3, 9, 0]), 0), FdOp::Nothing);
    }

    #[test]
    fn signalfd_on_existing_fd_is_not_an_acquisition() {
        assert_eq!(classify(sc::SIGNALFD4, &args(&[5, 0, 8, 0]), 5), FdOp::Nothing);
        assert_eq!(
            classify(sc::SIGNALFD4, &args(&[-1i32 as u32 as u64, 0, 8, sc::O_CLOEXEC]), 6),
            FdOp::Acquire { fd: 6, resource: Resource::SignalFd, cloexec: Cloexec::YES }
        );
    }

    #[test]
    fn always_cloexec_kinds() {
        for nr in [sc::PIDFD_OPEN, sc::PIDFD_GETFD, sc::IO_URING_SETUP] {
            match classify(nr, &args(&[]), 3) {
                FdOp::Acquire { cloexec, .. } => assert_eq!(cloexec, Cloexec::YES, "nr {nr}"),
                other => panic!("nr {nr}: {other:?}"),
            }
        }
        assert_eq!(
            classify(sc::MEMFD_CREATE, &args(&[0, 1]), 3),
            FdOp::Acquire { fd: 3, resource: Resource::MemFd, cloexec: Cloexec::YES }
        );
    }

    #[test]
    fn code_mappings_are_file_backed_and_executable() {
        let prot_rx = 5;
        assert_eq!(classify(sc::MMAP, &args(&[0, 4096, prot_rx, 2, 3, 0]), 0x7f00_0000_0000), FdOp::CodeMapped);
        assert_eq!(
            classify(sc::MMAP, &args(&[0, 4096, prot_rx, 0x22, -1i32 as u32 as u64, 0]), 0x7f00_0000_0000),
            FdOp::Nothing,
            "anonymous"
        );
        assert_eq!(classify(sc::MMAP, &args(&[0, 4096, 1, 2, 3, 0]), 0x7f00_0000_0000), FdOp::Nothing);
        assert_eq!(classify(sc::MMAP, &args(&[0, 4096, prot_rx, 2, 3, 0]), -12), FdOp::Nothing);
    }

    #[test]
    fn resource_codes_round_trip() {
        for v in 0..=15u8 {
            assert_eq!(Resource::from_u8(v) as u8, v);
        }
        assert_eq!(Resource::from_u8(200), Resource::Unknown);
    }
}
