//! The loop benchmarks: what a tracer adds to each operation of a process
//! that does nothing else (open+close, loopback connections, mmap+munmap),
//! and what leaktrace costs the processes it does not trace.
//!
//! One long-lived loop process runs every round, so the tracers attach to a
//! warm process, and the conditions take turns round by round (the first
//! condition of each round rotating), so a slow minute on the host lands on
//! all of them; each condition's result is the median of its rounds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::baseline;
use super::markdown::{Headline, Section, Table};
use super::process::{self, Proc, Spawn, Stream};
use super::stats::{self, median};
use super::tracer::Tracer;
use super::{Bench, Plan};

/// The longest a round may take (strace's, on a slow day).
const ROUND_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest a tracer may take to stop after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// The CPU the measured processes run on; tracers float.
pub(super) const MEASURED_CPU: u32 = 1;

/// A process that runs one round per line on its stdin and answers with the
/// nanoseconds per operation.
struct LoopProcess {
    proc: Proc,
}

impl LoopProcess {
    fn start(program: &Path) -> Result<Self> {
        let name = program.file_name().map_or_else(|| "loop".into(), |n| n.to_string_lossy().into_owned());
        let proc = Proc::spawn(&name, &mut process::pinned(MEASURED_CPU, program), Spawn::piped())?;
        Ok(Self { proc })
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn round(&mut self, ops: u64) -> Result<f64> {
        self.proc.send_line(&ops.to_string())?;
        let line = self.proc.wait_line(Stream::Stdout, ROUND_TIMEOUT, |_| true)?;
        line.trim().parse().with_context(|| format!("{} answered {line:?}, not ns per operation", self.proc.name()))
    }
}

struct Condition {
    label: String,
    tracer: Option<Tracer>,
    ops: u64,
    /// The leaktrace binary that runs the tracer, when not the one under
    /// test (`--baseline`).
    binary: Option<PathBuf>,
}

impl Condition {
    fn new(label: &str, tracer: Option<Tracer>, ops: u64) -> Self {
        Self { label: label.to_string(), tracer, ops, binary: None }
    }

    fn run_by(self, binary: &Path) -> Self {
        Self { binary: Some(binary.to_path_buf()), ..self }
    }
}

/// Runs `rounds` rounds of every condition and returns each condition's
/// ns per operation, one value per round.
fn interleave(
    bench: &Bench,
    process: &mut LoopProcess,
    conditions: &[Condition],
    rounds: usize,
) -> Result<Vec<Vec<f64>>> {
    let first = conditions.first().context("no conditions to measure")?;
    // A first round warms caches and the page tables; it is not counted.
    process.round(first.ops)?;
    let mut samples = vec![Vec::new(); conditions.len()];
    for round in 0..rounds {
        let mut progress = Vec::new();
        for k in 0..conditions.len() {
            let i = (round + k) % conditions.len();
            let condition = &conditions[i];
            let binary = condition.binary.as_deref().unwrap_or(&bench.leaktrace);
            let tracer = match &condition.tracer {
                Some(t) => Some(t.start(binary).with_context(|| format!("starting {}", condition.label))?),
                None => None,
            };
            let ns = process.round(condition.ops).with_context(|| format!("round under {}", condition.label))?;
            if let Some(t) = tracer {
                t.stop(STOP_TIMEOUT).with_context(|| format!("stopping {}", condition.label))?;
            }
            progress.push(format!("{} {}", condition.label, stats::thousands(ns, 0)));
            samples[i].push(ns);
        }
        eprintln!("bench:   round {}/{rounds}: {}", round + 1, progress.join(", "));
    }
    Ok(samples)
}

/// Medians per condition, the first being the untraced baseline.
struct Outcome {
    medians: Vec<f64>,
}

impl Outcome {
    fn new(samples: &[Vec<f64>]) -> Result<Self> {
        let medians: Vec<f64> =
            samples.iter().map(|s| median(s).context("a condition has no rounds")).collect::<Result<_>>()?;
        match medians.first() {
            Some(base) if *base > 0.0 => Ok(Self { medians }),
            _ => bail!("no untraced time to compare with: {medians:?}"),
        }
    }

    fn base(&self) -> f64 {
        self.medians[0]
    }

    fn added(&self, i: usize) -> f64 {
        self.medians[i] - self.base()
    }

    /// The table: one row per condition with its rounds.
    fn table(&self, conditions: &[Condition], samples: &[Vec<f64>], unit: &str) -> Table {
        let mut t = Table::new(&[
            "condition",
            "ops per round",
            &format!("median ns/{unit}"),
            &format!("added ns/{unit}"),
            "added",
            "× untraced",
            &format!("rounds (ns/{unit})"),
        ]);
        for (i, c) in conditions.iter().enumerate() {
            let rounds: Vec<String> = samples[i].iter().map(|v| stats::thousands(*v, 0)).collect();
            let (added, pct, times) = if i == 0 {
                ("".into(), "".into(), "1".into())
            } else {
                (
                    stats::signed(self.added(i), 0),
                    stats::percent_of(self.added(i), self.base()),
                    stats::ratio(self.medians[i] / self.base()),
                )
            };
            t.row(vec![
                c.label.clone(),
                stats::thousands(c.ops as f64, 0),
                stats::thousands(self.medians[i], 0),
                added,
                pct,
                times,
                rounds.join(", "),
            ]);
        }
        t
    }
}

/// The protocol, said once in the first loop benchmark.
fn rounds_text(plan: &Plan) -> String {
    format!(
        "{} rounds per condition, taking turns (the first condition of each round rotates), after one \
         uncounted warm-up round; each condition's figure is the median of its rounds, and what a tracer \
         adds is its median minus the untraced median. For each round the tracer is started on the \
         running loop process, the round starts {} ms after the tracer says it is tracing, and the tracer \
         is stopped with SIGINT (and has exited) before the next round. The loop process is pinned with \
         `taskset -c {MEASURED_CPU}`; the tracers are not pinned.",
        plan.rounds,
        super::tracer::SETTLE.as_millis()
    )
}

/// The protocol, for the loop benchmarks after the first.
fn same_rounds(plan: &Plan) -> String {
    format!(
        "{} rounds per condition, taken in turns and reduced to medians as in the open+close loop, the \
         loop process pinned to CPU {MEASURED_CPU}.",
        plan.rounds
    )
}

pub(super) fn open_close_section(plan: &Plan) -> Section {
    Section::new(
        "open+close loop",
        &format!(
            "`open_close.c` runs rounds of `open(\"/dev/null\")`+`close` pairs ({} pairs; {} under strace, \
             which is about 100 times slower) and reports ns per pair. Conditions: untraced; `leaktrace attach \
             --pid P -o /dev/null` (every acquisition unwound, CFI); the same with `--unwind frame-pointers` \
             (the walk bpftrace's `ustack` does, which ends at the first glibc frame); the same with `--sample \
             100` (one acquisition in 100 unwound and recorded); the bpftrace script people write by hand to find fd \
             leaks, `{}`, run with `bpftrace -e`; `strace -f -p P -o /dev/null`. {} Targets: leaktrace adds at \
             most half what bpftrace adds; sampled, it adds at most 5% to an untraced pair.",
            stats::thousands(plan.open_pairs as f64, 0),
            stats::thousands(plan.strace_pairs as f64, 0),
            super::tracer::fd_leaks_script("P"),
            rounds_text(plan)
        ),
    )
}

pub(super) fn open_close(bench: &Bench, section: &mut Section) -> Result<()> {
    let plan = &bench.plan;
    let mut process = LoopProcess::start(&bench.programs.open_close)?;
    let pid = process.pid().to_string();
    let attach = ["attach", "--pid", &pid, "-o", "/dev/null"];
    let mut conditions = vec![
        Condition::new("untraced", None, plan.open_pairs),
        Condition::new("leaktrace", Some(Tracer::leaktrace(&attach)), plan.open_pairs),
    ];
    // The older binary, its arguments the same, taking its turn in the same
    // rounds.
    let baseline = bench.baseline.as_deref().map(|binary| {
        conditions.push(
            Condition::new("leaktrace (baseline)", Some(Tracer::leaktrace(&attach)), plan.open_pairs).run_by(binary),
        );
        conditions.len() - 1
    });
    // The walk bpftrace's ustack does, for a like-for-like figure: frame
    // pointers only (stacks through glibc end at its first frame).
    let frame_pointers = conditions.len();
    conditions.push(Condition::new(
        "leaktrace --unwind frame-pointers",
        Some(Tracer::leaktrace(&["attach", "--pid", &pid, "--unwind", "frame-pointers", "-o", "/dev/null"])),
        plan.open_pairs,
    ));
    let sampled = bench.has_sample.then_some(conditions.len());
    if sampled.is_some() {
        let args = ["attach", "--pid", &pid, "--sample", "100", "-o", "/dev/null"];
        conditions.push(Condition::new("leaktrace --sample 100", Some(Tracer::leaktrace(&args)), plan.open_pairs));
    }
    let bpftrace = conditions.len();
    conditions.push(Condition::new("bpftrace", Some(Tracer::bpftrace_fd_leaks(process.pid())), plan.open_pairs));
    let strace = conditions.len();
    conditions.push(Condition::new("strace", Some(Tracer::Strace(process.pid())), plan.strace_pairs));

    let samples = interleave(bench, &mut process, &conditions, plan.rounds)?;
    let out = Outcome::new(&samples)?;
    section.tables.push(out.table(&conditions, &samples, "pair"));

    section.results.push(Headline::info("untraced", format!("{} ns/pair", stats::thousands(out.base(), 0))));
    section.results.push(Headline::info(
        "leaktrace adds",
        format!("{} ns/pair ({})", stats::signed(out.added(1), 0), stats::percent_of(out.added(1), out.base())),
    ));
    let versus = out.added(1) / out.added(bpftrace);
    let valid = out.added(bpftrace) > 0.0;
    section.results.push(if valid {
        Headline::target("leaktrace added / bpftrace added", stats::ratio(versus), "≤ 0.5", versus <= 0.5)
    } else {
        Headline::unmeasured("leaktrace added / bpftrace added", "bpftrace added nothing measurable", "≤ 0.5")
    });
    section.results.push(Headline::info(
        "`--unwind frame-pointers` adds",
        format!(
            "{} ns/pair ({} of bpftrace's, whose ustack walks frame pointers too)",
            stats::signed(out.added(frame_pointers), 0),
            stats::ratio(out.added(frame_pointers) / out.added(bpftrace))
        ),
    ));
    match sampled {
        Some(i) => {
            let pct = 100.0 * out.added(i) / out.base();
            section.results.push(Headline::target(
                "`--sample 100` adds",
                format!("{} ns/pair ({})", stats::signed(out.added(i), 0), stats::percent_of(out.added(i), out.base())),
                "≤ 5% of untraced",
                pct <= 5.0,
            ));
        }
        None => {
            section.results.push(Headline::unmeasured("`--sample 100` adds", "not available", "≤ 5% of untraced"));
            section.notes.push(
                "`--sample`: not available: this leaktrace's `attach --help` does not list it, so the sampled \
                 condition was skipped."
                    .into(),
            );
        }
    }
    section.results.push(Headline::info(
        "bpftrace, strace",
        format!(
            "×{} and ×{} untraced",
            stats::ratio(out.medians[bpftrace] / out.base()),
            stats::ratio(out.medians[strace] / out.base())
        ),
    ));
    if let Some(i) = baseline {
        let ns = |v: f64| format!("{} ns/pair", stats::thousands(v, 0));
        section.results.push(baseline::headline("leaktrace", &samples[1], &samples[i], ns)?);
        section.notes.push(
            "`--baseline`: `leaktrace (baseline)` is the older binary given, run with the same arguments as \
             `leaktrace` in the same rounds; the comparison says whether the new median is within the \
             baseline's fastest..slowest round."
                .into(),
        );
    }
    Ok(())
}

pub(super) fn connect_section(plan: &Plan) -> Section {
    Section::new(
        "socket+connect+close on loopback",
        &format!(
            "`connect_close.c` listens on 127.0.0.1; a thread accepts and closes each connection while the main \
             thread runs rounds of `socket`+`connect`+`close` ({} connections per round) and reports ns per \
             connection. Both ends are in the traced process. Conditions: untraced; `leaktrace attach --pid P \
             -o /dev/null` (the default kinds, fd and tcp: every socket's state changes are followed). {}",
            stats::thousands(plan.connections as f64, 0),
            same_rounds(plan)
        ),
    )
}

pub(super) fn connect(bench: &Bench, section: &mut Section) -> Result<()> {
    let ops = bench.plan.connections;
    let mut process = LoopProcess::start(&bench.programs.connect_close)?;
    let pid = process.pid().to_string();
    let conditions = [
        Condition::new("untraced", None, ops),
        Condition::new("leaktrace", Some(Tracer::leaktrace(&["attach", "--pid", &pid, "-o", "/dev/null"])), ops),
    ];
    traced_vs_untraced(bench, section, &mut process, &conditions, "connection")
}

pub(super) fn mmap_section(plan: &Plan) -> Section {
    Section::new(
        "mmap+munmap",
        &format!(
            "`mmap_munmap.c` runs rounds of `mmap`+`munmap` pairs of 4 anonymous pages ({} pairs per round) \
             and reports ns per pair. Conditions: untraced; `leaktrace attach --pid P --kinds fd,tcp,mmap -o \
             /dev/null`. {}",
            stats::thousands(plan.mmap_pairs as f64, 0),
            same_rounds(plan)
        ),
    )
}

pub(super) fn mmap(bench: &Bench, section: &mut Section) -> Result<()> {
    let ops = bench.plan.mmap_pairs;
    let mut process = LoopProcess::start(&bench.programs.mmap_munmap)?;
    let pid = process.pid().to_string();
    let args = ["attach", "--pid", &pid, "--kinds", "fd,tcp,mmap", "-o", "/dev/null"];
    let conditions =
        [Condition::new("untraced", None, ops), Condition::new("leaktrace", Some(Tracer::leaktrace(&args)), ops)];
    traced_vs_untraced(bench, section, &mut process, &conditions, "pair")
}

fn traced_vs_untraced(
    bench: &Bench,
    section: &mut Section,
    process: &mut LoopProcess,
    conditions: &[Condition],
    unit: &str,
) -> Result<()> {
    let samples = interleave(bench, process, conditions, bench.plan.rounds)?;
    let out = Outcome::new(&samples)?;
    section.tables.push(out.table(conditions, &samples, unit));
    section.results.push(Headline::info("untraced", format!("{} ns/{unit}", stats::thousands(out.base(), 0))));
    section.results.push(Headline::info(
        "leaktrace adds",
        format!("{} ns/{unit} ({})", stats::signed(out.added(1), 0), stats::percent_of(out.added(1), out.base())),
    ));
    Ok(())
}

pub(super) fn bystander_section(plan: &Plan) -> Section {
    Section::new(
        "bystanders",
        &format!(
            "What leaktrace costs the processes it does not trace: the open+close loop above ({} pairs \
             per round) runs untraced while leaktrace traces another process (`leaktrace attach --pid S -o \
             /dev/null`, S a `sleep`), against the same loop with no tracer on the host. leaktrace's \
             tracepoints fire for every process's syscalls and return early for untraced ones; this is that \
             cost. {} Target: at most 5% added.",
            stats::thousands(plan.open_pairs as f64, 0),
            same_rounds(plan)
        ),
    )
}

pub(super) fn bystanders(bench: &Bench, section: &mut Section) -> Result<()> {
    let ops = bench.plan.open_pairs;
    let sleeper = Proc::spawn(
        "sleep",
        Command::new("sleep").arg("100000"),
        Spawn { stdin: false, stdout: false, stderr: false, parent_death: libc::SIGKILL },
    )?;
    let mut process = LoopProcess::start(&bench.programs.open_close)?;
    let target = sleeper.pid().to_string();
    let conditions = [
        Condition::new("no tracer on the host", None, ops),
        Condition::new(
            "leaktrace tracing another pid",
            Some(Tracer::leaktrace(&["attach", "--pid", &target, "-o", "/dev/null"])),
            ops,
        ),
    ];
    let samples = interleave(bench, &mut process, &conditions, bench.plan.rounds)?;
    let out = Outcome::new(&samples)?;
    section.tables.push(out.table(&conditions, &samples, "pair"));
    let pct = 100.0 * out.added(1) / out.base();
    section.results.push(Headline::info("untraced host", format!("{} ns/pair", stats::thousands(out.base(), 0))));
    section.results.push(Headline::target(
        "leaktrace elsewhere adds",
        format!("{} ns/pair ({})", stats::signed(out.added(1), 0), stats::percent_of(out.added(1), out.base())),
        "≤ 5%",
        pct <= 5.0,
    ));
    Ok(())
}
