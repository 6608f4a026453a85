//! Pure tracking logic: what range operations release, aggregation of held
//! resources per call stack, their history and verdicts. Nothing here
//! touches the kernel, so all of it is tested without privileges.

pub(crate) mod aggregate;
pub(crate) mod fd;
pub(crate) mod history;
pub(crate) mod mappings;
pub(crate) mod mmap;
pub(crate) mod process;
pub(crate) mod survivors;
pub(crate) mod tcp;
pub(crate) mod verdict;
