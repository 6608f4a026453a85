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
    assert_clean_failure(&out, 1, "CAP_BPF and CAP_PERFMON");
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
