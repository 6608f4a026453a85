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
) -> Vec<Process> {
    let pids: BTreeSet<u32> = report.stacks.iter().flat_map(|s| s.pids.iter().copied()).collect();
    // Namespace pids as the session read them while each process was
    // alive: a process that lived less than an interval is known only so.
    let ns_pids: HashMap<u32, u32> =
        report.stacks.iter().flat_map(|s| &s.examples).filter_map(|e| Some((e.pid, e.ns_pid?))).collect();
    pids.into_iter()
        .map(|pid| {
            let ns_pid = ns_pids.get(&pid).copied();
            if exited.contains(&pid) {
                let known = previous.get(&pid).cloned().unwrap_or(Process { pid, ..Process::default() });
                Process { exited: true, open_fds: None, max_fds: None, ns_pid: known.ns_pid.or(ns_pid), ..known }
            } else {
                let mut p = process(pid, pods);
                p.ns_pid = p.ns_pid.or(ns_pid);
                p
            }
        })
        .collect()
}

fn process(pid: u32, pods: Option<&Pods>) -> Process {
    let container = procfs::cgroup(pid).as_deref().and_then(container::from_proc_cgroup);
    let pod = container.as_ref().and_then(|c| c.pod_uid.as_deref()).and_then(|uid| pods?.name(uid));
    let limit = procfs::fd_limit(pid);
    Process {
        pid,
        ns_pid: procfs::namespace_pid(pid).filter(|&n| n != pid),
        comm: procfs::comm(pid),
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
