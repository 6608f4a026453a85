//! Bad input and missing privileges: one clear line, a non-zero exit, no panic.

use std::process::Command;

use leaktrace_tests::*;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_clean_failure(out: &std::process::Output, code: i32, needle: &str) {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
}

#[test]
fn a_pid_that_does_not_exist() {
    let out = leaktrace_output(&["attach", "--pid", "4194303", "--duration", "1s"]);
    assert_clean_failure(&out, 1, "no process with pid 4194303");
}

#[test]
fn a_command_that_does_not_exist() {
    let out = leaktrace_output(&["run", "--", "/no/such/leaky-program"]);
    assert_clean_failure(&out, 127, "command not found: /no/such/leaky-program");
    let out = leaktrace_output(&["run", "--", "no-such-leaky-program-in-path"]);
    assert_clean_failure(&out, 127, "command not found: no-such-leaky-program-in-path");
}

#[test]
fn a_command_that_cannot_execute() {
    let dir = scratch_dir("noexec");
    let file = dir.join("not-a-program");
    std::fs::write(&file, b"plain text").expect("write");
    let out = leaktrace_output(&["run", "--", file.to_str().expect("path")]);
    assert_clean_failure(&out, 126, "cannot execute");
}

#[test]
fn bad_durations_and_kinds() {
    let out = leaktrace_output(&["attach", "--pid", "1", "--duration", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("--duration"), "{}", stderr_of(&out));
    let out = leaktrace_output(&["run", "--kinds", "files", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("unknown kind 'files'"), "{}", stderr_of(&out));
}

#[test]
fn an_output_path_that_cannot_be_written() {
    let out = leaktrace_output(&["run", "--output", "/proc/no/such/dir/report.json", "--", "true"]);
    assert_clean_failure(&out, 1, "cannot write the report to /proc/no/such/dir/report.json");
}

#[test]
fn without_privileges_it_names_the_missing_capabilities() {
    // setpriv (util-linux) drops to nobody with no capabilities.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(leaktrace())
        .args(["run", "--", "/bin/true"])
        .output()
        .expect("setpriv");
    // tracefs is root's only, so a user without privileges needs
    // CAP_DAC_READ_SEARCH too, to read the tracepoints' layouts.
    assert_clean_failure(&out, 1, "CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH");
}

/// `setpriv` as nobody with exactly these capabilities (ambient, so they
/// survive the exec).
fn as_nobody_with(caps: &str, args: &[&str]) -> std::process::Output {
    let set =
        format!("-all{}", caps.split(',').filter(|c| !c.is_empty()).map(|c| format!(",+{c}")).collect::<String>());
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps={set}"))
        .arg(format!("--ambient-caps={set}"))
        .arg(leaktrace())
        .args(args)
        .current_dir("/")
        .output()
        .expect("setpriv")
}

/// Each mode asks for what it needs, by name, before trying; with them,
/// an unprivileged user traces its own program.
#[test]
fn each_mode_names_the_capabilities_it_lacks() {
    let tracing = "bpf,perfmon,dac_read_search";
    let out = as_nobody_with("bpf,perfmon", &["run", "--", "/bin/true"]);
    assert_clean_failure(&out, 1, "needs CAP_DAC_READ_SEARCH to load its eBPF tracing programs");
    let out = as_nobody_with(tracing, &["attach", "--pid", "1", "--duration", "1s"]);
    assert_clean_failure(&out, 1, "needs CAP_SYS_PTRACE to read the fd tables");
    let out = as_nobody_with(tracing, &["daemon"]);
    assert_clean_failure(&out, 1, "needs CAP_SYS_PTRACE to read the fd tables");
    let out = as_nobody_with(tracing, &["record", "--output", "/tmp/never-written.db"]);
    assert_clean_failure(&out, 1, "needs CAP_SYS_PTRACE to read the fd tables");
    assert!(!std::path::Path::new("/tmp/never-written.db").exists());

    let fixture = c_fixture("fd_leaks");
    let run = ["run", "--format", "json", "--", fixture.to_str().expect("path"), "pipe"];
    let mut out = as_nobody_with(tracing, &run);
    // Debian's and Ubuntu's kernels (not mainline) refuse perf_event_open
    // without CAP_SYS_ADMIN while kernel.perf_event_paranoid is above 2,
    // their default; leaktrace tries one and says so before loading.
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(2);
    if paranoid > 2 && out.status.code() == Some(1) {
        let level = format!("kernel.perf_event_paranoid is {paranoid} (a Debian and Ubuntu restriction)");
        assert_clean_failure(&out, 1, &format!("needs CAP_SYS_ADMIN to attach to tracepoints: this kernel refuses perf_event_open to processes without it while {level}"));
        out = as_nobody_with(&format!("{tracing},sys_admin"), &run);
    }
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(total(&r, "outstanding"), 16, "the same as root");
}

/// `leaktrace check`: what works here, and what each missing piece disables.
#[test]
fn check_says_what_works_and_what_is_missing() {
    let out = leaktrace_output(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr_of(&out));
    for line in [
        "ok       CAP_BPF",
        "ok       tracefs",
        "ok       BTF",
        "tracepoint raw_syscalls:sys_enter",
        "ok       eBPF programs",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert!(text.ends_with("leaktrace can trace on this host.\n"), "{text}");
    let out = leaktrace_output(&["check", "--format", "json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["ready"], true);
    let item = |name: &str| j["items"].as_array().expect("items").iter().find(|i| i["name"] == name).cloned();
    assert_eq!(item("eBPF programs").expect("programs")["state"], "ok");

    let out = as_nobody_with("", &["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("MISSING  CAP_BPF"), "{text}");
    assert!(text.contains("disables: every mode: loading the eBPF programs"), "{text}");
    assert!(text.contains("not tried: loading needs CAP_BPF and CAP_PERFMON"), "{text}");
    assert!(text.ends_with("leaktrace cannot trace on this host: see MISSING above.\n"), "{text}");
}

/// Bad input of every kind: one line naming what is wrong, a non-zero exit
/// (2 for the command line, 1 for the rest), never a panic.
#[test]
fn bad_input_matrix() {
    let dir = scratch_dir("bad-input");
    let path = |name: &str| dir.join(name).to_str().expect("path").to_string();
    std::fs::write(path("garbage"), b"\x00\x01 not anything").expect("garbage");
    std::fs::write(path("bad.toml"), "interval = [").expect("toml");
    std::fs::write(path("unknown.toml"), "[daemon]\nlisten = \"127.0.0.1:1\"\nport = 3\n").expect("toml");
    std::fs::write(path("precious"), b"keep me").expect("precious");
    std::os::unix::fs::symlink(path("precious"), path("link.json")).expect("link");
    std::fs::write(path("exists.db"), b"").expect("exists");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let taken = listener.local_addr().expect("addr").to_string();

    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["attach", "--pid", "0"], 2, "invalid value '0' for '--pid <PID>'"),
        (vec!["attach", "--pid", "abc"], 2, "invalid value 'abc' for '--pid <PID>'"),
        (vec!["attach", "--pid", "4194303", "--duration", "1s"], 1, "no process with pid 4194303"),
        (vec!["attach", "--pid", "1", "--duration", "soon"], 2, "invalid value 'soon' for '--duration <DURATION>'"),
        (vec!["run", "--interval", "0s", "--", "true"], 2, "must be longer than zero"),
        (vec!["run", "--kinds", "files", "--", "true"], 2, "unknown kind 'files'"),
        (vec!["run", "--min-bytes", "12XB", "--", "true"], 2, "for '--min-bytes <SIZE>'"),
        (vec!["run", "--max-entries", "0", "--", "true"], 2, "for '--max-entries <N>'"),
        (vec!["run"], 2, "required"),
        (vec!["frobnicate"], 2, "unrecognized subcommand 'frobnicate'"),
        (vec!["run", "--", "/no/such/leaky-program"], 127, "command not found: /no/such/leaky-program"),
        (vec!["run", "--output", &path("link.json"), "--", "true"], 1, "symbolic link"),
        (vec!["run", "--output", dir.to_str().expect("dir"), "--", "true"], 1, "cannot write the report"),
        (
            vec!["run", "--output", "/proc/no/such/dir/report.json", "--", "true"],
            1,
            "cannot write the report to /proc/no/such/dir/report.json",
        ),
        (vec!["record", "--output", &path("exists.db"), "--duration", "1s"], 1, "it must not exist yet"),
        (vec!["record", "--output", &path("new.db"), "--max-size", "lots"], 2, "for '--max-size <SIZE>'"),
        (vec!["report", &path("garbage")], 1, "is not a leaktrace recording"),
        (vec!["report", &path("missing.db")], 1, "cannot read the recording"),
        (vec!["report", dir.to_str().expect("dir")], 1, "recording"),
        (vec!["diff", &path("garbage"), &path("garbage")], 1, "is not JSON"),
        (vec!["diff", &path("missing.json"), &path("garbage")], 1, "cannot read the report"),
        (vec!["daemon", "--config", &path("bad.toml")], 1, "config file"),
        (vec!["daemon", "--config", &path("unknown.toml")], 1, "unknown field `port`"),
        (vec!["daemon", "--config", &path("missing.toml")], 1, "cannot read the config file"),
        (vec!["daemon", "--listen", &taken], 1, "cannot listen on"),
        (vec!["daemon", "--listen", "localhost"], 2, "for '--listen <ADDR>'"),
    ]
    .into_iter()
    .map(|(args, code, needle)| (args.into_iter().map(String::from).collect(), code, needle))
    .collect();
    for (args, code, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = leaktrace_output(&args);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: expected {needle:?} in {err:?}");
        assert!(err.starts_with("leaktrace: "), "{args:?}: {err:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line: {err:?}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(path("precious")).expect("precious"), b"keep me", "the link's target is untouched");
    drop(listener);
}

/// A process that exits while leaktrace loads its programs: a clear error,
/// or (when it was traced in time) a report of its exit; never a wait for
/// an exit it will not see.
#[test]
fn a_pid_that_exits_while_attaching() {
    for delay_ms in [0, 20, 60] {
        let mut target = std::process::Command::new("/bin/sleep").arg("60").spawn().expect("sleep");
        let pid = target.id().to_string();
        let tracer = std::process::Command::new(leaktrace())
            .args(["attach", "--pid", &pid, "--duration", "60s", "--format", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("attach");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        target.kill().expect("kill");
        target.wait().expect("reap");
        let started = std::time::Instant::now();
        let out = tracer.wait_with_output().expect("attach output");
        assert!(started.elapsed().as_secs() < 20, "attach waited for an exit it could not see");
        let err = stderr_of(&out);
        assert!(!err.contains("panicked"), "{err}");
        match out.status.code() {
            Some(1) => assert!(
                err.contains(&format!("process {pid} exited before leaktrace could attach to it"))
                    || err.contains(&format!("no process with pid {pid}")),
                "{err}"
            ),
            Some(0) => assert!(err.starts_with("leaktrace: tracing"), "{err}"),
            other => panic!("status {other:?}: {err}"),
        }
    }
}

#[test]
fn tracefs_is_mounted_when_missing() {
    let tracing = std::path::Path::new("/sys/kernel/tracing");
    if tracing.join("events").is_dir() {
        let status = Command::new("umount").arg(tracing).status().expect("umount");
        assert!(status.success(), "cannot unmount tracefs for the test");
    }
    let run = run_json(&[], &c_fixture("fd_leaks"), &["pipe"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(total(&run.report, "outstanding"), 16);
    assert!(tracing.join("events").is_dir(), "leaktrace left tracefs mounted");
}
