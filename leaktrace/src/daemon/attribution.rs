//! Who each process in a report is: its name, container and pod, and how
//! close it is to its fd limit. Read from /proc at every sample, for the
//! processes that hold something (a process can change cgroup or name);
//! a process that exited keeps what the previous sample read of it.

use std::collections::{BTreeSet, HashMap};

use crate::procfs;
use crate::report::{Process, Report};

use super::container;
use super::kubernetes::Pods;

/// The processes of `report`; `exited` ended since `previous` was read.
pub fn processes(
    report: &Report,
    pods: Option<&Pods>,
    exited: &BTreeSet<u32>,
    previous: &HashMap<u32, Process>,
    redact_args: bool,
) -> Vec<Process> {
    let pids: BTreeSet<u32> = report.stacks.iter().flat_map(|s| s.pids.iter().copied()).collect();
    pids.into_iter()
        .map(|pid| {
            if exited.contains(&pid) {
                let known = previous.get(&pid).cloned().unwrap_or(Process { pid, ..Process::default() });
                Process { exited: true, open_fds: None, max_fds: None, ..known }
            } else {
                process(pid, pods, redact_args)
            }
        })
        .collect()
}

fn process(pid: u32, pods: Option<&Pods>, redact_args: bool) -> Process {
    let container = procfs::cgroup(pid).as_deref().and_then(container::from_proc_cgroup);
    let pod = container.as_ref().and_then(|c| c.pod_uid.as_deref()).and_then(|uid| pods?.name(uid));
    let limit = procfs::fd_limit(pid);
    Process {
        pid,
        comm: procfs::comm(pid),
        cmdline: procfs::cmdline(pid, redact_args),
        runtime: container.as_ref().map(|c| c.runtime),
        pod_uid: container.as_ref().and_then(|c| c.pod_uid.clone()),
        container: container.map(|c| c.id),
        pod: pod.as_ref().map(|p| p.name.clone()),
        namespace: pod.map(|p| p.namespace),
        open_fds: procfs::open_fds(pid),
        max_fds: limit.flatten(),
        exited: false,
    }
}
