//! Verdicts: does the count from one stack grow, or is it held by design?
//!
//! Outstanding is not leaked: a pool, a listening socket or a log file is
//! held for the whole life of a service. A leak is growth that goes on while
//! the service runs. The rule looks at the stack's sampled counts (bytes for
//! memory mappings) with two robust statistics, neither of which a single
//! outlier or a step can fool on its own:
//!
//! - the Theil-Sen slope (median of the slopes between every pair of
//!   samples) says how fast it grows;
//! - the Mann-Kendall test (signs of every later-minus-earlier difference,
//!   ties accounted for) says whether the upward trend is more than noise.
//!
//! `leak`: at least [`Rule::min_points`] samples, Mann-Kendall z at least
//! [`Rule::z_leak`] (one-sided p < 0.01), a positive slope that adds up to at
//! least [`Rule::min_growth`] over the window, and a new high in the later
//! half of the window (the growth goes on: a pool that filled up early and
//! stayed flat is not a leak).
//! `suspect`: not enough samples yet, or growth without that evidence (noisy,
//! or it stopped), or a burst of at least [`Rule::burst`] that was kept.
//! `steady`: flat, bounded, shrinking or churning; a rise that was given
//! back (a cache released by a later event); a small set acquired at once
//! and kept (a pool).
//!
//! A burst and a pool have the same curve: a rise, then flat. What separates
//! them here is size: a pool is a handful (4 database files, 8 ring
//! entries), a burst that stopped is dozens (50 files from a loop). The
//! report's builder adds what the curve cannot see: the state of TCP
//! connections (CLOSE_WAIT held for long is a leak whatever the curve, a
//! pool of ESTABLISHED connections is a pool whatever its size).

use std::fmt::Write;

use super::history::Samples;
use crate::resource::{Kind, Resource};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    Leak,
    Suspect,
    Steady,
}

impl Verdict {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Verdict::Leak => "leak",
            Verdict::Suspect => "suspect",
            Verdict::Steady => "steady",
        }
    }

    /// How much it calls for attention: leaks first.
    pub(crate) fn severity(self) -> u8 {
        match self {
            Verdict::Leak => 3,
            Verdict::Suspect => 2,
            Verdict::Steady => 1,
        }
    }
}

/// The parameters of the rule (documented in the README).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rule {
    /// Fewer samples give `suspect`: six strictly rising samples are the
    /// fewest whose Mann-Kendall z passes `z_leak`.
    pub min_points: usize,
    /// One-sided p < 0.01.
    pub z_leak: f64,
    /// One-sided p < 0.05: growth this likely is at least `suspect`.
    pub z_suspect: f64,
    /// Growth over the window below this (in resources, or bytes for
    /// mappings) is a pool settling, not a leak.
    pub min_growth: f64,
    /// A rise that stopped and was kept is a pool below this, a leak that
    /// stopped (`suspect`) from it on. None: every such rise is a pool (bytes:
    /// an arena or a thread's stack is large and kept by design).
    pub burst: Option<f64>,
}

impl Rule {
    /// For counts of fds and connections.
    pub(crate) const COUNT: Rule =
        Rule { min_points: 6, z_leak: 2.326, z_suspect: 1.645, min_growth: 3.0, burst: Some(16.0) };
    /// For bytes of memory mappings: at least three pages.
    pub(crate) const BYTES: Rule = Rule { min_growth: 3.0 * 4096.0, burst: None, ..Rule::COUNT };
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Judgement {
    pub verdict: Verdict,
    pub reason: String,
    /// Theil-Sen slope per minute, when there are two samples or more.
    pub per_minute: Option<f64>,
    /// The series rose, then stopped and kept what it gained: judged by the
    /// burst's size alone, which what is held (its state) may overrule.
    pub burst: bool,
}

/// The verdict on one stack's samples: counts for fds and connections,
/// bytes for mappings (whose growth per minute is still in mappings).
/// `born_in_window`: the stack's first acquisition came after the window
/// began, so it held nothing before its first sample (see [`judge_from`]).
pub(crate) fn judgement(
    kind: Kind,
    resource: Resource,
    samples: &Samples,
    seconds: &[f64],
    born_in_window: bool,
) -> Judgement {
    let counts: Vec<f64> = samples.points.iter().map(|p| p.count as f64).collect();
    if kind.in_bytes() {
        let bytes: Vec<f64> = samples.points.iter().map(|p| p.bytes as f64).collect();
        let mut j = judge_from(seconds, &bytes, &Rule::BYTES, &kind.unit(resource), born_in_window);
        j.per_minute = theil_sen(seconds, &counts).map(|s| s * 60.0);
        j
    } else {
        judge_from(seconds, &counts, &Rule::COUNT, &kind.unit(resource), born_in_window)
    }
}

/// Judges one series: `seconds` ascending, `values` the samples there.
/// `unit` names what the values count in the reason ("files", "bytes").
pub(crate) fn judge(seconds: &[f64], values: &[f64], rule: &Rule, unit: &str) -> Judgement {
    judge_from(seconds, values, rule, unit, false)
}

/// [`judge`], knowing whether the series started from nothing: a stack is
/// sampled only once it holds something, so 50 files opened at once show
/// as a flat 50 from the first sample. With `from_zero`, what the stack
/// kept is measured from 0, which is what tells a burst from a flat series
/// that was already there when the window began.
pub(crate) fn judge_from(seconds: &[f64], values: &[f64], rule: &Rule, unit: &str, from_zero: bool) -> Judgement {
    let n = seconds.len().min(values.len());
    let (seconds, values) = (&seconds[..n], &values[..n]);
    let slope = theil_sen(seconds, values);
    let per_minute = slope.map(|s| s * 60.0);
    if n < rule.min_points {
        let reason =
            format!("seen in {n} sample{}; a verdict needs {}", if n == 1 { "" } else { "s" }, rule.min_points);
        return Judgement { verdict: Verdict::Suspect, reason, per_minute, burst: false };
    }
    let slope = slope.unwrap_or(0.0);
    let span = seconds[n - 1] - seconds[0];
    let growth = slope * span;
    let z = mann_kendall_z(values);
    let half = n / 2;
    let early_high = values[..half].iter().copied().fold(f64::MIN, f64::max);
    let late_high = values[half..].iter().copied().fold(f64::MIN, f64::max);
    let (low, high) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));

    let last = values[n - 1];
    let first = if from_zero { 0.0 } else { values[0] };
    let rise = high - first;
    let kept = last - first;
    // No spike above the level kept at the end in the later half: a rise
    // that stayed, not one that came and went.
    let stayed = late_high <= early_high.max(last);
    let mut burst = false;
    let mut reason = String::new();
    let verdict = if rise >= rule.min_growth && high - last >= (rise / 2.0).max(rule.min_growth) {
        // A cache that grew and was released by a later event (a checkpoint,
        // an eviction): whatever its trend before, it gives back.
        let _ = write!(
            reason,
            "rose from {} to {} {unit}, then gave back down to {}: held for a while, not kept",
            fmt(first),
            fmt(high),
            fmt(last)
        );
        Verdict::Steady
    } else if slope > 0.0 && growth >= rule.min_growth && z >= rule.z_leak && late_high > early_high {
        let _ = write!(
            reason,
            "grows {} {unit}/min over {n} samples ({}; Mann-Kendall z={z:.1})",
            fmt(slope * 60.0),
            secs(span)
        );
        Verdict::Leak
    } else if slope > 0.0 && growth >= rule.min_growth && z >= rule.z_leak {
        let _ = write!(
            reason,
            "grew from {} to {} {unit}, then no new high in the later half of the window",
            fmt(low),
            fmt(high)
        );
        Verdict::Suspect
    } else if slope > 0.0 && z >= rule.z_leak {
        let _ = write!(
            reason,
            "grows {} {unit}/min, but only {} over the window (a leak grows at least {})",
            fmt(slope * 60.0),
            fmt(growth),
            fmt(rule.min_growth)
        );
        Verdict::Suspect
    } else if slope > 0.0 && (z >= rule.z_suspect || growth >= rule.min_growth) {
        let _ = write!(
            reason,
            "grows {} {unit}/min, but not clearly (Mann-Kendall z={z:.1}, needs {:.2})",
            fmt(slope * 60.0),
            rule.z_leak
        );
        Verdict::Suspect
    } else if rule.burst.is_some_and(|size| kept >= size) && stayed {
        // Rose, then flat: most pairs of samples are flat, so the median
        // slope is 0, and only the size of what was kept tells a leak that
        // stopped from a pool.
        burst = true;
        let _ = write!(
            reason,
            "rose by {} to {} {unit}, then held them all without a new high: a leak that stopped \
             (a pool is smaller than {})",
            fmt(kept),
            fmt(last),
            fmt(rule.burst.unwrap_or_default())
        );
        Verdict::Suspect
    } else if kept >= rule.min_growth && values[0] < last && stayed {
        burst = true;
        let _ = write!(reason, "rose by {} to {} {unit} and held them since: a pool", fmt(kept), fmt(last));
        Verdict::Steady
    } else if low == high {
        let _ = write!(reason, "flat at {} {unit} over {n} samples ({})", fmt(low), secs(span));
        Verdict::Steady
    } else if z <= -rule.z_suspect {
        let _ = write!(reason, "shrinking: {} to {} {unit} over {n} samples", fmt(values[0]), fmt(values[n - 1]));
        Verdict::Steady
    } else {
        let _ = write!(reason, "bounded between {} and {} {unit}, no trend over {n} samples", fmt(low), fmt(high));
        Verdict::Steady
    };
    Judgement { verdict, reason, per_minute, burst }
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn secs(span: f64) -> String {
    format!("{span:.0}s")
}

/// The median of the slopes between every pair of samples at different
/// times; None with fewer than two distinct times.
pub(crate) fn theil_sen(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    let mut slopes = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let dx = x[j] - x[i];
            if dx > 0.0 {
                slopes.push((y[j] - y[i]) / dx);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let m = slopes.len();
    Some(if m % 2 == 1 { slopes[m / 2] } else { (slopes[m / 2 - 1] + slopes[m / 2]) / 2.0 })
}

/// The Mann-Kendall trend statistic as a standard normal z, with the
/// variance corrected for ties (flat stretches are common in counts) and the
/// usual continuity correction; 0 when every value is the same.
pub(crate) fn mann_kendall_z(y: &[f64]) -> f64 {
    let n = y.len();
    let mut s: i64 = 0;
    for i in 0..n {
        for j in i + 1..n {
            s += match y[j].total_cmp(&y[i]) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    let mut sorted = y.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i = j;
    }
    let nf = n as f64;
    let var = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    if var <= 0.0 || s == 0 {
        return 0.0;
    }
    let s = s as f64;
    (s - s.signum()) / var.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> (Vec<f64>, Vec<f64>) {
        ((0..values.len()).map(|i| i as f64).collect(), values.to_vec())
    }

    fn verdict(values: &[f64]) -> Verdict {
        let (x, y) = series(values);
        judge(&x, &y, &Rule::COUNT, "files").verdict
    }

    #[test]
    fn theil_sen_ignores_an_outlier() {
        let x = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(theil_sen(&x, &[0.0, 2.0, 4.0, 60.0, 8.0, 10.0]), Some(2.0));
        assert_eq!(theil_sen(&[1.0], &[5.0]), None);
        assert_eq!(theil_sen(&[1.0, 1.0], &[5.0, 6.0]), None);
    }

    #[test]
    fn mann_kendall_matches_the_textbook_values() {
        // 6 rising values: S = 15, var = 6*5*17/18, z = 14/sqrt(28.33).
        let z = mann_kendall_z(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!((z - 14.0 / (6.0f64 * 5.0 * 17.0 / 18.0).sqrt()).abs() < 1e-12, "{z}");
        assert_eq!(mann_kendall_z(&[4.0; 10]), 0.0);
        assert!(mann_kendall_z(&[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]) < -2.3);
        // Ties shrink the variance: one step of a flat series.
        let z = mann_kendall_z(&[10.0, 10.0, 10.0, 10.0, 11.0, 11.0, 11.0, 11.0, 11.0]);
        assert!((z - 19.0 / (1200.0f64 / 18.0).sqrt()).abs() < 1e-12, "{z}");
    }

    #[test]
    fn a_steady_rise_is_a_leak_at_six_samples() {
        assert_eq!(verdict(&[1.0, 2.0, 3.0, 4.0, 5.0]), Verdict::Suspect);
        assert_eq!(verdict(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), Verdict::Leak);
        let (x, y) = series(&[5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0]);
        let j = judge(&x, &y, &Rule::COUNT, "files");
        assert_eq!(j.per_minute, Some(300.0));
        assert_eq!(j.reason, "grows 300 files/min over 7 samples (6s; Mann-Kendall z=3.0)");
    }

    #[test]
    fn held_by_design_is_steady() {
        // A pool opened once.
        assert_eq!(verdict(&[4.0; 12]), Verdict::Steady);
        // A ring of 8 that opens before it closes, sampled mid-rotation.
        assert_eq!(verdict(&[8.0, 8.0, 9.0, 8.0, 8.0, 8.0, 9.0, 8.0, 8.0, 8.0, 8.0, 9.0]), Verdict::Steady);
        // Request-scoped: mostly nothing held.
        assert_eq!(verdict(&[0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0, 1.0]), Verdict::Steady);
        // A singleton opened late.
        assert_eq!(verdict(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]), Verdict::Steady);
        // Draining.
        assert_eq!(verdict(&[9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0]), Verdict::Steady);
    }

    #[test]
    fn growth_that_stopped_or_is_noisy_is_suspect() {
        // 50 gained in the first samples, flat since: the median slope of a
        // mostly flat series is 0, but 40 kept is a burst, not a pool.
        assert_eq!(
            verdict(&[10.0, 30.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0]),
            Verdict::Suspect
        );
        assert_eq!(verdict(&[0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0]), Verdict::Suspect);
        // Up and down around a rising line.
        assert_eq!(verdict(&[0.0, 6.0, 1.0, 7.0, 2.0, 8.0, 3.0, 9.0]), Verdict::Suspect);
        // A slow leak one step at a time is still a leak.
        assert_eq!(verdict(&[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 6.0]), Verdict::Leak);
    }

    #[test]
    fn a_burst_that_stopped_is_suspect_and_a_pool_steady() {
        // net/http's forgotten Body.Close: 5 more every sample up to 50, then
        // 31 samples flat.
        let mut burst: Vec<f64> = (1..=10).map(|i| f64::from(i) * 5.0).collect();
        burst.extend([50.0; 31]);
        let (x, y) = series(&burst);
        let j = judge(&x, &y, &Rule::COUNT, "files");
        assert_eq!((j.verdict, j.burst), (Verdict::Suspect, true), "{}", j.reason);
        assert!(j.reason.starts_with("rose by 45 to 50 files, then held them all"), "{}", j.reason);
        // A pool of 4 opened at start, from a first sample taken before it.
        let mut pool = vec![0.0];
        pool.extend([4.0; 11]);
        let (x, y) = series(&pool);
        let j = judge(&x, &y, &Rule::COUNT, "files");
        assert_eq!((j.verdict, j.burst), (Verdict::Steady, true), "{}", j.reason);
        assert_eq!(j.reason, "rose by 4 to 4 files and held them since: a pool");
        // Opened before the first sample, it shows flat: from zero, it is
        // still a burst, and a pool still a pool.
        let (x, y) = series(&[50.0; 9]);
        assert_eq!(judge_from(&x, &y, &Rule::COUNT, "files", true).verdict, Verdict::Suspect);
        assert_eq!(judge_from(&x, &y, &Rule::COUNT, "files", false).verdict, Verdict::Steady);
        let (x, y) = series(&[4.0; 9]);
        let j = judge_from(&x, &y, &Rule::COUNT, "files", true);
        assert_eq!((j.verdict, j.reason.as_str()), (Verdict::Steady, "flat at 4 files over 9 samples (8s)"));
        // A burst late in the window is a burst too.
        assert_eq!(verdict(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 20.0, 20.0, 20.0]), Verdict::Suspect);
        // Mappings have no burst size: an arena is large by design.
        let (x, y) = series(&[0.0, 1e6, 1e6, 1e6, 1e6, 1e6, 1e6, 1e6]);
        assert_eq!(judge(&x, &y, &Rule::BYTES, "bytes").verdict, Verdict::Steady);
    }

    #[test]
    fn a_cache_released_by_a_later_event_is_steady() {
        // PostgreSQL's background writer: its open relation files grow from
        // 16 to 38, and a checkpoint releases them.
        let values = [16.0, 18.0, 21.0, 24.0, 27.0, 30.0, 33.0, 36.0, 38.0, 38.0, 17.0];
        let (x, y) = series(&values);
        let j = judge(&x, &y, &Rule::COUNT, "files");
        assert_eq!(j.verdict, Verdict::Steady, "{}", j.reason);
        assert_eq!(j.reason, "rose from 16 to 38 files, then gave back down to 17: held for a while, not kept");
        // A leak that dips a little is still a leak.
        assert_eq!(verdict(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 9.0]), Verdict::Leak);
    }

    #[test]
    fn a_trend_too_small_to_be_a_leak_says_so() {
        // Clear evidence (z well past 2.33) of a rise of 2 over the window.
        let values = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0];
        let x: Vec<f64> = (0..values.len()).map(|i| i as f64 * 0.1).collect();
        let j = judge(&x, &values, &Rule::COUNT, "files");
        assert_eq!(j.verdict, Verdict::Suspect);
        assert!(!j.reason.contains("not clearly"), "{}", j.reason);
        assert!(j.reason.contains("a leak grows at least 3"), "{}", j.reason);
    }

    #[test]
    fn bytes_need_three_pages_of_growth() {
        let x: Vec<f64> = (0..8).map(f64::from).collect();
        let small: Vec<f64> = (0..8).map(|i| f64::from(i) * 1000.0).collect();
        assert_eq!(judge(&x, &small, &Rule::BYTES, "bytes").verdict, Verdict::Suspect);
        let big: Vec<f64> = (0..8).map(|i| f64::from(i) * 65536.0).collect();
        assert_eq!(judge(&x, &big, &Rule::BYTES, "bytes").verdict, Verdict::Leak);
    }
}
