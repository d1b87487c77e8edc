//! Reading Prometheus text exposition as the tests scrape it from `/metrics`.

/// The value of the first sample whose line starts with `series` (name and labels, e.g.
/// `kelos_hooks_deliveries_total{outcome="delivered"}`); 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
