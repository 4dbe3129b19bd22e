//! Reconcile metrics in Prometheus text format, and the readiness flag.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::runtime::Informer;

/// Upper bounds (seconds) of the reconcile duration histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct PerController {
    success: u64,
    errors: u64,
    buckets: [u64; BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

/// Counters of every controller's reconciliations.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<BTreeMap<&'static str, PerController>>,
}

impl Metrics {
    /// One reconciliation of `controller` took `took` and succeeded or not.
    pub fn record(&self, controller: &'static str, ok: bool, took: Duration) {
        let mut m = self.inner.lock().expect("metrics lock poisoned");
        let c = m.entry(controller).or_default();
        if ok {
            c.success += 1;
        } else {
            c.errors += 1;
        }
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                c.buckets[i] += 1;
            }
        }
        c.sum_seconds += secs;
        c.count += 1;
    }

    /// Total reconciliations of `controller` (successes, errors).
    pub fn counts(&self, controller: &str) -> (u64, u64) {
        let m = self.inner.lock().expect("metrics lock poisoned");
        m.get(controller).map_or((0, 0), |c| (c.success, c.errors))
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = self.inner.lock().expect("metrics lock poisoned").clone();
        let mut out = String::new();
        out.push_str("# HELP aos_controller_reconciliations_total Reconciliations by controller and result.\n");
        out.push_str("# TYPE aos_controller_reconciliations_total counter\n");
        for (name, c) in &m {
            let _ = writeln!(
                out,
                "aos_controller_reconciliations_total{{controller=\"{name}\",result=\"success\"}} {}",
                c.success
            );
            let _ = writeln!(
                out,
                "aos_controller_reconciliations_total{{controller=\"{name}\",result=\"error\"}} {}",
                c.errors
            );
        }
        out.push_str(
            "# HELP aos_controller_reconcile_errors_total Failed reconciliations by controller.\n",
        );
        out.push_str("# TYPE aos_controller_reconcile_errors_total counter\n");
        for (name, c) in &m {
            let _ = writeln!(
                out,
                "aos_controller_reconcile_errors_total{{controller=\"{name}\"}} {}",
                c.errors
            );
        }
        out.push_str(
            "# HELP aos_controller_reconcile_duration_seconds Time spent in one reconciliation.\n",
        );
        out.push_str("# TYPE aos_controller_reconcile_duration_seconds histogram\n");
        for (name, c) in &m {
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "aos_controller_reconcile_duration_seconds_bucket{{controller=\"{name}\",le=\"{le}\"}} {}",
                    c.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "aos_controller_reconcile_duration_seconds_bucket{{controller=\"{name}\",le=\"+Inf\"}} {}",
                c.count
            );
            let _ = writeln!(
                out,
                "aos_controller_reconcile_duration_seconds_sum{{controller=\"{name}\"}} {}",
                c.sum_seconds
            );
            let _ = writeln!(
                out,
                "aos_controller_reconcile_duration_seconds_count{{controller=\"{name}\"}} {}",
                c.count
            );
        }
        out
    }
}

/// Readiness: true once every informer has completed its first list.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    informers: Vec<Informer>,
}

impl Readiness {
    /// Track these informers.
    pub fn new(informers: Vec<Informer>) -> Self {
        Self { informers }
    }
    /// Whether every informer has listed once.
    pub fn is_ready(&self) -> bool {
        self.informers.iter().all(Informer::is_ready)
    }
    /// Prometheus gauge lines for readiness.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP aos_controller_informer_synced Whether an informer has completed its first list.\n");
        out.push_str("# TYPE aos_controller_informer_synced gauge\n");
        for i in &self.informers {
            let rt = i.resource();
            let group = if rt.group.is_empty() {
                "core"
            } else {
                rt.group
            };
            let _ = writeln!(
                out,
                "aos_controller_informer_synced{{resource=\"{}.{group}\"}} {}",
                rt.plural,
                u8::from(i.is_ready())
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.record("deployment", true, Duration::from_millis(3));
        m.record("deployment", false, Duration::from_millis(30));
        let text = m.render();
        assert!(text.contains(
            "aos_controller_reconciliations_total{controller=\"deployment\",result=\"success\"} 1"
        ));
        assert!(
            text.contains("aos_controller_reconcile_errors_total{controller=\"deployment\"} 1")
        );
        assert!(text.contains("aos_controller_reconcile_duration_seconds_bucket{controller=\"deployment\",le=\"0.005\"} 1"));
        assert!(text.contains(
            "aos_controller_reconcile_duration_seconds_count{controller=\"deployment\"} 2"
        ));
        assert_eq!(m.counts("deployment"), (1, 1));
    }
}
