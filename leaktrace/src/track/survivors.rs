//! When the resources a stack still holds were acquired, and until when
//! they were held (their process's exit, or the end of the window): a
//! bounded, evenly thinned set.
//!
//! A short `run` (a test binary that leaks in a loop for a second) is
//! sampled too few times for a verdict, but what it still holds at exit
//! says how it got there: a loop that leaks leaves survivors acquired all
//! along the run, a pool opened once leaves them at the start, a ring that
//! replaces its oldest leaves them at the end, and short processes that each
//! hold the same few resources until they exit (a test suite's) leave them
//! spread out but never many at once. [`Survivors::curve`] turns the times
//! into the count held at evenly spaced moments, a lower bound of what was
//! held then (released ones are not in it), which the verdict rule judges
//! like samples.

/// Acquisition times kept per stack.
pub(crate) const MAX_TIMES: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Survivors {
    /// (acquired, held until), CLOCK_MONOTONIC ns.
    times: Vec<(u64, u64)>,
    /// Each kept time stands for this many acquisitions.
    stride: u64,
    /// Acquisitions offered since the last one kept.
    skipped: u64,
}

impl Default for Survivors {
    fn default() -> Self {
        Survivors { times: Vec::new(), stride: 1, skipped: 0 }
    }
}

impl Survivors {
    pub(crate) fn add(&mut self, acquired_ns: u64, until_ns: u64) {
        self.skipped += 1;
        if self.skipped < self.stride {
            return;
        }
        self.skipped = 0;
        self.times.push((acquired_ns, until_ns));
        if self.times.len() > MAX_TIMES {
            self.thin();
        }
    }

    fn thin(&mut self) {
        self.times.sort_unstable();
        self.times = self.times.iter().step_by(2).copied().collect();
        self.stride *= 2;
    }

    /// Adds `other`'s times, at the coarser of the two strides.
    pub(crate) fn merge(&mut self, other: &Survivors) {
        let mut other = other.clone();
        while other.stride < self.stride {
            other.thin();
        }
        while self.stride < other.stride {
            self.thin();
        }
        self.times.extend(other.times);
        while self.times.len() > MAX_TIMES {
            self.thin();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.times.len()
    }

    /// The earliest acquisition kept (thinning keeps the earliest).
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.times.iter().map(|&(a, _)| a).min()
    }

    /// The count held at `points` evenly spaced moments after `from_ns` up
    /// to `until_ns` (what was acquired by then and still held then), scaled
    /// from the kept times to `count`: (seconds since `from_ns`, count).
    pub(crate) fn curve(&self, count: u64, from_ns: u64, until_ns: u64, points: usize) -> (Vec<f64>, Vec<f64>) {
        let span = until_ns.saturating_sub(from_ns).max(1);
        let kept = self.times.len().max(1) as f64;
        (1..=points)
            .map(|i| {
                let at = from_ns + span * i as u64 / points as u64;
                let held = self.times.iter().filter(|&&(a, u)| a <= at && at <= u).count() as f64;
                ((at - from_ns) as f64 / 1e9, (count as f64 * held / kept).round())
            })
            .unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::verdict::{judge, Rule, Verdict};

    const S: u64 = 1_000_000_000;

    fn verdict(times: impl IntoIterator<Item = u64>, until: u64) -> Verdict {
        let mut s = Survivors::default();
        let mut count = 0;
        for t in times {
            s.add(t, until);
            count += 1;
        }
        let (x, y) = s.curve(count, 0, until, 12);
        judge(&x, &y, &Rule::COUNT, "files").verdict
    }

    #[test]
    fn a_loop_that_leaks_all_along_is_a_leak() {
        // 100 leaked over a 2 s run.
        assert_eq!(verdict((0..100).map(|i| i * 2 * S / 100), 2 * S), Verdict::Leak);
    }

    #[test]
    fn held_by_design_is_not() {
        // A pool of 4 opened at the start of a 2 s run.
        assert_eq!(verdict((0..4).map(|i| i * 1000), 2 * S), Verdict::Steady);
        // A ring of 8 whose survivors are the last 8 it opened.
        assert_eq!(verdict((0..8).map(|i| 2 * S - 400_000_000 + i * 50_000_000), 2 * S), Verdict::Steady);
        // A singleton.
        assert_eq!(verdict([S / 2], 2 * S), Verdict::Steady);
    }

    #[test]
    fn processes_that_each_hold_a_few_until_they_exit_do_not_grow() {
        // 50 short processes one after the other, each holding 2 until it
        // exits 20 ms later: never more than 2 or 4 at once.
        let mut s = Survivors::default();
        for p in 0..50u64 {
            let start = p * S / 50;
            s.add(start, start + 20_000_000);
            s.add(start + 1000, start + 20_000_000);
        }
        let (x, y) = s.curve(100, 0, S, 12);
        assert!(y.iter().all(|&v| v <= 4.0), "{y:?}");
        assert_ne!(judge(&x, &y, &Rule::COUNT, "files").verdict, Verdict::Leak);
    }

    #[test]
    fn the_curve_counts_what_was_acquired_by_each_moment() {
        let mut s = Survivors::default();
        for t in [1, 2, 3, 4] {
            s.add(t * S, 4 * S);
        }
        let (x, y) = s.curve(4, 0, 4 * S, 4);
        assert_eq!(x, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(y, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn times_are_bounded_and_thinned_evenly() {
        let mut s = Survivors::default();
        for t in 0..10_000u64 {
            s.add(t, 10_000);
        }
        assert!(s.len() <= MAX_TIMES && s.len() > MAX_TIMES / 2, "{}", s.len());
        let (_, y) = s.curve(10_000, 0, 10_000, 4);
        for (i, v) in y.iter().enumerate() {
            let want = 2_500.0 * (i + 1) as f64;
            assert!((v - want).abs() <= 0.02 * 10_000.0, "{y:?}");
        }
        let mut other = Survivors::default();
        other.add(20_000, 20_000);
        s.merge(&other);
        assert!(s.len() <= MAX_TIMES);
    }
}
