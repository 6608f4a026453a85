//! `leaktrace run` on C fixtures built with `gcc -O2` (no frame pointers):
//! exact counts per scenario, each from its function.

use leaktrace_tests::*;

fn scenario(name: &str) -> Run {
    let run = run_json(&[], &c_fixture("fd_leaks"), &[name]);
    assert_eq!(run.status, 0, "scenario {name}: {}", run.stderr);
    let r = &run.report;
    assert_eq!(r["schema"], "leaktrace.report/1");
    assert_eq!(r["mode"], "run");
    assert_eq!(r["complete"], true);
    assert_eq!(total(r, "dropped"), 0);
    // Everything acquired was either released or is reported.
    assert_eq!(total(r, "acquired"), total(r, "released") + total(r, "outstanding"), "{name}: {}", r["totals"]);
    run
}

#[test]
fn a_loop_leaking_on_its_error_path() {
    let run = scenario("error-path");
    let r = &run.report;
    assert_eq!(count(&with_path(r, "file", "/etc/hostname")), 100);
    assert_eq!(count(&with_site(r, "load_config_error_path")), 100);
    assert_eq!(total(r, "outstanding"), 100);
    let entry = &stacks(r)[0];
    assert_eq!(entry["kind"], "fd");
    assert_eq!(entry["bytes"], 0);
    assert_eq!(entry["pids"], serde_json::json!([r["targets"][0]["pid"]]));
    assert_eq!(entry["stack"][0]["symbol"], "__libc_open64", "the innermost frame is the syscall's libc wrapper");
    assert!(entry["oldest_age_seconds"].as_f64().expect("age") >= 0.0);
}

#[test]
fn fopen_without_fclose() {
    let run = scenario("fopen");
    assert_eq!(count(&with_path(&run.report, "file", "/etc/passwd")), 25);
    assert_eq!(count(&with_site(&run.report, "fopen_without_fclose")), 25);
    assert_eq!(total(&run.report, "outstanding"), 25);
}

#[test]
fn pipes_leak_both_ends() {
    let run = scenario("pipe");
    let pipes = stacks(&run.report).iter().filter(|s| s["resource"] == "pipe").collect::<Vec<_>>();
    assert_eq!(count(&pipes), 16);
    assert_eq!(count(&with_site(&run.report, "leak_pipes")), 16);
    assert_eq!(total(&run.report, "outstanding"), 16);
    let path = pipes[0]["examples"][0]["path"].as_str().expect("path");
    assert!(path.starts_with("pipe:["), "{path}");
}

#[test]
fn sockets() {
    let run = scenario("socket");
    let sockets = stacks(&run.report).iter().filter(|s| s["resource"] == "socket").collect::<Vec<_>>();
    assert_eq!(count(&sockets), 20);
    // Not TCP, so fds, with what they are in their examples.
    let udp = with_site(&run.report, "leak_sockets");
    assert_eq!(count(&udp), 12);
    assert_eq!(udp[0]["kind"], "fd");
    for e in udp[0]["examples"].as_array().expect("examples") {
        assert_eq!((e["family"].as_str(), e["type"].as_str()), (Some("AF_INET"), Some("SOCK_DGRAM")), "{e}");
    }
    let unix = with_site(&run.report, "leak_unix_pairs");
    assert_eq!(count(&unix), 8);
    for e in unix[0]["examples"].as_array().expect("examples") {
        assert_eq!((e["family"].as_str(), e["type"].as_str()), (Some("AF_UNIX"), Some("SOCK_STREAM")), "{e}");
    }
    assert_eq!(total(&run.report, "outstanding"), 20);
}

#[test]
fn dup_leaking_the_copy() {
    let run = scenario("dup");
    let copies = with_path(&run.report, "file", "/etc/group");
    assert_eq!(count(&copies), 6);
    let leaf = copies[0]["stack"][0]["symbol"].as_str().expect("symbol");
    assert!(leaf.ends_with("dup"), "acquired by dup(), not by the open of the original: {leaf}");
    assert_eq!(count(&with_site(&run.report, "leak_dup_copy")), 6);
    assert_eq!(total(&run.report, "outstanding"), 6);
}

#[test]
fn threads_share_one_fd_table() {
    let run = scenario("threads");
    let r = &run.report;
    let leaked = with_path(r, "file", "/etc/services");
    assert_eq!(count(&leaked), 40);
    assert_eq!(leaked[0]["pids"], serde_json::json!([r["targets"][0]["pid"]]), "threads are one process");
    assert_eq!(count(&with_site(r, "thread_body")), 40);
    assert_eq!(total(r, "outstanding"), 40);
}

#[test]
fn closes_and_opens_racing_in_threads_lose_nothing() {
    // A close in one thread frees a number another thread's open gets and
    // finishes with first; releases must apply to the old holder only.
    for _ in 0..3 {
        let run = scenario("churn");
        assert_eq!(count(&with_site(&run.report, "churn_and_keep")), 400);
        assert_eq!(total(&run.report, "outstanding"), 400);
    }
}

#[test]
fn a_forked_child_owns_its_leaks_not_its_inherited_fds() {
    let run = scenario("fork");
    let r = &run.report;
    let parent = r["targets"][0]["pid"].as_u64().expect("pid");
    let leaked = with_path(r, "file", "/etc/passwd");
    assert_eq!(count(&leaked), 7);
    let pids = leaked[0]["pids"].as_array().expect("pids");
    assert_eq!(pids.len(), 1);
    assert_ne!(pids[0].as_u64(), Some(parent), "the child leaked them");
    assert_eq!(count(&with_site(r, "child_leaks")), 7);
    assert_eq!(total(r, "outstanding"), 7, "the inherited fd closed by the child is not a leak of either");
}

#[test]
fn exec_releases_cloexec_fds_and_keeps_the_others() {
    let run = scenario("exec");
    let r = &run.report;
    // 5 O_CLOEXEC and 1 fcntl(FD_CLOEXEC) go with the exec; 3 plain opens and
    // one whose FD_CLOEXEC was cleared again stay, held by the new image.
    assert_eq!(total(r, "outstanding"), 4);
    let paths = example_paths(r);
    assert!(paths.iter().all(|p| *p == "/etc/passwd" || *p == "/etc/group"), "{paths:?}");
    assert_eq!(paths.iter().filter(|p| **p == "/etc/group").count(), 1, "{paths:?}");
    // Their stacks were taken in the image the exec replaced.
    assert_eq!(count(&with_site(r, "open_before_exec")), 4);
}

#[test]
fn dup2_over_an_open_fd_releases_it() {
    let run = scenario("dup2");
    let r = &run.report;
    let copies = with_path(r, "file", "/etc/group");
    assert_eq!(count(&copies), 4);
    let leaf = copies[0]["stack"][0]["symbol"].as_str().expect("symbol");
    assert!(leaf.ends_with("dup2"), "acquired by dup2(): {leaf}");
    assert_eq!(count(&with_site(r, "dup2_over_open")), 4);
    assert!(with_path(r, "file", "/etc/hostname").is_empty(), "the fds dup2 replaced were released");
    assert_eq!(total(r, "outstanding"), 4);
}

#[test]
fn close_range_releases_its_range() {
    let run = scenario("close-range");
    let r = &run.report;
    assert_eq!(total(r, "outstanding"), 5);
    let paths = example_paths(r);
    assert_eq!(paths.iter().filter(|p| **p == "/etc/hostname").count(), 2, "{paths:?}");
    assert_eq!(paths.iter().filter(|p| **p == "/etc/group").count(), 3, "{paths:?}");
}

#[test]
fn a_program_that_closes_everything_has_nothing_to_report() {
    let run = scenario("clean");
    assert_eq!(total(&run.report, "outstanding"), 0);
    assert!(stacks(&run.report).is_empty());
    assert!(total(&run.report, "acquired") >= 120);
}

#[test]
fn leaktrace_exits_with_the_command_status() {
    let run = run_json(&[], &c_fixture("fd_leaks"), &["exit-code"]);
    assert_eq!(run.status, 7);
    assert_eq!(run.report["targets"][0]["exit_code"], 7);
    let target = &run.report["targets"][0];
    assert_eq!(target["comm"], "c-fd_leaks");
    assert!(target["exe"].as_str().expect("exe").ends_with("/c-fd_leaks"));
}

#[test]
fn a_full_map_drops_and_says_so() {
    let run = run_json(&["--max-entries", "1000"], &c_fixture("fd_leaks"), &["many"]);
    let r = &run.report;
    assert_eq!(run.status, 0);
    assert_eq!(total(r, "outstanding"), 1000);
    assert_eq!(count(&with_site(r, "leak_many")), 1000, "every one held is in a stack");
    assert_eq!(total(r, "dropped"), 1200, "held + dropped is the truth: 2200");
    // Dropped acquisitions are still counted as acquired.
    assert_eq!(total(r, "acquired"), total(r, "released") + total(r, "outstanding") + total(r, "dropped"));
    assert_eq!(r["complete"], false);
    assert_eq!(r["losses"]["map_full"], 1200);
    assert!(run.stderr.contains("1200 acquisitions were dropped"), "{}", run.stderr);
    assert!(run.stderr.contains("--max-entries"), "{}", run.stderr);
}

/// Churn after the map filled: 9,000 more acquisitions are not stored, and
/// released again; `dropped` counts the 1,200 unstored ones still held, from
/// the process's fd table at its exit, so held + dropped is the truth.
#[test]
fn dropped_counts_what_is_still_held_amid_churn() {
    let run = run_json(&["--max-entries", "1000"], &c_fixture("fd_leaks"), &["many-churn"]);
    let r = &run.report;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(total(r, "outstanding"), 1000);
    assert_eq!(total(r, "dropped"), 1200, "2,200 leaked");
    assert_eq!(r["losses"]["map_full"], 10_200, "every acquisition not stored");
    assert_eq!(total(r, "acquired"), total(r, "released") + total(r, "outstanding") + 10_200);
    assert_eq!(r["complete"], false);
}

#[test]
fn the_text_report_names_counts_and_paths() {
    let out = leaktrace_output(&["run", "--", c_fixture("fd_leaks").to_str().expect("path"), "error-path"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("100 files"), "{text}");
    assert!(text.contains("fds: "), "{text}");
    assert!(text.contains("/etc/hostname"), "{text}");
    assert!(text.contains("__libc_open64"), "{text}");
    let line = summary_lines(&text).into_iter().find(|l| l.starts_with("100 files")).expect("summary line");
    assert!(line.contains(", from load_config_error_path <- main, held by pid "), "{line}");
}

#[test]
fn the_report_can_go_to_a_file() {
    let dir = scratch_dir("output");
    let file = dir.join("report.json");
    let out = leaktrace_output(&[
        "run",
        "--format",
        "json",
        "--output",
        file.to_str().expect("path"),
        "--",
        c_fixture("fd_leaks").to_str().expect("path"),
        "pipe",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    assert_eq!(total(&report, "outstanding"), 16);
}

/// `--sample 10` records one acquisition in ten: counts are estimates, and
/// say so. growth.c leaks 500 fds (250/s for 2 s); about 50 are recorded
/// (binomial, sd 6.7), each standing for ten.
#[test]
fn sampling_estimates_counts_and_marks_them() {
    let run = run_json(&["--sample", "10"], &c_fixture("growth"), &["2", "250"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let r = &run.report;
    assert_eq!(r["sampling"]["one_in"], 10);
    let leak = with_site(r, "leak_steadily");
    assert_eq!(leak.len(), 1);
    assert_eq!(leak[0]["estimated"], true);
    let n = leak[0]["count"].as_u64().expect("count");
    assert!(n.is_multiple_of(10) && (250..=750).contains(&n), "estimate of 500: {n}");
    let left_out = r["sampling"]["sampled_out"].as_u64().expect("sampled_out");
    assert!(
        left_out * 10 >= total(r, "acquired") * 8,
        "about 9 in 10 left out: {left_out} of {}",
        total(r, "acquired")
    );
}

/// A program installed as distributions install servers (PostgreSQL's
/// /usr/lib/postgresql/15/bin/postgres) is the program: its functions are
/// the sites, in the JSON and in the text, as they are for the same binary
/// anywhere else.
#[test]
fn a_program_installed_under_usr_lib_is_the_program() {
    let dir = std::path::PathBuf::from(format!("/usr/lib/leaktrace-test-{}/bin", std::process::id()));
    std::fs::create_dir_all(&dir).expect("an install directory under /usr/lib");
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _installed = Remove(dir.parent().expect("package dir").to_path_buf());
    let program = dir.join("fd-leaks");
    std::fs::copy(c_fixture("fd_leaks"), &program).expect("install the fixture");
    let run = run_json(&[], &program, &["error-path"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let r = &run.report;
    assert_eq!(count(&with_site(r, "load_config_error_path")), 100, "{:#?}", stacks(r));
    let site = with_site(r, "load_config_error_path")[0]["stack"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| f["symbol"] == "load_config_error_path")
        .expect("the site's frame");
    assert_eq!(site["module"], program.to_str().expect("path"));
    let out = leaktrace_output(&["run", "--format", "text", "--", program.to_str().expect("path"), "error-path"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("load_config_error_path"), "{text}");
    assert!(!text.contains("only library frames"), "{text}");
}
