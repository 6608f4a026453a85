//! Tracing the whole host, or the processes a filter names: the start the
//! daemon and `record` share.

use crate::cli::{has_kind, Kind};
use crate::config::{Config, FilterConfig};
use crate::daemon::filter::Filter;
use crate::failure::Failure;
use crate::kernel::{privileges, Kernel, LoadOptions};
use crate::procfs;
use crate::session::{Events, Session};

/// What can be refused before anything is loaded: privileges, and pids
/// that do not exist.
/// The start times of the pids, to tell them from a later process that gets
/// one of their pids.
pub fn check(config: &Config) -> Result<Started, Failure> {
    privileges::check(&[privileges::Need::Trace, privileges::Need::InspectOthers])?;
    let mut started = Started::new();
    for &pid in &config.filter.pids {
        if !procfs::is_live_process(pid) {
            return Err(Failure::NoSuchProcess { pid });
        }
        started.insert(pid, procfs::start_ticks(pid));
    }
    Ok(started)
}

pub type Started = std::collections::HashMap<u32, Option<u64>>;

/// The kernel side loaded for `config`'s kinds, limits and filters; with no
/// pids, every process is traced (less what the other filters leave out).
/// `per_process`: stacks are aggregated per process (the daemon's view).
pub fn start(config: &Config, started: &Started, per_process: bool) -> Result<(Session, Events), Failure> {
    let kernel = Kernel::load(&LoadOptions {
        tcp: has_kind(&config.kinds, Kind::Tcp),
        mmap: has_kind(&config.kinds, Kind::Mmap),
        trace_all: config.filter.pids.is_empty(),
        ..LoadOptions::from(config)
    })?;
    let mut session = Session::new(kernel, config, false)?;
    if per_process {
        session.per_process();
    }
    if let Some(filter) = Filter::new(&config.filter) {
        session.set_filter(Box::new(move |pid| filter.admits_pid(pid)));
    }
    let events = crate::session::readiness(&session)?;
    for &pid in &config.filter.pids {
        session.trace_target(pid)?;
        session.observe(pid);
        if !procfs::is_same_live_process(pid, started.get(&pid).copied().flatten()) {
            return Err(Failure::ExitedBeforeTracing { pid });
        }
    }
    Ok((session, events))
}

/// The traced processes in words, for the start-up line.
pub fn who(filter: &FilterConfig) -> String {
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
