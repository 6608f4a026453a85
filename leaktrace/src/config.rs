//! Settings with their defaults in one place. Precedence: command line,
//! then the config file (`daemon --config`), then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cli::Kind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
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
    pub unwind: crate::cli::Unwind,
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
    /// Resource kinds followed (the daemon's; run and attach take `--kinds`).
    pub kinds: Vec<Kind>,
    pub daemon: DaemonConfig,
    /// Which processes the daemon traces; empty lists trace every process.
    pub filter: FilterConfig,
    pub metrics: MetricsConfig,
    pub kubernetes: KubernetesConfig,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
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
pub struct FilterConfig {
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
pub struct MetricsConfig {
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
pub enum KubernetesMode {
    /// When running in a pod (`KUBERNETES_SERVICE_HOST` is set).
    Auto,
    /// Always (in-cluster config, else `KUBECONFIG` or `~/.kube/config`).
    On,
    Off,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
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
pub enum ConfigError {
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
            unwind: crate::cli::Unwind::Cfi,
            top: 10,
            examples: 5,
            interval: Duration::from_secs(5),
            min_bytes: 0,
            max_mappings: 65_536,
            all_mappings: false,
            max_series: 16_384,
            sample: 1,
            kinds: vec![Kind::Fd, Kind::Tcp],
            daemon: DaemonConfig::default(),
            filter: FilterConfig::default(),
            metrics: MetricsConfig::default(),
            kubernetes: KubernetesConfig::default(),
        }
    }
}

impl Config {
    /// The daemon's defaults: a whole host over days holds more than one
    /// program, and is sampled less often.
    pub fn daemon() -> Config {
        Config { interval: Duration::from_secs(10), max_entries: 262_144, ..Config::default() }
    }

    /// `base` with what the TOML file at `path` sets over it.
    pub fn from_file(base: &Config, path: &Path) -> Result<Config, ConfigError> {
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

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
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
        let config = Config::from_toml(&Config::daemon(), text).expect("parses");
        assert_eq!(config.interval, Duration::from_secs(30));
        assert_eq!(config.kinds, vec![Kind::Fd, Kind::Mmap]);
        assert_eq!(config.daemon.listen, "0.0.0.0:9500".parse().expect("addr"));
        assert_eq!(config.filter.comms, vec!["nginx"]);
        assert_eq!(config.metrics.max_sites, 50);
        assert_eq!(config.metrics.max_processes, MetricsConfig::default().max_processes);
        assert_eq!(config.kubernetes.mode, KubernetesMode::Off);
        assert_eq!(config.max_entries, Config::daemon().max_entries);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Config::from_toml(&Config::daemon(), "intervall = \"5s\"").expect_err("unknown key");
        assert!(err.contains("intervall"), "{err}");
        let err = Config::from_toml(&Config::daemon(), "[metrics]\nmax_site = 3").expect_err("unknown key");
        assert!(err.contains("max_site"), "{err}");
        let err = Config::from_toml(&Config::daemon(), "kinds = [\"fds\"]").expect_err("bad kind");
        assert!(err.contains("unknown kind 'fds'"), "{err}");
        let err = Config::from_toml(&Config::daemon(), "interval = \"soon\"").expect_err("bad duration");
        assert!(err.contains("invalid duration \"soon\""), "{err}");
        assert!(Config::from_toml(&Config::daemon(), "interval = ").is_err());
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
        let config = Config::from_toml(&Config::daemon(), &toml).expect("the ConfigMap's config parses");
        assert_eq!(config.daemon.listen.port(), 9464);
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = Config::from_file(&Config::daemon(), Path::new("/nonexistent/leaktrace.toml")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/leaktrace.toml"), "{err}");
    }

    #[test]
    fn a_syntax_error_is_one_line_with_its_line_number() {
        let err = Config::from_toml(&Config::daemon(), "interval = \"5s\"\n\nmax_entries = [\n").expect_err("bad");
        assert!(err.starts_with("line 3: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
