//! `leaktrace record` under load and killed: what writing a recording costs
//! at 100,000 acquisitions/s (the recorder's CPU time, against an untraced
//! run and `leaktrace attach` tracing the same churn without writing), how
//! many bytes an acquisition takes in the file, and how much a SIGKILL of
//! the recorder loses.
//!
//! The recorder is started and stopped here rather than by `tracer`: it says
//! it is ready in its own words, and one of its runs ends in SIGKILL. Rows
//! are counted with python3's sqlite3 module (xtask links no SQLite); without
//! python3 the row figures are left out and say why.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::daemon::parse_cpu_ticks;
use super::markdown::{Headline, Section, Table};
use super::process::{self, Proc, Spawn, Stream};
use super::stats;
use super::tracer::{Running, Tracer};
use super::{Bench, Plan};

/// Acquisitions a second, in all, and how many processes share them (so
/// that none holds more fds than RLIMIT_NOFILE allows).
const RATE: u64 = 100_000;
const PROCESSES: u64 = 8;
/// How long each fd is held: longer than a checkpoint interval, so every
/// acquisition is seen by a checkpoint and written (a pair shorter than the
/// interval may never reach the file). RATE × HOLD = 150,000 fds are held,
/// 18,750 per copy (RLIMIT_NOFILE's hard limit here is 20,000).
const HOLD: Duration = Duration::from_millis(1_500);
/// The kernel's outstanding-fd map, for attach and record alike: room for
/// everything held.
const MAX_ENTRIES: &str = "262144";
/// `record --interval`, its default.
const INTERVAL: Duration = Duration::from_secs(1);
/// From the first acquisition to the start of the measured window: the
/// rings fill in HOLD, the recorder has written a few checkpoints.
const WARM: Duration = Duration::from_secs(3);
/// The leaking program of the SIGKILL test: `growth SECONDS RATE`, its
/// `leak_steadily` opening LEAK_RATE fds a second and never closing them.
const LEAK_RATE: u64 = 100;
const LEAK_SITE: &str = "leak_steadily";
/// When the recorder gets SIGKILL, from the start of the leaking program:
/// halfway between two checkpoints, on average.
const KILL_AFTER: Duration = Duration::from_millis(5_500);
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) fn section(plan: &Plan) -> Section {
    Section::new(
        "recording",
        &format!(
            "`churn.c` forks {PROCESSES} copies that together open {} fds a second (/dev/null, a batch every \
             millisecond on an absolute schedule) and hold each for {} ms in a ring, closing the oldest, so \
             {} fds are held at any moment and a checkpoint every {} s sees {} % of the acquisitions (both \
             tracers run with `--max-entries {MAX_ENTRIES}`, room for all of them). Three conditions, one after the other, \
             each on a fresh copy of the program: untraced; `leaktrace attach --pid P -o /dev/null` (tracing \
             without writing); `leaktrace record --pid P --output FILE` (default `--interval 1s`, one \
             transaction per checkpoint, `synchronous=FULL`, WAL). The tracer starts on the idle program, the \
             churn starts after it; after {} s of warm-up, the benchmark reads over {} the acquisitions the \
             program made (its shared counters; a copy that falls behind its schedule catches up, so a window \
             may count a little over 100,000/s), the CPU time (utime+stime, /proc/PID/stat) of the copies \
             (where the probes run) and of the tracer and, for `record`, the acquisitions written (`max(id)` of the `acquisitions` table, read with python3's \
             sqlite3 while the recorder writes; rows appear a checkpoint at a time, so the written rate is \
             known to about one checkpoint's worth over the window and may read a little over the acquisitions \
             made). The recorder then gets SIGINT and writes its last \
             checkpoint; bytes per acquisition are the file's final size (database and `-wal`) over all the \
             acquisition rows in it (each with its release row and index entries). The recording's own cost \
             is `record`'s CPU time less `attach`'s, over the acquisitions written. Then the SIGKILL test: \
             `leaktrace record --comm growth --output FILE`, then `growth 60 {LEAK_RATE}` (the test fixture, \
             whose `{LEAK_SITE}` opens {LEAK_RATE} fds a second and never closes them); {} s after the \
             program started the recorder gets SIGKILL, and `leaktrace report FILE --format json` must read \
             what it left: the `{LEAK_SITE}` stack's `count` against the fds the program had opened by then \
             (its start time × {LEAK_RATE}/s) is what the kill lost. Target: at most one checkpoint interval \
             ({} s) lost, plus the 0.1 s the recorder lets events wait in the ring buffer.",
            stats::thousands(RATE as f64, 0),
            HOLD.as_millis(),
            stats::thousands((RATE as f64 * HOLD.as_secs_f64()).round(), 0),
            INTERVAL.as_secs(),
            (100.0 * HOLD.as_secs_f64() / INTERVAL.as_secs_f64()).min(100.0).round(),
            WARM.as_secs(),
            stats::seconds(plan.recording_window.as_secs_f64()),
            KILL_AFTER.as_secs_f64(),
            INTERVAL.as_secs(),
        ),
    )
}

pub(super) fn run(bench: &Bench, section: &mut Section) -> Result<()> {
    let untraced = measure(bench, Condition::Untraced)?;
    let attach = measure(bench, Condition::Attach)?;
    let record = measure(bench, Condition::Record)?;
    let killed = sigkill(bench)?;

    let cpu = |m: &Churned| m.cpu.map_or_else(String::new, |c| format!("{:.1}% of a CPU", c * 100.0));
    let mut t = Table::new(&["", "untraced", "attach -o /dev/null", "record"]);
    let all = [&untraced, &attach, &record];
    t.row(
        std::iter::once("acquisitions/s achieved".to_string())
            .chain(all.iter().map(|m| stats::thousands(m.rate, 0)))
            .collect(),
    );
    t.row(
        std::iter::once(format!("churn's CPU ({PROCESSES} copies)"))
            .chain(all.iter().map(|m| format!("{:.1}% of a CPU", m.program_cpu * 100.0)))
            .collect(),
    );
    t.row(
        std::iter::once("churn's CPU per acquisition".to_string())
            .chain(all.iter().map(|m| format!("{:.2} µs", m.program_cpu / m.rate * 1e6)))
            .collect(),
    );
    t.row(vec!["tracer CPU".into(), String::new(), cpu(&attach), cpu(&record)]);
    let own_cpu = record.cpu.zip(attach.cpu).map(|(r, a)| r - a);
    t.row(vec![
        "recording's own CPU (record − attach)".into(),
        String::new(),
        String::new(),
        own_cpu.map_or_else(String::new, |c| format!("{}% of a CPU", stats::signed(c * 100.0, 1))),
    ]);
    let mut results = Vec::new();
    match &record.rows {
        Ok(rows) => {
            let written = rows.written as f64 / rows.window_s;
            let per_row = |cpu_s: f64| format!("{:.2} µs", cpu_s / written * 1e6);
            let bytes_per_row = rows.final_bytes as f64 / rows.acquisitions as f64;
            let cells = [
                ("acquisitions written/s", stats::thousands(written, 0)),
                ("share of acquisitions written", format!("{:.1}%", 100.0 * written / record.rate)),
                ("record CPU per written acquisition", record.cpu.map(per_row).unwrap_or_default()),
                ("own CPU per written acquisition", own_cpu.map(per_row).unwrap_or_default()),
                ("acquisition rows in the file", stats::thousands(rows.acquisitions as f64, 0)),
                ("release rows in the file", stats::thousands(rows.releases as f64, 0)),
                ("file size at the end (db + -wal)", bytes(rows.final_bytes as f64)),
                ("file size at the window's end (db + -wal)", bytes(rows.window_bytes as f64)),
                ("bytes per acquisition", format!("{bytes_per_row:.0} B")),
                ("file growth per second written", format!("{}/s", bytes(written * bytes_per_row))),
            ];
            for (label, value) in cells {
                t.row(vec![label.into(), String::new(), String::new(), value]);
            }
            results.push(Headline::info(
                "write cost",
                format!(
                    "{} of the recorder's CPU per written acquisition, {} more than attach's ({} written/s of {} acquisitions/s)",
                    record.cpu.map(per_row).unwrap_or_default(),
                    own_cpu.map(per_row).unwrap_or_default(),
                    stats::thousands(written, 0),
                    stats::thousands(record.rate, 0)
                ),
            ));
            results.push(Headline::info(
                "bytes per recorded acquisition",
                format!(
                    "{bytes_per_row:.0} B ({}/s at {} written/s)",
                    bytes(written * bytes_per_row),
                    stats::thousands(written, 0)
                ),
            ));
        }
        Err(why) => {
            section.notes.push(format!("No row figures: {why}."));
            results.push(Headline::unmeasured("write cost", why, ""));
            results.push(Headline::unmeasured("bytes per recorded acquisition", why, ""));
        }
    }
    section.tables.push(t);

    let lost = killed.made.saturating_sub(killed.in_file);
    let lost_s = lost as f64 / LEAK_RATE as f64;
    let allowed = INTERVAL.as_secs_f64() + 0.1;
    let mut k = Table::new(&["SIGKILL test", "value"]);
    k.row(vec!["recorder killed after".into(), stats::seconds(killed.after.as_secs_f64())]);
    k.row(vec!["fds the program had leaked".into(), stats::thousands(killed.made as f64, 0)]);
    k.row(vec![format!("fds in the file ({LEAK_SITE})"), stats::thousands(killed.in_file as f64, 0)]);
    k.row(vec!["lost".into(), format!("{} fds, {}", stats::thousands(lost as f64, 0), stats::seconds(lost_s))]);
    k.row(vec!["checkpoints in the file".into(), killed.checkpoints.clone()]);
    k.row(vec!["`leaktrace report` on the file".into(), "read it".into()]);
    section.tables.push(k);

    section.results.extend(results);
    section.results.push(Headline::target(
        "data a SIGKILL loses",
        format!("{} ({} of {} fds)", stats::seconds(lost_s), lost, killed.made),
        &format!("≤ {} s", allowed),
        lost_s <= allowed,
    ));
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Condition {
    Untraced,
    Attach,
    Record,
}

impl Condition {
    fn name(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::Attach => "attach",
            Self::Record => "record",
        }
    }
}

/// One condition's window.
struct Churned {
    /// Acquisitions a second the program achieved.
    rate: f64,
    /// The copies' CPU seconds a second: the acquisitions, and the probes
    /// that fire in them.
    program_cpu: f64,
    /// The tracer's CPU seconds a second.
    cpu: Option<f64>,
    /// What the recorder wrote; why not, when there are no figures.
    rows: std::result::Result<Rows, String>,
}

struct Rows {
    window_s: f64,
    /// Acquisition rows written in the window.
    written: u64,
    window_bytes: u64,
    /// At the end, after the last checkpoint.
    acquisitions: u64,
    releases: u64,
    final_bytes: u64,
}

/// The tracer of one condition; dropping it kills it.
enum Traced {
    Untraced,
    Attach(Running),
    Record(Recorder),
}

impl Traced {
    fn pid(&self) -> Option<u32> {
        match self {
            Self::Untraced => None,
            Self::Attach(running) => Some(running.pid()),
            Self::Record(recorder) => Some(recorder.proc.pid()),
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        match self {
            Self::Untraced => Ok(()),
            Self::Attach(running) => running.check_alive(),
            Self::Record(recorder) => recorder.check_alive(),
        }
    }
}

fn measure(bench: &Bench, condition: Condition) -> Result<Churned> {
    eprintln!("bench:   {}", condition.name());
    let file = bench.work.join("recording.db");
    remove_recording(&file);
    let mut cmd = Command::new(&bench.programs.churn);
    cmd.args([PROCESSES.to_string(), RATE.to_string(), HOLD.as_millis().to_string()]);
    let mut churn = Proc::spawn("churn", &mut cmd, Spawn::piped())?;
    churn.wait_line(Stream::Stdout, START_TIMEOUT, |l| l == "ready")?;
    let pid = churn.pid().to_string();
    let mut traced = match condition {
        Condition::Untraced => Traced::Untraced,
        Condition::Attach => Traced::Attach(
            Tracer::leaktrace(&["attach", "--pid", &pid, "--max-entries", MAX_ENTRIES, "-o", "/dev/null"])
                .start(&bench.leaktrace)?,
        ),
        Condition::Record => {
            let path = file.to_str().context("the recording's path is not UTF-8")?;
            Traced::Record(Recorder::start(
                &bench.leaktrace,
                &["--pid", &pid, "--max-entries", MAX_ENTRIES, "--output", path],
            )?)
        }
    };

    churn.send_line("go")?;
    pause(WARM, &mut churn, &mut traced)?;
    let copies = children(churn.pid())?;
    if copies.len() as u64 != PROCESSES {
        bail!("churn has {} copies, not {PROCESSES}", copies.len());
    }
    let count0 = count(&mut churn)?;
    let program0 = copies.iter().map(|&pid| cpu_seconds(pid)).sum::<Result<f64>>()?;
    let cpu0 = traced.pid().map(cpu_seconds).transpose()?;
    let rows0 = (condition == Condition::Record).then(|| count_rows(&file));
    let start = Instant::now();
    pause(bench.plan.recording_window, &mut churn, &mut traced)?;
    let count1 = count(&mut churn)?;
    let program1 = copies.iter().map(|&pid| cpu_seconds(pid)).sum::<Result<f64>>()?;
    let cpu1 = traced.pid().map(cpu_seconds).transpose()?;
    let window_s = start.elapsed().as_secs_f64();
    let rows1 = (condition == Condition::Record).then(|| count_rows(&file));
    let window_bytes = recording_size(&file);

    let rate = (count1 - count0) as f64 / window_s;
    let program_cpu = (program1 - program0) / window_s;
    let cpu = cpu0.zip(cpu1).map(|(a, b)| (b - a) / window_s);
    let rows = match traced {
        Traced::Untraced => Err("untraced".to_string()),
        Traced::Attach(running) => {
            running.stop(STOP_TIMEOUT)?;
            Err("attach writes no recording".to_string())
        }
        Traced::Record(recorder) => {
            recorder.stop()?;
            match (rows0, rows1, count_rows(&file)) {
                (Some(Ok(before)), Some(Ok(after)), Ok(last)) => Ok(Rows {
                    window_s,
                    written: after.0 - before.0,
                    window_bytes,
                    acquisitions: last.0,
                    releases: last.1,
                    final_bytes: recording_size(&file),
                }),
                (Some(Err(err)), ..) | (_, Some(Err(err)), _) | (.., Err(err)) => Err(format!("{err:#}")),
                _ => Err("rows not counted".to_string()),
            }
        }
    };
    churn.close_stdin();
    // Over 100 MiB, read by nobody after this.
    remove_recording(&file);
    eprintln!(
        "bench:     {} acquisitions/s, churn CPU {:.1}%, tracer CPU {}{}",
        stats::thousands(rate, 0),
        program_cpu * 100.0,
        cpu.map_or_else(|| "-".into(), |c| format!("{:.1}%", c * 100.0)),
        match &rows {
            Ok(r) => format!(
                ", {} rows written in {}, {} at the end",
                r.written,
                stats::seconds(r.window_s),
                bytes(r.final_bytes as f64)
            ),
            Err(_) => String::new(),
        }
    );
    Ok(Churned { rate, program_cpu, cpu, rows })
}

/// What the SIGKILL test found.
struct Killed {
    after: Duration,
    made: u64,
    in_file: u64,
    /// Their number, or why it is not known.
    checkpoints: String,
}

fn sigkill(bench: &Bench) -> Result<Killed> {
    eprintln!("bench:   SIGKILL");
    let file = bench.work.join("recording-killed.db");
    remove_recording(&file);
    let path = file.to_str().context("the recording's path is not UTF-8")?;
    let mut recorder = Recorder::start(&bench.leaktrace, &["--comm", "growth", "--output", path])?;
    let mut cmd = Command::new(&bench.programs.growth);
    cmd.args(["60", &LEAK_RATE.to_string()]);
    let mut growth = Proc::spawn("growth", &mut cmd, Spawn::piped())?;
    let started = Instant::now();
    while started.elapsed() < KILL_AFTER {
        if process::interrupted() {
            bail!("interrupted");
        }
        recorder.check_alive()?;
        if let Some(exit) = growth.try_wait()? {
            let how = exit.describe();
            return Err(growth.error(format!("exited ({how})")));
        }
        thread::sleep(KILL_AFTER.saturating_sub(started.elapsed()).min(Duration::from_millis(50)));
    }
    recorder.proc.signal(libc::SIGKILL)?;
    let after = started.elapsed();
    // `growth` opens its i-th fd (i + 1) / LEAK_RATE s after it starts, which
    // is a little after the spawn returned.
    let made = (after.as_secs_f64() * LEAK_RATE as f64).floor() as u64;
    if recorder.proc.wait_timeout(STOP_TIMEOUT)?.is_none() {
        bail!("leaktrace record did not die within {STOP_TIMEOUT:?} of SIGKILL");
    }
    drop(growth);

    let out = Command::new(&bench.leaktrace)
        .args(["report", path, "--format", "json"])
        .output()
        .context("cannot run leaktrace report")?;
    if !out.status.success() {
        bail!(
            "leaktrace report could not read the recording left by SIGKILL ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let in_file = site_count(&out.stdout, LEAK_SITE)?;
    let checkpoints = match count_table(&file, "checkpoints") {
        Ok(n) => n.to_string(),
        Err(err) => format!("not counted: {err:#}"),
    };
    eprintln!("bench:     killed after {after:?}: {made} fds leaked, {in_file} in the file");
    Ok(Killed { after, made, in_file, checkpoints })
}

/// `leaktrace record`; dropping it kills it.
struct Recorder {
    proc: Proc,
}

impl Recorder {
    fn start(leaktrace: &Path, args: &[&str]) -> Result<Self> {
        let mut cmd = Command::new(leaktrace);
        cmd.arg("record").args(args);
        let mut proc = Proc::spawn("leaktrace record", &mut cmd, Spawn::tracer())?;
        proc.wait_line(Stream::Stderr, START_TIMEOUT, |l| l.starts_with("leaktrace: recording into "))?;
        Ok(Self { proc })
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(exit) = self.proc.try_wait()? {
            let how = exit.describe();
            return Err(self.proc.error(format!("exited while recording ({how})")));
        }
        Ok(())
    }

    /// SIGINT, its last checkpoint, its `complete` line and a clean exit.
    fn stop(mut self) -> Result<()> {
        self.check_alive()?;
        self.proc.signal(libc::SIGINT)?;
        let complete = |l: &str| l.starts_with("leaktrace: recording ") && l.ends_with(" complete");
        self.proc.wait_line(Stream::Stderr, STOP_TIMEOUT, complete)?;
        let Some(exit) = self.proc.wait_timeout(STOP_TIMEOUT)? else {
            self.proc.kill();
            return Err(self.proc.error(format!("did not exit within {STOP_TIMEOUT:?} of its last checkpoint")));
        };
        if !exit.success() {
            let how = exit.describe();
            return Err(self.proc.error(format!("failed on SIGINT ({how})")));
        }
        Ok(())
    }
}

/// Sleeps, failing when either process exits or the run is interrupted.
fn pause(how_long: Duration, churn: &mut Proc, traced: &mut Traced) -> Result<()> {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        if process::interrupted() {
            bail!("interrupted");
        }
        traced.check_alive()?;
        if let Some(exit) = churn.try_wait()? {
            let how = exit.describe();
            return Err(churn.error(format!("exited ({how})")));
        }
        thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)));
    }
    Ok(())
}

/// The acquisitions churn's copies have made so far.
fn count(churn: &mut Proc) -> Result<u64> {
    churn.send_line("count")?;
    let line = churn.wait_line(Stream::Stdout, Duration::from_secs(10), |l| l.starts_with("count "))?;
    parse_count(&line).with_context(|| format!("churn said {line:?}"))
}

/// The pids of `pid`'s children (its main thread's: churn forks from it).
fn children(pid: u32) -> Result<Vec<u32>> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    text.split_whitespace().map(|p| p.parse().with_context(|| format!("{path} holds {p:?}"))).collect()
}

fn parse_count(line: &str) -> Option<u64> {
    line.strip_prefix("count ")?.trim().parse().ok()
}

fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("{path} has no utime and stime"))?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        bail!("sysconf(_SC_CLK_TCK) failed");
    }
    Ok(ticks as f64 / per_second as f64)
}

/// Acquisition rows (their ids are 1, 2, … so `max(id)` counts them without
/// a scan) and release rows, read by python3's sqlite3 module, which reads
/// the committed transactions of a database another process writes.
fn count_rows(file: &Path) -> Result<(u64, u64)> {
    let text = sqlite_query(
        file,
        "SELECT (SELECT coalesce(max(id), 0) FROM acquisitions) || ' ' || (SELECT count(*) FROM releases)",
    )?;
    parse_pair(&text).with_context(|| format!("python3 printed {text:?}"))
}

fn count_table(file: &Path, table: &str) -> Result<u64> {
    let text = sqlite_query(file, &format!("SELECT count(*) FROM {table}"))?;
    text.trim().parse().with_context(|| format!("python3 printed {text:?}"))
}

fn sqlite_query(file: &Path, query: &str) -> Result<String> {
    const SCRIPT: &str = "import sqlite3, sys\n\
        c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)\n\
        print(c.execute(sys.argv[2]).fetchone()[0])";
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(file)
        .arg(query)
        .output()
        .context("cannot run python3 (needed to count the recording's rows)")?;
    if !out.status.success() {
        bail!("python3 could not read {}: {}", file.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn parse_pair(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split_whitespace();
    let pair = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    parts.next().is_none().then_some(pair)
}

/// The `count` of the report's stack whose site is `site`.
fn site_count(report: &[u8], site: &str) -> Result<u64> {
    let report: Value = serde_json::from_slice(report).context("the report is not JSON")?;
    let stacks = report.get("stacks").and_then(Value::as_array).context("the report has no stacks")?;
    let counts: Vec<u64> = stacks
        .iter()
        .filter(|s| s.get("site").and_then(Value::as_str) == Some(site))
        .filter_map(|s| s.get("count").and_then(Value::as_u64))
        .collect();
    if counts.is_empty() {
        bail!("the report has no stack at {site}");
    }
    Ok(counts.iter().sum())
}

fn sidecar(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The database and its write-ahead log (the `-shm` index holds no data).
fn recording_size(file: &Path) -> u64 {
    [file.to_path_buf(), sidecar(file, "-wal")].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
}

fn remove_recording(file: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(sidecar(file, suffix));
    }
}

fn bytes(n: f64) -> String {
    if n.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else if n.abs() >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_programs_and_python() {
        assert_eq!(parse_count("count 2500123"), Some(2500123));
        assert_eq!(parse_count("count x"), None);
        assert_eq!(parse_pair("123 45\n"), Some((123, 45)));
        assert_eq!(parse_pair("123\n"), None);
        assert_eq!(parse_pair("1 2 3"), None);
    }

    #[test]
    fn finds_the_leaking_site() {
        let report = br#"{"stacks": [{"site": "leak_steadily", "count": 491}, {"site": "open_pool", "count": 4},
            {"site": null, "count": 3}]}"#;
        assert_eq!(site_count(report, "leak_steadily").unwrap(), 491);
        assert!(site_count(report, "handle_request").is_err());
        assert!(site_count(b"{}", "leak_steadily").is_err());
    }

    #[test]
    fn names_the_sidecars() {
        assert_eq!(sidecar(Path::new("/tmp/r.db"), "-wal"), PathBuf::from("/tmp/r.db-wal"));
    }
}
