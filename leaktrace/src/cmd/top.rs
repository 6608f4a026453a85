//! The loop of `leaktrace top`: traces the given processes (or the whole
//! host), samples what each stack holds every interval, and redraws the
//! screen with the current report; keys are read between events.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::{Action, Screen, Status};
use crate::cli::{kind_names, Kind};
use crate::config::Config;
use crate::failure::Failure;
use crate::procfs;
use crate::report::{build, Report, Target};
use crate::run::EVENT_LATENCY;
use crate::session::Session;

pub async fn top(pids: &[u32], kinds: &[Kind], interval: Duration) -> Result<u8, Failure> {
    if !std::io::stdout().is_terminal() {
        return Err(Failure::Terminal(std::io::Error::other(
            "standard output is not a terminal (for a report, use attach --format json)",
        )));
    }
    let mut pids = pids.to_vec();
    pids.sort_unstable();
    pids.dedup();
    let config = Config {
        interval,
        kinds: kinds.to_vec(),
        filter: crate::config::FilterConfig { pids: pids.clone(), ..Default::default() },
        ..Config::default()
    };
    let started = crate::host::check(&config)?;
    let (mut session, events) = crate::host::start(&config, &started, false)?;
    let start_ns = procfs::monotonic_ns();
    let targets = pids.clone();
    let who = if pids.is_empty() {
        "all processes".to_string()
    } else {
        pids.iter()
            .map(|&pid| match procfs::comm(pid) {
                Some(comm) => format!("pid {pid} ({comm})"),
                None => format!("pid {pid}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };

    let mut screen = Screen::new().map_err(Failure::Terminal)?;
    let started = Instant::now();
    let mut status = Status { targets: who, interval, elapsed: Duration::ZERO, paused: false, error: None };
    let mut report: Option<Report> = None;
    // Raw mode makes Ctrl-C a key; a SIGINT sent by kill still ends the view.
    let mut stop = crate::session::StopSignals::new()?;
    let mut tick = tokio::time::interval(EVENT_LATENCY);
    let mut refresh = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = events.ready() => session.drain_events(),
            _ = tick.tick() => {
                session.tick()?;
                // Keys are read here, without blocking the loop.
                match screen.poll_key(Duration::ZERO).map_err(Failure::Terminal)? {
                    Some(Action::Quit) => break,
                    Some(Action::Pause) => status.paused = !status.paused,
                    Some(_) => {}
                    None => continue,
                }
                if let Some(report) = &report {
                    screen.draw(report, &status).map_err(Failure::Terminal)?;
                }
            }
            _ = refresh.tick() => {
                if status.paused {
                    continue;
                }
                status.elapsed = started.elapsed();
                match current_report(&mut session, &targets, kinds, start_ns) {
                    Ok(r) => {
                        report = Some(r);
                        status.error = None;
                    }
                    Err(e) => status.error = Some(e.to_string()),
                }
                if let Some(report) = &report {
                    screen.draw(report, &status).map_err(Failure::Terminal)?;
                }
            }
            _ = stop.recv() => break,
        }
    }
    drop(screen);
    session.untrace_all();
    Ok(0)
}

/// What live processes hold now, with each stack's history and verdict.
fn current_report(
    session: &mut Session,
    targets: &[u32],
    kinds: &[Kind],
    start_ns: u64,
) -> Result<Report, crate::kernel::KernelError> {
    let live = session.refresh()?;
    let outcome = session.live_outcome(live)?;
    let targets = targets.iter().map(|&pid| Target::live(pid)).collect();
    let context = build::Context {
        mode: "top",
        targets,
        start_ns,
        end_ns: procfs::monotonic_ns(),
        preexisting: vec![],
        max_examples: Config::default().examples,
        kinds: kind_names(kinds),
        min_bytes: 0,
        sample: 1,
        per_process: false,
    };
    let (history, resolver) = session.history_and_resolver();
    Ok(build::build(context, outcome, history, resolver))
}
