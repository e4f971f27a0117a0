//! Prometheus metrics in the text exposition format, served on a second
//! listener (`:8081/metrics`, where the pro-builder's pod annotations point
//! Prometheus). A small registry of counters and histograms keyed by
//! labels; gauges are read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Histogram buckets for whole builds, in seconds.
const BUILD_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// Histogram buckets for single steps, in seconds.
const STEP_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Every metric kiln exports: name, type, help.
pub const CATALOG: &[(&str, &str, &str)] = &[
    ("kiln_builds_in_flight", "gauge", "Builds running now."),
    ("kiln_pending_uploads", "gauge", "Request bodies being received (not yet authenticated)."),
    ("kiln_build_duration_seconds", "histogram", "Whole builds (request to final status), by result (success|failed)."),
    ("kiln_http_requests_total", "counter", "HTTP requests by route and status code."),
    ("kiln_cache_hits_total", "counter", "Build steps satisfied from the cache."),
    ("kiln_cache_misses_total", "counter", "Build steps executed."),
    ("kiln_step_duration_seconds", "histogram", "Executed steps, by op (source|exec|file)."),
    ("kiln_pulled_bytes_total", "counter", "Compressed bytes downloaded from registries."),
    ("kiln_pushed_bytes_total", "counter", "Compressed bytes uploaded to registries."),
    ("kiln_step_egress_blocked_total", "counter", "Connections and packets of RUN steps refused by the egress policy."),
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    counters: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

/// The registry.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn bounds(name: &str) -> &'static [f64] {
    if name == "kiln_build_duration_seconds" {
        BUILD_BUCKETS
    } else {
        STEP_BUCKETS
    }
}

fn label_text(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Adds `by` to a counter.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)], by: f64) {
        let key = (name, labels.iter().map(|(k, v)| (*k, v.to_string())).collect());
        *self.inner.lock().expect("metrics lock").counters.entry(key).or_default() += by;
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        let key = (name, labels.iter().map(|(k, v)| (*k, v.to_string())).collect());
        let mut inner = self.inner.lock().expect("metrics lock");
        let h = inner.histograms.entry(key).or_default();
        let b = bounds(name);
        h.buckets.resize(b.len(), 0);
        for (slot, bound) in h.buckets.iter_mut().zip(b) {
            if value <= *bound {
                *slot += 1;
            }
        }
        h.sum += value;
        h.count += 1;
    }

    /// The exposition text; `gauges` are current values read by the caller.
    pub fn render(&self, gauges: &[(&str, f64)]) -> String {
        let inner = self.inner.lock().expect("metrics lock");
        let mut out = String::new();
        for (name, kind, help) in CATALOG {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            match *kind {
                "gauge" => {
                    let v = gauges.iter().find(|(n, _)| n == name).map_or(0.0, |(_, v)| *v);
                    let _ = writeln!(out, "{name} {v}");
                }
                "counter" => {
                    let mut any = false;
                    for ((n, labels), v) in inner.counters.iter().filter(|((n, _), _)| n == name) {
                        let _ = writeln!(out, "{n}{} {v}", label_text(labels, None));
                        any = true;
                    }
                    if !any && !name.contains("http") {
                        let _ = writeln!(out, "{name} 0");
                    }
                }
                _ => {
                    for ((n, labels), h) in inner.histograms.iter().filter(|((n, _), _)| n == name) {
                        for (bound, c) in bounds(n).iter().zip(&h.buckets) {
                            let _ =
                                writeln!(out, "{n}_bucket{} {c}", label_text(labels, Some(("le", bound.to_string()))));
                        }
                        let _ =
                            writeln!(out, "{n}_bucket{} {}", label_text(labels, Some(("le", "+Inf".into()))), h.count);
                        let _ = writeln!(out, "{n}_sum{} {}", label_text(labels, None), h.sum);
                        let _ = writeln!(out, "{n}_count{} {}", label_text(labels, None), h.count);
                    }
                }
            }
        }
        out
    }
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
        let text = m.render(&[("kiln_builds_in_flight", 2.0)]);
        assert!(text.contains("kiln_http_requests_total{route=\"/build\",code=\"200\"} 2\n"), "{text}");
        assert!(text.contains("kiln_build_duration_seconds_bucket{result=\"success\",le=\"0.25\"} 0\n"), "{text}");
        assert!(text.contains("kiln_build_duration_seconds_bucket{result=\"success\",le=\"0.5\"} 1\n"), "{text}");
        assert!(text.contains("kiln_build_duration_seconds_count{result=\"success\"} 1\n"), "{text}");
        assert!(text.contains("kiln_builds_in_flight 2\n"), "{text}");
        assert!(text.contains("kiln_cache_hits_total 0\n"), "{text}");
        for (name, _, _) in CATALOG {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }
}
