//! `leaktrace run -- CMD`: trace a command from its first instruction until it
//! exits, and report what each of its processes still held when it exited.
//! The command runs under leaktrace's ptrace tracer (`launch`), which holds
//! its processes at the moments the session must read them.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::cli::RunArgs;
use crate::config::Config;
use crate::kernel::{privileges, Kernel};
use crate::launch::{self, Hold, TracerMsg};
use crate::output::{self, Output};
use crate::proc_id::ProcId;
use crate::procfs;
use crate::report::{build, text, Mode as ReportMode, Target};
use crate::session::{Outcome, Session};

use super::drive::{drive, Flow, Mode, StopSignal, Timing};
use super::progress::Progress;
use super::Failure;

pub(super) async fn run(args: &RunArgs) -> Result<u8, Failure> {
    let config = Config::run(args);
    privileges::check(&[privileges::Need::Trace])?;
    let program = launch::resolve(&args.command[0])?;
    let view = text::View { top: config.top, all_mappings: config.all_mappings };
    let output = Output::to(args.output.format, args.output.output.as_deref(), view)?;
    let kernel = Kernel::load(&config.load_options_for_command())?;
    let mut session = Session::new(kernel, &config.session_options()).held_by_tracer();
    let tracer = launch::start(&program, &args.command)?;
    let mut mode = Running {
        tracer,
        hangup: signal(SignalKind::hangup()).map_err(Failure::Runtime)?,
        root: None,
        ended: None,
        progress: Progress::new(),
    };
    let start_ns = procfs::monotonic_ns();
    drive(&mut session, &mut mode, Timing { interval: config.interval, deadline: None }).await?;
    let (status, outcome) = mode.ended.ok_or(Failure::TracerLost)?;
    drop(mode.progress);
    let end_ns = procfs::monotonic_ns();
    let root = mode.root.ok_or(Failure::TracerLost)?;
    let info = session.proc_info(root).cloned().unwrap_or_default();
    let target = Target {
        pid: root.tgid,
        ns_pid: info.other_ns_pid(root.tgid),
        comm: info.comm,
        exe: info.exe.or_else(|| Some(program.display().to_string())),
        exit_code: Some(status),
    };
    let context = super::context(ReportMode::Run, &config, vec![target], (start_ns, end_ns));
    let report = build::from_session(context, outcome, &mut session);
    output.write(&report)?;
    Ok(output::exit_status(args.output.fail_on_leak, &report, status.clamp(0, 255) as u8))
}

/// The loop's view of `run`: the tracer's holds drive the session, and the
/// command's exit ends the loop with the session's outcome.
struct Running {
    tracer: UnboundedReceiver<TracerMsg>,
    /// A SIGHUP is passed on to the command, as a SIGTERM is.
    hangup: Signal,
    root: Option<ProcId>,
    /// The command's exit status and what was held then.
    ended: Option<(i32, Outcome)>,
    progress: Progress,
}

enum Wake {
    Tracer(Option<TracerMsg>),
    Hangup,
}

impl Running {
    fn forward(&self, signal: i32) {
        if let Some(root) = self.root {
            // SAFETY: kill has no memory arguments.
            unsafe { libc::kill(root.tgid as i32, signal) };
        }
    }
}

impl Mode<Kernel> for Running {
    type Wake = Wake;

    async fn wake(&mut self) -> Wake {
        tokio::select! {
            msg = self.tracer.recv() => Wake::Tracer(msg),
            _ = self.hangup.recv() => Wake::Hangup,
        }
    }

    fn woken(&mut self, wake: Wake, session: &mut Session) -> Result<Flow, Failure> {
        let (hold, reply) = match wake {
            Wake::Hangup => {
                self.forward(libc::SIGHUP);
                return Ok(Flow::Continue);
            }
            Wake::Tracer(Some(TracerMsg::Hold(hold, reply))) => (hold, reply),
            Wake::Tracer(Some(TracerMsg::Failed(e))) => return Err(e.into()),
            Wake::Tracer(None) => return Err(Failure::TracerLost),
        };
        let flow = match hold {
            Hold::CommandExited { status } => {
                let outcome = session.finish()?;
                // Background processes go on untraced: no more signals for them.
                session.untrace_all();
                self.ended = Some((status, outcome));
                Flow::Stop
            }
            Hold::Started { pid } => {
                let root = session.trace_target(pid)?;
                // What it inherits is not acquired while traced.
                session.note_fds_before_tracing(root, procfs::fd_links(pid, pid).unwrap_or_default());
                self.root = Some(root);
                Flow::Continue
            }
            Hold::Forked { child } => {
                session.forked(child);
                Flow::Continue
            }
            Hold::Execed { tgid } => {
                session.after_exec(tgid);
                Flow::Continue
            }
            Hold::CodeMapped { tgid } => {
                session.code_mapped(tgid);
                Flow::Continue
            }
            Hold::Exiting { tgid, tid } => {
                session.before_exit(tgid, tid);
                Flow::Continue
            }
        };
        // The held process goes on once the session has read it.
        let _ = reply.send(());
        Ok(flow)
    }

    fn sample(&mut self, session: &mut Session) -> Result<Flow, Failure> {
        let live = session.refresh()?;
        self.progress.update(&live, session.history());
        Ok(Flow::Continue)
    }

    /// Ctrl-C reaches the command through the terminal, and leaktrace
    /// outlives it to write the report; a SIGTERM is passed on.
    fn signalled(&mut self, signal: StopSignal) -> Flow {
        if signal == StopSignal::Terminate {
            self.forward(libc::SIGTERM);
        }
        Flow::Continue
    }
}
