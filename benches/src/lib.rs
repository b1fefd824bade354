//! Shared helpers for the benchmarks in `benches/` (the crate holds no library code of its own).

/// The median of some measurements (0 when there are none).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// `ours / theirs` as `1.23x`, or `-` when there is no measurement to compare with.
pub fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 {
        format!("{:.2}x", ours / theirs)
    } else {
        "-".into()
    }
}
