//! The daemon's HTTP endpoints (axum): `/metrics`, `/report`,
//! `/profile?kind=`, `/healthz`. Handlers only read the last published
//! snapshot; sampling happens in the daemon's loop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use prometheus::Registry;
use serde::Deserialize;
use tokio::sync::watch;

use crate::report::{pprof, Kind, Report};

/// One sample, as served.
pub(crate) struct Snapshot {
    pub report: Report,
    /// The report as JSON, serialized once per sample, not per request.
    pub json: Bytes,
    pub taken: Instant,
    /// Which sample this is (1, 2, …).
    pub seq: u64,
}

#[derive(Clone)]
pub(crate) struct Shared {
    pub registry: Registry,
    pub snapshot: watch::Receiver<Option<Arc<Snapshot>>>,
    /// A sample older than this makes `/healthz` fail: the loop is stuck.
    pub stale_after: Duration,
    /// `/metrics` as encoded for a sample: the series change only with
    /// samples, and encoding thousands of them for every scrape (several
    /// Prometheus replicas, a dashboard) would cost far more than the
    /// sample. The daemon's own `process_*` figures are then as of the first
    /// scrape after the sample.
    pub encoded: Arc<Mutex<Option<(u64, Bytes)>>>,
}

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/report", get(report))
        .route("/profile", get(profile))
        .route("/healthz", get(healthz))
        .with_state(shared)
}

/// The last sample; None until the first (answered with [`not_yet`]).
fn current(shared: &Shared) -> Option<Arc<Snapshot>> {
    shared.snapshot.borrow().clone()
}

fn not_yet() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "no sample yet\n").into_response()
}

async fn metrics(State(shared): State<Shared>) -> Response {
    let seq = current(&shared).map_or(0, |s| s.seq);
    let Ok(mut cached) = shared.encoded.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "the metrics cache is poisoned\n").into_response();
    };
    let body = match &*cached {
        Some((at, body)) if *at == seq && seq != 0 => body.clone(),
        _ => match super::metrics::encode(&shared.registry) {
            Ok(body) => {
                let body = Bytes::from(body);
                *cached = Some((seq, body.clone()));
                body
            }
            Err(e) => {
                return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the metrics: {e}\n")).into_response()
            }
        },
    };
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response()
}

async fn report(State(shared): State<Shared>) -> Response {
    match current(&shared) {
        Some(s) => ([(header::CONTENT_TYPE, "application/json")], s.json.clone()).into_response(),
        None => not_yet(),
    }
}

#[derive(Deserialize)]
struct ProfileQuery {
    kind: Option<String>,
    // Profilers that scrape Go's pprof endpoints send `seconds`: what is
    // outstanding needs no collection time, so it is accepted and ignored.
    #[allow(dead_code)]
    seconds: Option<u64>,
}

async fn profile(State(shared): State<Shared>, Query(query): Query<ProfileQuery>) -> Response {
    let Some(snapshot) = current(&shared) else { return not_yet() };
    let report = match profile_of(&snapshot.report, query.kind.as_deref()) {
        Ok(r) => r,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"profile.pb.gz\""),
        ],
        pprof::encode(&report),
    )
        .into_response()
}

/// The report cut down to one kind (all traced kinds without one).
pub(crate) fn profile_of(report: &Report, kind: Option<&str>) -> Result<Report, String> {
    let Some(name) = kind else { return Ok(report.clone()) };
    let Some(kind) = Kind::from_name(name) else {
        return Err(format!("unknown kind '{name}' (expected {})\n", Kind::names_listed()));
    };
    if !report.kinds.contains(&kind) {
        let traced: Vec<&str> = report.kinds.iter().map(|k| k.name()).collect();
        return Err(format!("the daemon does not trace {kind} (it traces {}; see --kinds)\n", traced.join(", ")));
    }
    let mut cut = report.clone();
    cut.kinds = vec![kind];
    cut.stacks.retain(|s| s.kind == kind);
    Ok(cut)
}

async fn healthz(State(shared): State<Shared>) -> Response {
    match current(&shared) {
        Some(s) if s.taken.elapsed() <= shared.stale_after => (StatusCode::OK, "ok\n").into_response(),
        Some(s) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stale: the last sample is {:.0} s old\n", s.taken.elapsed().as_secs_f64()),
        )
            .into_response(),
        None => not_yet(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_encoded_once_per_sample() {
        let registry = Registry::new();
        let gauge = prometheus::IntGauge::new("leaktrace_test", "a gauge").expect("gauge");
        registry.register(Box::new(gauge.clone())).expect("register");
        let snapshot = |seq| {
            let report = crate::report::tests::sample();
            Some(Arc::new(Snapshot { report, json: Bytes::new(), taken: Instant::now(), seq }))
        };
        let (publish, receiver) = watch::channel(snapshot(1));
        let shared =
            Shared { registry, snapshot: receiver, stale_after: Duration::from_secs(60), encoded: Default::default() };
        let body = |shared: &Shared| {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            runtime.block_on(async {
                let response = metrics(State(shared.clone())).await;
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
                String::from_utf8(bytes.to_vec()).expect("utf-8")
            })
        };
        gauge.set(1);
        assert!(body(&shared).contains("leaktrace_test 1"));
        gauge.set(2);
        assert!(body(&shared).contains("leaktrace_test 1"), "the same sample, the same text");
        publish.send_replace(snapshot(2));
        assert!(body(&shared).contains("leaktrace_test 2"), "a new sample, new text");
    }

    #[test]
    fn profiles_are_cut_to_a_traced_kind() {
        let mut report = crate::report::tests::sample();
        report.kinds = vec![Kind::Fd, Kind::Tcp];
        let mut tcp = report.stacks[0].clone();
        tcp.kind = Kind::Tcp;
        report.stacks.push(tcp);
        let fd = profile_of(&report, Some("fd")).expect("fd is traced");
        assert_eq!(fd.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(), vec!["fd"]);
        assert!(fd.stacks.iter().all(|s| s.kind.name() == "fd") && !fd.stacks.is_empty());
        assert_eq!(profile_of(&report, None).expect("all").stacks.len(), report.stacks.len());
        let err = profile_of(&report, Some("mmap")).expect_err("not traced");
        assert!(err.contains("does not trace mmap"), "{err}");
        assert!(profile_of(&report, Some("files")).expect_err("unknown").contains("unknown kind"));
    }
}
