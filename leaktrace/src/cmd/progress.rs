//! One line on stderr that says how a long `run` or `attach` is going, when
//! stderr is a terminal: how much is held, by how many stacks, and how many
//! are judged leaks so far. Rewritten in place at every sample.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use crate::track::aggregate::{Aggregator, GroupKey};
use crate::track::history::History;
use crate::track::verdict::{judgement, Verdict};

/// Samples before the line appears: short sessions stay quiet.
const QUIET_SAMPLES: u32 = 3;

pub(super) struct Progress {
    enabled: bool,
    start: Instant,
    samples: u32,
    shown: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub(super) fn new() -> Progress {
        Progress { enabled: std::io::stderr().is_terminal(), start: Instant::now(), samples: 0, shown: false }
    }

    pub(super) fn update(&mut self, live: &Aggregator, history: &History<GroupKey>) {
        self.samples += 1;
        if !self.enabled || self.samples <= QUIET_SAMPLES {
            return;
        }
        let observed = live.observed();
        let held: u64 = observed.iter().filter(|(k, _)| k.kind.is_fd()).map(|(_, o)| o.count).sum();
        let bytes: u64 = observed.values().map(|o| o.bytes).sum();
        let leaks = observed
            .keys()
            .filter_map(|key| Some((key, history.samples(key)?)))
            .filter(|(key, samples)| {
                let seconds: Vec<f64> = samples.times_ns.iter().map(|t| *t as f64 / 1e9).collect();
                judgement(key.kind, key.resource, samples, &seconds, false).verdict == Verdict::Leak
            })
            .count();
        let mapped =
            if bytes > 0 { format!(", {} mapped", crate::report::mapping::bytes(bytes)) } else { String::new() };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K[{}] {held} held{mapped} from {} stacks, {leaks} judged leak",
            crate::report::text::format_age(self.start.elapsed().as_secs_f64()),
            observed.len()
        );
        let _ = err.flush();
        self.shown = true;
    }
}

impl Drop for Progress {
    /// The report starts on a clean line.
    fn drop(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
        }
    }
}
