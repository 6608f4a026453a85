//! `leaktrace attach`: processes already running.

use std::path::PathBuf;
use std::process::Command;

use leaktrace_tests::*;

fn attach(pid: u32, duration: &str) -> Tracer {
    Tracer::start(&["attach", "--format", "json", "--pid", &pid.to_string(), "--duration", duration])
}

fn ready_file(name: &str) -> PathBuf {
    scratch_dir(name).join("ready")
}

#[test]
fn attach_reports_what_was_acquired_while_tracing_and_lists_what_was_there_before() {
    let ready = ready_file("attach");
    let target = Background::spawn(&c_fixture("fd_leaks"), &["attach", ready.to_str().expect("path")]);
    wait_for_file(&ready);
    let tracer = attach(target.pid(), "3s");
    std::fs::write(ready.with_extension("go"), b"").expect("signal the fixture");
    let out = tracer.wait_with_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");

    assert_eq!(r["mode"], "attach");
    assert_eq!(r["targets"][0]["pid"], target.pid());
    assert_eq!(r["targets"][0]["exit_code"], serde_json::Value::Null);
    let leaked = with_path(&r, "file", "/etc/passwd");
    assert_eq!(count(&leaked), 6);
    assert_eq!(count(&with_site(&r, "leak_slowly")), 6, "tables are loaded at attach time");
    assert_eq!(total(&r, "outstanding"), 6, "the 50 open/close pairs are not reported");
    assert!(r["window"]["seconds"].as_f64().expect("seconds") >= 2.9);

    let before = r["preexisting"].as_array().expect("preexisting");
    let hostnames = before.iter().filter(|p| p["path"] == "/etc/hostname").collect::<Vec<_>>();
    assert_eq!(hostnames.len(), 2, "{before:?}");
    assert!(hostnames.iter().all(|p| p["open_at_end"] == true && p["resource"] == "file"));
    assert!(before.iter().all(|p| p["path"] != "/etc/passwd"), "acquired after attaching");
}

#[test]
fn attach_ends_when_every_target_exited() {
    // It ends once told to, after the tracer has begun.
    let gate = scratch_dir("attach-exit").join("exit");
    let script = format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display());
    let waiter = Background::spawn(std::path::Path::new("/bin/sh"), &["-c", &script]);
    let tracer = attach(waiter.pid(), "60s");
    std::fs::write(&gate, b"").expect("gate");
    let started = std::time::Instant::now();
    let out = tracer.wait_with_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed().as_secs() < 20, "did not notice the exit");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(total(&r, "outstanding"), 0);
}

/// `attach --all`: every process on the host, including those that were
/// running before tracing began, and never the tracer itself.
#[test]
fn attach_all_traces_processes_it_was_not_told_about() {
    let leaking = Background::spawn(&c_fixture("growth"), &["30", "5"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let tracer = Command::new(leaktrace())
        .args(["attach", "--all", "--duration", "4s", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start leaktrace attach --all");
    let tracer_pid = tracer.id();
    let out = tracer.wait_with_output().expect("leaktrace attach --all");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.starts_with("leaktrace: tracing every process;"), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let leak = with_site(&r, "leak_steadily");
    assert_eq!(leak.len(), 1, "{r}");
    assert_eq!(leak[0]["pids"], serde_json::json!([leaking.pid()]));
    // 5 a second for the 4 s window, give or take the start.
    let n = leak[0]["count"].as_u64().expect("count");
    assert!((15..=25).contains(&n), "{n}");
    assert!(symbols(leak[0]).contains(&"start_thread"), "a complete stack: {}", leak[0]);
    assert!(
        stacks(&r).iter().all(|s| !s["pids"].as_array().expect("pids").contains(&serde_json::json!(tracer_pid))),
        "the tracer does not trace itself"
    );
}

/// A pid named twice is one target, listed once, in the order first named.
#[test]
fn a_pid_named_twice_is_traced_once() {
    let gate = scratch_dir("attach-twice").join("exit");
    let script = format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display());
    let first = Background::spawn(std::path::Path::new("/bin/sh"), &["-c", &script]);
    let second = Background::spawn(std::path::Path::new("/bin/sh"), &["-c", &script]);
    let (a, b) = (first.pid().to_string(), second.pid().to_string());
    let tracer =
        Tracer::start(&["attach", "--format", "json", "--pid", &b, "--pid", &a, "--pid", &b, "--duration", "1s"]);
    let out = tracer.wait_with_output();
    std::fs::write(&gate, b"").expect("gate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with(&format!("leaktrace: tracing pid {b} (sh), pid {a} (sh);")), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let targets: Vec<u64> =
        r["targets"].as_array().expect("targets").iter().filter_map(|t| t["pid"].as_u64()).collect();
    assert_eq!(targets, vec![u64::from(second.pid()), u64::from(first.pid())]);
}

/// `attach --comm NAME` traces the processes of that name and no other,
/// as the daemon's and record's filters do.
#[test]
fn attach_by_name_traces_only_processes_of_that_name() {
    // The same program under another name, for the filter to leave out.
    let renamed = scratch_dir("attach-comm").join("not-growth");
    std::fs::copy(c_fixture("growth"), &renamed).expect("copy");
    let leaking = Background::spawn(&c_fixture("growth"), &["30", "5"]);
    let other = Background::spawn(&renamed, &["30", "5"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let name = std::fs::read_to_string(format!("/proc/{}/comm", leaking.pid())).expect("comm");
    let out = Command::new(leaktrace())
        .args(["attach", "--comm", name.trim(), "--duration", "3s", "--format", "json"])
        .output()
        .expect("leaktrace attach --comm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.starts_with(&format!("leaktrace: tracing processes with comm {};", name.trim())), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let leak = with_site(&r, "leak_steadily");
    assert_eq!(leak.len(), 1, "{r}");
    assert_eq!(leak[0]["pids"], serde_json::json!([leaking.pid()]));
    assert!(
        stacks(&r).iter().all(|s| !s["pids"].as_array().expect("pids").contains(&serde_json::json!(other.pid()))),
        "the process of another name is left out"
    );
}

/// A pre-fork server: what workers that exited held at their exit is told
/// apart from what live ones hold, which is what `/proc` shows.
#[test]
fn attach_tells_what_exited_workers_held_from_what_live_ones_hold() {
    let ready = ready_file("attach-prefork");
    let server = Background::spawn(&c_fixture("prefork"), &[ready.to_str().expect("path")]);
    wait_for_file(&ready);
    let tracer = Tracer::start(&["attach", "--pid", &server.pid().to_string(), "--duration", "4s", "--format", "json"]);
    std::fs::write(ready.with_extension("go"), b"").expect("signal the fixture");
    let out = tracer.wait_with_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");

    // 10 workers that each held 3 when they exited: nothing held now.
    let served = with_site(&r, "serve_request");
    assert_eq!(served.len(), 1, "{r}");
    assert_eq!(served[0]["count"], 30);
    assert_eq!(served[0]["held_at_exit"], 30);
    assert_eq!(served[0]["pids"].as_array().expect("pids").len(), 10);
    assert!(served[0]["examples"].as_array().expect("examples").iter().all(|e| e["exited"] == true), "{}", served[0]);
    assert_eq!(served[0]["verdict"], "steady", "{}", served[0]["verdict_reason"]);
    // The live worker holds its 5, as /proc says.
    let kept = with_site(&r, "keep_session");
    assert_eq!(kept.len(), 1, "{r}");
    assert_eq!((kept[0]["count"].as_u64(), kept[0]["held_at_exit"].as_u64()), (Some(5), Some(0)));
    assert!(kept[0]["examples"].as_array().expect("examples").iter().all(|e| e.get("exited").is_none()));
    let live = kept[0]["pids"][0].as_u64().expect("pid") as u32;
    let in_proc = std::fs::read_dir(format!("/proc/{live}/fd"))
        .expect("the live worker's fds")
        .filter(|e| {
            let link = e.as_ref().ok().and_then(|e| std::fs::read_link(e.path()).ok());
            link.is_some_and(|l| l == std::path::Path::new("/etc/hostname"))
        })
        .count();
    assert_eq!(in_proc, 5);
    assert_eq!(total(&r, "outstanding"), 5, "what live processes hold");
}

/// Attaching during an incident: 50 connections left in CLOSE_WAIT before
/// tracing began are one group with their state and peer, as `ss` sees
/// them; no stack can be known for them, and the report says why.
#[test]
fn connections_open_before_attach_are_grouped_by_state_and_peer() {
    use std::net::{TcpListener, TcpStream};
    // This test process plays the server's client that forgot to close.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let peer = listener.local_addr().expect("address");
    let clients: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(peer).expect("connect")).collect();
    for _ in 0..50 {
        drop(listener.accept().expect("accept"));
    }
    // The peer closed each; this side never does: CLOSE_WAIT.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let ss = Command::new("ss").args(["-Htn", "state", "close-wait", "dst", &peer.to_string()]).output().expect("ss");
    assert_eq!(String::from_utf8_lossy(&ss.stdout).lines().count(), 50, "ss");

    let me = std::process::id();
    let out = Command::new(leaktrace())
        .args(["attach", "--pid", &me.to_string(), "--duration", "1s", "--format", "json"])
        .output()
        .expect("leaktrace attach");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let groups = r["preexisting_groups"].as_array().expect("preexisting_groups");
    let waiting: Vec<&serde_json::Value> = groups.iter().filter(|g| g["state"] == "CLOSE_WAIT").collect();
    assert_eq!(waiting.len(), 1, "{groups:#?}");
    assert_eq!(waiting[0]["kind"], "tcp");
    assert_eq!(waiting[0]["peer"], peer.to_string());
    assert_eq!((waiting[0]["count"].as_u64(), waiting[0]["open_at_end"].as_u64()), (Some(50), Some(50)));
    // Entries are kept to 32 a group, each with its state and peer.
    let entries = r["preexisting"].as_array().expect("preexisting");
    let kept: Vec<&serde_json::Value> = entries.iter().filter(|p| p["state"] == "CLOSE_WAIT").collect();
    assert_eq!(kept.len(), 32);
    assert!(kept.iter().all(|p| p["remote"] == peer.to_string() && p["pid"] == me));

    let text = Command::new(leaktrace())
        .args(["attach", "--pid", &me.to_string(), "--duration", "1s"])
        .output()
        .expect("leaktrace attach");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("no stacks: acquired before tracing began"), "{text}");
    assert!(text.contains(&format!("    50 TCP connections in CLOSE_WAIT to {peer} (50 still open)")), "{text}");
    drop(clients);
}
