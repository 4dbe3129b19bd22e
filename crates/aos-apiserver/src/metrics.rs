//! Prometheus metrics of the API server, in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Request counters, latency histograms and the watcher gauge.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, String, u16), u64>>,
    durations: Mutex<BTreeMap<(&'static str, String), Histogram>>,
    watchers: AtomicI64,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Count one request. `resource` is a plural (`pods`, `deployments/scale`) or a
    /// fixed name for non-resource paths, so the label set stays small.
    pub(crate) fn observe(&self, verb: &'static str, resource: &str, code: u16, elapsed: Duration) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((verb, resource.to_string(), code)).or_default() += 1;
        }
        if let Ok(mut d) = self.durations.lock() {
            let h = d.entry((verb, resource.to_string())).or_default();
            let secs = elapsed.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    /// A watch opened.
    pub(crate) fn watcher_started(&self) {
        self.watchers.fetch_add(1, Ordering::Relaxed);
    }

    /// A watch ended.
    pub(crate) fn watcher_ended(&self) {
        self.watchers.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn watchers(&self) -> i64 {
        self.watchers.load(Ordering::Relaxed)
    }

    /// The text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP aos_apiserver_requests_total API requests by verb, resource and HTTP code.\n",
        );
        out.push_str("# TYPE aos_apiserver_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((verb, resource, code), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "aos_apiserver_requests_total{{verb=\"{verb}\",resource=\"{}\",code=\"{code}\"}} {n}",
                    escape(resource)
                );
            }
        }
        out.push_str("# HELP aos_apiserver_request_duration_seconds API request latency (to the response head).\n");
        out.push_str("# TYPE aos_apiserver_request_duration_seconds histogram\n");
        if let Ok(d) = self.durations.lock() {
            for ((verb, resource), h) in d.iter() {
                let labels = format!("verb=\"{verb}\",resource=\"{}\"", escape(resource));
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "aos_apiserver_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "aos_apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "aos_apiserver_request_duration_seconds_sum{{{labels}}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "aos_apiserver_request_duration_seconds_count{{{labels}}} {}",
                    h.count
                );
            }
        }
        out.push_str("# HELP aos_apiserver_watchers Open watch streams.\n");
        out.push_str("# TYPE aos_apiserver_watchers gauge\n");
        let _ = writeln!(out, "aos_apiserver_watchers {}", self.watchers());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauge() {
        let m = Metrics::default();
        m.observe("create", "pods", 201, Duration::from_millis(3));
        m.watcher_started();
        let text = m.render();
        assert!(text.contains(
            "aos_apiserver_requests_total{verb=\"create\",resource=\"pods\",code=\"201\"} 1"
        ));
        assert!(text.contains("aos_apiserver_request_duration_seconds_bucket{verb=\"create\",resource=\"pods\",le=\"0.005\"} 1"));
        assert!(text.contains("aos_apiserver_request_duration_seconds_bucket{verb=\"create\",resource=\"pods\",le=\"0.0025\"} 0"));
        assert!(text.contains("aos_apiserver_watchers 1"));
        m.watcher_ended();
        assert!(m.render().contains("aos_apiserver_watchers 0"));
    }
}
