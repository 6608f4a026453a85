//! Memory mappings: exact outstanding bytes per function through partial
//! unmaps, spanning unmaps, MAP_FIXED, mremap, threads, fork and exec.

use leaktrace_tests::*;
use serde_json::Value;

const PAGE: u64 = 4096;

fn scenario(name: &str, extra: &[&str]) -> Value {
    let mut args = vec![name];
    args.extend_from_slice(extra);
    let run = run_json(&["--kinds", "mmap"], &c_fixture("mmap_leaks"), &args);
    assert_eq!(run.status, 0, "{name}: {}", run.stderr);
    assert_eq!(run.report["complete"], true, "{name}: {}", run.report["losses"]);
    run.report
}

/// (count, bytes) of the mapping entries whose site is `function`.
fn held_by(report: &Value, function: &str) -> (u64, u64) {
    let entries = with_site(report, function);
    assert!(entries.iter().all(|s| s["kind"] == "mmap"), "{entries:?}");
    let bytes = entries.iter().map(|s| s["bytes"].as_u64().expect("bytes")).sum();
    (count(&entries), bytes)
}

fn examples<'a>(report: &'a Value, function: &str) -> Vec<&'a Value> {
    with_site(report, function).iter().flat_map(|s| s["examples"].as_array().expect("examples")).collect()
}

#[test]
fn mappings_never_unmapped() {
    let r = scenario("never-unmapped", &[]);
    assert_eq!(held_by(&r, "never_unmapped"), (6, 18 * PAGE));
    let e = examples(&r, "never_unmapped");
    assert_eq!(e.len(), 5, "five examples, the oldest");
    for e in e {
        assert_eq!(e["length"], 3 * PAGE);
        assert_eq!(e["prot"], "rw-");
        assert_eq!(e["flags"], "MAP_PRIVATE|MAP_ANONYMOUS");
        assert!(e["address"].as_str().expect("address").starts_with("0x"));
    }
    assert_eq!(with_site(&r, "never_unmapped")[0]["resource"], "anon");
    // Sorted by bytes, largest first.
    let bytes: Vec<u64> = stacks(&r).iter().map(|s| s["bytes"].as_u64().expect("bytes")).collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "{bytes:?}");
    // fds are not reported with --kinds mmap alone.
    assert!(stacks(&r).iter().all(|s| s["kind"] == "mmap"));
}

#[test]
fn partial_unmaps_of_the_tail_and_the_middle() {
    let r = scenario("trim-tail", &[]);
    assert_eq!(held_by(&r, "trim_tail"), (4, 20 * PAGE));
    let r = scenario("punch-middle", &[]);
    assert_eq!(held_by(&r, "punch_middle"), (3, 18 * PAGE));
    for e in examples(&r, "punch_middle") {
        assert_eq!((e["length"].as_u64(), e["regions"].as_u64()), (Some(6 * PAGE), Some(2)), "{e}");
    }
}

#[test]
fn one_munmap_across_two_mappings() {
    let r = scenario("across-two", &[]);
    assert_eq!(held_by(&r, "map_left"), (2, 4 * PAGE));
    assert_eq!(held_by(&r, "map_right"), (2, 4 * PAGE));
}

#[test]
fn mremap_grow_shrink_and_move_keep_the_stack_of_the_mmap() {
    let r = scenario("mremap-grow", &[]);
    assert_eq!(held_by(&r, "mremap_grow"), (3, 18 * PAGE));
    let r = scenario("mremap-shrink", &[]);
    assert_eq!(held_by(&r, "mremap_shrink"), (2, 8 * PAGE));
    let r = scenario("mremap-move", &[]);
    assert_eq!(held_by(&r, "mremap_move"), (2, 8 * PAGE));
    // The moved mapping replaced the middle of the reservation it landed on.
    assert_eq!(held_by(&r, "reserve_target"), (2, 8 * PAGE));
}

#[test]
fn map_fixed_replaces_part_of_a_mapping() {
    let r = scenario("map-fixed", &[]);
    assert_eq!(held_by(&r, "fixed_base"), (2, 10 * PAGE));
    assert_eq!(held_by(&r, "fixed_overlay"), (2, 6 * PAGE));
    for e in examples(&r, "fixed_overlay") {
        assert_eq!(e["flags"], "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED");
        assert_eq!(e["prot"], "r--");
    }
}

#[test]
fn a_function_that_unmaps_correctly_is_never_reported() {
    let r = scenario("clean", &[]);
    assert_eq!(held_by(&r, "clean"), (0, 0));
    let m = &r["totals"]["mappings"];
    // 100 mapped in one call and unmapped in two pieces; 20 grown by mremap
    // and unmapped: all released.
    assert!(m["acquired"].as_u64().expect("acquired") >= 120, "{m}");
    assert!(m["released"].as_u64().expect("released") >= 120, "{m}");
}

#[test]
fn file_and_shared_mappings() {
    let dir = scratch_dir("mmap-file");
    let data = dir.join("data.bin");
    let r = scenario("file", &[data.to_str().expect("path")]);
    assert_eq!(held_by(&r, "map_file"), (1, 3 * PAGE));
    let file = with_site(&r, "map_file");
    assert_eq!(file[0]["resource"], "file");
    assert_eq!(file[0]["examples"][0]["path"], data.to_str().expect("path"));
    assert_eq!(held_by(&r, "map_shared"), (1, 2 * PAGE));
    assert_eq!(with_site(&r, "map_shared")[0]["resource"], "shared");
}

#[test]
fn threads_share_one_address_space() {
    let r = scenario("threads", &[]);
    assert_eq!(held_by(&r, "thread_maps"), (8, 24 * PAGE));
    let pids: Vec<&Value> =
        with_site(&r, "thread_maps").iter().flat_map(|s| s["pids"].as_array().expect("pids")).collect();
    assert_eq!(pids.len(), 1, "one process");
}

#[test]
fn a_forked_child_has_its_own_mappings() {
    let r = scenario("fork", &[]);
    let child = with_site(&r, "child_maps");
    let parent = with_site(&r, "parent_maps");
    assert_eq!(held_by(&r, "child_maps"), (2, 10 * PAGE));
    // The child's munmap of its inherited copy does not release the parent's.
    assert_eq!(held_by(&r, "parent_maps"), (1, 4 * PAGE));
    assert_ne!(child[0]["pids"], parent[0]["pids"]);
}

#[test]
fn exec_releases_the_old_image() {
    let r = scenario("exec", &[]);
    assert_eq!(held_by(&r, "before_exec"), (0, 0));
    assert_eq!(held_by(&r, "after_exec"), (1, 2 * PAGE));
}

#[test]
fn totals_are_the_sum_of_the_entries() {
    let r = scenario("map-fixed", &[]);
    let m = &r["totals"]["mappings"];
    let bytes: u64 = stacks(&r).iter().map(|s| s["bytes"].as_u64().expect("bytes")).sum();
    let mappings: u64 = count(&stacks(&r).iter().collect::<Vec<_>>());
    assert_eq!(m["bytes"].as_u64(), Some(bytes));
    assert_eq!(m["outstanding"].as_u64(), Some(mappings));
    assert_eq!(
        m["bytes_mapped"].as_u64().expect("mapped") - m["bytes_unmapped"].as_u64().expect("unmapped"),
        bytes,
        "what was mapped minus what was unmapped is what is held: {m}"
    );
}

#[test]
fn min_bytes_leaves_out_small_stacks() {
    let run = run_json(&["--kinds", "mmap", "--min-bytes", "60K"], &c_fixture("mmap_leaks"), &["map-fixed"]);
    let r = &run.report;
    assert!(stacks(r).iter().all(|s| s["bytes"].as_u64().expect("bytes") >= 60 * 1024));
    assert!(with_site(r, "fixed_overlay").is_empty(), "24 KiB is below 60 KiB");
    // Totals still count everything.
    assert!(r["totals"]["mappings"]["bytes"].as_u64().expect("bytes") > 10 * PAGE);
}

#[test]
fn the_text_report_sorts_by_bytes_and_sums_up_the_loader() {
    let out = leaktrace_output(&[
        "run",
        "--kinds",
        "mmap",
        "--",
        c_fixture("mmap_leaks").to_str().expect("path"),
        "mremap-move",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines = summary_lines(&text);
    assert!(lines.iter().any(|l| l.starts_with("32.0 KiB in 2 anonymous mappings")), "{text}");
    assert!(text.contains("made by the dynamic loader for shared libraries"), "{text}");
    assert!(text.lines().next().is_some_and(|l| l.starts_with("leaktrace run: ")), "{text}");
    assert!(text.contains("mappings: "), "{text}");
}

#[test]
fn attach_follows_mappings_made_while_tracing() {
    let dir = scratch_dir("mmap-attach");
    let ready = dir.join("ready");
    let target = Background::spawn(&c_fixture("mmap_leaks"), &["attach", ready.to_str().expect("path")]);
    let pid = target.pid().to_string();
    let tracer = Tracer::start(&["attach", "--kinds", "mmap", "--format", "json", "--pid", &pid, "--duration", "3s"]);
    std::fs::write(&ready, b"").expect("ready");
    let out = tracer.wait_with_output();
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(held_by(&r, "attach_maps"), (3, 12 * PAGE));
    // Mapped before tracing: neither reported nor disturbed by its unmap.
    assert_eq!(held_by(&r, "attach_target"), (0, 0));
    assert_eq!(r["totals"]["mappings"]["bytes"].as_u64(), Some(12 * PAGE), "{}", r["totals"]);
}
