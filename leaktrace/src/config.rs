//! Settings with their defaults in one place, and how every mode arrives at
//! its own: the mode's defaults, then the config file (`daemon --config`),
//! then the command line. What the kernel side and the session are given is
//! derived from here too ([`Config::load_options`],
//! [`Config::session_options`]), so a setting is read in one place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cli::{AttachArgs, DaemonArgs, OutputArgs, RecordArgs, RunArgs, Targets, TopArgs, TraceArgs};
use crate::kernel::LoadOptions;
use crate::resource::{Kind, Kinds};
use crate::session::SessionOptions;
use crate::unwind::Unwind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// Outstanding fds the kernel keeps (one entry each); more are dropped
    /// and counted.
    pub max_entries: u32,
    /// Distinct stacks the kernel keeps (about 0.5 KiB each).
    pub max_stacks: u32,
    /// Traced processes and threads the kernel keeps.
    pub max_procs: u32,
    /// CFI rows of all loaded modules the kernel keeps (16 bytes each; glibc
    /// needs 28,000).
    pub max_unwind_rows: u32,
    /// How user stacks are walked.
    pub unwind: Unwind,
    /// Stacks shown in the text report.
    pub top: usize,
    /// Example fds kept per stack.
    pub examples: usize,
    /// How often the outstanding set is swept while tracing: fd paths of live
    /// processes are read, unused stacks are freed.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Mapping stacks holding fewer bytes are left out of the report.
    pub min_bytes: u64,
    /// Mapped regions kept for all traced processes; more are dropped and
    /// counted.
    pub max_mappings: u32,
    /// List mappings with no frame of the program in the text report.
    pub all_mappings: bool,
    /// Stacks whose history is kept (128 samples of 16 bytes each).
    pub max_series: u32,
    /// Record one fd acquisition in this many; counts are then estimates.
    pub sample: u32,
    /// Resource kinds followed.
    pub kinds: Kinds,
    pub daemon: DaemonConfig,
    /// Which processes are traced; empty lists trace every process.
    pub filter: FilterConfig,
    pub metrics: MetricsConfig,
    pub kubernetes: KubernetesConfig,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DaemonConfig {
    /// Where the HTTP endpoints are served.
    pub listen: SocketAddr,
    /// Processes' command lines in `/report` without their arguments,
    /// which can hold secrets.
    pub redact_args: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        // Loopback unless told otherwise: the report names files and peers.
        DaemonConfig { listen: SocketAddr::from(([127, 0, 0, 1], 9464)), redact_args: true }
    }
}

/// Within a list, any entry matches; across lists, all must.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FilterConfig {
    /// Processes (and their children) by pid.
    pub pids: Vec<u32>,
    /// Processes by name (`/proc/PID/comm`, 15 characters at most).
    pub comms: Vec<String>,
    /// cgroup v2 paths (`/proc/PID/cgroup`): a process in the cgroup or below it.
    pub cgroups: Vec<String>,
    /// Container ids or their prefixes (12 characters, as docker shows them).
    pub containers: Vec<String>,
}

/// Bounds on the series `/metrics` exports (see README, "Cardinality").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Processes exported with series of their own, those holding the most first.
    pub max_processes: usize,
    /// Call sites exported per process, those holding the most first.
    pub sites_per_process: usize,
    /// Call-site series in all.
    pub max_sites: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { max_processes: 1000, sites_per_process: 3, max_sites: 1000 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum KubernetesMode {
    /// When running in a pod (`KUBERNETES_SERVICE_HOST` is set).
    Auto,
    /// Always (in-cluster config, else `KUBECONFIG` or `~/.kube/config`).
    On,
    Off,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct KubernetesConfig {
    /// Whether pod names and namespaces are read from the Kubernetes API.
    pub mode: KubernetesMode,
    /// This node's name, whose pods are listed (default: `$NODE_NAME`, else
    /// the host name).
    pub node_name: String,
    /// How often the node's pods are listed again (and at once when a
    /// process of an unknown pod appears, at most every 5 s).
    #[serde(with = "humantime_serde_compat")]
    pub refresh: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig { mode: KubernetesMode::Auto, node_name: String::new(), refresh: Duration::from_secs(60) }
    }
}

#[derive(Debug, Error)]
pub(crate) enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_entries: 65_536,
            max_stacks: 16_384,
            max_procs: 32_768,
            max_unwind_rows: 1 << 20,
            unwind: Unwind::Cfi,
            top: 10,
            examples: 5,
            interval: Duration::from_secs(5),
            min_bytes: 0,
            max_mappings: 65_536,
            all_mappings: false,
            max_series: 16_384,
            sample: 1,
            kinds: Kinds::of(&[Kind::Fd, Kind::Tcp]),
            daemon: DaemonConfig::default(),
            filter: FilterConfig::default(),
            metrics: MetricsConfig::default(),
            kubernetes: KubernetesConfig::default(),
        }
    }
}

impl Config {
    /// `leaktrace run`: commands are often short (a test suite), and a
    /// verdict needs six samples, hence a sample a second.
    pub(crate) fn run(args: &RunArgs) -> Config {
        let defaults = Config { interval: Duration::from_secs(1), ..Config::default() };
        defaults.with_trace(&args.trace).with_output(&args.output)
    }

    /// `leaktrace attach`.
    pub(crate) fn attach(args: &AttachArgs) -> Config {
        Config::default().with_targets(&args.targets).with_trace(&args.trace).with_output(&args.output)
    }

    /// `leaktrace top`: a view is redrawn every two seconds.
    pub(crate) fn top(args: &TopArgs) -> Config {
        let defaults = Config { interval: Duration::from_secs(2), ..Config::default() };
        defaults.with_targets(&args.targets).with_trace(&args.trace)
    }

    /// `leaktrace record`: a host's capacities, a checkpoint a second.
    pub(crate) fn record(args: &RecordArgs) -> Config {
        let defaults = Config { interval: Duration::from_secs(1), ..Config::host() };
        defaults.with_targets(&args.targets).with_trace(&args.trace)
    }

    /// `leaktrace daemon`: the command line over the file over the
    /// daemon's defaults.
    pub(crate) fn daemon(args: &DaemonArgs) -> Result<Config, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(&Config::daemon_defaults(), path)?,
            None => Config::daemon_defaults(),
        };
        if let Some(listen) = args.listen {
            config.daemon.listen = listen;
        }
        config.daemon.redact_args = args.redact_args.unwrap_or(config.daemon.redact_args);
        Ok(config.with_targets(&args.targets).with_trace(&args.trace))
    }

    /// The daemon's defaults: a whole host over days holds more than one
    /// program, and is sampled less often.
    pub(crate) fn daemon_defaults() -> Config {
        Config { interval: Duration::from_secs(10), ..Config::host() }
    }

    /// Capacities for tracing a whole host.
    fn host() -> Config {
        Config { max_entries: 262_144, ..Config::default() }
    }

    /// Each target list given on the command line replaces the configured one.
    fn with_targets(mut self, targets: &Targets) -> Config {
        let filter = &mut self.filter;
        for (into, from) in [
            (&mut filter.comms, &targets.comms),
            (&mut filter.cgroups, &targets.cgroups),
            (&mut filter.containers, &targets.containers),
        ] {
            if !from.is_empty() {
                *into = from.clone();
            }
        }
        if !targets.pids.is_empty() {
            // Each target once, however often it was named, in the order given.
            filter.pids.clear();
            for &pid in &targets.pids {
                if !filter.pids.contains(&pid) {
                    filter.pids.push(pid);
                }
            }
        }
        self
    }

    /// The values given on the command line over `self`'s.
    fn with_trace(self, args: &TraceArgs) -> Config {
        let limits = &args.limits;
        Config {
            kinds: if args.kinds.is_empty() { self.kinds.clone() } else { Kinds::union(&args.kinds) },
            interval: args.interval.unwrap_or(self.interval),
            sample: args.sample.unwrap_or(self.sample),
            max_series: args.max_series.unwrap_or(self.max_series),
            min_bytes: args.min_bytes.unwrap_or(self.min_bytes),
            max_entries: limits.max_entries.unwrap_or(self.max_entries),
            max_stacks: limits.max_stacks.unwrap_or(self.max_stacks),
            max_procs: limits.max_procs.unwrap_or(self.max_procs),
            max_mappings: limits.max_mappings.unwrap_or(self.max_mappings),
            max_unwind_rows: limits.max_unwind_rows.unwrap_or(self.max_unwind_rows),
            unwind: limits.unwind.unwrap_or(self.unwind),
            ..self
        }
    }

    fn with_output(self, args: &OutputArgs) -> Config {
        Config { top: args.top.unwrap_or(self.top), all_mappings: args.all_mappings || self.all_mappings, ..self }
    }

    /// What the kernel side is loaded with to trace running processes: the
    /// pids named, or with none every process (less what the other filters
    /// leave out).
    pub(crate) fn load_options(&self) -> LoadOptions {
        LoadOptions {
            max_entries: self.max_entries,
            max_stacks: self.max_stacks,
            max_procs: self.max_procs,
            max_unwind_rows: self.max_unwind_rows,
            sample: self.sample,
            trace_all: self.filter.pids.is_empty(),
            stop_on_code_map: false,
            tcp: self.kinds.contains(Kind::Tcp),
            mmap: self.kinds.contains(Kind::Mmap),
        }
    }

    /// What the kernel side is loaded with for `run`: only the command it
    /// launches and what that starts (traced by pid once launched), each
    /// thread stopped for the ptrace tracer when it maps new code.
    pub(crate) fn load_options_for_command(&self) -> LoadOptions {
        LoadOptions { trace_all: false, stop_on_code_map: true, ..self.load_options() }
    }

    /// What the session keeps and how it walks stacks.
    pub(crate) fn session_options(&self) -> SessionOptions {
        SessionOptions {
            unwind: self.unwind,
            examples: self.examples,
            max_mappings: self.max_mappings,
            max_series: self.max_series,
        }
    }

    /// `base` with what the TOML file at `path` sets over it.
    pub(crate) fn from_file(base: &Config, path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Config::from_toml(base, &text).map_err(|message| ConfigError::Parse { path: path.into(), message })
    }

    /// Tables are merged key by key, so a file that sets `[metrics]
    /// max_sites` keeps the other `[metrics]` values of `base`.
    fn from_toml(base: &Config, text: &str) -> Result<Config, String> {
        let file: toml::Table = text.parse().map_err(|e: toml::de::Error| at_line(text, &e))?;
        let mut merged = toml::Table::try_from(base).map_err(|e| e.to_string())?;
        overlay(&mut merged, file);
        merged.try_into().map_err(|e: toml::de::Error| e.message().to_string())
    }
}

/// A TOML error in one line, with the line it is on (the error's own
/// rendering quotes the file over several lines).
fn at_line(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => format!("line {}: {}", text[..span.start.min(text.len())].matches('\n').count() + 1, e.message()),
        None => e.message().to_string(),
    }
}

fn overlay(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => overlay(inner, value),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Durations as humantime strings ("5s", "1m30s") in config files.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e} (examples: 10s, 5m, 1m30s)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_only_what_it_sets() {
        let text = r#"
            interval = "30s"
            kinds = ["fd", "mmap"]
            [daemon]
            listen = "0.0.0.0:9500"
            [filter]
            comms = ["nginx"]
            [metrics]
            max_sites = 50
            [kubernetes]
            mode = "off"
        "#;
        let config = Config::from_toml(&Config::daemon_defaults(), text).expect("parses");
        assert_eq!(config.interval, Duration::from_secs(30));
        assert_eq!(config.kinds, Kinds::of(&[Kind::Fd, Kind::Mmap]));
        assert_eq!(config.daemon.listen, "0.0.0.0:9500".parse().expect("addr"));
        assert_eq!(config.filter.comms, vec!["nginx"]);
        assert_eq!(config.metrics.max_sites, 50);
        assert_eq!(config.metrics.max_processes, MetricsConfig::default().max_processes);
        assert_eq!(config.kubernetes.mode, KubernetesMode::Off);
        assert_eq!(config.max_entries, Config::daemon_defaults().max_entries);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Config::from_toml(&Config::daemon_defaults(), "intervall = \"5s\"").expect_err("unknown key");
        assert!(err.contains("intervall"), "{err}");
        let err = Config::from_toml(&Config::daemon_defaults(), "[metrics]\nmax_site = 3").expect_err("unknown key");
        assert!(err.contains("max_site"), "{err}");
        let err = Config::from_toml(&Config::daemon_defaults(), "kinds = [\"fds\"]").expect_err("bad kind");
        assert!(err.contains("unknown kind 'fds'"), "{err}");
        let err = Config::from_toml(&Config::daemon_defaults(), "interval = \"soon\"").expect_err("bad duration");
        assert!(err.contains("invalid duration \"soon\""), "{err}");
        assert!(Config::from_toml(&Config::daemon_defaults(), "interval = ").is_err());
    }

    #[test]
    fn the_kubernetes_config_map_is_a_valid_config() {
        // The TOML block under `leaktrace.toml: |` in the ConfigMap.
        let yaml = include_str!("../../deploy/kubernetes/configmap.yaml");
        let mut lines = yaml.lines().skip_while(|l| !l.trim_start().starts_with("leaktrace.toml: |")).skip(1);
        let first = lines.next().expect("the TOML block");
        let indent = first.len() - first.trim_start().len();
        let toml: String = std::iter::once(first)
            .chain(lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent))
            .map(|l| l.get(indent..).unwrap_or("").to_string() + "\n")
            .collect();
        let config = Config::from_toml(&Config::daemon_defaults(), &toml).expect("the ConfigMap's config parses");
        assert_eq!(config.daemon.listen.port(), 9464);
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = Config::from_file(&Config::daemon_defaults(), Path::new("/nonexistent/leaktrace.toml"))
            .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/leaktrace.toml"), "{err}");
    }

    #[test]
    fn a_syntax_error_is_one_line_with_its_line_number() {
        let err =
            Config::from_toml(&Config::daemon_defaults(), "interval = \"5s\"\n\nmax_entries = [\n").expect_err("bad");
        assert!(err.starts_with("line 3: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    fn parse(args: &[&str]) -> crate::cli::Command {
        use clap::Parser;
        crate::cli::Cli::try_parse_from(std::iter::once("leaktrace").chain(args.iter().copied()))
            .expect("parses")
            .command
    }

    fn run_config(args: &[&str]) -> Config {
        let all: Vec<&str> = [&["run"][..], args, &["--", "true"]].concat();
        let crate::cli::Command::Run(run) = parse(&all) else { panic!() };
        Config::run(&run)
    }

    #[test]
    fn kinds_are_taken_as_given() {
        let mmap = run_config(&["--kinds", "mmap"]);
        assert!(mmap.kinds.contains(Kind::Mmap) && !mmap.kinds.contains(Kind::Tcp));
        assert_eq!(mmap.kinds.to_vec(), vec![Kind::Mmap]);
        assert_eq!(run_config(&["--kinds", "all"]).kinds.to_vec(), vec![Kind::Fd, Kind::Tcp, Kind::Mmap]);
        assert!(!run_config(&["--kinds", "fd"]).kinds.contains(Kind::Tcp));
        assert!(run_config(&[]).kinds.contains(Kind::Tcp), "tcp is on by default");
        assert_eq!(run_config(&["--kinds", "mmap", "--kinds", "fd"]).kinds.to_vec(), vec![Kind::Fd, Kind::Mmap]);
    }

    #[test]
    fn command_line_overrides_defaults() {
        let config = run_config(&["--max-entries", "1000", "--top", "3"]);
        assert_eq!(config.max_entries, 1000);
        assert_eq!(config.top, 3);
        assert_eq!(config.max_stacks, Config::default().max_stacks);
        assert_eq!(config.interval, Duration::from_secs(1), "run samples every second");
    }

    #[test]
    fn each_mode_starts_from_its_own_defaults() {
        let crate::cli::Command::Attach(attach) = parse(&["attach", "--pid", "5"]) else { panic!() };
        assert_eq!(Config::attach(&attach).interval, Duration::from_secs(5));
        let crate::cli::Command::Top(top) = parse(&["top"]) else { panic!() };
        let top = Config::top(&top);
        assert_eq!((top.interval, top.max_entries), (Duration::from_secs(2), 65_536));
        let crate::cli::Command::Record(record) = parse(&["record", "-o", "x.db", "--interval", "3s"]) else {
            panic!()
        };
        let record = Config::record(&record);
        assert_eq!((record.interval, record.max_entries), (Duration::from_secs(3), 262_144));
        assert!(record.load_options().trace_all, "no pid: the whole host");
        let run = run_config(&[]);
        let command = run.load_options_for_command();
        assert!(!command.trace_all && command.stop_on_code_map, "run traces its command only");
    }

    #[test]
    fn each_target_is_traced_once() {
        let crate::cli::Command::Attach(attach) = parse(&["attach", "--pid", "9", "--pid", "4", "--pid", "9"]) else {
            panic!()
        };
        let config = Config::attach(&attach);
        assert_eq!(config.filter.pids, vec![9, 4]);
        assert!(!config.load_options().trace_all);
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
        let crate::cli::Command::Daemon(args) =
            parse(&["daemon", "--config", path, "--interval", "2s", "--comm", "nginx"])
        else {
            panic!()
        };
        let config = Config::daemon(&args).expect("config");
        assert_eq!(config.interval, Duration::from_secs(2));
        assert_eq!(config.filter.comms, vec!["nginx"]);
        assert_eq!(config.daemon.listen.port(), 9500);
        assert_eq!(config.max_entries, Config::daemon_defaults().max_entries);
        let crate::cli::Command::Daemon(args) = parse(&["daemon"]) else { panic!() };
        assert_eq!(Config::daemon(&args).expect("defaults"), Config::daemon_defaults());
        use clap::Parser;
        assert!(
            crate::cli::Cli::try_parse_from(["leaktrace", "daemon", "--listen", "localhost"]).is_err(),
            "an address is ip:port"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_daemon_listens_on_loopback_and_redacts_arguments_unless_told_otherwise() {
        let daemon = |args: &[&str]| {
            let all: Vec<&str> = std::iter::once("daemon").chain(args.iter().copied()).collect();
            let crate::cli::Command::Daemon(args) = parse(&all) else { panic!() };
            Config::daemon(&args).expect("config")
        };
        let defaults = daemon(&[]);
        assert!(defaults.daemon.listen.ip().is_loopback());
        assert!(defaults.daemon.redact_args);
        assert!(daemon(&["--redact-args"]).daemon.redact_args);
        assert!(!daemon(&["--redact-args=false"]).daemon.redact_args);
        let crate::cli::Command::Record(record) = parse(&["record", "-o", "x.db"]) else { panic!() };
        assert!(!record.redact_args, "a recording keeps arguments unless asked");
    }
}
