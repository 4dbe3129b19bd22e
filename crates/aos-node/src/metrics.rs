//! The node agent's own metrics, in the Prometheus text format (served at `/metrics` by
//! [`crate::server`]).
//!
//! Counters live in [`NodeMetrics`], a cheap shared handle ([`crate::NodeAgent::metrics`]) the
//! pod workers and probes report to. Gauges about pods are computed when scraped, from the
//! agent's table of the pods it runs ([`PodGauges`]).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `aos_node_pods` | gauge | `phase` |
//! | `aos_node_containers_running` | gauge | |
//! | `aos_node_container_starts_total` | counter | |
//! | `aos_node_container_restarts_total` | counter | |
//! | `aos_node_pod_start_seconds` | histogram | |
//! | `aos_node_probe_results_total` | counter | `probe` (startup, liveness, readiness), `result` (success, failure, unknown) |
//! | `aos_node_shim_requests_total` | counter | `op`, `result` (ok, error) |
//! | `aos_node_log_streams` | gauge | |
//! | `aos_node_server_requests_total` | counter | `path`, `code` |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::probe::{ProbeKind, ProbeResult};

/// Upper bounds (seconds) of the pod start histogram: from 50 ms (an image present, no probe
/// delay) to two minutes (an image build or a long initial delay).
pub const POD_START_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A histogram with fixed buckets.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Cumulative counts per bucket of [`POD_START_BUCKETS`].
    buckets: [u64; POD_START_BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, le) in POD_START_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i] += 1;
            }
        }
        self.sum_seconds += secs;
        self.count += 1;
    }
}

/// The agent's counters. Every method is cheap (an atomic add or a short lock).
#[derive(Debug, Default)]
pub struct NodeMetrics {
    container_starts: AtomicU64,
    container_restarts: AtomicU64,
    pod_start: Mutex<Histogram>,
    /// (probe, result) → count.
    probes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// (op, result) → count.
    shim: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// (path, code) → count.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    log_streams: AtomicI64,
}

/// The pod gauges at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodGauges {
    /// Pods by `status.phase` (`Pending` when none is reported yet).
    pub by_phase: BTreeMap<String, u64>,
    /// Containers whose state is `running`.
    pub containers_running: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave a counter half-updated.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl NodeMetrics {
    /// A fresh set of counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// A container started; `attempt` 0 is its first start, any later one a restart.
    pub fn container_started(&self, attempt: u32) {
        self.container_starts.fetch_add(1, Ordering::Relaxed);
        if attempt > 0 {
            self.container_restarts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A pod became Ready `took` after the agent first saw it.
    pub fn pod_started(&self, took: Duration) {
        lock(&self.pod_start).observe(took.as_secs_f64());
    }

    /// One probe ran with `result`.
    pub fn probe_result(&self, kind: ProbeKind, result: &ProbeResult) {
        let result = match result {
            ProbeResult::Success => "success",
            ProbeResult::Failure(_) => "failure",
            ProbeResult::Unknown(_) => "unknown",
        };
        *lock(&self.probes).entry((kind.name(), result)).or_default() += 1;
    }

    /// One request to a pod's shim (`op` is the request's kind, such as `start`).
    pub fn shim_request(&self, op: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        *lock(&self.shim).entry((op.to_owned(), result)).or_default() += 1;
    }

    /// One request to the agent's HTTPS server answered with `code`.
    pub fn server_request(&self, path: &'static str, code: u16) {
        *lock(&self.requests).entry((path, code)).or_default() += 1;
    }

    /// A log stream opened; the guard counts it until dropped.
    pub fn log_stream(self: &std::sync::Arc<Self>) -> LogStreamGuard {
        self.log_streams.fetch_add(1, Ordering::Relaxed);
        LogStreamGuard {
            metrics: self.clone(),
        }
    }

    /// Log streams open now (followers included).
    pub fn log_streams(&self) -> i64 {
        self.log_streams.load(Ordering::Relaxed)
    }

    /// Containers started so far.
    pub fn container_starts(&self) -> u64 {
        self.container_starts.load(Ordering::Relaxed)
    }

    /// Containers restarted so far.
    pub fn container_restarts(&self) -> u64 {
        self.container_restarts.load(Ordering::Relaxed)
    }

    /// Pod starts observed so far.
    pub fn pod_starts_observed(&self) -> u64 {
        lock(&self.pod_start).count
    }

    /// The Prometheus text exposition, with `pods` for the gauges.
    pub fn render(&self, pods: &PodGauges) -> String {
        let mut out = String::with_capacity(2048);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };

        head(
            &mut out,
            "aos_node_pods",
            "gauge",
            "Pods bound to this node, by phase.",
        );
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            let n = pods.by_phase.get(phase).copied().unwrap_or(0);
            let _ = writeln!(out, "aos_node_pods{{phase=\"{phase}\"}} {n}");
        }
        for (phase, n) in &pods.by_phase {
            if !matches!(
                phase.as_str(),
                "Pending" | "Running" | "Succeeded" | "Failed" | "Unknown"
            ) {
                let _ = writeln!(out, "aos_node_pods{{phase=\"{}\"}} {n}", escape(phase));
            }
        }

        head(
            &mut out,
            "aos_node_containers_running",
            "gauge",
            "Containers running on this node.",
        );
        let _ = writeln!(
            out,
            "aos_node_containers_running {}",
            pods.containers_running
        );

        head(
            &mut out,
            "aos_node_container_starts_total",
            "counter",
            "Containers started, restarts included.",
        );
        let _ = writeln!(
            out,
            "aos_node_container_starts_total {}",
            self.container_starts()
        );
        head(
            &mut out,
            "aos_node_container_restarts_total",
            "counter",
            "Containers started again after an earlier attempt ended.",
        );
        let _ = writeln!(
            out,
            "aos_node_container_restarts_total {}",
            self.container_restarts()
        );

        head(
            &mut out,
            "aos_node_pod_start_seconds",
            "histogram",
            "Time from the agent's first sight of a pod to its Ready condition.",
        );
        let h = lock(&self.pod_start).clone();
        for (i, le) in POD_START_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "aos_node_pod_start_seconds_bucket{{le=\"{le}\"}} {}",
                h.buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "aos_node_pod_start_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "aos_node_pod_start_seconds_sum {}", h.sum_seconds);
        let _ = writeln!(out, "aos_node_pod_start_seconds_count {}", h.count);

        head(
            &mut out,
            "aos_node_probe_results_total",
            "counter",
            "Probe runs by probe and result.",
        );
        for ((probe, result), n) in lock(&self.probes).iter() {
            let _ = writeln!(
                out,
                "aos_node_probe_results_total{{probe=\"{probe}\",result=\"{result}\"}} {n}"
            );
        }

        head(
            &mut out,
            "aos_node_shim_requests_total",
            "counter",
            "Requests to the pods' shims by operation and result.",
        );
        for ((op, result), n) in lock(&self.shim).iter() {
            let _ = writeln!(
                out,
                "aos_node_shim_requests_total{{op=\"{}\",result=\"{result}\"}} {n}",
                escape(op)
            );
        }

        head(
            &mut out,
            "aos_node_log_streams",
            "gauge",
            "Container log streams being served.",
        );
        let _ = writeln!(out, "aos_node_log_streams {}", self.log_streams());

        head(
            &mut out,
            "aos_node_server_requests_total",
            "counter",
            "Requests to the agent's HTTPS server by path and status code.",
        );
        for ((path, code), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "aos_node_server_requests_total{{path=\"{path}\",code=\"{code}\"}} {n}"
            );
        }
        out
    }
}

/// Counts one open log stream until dropped.
#[derive(Debug)]
pub struct LogStreamGuard {
    metrics: std::sync::Arc<NodeMetrics>,
}

impl Drop for LogStreamGuard {
    fn drop(&mut self) {
        self.metrics.log_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn renders_counters_gauges_and_histogram() {
        let m = Arc::new(NodeMetrics::new());
        m.container_started(0);
        m.container_started(0);
        m.container_started(1);
        m.pod_started(Duration::from_millis(120));
        m.pod_started(Duration::from_secs(3));
        m.probe_result(ProbeKind::Readiness, &ProbeResult::Success);
        m.probe_result(ProbeKind::Readiness, &ProbeResult::Success);
        m.probe_result(ProbeKind::Liveness, &ProbeResult::Failure("x".into()));
        m.shim_request("start", true);
        m.server_request("/metrics", 200);
        let guard = m.log_stream();
        let mut gauges = PodGauges::default();
        gauges.by_phase.insert("Running".into(), 3);
        gauges.by_phase.insert("Weird\"".into(), 1);
        gauges.containers_running = 4;
        let text = m.render(&gauges);
        for line in [
            "aos_node_pods{phase=\"Running\"} 3",
            "aos_node_pods{phase=\"Pending\"} 0",
            "aos_node_pods{phase=\"Weird\\\"\"} 1",
            "aos_node_containers_running 4",
            "aos_node_container_starts_total 3",
            "aos_node_container_restarts_total 1",
            "aos_node_pod_start_seconds_bucket{le=\"0.1\"} 0",
            "aos_node_pod_start_seconds_bucket{le=\"0.15\"} 1",
            "aos_node_pod_start_seconds_bucket{le=\"5\"} 2",
            "aos_node_pod_start_seconds_bucket{le=\"+Inf\"} 2",
            "aos_node_pod_start_seconds_count 2",
            "aos_node_probe_results_total{probe=\"readiness\",result=\"success\"} 2",
            "aos_node_probe_results_total{probe=\"liveness\",result=\"failure\"} 1",
            "aos_node_shim_requests_total{op=\"start\",result=\"ok\"} 1",
            "aos_node_log_streams 1",
            "aos_node_server_requests_total{path=\"/metrics\",code=\"200\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        drop(guard);
        assert_eq!(m.log_streams(), 0);
        // Every sample line belongs to a declared metric.
        let declared: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(
                declared
                    .iter()
                    .any(|d| name == *d || name.strip_prefix(d).is_some_and(|s| s.starts_with('_'))),
                "{name} undeclared"
            );
        }
    }
}
