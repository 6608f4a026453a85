//! Settings with their defaults in one place. Precedence: command line, then
//! defaults (a config file joins in between with the daemon mode).

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}
