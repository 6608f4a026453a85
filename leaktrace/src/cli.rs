//! The command line. Value checks live in the parsers so bad input is
//! rejected with clap's one-line error before anything is loaded.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "leaktrace", version, about = "Find the call stacks that acquire resources and never release them")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace CMD from its first instruction until it exits; report what each
    /// of its processes still held when it exited.
    Run {
        #[command(flatten)]
        common: Common,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Trace running processes (and their new threads and children) for a
    /// while; report what they acquired and still hold.
    Attach {
        #[command(flatten)]
        common: Common,
        /// Process to trace (repeatable).
        #[arg(long = "pid", required_unless_present = "all", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
        pids: Vec<u32>,
        /// Trace every process on the host, those that start later too.
        #[arg(long, conflicts_with = "pids")]
        all: bool,
        /// How long to trace; Ctrl-C or the exit of every target ends it sooner.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<Duration>,
    },
    /// Compare two JSON reports stack by stack, like `pprof -base`: new
    /// stacks, grown, shrunk and gone.
    Diff {
        /// The earlier report (`--format json`).
        #[arg(value_name = "BASE")]
        base: PathBuf,
        /// The later report.
        #[arg(value_name = "NEW")]
        new: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: crate::diff::DiffFormat,
    },
    /// A live view of the stacks holding the most and growing the fastest,
    /// refreshed every interval (q quits).
    Top {
        /// Processes to watch (repeatable); without it, every process on the host.
        #[arg(long = "pid", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
        pids: Vec<u32>,
        /// Resource kinds, as for run and attach.
        #[arg(long, value_delimiter = ',', default_value = "fd,tcp", value_parser = parse_kind)]
        kinds: Vec<Kind>,
        /// How often the view is refreshed and the stacks sampled.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
        interval: Duration,
    },
    /// Trace the whole host (or the processes the filters name) until
    /// stopped: per-process stacks with their verdicts, served over HTTP as
    /// Prometheus metrics (/metrics), the JSON report (/report) and pprof
    /// profiles (/profile?kind=fd|tcp|mmap).
    Daemon(DaemonArgs),
    /// Record what processes hold, checkpoint by checkpoint, into a file
    /// read later with `leaktrace report FILE` (work in progress).
    Record(RecordArgs),
    /// What a recording says was held at a moment (work in progress).
    /// What works on this host (kernel, BTF, tracefs, tracepoints, probe
    /// types, lockdown, capabilities) and what each missing piece disables;
    /// exits 1 when leaktrace cannot trace here.
    Check {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    Report {
        /// The recording (`leaktrace record --output`).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The moment: an RFC 3339 time or an offset from the start (2s,
        /// 1m30s) [default: the last checkpoint].
        #[arg(long, visible_alias = "to", value_name = "TIME")]
        at: Option<String>,
        /// Judge growth from this moment on (same forms as --at) [default:
        /// the start].
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Only this process.
        #[arg(long, value_name = "PID")]
        pid: Option<u32>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Write the report here instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `leaktrace record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The recording to create (it must not exist).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Processes to record (repeatable), with their children.
    #[arg(long = "pid", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,
    /// Every process on the host.
    #[arg(long, conflicts_with = "pids")]
    pub all: bool,
    #[command(flatten)]
    pub filters: ProcessFilters,
    #[command(flatten)]
    pub limits: KernelLimits,
    /// How long to record; Ctrl-C or SIGTERM ends it sooner.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// How often a checkpoint is written.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    pub interval: Duration,
    /// Resource kinds, as for run and attach.
    #[arg(long, value_delimiter = ',', default_value = "fd,tcp", value_parser = parse_kind)]
    pub kinds: Vec<Kind>,
    /// Keep the recording under this size (e.g. 64MiB): the oldest
    /// checkpoints go whole, what is still held stays.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub max_size: Option<u64>,
    /// Write processes' command lines without their arguments, which can
    /// hold secrets (the program and how many arguments were left out).
    #[arg(long)]
    pub redact_args: bool,
}

impl RecordArgs {
    /// Command-line values over the defaults of tracing a host (the
    /// daemon's map capacities).
    pub fn config(&self) -> Config {
        let mut config = Config {
            interval: self.interval,
            kinds: self.kinds.clone(),
            max_entries: Config::daemon().max_entries,
            ..Config::default()
        };
        self.filters.apply(&mut config.filter);
        config.filter.pids = self.pids.clone();
        self.limits.apply(config)
    }
}

/// `leaktrace daemon`; each option overrides the config file's value.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Address of the HTTP endpoints [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// How often what every process holds is sampled [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// A TOML config file (see deploy/kubernetes/configmap.yaml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Trace only this process and its children (repeatable).
    #[arg(long = "pid", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,
    #[command(flatten)]
    pub filters: ProcessFilters,
    /// Resource kinds, as for run and attach [default: fd,tcp].
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    pub kinds: Vec<Kind>,
    /// Capacity of the kernel's outstanding-fd map [default: 262144].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=(1 << 24)))]
    pub max_entries: Option<u32>,
    /// Stacks whose history is kept, all processes together [default: 16384].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..=(1 << 20)))]
    pub max_series: Option<u32>,
    /// Record one fd acquisition in N (counts become estimates).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sample: Option<u32>,
    /// Processes' command lines in /report without their arguments, which
    /// can hold secrets; `--redact-args=false` shows them [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub redact_args: Option<bool>,
}

impl DaemonArgs {
    /// Command line over the file over the daemon's defaults.
    pub fn config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(&Config::daemon(), path)?,
            None => Config::daemon(),
        };
        if let Some(listen) = self.listen {
            config.daemon.listen = listen;
        }
        if let Some(interval) = self.interval {
            config.interval = interval;
        }
        if !self.kinds.is_empty() {
            config.kinds = self.kinds.clone();
        }
        config.max_entries = self.max_entries.unwrap_or(config.max_entries);
        config.max_series = self.max_series.unwrap_or(config.max_series);
        config.sample = self.sample.unwrap_or(config.sample);
        config.daemon.redact_args = self.redact_args.unwrap_or(config.daemon.redact_args);
        self.filters.apply(&mut config.filter);
        if !self.pids.is_empty() {
            config.filter.pids = self.pids.clone();
        }
        Ok(config)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: stacks with their verdicts, counts and frames.
    Text,
    /// The `leaktrace.report/1` contract.
    Json,
    /// A gzipped profile.proto (go tool pprof, Pyroscope, Parca).
    Pprof,
    /// Folded stacks for flamegraph.pl or inferno.
    Folded,
    /// A flame graph of what is outstanding, by stack.
    Svg,
}

/// How user stacks are walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unwind {
    /// With each module's CFI (.eh_frame): complete stacks for code built
    /// without frame pointers; frame pointers where a module has no CFI.
    Cfi,
    /// Frame pointers only: cheaper, but stacks through code without them
    /// (glibc, -O2 builds) end early.
    FramePointers,
}

/// Resource kinds leaktrace can follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Kind {
    Fd,
    /// TCP sockets as connections, with their states and peers.
    Tcp,
    /// Memory mappings (mmap, munmap, mremap), in bytes.
    Mmap,
    /// Every kind.
    All,
}

impl Kind {
    /// The name used on the command line and as `"kind"` in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fd => "fd",
            Kind::Tcp => "tcp",
            Kind::Mmap => "mmap",
            Kind::All => "all",
        }
    }
}

impl TryFrom<String> for Kind {
    type Error = String;

    fn try_from(text: String) -> Result<Kind, String> {
        parse_kind(&text)
    }
}

impl From<Kind> for &'static str {
    fn from(kind: Kind) -> &'static str {
        kind.name()
    }
}

#[derive(Debug, Args)]
pub struct Common {
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Resource kinds to report, comma-separated: fd, tcp, mmap, or all.
    /// Without tcp, TCP sockets are reported as fds; with tcp alone, only TCP
    /// connections.
    #[arg(long, value_delimiter = ',', default_value = "fd,tcp", value_parser = parse_kind)]
    pub kinds: Vec<Kind>,
    /// Memory mappings: leave out stacks holding fewer bytes (e.g. 64K, 1MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub min_bytes: Option<u64>,
    /// Memory mappings: list in the text report the mappings whose stacks
    /// have no frame of the program (the dynamic loader's, the language
    /// runtime's), which are summed up by default.
    #[arg(long)]
    pub all_mappings: bool,
    #[command(flatten)]
    pub limits: KernelLimits,
    /// Stacks shown in the text report.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// How often the outstanding set is sampled for each stack's history
    /// and verdict [default: 1s for run, 5s for attach].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Record (unwind and store) one fd acquisition in N, chosen at random:
    /// cheaper on busy processes; fd and TCP counts are then estimates (N
    /// times what was recorded), marked as such. Mappings are not sampled.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sample: Option<u32>,
    /// Exit with status 3 when any stack is judged `leak` (for CI gates).
    #[arg(long)]
    pub fail_on_leak: bool,
    /// Stacks whose history is kept; more are reported without a verdict
    /// and counted.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..=(1 << 20)))]
    pub max_series: Option<u32>,
}

/// Which processes are traced, judged when a process first appears, forks
/// and execs (daemon and record).
#[derive(Debug, Default, Args)]
pub struct ProcessFilters {
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

impl ProcessFilters {
    /// Each list given on the command line replaces the configured one.
    pub fn apply(&self, filter: &mut crate::config::FilterConfig) {
        for (into, from) in [
            (&mut filter.comms, &self.comms),
            (&mut filter.cgroups, &self.cgroups),
            (&mut filter.containers, &self.containers),
        ] {
            if !from.is_empty() {
                *into = from.clone();
            }
        }
    }
}

/// What the kernel side keeps, and how it walks stacks (run, attach, top,
/// record).
#[derive(Debug, Default, Args)]
pub struct KernelLimits {
    /// Capacity of the kernel's outstanding-fd map; acquisitions beyond it
    /// are counted as dropped.
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

impl KernelLimits {
    /// The values given on the command line over `config`'s.
    pub fn apply(&self, config: Config) -> Config {
        Config {
            max_entries: self.max_entries.unwrap_or(config.max_entries),
            max_stacks: self.max_stacks.unwrap_or(config.max_stacks),
            max_procs: self.max_procs.unwrap_or(config.max_procs),
            max_mappings: self.max_mappings.unwrap_or(config.max_mappings),
            max_unwind_rows: self.max_unwind_rows.unwrap_or(config.max_unwind_rows),
            unwind: self.unwind.unwrap_or(config.unwind),
            ..config
        }
    }
}

impl Common {
    /// The kinds reported, by name, each once, in a fixed order.
    pub fn kind_names(&self) -> Vec<&'static str> {
        kind_names(&self.kinds)
    }

    fn has(&self, kind: Kind) -> bool {
        has_kind(&self.kinds, kind)
    }

    /// Whether memory mappings are followed.
    pub fn mmap(&self) -> bool {
        self.has(Kind::Mmap)
    }

    /// Whether TCP sockets are followed as connections.
    pub fn tcp(&self) -> bool {
        self.has(Kind::Tcp)
    }

    /// Command-line values over defaults.
    pub fn config(&self) -> Config {
        let defaults = self.limits.apply(Config::default());
        Config {
            top: self.top.unwrap_or(defaults.top),
            interval: self.interval.unwrap_or(defaults.interval),
            min_bytes: self.min_bytes.unwrap_or(defaults.min_bytes),
            all_mappings: self.all_mappings || defaults.all_mappings,
            max_series: self.max_series.unwrap_or(defaults.max_series),
            sample: self.sample.unwrap_or(defaults.sample),
            ..defaults
        }
    }
}

/// The kinds in `kinds`, by name, each once, in a fixed order.
pub fn kind_names(kinds: &[Kind]) -> Vec<&'static str> {
    [Kind::Fd, Kind::Tcp, Kind::Mmap].into_iter().filter(|k| has_kind(kinds, *k)).map(Kind::name).collect()
}

pub fn has_kind(kinds: &[Kind], kind: Kind) -> bool {
    kinds.contains(&kind) || kinds.contains(&Kind::All)
}

/// A clap usage error in one line: its first paragraph (which names the
/// argument and what is wrong; "required arguments were not provided:"
/// lists them on the lines after), without "error: ".
pub fn usage_line(rendered: &str) -> String {
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

fn parse_kind(text: &str) -> Result<Kind, String> {
    match text {
        "fd" => Ok(Kind::Fd),
        "tcp" => Ok(Kind::Tcp),
        "mmap" => Ok(Kind::Mmap),
        "all" => Ok(Kind::All),
        other => Err(format!("unknown kind '{other}' (expected fd, tcp, mmap or all)")),
    }
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    parse_size::Config::new().with_binary().parse_size(text).map_err(|e| format!("{e} (examples: 4096, 64K, 1MiB, 2G)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("leaktrace").chain(args.iter().copied()))
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
            Command::Run { common, command } => {
                assert_eq!(common.format, Format::Json);
                assert_eq!(command, vec!["ls", "-l", "--color"]);
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
        assert!(matches!(parse(&["attach", "--all"]).expect("all").command, Command::Attach { all: true, .. }));
        let cli = parse(&["attach", "--pid", "12", "--pid", "13", "--duration", "1m30s"]).expect("parses");
        match cli.command {
            Command::Attach { pids, duration, all, .. } => {
                assert!(!all);
                assert_eq!(pids, vec![12, 13]);
                assert_eq!(duration, Some(Duration::from_secs(90)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kinds_are_checked() {
        let err = parse(&["run", "--kinds", "fd,bogus", "--", "true"]).expect_err("bad kind");
        assert!(err.to_string().contains("unknown kind 'bogus'"), "{err}");
        let Command::Run { common, .. } = parse(&["run", "--kinds", "mmap", "--", "true"]).expect("mmap").command
        else {
            panic!()
        };
        assert!(common.mmap() && !common.tcp());
        assert_eq!(common.kind_names(), vec!["mmap"]);
        let Command::Run { common, .. } = parse(&["run", "--kinds", "all", "--", "true"]).expect("all").command else {
            panic!()
        };
        assert_eq!(common.kind_names(), vec!["fd", "tcp", "mmap"]);
        let Command::Run { common, .. } = parse(&["run", "--kinds", "fd", "--", "true"]).expect("fd only").command
        else {
            panic!()
        };
        assert!(!common.tcp());
        let Command::Run { common, .. } = parse(&["run", "--", "true"]).expect("default").command else { panic!() };
        assert!(common.tcp(), "tcp is on by default");
        assert!(parse(&["run", "--max-entries", "0", "--", "true"]).is_err());
    }

    #[test]
    fn sizes_read_with_binary_units() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64K"), Ok(65536));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn daemon_options_override_the_file() {
        let dir = std::env::temp_dir().join(format!("leaktrace-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("leaktrace.toml");
        std::fs::write(
            &file,
            "interval = \"30s\"\n[filter]\ncomms = [\"redis-server\"]\n[daemon]\nlisten = \"0.0.0.0:9500\"\n",
        )
        .expect("write");
        let path = file.to_str().expect("utf-8");
        let Command::Daemon(args) =
            parse(&["daemon", "--config", path, "--interval", "2s", "--comm", "nginx"]).expect("parses").command
        else {
            panic!()
        };
        let config = args.config().expect("config");
        assert_eq!(config.interval, Duration::from_secs(2));
        assert_eq!(config.filter.comms, vec!["nginx"]);
        assert_eq!(config.daemon.listen.port(), 9500);
        assert_eq!(config.max_entries, Config::daemon().max_entries);
        let Command::Daemon(args) = parse(&["daemon"]).expect("parses").command else { panic!() };
        assert_eq!(args.config().expect("defaults"), Config::daemon());
        assert!(parse(&["daemon", "--listen", "localhost"]).is_err(), "an address is ip:port");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_daemon_listens_on_loopback_and_redacts_arguments_unless_told_otherwise() {
        let daemon = |args: &[&str]| {
            let all: Vec<&str> = std::iter::once("daemon").chain(args.iter().copied()).collect();
            let Command::Daemon(args) = parse(&all).expect("parses").command else { panic!() };
            args.config().expect("config")
        };
        let defaults = daemon(&[]);
        assert!(defaults.daemon.listen.ip().is_loopback());
        assert!(defaults.daemon.redact_args);
        assert!(daemon(&["--redact-args"]).daemon.redact_args);
        assert!(!daemon(&["--redact-args=false"]).daemon.redact_args);
        let Command::Record(record) = parse(&["record", "-o", "x.db"]).expect("parses").command else { panic!() };
        assert!(!record.redact_args, "a recording keeps arguments unless asked");
    }

    #[test]
    fn command_line_overrides_defaults() {
        let cli = parse(&["run", "--max-entries", "1000", "--top", "3", "--", "true"]).expect("parses");
        let Command::Run { common, .. } = cli.command else { panic!() };
        let config = common.config();
        assert_eq!(config.max_entries, 1000);
        assert_eq!(config.top, 3);
        assert_eq!(config.max_stacks, Config::default().max_stacks);
    }
}
