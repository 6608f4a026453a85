//! `leaktrace run -- CMD`: trace a command from its first instruction until it
//! exits, and report what each of its processes still held when it exited.

use std::ffi::OsString;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use crate::cli::Common;
use crate::failure::Failure;
use crate::kernel::{privileges, Kernel, LoadOptions};
use crate::launch::{self, Hold, TracerMsg};
use crate::output::{self, Output};
use crate::report::{build, Target};
use crate::session::Session;
use crate::{procfs, report};

/// How soon exits and range releases are applied after their events arrive,
/// and how often events queued without a wake-up (mapping operations) are
/// read.
pub const EVENT_LATENCY: Duration = Duration::from_millis(100);

/// run's sampling interval: commands are often short (a test suite), and a
/// verdict needs six samples.
const RUN_INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(common: &Common, command: &[OsString]) -> Result<u8, Failure> {
    let config = common.config();
    privileges::check(&[privileges::Need::Trace])?;
    let program = launch::resolve(&command[0])?;
    let output = Output::open(common, config.top)?;
    let kernel = Kernel::load(&LoadOptions {
        tcp: common.tcp(),
        mmap: common.mmap(),
        stop_on_code_map: true,
        ..LoadOptions::from(&config)
    })?;
    let mut session = Session::new(kernel, &config, true)?;
    let events = crate::session::readiness(&session)?;
    let mut tracer = launch::start(&program, command)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(Failure::Runtime)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(Failure::Runtime)?;
    // Ctrl-C reaches the command through the terminal; leaktrace outlives it
    // to write the report.
    let mut sigint = signal(SignalKind::interrupt()).map_err(Failure::Runtime)?;
    let mut tick = tokio::time::interval(EVENT_LATENCY);
    let mut progress = crate::progress::Progress::new();
    let mut sweep = tokio::time::interval(common.interval.unwrap_or(RUN_INTERVAL));

    let start_ns = procfs::monotonic_ns();
    let mut root = None;
    let (status, outcome) = loop {
        tokio::select! {
            msg = tracer.recv() => match msg {
                Some(TracerMsg::Hold(Hold::CommandExited { status }, reply)) => {
                    let outcome = session.finish()?;
                    // Background processes go on untraced: no more signals for them.
                    session.untrace_all();
                    let _ = reply.send(());
                    break (status, outcome);
                }
                Some(TracerMsg::Hold(hold, reply)) => {
                    match hold {
                        Hold::Started { pid } => root = Some(session.trace_target(pid)?),
                        Hold::Forked { child } => session.forked(child),
                        Hold::Execed { tgid } => session.after_exec(tgid),
                        Hold::CodeMapped { tgid } => session.code_mapped(tgid),
                        Hold::Exiting { tgid, tid } => session.before_exit(tgid, tid),
                        Hold::CommandExited { .. } => {}
                    }
                    let _ = reply.send(());
                }
                Some(TracerMsg::Failed(e)) => return Err(e.into()),
                None => return Err(Failure::TracerLost),
            },
            _ = events.ready() => session.drain_events(),
            _ = tick.tick() => session.tick()?,
            _ = sweep.tick() => {
                let live = session.refresh()?;
                progress.update(&live, session.history());
            }
            _ = sigterm.recv() => forward(root.map(|r| r.tgid), libc::SIGTERM),
            _ = sighup.recv() => forward(root.map(|r| r.tgid), libc::SIGHUP),
            _ = sigint.recv() => {}
        }
    };
    drop(progress);
    let end_ns = procfs::monotonic_ns();
    let root = root.ok_or(Failure::TracerLost)?;
    let info = session.proc_info(root).cloned().unwrap_or_default();
    let target = Target {
        pid: root.tgid,
        ns_pid: info.other_ns_pid(root.tgid),
        comm: info.comm,
        exe: info.exe.or_else(|| Some(program.display().to_string())),
        exit_code: Some(status),
    };
    let context = build::Context {
        mode: "run",
        targets: vec![target],
        start_ns,
        end_ns,
        preexisting: vec![],
        max_examples: config.examples,
        kinds: common.kind_names(),
        min_bytes: config.min_bytes,
        sample: config.sample,
        per_process: false,
    };
    let (history, resolver) = session.history_and_resolver();
    let report: report::Report = build::build(context, outcome, history, resolver);
    output.write(&report)?;
    Ok(output::exit_status(common, &report, status.clamp(0, 255) as u8))
}

fn forward(pid: Option<u32>, signal: i32) {
    if let Some(pid) = pid {
        // SAFETY: kill has no memory arguments.
        unsafe { libc::kill(pid as i32, signal) };
    }
}
