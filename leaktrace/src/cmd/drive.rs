//! The one event loop every tracing mode runs. It owns the timing and the
//! signals: the session's events are read as they arrive, what they left
//! pending is applied every [`EVENT_LATENCY`], the mode samples every
//! interval, and SIGINT or SIGTERM, a deadline or the mode itself ends it.
//! What a mode does at each of those moments is its [`Mode`]
//! implementation, in its own file.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::MissedTickBehavior;

use crate::kernel::Seam;
use crate::session::Session;

use super::Failure;

/// How soon exits and range releases are applied after their events arrive,
/// and how often events queued without a wake-up (mapping operations) are
/// read.
pub(super) const EVENT_LATENCY: Duration = Duration::from_millis(100);

/// Whether the loop goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    Stop,
}

/// The signals that end tracing (and have the report written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StopSignal {
    Interrupt,
    Terminate,
}

/// When a mode samples, and how long it may run.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timing {
    /// How often [`Mode::sample`] runs (the first time at once).
    pub(super) interval: Duration,
    pub(super) deadline: Option<Duration>,
}

/// A mode's part of the loop.
pub(super) trait Mode<K: Seam> {
    /// What the mode's own source (`run`'s ptrace tracer, the daemon's HTTP
    /// server) yields.
    type Wake;

    /// Resolves when the mode's own source has something; never, unless
    /// the mode has a source.
    fn wake(&mut self) -> impl Future<Output = Self::Wake> {
        std::future::pending()
    }

    fn woken(&mut self, _wake: Self::Wake, _session: &mut Session<K>) -> Result<Flow, Failure> {
        Ok(Flow::Continue)
    }

    /// Every interval: sample, and do with it what the mode does.
    fn sample(&mut self, session: &mut Session<K>) -> Result<Flow, Failure>;

    /// After the session's frequent work, every [`EVENT_LATENCY`].
    fn ticked(&mut self, _session: &mut Session<K>) -> Result<Flow, Failure> {
        Ok(Flow::Continue)
    }

    /// SIGINT or SIGTERM arrived: tracing ends, unless the mode says
    /// otherwise.
    fn signalled(&mut self, _signal: StopSignal) -> Flow {
        Flow::Stop
    }
}

/// Runs `mode` over `session` until SIGINT, SIGTERM, the deadline or the
/// mode itself ends it. An error ends it too; the caller cleans up either
/// way.
pub(super) async fn drive<K: Seam, M: Mode<K>>(
    session: &mut Session<K>,
    mode: &mut M,
    timing: Timing,
) -> Result<(), Failure> {
    let events = Readiness::of(session.kernel())?;
    let mut signals = StopSignals::new()?;
    let mut tick = tokio::time::interval(EVENT_LATENCY);
    let mut sample = tokio::time::interval(timing.interval);
    // A sample slower than the interval (a huge host) delays the next one
    // rather than having a burst of them catch up.
    sample.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let deadline = tokio::time::sleep(timing.deadline.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    loop {
        let flow = tokio::select! {
            _ = events.ready() => {
                session.drain_events();
                Flow::Continue
            }
            _ = tick.tick() => {
                session.tick()?;
                mode.ticked(session)?
            }
            _ = sample.tick() => mode.sample(session)?,
            wake = mode.wake() => mode.woken(wake, session)?,
            signal = signals.recv() => mode.signalled(signal),
            _ = &mut deadline => Flow::Stop,
        };
        if flow == Flow::Stop {
            return Ok(());
        }
    }
}

/// Readiness of the session's event ring buffer (a duplicate descriptor:
/// the session keeps reading through its own).
struct Readiness(AsyncFd<OwnedFd>);

impl Readiness {
    fn of<K: Seam>(kernel: &K) -> Result<Readiness, Failure> {
        let fd = kernel.events_fd().try_clone_to_owned().map_err(Failure::Runtime)?;
        // SAFETY: the AsyncFd owns this duplicate and nothing else closes it.
        unsafe { AsyncFd::register(fd) }.map(Readiness).map_err(|e| Failure::Runtime(e.into()))
    }

    /// Resolves when the kernel has queued events; the loop then reads them.
    /// Readiness is cleared first, so events queued while the loop reads
    /// wake it again.
    async fn ready(&self) {
        if let Ok(mut guard) = self.0.readable().await {
            guard.clear_ready();
        }
    }
}

/// SIGINT and SIGTERM, either of which ends tracing by default.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn new() -> Result<StopSignals, Failure> {
        let listen = |kind| signal(kind).map_err(Failure::Runtime);
        Ok(StopSignals { interrupt: listen(SignalKind::interrupt())?, terminate: listen(SignalKind::terminate())? })
    }

    async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.interrupt.recv() => StopSignal::Interrupt,
            _ = self.terminate.recv() => StopSignal::Terminate,
        }
    }
}
