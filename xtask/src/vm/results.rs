//! Reading what the test binaries said: their `--list` output on the host,
//! and the outcome of each test from the guest's log, into one summary per
//! kernel.

use std::collections::BTreeMap;
use std::fmt;

/// Test names from `BINARY --list --format terse` (`name: test` lines).
pub(super) fn parse_list(output: &str) -> Vec<String> {
    output.lines().filter_map(|l| l.strip_suffix(": test")).map(str::to_string).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Passed,
    /// Failed, then passed when the guest ran it again (see `guest`).
    PassedOnRetry,
    Failed,
    Ignored,
}

fn outcome(result: &str) -> Option<Outcome> {
    match result.trim() {
        "ok" => Some(Outcome::Passed),
        "FAILED" => Some(Outcome::Failed),
        r if r.starts_with("ignored") => Some(Outcome::Ignored),
        _ => None,
    }
}

/// Outcomes by test name from libtest's `test NAME ... ok|FAILED|ignored`
/// lines; a later line for the same name wins, and a pass after a failure
/// (the guest's second try) is told apart. What a test's children write
/// to the shared stderr can land between `test NAME ... ` and its result,
/// which then comes on a line of its own; the names under the closing
/// `failures:` list are failures whatever came before.
pub(super) fn parse_log(log: &str) -> BTreeMap<String, Outcome> {
    let mut outcomes = BTreeMap::new();
    let record = |outcomes: &mut BTreeMap<String, Outcome>, name: &str, o: Outcome| {
        let o = match (outcomes.get(name), o) {
            (Some(Outcome::Failed), Outcome::Passed) => Outcome::PassedOnRetry,
            _ => o,
        };
        outcomes.insert(name.to_string(), o);
    };
    let mut pending: Option<String> = None;
    let mut in_failures = false;
    let mut listed = Vec::new();
    for line in log.lines() {
        if let Some((name, result)) = line.strip_prefix("test ").and_then(|rest| rest.split_once(" ... ")) {
            match outcome(result) {
                Some(o) => {
                    record(&mut outcomes, name, o);
                    pending = None;
                }
                None => pending = Some(name.to_string()),
            }
            continue;
        }
        if let (Some(name), Some(o)) = (&pending, outcome(line)) {
            record(&mut outcomes, name, o);
            pending = None;
            continue;
        }
        // `failures:` heads both the failed tests' output (`---- NAME
        // stdout ----` blocks) and, last, the list of their names.
        if line == "failures:" {
            in_failures = true;
            listed.clear();
        } else if line.starts_with("---- ") {
            in_failures = false;
        } else if let Some(name) = line.strip_prefix("    ").filter(|_| in_failures) {
            listed.push(name.trim().to_string());
        } else if line.starts_with("test result: ") {
            for name in listed.drain(..) {
                outcomes.insert(name, Outcome::Failed);
            }
            in_failures = false;
        }
    }
    outcomes
}

/// What happened on one kernel.
#[derive(Debug, Default)]
pub(super) struct Summary {
    pub passed: Vec<String>,
    /// Also in `passed`: failed once, passed on the guest's second try.
    pub retried: Vec<String>,
    pub failed: Vec<String>,
    pub ignored: Vec<String>,
    /// Selected but never reported: the binary hung, crashed or timed out.
    pub missing: Vec<String>,
    /// (test, reason)
    pub skipped: Vec<(String, String)>,
}

impl Summary {
    pub(super) fn new(selected: &[String], skipped: Vec<(String, String)>, log: &str) -> Summary {
        let outcomes = parse_log(log);
        let mut summary = Summary { skipped, ..Summary::default() };
        for name in selected {
            match outcomes.get(name) {
                Some(Outcome::Passed) => summary.passed.push(name.clone()),
                Some(Outcome::PassedOnRetry) => {
                    summary.passed.push(name.clone());
                    summary.retried.push(name.clone());
                }
                Some(Outcome::Failed) => summary.failed.push(name.clone()),
                Some(Outcome::Ignored) => summary.ignored.push(name.clone()),
                None => summary.missing.push(name.clone()),
            }
        }
        summary
    }

    pub(super) fn ok(&self) -> bool {
        self.failed.is_empty() && self.missing.is_empty()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed.len(),
            self.failed.len() + self.missing.len(),
            self.skipped.len()
        )?;
        if !self.ignored.is_empty() {
            write!(f, ", {} ignored", self.ignored.len())?;
        }
        for name in &self.failed {
            write!(f, "\n  failed: {name}")?;
        }
        for name in &self.retried {
            write!(f, "\n  passed on a second try: {name}")?;
        }
        for name in &self.missing {
            write!(f, "\n  no result (hung, crashed or timed out): {name}")?;
        }
        // One line per reason, listing its tests unless they are most of
        // the suite (the alternate form lists them all).
        let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, reason) in &self.skipped {
            by_reason.entry(reason).or_default().push(name);
        }
        for (reason, names) in by_reason {
            write!(f, "\n  skipped {} ({reason})", names.len())?;
            if f.alternate() || names.len() <= 10 {
                write!(f, ": {}", names.join(", "))?;
            } else {
                write!(f, ": all but the {} that run", self.passed.len() + self.failed.len() + self.missing.len())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        let out = "a_pid_that_does_not_exist: test\nbad_durations_and_kinds: test\n\n2 tests, 0 benchmarks\n";
        assert_eq!(parse_list(out), ["a_pid_that_does_not_exist", "bad_durations_and_kinds"]);
    }

    #[test]
    fn outcomes_from_the_log() {
        let log = "\nrunning 3 tests\ntest a ... ok\ntest b ... FAILED\ntest c ... ignored, needs a GPU\n\
                   \nfailures:\n\n---- b stdout ----\ntest x ... is not a result line\n\
                   test result: FAILED. 1 passed; 1 failed; 1 ignored\n";
        let outcomes = parse_log(log);
        assert!(!outcomes.contains_key("x"));
        assert_eq!(outcomes["a"], Outcome::Passed);
        assert_eq!(outcomes["b"], Outcome::Failed);
        assert_eq!(outcomes["c"], Outcome::Ignored);

        // A child's stderr between the name and the result.
        let interleaved =
            "test attach_follows ... leaktrace: tracing pid 5386 (c-mmap_leaks); Ctrl-C ends it\nFAILED\n\
                   test exec_releases ... ok\n\nfailures:\n\n---- attach_follows stdout ----\n\
                   thread 'attach_follows' panicked\n    Object {\n\nfailures:\n    attach_follows\n\n\
                   test result: FAILED. 1 passed; 1 failed\n";
        let outcomes = parse_log(interleaved);
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        assert_eq!(outcomes["attach_follows"], Outcome::Failed);
        assert_eq!(outcomes["exec_releases"], Outcome::Passed);

        // The guest's second try of a failed test.
        let retried =
            format!("{interleaved}\nrunning 1 test\ntest attach_follows ... ok\n\ntest result: ok. 1 passed\n");
        let outcomes = parse_log(&retried);
        assert_eq!(outcomes["attach_follows"], Outcome::PassedOnRetry);
        let summary = Summary::new(&["attach_follows".to_string()], vec![], &retried);
        assert!(summary.ok());
        assert_eq!(summary.to_string(), "1 passed, 0 failed, 0 skipped\n  passed on a second try: attach_follows");

        let selected: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let skipped = vec![("e".to_string(), "needs bpf_loop".to_string()), ("f".into(), "needs bpf_loop".into())];
        let summary = Summary::new(&selected, skipped, log);
        assert!(!summary.ok());
        assert_eq!(summary.missing, ["d"]);
        assert_eq!(
            summary.to_string(),
            "1 passed, 2 failed, 2 skipped, 1 ignored\n  failed: b\n  no result (hung, crashed or timed out): d\n  \
             skipped 2 (needs bpf_loop): e, f"
        );
    }
}
