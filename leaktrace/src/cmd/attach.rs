//! `leaktrace attach --pid PID`: trace running processes for a while and
//! report what they acquired and still hold, plus the fds they held before.

use std::collections::HashMap;

use crate::cli::AttachArgs;
use crate::config::Config;
use crate::kernel::Kernel;
use crate::output::{self, Output};
use crate::proc_id::ProcId;
use crate::procfs;
use crate::report::{build, preexisting, text, Mode as ReportMode, Target};
use crate::session::Session;

use super::drive::{drive, Flow, Mode, Timing};
use super::progress::Progress;
use super::start::{check, start, who};
use super::Failure;

pub(super) async fn attach(args: &AttachArgs) -> Result<u8, Failure> {
    let config = Config::attach(args);
    let checked = check(&config)?;
    let view = text::View { top: config.top, all_mappings: config.all_mappings };
    let output = Output::to(args.output.format, args.output.output.as_deref(), view)?;
    let (mut session, targets) = start(&config, &checked)?;
    let start_ns = procfs::monotonic_ns();
    // Read after tracing began, so no fd falls between the two.
    let before: Vec<(u32, HashMap<u32, String>)> =
        targets.iter().map(|t| (t.tgid, procfs::fd_links(t.tgid, t.tgid).unwrap_or_default())).collect();
    let mut tcp_before: HashMap<u32, HashMap<u64, preexisting::Connection>> =
        targets.iter().map(|t| (t.tgid, preexisting::connections(t.tgid))).collect();
    for (target, (_, links)) in targets.iter().zip(&before) {
        session.note_fds_before_tracing(*target, links.clone());
    }

    // Tools that drive leaktrace (and people) see when tracing has begun.
    let traced = if targets.is_empty() {
        who(&config.filter)
    } else {
        let named = |t: &ProcId| {
            format!("pid {} ({})", t.tgid, session.proc_info(*t).and_then(|i| i.comm.clone()).unwrap_or_default())
        };
        targets.iter().map(named).collect::<Vec<_>>().join(", ")
    };
    eprintln!("leaktrace: tracing {traced}; Ctrl-C ends it and writes the report");
    let mut mode = Attached { targets, progress: Progress::new() };
    drive(&mut session, &mut mode, Timing { interval: config.interval, deadline: args.duration }).await?;
    drop(mode.progress);
    let end_ns = procfs::monotonic_ns();
    for target in &mode.targets {
        if session.is_traced(target.tgid) {
            session.count_untracked(*target, target.tgid)?;
        }
    }
    let outcome = session.finish()?;
    session.untrace_all();

    let preexisting = before
        .into_iter()
        .flat_map(|(pid, links)| {
            // As `ss` would show them now; a connection closed since, as it
            // was when tracing began.
            let mut tcp = tcp_before.remove(&pid).unwrap_or_default();
            tcp.extend(preexisting::connections(pid));
            let mut fds: Vec<(u32, String)> = links.into_iter().collect();
            fds.sort();
            // Each fd by itself: the process may hold far more fds by now.
            fds.into_iter()
                .map(|(fd, link)| {
                    let open_at_end = procfs::fd_link(pid, fd).as_ref() == Some(&link);
                    preexisting::describe(pid, fd, link, open_at_end, &tcp)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let targets = mode
        .targets
        .iter()
        .map(|t| {
            let info = session.proc_info(*t).cloned().unwrap_or_default();
            Target { pid: t.tgid, ns_pid: info.other_ns_pid(t.tgid), comm: info.comm, exe: info.exe, exit_code: None }
        })
        .collect();
    let context = super::context(ReportMode::Attach, &config, targets, (start_ns, end_ns));
    let report = build::from_session(build::Context { preexisting, ..context }, outcome, &mut session);
    output.write(&report)?;
    Ok(output::exit_status(args.output.fail_on_leak, &report, 0))
}

/// The loop's view of `attach`: samples for the progress line, and the end
/// when every target has exited.
struct Attached {
    /// The processes named by pid; empty when the whole host (or what the
    /// filters admit) is traced.
    targets: Vec<ProcId>,
    progress: Progress,
}

impl Mode<Kernel> for Attached {
    type Wake = ();

    fn sample(&mut self, session: &mut Session) -> Result<Flow, Failure> {
        let live = session.refresh()?;
        self.progress.update(&live, session.history());
        Ok(Flow::Continue)
    }

    fn ticked(&mut self, session: &mut Session) -> Result<Flow, Failure> {
        let all_gone = !self.targets.is_empty() && self.targets.iter().all(|t| !session.is_traced(t.tgid));
        Ok(if all_gone { Flow::Stop } else { Flow::Continue })
    }
}
