//! The seam between a session and the kernel side: what the session reads
//! from it and deletes in it. Nothing here says how the kernel side learns
//! of acquisitions (tracepoints today, kernel-function hooks and uprobes
//! later): only the maps and events they leave behind, which every hook
//! mechanism fills alike.
//!
//! [`super::Kernel`] is the real one; `session/fake.rs` stands in for it in
//! the unit tests of the session's logic (every behaviour those test is also
//! covered by an integration test on the real kernel).

use std::os::fd::BorrowedFd;

use leaktrace_common::counters;
use leaktrace_common::fd::{FdEntry, FdKey};
use leaktrace_common::process::ProcState;
use leaktrace_common::stack::StackTrace;
use leaktrace_common::tcp::TcpSock;
use leaktrace_common::unwind::ProcMappings;

use super::KernelError;
use crate::proc_id::ProcId;
use crate::unwind::RowSink;

/// The kernel side's per-CPU counters, summed, indexed like
/// `leaktrace_common::counters`.
pub(crate) type Counters = [u64; counters::COUNT as usize];

/// What the kernel side was made to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Capacities {
    /// Outstanding entries (and TCP sockets, each of which is one).
    pub entries: u32,
    pub stacks: u32,
    /// CFI rows of all modules.
    pub unwind_rows: u32,
    /// TCP sockets are followed as connections.
    pub tcp: bool,
}

pub(crate) trait Seam {
    fn capacities(&self) -> Capacities;

    /// Readable when events are queued.
    fn events_fd(&self) -> BorrowedFd<'_>;
    /// Hands every queued event record to `each`, oldest first.
    fn read_events(&mut self, each: &mut dyn FnMut(&[u8]));

    /// Where the unwinder writes CFI rows for the kernel side.
    fn unwind_rows(&mut self) -> &mut dyn RowSink;
    /// Publishes a process image's code mappings to the kernel's unwinder,
    /// or withdraws them (`None`: frame pointers are walked instead).
    fn set_proc_mappings(&mut self, tgid: u32, mappings: Option<&ProcMappings>) -> Result<(), KernelError>;

    /// Starts tracing a process the user named or launched.
    fn trace_process(&mut self, tgid: u32, state: ProcState) -> Result<(), KernelError>;
    /// Leaves a process out (and the children it forks until one execs)
    /// while every process is traced; its entries are the caller's to drop.
    fn filter_out(&self, tgid: u32);
    /// Stops tracing every process.
    fn untrace_all(&self);
    fn is_traced(&self, tgid: u32) -> bool;
    /// The kernel's state for a traced process, if it still has one.
    fn proc_state(&self, tgid: u32) -> Option<ProcState>;

    /// Every outstanding entry.
    fn outstanding(&self) -> Result<Vec<(FdKey, FdEntry)>, KernelError>;
    /// The keys of `planned` whose entry is still the acquisition made at
    /// the given time (a number handed out again holds another one).
    fn unchanged_outstanding(&self, planned: &[(FdKey, u64)]) -> Vec<FdKey>;
    /// Removes entries userspace took over; returns how many were there.
    fn remove_outstanding(&self, keys: &[FdKey]) -> Result<usize, KernelError>;

    /// Every traced TCP socket, by `struct sock` address.
    fn tcp_socks(&self) -> Result<Vec<(u64, TcpSock)>, KernelError>;
    fn remove_tcp_socks(&self, socks: &[u64]) -> Result<usize, KernelError>;

    fn stack(&self, id: u64) -> Option<StackTrace>;
    fn stack_ids(&self) -> Result<Vec<u64>, KernelError>;
    fn remove_stacks(&self, ids: &[u64]) -> Result<usize, KernelError>;

    fn counters(&self) -> Result<Counters, KernelError>;

    /// Whether `proc` is still the process the kernel traces under its pid
    /// (not gone, not a later process given the pid).
    fn runs(&self, proc: ProcId) -> bool {
        self.proc_state(proc.tgid).is_some_and(|s| s.gen == proc.gen)
    }
}
