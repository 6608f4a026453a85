//! Every map of the kernel side. Sizes here are defaults; the loader sets the
//! real ones (`--max-entries` and friends) before loading.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use leaktrace_common::{
    counters,
    fd::{FdEntry, FdKey},
    process::ProcState,
    stack::StackTrace,
    tcp::TcpSock,
    unwind::{ProcMappings, UnwindRow},
};

/// One bit per pid (tgid or tid): set for traced processes and for threads
/// and children they create. Checking it is the first thing every program
/// does, so bystanders pay one inlined array lookup. Memory-mappable so the
/// loader sets and clears bits with atomic operations, like the programs.
#[map]
pub(crate) static TRACED_PIDS: Array<u64> = Array::with_max_entries(512, BPF_F_MMAPABLE);

/// Traced processes by tgid (and, harmlessly, new threads by tid until they
/// exit: the fork tracepoint cannot tell threads from processes).
#[map]
pub(crate) static PROCS: HashMap<u32, ProcState> = HashMap::with_max_entries(32768, 0);

/// Outstanding fds: acquired, not yet released.
#[map]
pub(crate) static OUTSTANDING: HashMap<FdKey, FdEntry> = HashMap::with_max_entries(65536, 0);

/// Stacks by hash, shared by all entries that have the same frames.
#[map]
pub(crate) static STACKS: HashMap<u64, StackTrace> = HashMap::with_max_entries(16384, 0);

/// Scratch for the stack being captured: 520 bytes do not fit the 512-byte
/// eBPF stack.
#[map]
pub(crate) static STACK_SCRATCH: PerCpuArray<StackTrace> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

/// Process lifecycle and close_range events for userspace.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// CFI rows of every loaded module, back to back (see
/// `leaktrace_common::unwind`). Userspace writes them through a memory map.
#[map]
pub(crate) static UNWIND_ROWS: Array<UnwindRow> = Array::with_max_entries(1 << 20, BPF_F_MMAPABLE);

/// Bucket index of every loaded module (see `leaktrace_common::unwind::buckets`).
#[map]
/// 8-byte values: array maps store values at an 8-byte stride whatever
/// their size, and userspace writes them through a memory map.
pub(crate) static UNWIND_BUCKETS: Array<u64> = Array::with_max_entries(1 << 20, BPF_F_MMAPABLE);

/// A window of the user stack being unwound, read in one copy and served
/// from here until the walk leaves it: one user copy instead of one or two
/// per frame.
#[map]
pub(crate) static STACK_WINDOW: PerCpuArray<[u64; crate::unwind::WINDOW_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// The registers of the syscall that is returning (see `syscall::try_sys_exit`).
#[map]
pub(crate) static SYSCALL_REGS: PerCpuArray<crate::syscall::PtRegs> = PerCpuArray::with_max_entries(1, 0);

/// The state of the stack walk in progress (see `unwind::Walk`).
#[map]
pub(crate) static UNWIND_WALK: PerCpuArray<crate::unwind::Walk> = PerCpuArray::with_max_entries(1, 0);

/// Executable mappings of traced processes that have CFI tables, by tgid.
/// Not preallocated: entries are 2 KiB and most pids never need one.
#[map]
pub(crate) static PROC_UNWIND: HashMap<u32, ProcMappings> = HashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// TCP sockets acquired by traced processes, by `struct sock` address. LRU:
/// an entry whose destroy event was missed cannot pin memory forever.
#[map]
pub(crate) static TCP_SOCKS: LruHashMap<u64, TcpSock> = LruHashMap::with_max_entries(65536, 0);
