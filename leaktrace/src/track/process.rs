//! What userspace knows about each traced process instance.

use std::collections::HashMap;

use crate::proc_id::ProcId;

#[derive(Clone, Debug, Default)]
pub(crate) struct ProcInfo {
    pub comm: Option<String>,
    pub exe: Option<String>,
    /// Its pid in its own pid namespace (`NSpid`), read while it was alive.
    pub ns_pid: Option<u32>,
    /// CLOCK_MONOTONIC ns of the exit, once the process is gone.
    pub exited_ns: Option<u64>,
    /// Latest read of the process's fd table.
    pub fd_links: Option<FdLinks>,
}

/// /proc/PID/fd as read at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct FdLinks {
    pub read_ns: u64,
    pub links: HashMap<u32, String>,
}

impl FdLinks {
    /// The link of an fd acquired at `acquired_ns`, if the read happened
    /// after the acquisition (an earlier read may show an older file that had
    /// the same number).
    pub(crate) fn link_for(&self, fd: u32, acquired_ns: u64) -> Option<&str> {
        if acquired_ns > self.read_ns {
            return None;
        }
        self.links.get(&fd).map(String::as_str)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Processes {
    by_id: HashMap<ProcId, ProcInfo>,
}

impl ProcInfo {
    /// The namespace pid worth reporting beside `tgid`: one that differs.
    pub(crate) fn other_ns_pid(&self, tgid: u32) -> Option<u32> {
        self.ns_pid.filter(|&n| n != tgid)
    }
}

impl Processes {
    pub(crate) fn entry(&mut self, id: ProcId) -> &mut ProcInfo {
        self.by_id.entry(id).or_default()
    }

    pub(crate) fn get(&self, id: ProcId) -> Option<&ProcInfo> {
        self.by_id.get(&id)
    }

    pub(crate) fn remove(&mut self, id: ProcId) -> Option<ProcInfo> {
        self.by_id.remove(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_read_before_the_acquisition_is_not_trusted() {
        let links = FdLinks { read_ns: 100, links: HashMap::from([(5, "/etc/hostname".to_string())]) };
        assert_eq!(links.link_for(5, 90), Some("/etc/hostname"));
        assert_eq!(links.link_for(5, 101), None);
        assert_eq!(links.link_for(6, 90), None);
    }
}
