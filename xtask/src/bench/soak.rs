//! The steady-state soak: leaktrace tracing a process that acquires and
//! releases fds at full speed for minutes, its memory (VmRSS) and the
//! kernel's outstanding map sampled all along, and the final report checked
//! for losses. A tracer that leaks per event shows it here.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::loops::MEASURED_CPU;
use super::markdown::{self, Headline, Section, Table};
use super::process::{self, Proc, Spawn, Stream};
use super::scale::ReportCheck;
use super::stats;
use super::tracer::Tracer;
use super::{Bench, Plan};

/// The kernel map of outstanding fds (map names are at most 15 characters).
const MAP_NAME: &str = "OUTSTANDING";
/// RSS growth is measured from the first sample at least this far in, once
/// leaktrace's caches and history have filled.
const WARM: Duration = Duration::from_secs(30);
const TARGET_RATE: f64 = 100_000.0;

pub(super) fn section(plan: &Plan) -> Section {
    Section::new(
        "steady-state soak",
        &format!(
            "`soak.c` runs two threads (both on CPU {MEASURED_CPU}) that open and close /dev/null as fast as \
             they can; every 1000th fd goes into a ring of 256 that closes the oldest, so acquisitions never \
             stop and what is outstanding stays bounded. `leaktrace attach --pid P --format json -o FILE` \
             traces it for {}; every {} s the benchmark reads leaktrace's VmRSS (/proc/PID/status) and the \
             number of entries in its kernel map `{MAP_NAME}` (`bpftool -j map dump id N`, the map found \
             among leaktrace's own fds). Then the program stops and prints the acquisitions/s it achieved, \
             and leaktrace gets SIGINT and writes its report. Targets: at least 100,000 acquisitions/s, RSS \
             growth from the first sample after {} s to the end at most 1 MiB, every `losses` counter zero \
             and `complete` true.",
            stats::minutes(plan.soak.as_secs_f64()),
            plan.soak_every.as_secs(),
            WARM.as_secs()
        ),
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Sample {
    pub at: Duration,
    pub rss_kib: u64,
    pub entries: u64,
}

pub(super) fn run(bench: &Bench, section: &mut Section) -> Result<()> {
    let plan = &bench.plan;
    let report = bench.work.join("soak-report.json");
    let _ = std::fs::remove_file(&report);
    let report_arg = report.to_str().context("the report path is not UTF-8")?;

    let mut churn = Proc::spawn("soak", &mut process::pinned(MEASURED_CPU, &bench.programs.soak), Spawn::piped())?;
    churn.wait_line(Stream::Stdout, Duration::from_secs(30), |l| l == "ready")?;
    let pid = churn.pid().to_string();
    let mut tracer =
        Tracer::leaktrace(&["attach", "--pid", &pid, "--format", "json", "-o", report_arg]).start(&bench.leaktrace)?;
    let map = outstanding_map(tracer.pid())?;

    churn.send_line("go")?;
    let start = Instant::now();
    let count = (plan.soak.as_secs() / plan.soak_every.as_secs().max(1)).max(1);
    let mut samples = Vec::new();
    for k in 1..=count {
        let due = plan.soak_every * u32::try_from(k).context("too many samples")?;
        while start.elapsed() < due {
            if process::interrupted() {
                bail!("interrupted");
            }
            thread::sleep(due.saturating_sub(start.elapsed()).min(Duration::from_millis(100)));
        }
        if let Some(exit) = churn.try_wait()? {
            let how = exit.describe();
            bail!("the soak program exited ({how}){}", churn.tail());
        }
        tracer.check_alive()?;
        let sample = Sample { at: start.elapsed(), rss_kib: vm_rss_kib(tracer.pid())?, entries: map_entries(map)? };
        eprintln!(
            "bench:   {:>4} s: leaktrace VmRSS {}, {MAP_NAME} {} entries",
            sample.at.as_secs(),
            stats::mib(sample.rss_kib),
            sample.entries
        );
        samples.push(sample);
    }
    churn.send_line("stop")?;
    let rate_line = churn.wait_line(Stream::Stdout, Duration::from_secs(60), |l| l.starts_with("rate "))?;
    let rate = parse_rate(&rate_line).with_context(|| format!("the soak program said {rate_line:?}"))?;
    let stopped = tracer.stop(Duration::from_secs(120))?;
    churn.close_stdin();
    let text = std::fs::read_to_string(&report).with_context(|| format!("leaktrace wrote no {}", report.display()))?;
    let check = ReportCheck::parse(&text)?;

    let summary = summarize(&samples, WARM).context("no sample after the warm-up")?;
    let mut t = Table::new(&["", "value"]);
    t.row(vec!["acquisitions".into(), stats::thousands(rate.1 as f64, 0)]);
    t.row(vec!["acquisitions/s".into(), stats::thousands(rate.0, 0)]);
    t.row(vec![format!("VmRSS at {} s", summary.first.at.as_secs()), stats::mib(summary.first.rss_kib)]);
    t.row(vec![format!("VmRSS at {} s", summary.last.at.as_secs()), stats::mib(summary.last.rss_kib)]);
    t.row(vec!["RSS growth".into(), format!("{} KiB", stats::signed(summary.growth_kib as f64, 0))]);
    t.row(vec!["peak RSS (ru_maxrss)".into(), stats::mib(stopped.max_rss_kib)]);
    t.row(vec![format!("{MAP_NAME} entries, max"), stats::thousands(summary.max_entries as f64, 0)]);
    t.row(vec!["report: outstanding".into(), stats::thousands(check.outstanding as f64, 0)]);
    t.row(vec!["report: losses".into(), check.losses_text()]);
    t.row(vec!["report: complete".into(), check.complete.to_string()]);
    t.row(vec!["report time".into(), stats::seconds(stopped.took.as_secs_f64())]);
    section.tables.push(t);
    section.series = Some(markdown::series(
        &["t (s)", "VmRSS (KiB)", "entries"],
        &[
            samples.iter().map(|s| s.at.as_secs().to_string()).collect(),
            samples.iter().map(|s| s.rss_kib.to_string()).collect(),
            samples.iter().map(|s| s.entries.to_string()).collect(),
        ],
        12,
    ));

    section.results.push(Headline::target(
        "acquisitions/s",
        stats::thousands(rate.0, 0),
        "≥ 100,000",
        rate.0 >= TARGET_RATE,
    ));
    section.results.push(Headline::target(
        "RSS growth",
        format!(
            "{} KiB ({} at {} s to {} at {} s)",
            stats::signed(summary.growth_kib as f64, 0),
            stats::mib(summary.first.rss_kib),
            summary.first.at.as_secs(),
            stats::mib(summary.last.rss_kib),
            summary.last.at.as_secs()
        ),
        "≤ 1 MiB",
        summary.growth_kib <= 1024,
    ));
    section.results.push(Headline::info(
        "max map occupancy",
        format!("{} entries", stats::thousands(summary.max_entries as f64, 0)),
    ));
    section.results.push(Headline::target("losses", check.losses_text(), "all zero", check.losses.is_empty()));
    section.results.push(Headline::target("complete", check.complete.to_string(), "true", check.complete));
    Ok(())
}

pub(super) struct Summary {
    pub first: Sample,
    pub last: Sample,
    pub growth_kib: i64,
    pub max_entries: u64,
}

/// Growth from the first sample taken at least `warm` in to the last.
pub(super) fn summarize(samples: &[Sample], warm: Duration) -> Option<Summary> {
    let first = *samples.iter().find(|s| s.at >= warm)?;
    let last = *samples.last()?;
    let growth_kib = i64::try_from(last.rss_kib).ok()? - i64::try_from(first.rss_kib).ok()?;
    let max_entries = samples.iter().map(|s| s.entries).max()?;
    Some(Summary { first, last, growth_kib, max_entries })
}

/// `rate <acquisitions/s> <acquisitions>`.
fn parse_rate(line: &str) -> Option<(f64, u64)> {
    let mut parts = line.strip_prefix("rate ")?.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("cannot read leaktrace's status")?;
    parse_vm_rss(&status).context("leaktrace's status has no VmRSS")
}

pub(super) fn parse_vm_rss(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// The id of leaktrace's outstanding map: the map named OUTSTANDING among
/// those its fds hold (other leaktraces on the host have maps of that name).
fn outstanding_map(leaktrace: u32) -> Result<u32> {
    let dir = format!("/proc/{leaktrace}/fdinfo");
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let path = entry.with_context(|| format!("cannot list {dir}"))?.path();
        if let Some(id) = std::fs::read_to_string(&path).ok().as_deref().and_then(parse_map_id) {
            ids.push(id);
        }
    }
    let out = Command::new("bpftool").args(["-j", "map", "show"]).output().context("cannot run bpftool")?;
    if !out.status.success() {
        bail!("bpftool map show failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    find_map(&String::from_utf8_lossy(&out.stdout), MAP_NAME, &ids)
        .with_context(|| format!("none of leaktrace's {} maps is named {MAP_NAME}", ids.len()))
}

/// The `map_id:` of an fd's fdinfo, for fds that are BPF maps.
pub(super) fn parse_map_id(fdinfo: &str) -> Option<u32> {
    fdinfo.lines().find_map(|l| l.strip_prefix("map_id:"))?.trim().parse().ok()
}

/// In `bpftool -j map show`'s output, the id of the map called `name` among
/// `ids`.
pub(super) fn find_map(show: &str, name: &str, ids: &[u32]) -> Option<u32> {
    let maps: Value = serde_json::from_str(show).ok()?;
    maps.as_array()?.iter().find_map(|m| {
        let id = u32::try_from(m.get("id")?.as_u64()?).ok()?;
        (m.get("name")?.as_str()? == name && ids.contains(&id)).then_some(id)
    })
}

fn map_entries(id: u32) -> Result<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "id", &id.to_string()])
        .output()
        .context("cannot run bpftool")?;
    if !out.status.success() {
        bail!("bpftool map dump id {id} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    count_entries(&String::from_utf8_lossy(&out.stdout))
}

/// The number of entries in `bpftool -j map dump`'s output.
pub(super) fn count_entries(dump: &str) -> Result<u64> {
    let value: Value = serde_json::from_str(dump).context("bpftool's dump is not JSON")?;
    Ok(value.as_array().context("bpftool's dump is not a list")?.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: u64, rss_kib: u64, entries: u64) -> Sample {
        Sample { at: Duration::from_secs(secs), rss_kib, entries }
    }

    #[test]
    fn growth_is_measured_after_the_warm_up() {
        let samples = [sample(10, 5000, 100), sample(20, 9000, 300), sample(30, 9100, 256), sample(40, 9300, 250)];
        let s = summarize(&samples, Duration::from_secs(30)).unwrap();
        assert_eq!(s.first, samples[2]);
        assert_eq!(s.last, samples[3]);
        assert_eq!(s.growth_kib, 200);
        assert_eq!(s.max_entries, 300);
        let shrinking = [sample(30, 9000, 1), sample(40, 8000, 1)];
        assert_eq!(summarize(&shrinking, Duration::from_secs(30)).unwrap().growth_kib, -1000);
        assert!(summarize(&samples[..2], Duration::from_secs(30)).is_none());
    }

    #[test]
    fn reads_proc_and_bpftool() {
        assert_eq!(parse_vm_rss("Name:\tleaktrace\nVmRSS:\t   78784 kB\nVmSwap: 0 kB\n"), Some(78784));
        assert_eq!(parse_vm_rss("Name:\tleaktrace\n"), None);
        assert_eq!(parse_map_id("pos:\t0\nflags:\t02000002\nmap_type:\t1\nmap_id:\t29008\n"), Some(29008));
        assert_eq!(parse_map_id("pos:\t0\nflags:\t02\n"), None);
        let show = r#"[{"id":7,"type":"hash","name":"OUTSTANDING"},{"id":9,"type":"hash","name":"STACKS"},
            {"id":12,"type":"hash","name":"OUTSTANDING"}]"#;
        assert_eq!(find_map(show, "OUTSTANDING", &[9, 12]), Some(12));
        assert_eq!(find_map(show, "OUTSTANDING", &[9]), None);
        assert_eq!(count_entries(r#"[{"key":["0x01"],"value":["0x02"]},{"key":[],"value":[]}]"#).unwrap(), 2);
        assert_eq!(count_entries("[]").unwrap(), 0);
        assert!(count_entries("{}").is_err());
        assert_eq!(parse_rate("rate 212345 127407000"), Some((212345.0, 127407000)));
        assert_eq!(parse_rate("rate x"), None);
    }
}
