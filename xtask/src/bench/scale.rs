//! Userspace at scale: 1,000,000 outstanding fds from 10,000 distinct stacks
//! (`stacks.c`), and what leaktrace needs to report them: the time from
//! SIGINT to its exit, its peak RSS, and whether the report holds them all.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::baseline;
use super::loops::MEASURED_CPU;
use super::markdown::{Headline, Section, Table};
use super::process::{self, Proc, Spawn, Stream};
use super::stats::{self, median};
use super::tracer::Tracer;
use super::{Bench, Plan};

const FDS: u64 = 1_000_000;
const STACKS: u64 = 10_000;
/// The fds one process must be allowed: every dup plus its usual few.
const NR_OPEN: u64 = FDS + 100;
const REPORT_TIMEOUT: Duration = Duration::from_secs(600);

pub(super) fn section(plan: &Plan) -> Section {
    Section::new(
        "1,000,000 outstanding fds from 10,000 stacks",
        &format!(
            "`stacks.c` has 100 outer functions that can each call each of 100 leaf functions (distinct, \
             `noipa`, not tail calls), every leaf `dup()`ing one fd 100 times and keeping the copies: \
             1,000,000 fds from 10,000 distinct stacks. It waits on stdin while `leaktrace attach --pid P \
             --max-entries 1100000 --max-stacks 32768 --format json -o FILE` starts; once leaktrace traces, \
             it makes every fd and says so; then leaktrace gets SIGINT. Measured: the time from SIGINT to \
             leaktrace's exit (writing the report), leaktrace's peak RSS (`wait4`'s ru_maxrss), and the \
             report's total outstanding and number of stacks; also how long the 1,000,000 `dup()`s took \
             traced, against one untraced run. {} traced run(s); the figures are medians. Targets: report in \
             at most 1 s, peak RSS at most 200 MiB, all 1,000,000 fds in 10,000 stacks.",
            plan.scale_runs
        ),
    )
}

pub(super) fn run(bench: &Bench, section: &mut Section) -> Result<()> {
    let _nr_open = NrOpen::at_least(NR_OPEN)?;
    let report = bench.work.join("scale-report.json");

    let untraced = Stacks::start(&bench.programs.stacks)?.make_all(None)?;
    section.notes.push(if untraced.workers == 1 {
        "One process holds all 1,000,000 fds.".to_string()
    } else {
        format!(
            "1,000,000 fds in one process is not reachable here: {}, and raising RLIMIT_NOFILE above the \
             hard limit needs CAP_SYS_RESOURCE, which this root lacks. The 1,000,000 fds are held by {} \
             worker processes of 10,000 fds each instead, forked by the traced process after tracing began \
             (leaktrace follows children), from the same 10,000 stacks.",
            untraced.why, untraced.workers
        )
    });

    let mut t = Table::new(&[
        "run",
        "1M dup()s took",
        "report time",
        "peak RSS",
        "outstanding",
        "stacks",
        "complete",
        "losses",
    ]);
    t.row(vec![
        "untraced".into(),
        stats::seconds(untraced.took.as_secs_f64()),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    let mut runs = Vec::new();
    let mut baseline_runs = Vec::new();
    for run in 0..bench.plan.scale_runs {
        // With a baseline, the two binaries take turns going first, the new
        // one in the first run.
        let mut turns = vec![(&bench.leaktrace, false)];
        if let Some(older) = &bench.baseline {
            if run % 2 == 0 {
                turns.push((older, true));
            } else {
                turns.insert(0, (older, true));
            }
        }
        for (binary, is_baseline) in turns {
            let traced = TracedRun::measure(bench, binary, &report)?;
            eprintln!(
                "bench:   run {}/{}{}: dup()s {}, report {}, peak RSS {}, {} outstanding in {} stacks",
                run + 1,
                bench.plan.scale_runs,
                if is_baseline { " (baseline)" } else { "" },
                stats::seconds(traced.took.as_secs_f64()),
                stats::seconds(traced.report.as_secs_f64()),
                stats::mib(traced.rss_kib),
                stats::thousands(traced.check.outstanding as f64, 0),
                stats::thousands(traced.check.stacks as f64, 0)
            );
            let label = if is_baseline { "baseline" } else { "traced" };
            t.row(vec![
                format!("{label} {}", run + 1),
                stats::seconds(traced.took.as_secs_f64()),
                stats::seconds(traced.report.as_secs_f64()),
                stats::mib(traced.rss_kib),
                stats::thousands(traced.check.outstanding as f64, 0),
                stats::thousands(traced.check.stacks as f64, 0),
                traced.check.complete.to_string(),
                traced.check.losses_text(),
            ]);
            if is_baseline {
                baseline_runs.push(traced);
            } else {
                runs.push(traced);
            }
        }
    }
    section.tables.push(t);

    let report_s = median(&TracedRun::report_secs(&runs)).context("no runs")?;
    let rss_kib = median(&TracedRun::rss_kib(&runs)).context("no runs")?;
    let took = median(&TracedRun::took_secs(&runs)).context("no runs")?;
    section.results.push(Headline::target("report time", stats::seconds(report_s), "≤ 1 s", report_s <= 1.0));
    section.results.push(Headline::target(
        "leaktrace peak RSS",
        stats::mib(rss_kib as u64),
        "≤ 200 MiB",
        rss_kib <= 200.0 * 1024.0,
    ));
    let all_found =
        runs.iter().all(|r| r.check.outstanding == FDS && r.check.counted == FDS && r.check.stacks == STACKS);
    let last = &runs.last().context("no runs")?.check;
    section.results.push(Headline::target(
        "report",
        format!(
            "{} fds in {} stacks",
            stats::thousands(last.outstanding as f64, 0),
            stats::thousands(last.stacks as f64, 0)
        ),
        "1,000,000 in 10,000",
        all_found,
    ));
    section.results.push(Headline::info(
        "1M dup()s traced",
        format!("{} (untraced {})", stats::seconds(took), stats::seconds(untraced.took.as_secs_f64())),
    ));
    if !baseline_runs.is_empty() {
        let (new, old) = (&runs, &baseline_runs);
        let mib = |kib: f64| stats::mib(kib as u64);
        section.results.push(baseline::headline(
            "report time",
            &TracedRun::report_secs(new),
            &TracedRun::report_secs(old),
            stats::seconds,
        )?);
        section.results.push(baseline::headline("peak RSS", &TracedRun::rss_kib(new), &TracedRun::rss_kib(old), mib)?);
        section.results.push(baseline::headline(
            "1M dup()s traced",
            &TracedRun::took_secs(new),
            &TracedRun::took_secs(old),
            stats::seconds,
        )?);
        section.notes.push(
            "`--baseline`: the `baseline N` runs are the older binary given, with the same arguments, \
             alternating with the new one (the new one first in runs 1, 3, …); the comparisons say whether the new \
             median is within the baseline's min..max over its runs."
                .into(),
        );
    }
    if runs.iter().chain(&baseline_runs).any(|r| !r.check.losses.is_empty()) {
        section.notes.push(
            "Losses are the report's `losses` counters that are not zero (`series_dropped`: stacks beyond \
             `--max-series`, 4096 by default, kept no history and got no verdict; the benchmark uses the \
             command line above as given)."
                .into(),
        );
    }
    Ok(())
}

/// One traced run of the stacks program.
struct TracedRun {
    /// How long the 1,000,000 `dup()`s took.
    took: Duration,
    /// leaktrace's time from SIGINT to exit.
    report: Duration,
    /// leaktrace's peak RSS.
    rss_kib: u64,
    check: ReportCheck,
}

impl TracedRun {
    /// Runs the stacks program traced by `binary`, which writes its report
    /// to `report`.
    fn measure(bench: &Bench, binary: &Path, report: &Path) -> Result<Self> {
        let _ = std::fs::remove_file(report);
        let args = [
            "attach",
            "--max-entries",
            "1100000",
            "--max-stacks",
            "32768",
            "--format",
            "json",
            "-o",
            path_str(report)?,
        ];
        let traced = Stacks::start(&bench.programs.stacks)?.make_all(Some((binary, &args[..])))?;
        let text =
            std::fs::read_to_string(report).with_context(|| format!("leaktrace wrote no {}", report.display()))?;
        let check = ReportCheck::parse(&text)?;
        let (report, rss_kib) = traced.stopped.context("the traced run has no stop time")?;
        Ok(Self { took: traced.took, report, rss_kib, check })
    }

    fn report_secs(runs: &[Self]) -> Vec<f64> {
        runs.iter().map(|r| r.report.as_secs_f64()).collect()
    }

    fn rss_kib(runs: &[Self]) -> Vec<f64> {
        runs.iter().map(|r| r.rss_kib as f64).collect()
    }

    fn took_secs(runs: &[Self]) -> Vec<f64> {
        runs.iter().map(|r| r.took.as_secs_f64()).collect()
    }
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}

/// The stacks program, started and waiting for its go.
struct Stacks {
    proc: Proc,
    workers: u32,
    why: String,
}

/// One run of the stacks program.
struct Made {
    took: Duration,
    workers: u32,
    why: String,
    /// leaktrace's time from SIGINT to exit and its peak RSS in KiB.
    stopped: Option<(Duration, u64)>,
}

impl Stacks {
    fn start(program: &Path) -> Result<Self> {
        let mut proc = Proc::spawn("stacks", &mut process::pinned(MEASURED_CPU, program), Spawn::piped())?;
        let ready = proc.wait_line(Stream::Stdout, Duration::from_secs(30), |l| l.starts_with("ready "))?;
        let (workers, why) = parse_ready(&ready).with_context(|| format!("stacks said {ready:?}"))?;
        Ok(Self { proc, workers, why })
    }

    /// Makes every fd, under the leaktrace binary run with `tracing`'s
    /// arguments (plus `--pid P`) if given, and stops it once they are all
    /// made.
    fn make_all(mut self, tracing: Option<(&Path, &[&str])>) -> Result<Made> {
        let pid = self.proc.pid().to_string();
        let tracer = match tracing {
            Some((binary, args)) => {
                let mut args = args.to_vec();
                args.extend(["--pid", &pid]);
                Some(Tracer::leaktrace(&args).start(binary)?)
            }
            None => None,
        };
        self.proc.send_line("go")?;
        let done = self.proc.wait_line(Stream::Stdout, REPORT_TIMEOUT, |l| l.starts_with("done "))?;
        let took = parse_done(&done).with_context(|| format!("stacks said {done:?}"))?;
        let stopped = match tracer {
            Some(t) => {
                let s = t.stop(REPORT_TIMEOUT)?;
                Some((s.took, s.max_rss_kib))
            }
            None => None,
        };
        self.proc.close_stdin();
        let exit =
            self.proc.wait_timeout(Duration::from_secs(60))?.context("stacks did not exit after its stdin closed")?;
        if !exit.success() {
            let how = exit.describe();
            bail!("stacks failed ({how}){}", self.proc.tail());
        }
        Ok(Made { took, workers: self.workers, why: self.why.clone(), stopped })
    }
}

/// `ready <workers> <why>`.
fn parse_ready(line: &str) -> Option<(u32, String)> {
    let rest = line.strip_prefix("ready ")?;
    let (workers, why) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((workers.parse().ok()?, why.to_string()))
}

/// `done <fds> <ns>`: the time the fds took.
fn parse_done(line: &str) -> Option<Duration> {
    let mut parts = line.strip_prefix("done ")?.split_whitespace();
    let fds: u64 = parts.next()?.parse().ok()?;
    let ns: u64 = parts.next()?.parse().ok()?;
    (fds == FDS).then_some(Duration::from_nanos(ns))
}

/// What the benchmark checks in a `leaktrace.report/1`.
#[derive(Debug, PartialEq)]
pub(super) struct ReportCheck {
    /// `totals.outstanding`.
    pub outstanding: u64,
    /// The sum of the stacks' counts.
    pub counted: u64,
    pub stacks: u64,
    pub complete: bool,
    /// The `losses` counters that are not zero.
    pub losses: Vec<(String, u64)>,
}

impl ReportCheck {
    pub(super) fn parse(json: &str) -> Result<Self> {
        let report: Value = serde_json::from_str(json).context("the report is not JSON")?;
        let outstanding = report
            .pointer("/totals/outstanding")
            .and_then(Value::as_u64)
            .context("the report has no totals.outstanding")?;
        let stacks = report.get("stacks").and_then(Value::as_array).context("the report has no stacks")?;
        let counted = stacks.iter().filter_map(|s| s.get("count").and_then(Value::as_u64)).sum();
        let complete = report.get("complete").and_then(Value::as_bool).context("the report has no complete")?;
        let losses = report
            .get("losses")
            .and_then(Value::as_object)
            .context("the report has no losses")?
            .iter()
            .filter_map(|(k, v)| v.as_u64().filter(|n| *n != 0).map(|n| (k.clone(), n)))
            .collect();
        Ok(Self { outstanding, counted, stacks: stacks.len() as u64, complete, losses })
    }

    pub(super) fn losses_text(&self) -> String {
        if self.losses.is_empty() {
            "none".into()
        } else {
            self.losses.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        }
    }
}

/// Raises fs.nr_open (the most fds a process can be allowed) for the
/// benchmark and puts it back after.
struct NrOpen {
    restore: Option<String>,
}

const NR_OPEN_PATH: &str = "/proc/sys/fs/nr_open";

impl NrOpen {
    fn at_least(wanted: u64) -> Result<Self> {
        let current = std::fs::read_to_string(NR_OPEN_PATH).with_context(|| format!("cannot read {NR_OPEN_PATH}"))?;
        let value: u64 = current.trim().parse().with_context(|| format!("{NR_OPEN_PATH} holds {current:?}"))?;
        if value >= wanted {
            return Ok(Self { restore: None });
        }
        std::fs::write(NR_OPEN_PATH, wanted.to_string()).with_context(|| format!("cannot raise {NR_OPEN_PATH}"))?;
        Ok(Self { restore: Some(current.trim().to_string()) })
    }
}

impl Drop for NrOpen {
    fn drop(&mut self) {
        if let Some(value) = &self.restore {
            if std::fs::write(NR_OPEN_PATH, value).is_err() {
                eprintln!("bench: warning: could not restore fs.nr_open to {value}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_programs_lines() {
        assert_eq!(parse_ready("ready 1 one process holds them all"), Some((1, "one process holds them all".into())));
        assert_eq!(parse_ready("ready 100"), Some((100, String::new())));
        assert_eq!(parse_ready("ready x"), None);
        assert_eq!(parse_done("done 1000000 96760272"), Some(Duration::from_nanos(96760272)));
        assert_eq!(parse_done("done 999 5"), None);
        assert_eq!(parse_done("done"), None);
    }

    #[test]
    fn checks_a_report() {
        let json = r#"{"schema": "leaktrace.report/1", "totals": {"acquired": 3, "outstanding": 3},
            "stacks": [{"count": 2}, {"count": 1}], "complete": true,
            "losses": {"map_full": 0, "series_dropped": 5904}}"#;
        let check = ReportCheck::parse(json).unwrap();
        assert_eq!(
            check,
            ReportCheck {
                outstanding: 3,
                counted: 3,
                stacks: 2,
                complete: true,
                losses: vec![("series_dropped".into(), 5904)]
            }
        );
        assert_eq!(check.losses_text(), "series_dropped 5904");
        assert!(ReportCheck::parse(r#"{"stacks": []}"#).is_err());
        assert!(ReportCheck::parse("not json").is_err());
    }
}
