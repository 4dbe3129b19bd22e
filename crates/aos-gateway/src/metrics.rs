//! Request metrics in the style of Istio's standard metrics, with handles resolved when the
//! route table is built so the request path only touches atomics.
//!
//! - `aos_requests_total{destination_service,destination_workload,destination_pod,response_code,retried}`
//! - `aos_request_duration_seconds{destination_service}` (histogram)
//! - `aos_gateway_active_requests`, `aos_gateway_retries_total{destination_service}`,
//!   `aos_gateway_overflow_total{destination_service}`,
//!   `aos_gateway_outlier_ejections_total{destination_service,destination_pod}`,
//!   `aos_gateway_outlier_ejected{destination_service,destination_pod}`
//! - `aos_gateway_pod_http_requests_per_second{namespace,pod}` over a sliding window, also
//!   readable in-process through [`GatewayHandle`](crate::GatewayHandle) by the autoscaler.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

/// Upper bounds of the duration histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Slots of the per-series code table before it falls back to a locked map.
const CODE_SLOTS: usize = 16;

/// The label values of one `aos_requests_total` series, minus code and `retried`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SeriesKey {
    pub service: String,
    pub workload: String,
    pub pod: String,
}

/// Counters of one destination endpoint (or `unknown` for local answers).
#[derive(Debug)]
pub(crate) struct RequestSeries {
    pub key: SeriesKey,
    /// `(code << 1 | retried) + 1` in the high half (0 = free), count in `counts`.
    slots: [AtomicU32; CODE_SLOTS],
    counts: [AtomicU64; CODE_SLOTS],
    overflow: Mutex<BTreeMap<u32, u64>>,
    pub ejections: AtomicU64,
    pub ejected: AtomicBool,
    pub service: Arc<ServiceStats>,
    pub pod_rate: Option<Arc<PodRate>>,
}

impl RequestSeries {
    fn new(key: SeriesKey, service: Arc<ServiceStats>, pod_rate: Option<Arc<PodRate>>) -> Self {
        RequestSeries {
            key,
            slots: std::array::from_fn(|_| AtomicU32::new(0)),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: Mutex::new(BTreeMap::new()),
            ejections: AtomicU64::new(0),
            ejected: AtomicBool::new(false),
            service,
            pod_rate,
        }
    }

    /// Count one request.
    pub(crate) fn record(&self, code: u16, retried: bool, elapsed: Duration, now: Instant) {
        let tag = ((u32::from(code) << 1) | u32::from(retried)) + 1;
        let start = (tag as usize * 7) % CODE_SLOTS;
        let mut counted = false;
        for i in 0..CODE_SLOTS {
            let idx = (start + i) % CODE_SLOTS;
            let slot = &self.slots[idx];
            let cur = slot.load(Ordering::Acquire);
            if cur == tag
                || (cur == 0
                    && match slot.compare_exchange(0, tag, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => true,
                        Err(actual) => actual == tag,
                    })
            {
                self.counts[idx].fetch_add(1, Ordering::Relaxed);
                counted = true;
                break;
            }
        }
        if !counted {
            let mut map = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
            *map.entry(tag).or_default() += 1;
        }
        self.service.observe(elapsed);
        if let Some(rate) = &self.pod_rate {
            rate.record(now);
        }
    }

    /// `(code, retried, count)` for every non-zero counter.
    fn counts(&self) -> Vec<(u16, bool, u64)> {
        let mut by_tag: BTreeMap<u32, u64> = BTreeMap::new();
        for i in 0..CODE_SLOTS {
            let tag = self.slots[i].load(Ordering::Acquire);
            if tag != 0 {
                *by_tag.entry(tag).or_default() += self.counts[i].load(Ordering::Relaxed);
            }
        }
        for (tag, n) in self
            .overflow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            *by_tag.entry(*tag).or_default() += n;
        }
        by_tag
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(tag, n)| {
                let t = tag - 1;
                ((t >> 1) as u16, t & 1 == 1, n)
            })
            .collect()
    }
}

/// Per destination service: the duration histogram and policy counters.
#[derive(Debug)]
pub(crate) struct ServiceStats {
    pub service: String,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    pub retries: AtomicU64,
    pub overflows: AtomicU64,
}

impl ServiceStats {
    fn new(service: String) -> Self {
        ServiceStats {
            service,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Requests per second of one pod over a sliding window of one-second buckets.
#[derive(Debug)]
pub(crate) struct PodRate {
    base: Instant,
    /// Each: second (high 32 bits) and count (low 32 bits).
    buckets: Box<[AtomicU64]>,
    first: AtomicU64,
}

impl PodRate {
    fn new(base: Instant, window: Duration) -> Self {
        let n = window.as_secs().clamp(1, 3600) as usize + 1;
        PodRate {
            base,
            buckets: (0..n).map(|_| AtomicU64::new(0)).collect(),
            first: AtomicU64::new(u64::MAX),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        // +1 so that second 0 is distinguishable from an empty bucket.
        now.saturating_duration_since(self.base).as_secs() + 1
    }

    fn record(&self, now: Instant) {
        let sec = self.second(now);
        let _ = self
            .first
            .compare_exchange(u64::MAX, sec, Ordering::AcqRel, Ordering::Relaxed);
        let b = &self.buckets[(sec % self.buckets.len() as u64) as usize];
        let mut cur = b.load(Ordering::Acquire);
        loop {
            let next = if cur >> 32 == sec {
                cur.saturating_add(1)
            } else {
                (sec << 32) | 1
            };
            match b.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Requests per second over the complete seconds of the window (or since the first request,
    /// when that is more recent).
    fn rate(&self, now: Instant) -> f64 {
        let first = self.first.load(Ordering::Acquire);
        if first == u64::MAX {
            return 0.0;
        }
        let now_sec = self.second(now);
        let window = self.buckets.len() as u64 - 1;
        let from = now_sec.saturating_sub(window).max(first);
        let (from, to, span) = if from >= now_sec {
            // Nothing complete yet: count the current second as one.
            (now_sec, now_sec, 1)
        } else {
            (from, now_sec - 1, now_sec - from)
        };
        let mut total = 0u64;
        for b in self.buckets.iter() {
            let v = b.load(Ordering::Acquire);
            let s = v >> 32;
            if s >= from && s <= to {
                total += v & 0xffff_ffff;
            }
        }
        total as f64 / span as f64
    }
}

/// Every metric of the gateway.
#[derive(Debug)]
pub(crate) struct Metrics {
    base: Instant,
    window: Duration,
    series: Mutex<HashMap<SeriesKey, Arc<RequestSeries>>>,
    services: Mutex<HashMap<String, Arc<ServiceStats>>>,
    pods: Mutex<HashMap<(String, String), Weak<PodRate>>>,
    pub active: AtomicI64,
    pub config_applied: AtomicU64,
    pub config_warnings: AtomicU64,
    pub connections: AtomicI64,
}

impl Metrics {
    pub(crate) fn new(window: Duration) -> Self {
        Metrics {
            base: Instant::now(),
            window,
            series: Mutex::new(HashMap::new()),
            services: Mutex::new(HashMap::new()),
            pods: Mutex::new(HashMap::new()),
            active: AtomicI64::new(0),
            config_applied: AtomicU64::new(0),
            config_warnings: AtomicU64::new(0),
            connections: AtomicI64::new(0),
        }
    }

    pub(crate) fn service(&self, service: &str) -> Arc<ServiceStats> {
        let mut map = self.services.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(service.to_string())
            .or_insert_with(|| Arc::new(ServiceStats::new(service.to_string())))
            .clone()
    }

    fn pod_rate(&self, ns: &str, pod: &str) -> Arc<PodRate> {
        let mut map = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let key = (ns.to_string(), pod.to_string());
        if let Some(r) = map.get(&key).and_then(Weak::upgrade) {
            return r;
        }
        let r = Arc::new(PodRate::new(self.base, self.window));
        map.insert(key, Arc::downgrade(&r));
        r
    }

    /// The series of one endpoint; `pod` is `(namespace, name)` when a pod is known.
    pub(crate) fn series(&self, key: SeriesKey, pod: Option<(&str, &str)>) -> Arc<RequestSeries> {
        let mut map = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(&key) {
            return s.clone();
        }
        let service = self.service(&key.service);
        let rate = pod.map(|(ns, name)| self.pod_rate(ns, name));
        let s = Arc::new(RequestSeries::new(key.clone(), service, rate));
        map.insert(key, s.clone());
        s
    }

    /// Forget series and pods no route table refers to any more.
    pub(crate) fn prune(&self) {
        let mut map = self.series.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| Arc::strong_count(s) > 1);
        drop(map);
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.retain(|_, w| w.strong_count() > 0);
    }

    /// Requests per second of a pod over the window.
    pub(crate) fn pod_rate_now(&self, ns: &str, pod: &str) -> Option<f64> {
        let map = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let r = map.get(&(ns.to_string(), pod.to_string()))?.upgrade()?;
        Some(r.rate(Instant::now()))
    }

    /// Every pod's rate.
    pub(crate) fn pod_rates(&self) -> Vec<(String, String, f64)> {
        let now = Instant::now();
        let map = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = map
            .iter()
            .filter_map(|((ns, pod), w)| {
                w.upgrade().map(|r| (ns.clone(), pod.clone(), r.rate(now)))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut series: Vec<Arc<RequestSeries>> = self
            .series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        series.sort_by(|a, b| a.key.cmp(&b.key));
        let mut services: Vec<Arc<ServiceStats>> = self
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        services.sort_by(|a, b| a.service.cmp(&b.service));

        out.push_str("# HELP aos_requests_total Requests the gateway answered, by destination and response code.\n");
        out.push_str("# TYPE aos_requests_total counter\n");
        for s in &series {
            for (code, retried, n) in s.counts() {
                let _ = writeln!(
                    out,
                    "aos_requests_total{{destination_service=\"{}\",destination_workload=\"{}\",destination_pod=\"{}\",response_code=\"{code}\",retried=\"{retried}\"}} {n}",
                    esc(&s.key.service),
                    esc(&s.key.workload),
                    esc(&s.key.pod)
                );
            }
        }
        out.push_str(
            "# HELP aos_request_duration_seconds Time from the request to the response headers.\n",
        );
        out.push_str("# TYPE aos_request_duration_seconds histogram\n");
        for s in &services {
            let count = s.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let svc = esc(&s.service);
            let mut cum = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "aos_request_duration_seconds_bucket{{destination_service=\"{svc}\",le=\"{b}\"}} {cum}"
                );
            }
            let _ = writeln!(
                out,
                "aos_request_duration_seconds_bucket{{destination_service=\"{svc}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "aos_request_duration_seconds_sum{{destination_service=\"{svc}\"}} {}",
                s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "aos_request_duration_seconds_count{{destination_service=\"{svc}\"}} {count}"
            );
        }
        out.push_str("# HELP aos_gateway_active_requests Requests in flight.\n");
        out.push_str("# TYPE aos_gateway_active_requests gauge\n");
        let _ = writeln!(
            out,
            "aos_gateway_active_requests {}",
            self.active.load(Ordering::Relaxed)
        );
        out.push_str("# HELP aos_gateway_downstream_connections Client connections open.\n");
        out.push_str("# TYPE aos_gateway_downstream_connections gauge\n");
        let _ = writeln!(
            out,
            "aos_gateway_downstream_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        for (name, help, get) in [
            (
                "aos_gateway_retries_total",
                "Retries sent to upstreams.",
                (|s: &ServiceStats| s.retries.load(Ordering::Relaxed)) as fn(&ServiceStats) -> u64,
            ),
            (
                "aos_gateway_overflow_total",
                "Requests shed by connection-pool limits (503, x-envoy-overloaded).",
                |s: &ServiceStats| s.overflows.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for s in &services {
                let _ = writeln!(
                    out,
                    "{name}{{destination_service=\"{}\"}} {}",
                    esc(&s.service),
                    get(s)
                );
            }
        }
        out.push_str(
            "# HELP aos_gateway_outlier_ejections_total Endpoints ejected by outlier detection.\n",
        );
        out.push_str("# TYPE aos_gateway_outlier_ejections_total counter\n");
        for s in &series {
            let _ = writeln!(
                out,
                "aos_gateway_outlier_ejections_total{{destination_service=\"{}\",destination_pod=\"{}\"}} {}",
                esc(&s.key.service),
                esc(&s.key.pod),
                s.ejections.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP aos_gateway_outlier_ejected Whether an endpoint is ejected now.\n");
        out.push_str("# TYPE aos_gateway_outlier_ejected gauge\n");
        for s in &series {
            let _ = writeln!(
                out,
                "aos_gateway_outlier_ejected{{destination_service=\"{}\",destination_pod=\"{}\"}} {}",
                esc(&s.key.service),
                esc(&s.key.pod),
                u8::from(s.ejected.load(Ordering::Relaxed))
            );
        }
        out.push_str(
            "# HELP aos_gateway_pod_http_requests_per_second Requests per second to each pod over a sliding window (the autoscaler's http_requests_per_second).\n",
        );
        out.push_str("# TYPE aos_gateway_pod_http_requests_per_second gauge\n");
        for (ns, pod, r) in self.pod_rates() {
            let _ = writeln!(
                out,
                "aos_gateway_pod_http_requests_per_second{{namespace=\"{}\",pod=\"{}\"}} {r}",
                esc(&ns),
                esc(&pod)
            );
        }
        out.push_str(
            "# HELP aos_gateway_config_applied_total Route tables built and swapped in.\n",
        );
        out.push_str("# TYPE aos_gateway_config_applied_total counter\n");
        let _ = writeln!(
            out,
            "aos_gateway_config_applied_total {}",
            self.config_applied.load(Ordering::Relaxed)
        );
        out.push_str("# HELP aos_gateway_config_warnings Warnings of the current route table.\n");
        out.push_str("# TYPE aos_gateway_config_warnings gauge\n");
        let _ = writeln!(
            out,
            "aos_gateway_config_warnings {}",
            self.config_warnings.load(Ordering::Relaxed)
        );
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pod: &str) -> SeriesKey {
        SeriesKey {
            service: "a.ns.svc.cluster.local".into(),
            workload: "a".into(),
            pod: pod.into(),
        }
    }

    #[test]
    fn counts_codes_beyond_the_slots() {
        let m = Metrics::new(Duration::from_secs(60));
        let s = m.series(key("p"), Some(("ns", "p")));
        let now = Instant::now();
        for code in 200..240u16 {
            s.record(code, false, Duration::from_millis(1), now);
            s.record(code, true, Duration::from_millis(1), now);
        }
        s.record(200, false, Duration::from_millis(1), now);
        let counts = s.counts();
        assert_eq!(counts.len(), 80);
        assert!(counts.contains(&(200, false, 2)));
        assert!(counts.contains(&(239, true, 1)));
        let text = m.render();
        assert!(text.contains(
            "aos_requests_total{destination_service=\"a.ns.svc.cluster.local\",destination_workload=\"a\",destination_pod=\"p\",response_code=\"200\",retried=\"false\"} 2"
        ));
        assert!(text.contains(
            "aos_request_duration_seconds_count{destination_service=\"a.ns.svc.cluster.local\"} 81"
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn pod_rate_is_a_sliding_window() {
        let m = Metrics::new(Duration::from_secs(10));
        let s = m.series(key("p"), Some(("ns", "p")));
        // 20 requests per second for 30 seconds.
        for _ in 0..30 {
            for _ in 0..20 {
                s.record(200, false, Duration::ZERO, Instant::now());
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let r = m.pod_rate_now("ns", "p").unwrap();
        assert!((r - 20.0).abs() < 0.01, "{r}");
        // Silence: the window drains.
        tokio::time::advance(Duration::from_secs(5)).await;
        let r = m.pod_rate_now("ns", "p").unwrap();
        assert!((r - 10.0).abs() < 2.01, "{r}");
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(m.pod_rate_now("ns", "p"), Some(0.0));
        assert_eq!(m.pod_rate_now("ns", "other"), None);
    }
}
