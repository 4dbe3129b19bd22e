//! Prometheus metrics, rendered in the text exposition format (version 0.0.4).
//!
//! Label values are bounded: `route` is the route template (`/api/v1/agent-registry/agents/{id}`)
//! or `unmatched`, `method` is a standard method or `OTHER`, `status` is a status code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

use crate::db::{ReapOutcome, StatusCounts};

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the request duration histogram's buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    start_time: Timestamp,
    version: &'static str,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// `(method, route, status)` → count.
    requests: BTreeMap<(&'static str, String, u16), u64>,
    /// route → durations.
    durations: BTreeMap<String, Histogram>,
    expired_total: u64,
    reaped_total: u64,
}

#[derive(Debug, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket of [`BUCKETS`]; the `+Inf` bucket is `count`.
    buckets: [u64; BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

impl Metrics {
    /// Metrics of a process that started at `start_time`.
    pub fn new(start_time: Timestamp, version: &'static str) -> Self {
        Self {
            start_time,
            version,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Counters stay consistent even if a holder panicked: every update is a single step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one served request.
    pub fn observe_request(&self, method: &http::Method, route: &str, status: u16, took: Duration) {
        let method = method_label(method);
        let mut state = self.state();
        *state
            .requests
            .entry((method, route.to_owned(), status))
            .or_default() += 1;
        let h = state.durations.entry(route.to_owned()).or_default();
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            h.buckets[i] += 1;
        }
        h.sum_seconds += secs;
        h.count += 1;
    }

    /// Records what a reaper pass did.
    pub fn observe_reap(&self, outcome: &ReapOutcome) {
        let mut state = self.state();
        state.expired_total += outcome.newly_expired.len() as u64;
        state.reaped_total += outcome.deleted.len() as u64;
    }

    /// The exposition text; `agents` is `None` when the database cannot be counted.
    pub fn render(&self, agents: Option<StatusCounts>) -> String {
        let state = self.state();
        let mut out = String::with_capacity(4096);
        // `write!` to a String cannot fail.
        let mut w = |s: std::fmt::Arguments<'_>| {
            let _ = out.write_fmt(s);
        };

        w(format_args!(
            "# HELP http_requests_total HTTP requests served, by method, route template and status.\n\
             # TYPE http_requests_total counter\n"
        ));
        for ((method, route, status), n) in &state.requests {
            w(format_args!(
                "http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}\n",
                escape(route)
            ));
        }

        w(format_args!(
            "# HELP http_request_duration_seconds Time to serve an HTTP request, by route template.\n\
             # TYPE http_request_duration_seconds histogram\n"
        ));
        for (route, h) in &state.durations {
            let route = escape(route);
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                w(format_args!(
                    "http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}\n"
                ));
            }
            w(format_args!(
                "http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                 http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 http_request_duration_seconds_count{{route=\"{route}\"}} {}\n",
                h.count, h.sum_seconds, h.count
            ));
        }

        if let Some(counts) = agents {
            w(format_args!(
                "# HELP agent_registry_agents Registered agents, by status.\n\
                 # TYPE agent_registry_agents gauge\n\
                 agent_registry_agents{{status=\"active\"}} {}\n\
                 agent_registry_agents{{status=\"expired\"}} {}\n",
                counts.active, counts.expired
            ));
        }
        w(format_args!(
            "# HELP agent_registry_agents_expired_total Agents the reaper found past their TTL.\n\
             # TYPE agent_registry_agents_expired_total counter\n\
             agent_registry_agents_expired_total {}\n\
             # HELP agent_registry_agents_reaped_total Expired agents the reaper deleted.\n\
             # TYPE agent_registry_agents_reaped_total counter\n\
             agent_registry_agents_reaped_total {}\n",
            state.expired_total, state.reaped_total
        ));
        w(format_args!(
            "# HELP agent_registry_build_info Build information.\n\
             # TYPE agent_registry_build_info gauge\n\
             agent_registry_build_info{{version=\"{}\"}} 1\n\
             # HELP process_start_time_seconds Start time of the process since the Unix epoch, in seconds.\n\
             # TYPE process_start_time_seconds gauge\n\
             process_start_time_seconds {}\n",
            escape(self.version),
            self.start_time.as_millisecond() as f64 / 1000.0
        ));
        out
    }
}

fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Escapes a label value.
fn escape(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::new("2025-01-01T00:00:00.5Z".parse().unwrap(), "1.2.3");
        let route = "/api/v1/agent-registry/agents/{id}";
        m.observe_request(&http::Method::GET, route, 200, Duration::from_millis(3));
        m.observe_request(&http::Method::GET, route, 200, Duration::from_millis(30));
        m.observe_request(&http::Method::GET, route, 404, Duration::from_secs(20));
        m.observe_request(
            &http::Method::from_bytes(b"BREW").unwrap(),
            "unmatched",
            405,
            Duration::ZERO,
        );
        m.observe_reap(&ReapOutcome {
            newly_expired: vec![("a".into(), "a".into())],
            deleted: vec![],
        });
        let text = m.render(Some(StatusCounts {
            active: 2,
            expired: 1,
        }));
        for line in [
            r#"http_requests_total{method="GET",route="/api/v1/agent-registry/agents/{id}",status="200"} 2"#,
            r#"http_requests_total{method="GET",route="/api/v1/agent-registry/agents/{id}",status="404"} 1"#,
            r#"http_requests_total{method="OTHER",route="unmatched",status="405"} 1"#,
            r#"http_request_duration_seconds_bucket{route="/api/v1/agent-registry/agents/{id}",le="0.005"} 1"#,
            r#"http_request_duration_seconds_bucket{route="/api/v1/agent-registry/agents/{id}",le="0.05"} 2"#,
            r#"http_request_duration_seconds_bucket{route="/api/v1/agent-registry/agents/{id}",le="10"} 2"#,
            r#"http_request_duration_seconds_bucket{route="/api/v1/agent-registry/agents/{id}",le="+Inf"} 3"#,
            r#"http_request_duration_seconds_count{route="/api/v1/agent-registry/agents/{id}"} 3"#,
            r#"agent_registry_agents{status="active"} 2"#,
            r#"agent_registry_agents{status="expired"} 1"#,
            "agent_registry_agents_expired_total 1",
            "agent_registry_agents_reaped_total 0",
            r#"agent_registry_build_info{version="1.2.3"} 1"#,
            "process_start_time_seconds 1735689600.5",
            "# TYPE http_request_duration_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let sum = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    r#"http_request_duration_seconds_sum{route="/api/v1/agent-registry/agents/{id}"} "#,
                )
            })
            .unwrap();
        assert!((sum.parse::<f64>().unwrap() - 20.033).abs() < 1e-9);
    }

    #[test]
    fn gauge_is_omitted_without_counts() {
        let m = Metrics::new(Timestamp::UNIX_EPOCH, "0");
        assert!(!m.render(None).contains("agent_registry_agents{"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
