//! `leaktrace run` on Go and Rust fixtures: exact counts per function.

use leaktrace_tests::*;

#[test]
fn go_leaks_are_attributed_to_their_functions() {
    let run = run_json(&[], &go_fixture("leaky"), &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let r = &run.report;

    let config = with_symbol(r, "main.loadConfig");
    let config: Vec<_> = config.into_iter().filter(|s| s["resource"] == "file").collect();
    assert_eq!(count(&config), 30);
    assert_eq!(config[0]["site"], "main.loadConfig");
    assert_eq!(config[0]["examples"][0]["path"], "/etc/hostname");
    let frames = config[0]["stack"].as_array().expect("frames");
    let site = frames.iter().find(|f| f["symbol"] == "main.loadConfig").expect("site frame");
    assert!(site["file"].as_str().expect("file").ends_with("main.go"), "{site}");
    assert!(site["line"].as_u64().expect("line") > 0);
    let below: Vec<&str> = frames.iter().filter_map(|f| f["symbol"].as_str()).collect();
    let at = below.iter().position(|s| *s == "main.loadConfig").expect("site");
    assert_eq!(below[at + 1], "main.main", "{below:?}");

    let pipes: Vec<_> = with_symbol(r, "main.leakPipes").into_iter().filter(|s| s["resource"] == "pipe").collect();
    assert_eq!(count(&pipes), 20, "5 write ends from each of 4 goroutines");

    let sockets: Vec<_> =
        with_symbol(r, "main.leakListeners").into_iter().filter(|s| s["resource"] == "socket").collect();
    assert_eq!(count(&sockets), 3);

    // Correct open/close pairs never appear: nothing from readAll's ReadFile.
    assert!(with_path(r, "file", "/etc/passwd").is_empty());
}

#[test]
fn rust_leaks_are_counted() {
    let run = run_json(&[], &rust_fixture(), &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let r = &run.report;
    assert_eq!(count(&with_path(r, "file", "/etc/hostname")), 17);
    let pairs: Vec<_> = stacks(r).iter().filter(|s| s["resource"] == "socket").collect();
    assert_eq!(count(&pairs), 18);
    assert!(with_path(r, "file", "/etc/passwd").is_empty());
    assert_eq!(total(r, "outstanding"), 35);
}

#[test]
fn unused_stacks_are_freed_so_the_stack_map_never_fills() {
    // 40 distinct stacks come and go; the map holds 32 and is swept every 100ms.
    let run = run_json(&["--max-stacks", "32", "--interval", "100ms"], &go_fixture("churn"), &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let r = &run.report;
    assert_eq!(r["losses"]["stacks_dropped"], 0, "{}", r["losses"]);
    let leaked = with_symbol(r, "main.leakDeep");
    assert_eq!(count(&leaked), 1);
    let depth =
        leaked[0]["stack"].as_array().expect("frames").iter().filter(|f| f["symbol"] == "main.leakDeep").count();
    assert_eq!(depth, 46, "the whole recursion is in the stack");
}

/// `leaktrace run --fail-on-leak -- go test ./...`: the go tool, the
/// compiler and the test binary are dozens of short processes that each hold
/// the Go runtime's poller until they exit, which is not a leak; a test that
/// keeps files is.
#[test]
fn fail_on_leak_gates_go_test() {
    let dir = scratch_dir("gotest");
    let cache = dir.join("cache");
    let report = dir.join("report.json");
    let go_test = |leaky: &str| {
        std::process::Command::new(leaktrace())
            .args(["run", "--fail-on-leak", "--format", "json", "-o"])
            .arg(&report)
            .args(["--", "go", "test", "-count=1", "./..."])
            .current_dir(workspace().join("tests/fixtures/go/gotest"))
            .env("HOME", &dir)
            .env("GOCACHE", &cache)
            .env("GOFLAGS", "-buildvcs=false")
            .env("LEAKY", leaky)
            .output()
            .expect("leaktrace run go test")
    };
    let clean = go_test("0");
    assert_eq!(clean.status.code(), Some(0), "{}", String::from_utf8_lossy(&clean.stderr));

    let leaky = go_test("1");
    assert_eq!(leaky.status.code(), Some(3), "{}", String::from_utf8_lossy(&leaky.stderr));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report file")).expect("json report");
    let leaks: Vec<_> = stacks(&r).iter().filter(|s| s["verdict"] == "leak").collect();
    assert_eq!(leaks.len(), 1, "{leaks:?}");
    assert_eq!(leaks[0]["count"], 40);
    // go test links its test binaries stripped (no .symtab, no DWARF): the
    // frames are named by module and offset (see the README's limits).
    let module = leaks[0]["stack"][0]["module"].as_str().unwrap_or_default();
    assert!(module.ends_with("/gotest.test"), "{}", leaks[0]);
}
