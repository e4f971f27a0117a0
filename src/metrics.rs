//! Prometheus metrics through the Prometheus project's Rust client
//! (`prometheus-client`), served in the text exposition format (0.0.4) on
//! a second listener (`:8081/metrics`, where the pro-builder's pod
//! annotations point Prometheus). The names, types and labels are the
//! documented ones ([`CATALOG`]); gauges are read at scrape time.

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::AtomicI64;

/// Histogram buckets for whole builds, in seconds.
const BUILD_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// Histogram buckets for single steps, in seconds.
const STEP_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Every metric kiln exports: name, type, help.
pub const CATALOG: &[(&str, &str, &str)] = &[
    ("kiln_builds_in_flight", "gauge", "Builds running now."),
    ("kiln_pending_uploads", "gauge", "Request bodies being received (not yet authenticated)."),
    ("kiln_build_duration_seconds", "histogram", "Whole builds (request to final status), by result (success|failed)."),
    ("kiln_build_failures_total", "counter", "Failed builds, by reason."),
    ("kiln_http_requests_total", "counter", "HTTP requests by route and status code."),
    ("kiln_cache_hits_total", "counter", "Build steps satisfied from the cache."),
    ("kiln_cache_misses_total", "counter", "Build steps executed."),
    ("kiln_step_duration_seconds", "histogram", "Executed steps, by op (source|exec|file)."),
    ("kiln_pulled_bytes_total", "counter", "Compressed bytes downloaded from registries."),
    ("kiln_pushed_bytes_total", "counter", "Compressed bytes uploaded to registries."),
    ("kiln_step_egress_blocked_total", "counter", "Connections and packets of RUN steps refused by the egress policy."),
];

/// Counters whose series carry labels (no unlabelled zero series).
const LABELLED_COUNTERS: &[&str] = &["kiln_http_requests_total", "kiln_build_failures_total"];

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn build_histogram() -> Histogram {
    Histogram::new(BUILD_BUCKETS.iter().copied())
}

fn step_histogram() -> Histogram {
    Histogram::new(STEP_BUCKETS.iter().copied())
}

/// The registry and handles to its metrics by name.
pub struct Metrics {
    registry: Registry,
    counters: HashMap<&'static str, Family<Labels, Counter>>,
    histograms: HashMap<&'static str, HistogramFamily>,
    gauges: HashMap<&'static str, Gauge<i64, AtomicI64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            counters: HashMap::new(),
            histograms: HashMap::new(),
            gauges: HashMap::new(),
        };
        for (name, kind, help) in CATALOG {
            // The client adds the period, and `_total` to counters.
            let help = help.trim_end_matches('.');
            match *kind {
                "gauge" => {
                    let gauge = Gauge::default();
                    m.registry.register(*name, help, gauge.clone());
                    m.gauges.insert(name, gauge);
                }
                "counter" => {
                    let family = Family::<Labels, Counter>::default();
                    if !LABELLED_COUNTERS.contains(name) {
                        drop(family.get_or_create(&Vec::new()));
                    }
                    m.registry.register(name.trim_end_matches("_total"), help, family.clone());
                    m.counters.insert(name, family);
                }
                _ => {
                    let make: fn() -> Histogram =
                        if *name == "kiln_build_duration_seconds" { build_histogram } else { step_histogram };
                    let family = HistogramFamily::new_with_constructor(make);
                    m.registry.register(*name, help, family.clone());
                    m.histograms.insert(name, family);
                }
            }
        }
        m
    }
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

impl Metrics {
    /// Adds `by` to a counter of [`CATALOG`].
    pub fn inc(&self, name: &'static str, pairs: &[(&'static str, &str)], by: f64) {
        if let Some(family) = self.counters.get(name) {
            family.get_or_create(&labels(pairs)).inc_by(by.max(0.0) as u64);
        }
    }

    /// Records one observation in a histogram of [`CATALOG`].
    pub fn observe(&self, name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
        if let Some(family) = self.histograms.get(name) {
            family.get_or_create(&labels(pairs)).observe(value);
        }
    }

    /// The exposition text; `gauges` are current values read by the caller.
    pub fn render(&self, gauges: &[(&str, f64)]) -> String {
        for (name, gauge) in &self.gauges {
            // Both gauges count things: whole numbers.
            gauge.set(gauges.iter().find(|(n, _)| n == name).map_or(0.0, |(_, v)| *v) as i64);
        }
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// The `Content-Type` of [`Metrics::render`]'s text.
    pub const CONTENT_TYPE: &'static str = prometheus_text::CONTENT_TYPE;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.inc("kiln_http_requests_total", &[("route", "/build"), ("code", "200")], 1.0);
        m.inc("kiln_http_requests_total", &[("route", "/build"), ("code", "200")], 1.0);
        m.observe("kiln_build_duration_seconds", &[("result", "success")], 0.3);
        m.observe("kiln_step_duration_seconds", &[("op", "exec")], 0.02);
        m.inc("kiln_build_failures_total", &[("reason", "step_failed")], 1.0);
        let text = m.render(&[("kiln_builds_in_flight", 2.0)]);
        assert!(text.contains("kiln_build_failures_total{reason=\"step_failed\"} 1\n"), "{text}");
        assert!(text.contains("kiln_http_requests_total{route=\"/build\",code=\"200\"} 2\n"), "{text}");
        assert!(text.contains("kiln_build_duration_seconds_bucket{result=\"success\",le=\"0.25\"} 0\n"), "{text}");
        assert!(text.contains("kiln_build_duration_seconds_bucket{result=\"success\",le=\"0.5\"} 1\n"), "{text}");
        assert!(text.contains("kiln_build_duration_seconds_bucket{result=\"success\",le=\"1\"} 1\n"), "{text}");
        assert!(text.contains("kiln_build_duration_seconds_bucket{result=\"success\",le=\"+Inf\"} 1\n"), "{text}");
        assert!(text.contains("kiln_build_duration_seconds_count{result=\"success\"} 1\n"), "{text}");
        assert!(text.contains("kiln_builds_in_flight 2\n"), "{text}");
        assert!(text.contains("kiln_cache_hits_total 0\n"), "{text}");
        assert!(!text.contains("kiln_http_requests_total 0"), "no unlabelled request series: {text}");
        for (name, _, help) in CATALOG {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}: {text}");
            assert!(text.contains(&format!("# HELP {name} {help}\n")), "{name}'s help, one period: {text}");
        }
    }

    #[test]
    fn a_histogram_without_observations_writes_nothing_and_counters_start_at_zero() {
        let text = Metrics::default().render(&[]);
        assert!(!text.contains("kiln_step_duration_seconds"), "{text}");
        assert!(text.contains("kiln_cache_misses_total 0\n") && text.contains("kiln_pending_uploads 0\n"), "{text}");
    }

    #[test]
    fn the_text_parses_as_prometheus_exposition_lines() {
        let m = Metrics::default();
        m.inc("kiln_pulled_bytes_total", &[], 1234.0);
        m.observe("kiln_step_duration_seconds", &[("op", "exec")], 0.02);
        for line in m.render(&[]).lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            assert!(value.parse::<f64>().is_ok(), "value of {line}");
            assert!(series.starts_with("kiln_"), "{line}");
        }
    }
}
