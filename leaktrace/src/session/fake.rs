//! A kernel side in memory, for the unit tests of the session's logic: the
//! maps and events the programs would leave, set by the test. It knows
//! nothing of how acquisitions are hooked; it only holds what the session
//! reads and deletes. (Every behaviour tested against it is also tested on
//! the real kernel by the integration suite.)
//!
//! Its processes have pids above the kernel's PID_MAX_LIMIT (4,194,304),
//! so what the session reads of them from /proc is always absent, as for
//! a process that is gone, and never another process's.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use leaktrace_common::counters;
use leaktrace_common::event::{
    CloseRangeEvent, EventHeader, ExecEvent, ExitEvent, ForkEvent, KIND_CLOSE_RANGE, KIND_EXEC, KIND_EXIT, KIND_FORK,
};
use leaktrace_common::fd::{FdEntry, FdKey, FLAG_CLOEXEC};
use leaktrace_common::process::ProcState;
use leaktrace_common::stack::{StackTrace, COMPLETE, MAX_FRAMES, NO_STACK};
use leaktrace_common::tcp::{TcpSock, AF_INET};
use leaktrace_common::unwind::{ProcMappings, UnwindRow};

use crate::kernel::{Capacities, Counters, KernelError, Seam};
use crate::proc_id::ProcId;
use crate::unwind::RowSink;

/// The first pid the fake hands out.
pub(super) const FIRST_PID: u32 = 5_000_000;

#[derive(Default)]
struct Maps {
    outstanding: BTreeMap<FdKey, FdEntry>,
    tcp: BTreeMap<u64, TcpSock>,
    procs: HashMap<u32, ProcState>,
    stacks: BTreeMap<u64, StackTrace>,
    counters: Counters,
    /// Pids left out (every process is traced) or traced (pids named).
    pids: HashSet<u32>,
}

pub(super) struct FakeKernel {
    maps: RefCell<Maps>,
    capacities: Capacities,
    trace_all: bool,
    events: Vec<Vec<u8>>,
    /// Readable end of a socket pair standing in for the ring buffer.
    readiness: (UnixStream, UnixStream),
    rows: Rows,
    /// Deletes of outstanding entries the session asked for, by key.
    pub(super) removed: RefCell<Vec<FdKey>>,
}

#[derive(Default)]
pub(super) struct Rows(pub(super) usize);

impl RowSink for Rows {
    fn write(&mut self, _start: u32, rows: &[UnwindRow]) -> std::io::Result<()> {
        self.0 += rows.len();
        Ok(())
    }

    fn write_buckets(&mut self, _start: u32, _buckets: &[u64]) -> std::io::Result<()> {
        Ok(())
    }
}

/// The bytes of a `#[repr(C)]` event, as the ring buffer carries it.
fn bytes_of<T: Copy>(value: &T) -> Vec<u8> {
    // SAFETY: every event is a `#[repr(C)]` struct of integers with its
    // padding as named fields: all of its bytes are initialized.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>()) }.to_vec()
}

fn header(kind: u32, proc: ProcId, at_ns: u64) -> EventHeader {
    EventHeader { kind, tgid: proc.tgid, gen: proc.gen, ts_ns: at_ns }
}

impl FakeKernel {
    /// A kernel side tracing every process (`trace_all`) or only those
    /// named, with these capacities.
    pub(super) fn new(trace_all: bool, capacities: Capacities) -> FakeKernel {
        FakeKernel {
            maps: RefCell::default(),
            capacities,
            trace_all,
            events: Vec::new(),
            readiness: UnixStream::pair().expect("a socket pair"),
            rows: Rows::default(),
            removed: RefCell::default(),
        }
    }

    pub(super) fn tracing_all() -> FakeKernel {
        FakeKernel::new(true, Capacities { entries: 1024, stacks: 64, unwind_rows: 1024, tcp: true })
    }

    /// A process the kernel side follows (a child of a traced one, or any
    /// process when every process is traced).
    pub(super) fn spawn(&self, proc: ProcId) {
        self.maps.borrow_mut().procs.insert(proc.tgid, ProcState { gen: proc.gen, exec_seq: 0, _pad: 0 });
    }

    /// An fd acquired at `at_ns` with stack `stack_id` (its frames made up).
    pub(super) fn acquire(&self, proc: ProcId, fd: u32, at_ns: u64, stack_id: u64) {
        self.acquire_flags(proc, fd, at_ns, stack_id, 0);
    }

    /// An fd acquired with O_CLOEXEC.
    pub(super) fn acquire_cloexec(&self, proc: ProcId, fd: u32, at_ns: u64, stack_id: u64) {
        self.acquire_flags(proc, fd, at_ns, stack_id, FLAG_CLOEXEC);
    }

    fn acquire_flags(&self, proc: ProcId, fd: u32, at_ns: u64, stack_id: u64, flags: u8) {
        let mut maps = self.maps.borrow_mut();
        let entry = FdEntry {
            acquired_ns: at_ns,
            stack_id,
            tid: proc.tgid,
            exec_seq: 0,
            syscall: 2,
            resource: leaktrace_common::fd::Resource::File as u8,
            flags,
            sock_family: 0,
            sock_type: 0,
            sk: 0,
        };
        maps.outstanding.insert(FdKey { tgid: proc.tgid, fd, gen: proc.gen }, entry);
        if stack_id != NO_STACK {
            let mut ips = [0u64; MAX_FRAMES];
            ips[0] = 0x7f00_0000_1000 + stack_id;
            ips[1] = 0x40_1000 + stack_id;
            maps.stacks.entry(stack_id).or_insert(StackTrace { len: 2, flags: COMPLETE, first_ns: at_ns, ips });
        }
        maps.counters[counters::ACQUIRED as usize] += 1;
    }

    /// A TCP connection acquired as fd `fd` (its socket at `sk`).
    pub(super) fn connect(&self, proc: ProcId, fd: u32, at_ns: u64, stack_id: u64, sk: u64, state: u32) {
        self.acquire(proc, fd, at_ns, stack_id);
        let mut maps = self.maps.borrow_mut();
        if let Some(entry) = maps.outstanding.get_mut(&FdKey { tgid: proc.tgid, fd, gen: proc.gen }) {
            entry.sk = sk;
            entry.resource = leaktrace_common::fd::Resource::Socket as u8;
        }
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let sock = TcpSock {
            tgid: proc.tgid,
            fd,
            gen: proc.gen,
            acquired_ns: at_ns,
            state_ns: at_ns,
            state,
            family: AF_INET,
            sport: 40_000 + fd as u16,
            dport: 8080,
            _pad: 0,
            _pad2: 0,
            saddr,
            daddr: saddr,
        };
        maps.tcp.insert(sk, sock);
    }

    /// A close the programs applied themselves.
    pub(super) fn close(&self, proc: ProcId, fd: u32) {
        let mut maps = self.maps.borrow_mut();
        let key = FdKey { tgid: proc.tgid, fd, gen: proc.gen };
        if let Some(entry) = maps.outstanding.remove(&key) {
            maps.tcp.remove(&entry.sk);
            maps.counters[counters::RELEASED as usize] += 1;
        }
    }

    /// An entry gone from the map while its socket stays (its acquisition
    /// was dropped, or released in a way the programs do not see).
    pub(super) fn forget_entry(&self, proc: ProcId, fd: u32) {
        self.maps.borrow_mut().outstanding.remove(&FdKey { tgid: proc.tgid, fd, gen: proc.gen });
    }

    /// The process's last thread exited: the kernel forgets it and says so.
    pub(super) fn exit(&mut self, proc: ProcId, at_ns: u64) {
        self.maps.borrow_mut().procs.remove(&proc.tgid);
        self.events.push(bytes_of(&ExitEvent { header: header(KIND_EXIT, proc, at_ns) }));
    }

    /// An exec that succeeded.
    pub(super) fn exec(&mut self, proc: ProcId, at_ns: u64) {
        let exec_seq = {
            let mut maps = self.maps.borrow_mut();
            let state = maps.procs.entry(proc.tgid).or_insert(ProcState { gen: proc.gen, exec_seq: 0, _pad: 0 });
            state.exec_seq += 1;
            state.exec_seq
        };
        self.events.push(bytes_of(&ExecEvent { header: header(KIND_EXEC, proc, at_ns), exec_seq, _pad: 0 }));
    }

    /// close_range(first, last, flags) returned 0.
    pub(super) fn close_range(&mut self, proc: ProcId, at_ns: u64, first: u32, last: u32, flags: u32) {
        let event = CloseRangeEvent { header: header(KIND_CLOSE_RANGE, proc, at_ns), first, last, flags, _pad: 0 };
        self.events.push(bytes_of(&event));
    }

    /// `child` was forked by `parent`.
    pub(super) fn fork(&mut self, child: ProcId, parent: u32, at_ns: u64) {
        self.spawn(child);
        let event = ForkEvent { header: header(KIND_FORK, child, at_ns), parent_tgid: parent, _pad: 0 };
        self.events.push(bytes_of(&event));
    }

    /// A record the session cannot decode.
    pub(super) fn garbage(&mut self) {
        self.events.push(vec![1, 2, 3]);
    }

    pub(super) fn held(&self) -> Vec<FdKey> {
        self.maps.borrow().outstanding.keys().copied().collect()
    }

    pub(super) fn socks(&self) -> Vec<u64> {
        self.maps.borrow().tcp.keys().copied().collect()
    }

    pub(super) fn stacks(&self) -> Vec<u64> {
        self.maps.borrow().stacks.keys().copied().collect()
    }

    /// Unwinding rows the session wrote for the kernel side.
    pub(super) fn rows_written(&self) -> usize {
        self.rows.0
    }

    pub(super) fn count(&self, counter: u32, by: u64) {
        self.maps.borrow_mut().counters[counter as usize] += by;
    }
}

impl Seam for FakeKernel {
    fn capacities(&self) -> Capacities {
        self.capacities
    }

    fn events_fd(&self) -> BorrowedFd<'_> {
        self.readiness.0.as_fd()
    }

    fn read_events(&mut self, each: &mut dyn FnMut(&[u8])) {
        for event in std::mem::take(&mut self.events) {
            each(&event);
        }
    }

    fn unwind_rows(&mut self) -> &mut dyn RowSink {
        &mut self.rows
    }

    fn set_proc_mappings(&mut self, _tgid: u32, _mappings: Option<&ProcMappings>) -> Result<(), KernelError> {
        Ok(())
    }

    fn trace_process(&mut self, tgid: u32, state: ProcState) -> Result<(), KernelError> {
        let mut maps = self.maps.borrow_mut();
        maps.procs.insert(tgid, state);
        maps.pids.insert(tgid);
        Ok(())
    }

    fn filter_out(&self, tgid: u32) {
        if self.trace_all {
            self.maps.borrow_mut().pids.insert(tgid);
        }
    }

    fn untrace_all(&self) {
        self.maps.borrow_mut().pids.clear();
    }

    fn is_traced(&self, tgid: u32) -> bool {
        let maps = self.maps.borrow();
        maps.procs.contains_key(&tgid) && (self.trace_all != maps.pids.contains(&tgid))
    }

    fn proc_state(&self, tgid: u32) -> Option<ProcState> {
        self.maps.borrow().procs.get(&tgid).copied()
    }

    fn outstanding(&self) -> Result<Vec<(FdKey, FdEntry)>, KernelError> {
        Ok(self.maps.borrow().outstanding.iter().map(|(k, e)| (*k, *e)).collect())
    }

    fn unchanged_outstanding(&self, planned: &[(FdKey, u64)]) -> Vec<FdKey> {
        let maps = self.maps.borrow();
        planned
            .iter()
            .filter(|(k, at)| maps.outstanding.get(k).is_some_and(|e| e.acquired_ns == *at))
            .map(|(k, _)| *k)
            .collect()
    }

    fn remove_outstanding(&self, keys: &[FdKey]) -> Result<usize, KernelError> {
        self.removed.borrow_mut().extend_from_slice(keys);
        let mut maps = self.maps.borrow_mut();
        Ok(keys.iter().filter(|k| maps.outstanding.remove(k).is_some()).count())
    }

    fn tcp_socks(&self) -> Result<Vec<(u64, TcpSock)>, KernelError> {
        Ok(self.maps.borrow().tcp.iter().map(|(sk, s)| (*sk, *s)).collect())
    }

    fn remove_tcp_socks(&self, socks: &[u64]) -> Result<usize, KernelError> {
        let mut maps = self.maps.borrow_mut();
        Ok(socks.iter().filter(|sk| maps.tcp.remove(sk).is_some()).count())
    }

    fn stack(&self, id: u64) -> Option<StackTrace> {
        self.maps.borrow().stacks.get(&id).copied()
    }

    fn stack_ids(&self) -> Result<Vec<u64>, KernelError> {
        Ok(self.stacks())
    }

    fn remove_stacks(&self, ids: &[u64]) -> Result<usize, KernelError> {
        let mut maps = self.maps.borrow_mut();
        Ok(ids.iter().filter(|id| maps.stacks.remove(id).is_some()).count())
    }

    fn counters(&self) -> Result<Counters, KernelError> {
        Ok(self.maps.borrow().counters)
    }
}
