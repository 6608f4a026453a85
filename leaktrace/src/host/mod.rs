//! What the host says about its processes beyond the kernel side's maps,
//! used by every mode that traces running processes and by the daemon's
//! attribution: which processes the filters (`--comm`, `--cgroup`,
//! `--container`) admit, and which container a process runs in.

pub(crate) mod container;
pub(crate) mod filter;
