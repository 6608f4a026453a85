//! Reads a recording back: what was held at a moment, with each stack's
//! history from the checkpoints before it, as a report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use crate::report::{self, Frame, History, Kind, Mode, Report, Resource, StackEntry, Target, Totals, Window};
use crate::resource::Kinds;
use crate::track::history::{Point, Samples, MAX_POINTS};

use super::schema::{self, RecordingError};

/// A group of the report: stack, kind, resource, pid.
type Key = (i64, String, String, u32);

pub(crate) struct Recording {
    conn: Connection,
    path: PathBuf,
    /// The kinds recorded.
    kinds: Kinds,
    pub started_ns: i64,
    pub last_checkpoint_ns: Option<i64>,
}

impl Recording {
    pub(crate) fn open(path: &Path) -> Result<Recording, RecordingError> {
        let conn = schema::open(path)?;
        let corrupt = |detail: String| RecordingError::Corrupt { path: path.into(), detail };
        let started: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'started_ns'", [], |r| r.get(0))
            .map_err(|e| corrupt(format!("no start time ({e})")))?;
        // meta has no row CRCs: a time before 1970 is damage, not a moment.
        let started_ns = started
            .parse::<i64>()
            .ok()
            .filter(|&t| t >= 0)
            .ok_or_else(|| corrupt(format!("start time {started:?}")))?;
        let dropped_before_ns: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'dropped_before_ns'", [], |r| r.get::<_, String>(0))
            .ok()
            .and_then(|v| v.parse().ok());
        let started_ns = dropped_before_ns.map_or(started_ns, |d: i64| d.max(started_ns));
        let last_checkpoint_ns = conn
            .query_row("SELECT MAX(at_ns) FROM checkpoints", [], |r| r.get(0))
            .map_err(|e| corrupt(e.to_string()))?;
        let kinds: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'kinds'", [], |r| r.get(0))
            .unwrap_or_else(|_| "fd,tcp".into());
        let kinds = Kinds::try_from(kinds.split(',').map(String::from).collect::<Vec<_>>())
            .map_err(|e| corrupt(format!("kinds {kinds:?}: {e}")))?;
        Ok(Recording { conn, path: path.into(), kinds, started_ns, last_checkpoint_ns })
    }

    /// `text` as a moment: an RFC 3339 time, or an offset from the start
    /// (`2s`, `1m30s`). The start is the oldest data kept (`--max-size`
    /// drops the oldest checkpoints).
    pub(crate) fn moment(&self, text: &str) -> Result<i64, String> {
        if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
            return i64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("{text} is out of range"));
        }
        let offset = humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is neither an RFC 3339 time nor an offset like 2s or 1m30s ({e})"))?;
        Ok(self.started_ns.saturating_add(i64::try_from(offset.as_nanos()).unwrap_or(i64::MAX)))
    }

    fn sqlite(&self, source: rusqlite::Error) -> RecordingError {
        RecordingError::Sqlite { path: self.path.clone(), source }
    }

    /// What was held at `at_ns` (of `pid` only, if given), with histories
    /// from the checkpoints since the start.
    pub(crate) fn report_at(&self, at_ns: i64, pid: Option<u32>) -> Result<Report, RecordingError> {
        self.report_window(self.started_ns, at_ns, pid)
    }

    /// What was held at `at_ns`, judged over the checkpoints from `from_ns`.
    pub(crate) fn report_window(&self, from_ns: i64, at_ns: i64, pid: Option<u32>) -> Result<Report, RecordingError> {
        if at_ns < self.started_ns || from_ns > at_ns {
            let kept = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.started_ns))
                .map(crate::procfs::rfc3339)
                .unwrap_or_default();
            return Err(RecordingError::Moment {
                detail: format!(
                    "the recording {} holds data from {kept} on (and --from must come before --at)",
                    self.path.display()
                ),
            });
        }
        let from_ns = from_ns.max(self.started_ns);
        // What the last checkpoint at or before the moment saw: releases are
        // known at the checkpoint that no longer sees them held, so between
        // two checkpoints only the earlier one is exact.
        let at_ns: i64 = self
            .conn
            .query_row("SELECT MAX(at_ns) FROM checkpoints WHERE at_ns <= ?1", params![at_ns], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map_err(|e| self.sqlite(e))?
            .unwrap_or(self.started_ns);
        let mut groups: BTreeMap<Key, (StackEntry, Vec<i64>)> = BTreeMap::new();
        let mut statement = self
            .conn
            .prepare(
                "SELECT s.id, s.frames, s.site, s.truncated, a.kind, a.resource, p.pid, a.slot, a.acquired_ns, a.path, a.bytes \
                 FROM acquisitions a JOIN processes p ON p.id = a.process JOIN stacks s ON s.id = a.stack \
                 LEFT JOIN releases r ON r.acquisition = a.id \
                 WHERE a.acquired_ns <= ?1 AND (r.released_ns IS NULL OR r.released_ns > ?1) \
                 AND (?2 IS NULL OR p.pid = ?2)",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map(params![at_ns, pid], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, u32>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, i64>(10)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        for row in rows {
            let (stack, frames, site, truncated, kind, resource, pid, slot, acquired, path, bytes) =
                row.map_err(|e| self.sqlite(e))?;
            let typed = self.kind(&kind)?;
            let entry = groups.entry((stack, kind, resource.clone(), pid)).or_insert_with(|| {
                let frames: Vec<Frame> = serde_json::from_str(&frames).unwrap_or_default();
                let holding = StackEntry::new(typed, Resource::from_name(&resource));
                (StackEntry { stack: frames, site, truncated, pids: vec![pid], ..holding }, Vec::new())
            });
            let mapping = typed.in_bytes();
            entry.0.count += 1;
            entry.0.bytes += bytes as u64;
            entry.1.push(acquired);
            if entry.0.examples.len() < 5 {
                entry.0.examples.push(report::Example {
                    pid,
                    fd: (!mapping).then(|| u32::try_from(slot).ok()).flatten(),
                    address: mapping.then(|| format!("{slot:#x}")),
                    length: mapping.then_some(bytes as u64),
                    path,
                    age_seconds: at_ns.saturating_sub(acquired) as f64 / 1e9,
                    ..report::Example::default()
                });
            }
        }
        // Each stack's count at the checkpoints from `from_ns` to the moment
        // (at most MAX_POINTS of them, spread evenly: the verdict's
        // statistics are quadratic in points), in one pass over the
        // acquisitions that overlap them.
        let checkpoints: Vec<i64> = {
            let mut s = self
                .conn
                .prepare("SELECT at_ns FROM checkpoints WHERE at_ns >= ?1 AND at_ns <= ?2 ORDER BY at_ns")
                .map_err(|e| self.sqlite(e))?;
            let rows = s.query_map(params![from_ns, at_ns], |r| r.get(0)).map_err(|e| self.sqlite(e))?;
            let all: Vec<i64> = rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))?;
            spread(&all, MAX_POINTS)
        };
        let mut coverage: BTreeMap<Key, Coverage> =
            groups.keys().map(|k| (k.clone(), Coverage::new(checkpoints.len()))).collect();
        if let Some(&first) = checkpoints.first() {
            let mut statement = self
                .conn
                .prepare(
                    "SELECT a.stack, a.kind, a.resource, p.pid, a.acquired_ns, r.released_ns, a.bytes \
                     FROM acquisitions a JOIN processes p ON p.id = a.process \
                     LEFT JOIN releases r ON r.acquisition = a.id \
                     WHERE a.acquired_ns <= ?2 AND (r.released_ns IS NULL OR r.released_ns > ?1) \
                     AND (?3 IS NULL OR p.pid = ?3)",
                )
                .map_err(|e| self.sqlite(e))?;
            let rows = statement
                .query_map(params![first, at_ns, pid], |r| {
                    Ok((
                        (r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, u32>(3)?),
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })
                .map_err(|e| self.sqlite(e))?;
            for row in rows {
                let (key, acquired, released, bytes) = row.map_err(|e| self.sqlite(e))?;
                if let Some(c) = coverage.get_mut(&key) {
                    c.add(&checkpoints, acquired, released, bytes);
                }
            }
        }
        let mut stacks = Vec::new();
        for (key, (mut entry, acquired)) in groups {
            let mapping = entry.kind.in_bytes();
            let mut samples = Samples::default();
            let (counts, bytes) = coverage.remove(&key).map(Coverage::totals).unwrap_or_default();
            for ((&c, n), b) in checkpoints.iter().zip(counts).zip(bytes) {
                samples.times_ns.push(c as u64);
                samples.points.push(Point { count: n, bytes: b, oldest_age_ns: 0 });
            }
            for &a in &acquired {
                samples.survivors.add(a as u64, at_ns as u64);
            }
            samples.until_ns = at_ns as u64;
            // Saturating: times come from the file (meta's are not covered by
            // the row CRCs); a damaged one must not overflow into a panic.
            if let Some(&oldest) = acquired.iter().min() {
                entry.oldest_age_seconds = at_ns.saturating_sub(oldest) as f64 / 1e9;
                entry.first_seen = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(oldest))
                    .ok()
                    .map(crate::procfs::rfc3339);
            }
            samples.first_acquired_ns = acquired.iter().min().map(|&t| t as u64);
            entry.history = History {
                seconds: samples.times_ns.iter().map(|&t| (t as i64).saturating_sub(from_ns) as f64 / 1e9).collect(),
                count: samples.points.iter().map(|p| p.count).collect(),
                bytes: mapping.then(|| samples.points.iter().map(|p| p.bytes).collect()),
                oldest_age_seconds: vec![0.0; samples.points.len()],
            };
            crate::report::build::judge(&mut entry, &samples, from_ns as u64);
            stacks.push(entry);
        }
        stacks.sort_by_key(|s| std::cmp::Reverse(s.count));
        let outstanding = stacks.iter().map(|s| s.count).sum();
        // The totals and losses the checkpoint recorded.
        let (acquired, released, losses): (i64, i64, String) = self
            .conn
            .query_row(
                "SELECT acquired_total, released_total, losses FROM checkpoints WHERE at_ns = ?1",
                params![at_ns],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap_or((0, 0, "{}".into()));
        let losses: report::Losses = serde_json::from_str(&losses).unwrap_or_default();
        let wall = |ns: i64| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
                .map(crate::procfs::rfc3339)
                .unwrap_or_default()
        };
        Ok(Report {
            schema: report::SCHEMA.to_string(),
            mode: Mode::Recording,
            kinds: self.kinds.to_vec(),
            targets: self.processes_holding(&stacks)?,
            window: Window {
                start: wall(from_ns),
                end: wall(at_ns),
                seconds: at_ns.saturating_sub(from_ns) as f64 / 1e9,
            },
            totals: Totals {
                outstanding,
                acquired: acquired as u64,
                released: released as u64,
                dropped: losses.map_full,
                mappings: None,
            },
            preexisting: vec![],
            preexisting_groups: vec![],
            stacks,
            sampling: None,
            complete: !losses.any(),
            losses,
            kernel_maps: Default::default(),
            processes: None,
        })
    }
}

impl Recording {
    /// A kind the recording names: one this leaktrace does not know is
    /// damage (a newer format has a newer version, refused at open).
    fn kind(&self, name: &str) -> Result<Kind, RecordingError> {
        Kind::from_name(name).ok_or_else(|| RecordingError::Corrupt {
            path: self.path.clone(),
            detail: format!("an acquisition of unknown kind {name:?}"),
        })
    }

    /// The processes that held something in `stacks`, as the report's
    /// targets (their names as recorded: they may be long gone).
    fn processes_holding(&self, stacks: &[StackEntry]) -> Result<Vec<Target>, RecordingError> {
        let pids: std::collections::BTreeSet<u32> = stacks.iter().flat_map(|s| s.pids.iter().copied()).collect();
        let mut statement = self
            .conn
            .prepare_cached("SELECT comm, exe FROM processes WHERE pid = ?1 ORDER BY id DESC LIMIT 1")
            .map_err(|e| self.sqlite(e))?;
        pids.into_iter()
            .map(|pid| {
                let (comm, exe) =
                    statement.query_row(params![pid], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.sqlite(e))?;
                Ok(Target { pid, ns_pid: None, comm, exe, exit_code: None })
            })
            .collect()
    }
}

/// At most `max` of `times`, spread evenly, the first and last kept.
fn spread(times: &[i64], max: usize) -> Vec<i64> {
    if times.len() <= max || max < 2 {
        return times.to_vec();
    }
    (0..max).map(|i| times[i * (times.len() - 1) / (max - 1)]).collect()
}

/// One group's count and bytes at each checkpoint, as differences: an
/// acquisition held from `acquired` until `released` adds to the
/// checkpoints in between at its two ends only.
struct Coverage {
    counts: Vec<i64>,
    bytes: Vec<i64>,
}

impl Coverage {
    fn new(checkpoints: usize) -> Self {
        Coverage { counts: vec![0; checkpoints + 1], bytes: vec![0; checkpoints + 1] }
    }

    /// Held at every checkpoint `c` with `acquired <= c < released`.
    fn add(&mut self, checkpoints: &[i64], acquired: i64, released: Option<i64>, bytes: i64) {
        let first = checkpoints.partition_point(|&c| c < acquired);
        let end = released.map_or(checkpoints.len(), |r| checkpoints.partition_point(|&c| c < r));
        if first < end {
            self.counts[first] += 1;
            self.counts[end] -= 1;
            self.bytes[first] += bytes;
            self.bytes[end] -= bytes;
        }
    }

    /// The count and bytes at each checkpoint.
    fn totals(self) -> (Vec<u64>, Vec<u64>) {
        let running = |d: &[i64]| {
            d[..d.len() - 1]
                .iter()
                .scan(0i64, |sum, x| {
                    *sum += x;
                    Some((*sum).max(0) as u64)
                })
                .collect()
        };
        (running(&self.counts), running(&self.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_keeps_the_ends_and_bounds_the_points() {
        let times: Vec<i64> = (0..1000).collect();
        let s = spread(&times, 128);
        assert_eq!(s.len(), 128);
        assert_eq!((s[0], s[127]), (0, 999));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(spread(&times[..5], 128), times[..5]);
    }

    #[test]
    fn coverage_counts_what_was_held_at_each_checkpoint() {
        let checkpoints = [10, 20, 30, 40];
        let mut c = Coverage::new(checkpoints.len());
        c.add(&checkpoints, 5, None, 1); // held at all
        c.add(&checkpoints, 10, Some(30), 2); // at 10 and 20 (released at 30: not held then)
        c.add(&checkpoints, 21, Some(29), 4); // between two checkpoints: none
        c.add(&checkpoints, 35, Some(99), 8); // at 40
        let (counts, bytes) = c.totals();
        assert_eq!(counts, [2, 2, 1, 2]);
        assert_eq!(bytes, [3, 3, 1, 9]);
    }
}
