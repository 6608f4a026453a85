//! `leaktrace daemon`: traces the whole host (or what the filters name)
//! until SIGTERM. Every interval it samples what each live process holds
//! per stack, judges each process's stacks, and publishes the result for
//! the HTTP endpoints: the JSON report, Prometheus metrics, pprof profiles.
//!
//! State stays bounded whatever the host does: what exited processes held
//! is dropped after the sample that saw them last (their series and
//! histories too), the kernel maps and the history have fixed capacities,
//! and exported series are capped (`[metrics]`).

mod attribution;
pub mod container;
pub mod filter;
mod http;
pub mod kubernetes;
mod metrics;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, watch};

use crate::cli::{kind_names, DaemonArgs};
use crate::config::Config;
use crate::failure::Failure;
use crate::kernel::KernelError;
use crate::procfs;
use crate::report::{build, Process, Target};
use crate::run::EVENT_LATENCY;
use crate::session::Session;

use self::http::{Shared, Snapshot};
use self::kubernetes::Pods;
use self::metrics::{Extra, Metrics};

pub async fn daemon(args: &DaemonArgs) -> Result<u8, Failure> {
    let config = args.config()?;
    let started = crate::host::check(&config)?;
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
    let (mut session, events) = crate::host::start(&config, &started, true)?;

    let mut metrics = Metrics::new()?;
    let (publish, snapshot) = watch::channel(None);
    let shared = Shared {
        registry: metrics.registry(),
        snapshot,
        // A few missed samples, or one slow one on a huge host, are not a failure.
        stale_after: config.interval * 3 + Duration::from_secs(30),
        encoded: Default::default(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, http::router(shared))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    eprintln!(
        "leaktrace: daemon tracing {}; serving http://{addr} (/metrics, /report, /profile, /healthz)",
        crate::host::who(&config.filter)
    );

    let mut signals = crate::session::StopSignals::new()?;
    let mut tick = tokio::time::interval(EVENT_LATENCY);
    let mut sample = tokio::time::interval(config.interval);
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failure = None;
    let mut samples = 0;
    let mut known = HashMap::new();
    loop {
        tokio::select! {
            _ = events.ready() => session.drain_events(),
            _ = tick.tick() => {
                if let Err(e) = session.tick() {
                    failure = Some(e.into());
                    break;
                }
            }
            _ = sample.tick() => {
                let taken = take_sample(&mut session, &config, start_ns, pods.as_deref(), &mut metrics, &mut known);
                match taken {
                    Ok(mut snapshot) => {
                        samples += 1;
                        snapshot.seq = samples;
                        publish.send_replace(Some(Arc::new(snapshot)));
                    }
                    Err(e) => {
                        failure = Some(e.into());
                        break;
                    }
                }
            }
            ended = &mut server => {
                let why = match ended {
                    Ok(Ok(())) => "it ended".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                failure = Some(Failure::Server(why));
                break;
            }
            _ = signals.recv() => break,
        }
    }
    // In-flight requests finish; then nothing is traced any more, and the
    // programs and maps go with the kernel side when the session drops.
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut server).await;
    session.untrace_all();
    drop(session);
    match failure {
        Some(e) => Err(e),
        None => {
            eprintln!("leaktrace: daemon stopped");
            Ok(0)
        }
    }
}

/// One sample: what live processes hold (and what those that exited since
/// the last sample held at their exit), judged per process and stack,
/// attributed to containers and pods, as a snapshot to serve; the metrics
/// follow it. `known` is what the last sample read of live processes.
fn take_sample(
    session: &mut Session,
    config: &Config,
    start_ns: u64,
    pods: Option<&Pods>,
    metrics: &mut Metrics,
    known: &mut HashMap<u32, Process>,
) -> Result<Snapshot, KernelError> {
    let begun = Instant::now();
    let live = session.refresh()?;
    let outcome = session.interval_outcome(live)?;
    let targets = config.filter.pids.iter().map(|&pid| Target::live(pid)).collect();
    let context = build::Context {
        mode: "daemon",
        targets,
        start_ns,
        end_ns: procfs::monotonic_ns(),
        preexisting: vec![],
        max_examples: config.examples,
        kinds: kind_names(&config.kinds),
        min_bytes: config.min_bytes,
        sample: config.sample,
        per_process: true,
    };
    let (history, resolver) = session.history_and_resolver();
    let mut report = build::build(context, outcome, history, resolver);
    // Reported now for the last time if gone: their histories go.
    session.forget_gone();
    let processes = attribution::processes(&report, pods, known, config.daemon.redact_args);
    *known = processes.iter().filter(|p| !p.exited).map(|p| (p.pid, p.clone())).collect();
    report.processes = Some(processes);
    let extra = Extra {
        series: session.series_use(),
        sample_seconds: begun.elapsed().as_secs_f64(),
        sampled_at: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
        kubernetes_errors: pods.map_or(0, Pods::errors),
    };
    metrics.update(&report, &extra, &config.metrics);
    let json = bytes::Bytes::from(report.to_json());
    Ok(Snapshot { report, json, taken: Instant::now(), seq: 0 })
}
