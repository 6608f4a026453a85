//! `leaktrace attach --pid PID`: trace running processes for a while and
//! report what they acquired and still hold, plus the fds they held before.

use std::collections::HashMap;
use std::time::Duration;

use leaktrace_common::fd::Resource;

use crate::cli::Common;
use crate::failure::Failure;
use crate::kernel::{privileges, Kernel, LoadOptions};
use crate::output::{self, Output};
use crate::report::{build, Preexisting, Target};
use crate::run::EVENT_LATENCY;
use crate::session::Session;
use crate::track::fd::{resource_from_link, resource_name};
use crate::{procfs, report};

pub async fn attach(common: &Common, pids: &[u32], all: bool, duration: Option<Duration>) -> Result<u8, Failure> {
    let config = common.config();
    privileges::check(&[privileges::Need::Trace, privileges::Need::InspectOthers])?;
    let mut pids = pids.to_vec();
    pids.dedup();
    let mut started = HashMap::new();
    for &pid in &pids {
        if !procfs::is_live_process(pid) {
            return Err(Failure::NoSuchProcess { pid });
        }
        started.insert(pid, procfs::start_ticks(pid));
    }
    let output = Output::open(common, config.top)?;
    let kernel = Kernel::load(&LoadOptions {
        tcp: common.tcp(),
        mmap: common.mmap(),
        trace_all: all,
        ..LoadOptions::from(&config)
    })?;
    let mut session = Session::new(kernel, &config, false)?;
    let events = crate::session::readiness(&session)?;

    let start_ns = procfs::monotonic_ns();
    let mut targets = Vec::new();
    let mut before: Vec<(u32, HashMap<u32, String>)> = Vec::new();
    for &pid in &pids {
        let proc = session.trace_target(pid)?;
        session.observe(pid);
        // Loading takes a moment: a process that exited meanwhile (or whose
        // pid went to another) would never be seen to exit.
        if !procfs::is_same_live_process(pid, started.get(&pid).copied().flatten()) {
            return Err(Failure::ExitedBeforeTracing { pid });
        }
        // Read after tracing began, so no fd falls between the two.
        before.push((pid, procfs::fd_links(pid, pid).unwrap_or_default()));
        targets.push(proc);
    }

    // Tools that drive leaktrace (and people) see when tracing has begun.
    let who = if all {
        "every process".to_string()
    } else {
        targets
            .iter()
            .map(|t| {
                format!("pid {} ({})", t.tgid, session.proc_info(*t).and_then(|i| i.comm.clone()).unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!("leaktrace: tracing {who}; Ctrl-C ends it and writes the report");
    let mut stop = crate::session::StopSignals::new()?;
    let mut tick = tokio::time::interval(EVENT_LATENCY);
    let mut progress = crate::progress::Progress::new();
    let mut sweep = tokio::time::interval(config.interval);
    let deadline = tokio::time::sleep(duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = events.ready() => session.drain_events(),
            _ = tick.tick() => {
                session.tick()?;
                if !all && targets.iter().all(|t| !session.is_traced(t.tgid)) {
                    break;
                }
            }
            _ = sweep.tick() => {
                let live = session.refresh()?;
                progress.update(&live, session.history());
            }
            _ = &mut deadline => break,
            _ = stop.recv() => break,
        }
    }
    drop(progress);
    let end_ns = procfs::monotonic_ns();
    let outcome = session.finish()?;
    session.untrace_all();

    let preexisting = before
        .into_iter()
        .flat_map(|(pid, links)| {
            let mut fds: Vec<(u32, String)> = links.into_iter().collect();
            fds.sort();
            // Each fd by itself: the process may hold far more fds by now.
            fds.into_iter().map(move |(fd, link)| Preexisting {
                pid,
                fd,
                resource: resource_name(match resource_from_link(&link) {
                    Resource::Unknown => Resource::Unknown,
                    r => r,
                }),
                open_at_end: procfs::fd_link(pid, fd).as_ref() == Some(&link),
                path: Some(link),
            })
        })
        .collect();
    let targets = targets
        .iter()
        .map(|t| {
            let info = session.proc_info(*t).cloned().unwrap_or_default();
            Target { pid: t.tgid, ns_pid: info.other_ns_pid(t.tgid), comm: info.comm, exe: info.exe, exit_code: None }
        })
        .collect();
    let context = build::Context {
        mode: "attach",
        targets,
        start_ns,
        end_ns,
        preexisting,
        max_examples: config.examples,
        kinds: common.kind_names(),
        min_bytes: config.min_bytes,
        sample: config.sample,
        per_process: false,
    };
    let (history, resolver) = session.history_and_resolver();
    let report: report::Report = build::build(context, outcome, history, resolver);
    output.write(&report)?;
    Ok(output::exit_status(common, &report, 0))
}
