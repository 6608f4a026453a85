//! `leaktrace top`: traces the given processes (or the whole host), samples
//! what each stack holds every interval, and redraws the screen with the
//! current report; keys are read between events.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::cli::TopArgs;
use crate::config::Config;
use crate::kernel::{Kernel, KernelError};
use crate::procfs;
use crate::report::{build, Mode as ReportMode, Report, Target};
use crate::session::Session;
use crate::top::{Action, Screen, Status};

use super::drive::{drive, Flow, Mode, Timing};
use super::start::{check, start};
use super::Failure;

pub(super) async fn top(args: &TopArgs) -> Result<u8, Failure> {
    if !std::io::stdout().is_terminal() {
        return Err(Failure::Terminal(std::io::Error::other(
            "standard output is not a terminal (for a report, use attach --format json)",
        )));
    }
    let config = Config::top(args);
    let checked = check(&config)?;
    let (mut session, _) = start(&config, &checked)?;
    let who = if config.filter.pids.is_empty() {
        "all processes".to_string()
    } else {
        config
            .filter
            .pids
            .iter()
            .map(|&pid| match procfs::comm(pid) {
                Some(comm) => format!("pid {pid} ({comm})"),
                None => format!("pid {pid}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let screen = Screen::new().map_err(Failure::Terminal)?;
    let mut mode = Watching {
        status: Status { targets: who, interval: config.interval, elapsed: Duration::ZERO, paused: false, error: None },
        screen,
        report: None,
        started: Instant::now(),
        start_ns: procfs::monotonic_ns(),
        config,
    };
    // Raw mode makes Ctrl-C a key; a SIGINT sent by kill still ends the view.
    let timing = Timing { interval: mode.config.interval, deadline: None };
    let driven = drive(&mut session, &mut mode, timing).await;
    drop(mode.screen);
    session.untrace_all();
    driven.map(|()| 0)
}

/// The loop's view of `top`: a report at every interval, drawn; keys between.
struct Watching {
    config: Config,
    screen: Screen,
    status: Status,
    /// The last report drawn, kept while paused or when a refresh fails.
    report: Option<Report>,
    started: Instant,
    start_ns: u64,
}

impl Watching {
    /// What live processes hold now, with each stack's history and verdict.
    fn current(&self, session: &mut Session) -> Result<Report, KernelError> {
        let live = session.refresh()?;
        let outcome = session.live_outcome(live)?;
        let targets = self.config.filter.pids.iter().map(|&pid| Target::live(pid)).collect();
        let window = (self.start_ns, procfs::monotonic_ns());
        let context = super::context(ReportMode::Top, &self.config, targets, window);
        Ok(build::from_session(context, outcome, session))
    }

    fn draw(&mut self) -> Result<(), Failure> {
        if let Some(report) = &self.report {
            self.screen.draw(report, &self.status).map_err(Failure::Terminal)?;
        }
        Ok(())
    }
}

impl Mode<Kernel> for Watching {
    type Wake = ();

    fn sample(&mut self, session: &mut Session) -> Result<Flow, Failure> {
        if self.status.paused {
            return Ok(Flow::Continue);
        }
        self.status.elapsed = self.started.elapsed();
        match self.current(session) {
            Ok(r) => {
                self.report = Some(r);
                self.status.error = None;
            }
            Err(e) => self.status.error = Some(e.to_string()),
        }
        self.draw()?;
        Ok(Flow::Continue)
    }

    /// Keys are read here, without blocking the loop.
    fn ticked(&mut self, _session: &mut Session) -> Result<Flow, Failure> {
        match self.screen.poll_key(Duration::ZERO).map_err(Failure::Terminal)? {
            Some(Action::Quit) => return Ok(Flow::Stop),
            Some(Action::Pause) => self.status.paused = !self.status.paused,
            Some(_) => {}
            None => return Ok(Flow::Continue),
        }
        self.draw()?;
        Ok(Flow::Continue)
    }
}
