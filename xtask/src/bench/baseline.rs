//! `--baseline PATH`: an older leaktrace run as a second condition of the
//! same rounds as the binary under test (open+close loop, 1,000,000
//! outstanding fds), so both see the same minutes of the host. Every measure
//! here is a cost (time, memory): one passes when the new binary's median is
//! within the baseline's spread of rounds or below it. A difference smaller
//! than the baseline's own round-to-round variation is not one the benchmark
//! can tell from noise, and one below every baseline round is a gain.
//!
//! This module owns the verdict and its line in the results; the benchmarks
//! run the rounds.

use anyhow::{Context, Result};

use super::markdown::Headline;
use super::stats::median;

/// Where the new median falls against the baseline's rounds.
#[derive(Debug, PartialEq, Eq)]
enum Position {
    Below,
    Within,
    Above,
}

fn position(new_median: f64, min: f64, max: f64) -> Position {
    if new_median < min {
        Position::Below
    } else if new_median > max {
        Position::Above
    } else {
        Position::Within
    }
}

/// The line comparing one measure: the new binary's median, the baseline's
/// median and min..max over its rounds, and whether the first is within the
/// last. `show` formats a value of the measure (with its unit).
pub(super) fn headline(measure: &str, new: &[f64], baseline: &[f64], show: impl Fn(f64) -> String) -> Result<Headline> {
    let new_median = median(new).with_context(|| format!("no rounds of the new binary for {measure}"))?;
    let old_median = median(baseline).with_context(|| format!("no rounds of the baseline for {measure}"))?;
    let finite = || baseline.iter().copied().filter(|v| v.is_finite());
    let min = finite().fold(f64::INFINITY, f64::min);
    let max = finite().fold(f64::NEG_INFINITY, f64::max);
    let rounds = finite().count();
    let measurement = format!("{measure}, new vs baseline");
    let target = "within the baseline's min..max, or below";
    if rounds < 2 {
        // One round has no spread: any difference would be "outside" it.
        let result =
            format!("new {}; baseline {} (one round: no spread to judge by)", show(new_median), show(old_median));
        return Ok(Headline::unmeasured(&measurement, &result, target));
    }
    let (verdict, within) = match position(new_median, min, max) {
        Position::Within => ("within", true),
        Position::Below => ("below every baseline round", true),
        Position::Above => ("above every baseline round", false),
    };
    Ok(Headline::target(
        &measurement,
        format!(
            "new {}; baseline {} ({} over {rounds} rounds): {verdict}",
            show(new_median),
            show(old_median),
            range(&show(min), &show(max))
        ),
        target,
        within,
    ))
}

/// `lo..hi`, their unit said once when they share it: 480..530 ns.
fn range(lo: &str, hi: &str) -> String {
    match (lo.rsplit_once(' '), hi.rsplit_once(' ')) {
        (Some((lo, unit)), Some((hi, same))) if unit == same => format!("{lo}..{hi} {unit}"),
        _ => format!("{lo}..{hi}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(v: f64) -> String {
        format!("{v:.0} ns")
    }

    #[test]
    fn positions_against_the_spread() {
        assert_eq!(position(5.0, 4.0, 6.0), Position::Within);
        assert_eq!(position(4.0, 4.0, 6.0), Position::Within);
        assert_eq!(position(6.0, 4.0, 6.0), Position::Within);
        assert_eq!(position(3.9, 4.0, 6.0), Position::Below);
        assert_eq!(position(6.1, 4.0, 6.0), Position::Above);
    }

    #[test]
    fn a_range_says_its_unit_once() {
        assert_eq!(range("0.950 s", "12.1 s"), "0.950..12.1 s");
        assert_eq!(range("950 ms", "1.2 s"), "950 ms..1.2 s");
        assert_eq!(range("3", "4"), "3..4");
    }

    #[test]
    fn says_new_and_baseline_medians_and_the_spread() {
        let h = headline("ns/pair", &[510.0, 490.0, 500.0], &[480.0, 530.0, 505.0], ns).unwrap();
        assert_eq!(h.measurement, "ns/pair, new vs baseline");
        assert_eq!(h.result, "new 500 ns; baseline 505 ns (480..530 ns over 3 rounds): within");
        assert_eq!(h.met, Some(true));

        let h = headline("report time", &[4.0], &[1.0, 3.0], ns).unwrap();
        assert_eq!(h.result, "new 4 ns; baseline 2 ns (1..3 ns over 2 rounds): above every baseline round");
        assert_eq!(h.met, Some(false));

        let h = headline("report time", &[2.0], &[1.0], ns).unwrap();
        assert_eq!(h.result, "new 2 ns; baseline 1 ns (one round: no spread to judge by)");
        assert_eq!((h.target.as_deref(), h.met), (Some("within the baseline's min..max, or below"), None));

        let h = headline("report time", &[0.5], &[1.0, 3.0], ns).unwrap();
        assert_eq!(h.result, "new 0 ns; baseline 2 ns (1..3 ns over 2 rounds): below every baseline round");
        assert_eq!(h.met, Some(true), "cheaper than every baseline round is no regression");
        assert!(headline("x", &[], &[1.0], ns).is_err());
        assert!(headline("x", &[1.0], &[f64::NAN], ns).is_err());
    }
}
