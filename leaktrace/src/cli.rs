//! The command line, parsed and nothing else: value checks live in the
//! parsers, so bad input is refused with clap's one-line error before
//! anything is loaded. What the values mean for a mode, and how they combine
//! with a config file and the defaults, is `config`'s.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::diff::DiffFormat;
use crate::output::Format;
use crate::resource::Kinds;
use crate::unwind::Unwind;

#[derive(Debug, Parser)]
#[command(name = "leaktrace", version, about = "Find the call stacks that acquire resources and never release them")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Trace CMD from its first instruction until it exits; report what each
    /// of its processes still held when it exited.
    Run(RunArgs),
    /// Trace running processes (and their new threads and children) for a
    /// while; report what they acquired and still hold.
    Attach(AttachArgs),
    /// Compare two JSON reports stack by stack, like `pprof -base`: new
    /// stacks, grown, shrunk and gone.
    Diff(DiffArgs),
    /// A live view of the stacks holding the most and growing the fastest,
    /// refreshed every interval (q quits).
    Top(TopArgs),
    /// Trace the whole host (or the processes the filters name) until
    /// stopped: per-process stacks with their verdicts, served over HTTP as
    /// Prometheus metrics (/metrics), the JSON report (/report) and pprof
    /// profiles (/profile?kind=fd|tcp|mmap).
    Daemon(DaemonArgs),
    /// Record what processes hold, checkpoint by checkpoint, into a file
    /// read later with `leaktrace report FILE`.
    Record(RecordArgs),
    /// What works on this host (kernel, BTF, tracefs, tracepoints, probe
    /// types, lockdown, capabilities) and what each missing piece disables;
    /// exits 1 when leaktrace cannot trace here.
    Check(CheckArgs),
    /// What a recording says was held at a moment, judged over the
    /// checkpoints before it.
    Report(ReportArgs),
}

/// `leaktrace run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub trace: TraceArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `leaktrace attach`: some target is required.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("some_target").required(true).multiple(true).args(TARGET_ARGS)))]
pub(crate) struct AttachArgs {
    #[command(flatten)]
    pub targets: Targets,
    #[command(flatten)]
    pub trace: TraceArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// How long to trace; Ctrl-C or the exit of every target ends it sooner.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

/// `leaktrace diff`.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The earlier report (`--format json`), or a recording (FILE or
    /// FILE@TIME).
    #[arg(value_name = "BASE")]
    pub base: PathBuf,
    /// The later report.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: DiffFormat,
}

/// `leaktrace top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    #[command(flatten)]
    pub targets: Targets,
    #[command(flatten)]
    pub trace: TraceArgs,
}

/// `leaktrace daemon`; each option overrides the config file's value.
#[derive(Debug, Args)]
pub(crate) struct DaemonArgs {
    /// Address of the HTTP endpoints [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// A TOML config file (see deploy/kubernetes/configmap.yaml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub targets: Targets,
    #[command(flatten)]
    pub trace: TraceArgs,
    /// Processes' command lines in /report without their arguments, which
    /// can hold secrets; `--redact-args=false` shows them [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub redact_args: Option<bool>,
}

/// `leaktrace record`.
#[derive(Debug, Args)]
pub(crate) struct RecordArgs {
    /// The recording to create (it must not exist).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub targets: Targets,
    #[command(flatten)]
    pub trace: TraceArgs,
    /// How long to record; Ctrl-C or SIGTERM ends it sooner.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Keep the recording under this size (e.g. 64MiB): the oldest
    /// checkpoints go whole, what is still held stays.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub max_size: Option<u64>,
    /// Write processes' command lines without their arguments, which can
    /// hold secrets (the program and how many arguments were left out).
    #[arg(long)]
    pub redact_args: bool,
}

/// `leaktrace check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// `leaktrace report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The recording (`leaktrace record --output`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The moment: an RFC 3339 time or an offset from the start (2s,
    /// 1m30s) [default: the last checkpoint].
    #[arg(long, visible_alias = "to", value_name = "TIME")]
    pub at: Option<String>,
    /// Judge growth from this moment on (same forms as --at) [default:
    /// the start].
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Only this process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The ids of the arguments of [`Targets`], for modes that need one of them.
const TARGET_ARGS: [&str; 5] = ["pids", "all", "comms", "cgroups", "containers"];

/// Which processes are traced (attach, top, daemon, record). Without any,
/// top, the daemon and record trace every process; attach needs one.
/// Filters are judged when a process first appears, forks and execs.
#[derive(Debug, Default, Args)]
pub(crate) struct Targets {
    /// Trace this process, its new threads and the children it starts
    /// (repeatable).
    #[arg(long = "pid", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,
    /// Trace every process on the host, those that start later too.
    #[arg(long, conflicts_with = "pids")]
    pub all: bool,
    /// Trace only processes with this name (/proc/PID/comm; repeatable).
    #[arg(long = "comm", value_name = "NAME")]
    pub comms: Vec<String>,
    /// Trace only processes in this cgroup v2 path or below it (repeatable).
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<String>,
    /// Trace only processes of this container (id or prefix; repeatable).
    #[arg(long = "container", value_name = "ID")]
    pub containers: Vec<String>,
}

/// What is traced and how (every mode that traces). Unset values come from
/// the config file, then from the mode's defaults.
#[derive(Debug, Default, Args)]
pub(crate) struct TraceArgs {
    /// Resource kinds, comma-separated: fd, tcp, mmap, or all. Without tcp,
    /// TCP sockets are reported as fds; with tcp alone, only TCP
    /// connections [default: fd,tcp].
    #[arg(long, value_delimiter = ',', value_parser = Kinds::parse)]
    pub kinds: Vec<Kinds>,
    /// How often the outstanding set is sampled for each stack's history
    /// and verdict (and a recording's checkpoint written) [default: 1s for
    /// run and record, 2s for top, 5s for attach, 10s for the daemon].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Record (unwind and store) one fd acquisition in N, chosen at random:
    /// cheaper on busy processes; fd and TCP counts are then estimates (N
    /// times what was recorded), marked as such. Mappings are not sampled.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sample: Option<u32>,
    /// Stacks whose history is kept; more are reported without a verdict
    /// and counted.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..=(1 << 20)))]
    pub max_series: Option<u32>,
    /// Memory mappings: leave out stacks holding fewer bytes (e.g. 64K, 1MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub min_bytes: Option<u64>,
    #[command(flatten)]
    pub limits: KernelLimits,
}

/// What the kernel side keeps, and how it walks stacks.
#[derive(Debug, Default, Args)]
pub(crate) struct KernelLimits {
    /// Capacity of the kernel's outstanding-fd map; acquisitions beyond it
    /// are counted as dropped [default: 65536; 262144 for the daemon and
    /// record].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=(1 << 24)))]
    pub max_entries: Option<u32>,
    /// Capacity of the kernel's stack map (distinct stacks).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..=(1 << 20)))]
    pub max_stacks: Option<u32>,
    /// Capacity of the kernel's process map (traced processes and threads).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..=(1 << 22)))]
    pub max_procs: Option<u32>,
    /// Memory mappings: regions leaktrace keeps for all traced processes;
    /// mappings beyond it are dropped and counted.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..=(1 << 24)))]
    pub max_mappings: Option<u32>,
    /// Capacity of the kernel's unwinding table (CFI rows of all modules;
    /// modules beyond it are unwound with frame pointers).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1024..=(1 << 26)))]
    pub max_unwind_rows: Option<u32>,
    /// How user stacks are walked.
    #[arg(long, value_enum)]
    pub unwind: Option<Unwind>,
}

/// Where a report goes and what it shows (run, attach).
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Stacks shown in the text report [default: 10].
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Memory mappings: list in the text report the mappings whose stacks
    /// have no frame of the program (the dynamic loader's, the language
    /// runtime's), which are summed up by default.
    #[arg(long)]
    pub all_mappings: bool,
    /// Exit with status 3 when any stack is judged `leak` (for CI gates).
    #[arg(long)]
    pub fail_on_leak: bool,
}

/// A clap usage error in one line: its first paragraph (which names the
/// argument and what is wrong; "required arguments were not provided:"
/// lists them on the lines after), without "error: ".
pub(crate) fn usage_line(rendered: &str) -> String {
    let paragraph: Vec<&str> = rendered
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let line = paragraph.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    if line.is_empty() {
        "invalid arguments".to_string()
    } else {
        line.to_string()
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 30s, 5m, 1m30s)"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    parse_size::Config::new().with_binary().parse_size(text).map_err(|e| format!("{e} (examples: 4096, 64K, 1MiB, 2G)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    pub(crate) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("leaktrace").chain(args.iter().copied()))
    }

    /// The first line of each subcommand's --help: no lint sees a doc
    /// comment that slid onto the wrong item.
    #[test]
    fn every_subcommand_says_what_it_does_first() {
        let expected = [
            ("run", "Trace CMD from its first instruction until it exits; report what each of its processes still held when it exited"),
            ("attach", "Trace running processes (and their new threads and children) for a while; report what they acquired and still hold"),
            ("diff", "Compare two JSON reports stack by stack, like `pprof -base`: new stacks, grown, shrunk and gone"),
            ("top", "A live view of the stacks holding the most and growing the fastest, refreshed every interval (q quits)"),
            ("daemon", "Trace the whole host (or the processes the filters name) until stopped: per-process stacks with their verdicts, served over HTTP as Prometheus metrics (/metrics), the JSON report (/report) and pprof profiles (/profile?kind=fd|tcp|mmap)"),
            ("record", "Record what processes hold, checkpoint by checkpoint, into a file read later with `leaktrace report FILE`"),
            ("check", "What works on this host (kernel, BTF, tracefs, tracepoints, probe types, lockdown, capabilities) and what each missing piece disables; exits 1 when leaktrace cannot trace here"),
            ("report", "What a recording says was held at a moment, judged over the checkpoints before it"),
        ];
        let mut cli = Cli::command();
        let names: Vec<String> = cli.get_subcommands().map(|c| c.get_name().to_string()).collect();
        assert_eq!(
            names,
            expected.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>(),
            "a subcommand without a line"
        );
        for (name, first) in expected {
            let help = cli.find_subcommand_mut(name).expect("subcommand").render_help().to_string();
            let paragraph: Vec<&str> = help.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            assert_eq!(paragraph.join(" "), first, "leaktrace {name} --help");
        }
    }

    #[test]
    fn a_usage_error_is_one_line_naming_the_argument() {
        let e = parse(&["attach", "--pid", "1", "--duration", "soon"]).expect_err("bad duration");
        let line = usage_line(&e.to_string());
        assert!(line.starts_with("invalid value 'soon' for '--duration <DURATION>'"), "{line}");
        assert!(!line.contains('\n'));
        let e = parse(&["record", "--output", "x.db", "--max-size", "12XB"]).expect_err("bad size");
        assert!(usage_line(&e.to_string()).contains("'--max-size <SIZE>'"), "{e}");
        let e = parse(&["run"]).expect_err("no command");
        assert_eq!(usage_line(&e.to_string()), "the following required arguments were not provided: <CMD>...");
        let e = parse(&["frobnicate"]).expect_err("unknown command");
        assert!(usage_line(&e.to_string()).contains("unrecognized subcommand 'frobnicate'"), "{e}");
    }

    #[test]
    fn run_takes_the_command_verbatim() {
        let cli = parse(&["run", "--format", "json", "--", "ls", "-l", "--color"]).expect("parses");
        match cli.command {
            Command::Run(run) => {
                assert_eq!(run.output.format, Format::Json);
                assert_eq!(run.command, vec!["ls", "-l", "--color"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn attach_needs_pids_and_valid_durations() {
        assert!(parse(&["attach"]).is_err());
        assert!(parse(&["attach", "--pid", "0"]).is_err());
        assert!(parse(&["attach", "--pid", "12", "--duration", "3x"]).is_err());
        assert!(parse(&["attach", "--pid", "12", "--duration", "0s"]).is_err());
        assert!(parse(&["attach", "--pid", "12", "--all"]).is_err());
        assert!(matches!(
            parse(&["attach", "--all"]).expect("all").command,
            Command::Attach(AttachArgs { targets: Targets { all: true, .. }, .. })
        ));
        assert!(parse(&["attach", "--comm", "nginx"]).is_ok(), "a filter names targets too");
        let cli = parse(&["attach", "--pid", "12", "--pid", "13", "--duration", "1m30s"]).expect("parses");
        match cli.command {
            Command::Attach(AttachArgs { targets, duration, .. }) => {
                assert!(!targets.all);
                assert_eq!(targets.pids, vec![12, 13]);
                assert_eq!(duration, Some(Duration::from_secs(90)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_mode_that_traces_takes_the_same_targets() {
        for mode in ["top", "daemon", "record -o x.db"] {
            let mut args: Vec<&str> = mode.split(' ').collect();
            args.extend([
                "--pid",
                "7",
                "--pid",
                "8",
                "--comm",
                "nginx",
                "--cgroup",
                "/system.slice",
                "--container",
                "abc",
            ]);
            let cli = parse(&args).unwrap_or_else(|e| panic!("{mode}: {e}"));
            let targets = match cli.command {
                Command::Top(a) => a.targets,
                Command::Daemon(a) => a.targets,
                Command::Record(a) => a.targets,
                other => panic!("{other:?}"),
            };
            assert_eq!(targets.pids, vec![7, 8], "{mode}");
            assert_eq!((targets.comms.len(), targets.cgroups.len(), targets.containers.len()), (1, 1, 1), "{mode}");
            assert!(
                parse(&[mode.split(' ').collect::<Vec<_>>(), vec!["--pid", "7", "--all"]].concat()).is_err(),
                "{mode}"
            );
        }
    }

    #[test]
    fn kinds_are_checked() {
        let err = parse(&["run", "--kinds", "fd,bogus", "--", "true"]).expect_err("bad kind");
        assert!(err.to_string().contains("unknown kind 'bogus'"), "{err}");
        assert!(parse(&["run", "--max-entries", "0", "--", "true"]).is_err());
    }

    #[test]
    fn sizes_read_with_binary_units() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64K"), Ok(65536));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert!(parse_bytes("lots").is_err());
    }
}
