//! Who each process in a report is: its name, container and pod, and how
//! close it is to its fd limit. Read from /proc at every sample, for the
//! processes that hold something (a process can change cgroup or name);
//! a process that exited keeps what the previous sample read of it.

use std::collections::{BTreeSet, HashMap};

use crate::procfs;
use crate::report::{Process, Report};

use super::kubernetes::Pods;
use crate::host::container;

/// The processes of `report`: one per live pid holding something, and one
/// per pid whose process exited since `previous` was read (its stacks say
/// `exited`), which may be the pid of a live process too, given it since.
pub(crate) fn processes(
    report: &Report,
    pods: Option<&Pods>,
    previous: &HashMap<u32, Process>,
    redact_args: bool,
) -> Vec<Process> {
    let pids: BTreeSet<(u32, bool)> =
        report.stacks.iter().flat_map(|s| s.pids.iter().map(|&pid| (pid, s.exited))).collect();
    // Namespace pids as the session read them while each process was
    // alive: a process that lived less than an interval is known only so.
    let ns_pids: HashMap<(u32, bool), u32> = report
        .stacks
        .iter()
        .flat_map(|s| s.examples.iter().filter_map(|e| Some(((e.pid, s.exited), e.ns_pid?))))
        .collect();
    pids.into_iter()
        .map(|(pid, exited)| {
            let ns_pid = ns_pids.get(&(pid, exited)).copied();
            if exited {
                let known = previous.get(&pid).cloned().unwrap_or(Process { pid, ..Process::default() });
                Process { exited: true, open_fds: None, max_fds: None, ns_pid: known.ns_pid.or(ns_pid), ..known }
            } else {
                let mut p = process(pid, pods, redact_args);
                p.ns_pid = p.ns_pid.or(ns_pid);
                p
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
        ns_pid: procfs::other_namespace_pid(pid),
        comm: procfs::comm(pid),
        cmdline: procfs::cmdline(pid, redact_args),
        runtime: container.as_ref().map(|c| c.runtime.into()),
        pod_uid: container.as_ref().and_then(|c| c.pod_uid.clone()),
        container: container.map(|c| c.id),
        pod: pod.as_ref().map(|p| p.name.clone()),
        namespace: pod.map(|p| p.namespace),
        open_fds: procfs::open_fds(pid),
        max_fds: limit.flatten(),
        exited: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::StackEntry;

    #[test]
    fn an_exited_process_and_a_live_one_given_its_pid_are_two_processes() {
        // This test process plays the live one; the one that exited before
        // it on the same pid was seen at the previous sample as "old".
        let me = std::process::id();
        let mut report = crate::report::tests::sample();
        let held = report.stacks[0].clone();
        report.stacks = vec![
            StackEntry { pids: vec![me], exited: true, ..held.clone() },
            StackEntry { pids: vec![me], exited: false, ..held },
        ];
        let previous = HashMap::from([(me, Process { pid: me, comm: Some("old".into()), ..Process::default() })]);
        let found = processes(&report, None, &previous, true);
        assert_eq!(found.len(), 2, "{found:?}");
        let (live, gone) = (&found[0], &found[1]);
        assert_eq!((live.pid, live.exited, live.comm.clone()), (me, false, crate::procfs::comm(me)));
        assert!(live.open_fds.is_some());
        assert_eq!((gone.pid, gone.exited, gone.comm.as_deref()), (me, true, Some("old")));
        assert_eq!(gone.open_fds, None);
    }
}
