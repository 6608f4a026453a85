//! Verdicts from growth over time: a steady leak among resources held by
//! design (a pool, a ring, request-scoped files), traced together; the
//! `--fail-on-leak` gate; and the profile outputs of the same trace.

use std::process::Command;

use leaktrace_tests::*;
use serde_json::Value;

/// growth.c: leak_steadily opens RATE fds a second for SECONDS seconds.
const SECONDS: u64 = 10;
const RATE: u64 = 5;

fn growth() -> std::path::PathBuf {
    c_fixture("growth")
}

fn only<'a>(report: &'a Value, site: &str) -> &'a Value {
    let entries = with_site(report, site);
    assert_eq!(entries.len(), 1, "one stack from {site}: {entries:?}");
    entries[0]
}

fn verdict(entry: &Value) -> &str {
    entry["verdict"].as_str().expect("verdict")
}

fn growth_per_minute(entry: &Value) -> f64 {
    entry["growth_per_minute"].as_f64().expect("growth_per_minute")
}

/// Within 15% of the true rate.
fn assert_rate(entry: &Value, per_minute: f64) {
    let measured = growth_per_minute(entry);
    assert!(
        (measured - per_minute).abs() <= 0.15 * per_minute,
        "growth {measured}/min, true {per_minute}/min: {entry}"
    );
}

fn leaks(report: &Value) -> Vec<&Value> {
    stacks(report).iter().filter(|s| s["verdict"] == "leak").collect()
}

#[test]
fn run_judges_the_steady_leak_and_nothing_held_by_design() {
    let (seconds, rate) = (SECONDS.to_string(), RATE.to_string());
    let run = run_json(&["--interval", "1s"], &growth(), &[&seconds, &rate]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let r = &run.report;

    let leak = only(r, "leak_steadily");
    assert_eq!(leak["count"], SECONDS * RATE);
    assert_eq!(verdict(leak), "leak", "{leak}");
    assert_rate(leak, (RATE * 60) as f64);
    assert_eq!(leaks(r).len(), 1, "only leak_steadily leaks: {:?}", leaks(r));

    let pool = only(r, "open_pool");
    assert_eq!((pool["count"].as_u64(), verdict(pool)), (Some(4), "steady"), "{pool}");
    let ring = only(r, "rotate_ring");
    assert_eq!((ring["count"].as_u64(), verdict(ring)), (Some(8), "steady"), "{ring}");
    assert!(with_site(r, "handle_request").is_empty(), "request-scoped files are all closed at exit");

    // The history: one point per sample, ending with what the report counts.
    let history = &leak["history"];
    let counts: Vec<u64> = history["count"].as_array().expect("count").iter().filter_map(Value::as_u64).collect();
    let seconds: Vec<f64> = history["seconds"].as_array().expect("seconds").iter().filter_map(Value::as_f64).collect();
    assert!(counts.len() >= 6 && counts.len() == seconds.len(), "{history}");
    assert_eq!(counts.last().copied(), Some(SECONDS * RATE), "{history}");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "a leak never shrinks: {history}");
    assert!(seconds.windows(2).all(|w| w[0] < w[1]), "{history}");
    assert!(leak["first_seen"].as_str().is_some_and(|t| t >= r["window"]["start"].as_str().expect("start")), "{leak}");
}

#[test]
fn attach_judges_a_leaking_process_and_a_steady_one_traced_together() {
    let leaking = Background::spawn(&growth(), &["30", &RATE.to_string()]);
    let steady = Background::spawn(&growth(), &["30", "0"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = leaktrace_output(&[
        "attach",
        "--pid",
        &leaking.pid().to_string(),
        "--pid",
        &steady.pid().to_string(),
        "--duration",
        "10s",
        "--interval",
        "1s",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: &Value = &serde_json::from_slice(&out.stdout).expect("json report");

    let leak = only(r, "leak_steadily");
    assert_eq!(verdict(leak), "leak", "{leak}");
    assert_eq!(leak["pids"], serde_json::json!([leaking.pid()]));
    assert_rate(leak, (RATE * 60) as f64);
    // Leaked during the 10 s window, give or take the attach.
    let n = leak["count"].as_u64().expect("count");
    assert!((9 * RATE..=11 * RATE).contains(&n), "{n}");
    assert_eq!(leaks(r).len(), 1, "{:?}", leaks(r));
    // The ring turned over while traced: both processes' rings are steady.
    let ring = only(r, "rotate_ring");
    assert_eq!((ring["count"].as_u64(), verdict(ring)), (Some(16), "steady"), "{ring}");
    // The pools were opened before tracing began.
    assert!(with_site(r, "open_pool").is_empty());
}

#[test]
fn fail_on_leak_gates_on_the_verdict() {
    let leaking = leaktrace_output(&[
        "run",
        "--fail-on-leak",
        "--format",
        "json",
        "--",
        growth().to_str().expect("path"),
        "7",
        &RATE.to_string(),
    ]);
    assert_eq!(leaking.status.code(), Some(3), "{}", String::from_utf8_lossy(&leaking.stderr));
    assert!(String::from_utf8_lossy(&leaking.stderr).contains("1 stack judged leak (--fail-on-leak)"));
    let r: Value = serde_json::from_slice(&leaking.stdout).expect("the report is written all the same");
    assert_eq!(only(&r, "leak_steadily")["count"], 7 * RATE);

    let steady = leaktrace_output(&["run", "--fail-on-leak", "--", growth().to_str().expect("path"), "7", "0"]);
    assert_eq!(steady.status.code(), Some(0), "{}", String::from_utf8_lossy(&steady.stderr));
    // Without the flag, the command's own status.
    let plain = leaktrace_output(&["run", "--", growth().to_str().expect("path"), "7", &RATE.to_string()]);
    assert_eq!(plain.status.code(), Some(0));
    let text = String::from_utf8_lossy(&plain.stdout);
    let line = summary_lines(&text).into_iter().find(|l| l.starts_with("35 files")).expect("leak line");
    assert!(text.contains(&format!("leak: {line}")), "the verdict leads: {text}");
    assert!(line.contains("/min ") && line.contains('█'), "growth and sparkline: {line}");
}

/// The same trace as a pprof profile (read back by Go's own tool), folded
/// stacks and a flame graph.
#[test]
fn profiles_name_the_leaking_function() {
    let dir = scratch_dir("profiles");
    let program = growth();
    let trace = |format: &str, file: &str| {
        let path = dir.join(file);
        let out = leaktrace_output(&[
            "run",
            "--format",
            format,
            "--output",
            path.to_str().expect("path"),
            "--",
            program.to_str().expect("path"),
            "2",
            "10",
        ]);
        assert!(out.status.success(), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        path
    };

    let pprof = trace("pprof", "fds.pb.gz");
    let top = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(&pprof)
        .env("HOME", &dir)
        .output()
        .expect("go tool pprof");
    let listing = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "{}", String::from_utf8_lossy(&top.stderr));
    // "flat flat% sum% cum cum% function": cumulative counts per function.
    let cum = |function: &str| {
        let row = listing.lines().find(|l| l.trim_end().ends_with(&format!(" {function}")));
        row.and_then(|r| r.split_whitespace().nth(3)).unwrap_or_else(|| panic!("{function}: {listing}")).to_string()
    };
    assert_eq!(cum("leak_steadily"), "20", "{listing}");
    assert_eq!(cum("rotate_ring"), "8", "{listing}");
    assert_eq!(cum("open_pool"), "4", "{listing}");

    let folded = std::fs::read_to_string(trace("folded", "fds.folded")).expect("folded");
    let line = folded.lines().find(|l| l.contains(";leak_steadily;")).unwrap_or_else(|| panic!("{folded}"));
    assert!(line.starts_with("fd:file;") && line.ends_with(";__libc_open64 20"), "{line}");

    let svg = std::fs::read_to_string(trace("svg", "fds.svg")).expect("svg");
    assert!(svg.contains("<svg") && svg.contains("leak_steadily") && svg.contains("leak_steadily"), "{svg}");
}

#[test]
fn diff_compares_reports_from_the_command_line() {
    let dir = scratch_dir("diff");
    let report = |name: &str, count: u64| {
        let path = dir.join(name);
        let body = serde_json::json!({
            "schema": "leaktrace.report/1", "mode": "attach", "kinds": ["fd"], "targets": [],
            "window": {"start": "2026-11-24T10:00:00Z", "end": "2026-11-24T10:01:00Z", "seconds": 60.0},
            "totals": {"acquired": count, "released": 0, "outstanding": count, "dropped": 0},
            "stacks": [{"verdict": "leak", "kind": "fd", "resource": "file", "count": count, "bytes": 0, "pids": [1],
                        "site": "load_config",
                        "stack": [{"address": format!("{:#x}", 0x401000 + count), "symbol": "load_config",
                                   "module": "/srv/app", "file": "app.c", "line": 16}]}],
        });
        std::fs::write(&path, body.to_string()).expect("write report");
        path
    };
    let (base, new) = (report("base.json", 10), report("new.json", 25));
    let out =
        leaktrace_output(&["diff", base.to_str().expect("path"), new.to_str().expect("path"), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d: Value = serde_json::from_slice(&out.stdout).expect("diff json");
    assert_eq!(d["stacks"].as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(
        (d["stacks"][0]["change"].as_str(), d["stacks"][0]["delta"]["count"].as_i64()),
        (Some("grown"), Some(15))
    );

    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{not json").expect("write");
    let out = leaktrace_output(&["diff", base.to_str().expect("path"), garbage.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("leaktrace: ") && err.contains("garbage.json") && err.lines().count() == 1, "{err}");
}

/// A run too short for six samples is judged by when what is still held was
/// acquired: a loop that leaks all along is a leak, a ring that replaces its
/// oldest is not, and `--fail-on-leak` gates on it.
#[test]
fn short_runs_are_judged_by_acquisition_times() {
    let run = run_json(&[], &growth(), &["1", "25"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let leak = only(&run.report, "leak_steadily");
    assert_eq!(leak["count"], 25);
    assert_eq!(verdict(leak), "leak", "{leak}");
    assert_rate(leak, 25.0 * 60.0);
    assert!(
        leak["verdict_reason"].as_str().is_some_and(|r| r.contains("judged from when the 25 still held")),
        "{leak}"
    );
    let ring = only(&run.report, "rotate_ring");
    assert_ne!(verdict(ring), "leak", "{ring}");
    assert_eq!(verdict(only(&run.report, "open_pool")), "steady");

    // 100 leaked on an error path in a few milliseconds.
    let out =
        leaktrace_output(&["run", "--fail-on-leak", "--", c_fixture("fd_leaks").to_str().expect("path"), "error-path"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}

/// shapes.c burst: 50 files opened in a loop and kept, then a long idle, is
/// `suspect` (a leak that stopped), never `steady`; the pool of 4 opened at
/// start is `steady`. `--fail-on-leak` does not fire on a suspect.
#[test]
fn a_burst_that_stopped_is_suspect_and_a_pool_of_four_steady() {
    let run = run_json(&["--interval", "1s", "--fail-on-leak"], &c_fixture("shapes"), &["burst"]);
    assert_eq!(run.status, 0, "no leak verdict, so no failure: {}", run.stderr);
    let r = &run.report;
    let burst = only(r, "leak_burst");
    assert_eq!((burst["count"].as_u64(), verdict(burst)), (Some(50), "suspect"), "{burst}");
    let reason = burst["verdict_reason"].as_str().expect("reason");
    assert!(reason.contains("rose by 50 to 50 files, then held them all"), "{reason}");
    assert!(burst["history"]["count"].as_array().expect("history").len() >= 6, "{burst}");
    let pool = only(r, "open_pool");
    assert_eq!((pool["count"].as_u64(), verdict(pool)), (Some(4), "steady"), "{pool}");
}

/// shapes.c cache: a cache of open files that grows to 24 and is mostly
/// released by a later event is `steady`, with the 4 it still holds.
#[test]
fn a_cache_that_grows_then_is_released_is_steady() {
    let run = run_json(&["--interval", "1s"], &c_fixture("shapes"), &["cache"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let cache = only(&run.report, "cache_relation");
    assert_eq!((cache["count"].as_u64(), verdict(cache)), (Some(4), "steady"), "{cache}");
    let history: Vec<u64> =
        cache["history"]["count"].as_array().expect("history").iter().filter_map(Value::as_u64).collect();
    assert!(history.iter().max().is_some_and(|&m| m >= 16), "it grew first: {history:?}");
    assert!(cache["verdict_reason"].as_str().expect("reason").contains("gave back"), "{cache}");
    assert!(leaks(&run.report).is_empty(), "{:?}", leaks(&run.report));
}
