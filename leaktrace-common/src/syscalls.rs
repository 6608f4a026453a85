//! x86_64 syscall numbers and flag values the fd tracker interprets
//! (arch/x86/entry/syscalls/syscall_64.tbl and the uapi headers).
//!
//! Only the native x86_64 ABI is decoded: the programs skip ia32 and x32
//! syscalls, whose numbers mean other calls.

pub const OPEN: u64 = 2;
pub const CLOSE: u64 = 3;
pub const MMAP: u64 = 9;
pub const MUNMAP: u64 = 11;
pub const MREMAP: u64 = 25;
pub const IOCTL: u64 = 16;
pub const PIPE: u64 = 22;
pub const DUP: u64 = 32;
pub const DUP2: u64 = 33;
pub const SOCKET: u64 = 41;
pub const ACCEPT: u64 = 43;
pub const SOCKETPAIR: u64 = 53;
pub const FCNTL: u64 = 72;
pub const CREAT: u64 = 85;
pub const EPOLL_CREATE: u64 = 213;
pub const INOTIFY_INIT: u64 = 253;
pub const OPENAT: u64 = 257;
pub const SIGNALFD: u64 = 282;
pub const TIMERFD_CREATE: u64 = 283;
pub const EVENTFD: u64 = 284;
pub const ACCEPT4: u64 = 288;
pub const SIGNALFD4: u64 = 289;
pub const EVENTFD2: u64 = 290;
pub const EPOLL_CREATE1: u64 = 291;
pub const DUP3: u64 = 292;
pub const PIPE2: u64 = 293;
pub const INOTIFY_INIT1: u64 = 294;
pub const PERF_EVENT_OPEN: u64 = 298;
pub const FANOTIFY_INIT: u64 = 300;
pub const OPEN_BY_HANDLE_AT: u64 = 304;
pub const MEMFD_CREATE: u64 = 319;
pub const USERFAULTFD: u64 = 323;
pub const IO_URING_SETUP: u64 = 425;
pub const OPEN_TREE: u64 = 428;
pub const FSOPEN: u64 = 430;
pub const FSMOUNT: u64 = 432;
pub const FSPICK: u64 = 433;
pub const PIDFD_OPEN: u64 = 434;
pub const CLOSE_RANGE: u64 = 436;
pub const OPENAT2: u64 = 437;
pub const PIDFD_GETFD: u64 = 438;
pub const MEMFD_SECRET: u64 = 447;

/// `O_CLOEXEC`; also the value of `SOCK_`, `EFD_`, `EPOLL_`, `TFD_`, `SFD_`,
/// `IN_` and `UFFD_` `CLOEXEC` and of `OPEN_TREE_CLOEXEC`.
pub const O_CLOEXEC: u64 = 0o2_000_000;
/// `MFD_CLOEXEC`, `FAN_CLOEXEC`, `FSOPEN_CLOEXEC`, `FSMOUNT_CLOEXEC`, `FSPICK_CLOEXEC`.
pub const CLOEXEC_BIT0: u64 = 1;
pub const PERF_FLAG_FD_CLOEXEC: u64 = 8;

pub const F_DUPFD: u64 = 0;
pub const F_SETFD: u64 = 2;
pub const F_DUPFD_CLOEXEC: u64 = 1030;
pub const FD_CLOEXEC: u64 = 1;

pub const FIONCLEX: u64 = 0x5450;
pub const FIOCLEX: u64 = 0x5451;

pub const CLOSE_RANGE_UNSHARE: u32 = 1 << 1;
pub const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

pub const PROT_EXEC: u64 = 4;

pub const EBADF: i64 = 9;
/// Syscalls return -4095..-1 for errors; anything else is a result.
pub const MAX_ERRNO: u64 = 4095;

/// True when a raw syscall return value is an error.
#[inline(always)]
pub fn is_error(ret: i64) -> bool {
    (ret as u64) > (u64::MAX - MAX_ERRNO)
}

/// `__USER_CS` on x86_64: the code segment of native 64-bit tasks. ia32 tasks
/// run with `__USER32_CS` (0x23) and their syscall numbers mean other calls.
pub const USER_CS_64: u64 = 0x33;
/// Set in the syscall number of x32 ABI calls.
pub const X32_SYSCALL_BIT: u64 = 0x4000_0000;
