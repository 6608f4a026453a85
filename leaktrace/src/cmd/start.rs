//! Starting to trace running processes, as attach, top, the daemon and
//! record do: what can be refused before anything is loaded (privileges,
//! pids that do not exist), then the kernel side for the config's kinds,
//! limits and filters, and the targets traced, each checked to be the
//! process the user named (not one given its pid since).

use std::collections::HashMap;

use crate::config::{Config, FilterConfig};
use crate::host::filter::Filter;
use crate::kernel::{privileges, Kernel};
use crate::proc_id::ProcId;
use crate::procfs;
use crate::session::Session;

use super::Failure;

/// The targets' start times, read before loading, to tell them from a later
/// process that gets one of their pids meanwhile.
pub(super) struct Checked(HashMap<u32, Option<u64>>);

/// What can be refused before anything is loaded.
pub(super) fn check(config: &Config) -> Result<Checked, Failure> {
    privileges::check(&[privileges::Need::Trace, privileges::Need::InspectOthers])?;
    let mut started = HashMap::new();
    for &pid in &config.filter.pids {
        if !procfs::is_live_process(pid) {
            return Err(Failure::NoSuchProcess { pid });
        }
        started.insert(pid, procfs::start_ticks(pid));
    }
    Ok(Checked(started))
}

/// The kernel side loaded for `config`, with its targets traced (with no
/// pids, every process is, less what the other filters leave out). Returns
/// the session and the targets' identities.
pub(super) fn start(config: &Config, checked: &Checked) -> Result<(Session, Vec<ProcId>), Failure> {
    let kernel = Kernel::load(&config.load_options())?;
    let mut session = Session::new(kernel, &config.session_options());
    session.preload_shared_libraries();
    if let Some(filter) = Filter::new(&config.filter) {
        session = session.with_filter(Box::new(move |pid| filter.admits_pid(pid)));
    }
    let mut targets = Vec::new();
    for &pid in &config.filter.pids {
        targets.push(session.trace_target(pid)?);
        session.observe(pid);
        // Loading takes a moment: a process that exited meanwhile (or whose
        // pid went to another) would never be seen to exit.
        if !procfs::is_same_live_process(pid, checked.0.get(&pid).copied().flatten()) {
            return Err(Failure::ExitedBeforeTracing { pid });
        }
    }
    Ok((session, targets))
}

/// The traced processes in words, for the start-up line.
pub(super) fn who(filter: &FilterConfig) -> String {
    let mut parts = Vec::new();
    if !filter.pids.is_empty() {
        parts.push(format!("pids {:?} and their children", filter.pids));
    }
    for (name, list) in [("comm", &filter.comms), ("cgroup", &filter.cgroups), ("container", &filter.containers)] {
        if !list.is_empty() {
            parts.push(format!("{name} {}", list.join(" or ")));
        }
    }
    if parts.is_empty() {
        "every process".to_string()
    } else {
        format!("processes with {}", parts.join(", "))
    }
}
