//! Medians and the formatting of the numbers the benchmarks report. Pure.

/// The median (the mean of the middle two for an even count); `None` when
/// there is nothing to take it of.
pub(super) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] })
}

/// The `p`th percentile (0 to 100) by nearest rank: the smallest value that
/// at least `p`% of the values do not exceed; `None` when there is nothing
/// to take it of.
pub(super) fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A number with thousands separators and `decimals` decimals: 12,345.6.
pub(super) fn thousands(value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = text.split_once('.').map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, digit) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if value < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') { "-" } else { "" };
    match frac {
        Some(frac) => format!("{sign}{grouped}.{frac}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A difference with its sign: +1,234 or -56.
pub(super) fn signed(value: f64, decimals: usize) -> String {
    let text = thousands(value, decimals);
    if text.starts_with('-') || text.trim_start_matches(['0', '.', ',']).is_empty() {
        text
    } else {
        format!("+{text}")
    }
}

/// `part` as a signed percentage of `whole`: +4.2%.
pub(super) fn percent_of(part: f64, whole: f64) -> String {
    format!("{}%", signed(100.0 * part / whole, 1))
}

/// A ratio such as 0.52 or 103.
pub(super) fn ratio(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// KiB as MiB with one decimal.
pub(super) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A duration in seconds, to the millisecond below 10 s.
pub(super) fn seconds(secs: f64) -> String {
    if secs < 10.0 {
        format!("{secs:.3} s")
    } else {
        format!("{secs:.1} s")
    }
}

/// Minutes and seconds: 14 min 32 s, 10 min, 45 s.
pub(super) fn minutes(secs: f64) -> String {
    let total = secs.round() as u64;
    match (total / 60, total % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn median_ignores_what_is_not_a_number() {
        assert_eq!(median(&[f64::NAN, 5.0, 1.0, f64::INFINITY, 3.0]), Some(3.0));
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn percentile_by_nearest_rank() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&values, 90.0), Some(9.0));
        assert_eq!(percentile(&values, 50.0), Some(5.0));
        assert_eq!(percentile(&values, 100.0), Some(10.0));
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        assert_eq!(percentile(&[3.0, f64::NAN], 90.0), Some(3.0));
        assert_eq!(percentile(&[], 90.0), None);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0, 0), "0");
        assert_eq!(thousands(999.0, 0), "999");
        assert_eq!(thousands(1000.0, 0), "1,000");
        assert_eq!(thousands(1234567.891, 1), "1,234,567.9");
        assert_eq!(thousands(-2041.4, 0), "-2,041");
        assert_eq!(thousands(-0.01, 1), "0.0");
    }

    #[test]
    fn signed_marks_positive_differences() {
        assert_eq!(signed(2100.4, 0), "+2,100");
        assert_eq!(signed(-35.0, 0), "-35");
        assert_eq!(signed(0.0, 0), "0");
        assert_eq!(percent_of(50.0, 2000.0), "+2.5%");
        assert_eq!(percent_of(-50.0, 2000.0), "-2.5%");
    }

    #[test]
    fn ratios_keep_two_significant_places() {
        assert_eq!(ratio(0.523), "0.52");
        assert_eq!(ratio(12.34), "12.3");
        assert_eq!(ratio(103.4), "103");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(mib(258840), "252.8 MiB");
        assert_eq!(seconds(0.2261), "0.226 s");
        assert_eq!(seconds(16.27), "16.3 s");
        assert_eq!(minutes(872.4), "14 min 32 s");
        assert_eq!(minutes(600.2), "10 min");
        assert_eq!(minutes(59.6), "1 min");
        assert_eq!(minutes(3.0), "3 s");
    }
}
