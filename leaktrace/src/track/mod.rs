//! Pure tracking logic: process identities, what range operations release,
//! aggregation of held resources per call stack, their history and verdicts. Nothing here touches
//! the kernel, so all of it is tested without privileges.

pub mod aggregate;
pub mod fd;
pub mod history;
pub mod mappings;
pub mod mmap;
pub mod process;
pub mod survivors;
pub mod tcp;
pub mod verdict;

/// One process instance: a pid plus the generation that distinguishes it
/// from earlier and later processes with the same pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId {
    pub tgid: u32,
    pub gen: u64,
}

/// One program image of a process: it changes with every exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId {
    pub proc: ProcId,
    pub exec_seq: u32,
}
