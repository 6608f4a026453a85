//! Language runtimes as they run in production: what they do at exit is
//! theirs, not the program's.

use std::path::Path;

use leaktrace_tests::*;

/// CPython closes the files a program leaked as it shuts down: the 50 seen
/// held while it ran stay in the report, marked released at exit.
#[test]
fn files_an_interpreter_closes_at_exit_stay_in_the_report() {
    let script = workspace().join("tests/fixtures/python/leak_at_exit.py");
    let run = run_json(&[], Path::new("/usr/bin/python3"), &[script.to_str().expect("path")]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let r = &run.report;
    // One line of Python, but CPython specializes the call after its
    // first runs: the 50 come from two native stacks (7 and 43).
    let released: Vec<&serde_json::Value> =
        stacks(r).iter().filter(|s| s["released_at_exit"].as_u64().is_some() && s["resource"] == "file").collect();
    let sum = |key: &str| released.iter().map(|s| s[key].as_u64().expect("a count")).sum::<u64>();
    assert_eq!((sum("count"), sum("released_at_exit")), (50, 50), "{r}");
    for stack in &released {
        assert_ne!(stack["verdict"], "steady", "{}", stack["verdict_reason"]);
        let n = stack["count"].as_u64().expect("count");
        let reason = stack["verdict_reason"].as_str().expect("reason");
        assert!(reason.ends_with(&format!("then all {n} released as the process exited")), "{reason}");
    }
    assert_eq!(total(r, "outstanding"), 0);
    // Nothing of it was held at the exit itself.
    assert!(with_path(r, "file", "/etc/hostname").is_empty(), "{r}");
}
