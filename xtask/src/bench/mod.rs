//! `cargo xtask bench`: what leaktrace costs the processes it traces, the
//! rest of the host and a real server, compared with bpftrace and strace, and
//! how its userspace holds up at scale and over time. Writes BENCHMARKS.md.
//! With `--baseline`, an older leaktrace runs beside it in the open+close
//! and scale benchmarks (see `baseline`).
//!
//! This module owns the order of the benchmarks, their sizes (full or
//! `--quick`), and turning a failed benchmark into a line of the report
//! rather than the end of the run. Each benchmark lives in its own module;
//! starting and stopping processes is `process`'s and `tracer`'s.

mod baseline;
mod daemon;
mod loops;
mod machine;
mod markdown;
mod nginx;
mod process;
mod programs;
mod recording;
mod scale;
mod soak;
mod stats;
mod tracer;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use self::markdown::{Document, Section};
use self::programs::Programs;
use crate::util;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Full,
    Quick,
}

impl Mode {
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            Self::Quick
        } else {
            Self::Full
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Quick => "quick",
        }
    }
}

/// How big each benchmark is. The full run stays under about 25 minutes, ten
/// of them the soak.
pub(crate) struct Plan {
    /// Rounds of each condition in the loop benchmarks.
    pub rounds: usize,
    pub open_pairs: u64,
    /// strace makes each pair about 100 times slower.
    pub strace_pairs: u64,
    pub connections: u64,
    pub mmap_pairs: u64,
    pub nginx_rounds: usize,
    pub wrk_seconds: u64,
    /// Runs of the 1,000,000-fd benchmark.
    pub scale_runs: usize,
    pub soak: Duration,
    pub soak_every: Duration,
    /// Processes the daemon traces besides the host's own.
    pub daemon_processes: usize,
    /// Samples the daemon takes of them before anything is measured.
    pub daemon_samples: usize,
    /// Each window of the daemon's CPU time: idle, then scraped.
    pub daemon_window: Duration,
    /// The measured window of each condition of the recording benchmark.
    pub recording_window: Duration,
}

impl Plan {
    pub(crate) fn new(mode: Mode) -> Self {
        match mode {
            Mode::Full => Self {
                rounds: 7,
                open_pairs: 200_000,
                strace_pairs: 10_000,
                connections: 20_000,
                mmap_pairs: 200_000,
                nginx_rounds: 3,
                wrk_seconds: 10,
                scale_runs: 3,
                soak: Duration::from_secs(600),
                soak_every: Duration::from_secs(10),
                daemon_processes: 500,
                daemon_samples: 5,
                daemon_window: Duration::from_secs(6),
                recording_window: Duration::from_secs(20),
            },
            Mode::Quick => Self {
                rounds: 3,
                open_pairs: 100_000,
                strace_pairs: 5_000,
                connections: 10_000,
                mmap_pairs: 100_000,
                nginx_rounds: 2,
                wrk_seconds: 3,
                scale_runs: 1,
                soak: Duration::from_secs(60),
                soak_every: Duration::from_secs(10),
                daemon_processes: 100,
                daemon_samples: 3,
                daemon_window: Duration::from_secs(4),
                recording_window: Duration::from_secs(8),
            },
        }
    }
}

/// What every benchmark needs.
pub(crate) struct Bench {
    /// The copy of the binary under test that every benchmark runs.
    pub leaktrace: PathBuf,
    /// The copy of the older binary `--baseline` named, which the open+close
    /// and scale benchmarks run too.
    pub baseline: Option<PathBuf>,
    pub programs: Programs,
    pub plan: Plan,
    /// Whether this leaktrace has `attach --sample N`.
    pub has_sample: bool,
    /// target/bench: the compiled programs, reports, nginx's files.
    pub work: PathBuf,
}

pub(crate) fn require_root() -> Result<()> {
    if !util::is_root() {
        bail!(
            "the benchmarks load eBPF programs and trace other processes: run `sudo cargo xtask bench` \
             (needs CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE)"
        );
    }
    Ok(())
}

type Benchmark = fn(&Bench, &mut Section) -> Result<()>;

/// Every benchmark in the order they run, each with the name `--only` takes.
fn benchmarks(plan: &Plan) -> Vec<(&'static str, Section, Benchmark)> {
    vec![
        ("open-close", loops::open_close_section(plan), loops::open_close),
        ("connect", loops::connect_section(plan), loops::connect),
        ("mmap", loops::mmap_section(plan), loops::mmap),
        ("bystanders", loops::bystander_section(plan), loops::bystanders),
        ("nginx", nginx::section(plan), nginx::run),
        ("scale", scale::section(plan), scale::run),
        ("daemon", daemon::section(plan), daemon::run),
        ("recording", recording::section(plan), recording::run),
        ("soak", soak::section(plan), soak::run),
    ]
}

/// Runs every benchmark, or only the one named `only`, whose results then go
/// to target/bench/BENCHMARKS-NAME.md: BENCHMARKS.md is only ever written
/// whole, by a run of them all.
pub(crate) fn run(
    root: &Path,
    leaktrace: &Path,
    baseline: Option<&Path>,
    mode: Mode,
    only: Option<&str>,
) -> Result<()> {
    let plan = Plan::new(mode);
    let mut benchmarks = benchmarks(&plan);
    if let Some(only) = only {
        let names: Vec<&str> = benchmarks.iter().map(|b| b.0).collect();
        benchmarks.retain(|b| b.0 == only);
        if benchmarks.is_empty() {
            bail!("there is no benchmark named {only:?}; the names are {}", names.join(", "));
        }
    }
    require_root()?;
    let start = Instant::now();
    let leaktrace =
        leaktrace.canonicalize().with_context(|| format!("no leaktrace binary at {}", leaktrace.display()))?;
    let baseline = baseline
        .map(|b| b.canonicalize().with_context(|| format!("no baseline leaktrace binary at {}", b.display())))
        .transpose()?;
    let work = root.join("target/bench");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let programs = programs::build(root, &work)?;
    process::catch_interrupt();
    let context = machine::describe(root, &leaktrace, baseline.as_deref(), mode.name());
    let snapshot = copy_binary(&leaktrace, work.join("leaktrace"))?;
    let baseline = baseline.map(|b| copy_binary(&b, work.join("leaktrace-baseline"))).transpose()?;
    let bench = Bench {
        has_sample: tracer::leaktrace_has_sample(&snapshot),
        leaktrace: snapshot,
        baseline,
        programs,
        plan,
        work,
    };

    let count = benchmarks.len();
    let mut sections = Vec::new();
    for (i, (_, mut section, benchmark)) in benchmarks.into_iter().enumerate() {
        eprintln!("bench: [{}/{count}] {}", i + 1, section.title);
        let others = other_tracers();
        if !others.is_empty() {
            section.notes.push(format!(
                "Running on the host meanwhile, not started by the benchmark: {} (their probes fire on every \
                 process's syscalls too).",
                others.join(", ")
            ));
        }
        let began = Instant::now();
        if let Err(err) = benchmark(&bench, &mut section) {
            eprintln!("bench: {} failed: {err:#}", section.title);
            section.failed = Some(format!("{err:#}"));
        }
        eprintln!("bench: {} took {}", section.title, stats::minutes(began.elapsed().as_secs_f64()));
        if process::interrupted() {
            bail!("interrupted; BENCHMARKS.md is left as it was");
        }
        sections.push(section);
    }

    let doc = Document {
        context,
        only: only.map(str::to_string),
        duration: stats::minutes(start.elapsed().as_secs_f64()),
        sections,
    };
    let path = match only {
        None => root.join("BENCHMARKS.md"),
        Some(name) => bench.work.join(format!("BENCHMARKS-{name}.md")),
    };
    let text = markdown::render(&doc);
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    if only.is_some() {
        println!("\n{text}");
    } else {
        println!("\n{}", markdown::results_table(&doc.sections));
    }
    println!("bench: wrote {} ({} in all)", path.display(), doc.duration);
    let failed: Vec<&str> = doc.sections.iter().filter(|s| s.failed.is_some()).map(|s| s.title.as_str()).collect();
    if !failed.is_empty() {
        bail!("{} benchmark(s) failed: {}; BENCHMARKS.md says why", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// Copies `binary` to `to`, so that a rebuild of the workspace during the
/// run cannot change the binary between benchmarks.
fn copy_binary(binary: &Path, to: PathBuf) -> Result<PathBuf> {
    std::fs::copy(binary, &to).with_context(|| format!("cannot copy {} to {}", binary.display(), to.display()))?;
    Ok(to)
}

/// Tracers running on the host that this benchmark did not start: their
/// probes fire on every process's syscalls and make the host slower.
fn other_tracers() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found: Vec<(u32, String)> = dir
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim();
            ["leaktrace", "bpftrace", "strace", "perf"].contains(&comm).then(|| (pid, comm.to_string()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(pid, comm)| format!("{comm} (pid {pid})")).collect()
}
