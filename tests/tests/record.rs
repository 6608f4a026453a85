//! `leaktrace record` and `leaktrace report FILE`: recordings read back at
//! their checkpoints, after a SIGKILL, and refused when damaged.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use leaktrace_tests::*;
use serde_json::Value;

fn report(file: &std::path::Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(leaktrace())
        .arg("report")
        .arg(file)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .expect("leaktrace report");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn leak(r: &Value) -> &Value {
    stacks(r).iter().find(|s| s["site"] == "leak_steadily").expect("the leak's stack")
}

/// How long growth.c waits before its first acquisition where a test counts
/// each stack exactly: the recorder learns of it from its exec and unwinds it
/// completely once it has read its unwinding tables (up to a second under
/// emulation).
const SETTLE_MS: &str = "1000";

/// Starts a recorder of c-growth processes; returns it once it records.
fn recorder(file: &std::path::Path, extra: &[&str]) -> std::process::Child {
    let mut child = Command::new(leaktrace())
        .args(["record", "--comm", "c-growth", "--output"])
        .arg(file)
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("leaktrace record");
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains("recording into"), "{first}");
    std::thread::spawn(move || for _ in lines {});
    child
}

/// Waits until `pid` holds `n` leaked fds (growth.c leaks /dev/null, which
/// nothing else in it opens), so a loaded machine's late start does not
/// shorten what a recording sees.
fn wait_for_leaks(pid: u32, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let leaked = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_str().and_then(|f| f.parse::<u32>().ok()).is_some_and(|fd| fd > 2))
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == std::path::Path::new("/dev/null")))
                .count()
        });
        if leaked >= n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "pid {pid} leaked only {leaked} of {n}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Ends a recorder as Ctrl-C does, once it has run `at_least` and a
/// checkpoint has followed the leaks; returns its output.
fn stop(rec: std::process::Child, started: std::time::Instant, at_least: Duration) -> std::process::Output {
    // A checkpoint (every second) after the last leak.
    std::thread::sleep(Duration::from_millis(1500));
    if let Some(rest) = at_least.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    rec.wait_with_output().expect("recorder")
}

#[test]
fn a_recording_reads_back_at_its_checkpoints() {
    let dir = scratch_dir("record");
    let file = dir.join("rec.db");
    let started = std::time::Instant::now();
    let rec = recorder(&file, &[]);
    let growth = Background::spawn(&c_fixture("growth"), &["5", "5", "20", SETTLE_MS]);
    wait_for_leaks(growth.pid(), 25);
    let out = stop(rec, started, Duration::from_secs(8));
    assert!(out.status.success());
    assert_eq!(std::fs::metadata(&file).expect("file").permissions().mode() & 0o777, 0o600);

    let (code, json, err) = report(&file, &[]);
    assert_eq!(code, Some(0), "{err}");
    let r: Value = serde_json::from_str(&json).expect("a JSON report");
    assert_eq!(r["mode"], "recording");
    let l = leak(&r);
    assert_eq!(l["count"], 25, "5 s at 5 a second, all held at the end: {r}");
    assert_eq!(l["verdict"], "leak");
    assert_eq!(l["pids"][0], growth.pid());
    // Each checkpoint's count in the history is what a report at that
    // checkpoint says.
    let seconds: Vec<f64> =
        l["history"]["seconds"].as_array().expect("seconds").iter().filter_map(Value::as_f64).collect();
    let counts: Vec<u64> = l["history"]["count"].as_array().expect("counts").iter().filter_map(Value::as_u64).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    for (s, c) in seconds.iter().zip(&counts).filter(|(_, c)| **c > 0) {
        // Seconds are rounded to the millisecond in the report: a
        // millisecond later is still before the next checkpoint.
        let at = format!("{}ms", (s * 1000.0).round() as u64 + 1);
        let (code, json, err) = report(&file, &["--at", &at]);
        assert_eq!(code, Some(0), "{err}");
        let r: Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(leak(&r)["count"].as_u64(), Some(*c), "at {at}");
    }
    let ring = stacks(&r).iter().find(|s| s["site"] == "rotate_ring").expect("ring");
    assert_eq!(ring["count"], 8);
}

#[test]
fn a_recorder_killed_with_sigkill_leaves_what_it_checkpointed() {
    let dir = scratch_dir("record-kill");
    let file = dir.join("rec.db");
    let mut rec = recorder(&file, &[]);
    let _growth = Background::spawn(&c_fixture("growth"), &["30", "5", "30"]);
    std::thread::sleep(Duration::from_millis(4500));
    rec.kill().expect("SIGKILL");
    let _ = rec.wait();
    let (code, json, err) = report(&file, &[]);
    assert_eq!(code, Some(0), "{err}");
    let r: Value = serde_json::from_str(&json).expect("JSON");
    let l = leak(&r);
    let n = l["count"].as_u64().expect("count");
    // About 4 s of leaking at 5 a second, at most one checkpoint lost.
    assert!((14..=23).contains(&n), "{n}");
    assert_eq!(l["history"]["count"].as_array().and_then(|c| c.last()).and_then(Value::as_u64), Some(n));
}

#[test]
fn damaged_and_foreign_files_are_refused() {
    let dir = scratch_dir("record-bad");
    let garbage = dir.join("garbage.db");
    std::fs::write(&garbage, b"not a recording").expect("write");
    let (code, _, err) = report(&garbage, &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("is not a leaktrace recording"), "{err}");
    let (code, _, err) = report(&dir.join("missing.db"), &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read the recording"), "{err}");
    // A real recording cut in half.
    let file = dir.join("rec.db");
    let rec = recorder(&file, &["--duration", "3s"]);
    let _growth = Background::spawn(&c_fixture("growth"), &["3", "5", "5"]);
    assert!(rec.wait_with_output().expect("recorder").status.success());
    let bytes = std::fs::read(&file).expect("read");
    let cut = dir.join("cut.db");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let (code, _, err) = report(&cut, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let (code, _, err) = report(&file, &["--at", "soon"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("neither an RFC 3339 time nor an offset"), "{err}");
}

#[test]
fn a_size_cap_drops_old_checkpoints_and_keeps_what_is_held() {
    let dir = scratch_dir("record-cap");
    let file = dir.join("rec.db");
    let started = std::time::Instant::now();
    let rec = recorder(&file, &["--max-size", "96KiB"]);
    let growth = Background::spawn(&c_fixture("growth"), &["6", "5", "20", SETTLE_MS]);
    wait_for_leaks(growth.pid(), 30);
    assert!(stop(rec, started, Duration::from_secs(8)).status.success());
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let total = size(&file) + size(&dir.join("rec.db-wal"));
    // Trimmed after every checkpoint; the last one, at the end, may add a little.
    assert!(total <= 96 * 1024 + 32 * 1024, "{total} bytes");
    let (code, json, err) = report(&file, &[]);
    assert_eq!(code, Some(0), "{err}");
    let r: Value = serde_json::from_str(&json).expect("JSON");
    // Everything leaked is still held, so none of it was dropped.
    assert_eq!(leak(&r)["count"], 30);
    // The oldest checkpoints went: the recording starts later than it began.
    let window = r["window"]["seconds"].as_f64().expect("seconds");
    assert!(window < 7.5, "the window is still {window} s");
}

/// Two moments of one recording compared with `diff FILE@T1 FILE@T2`: the
/// leak's growth between them is the difference of the reports at them.
#[test]
fn diff_compares_two_moments_of_a_recording() {
    let dir = scratch_dir("record-diff");
    let file = dir.join("rec.db");
    let started = std::time::Instant::now();
    let rec = recorder(&file, &[]);
    let growth = Background::spawn(&c_fixture("growth"), &["6", "5", "20", SETTLE_MS]);
    wait_for_leaks(growth.pid(), 30);
    assert!(stop(rec, started, Duration::from_secs(8)).status.success());
    let at = |moment: &str| {
        let (code, json, err) = report(&file, &["--at", moment]);
        assert_eq!(code, Some(0), "{err}");
        let r: Value = serde_json::from_str(&json).expect("JSON");
        leak(&r)["count"].as_i64().expect("count")
    };
    let (early, late) = (at("3s"), at("7s"));
    assert!(late > early && early > 0, "{early} then {late}");
    let moment = |t: &str| format!("{}@{t}", file.display());
    let out = leaktrace_output(&["diff", &moment("3s"), &moment("7s"), "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d: Value = serde_json::from_slice(&out.stdout).expect("diff json");
    let grown: Vec<&Value> =
        d["stacks"].as_array().expect("stacks").iter().filter(|s| s["site"] == "leak_steadily").collect();
    assert_eq!(grown.len(), 1, "{d}");
    assert_eq!((grown[0]["change"].as_str(), grown[0]["delta"]["count"].as_i64()), (Some("grown"), Some(late - early)));
    // The ring holds 8 at both moments: unchanged, not in the diff's changes.
    assert!(
        d["stacks"].as_array().expect("stacks").iter().all(|s| s["site"] != "rotate_ring" || s["change"] == "same"),
        "{d}"
    );
}

/// Memory mappings in a recording (`--kinds all`), and the profile formats
/// read from it.
#[test]
fn mappings_are_recorded_and_every_format_reads_the_recording() {
    const PAGE: u64 = 4096;
    let dir = scratch_dir("record-mmap");
    let ready = dir.join("ready");
    let file = dir.join("rec.db");
    let target = Background::spawn(&c_fixture("mmap_leaks"), &["attach", ready.to_str().expect("path")]);
    let pid = target.pid().to_string();
    let mut rec = Command::new(leaktrace())
        .args(["record", "--kinds", "all", "--pid", &pid, "--duration", "3s", "--output"])
        .arg(&file)
        .stderr(Stdio::piped())
        .spawn()
        .expect("record");
    let mut err = std::io::BufReader::new(rec.stderr.take().expect("stderr"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut err, &mut first).expect("first line");
    assert!(first.contains("recording into"), "{first}");
    std::fs::write(&ready, b"").expect("ready");
    assert!(rec.wait().expect("recorder").success());

    let (code, json, err) = report(&file, &["--pid", &pid]);
    assert_eq!(code, Some(0), "{err}");
    let r: Value = serde_json::from_str(&json).expect("JSON");
    let maps = with_site(&r, "attach_maps");
    assert!(maps.iter().all(|s| s["kind"] == "mmap"), "{maps:?}");
    let bytes: u64 = maps.iter().map(|s| s["bytes"].as_u64().expect("bytes")).sum();
    assert_eq!((count(&maps), bytes), (3, 12 * PAGE), "{r}");
    // Mapped before recording, then partly unmapped: not an acquisition.
    assert!(with_site(&r, "attach_target").is_empty(), "{r}");
    assert_eq!(r["kinds"], serde_json::json!(["fd", "tcp", "mmap"]));

    for (format, expect) in [("folded", "attach_maps"), ("text", "attach_maps"), ("svg", "<svg")] {
        let out = leaktrace_output(&["report", file.to_str().expect("path"), "--format", format]);
        assert!(out.status.success(), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(expect), "{format}: {text}");
    }
    let profile = dir.join("mmap.pb.gz");
    let out = leaktrace_output(&[
        "report",
        file.to_str().expect("path"),
        "--format",
        "pprof",
        "--output",
        profile.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gz = std::fs::read(&profile).expect("profile");
    assert_eq!(gz[..2], [0x1f, 0x8b], "a gzipped profile");
}
