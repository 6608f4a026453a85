//! The outstanding set over time: one series of samples per stack, on one
//! shared timeline, in bounded memory.
//!
//! Every series has a point for every sample since it first held something
//! (zero when it held nothing), so series can be added point by point when
//! stacks merge. When the timeline is full, every other sample is dropped
//! (the newest is kept) and from then on only one sample in two is kept:
//! a long session keeps its whole span at a coarser step. Series that held
//! nothing for all their retained samples are forgotten; beyond
//! `max_series` new stacks are not followed, and counted.

use std::collections::HashMap;
use std::hash::Hash;

use super::survivors::Survivors;

/// Samples kept on the timeline.
pub(crate) const MAX_POINTS: usize = 128;

/// What one stack held at one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Point {
    pub count: u64,
    pub bytes: u64,
    /// Age of the oldest resource held then (0 when none).
    pub oldest_age_ns: u64,
}

/// What a stack held at a sample, as the sampler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Observed {
    pub count: u64,
    pub bytes: u64,
    /// Acquisition time of the oldest resource held (CLOCK_MONOTONIC ns).
    pub oldest_acquired_ns: u64,
}

#[derive(Clone, Debug)]
struct Series {
    /// Index on the timeline of the first point.
    start: usize,
    points: Vec<Stored>,
    first_acquired_ns: u64,
}

/// A point as kept: 16 bytes instead of 24 (thousands of stacks times
/// [`MAX_POINTS`]); counts saturate at 4 billion, ages are kept in ms.
#[derive(Clone, Copy, Debug, Default)]
struct Stored {
    bytes: u64,
    count: u32,
    oldest_age_ms: u32,
}

impl From<Point> for Stored {
    fn from(p: Point) -> Stored {
        Stored {
            bytes: p.bytes,
            count: u32::try_from(p.count).unwrap_or(u32::MAX),
            oldest_age_ms: u32::try_from(p.oldest_age_ns / 1_000_000).unwrap_or(u32::MAX),
        }
    }
}

impl From<Stored> for Point {
    fn from(s: Stored) -> Point {
        Point { count: s.count.into(), bytes: s.bytes, oldest_age_ns: u64::from(s.oldest_age_ms) * 1_000_000 }
    }
}

/// One stack's samples, ready for judging and reporting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Samples {
    /// CLOCK_MONOTONIC ns of each point.
    pub times_ns: Vec<u64>,
    pub points: Vec<Point>,
    /// The earliest acquisition ever seen held by the stack.
    pub first_acquired_ns: Option<u64>,
    /// When what the stack holds at the end was acquired, that end, and
    /// the stack's first acquisition (0: not known).
    pub survivors: Survivors,
    pub until_ns: u64,
    pub since_ns: u64,
}

impl Samples {
    /// Adds `other` point by point, aligned on their common times (the
    /// timeline is shared, so one is a suffix of the other).
    pub(crate) fn add(&mut self, other: &Samples) {
        let first = self.first_acquired_ns;
        let mut survivors = std::mem::take(&mut self.survivors);
        survivors.merge(&other.survivors);
        let until_ns = self.until_ns.max(other.until_ns);
        let since_ns = earliest_known(self.since_ns, other.since_ns);
        if other.times_ns.len() > self.times_ns.len() {
            let mut longer = other.clone();
            longer.add_aligned(self);
            *self = longer;
        } else {
            self.add_aligned(other);
        }
        self.survivors = survivors;
        self.until_ns = until_ns;
        self.since_ns = since_ns;
        self.first_acquired_ns = match (first, other.first_acquired_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn add_aligned(&mut self, shorter: &Samples) {
        let offset = self.times_ns.len() - shorter.times_ns.len();
        for (into, p) in self.points[offset..].iter_mut().zip(&shorter.points) {
            into.count += p.count;
            into.bytes += p.bytes;
            into.oldest_age_ns = into.oldest_age_ns.max(p.oldest_age_ns);
        }
    }
}

/// The earlier of two times where 0 means not known.
pub(crate) fn earliest_known(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, t) | (t, 0) => t,
        (a, b) => a.min(b),
    }
}

pub(crate) struct History<K> {
    times_ns: Vec<u64>,
    /// One sample in `stride` is kept; `skipped` counts those since the last.
    stride: u32,
    skipped: u32,
    series: HashMap<K, Series>,
    max_series: usize,
    /// The most stacks seen at one sample that were not followed because
    /// `max_series` were.
    dropped: u64,
}

impl<K: Hash + Eq + Clone> History<K> {
    pub(crate) fn new(max_series: usize) -> Self {
        History { times_ns: Vec::new(), stride: 1, skipped: 0, series: HashMap::new(), max_series, dropped: 0 }
    }

    /// Records one sample of the whole outstanding set at `at_ns`, unless
    /// the stride (once the history is full, one sample in `stride` is kept)
    /// skips it.
    pub(crate) fn record(&mut self, at_ns: u64, observed: &HashMap<K, Observed>) {
        self.skipped += 1;
        if self.skipped < self.stride {
            return;
        }
        self.append(at_ns, observed);
    }

    /// Records a sample whatever the stride: the last one of a session,
    /// which the report's counts must match.
    pub(crate) fn record_kept(&mut self, at_ns: u64, observed: &HashMap<K, Observed>) {
        self.skipped += 1;
        self.append(at_ns, observed);
    }

    fn append(&mut self, at_ns: u64, observed: &HashMap<K, Observed>) {
        self.skipped = 0;
        if self.times_ns.len() == MAX_POINTS {
            self.thin();
        }
        let index = self.times_ns.len();
        self.times_ns.push(at_ns);
        for (key, series) in &mut self.series {
            series.points.push(match observed.get(key) {
                Some(o) => {
                    series.first_acquired_ns = series.first_acquired_ns.min(o.oldest_acquired_ns);
                    point(at_ns, o).into()
                }
                None => Stored::default(),
            });
        }
        let mut unfollowed = 0;
        for (key, o) in observed {
            if o.count == 0 || self.series.contains_key(key) {
                continue;
            }
            if self.series.len() >= self.max_series {
                unfollowed += 1;
                continue;
            }
            let series =
                Series { start: index, points: vec![point(at_ns, o).into()], first_acquired_ns: o.oldest_acquired_ns };
            self.series.insert(key.clone(), series);
        }
        self.dropped = self.dropped.max(unfollowed);
    }

    /// Drops every other sample, keeping the newest, and the series that
    /// held nothing in what is left.
    fn thin(&mut self) {
        let len = self.times_ns.len();
        let kept = |i: usize| (len - 1 - i).is_multiple_of(2);
        self.times_ns = self.times_ns.iter().enumerate().filter(|(i, _)| kept(*i)).map(|(_, t)| *t).collect();
        for series in self.series.values_mut() {
            let start = series.start;
            series.points =
                series.points.iter().enumerate().filter(|(i, _)| kept(start + i)).map(|(_, p)| *p).collect();
            // Kept indices before `start`, one in two.
            series.start = (0..start).filter(|&i| kept(i)).count();
        }
        self.series.retain(|_, s| s.points.iter().any(|p| p.count > 0));
        self.stride *= 2;
    }

    /// The samples of one stack since it first held something.
    pub(crate) fn samples(&self, key: &K) -> Option<Samples> {
        let series = self.series.get(key)?;
        Some(Samples {
            times_ns: self.times_ns[series.start..].to_vec(),
            points: series.points.iter().map(|&p| p.into()).collect(),
            first_acquired_ns: Some(series.first_acquired_ns),
            ..Samples::default()
        })
    }

    /// Keeps only the series `keep` says to (those of processes still
    /// there, in the daemon).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.series.retain(|k, _| keep(k));
    }

    /// The stacks followed.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.series.keys()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    pub(crate) fn max_series(&self) -> usize {
        self.max_series
    }
}

fn point(at_ns: u64, o: &Observed) -> Point {
    let oldest_age_ns = if o.count == 0 { 0 } else { at_ns.saturating_sub(o.oldest_acquired_ns) };
    Point { count: o.count, bytes: o.bytes, oldest_age_ns }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(pairs: &[(&'static str, u64)]) -> HashMap<&'static str, Observed> {
        pairs.iter().map(|&(k, n)| (k, Observed { count: n, bytes: n * 10, oldest_acquired_ns: 0 })).collect()
    }

    fn counts(h: &History<&'static str>, key: &'static str) -> Vec<u64> {
        h.samples(&key).map(|s| s.points.iter().map(|p| p.count).collect()).unwrap_or_default()
    }

    #[test]
    fn series_start_when_a_stack_first_holds_something() {
        let mut h = History::new(10);
        const MS: u64 = 1_000_000;
        h.record(MS, &seen(&[("a", 1)]));
        h.record(2 * MS, &seen(&[("a", 2), ("b", 0)]));
        h.record(3 * MS, &seen(&[("b", 5)]));
        assert_eq!(counts(&h, "a"), vec![1, 2, 0]);
        assert_eq!(counts(&h, "b"), vec![5]);
        let b = h.samples(&"b").expect("b");
        assert_eq!(b.times_ns, vec![3 * MS]);
        assert_eq!(b.points[0], Point { count: 5, bytes: 50, oldest_age_ns: 3 * MS });
    }

    #[test]
    fn a_full_timeline_is_thinned_keeping_the_newest_sample() {
        let mut h = History::new(10);
        for t in 0..MAX_POINTS as u64 {
            h.record(t, &seen(&[("a", t)]));
        }
        h.record(1000, &seen(&[("a", 1000)]));
        let a = h.samples(&"a").expect("a");
        assert_eq!(a.times_ns.len(), MAX_POINTS / 2 + 1);
        assert_eq!(a.times_ns[..3], [1, 3, 5]);
        assert_eq!(a.times_ns[MAX_POINTS / 2 - 1..], [127, 1000]);
        assert_eq!(a.points.iter().map(|p| p.count).collect::<Vec<_>>(), a.times_ns);
        // One sample in two from now on, unless it must be kept.
        h.record(1001, &seen(&[("a", 1)]));
        assert_eq!(h.samples(&"a").expect("a").times_ns.len(), MAX_POINTS / 2 + 1);
        h.record(1002, &seen(&[("a", 1)]));
        h.record_kept(1003, &seen(&[("a", 1)]));
        assert_eq!(h.samples(&"a").expect("a").times_ns[MAX_POINTS / 2 + 1..], [1002, 1003]);
    }

    #[test]
    fn late_series_stay_aligned_through_thinning() {
        let mut h = History::new(10);
        for t in 0..MAX_POINTS as u64 {
            let mut s = seen(&[("a", 1)]);
            if t >= 100 {
                s.insert("late", Observed { count: t, bytes: 0, oldest_acquired_ns: 0 });
            }
            h.record(t, &s);
        }
        h.record(500, &seen(&[("late", 500)]));
        let late = h.samples(&"late").expect("late");
        assert_eq!(late.times_ns.first(), Some(&101));
        assert_eq!(late.points.iter().map(|p| p.count).collect::<Vec<_>>(), late.times_ns);
    }

    #[test]
    fn empty_series_are_forgotten_and_the_cap_is_counted() {
        let mut h = History::new(1);
        h.record(0, &seen(&[("a", 1)]));
        h.record(1, &seen(&[("b", 1)]));
        h.record(2, &seen(&[("b", 1)]));
        assert_eq!(h.dropped(), 1, "b, seen twice, is one stack without history");
        for t in 3..MAX_POINTS as u64 + 3 {
            h.record(t, &seen(&[]));
        }
        assert_eq!(h.len(), 0, "a held nothing since the thinning");
    }

    #[test]
    fn samples_add_on_their_common_times() {
        let mut long = Samples {
            times_ns: vec![1, 2, 3],
            points: vec![Point { count: 1, ..Point::default() }; 3],
            first_acquired_ns: Some(5),
            ..Samples::default()
        };
        long.survivors.add(5, 9);
        let short = Samples {
            times_ns: vec![2, 3],
            points: vec![Point { count: 2, ..Point::default() }; 2],
            first_acquired_ns: Some(1),
            until_ns: 9,
            ..Samples::default()
        };
        let mut other = short.clone();
        other.add(&long);
        long.add(&short);
        assert_eq!(long, other);
        assert_eq!(long.points.iter().map(|p| p.count).collect::<Vec<_>>(), vec![1, 3, 3]);
        assert_eq!(long.first_acquired_ns, Some(1));
        assert_eq!((long.survivors.len(), long.until_ns), (1, 9));
    }
}
