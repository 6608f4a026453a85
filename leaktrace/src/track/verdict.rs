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
//! or it stopped).
//! `steady`: flat, bounded, shrinking or churning.

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
}

impl Rule {
    /// For counts of fds and connections.
    pub(crate) const COUNT: Rule = Rule { min_points: 6, z_leak: 2.326, z_suspect: 1.645, min_growth: 3.0 };
    /// For bytes of memory mappings: at least three pages.
    pub(crate) const BYTES: Rule = Rule { min_growth: 3.0 * 4096.0, ..Rule::COUNT };
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Judgement {
    pub verdict: Verdict,
    pub reason: String,
    /// Theil-Sen slope per minute, when there are two samples or more.
    pub per_minute: Option<f64>,
}

/// The verdict on one stack's samples: counts for fds and connections,
/// bytes for mappings (whose growth per minute is still in mappings).
pub(crate) fn judgement(kind: Kind, resource: Resource, samples: &Samples, seconds: &[f64]) -> Judgement {
    let counts: Vec<f64> = samples.points.iter().map(|p| p.count as f64).collect();
    if kind.in_bytes() {
        let bytes: Vec<f64> = samples.points.iter().map(|p| p.bytes as f64).collect();
        let mut j = judge(seconds, &bytes, &Rule::BYTES, &kind.unit(resource));
        j.per_minute = theil_sen(seconds, &counts).map(|s| s * 60.0);
        j
    } else {
        judge(seconds, &counts, &Rule::COUNT, &kind.unit(resource))
    }
}

/// Judges one series: `seconds` ascending, `values` the samples there.
/// `unit` names what the values count in the reason ("files", "bytes").
pub(crate) fn judge(seconds: &[f64], values: &[f64], rule: &Rule, unit: &str) -> Judgement {
    let n = seconds.len().min(values.len());
    let (seconds, values) = (&seconds[..n], &values[..n]);
    let slope = theil_sen(seconds, values);
    let per_minute = slope.map(|s| s * 60.0);
    if n < rule.min_points {
        let reason =
            format!("seen in {n} sample{}; a verdict needs {}", if n == 1 { "" } else { "s" }, rule.min_points);
        return Judgement { verdict: Verdict::Suspect, reason, per_minute };
    }
    let slope = slope.unwrap_or(0.0);
    let span = seconds[n - 1] - seconds[0];
    let growth = slope * span;
    let z = mann_kendall_z(values);
    let half = n / 2;
    let early_high = values[..half].iter().copied().fold(f64::MIN, f64::max);
    let late_high = values[half..].iter().copied().fold(f64::MIN, f64::max);
    let (low, high) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));

    let mut reason = String::new();
    let verdict = if slope > 0.0 && growth >= rule.min_growth && z >= rule.z_leak && late_high > early_high {
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
    } else if slope > 0.0 && (z >= rule.z_suspect || growth >= rule.min_growth) {
        let _ = write!(
            reason,
            "grows {} {unit}/min, but not clearly (Mann-Kendall z={z:.1}, needs {:.2})",
            fmt(slope * 60.0),
            rule.z_leak
        );
        Verdict::Suspect
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
    Judgement { verdict, reason, per_minute }
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
        // A pool warming up to 50 in the first half, flat since.
        assert_eq!(
            verdict(&[10.0, 30.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0]),
            Verdict::Steady,
            "the median slope of a mostly flat series is 0"
        );
        assert_eq!(verdict(&[0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0]), Verdict::Suspect);
        // Up and down around a rising line.
        assert_eq!(verdict(&[0.0, 6.0, 1.0, 7.0, 2.0, 8.0, 3.0, 9.0]), Verdict::Suspect);
        // A slow leak one step at a time is still a leak.
        assert_eq!(verdict(&[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 6.0]), Verdict::Leak);
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
