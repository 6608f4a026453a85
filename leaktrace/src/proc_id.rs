//! Who holds what: a process instance (a pid and the generation that tells
//! it from earlier and later processes given the same pid) and one program
//! image of it (it changes with every exec). Every layer keys by these, so
//! they live apart from all of them.

use leaktrace_common::fd::FdKey;
use leaktrace_common::process::USER_GEN_BIT;

/// One process instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ProcId {
    pub tgid: u32,
    pub gen: u64,
}

impl ProcId {
    /// The process an outstanding fd entry was acquired by.
    pub(crate) fn of_fd(key: &FdKey) -> ProcId {
        ProcId { tgid: key.tgid, gen: key.gen }
    }

    /// A process the user named or launched (userspace gave it its
    /// generation), rather than one the kernel followed into.
    pub(crate) fn is_target(self) -> bool {
        self.gen & USER_GEN_BIT != 0
    }
}

/// One program image of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ImageId {
    pub proc: ProcId,
    pub exec_seq: u32,
}
