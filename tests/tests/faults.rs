//! Faults: a tracer killed with SIGKILL, fork storms, threads exiting while
//! others run, a target at its fd limit, an exec from a thread, a pid given
//! to a second process, processes in their own pid namespace. The fixture
//! is tests/fixtures/c/faults.c; every count is exact.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use leaktrace_tests::*;
use serde_json::Value;

fn faults() -> PathBuf {
    c_fixture("faults")
}

/// `leaktrace run` of a scenario that ends well and loses nothing.
fn run_scenario(args: &[&str]) -> Run {
    let run = run_json(&[], &faults(), args);
    assert_eq!(run.status, 0, "{args:?}: {}", run.stderr);
    let r = &run.report;
    assert_eq!(r["complete"], true, "{args:?}: {}", r["losses"]);
    assert_eq!(total(r, "dropped"), 0);
    assert_eq!(total(r, "acquired"), total(r, "released") + total(r, "outstanding"), "{args:?}: {}", r["totals"]);
    run
}

fn target_pid(r: &Value) -> u64 {
    r["targets"][0]["pid"].as_u64().expect("target pid")
}

/// The one entry whose leak site is `function`.
fn site<'a>(r: &'a Value, function: &str) -> &'a Value {
    let entries = with_site(r, function);
    assert_eq!(entries.len(), 1, "one stack from {function}: {}", r["stacks"]);
    entries[0]
}

/// What `attach` saw exited processes hold at their exit, over all stacks.
fn held_at_exit(r: &Value) -> u64 {
    r["stacks"].as_array().expect("stacks").iter().map(|s| s["held_at_exit"].as_u64().expect("held_at_exit")).sum()
}

fn pids_of(entry: &Value) -> Vec<u64> {
    entry["pids"].as_array().expect("pids").iter().filter_map(Value::as_u64).collect()
}

fn examples(entry: &Value) -> &Vec<Value> {
    entry["examples"].as_array().expect("examples")
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_number(path: &Path) -> u64 {
    wait_for_file(path);
    std::fs::read_to_string(path).expect("read").trim().parse().expect("a number")
}

fn touch(path: &Path) {
    std::fs::write(path, b"").expect("touch");
}

/// Ends `tracer` with SIGINT and returns its JSON report.
fn interrupt(tracer: Tracer) -> Value {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    let out = tracer.wait_with_output();
    assert!(out.status.success(), "{:?}", out.status);
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

// ---- SIGKILL of the tracer ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bpf {
    Prog(u64),
    Map(u64),
    Link(u64),
}

/// The eBPF programs, maps and links process `pid` holds fds of, by id
/// (`/proc/PID/fdinfo`): exactly the tracer's own, whatever else runs on
/// the host.
fn bpf_objects_of(pid: u32) -> BTreeSet<Bpf> {
    let mut found = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return found };
    for entry in dir.flatten() {
        let Ok(link) = std::fs::read_link(entry.path()) else { continue };
        let (kind, key): (fn(u64) -> Bpf, &str) = match link.to_string_lossy().as_ref() {
            "anon_inode:bpf-prog" => (Bpf::Prog, "prog_id:"),
            "anon_inode:bpf-map" => (Bpf::Map, "map_id:"),
            "anon_inode:bpf_link" => (Bpf::Link, "link_id:"),
            _ => continue,
        };
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy()))
            .unwrap_or_default();
        if let Some(id) = info.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok()) {
            found.insert(kind(id));
        }
    }
    found
}

/// Every eBPF program, map and link in the kernel, as `bpftool prog show`,
/// `map show` and `link show` list them.
fn bpf_objects_in_kernel() -> BTreeSet<Bpf> {
    let mut found = BTreeSet::new();
    for (what, kind) in [("prog", Bpf::Prog as fn(u64) -> Bpf), ("map", Bpf::Map), ("link", Bpf::Link)] {
        let out = Command::new("bpftool").args(["-j", what, "show"]).output().expect("bpftool");
        assert!(out.status.success(), "bpftool {what} show: {}", String::from_utf8_lossy(&out.stderr));
        let list: Value = serde_json::from_slice(&out.stdout).expect("bpftool's JSON");
        found.extend(list.as_array().expect("a list").iter().filter_map(|o| o["id"].as_u64()).map(kind));
    }
    found
}

/// Everything pinned under /sys/fs/bpf (the BPF filesystem), as paths.
fn bpf_pins() -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, into: &mut BTreeSet<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&path, into);
            }
            into.insert(path);
        }
    }
    let mut pins = BTreeSet::new();
    walk(Path::new("/sys/fs/bpf"), &mut pins);
    pins
}

/// Kills the running tracer with SIGKILL and checks that the kernel keeps
/// nothing of it: none of its programs, maps or links is listed any more,
/// and nothing was pinned. `pins_before` is /sys/fs/bpf before it started.
fn kill_and_check_nothing_is_left(tracer: Tracer, pins_before: &BTreeSet<PathBuf>) {
    let ours = bpf_objects_of(tracer.id());
    let count = |f: fn(&Bpf) -> bool| ours.iter().filter(|o| f(o)).count();
    // The raw syscall tracepoints and the fork, exec and exit tracepoints
    // at least, each a program with its link, and their maps.
    let (progs, links, maps) = (
        count(|o| matches!(o, Bpf::Prog(_))),
        count(|o| matches!(o, Bpf::Link(_))),
        count(|o| matches!(o, Bpf::Map(_))),
    );
    assert!(progs >= 5 && links >= 5 && maps >= 5, "the tracer holds {progs} programs, {links} links, {maps} maps");
    let listed = bpf_objects_in_kernel();
    assert!(ours.is_subset(&listed), "bpftool lists what the tracer holds: {:?}", ours.difference(&listed));

    let status = tracer.kill();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    // Links, programs and maps are freed when their last fd closes, maps
    // from a work queue: a moment after the exit.
    let mut left = ours.clone();
    wait_until("the killed tracer's programs, links and maps are gone", Duration::from_secs(10), || {
        left = ours.intersection(&bpf_objects_in_kernel()).copied().collect();
        left.is_empty()
    });
    let new_pins: Vec<PathBuf> = bpf_pins().difference(pins_before).cloned().collect();
    assert!(new_pins.is_empty(), "pinned: {new_pins:?}");
}

/// A run right after: counts as exact as ever.
fn a_new_run_is_exact() {
    let run = run_scenario(&["leak"]);
    assert_eq!(count(&[site(&run.report, "leak_before_kill")]), 10);
    assert_eq!(total(&run.report, "outstanding"), 10);
}

fn state(pid: u64) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn sigkill_of_run_leaves_nothing_in_the_kernel_and_takes_its_command_with_it() {
    let dir = scratch_dir("faults-kill-run");
    let pins = bpf_pins();
    let tracer = Tracer::adopt(
        Command::new(leaktrace())
            .args(["run", "--format", "json", "--"])
            .arg(faults())
            .args(["kill-target", dir.to_str().expect("path")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("leaktrace run"),
    );
    wait_for_file(&dir.join("ready"));
    let child = read_number(&dir.join("child"));
    // Forked by the tracer's ptrace thread, so a child of that thread.
    let command: Vec<u64> = std::fs::read_dir(format!("/proc/{}/task", tracer.id()))
        .expect("tasks")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u64>>())
        .collect();
    assert_eq!(command.len(), 1, "the command: {command:?}");
    let command = command[0];
    // Both map code over and over: the tracer is now mostly holding one of
    // them in the SIGSTOP of a code mapping, or has one queued.
    std::thread::sleep(Duration::from_millis(500));
    kill_and_check_nothing_is_left(tracer, &pins);
    // The command and its child die with the tracer (PTRACE_O_EXITKILL):
    // neither is left stopped, nor running on untraced.
    for pid in [command, child] {
        wait_until(&format!("pid {pid} ends"), Duration::from_secs(5), || matches!(state(pid), None | Some('Z')));
    }
    touch(&dir.join("go"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!dir.join("done").exists(), "the command went on after its tracer was killed");
    a_new_run_is_exact();
}

#[test]
fn sigkill_of_attach_leaves_nothing_in_the_kernel_and_the_target_runs_on() {
    let dir = scratch_dir("faults-kill-attach");
    let pins = bpf_pins();
    let mut target = Background::spawn(&faults(), &["kill-target", dir.to_str().expect("path")]);
    wait_for_file(&dir.join("ready"));
    let pid = target.pid().to_string();
    let tracer = Tracer::start_until(&["attach", "--format", "json", "--pid", &pid], "leaktrace: tracing pid");
    std::thread::sleep(Duration::from_millis(500));
    kill_and_check_nothing_is_left(tracer, &pins);
    // attach never stops its targets: it goes on, and ends well.
    touch(&dir.join("go"));
    let status = target.0.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(dir.join("done").exists());
    a_new_run_is_exact();
}

#[test]
fn sigkill_of_record_leaves_nothing_in_the_kernel() {
    let dir = scratch_dir("faults-kill-record");
    let pins = bpf_pins();
    let mut target = Background::spawn(&faults(), &["kill-target", dir.to_str().expect("path")]);
    wait_for_file(&dir.join("ready"));
    let (pid, file) = (target.pid().to_string(), dir.join("rec.db"));
    let tracer = Tracer::start_until(
        &["record", "--pid", &pid, "--interval", "1s", "--output", file.to_str().expect("path")],
        "leaktrace: recording into",
    );
    std::thread::sleep(Duration::from_millis(1500));
    kill_and_check_nothing_is_left(tracer, &pins);
    touch(&dir.join("go"));
    assert!(target.0.wait().expect("wait").success());
    a_new_run_is_exact();
}

// ---- processes coming and going ----

/// 200 children forked at once, each leaking exactly one fd and exiting at
/// once, while the parent holds 5.
#[test]
fn a_fork_storm_is_counted_child_by_child() {
    let run = run_scenario(&["fork-storm", "200"]);
    let r = &run.report;
    let parent = target_pid(r);
    let children = site(r, "child_leaks_one");
    assert_eq!(children["count"], 200);
    let pids = pids_of(children);
    assert_eq!(pids.len(), 200, "one fd in each of 200 processes");
    assert!(!pids.contains(&parent));
    assert!(examples(children).iter().all(|e| e["path"] == "/etc/group"), "{}", children["examples"]);
    let own = site(r, "parent_before_storm");
    assert_eq!((own["count"].as_u64(), pids_of(own)), (Some(5), vec![parent]));
    assert_eq!(total(r, "outstanding"), 205);
}

/// The same storm under `attach`, where forks and exits arrive as events
/// and nothing is held.
#[test]
fn a_fork_storm_under_attach_is_counted_child_by_child() {
    let dir = scratch_dir("faults-storm-attach");
    let target = Background::spawn(&faults(), &["fork-storm", "200", dir.to_str().expect("path")]);
    let pid = target.pid().to_string();
    let tracer = Tracer::start_until(&["attach", "--format", "json", "--pid", &pid], "leaktrace: tracing pid");
    touch(&dir.join("start"));
    // attach ends by itself when its target has exited.
    let out = tracer.wait_with_output();
    assert!(out.status.success(), "{:?}", out.status);
    let r: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(r["complete"], true, "{}", r["losses"]);
    let children = site(&r, "child_leaks_one");
    assert_eq!(children["count"], 200, "{r}");
    assert_eq!(pids_of(children).len(), 200);
    assert_eq!(count(&[site(&r, "parent_before_storm")]), 5);
    // Every holder has exited: what they held is held at their exit, not
    // held now.
    assert_eq!(held_at_exit(&r), 205);
    assert_eq!(total(&r, "outstanding"), 0);
    drop(target);
}

/// A storm wider than the process map (`--max-procs 50`): 200 children
/// alive at once, each leaking 1. The parent and 49 children are followed,
/// exactly; the other 151 are counted as not followed, and the report says
/// it is incomplete: followed + dropped is the truth.
#[test]
fn a_fork_storm_wider_than_the_process_map_says_what_it_dropped() {
    let run = run_json(&["--max-procs", "50"], &faults(), &["fork-wide", "200"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let r = &run.report;
    let children = site(r, "child_leaks_one");
    assert_eq!((children["count"].as_u64(), pids_of(children).len()), (Some(49), 49));
    assert_eq!(r["losses"]["procs_dropped"], 151, "49 + 151 = 200");
    assert_eq!(r["complete"], false);
    assert!(run.stderr.contains("151 child processes were not followed"), "{}", run.stderr);
    assert!(run.stderr.contains("--max-procs"), "{}", run.stderr);
}

/// Eight threads leak 1 to 8 fds each and exit one after another while a
/// ninth opens and closes all along; the leader leaks 2 and exits first.
#[test]
fn threads_exiting_while_others_run_lose_nothing() {
    for _ in 0..3 {
        let run = run_scenario(&["thread-exits"]);
        let r = &run.report;
        assert_eq!(r["targets"][0]["exit_code"], 0);
        let threads = site(r, "thread_leaks_then_exits");
        assert_eq!(threads["count"], 36, "1 + 2 + … + 8");
        assert_eq!(pids_of(threads), vec![target_pid(r)], "threads are their process");
        assert_eq!(count(&[site(r, "leader_leaks")]), 2);
        assert!(with_site(r, "churn_while_others_exit").is_empty(), "every open there was closed");
        assert_eq!(total(r, "outstanding"), 38);
    }
}

/// The same under `attach`, where thread exits are not held: the leader's
/// exit does not end the process's tracing (Linux 6.16+: group_dead).
#[test]
fn threads_exiting_while_others_run_lose_nothing_under_attach() {
    let dir = scratch_dir("faults-threads-attach");
    let target = Background::spawn(&faults(), &["thread-exits", dir.to_str().expect("path")]);
    let pid = target.pid().to_string();
    let tracer = Tracer::start_until(&["attach", "--format", "json", "--pid", &pid], "leaktrace: tracing pid");
    touch(&dir.join("start"));
    // attach ends by itself when its target has exited.
    let out = tracer.wait_with_output();
    assert!(out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(r["complete"], true, "{}", r["losses"]);
    assert_eq!(count(&[site(&r, "thread_leaks_then_exits")]), 36);
    assert_eq!(count(&[site(&r, "leader_leaks")]), 2);
    assert_eq!(held_at_exit(&r), 38);
    assert_eq!(total(&r, "outstanding"), 0, "the process has exited");
    drop(target);
}

/// A target that runs out of fds: every fd it got is counted, none of the
/// calls that failed with EMFILE (open, socket, pipe, dup) is, and the
/// tracer goes on as before.
#[test]
fn a_target_at_its_fd_limit_is_counted_exactly() {
    let run = run_scenario(&["emfile"]);
    let r = &run.report;
    let first = site(r, "open_until_emfile");
    assert_eq!(first["count"], 51, "61 opened up to EMFILE, the last 10 closed");
    assert!(examples(first).iter().all(|e| e["path"] == "/dev/null"));
    let again = site(r, "reopen_after_emfile");
    assert_eq!(again["count"], 10);
    assert!(examples(again).iter().all(|e| e["path"] == "/etc/group"));
    assert!(with_site(r, "fail_with_emfile").is_empty(), "failed calls acquire nothing");
    assert_eq!(total(r, "outstanding"), 61, "its whole fd table but 0, 1 and 2");
}

/// leaktrace raises its own soft fd limit; the command it runs keeps the
/// one it was given, so it runs out of fds where it would untraced.
#[test]
fn the_command_runs_out_of_fds_at_its_own_limit() {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(leaktrace());
    cmd.args(["run", "--format", "json", "--"]).arg(faults()).arg("inherited-limit");
    // SAFETY: getrlimit and setrlimit between fork and exec, on a local.
    unsafe {
        cmd.pre_exec(|| {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_max < 1024 {
                return Err(std::io::Error::other("RLIMIT_NOFILE"));
            }
            limit.rlim_cur = 256;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("leaktrace run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("opened 253 before EMFILE"), "a soft limit of 256, less 0, 1 and 2: {stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(count(&[site(&r, "open_until_limit")]), 253);
    assert_eq!(total(&r, "outstanding"), 253);
}

/// A thread that is not the leader execs: the process goes on under the
/// leader's pid with the new image. What the old image leaked (but its
/// close-on-exec fds) stays, with the old image's stacks.
#[test]
fn an_exec_from_a_thread_keeps_the_old_images_leaks() {
    let run = run_scenario(&["thread-exec"]);
    let r = &run.report;
    let before = site(r, "open_before_thread_exec");
    assert_eq!(before["count"], 3, "the 2 O_CLOEXEC fds went with the exec");
    assert!(examples(before).iter().all(|e| e["path"] == "/etc/passwd"));
    let after = site(r, "leak_after_exec");
    assert_eq!(after["count"], 4);
    assert_eq!((pids_of(before), pids_of(after)), (vec![target_pid(r)], vec![target_pid(r)]));
    assert_eq!(total(r, "outstanding"), 7);
}

// ---- pid reuse ----

/// A child leaks 4 and exits; a second child is given the same pid (clone3
/// with set_tid) and holds 6, with the same fd numbers: neither is the
/// other's.
#[test]
fn a_reused_pid_never_gets_the_previous_process_entries_under_run() {
    let run = run_scenario(&["pid-reuse"]);
    let r = &run.report;
    let first = site(r, "first_owner_leaks");
    let second = site(r, "second_owner_leaks");
    assert_eq!((first["count"].as_u64(), second["count"].as_u64()), (Some(4), Some(6)));
    let pid = pids_of(first);
    assert_eq!(pid.len(), 1);
    assert_eq!(pids_of(second), pid, "one pid, two processes");
    assert!(run.stderr.contains(&format!("pid {} reused", pid[0])), "{}", run.stderr);
    assert!(examples(first).iter().all(|e| e["path"] == "/etc/passwd"), "{}", first["examples"]);
    assert!(examples(second).iter().all(|e| e["path"] == "/etc/group"), "{}", second["examples"]);
    assert_eq!(total(r, "outstanding"), 10);
}

/// The same under `attach --all`, with the second process still running
/// when the report is made: the first one's fds, which no sweep saw, get no
/// path from the second's fd table.
#[test]
fn a_reused_pid_never_gets_the_previous_process_entries_under_attach_all() {
    let dir = scratch_dir("faults-pid-reuse");
    let parent = Background::spawn(&faults(), &["pid-reuse", dir.to_str().expect("path")]);
    let tracer = Tracer::start_until(&["attach", "--all", "--format", "json"], "leaktrace: tracing every process");
    touch(&dir.join("start"));
    let reused = read_number(&dir.join("reused"));
    let r = interrupt(tracer);
    touch(&dir.join("go"));
    assert_eq!(r["complete"], true, "{}", r["losses"]);
    let first = site(&r, "first_owner_leaks");
    let second = site(&r, "second_owner_leaks");
    assert_eq!((first["count"].as_u64(), second["count"].as_u64()), (Some(4), Some(6)));
    assert_eq!((pids_of(first), pids_of(second)), (vec![reused], vec![reused]));
    assert_ne!(reused, u64::from(parent.pid()));
    // fds 5 and 6 were the first's and are now the second's (/etc/group).
    assert!(
        examples(first).iter().all(|e| e["path"].is_null() || e["path"] == "/etc/passwd"),
        "the first process's fds: {}",
        first["examples"]
    );
    assert!(examples(second).iter().all(|e| e["path"] == "/etc/group"), "{}", second["examples"]);
    drop(parent);
}

/// The daemon, with a process that exits and another given its pid within
/// one interval: the sample has both, apart; the metrics export the live
/// one's series under its own name and count only the first one's fds as
/// held at exit.
#[test]
fn the_daemon_keeps_a_reused_pid_apart_from_the_process_that_had_it() {
    let dir = scratch_dir("faults-pid-reuse-daemon");
    let parent = Background::spawn(&faults(), &["pid-reuse", dir.to_str().expect("path")]);
    let daemon = Daemon::start(&["--interval", "1s", "--pid", &parent.pid().to_string()], &[]);
    touch(&dir.join("start"));
    let reused = read_number(&dir.join("reused"));
    // The sample that saw the first one's exit (it leaks and exits within
    // a millisecond of the second one leaking, so that sample has both).
    let mut report = Value::Null;
    wait_until("a sample with the first process's exit", Duration::from_secs(10), || {
        report = daemon.report();
        !with_site(&report, "first_owner_leaks").is_empty()
    });
    let r = &report;
    let first = site(r, "first_owner_leaks");
    let second = site(r, "second_owner_leaks");
    assert_eq!((first["count"].as_u64(), second["count"].as_u64()), (Some(4), Some(6)));
    assert_eq!((pids_of(first), pids_of(second)), (vec![reused], vec![reused]));
    assert_eq!((first["exited"].as_bool(), second.get("exited")), (Some(true), None));
    let processes: Vec<&Value> =
        r["processes"].as_array().expect("processes").iter().filter(|p| p["pid"] == reused).collect();
    assert_eq!(processes.len(), 2, "{processes:?}");
    assert!(processes.iter().any(|p| p["exited"] == true), "{processes:?}");
    let live = processes.iter().find(|p| p.get("exited").is_none()).expect("the live one");
    assert_eq!(live["comm"], "c-faults");

    let metrics = daemon.text("/metrics");
    assert_eq!(metric(&metrics, "leaktrace_held_at_exit_total", &[("kind", "fd")]), Some(4.0), "the first one's");
    let pid = reused.to_string();
    let sites: Vec<&str> = metric_lines(&metrics, "leaktrace_site_outstanding_resources")
        .into_iter()
        .filter(|l| l.contains(&format!("pid=\"{pid}\"")))
        .collect();
    assert_eq!(sites.len(), 1, "{sites:?}");
    assert!(sites[0].contains("comm=\"c-faults\"") && sites[0].contains("site=\"second_owner_leaks ("), "{}", sites[0]);
    assert!(sites[0].ends_with(" 6"), "{}", sites[0]);
    touch(&dir.join("go"));
    drop(parent);
}

// ---- pid namespaces ----

fn ns_pids(entry: &Value) -> BTreeSet<Option<u64>> {
    examples(entry).iter().map(|e| e["ns_pid"].as_u64()).collect()
}

/// The command unshares its pid namespace: its child is pid 1 there and
/// leaks 5, the grandchild pid 2 and leaks 2. Both are reported by their
/// host pids, with the pids they know themselves by.
#[test]
fn processes_in_a_pid_namespace_are_reported_with_both_pids() {
    let run = run_scenario(&["pidns"]);
    let r = &run.report;
    assert!(r["targets"][0].get("ns_pid").is_none(), "the command is in the host's namespace");
    let init = site(r, "leak_in_namespace");
    let second = site(r, "leak_in_namespace_child");
    assert_eq!((init["count"].as_u64(), second["count"].as_u64()), (Some(5), Some(2)));
    assert_eq!((ns_pids(init), ns_pids(second)), (BTreeSet::from([Some(1)]), BTreeSet::from([Some(2)])));
    let host = pids_of(init)[0];
    assert!(host > 2 && host != target_pid(r));
    assert!(examples(init).iter().all(|e| e["pid"] == host));

    let out = leaktrace_output(&["run", "--", faults().to_str().expect("path"), "pidns"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = summary_lines(&text).into_iter().find(|l| l.starts_with("5 files")).expect("summary line");
    assert!(line.contains(", from leak_in_namespace <- pidns, held by pid "), "{line}");
    assert!(line.ends_with(" (1 in its namespace)"), "{line}");
}

/// `attach` to a process that is pid 1 of its namespace: the target, its
/// examples and its child's say so.
#[test]
fn an_attached_process_in_a_pid_namespace_is_named_by_both_pids() {
    let dir = scratch_dir("faults-pidns-attach");
    let outer = Background::spawn(&faults(), &["pidns", dir.to_str().expect("path")]);
    let init = read_number(&dir.join("pid"));
    let pid = init.to_string();
    let tracer = Tracer::start_until(&["attach", "--format", "json", "--pid", &pid], "leaktrace: tracing pid");
    touch(&dir.join("go"));
    wait_for_file(&dir.join("leaked-1"));
    wait_for_file(&dir.join("leaked-2"));
    // The child's fork event is read within 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    touch(&dir.join("exit"));
    // attach ends by itself when its target has exited.
    let out = tracer.wait_with_output();
    assert!(out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!((target_pid(&r), r["targets"][0]["ns_pid"].as_u64()), (init, Some(1)));
    let first = site(&r, "leak_in_namespace");
    let second = site(&r, "leak_in_namespace_child");
    assert_eq!((first["count"].as_u64(), second["count"].as_u64()), (Some(5), Some(2)));
    assert_eq!(pids_of(first), vec![init]);
    assert_eq!((ns_pids(first), ns_pids(second)), (BTreeSet::from([Some(1)]), BTreeSet::from([Some(2)])));
    drop(outer);
}

/// The daemon's `processes` say it too.
#[test]
fn the_daemon_names_processes_in_a_pid_namespace_by_both_pids() {
    let dir = scratch_dir("faults-pidns-daemon");
    let outer = Background::spawn(&faults(), &["pidns", dir.to_str().expect("path")]);
    let init = read_number(&dir.join("pid"));
    let daemon = Daemon::start(&["--interval", "1s", "--pid", &init.to_string()], &[]);
    touch(&dir.join("go"));
    wait_for_file(&dir.join("leaked-1"));
    wait_for_file(&dir.join("leaked-2"));
    // Two samples, so both processes hold what they leaked in one.
    std::thread::sleep(Duration::from_millis(2500));
    let r = daemon.report();
    touch(&dir.join("exit"));
    let processes = r["processes"].as_array().expect("processes");
    let of = |ns: u64| processes.iter().find(|p| p["ns_pid"] == ns).unwrap_or_else(|| panic!("{processes:?}"));
    assert_eq!(of(1)["pid"].as_u64(), Some(init));
    let child = of(2)["pid"].as_u64().expect("pid");
    assert_ne!(child, init);
    assert_eq!(count(&[site(&r, "leak_in_namespace")]), 5);
    assert_eq!(pids_of(site(&r, "leak_in_namespace_child")), vec![child]);
    drop(outer);
}
