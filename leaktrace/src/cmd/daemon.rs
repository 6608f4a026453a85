//! `leaktrace daemon`: traces the whole host (or what the filters name)
//! until SIGTERM. Every interval it samples what each live process holds
//! per stack, judges each process's stacks, and publishes the result for
//! the HTTP endpoints (`daemon/`): the JSON report, Prometheus metrics,
//! pprof profiles.
//!
//! State stays bounded whatever the host does: what exited processes held
//! is dropped after the sample that saw them last (their series and
//! histories too), the kernel maps and the history have fixed capacities,
//! and exported series are capped (`[metrics]`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::cli::DaemonArgs;
use crate::config::Config;
use crate::daemon::attribution;
use crate::daemon::http::{self, Shared, Snapshot};
use crate::daemon::kubernetes::{self, Pods};
use crate::daemon::metrics::{Extra, Metrics};
use crate::kernel::{Kernel, KernelError};
use crate::procfs;
use crate::report::{build, Mode as ReportMode, Process, Target};
use crate::session::Session;

use super::drive::{drive, Flow, Mode, Timing};
use super::start::{check, start, who};
use super::Failure;

pub(super) async fn daemon(args: &DaemonArgs) -> Result<u8, Failure> {
    let config = Config::daemon(args)?;
    let checked = check(&config)?;
    // Bound before anything is loaded: a taken port fails at once.
    let addr = config.daemon.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Failure::Listen { addr, source })?;
    let pods = if kubernetes::wanted(&config.kubernetes) {
        let client = kubernetes::client().await?;
        let pods = Arc::new(Pods::default());
        let node = kubernetes::node_name(&config.kubernetes);
        tokio::spawn(kubernetes::follow(client, node, config.kubernetes.refresh, pods.clone()));
        Some(pods)
    } else {
        None
    };

    let start_ns = procfs::monotonic_ns();
    let (session, _) = start(&config, &checked)?;
    let mut session = session.per_process();

    let metrics = Metrics::new()?;
    let (publish, snapshot) = watch::channel(None);
    let shared = Shared {
        registry: metrics.registry(),
        snapshot,
        // A few missed samples, or one slow one on a huge host, are not a failure.
        stale_after: config.interval * 3 + Duration::from_secs(30),
        encoded: Default::default(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, http::router(shared))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    eprintln!(
        "leaktrace: daemon tracing {}; serving http://{addr} (/metrics, /report, /profile, /healthz)",
        who(&config.filter)
    );

    let mut mode = Serving { config, start_ns, pods, metrics, publish, server, samples: 0, known: HashMap::new() };
    let timing = Timing { interval: mode.config.interval, deadline: None };
    let driven = drive(&mut session, &mut mode, timing).await;
    // In-flight requests finish; then nothing is traced any more, and the
    // programs and maps go with the kernel side when the session drops.
    let _ = stop.send(());
    // (A server that stopped by itself was awaited already, by the loop.)
    if !mode.server.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut mode.server).await;
    }
    session.untrace_all();
    drop(session);
    driven?;
    eprintln!("leaktrace: daemon stopped");
    Ok(0)
}

/// The loop's view of the daemon: a snapshot to serve at every interval.
struct Serving {
    config: Config,
    start_ns: u64,
    pods: Option<Arc<Pods>>,
    metrics: Metrics,
    publish: watch::Sender<Option<Arc<Snapshot>>>,
    server: JoinHandle<std::io::Result<()>>,
    samples: u64,
    /// What the last sample read of live processes.
    known: HashMap<u32, Process>,
}

impl Serving {
    /// One sample: what live processes hold (and what those that exited since
    /// the last sample held at their exit), judged per process and stack,
    /// attributed to containers and pods, as a snapshot to serve; the metrics
    /// follow it.
    fn take_sample(&mut self, session: &mut Session) -> Result<Snapshot, KernelError> {
        let begun = Instant::now();
        let live = session.refresh()?;
        let outcome = session.interval_outcome(live)?;
        let config = &self.config;
        let targets = config.filter.pids.iter().map(|&pid| Target::live(pid)).collect();
        let context = super::context(ReportMode::Daemon, config, targets, (self.start_ns, procfs::monotonic_ns()));
        let mut report = build::from_session(build::Context { per_process: true, ..context }, outcome, session);
        // Reported now for the last time if gone: their histories go.
        session.forget_gone();
        let pods = self.pods.as_deref();
        let processes = attribution::processes(&report, pods, &self.known, config.daemon.redact_args);
        self.known = processes.iter().filter(|p| !p.exited).map(|p| (p.pid, p.clone())).collect();
        report.processes = Some(processes);
        let extra = Extra {
            series: session.series_use(),
            sample_seconds: begun.elapsed().as_secs_f64(),
            sampled_at: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            kubernetes_errors: pods.map_or(0, Pods::errors),
        };
        self.metrics.update(&report, &extra, &config.metrics);
        let json = bytes::Bytes::from(report.to_json());
        Ok(Snapshot { report, json, taken: Instant::now(), seq: 0 })
    }
}

impl Mode<Kernel> for Serving {
    /// The HTTP server stopped, which it only does on a failure.
    type Wake = Result<std::io::Result<()>, tokio::task::JoinError>;

    async fn wake(&mut self) -> Self::Wake {
        (&mut self.server).await
    }

    fn woken(&mut self, ended: Self::Wake, _session: &mut Session) -> Result<Flow, Failure> {
        let why = match ended {
            Ok(Ok(())) => "it ended".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        Err(Failure::Server(why))
    }

    fn sample(&mut self, session: &mut Session) -> Result<Flow, Failure> {
        let mut snapshot = self.take_sample(session)?;
        self.samples += 1;
        snapshot.seq = self.samples;
        self.publish.send_replace(Some(Arc::new(snapshot)));
        Ok(Flow::Continue)
    }
}
