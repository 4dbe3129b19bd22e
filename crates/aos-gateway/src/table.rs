//! The route table the proxy reads: a [`Plan`] with runtime state attached (endpoint load and
//! outlier state, pool limits, metric handles, upstream connection pools). Tables are immutable and
//! swapped atomically; the state that must survive a swap (ejections, in-flight counts, counters)
//! lives in [`Runtime`] registries keyed by cluster and address and is reused by the next table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::Authority;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::body::ReqBody;
use crate::metrics::{Metrics, RequestSeries, SeriesKey, ServiceStats};
use crate::plan::{
    ClusterPlan, ClusterPolicy, HashKey, LbPolicy, OutlierSettings, Plan, PoolSettings, RoutePlan,
};

/// A compiled, immutable route table.
pub(crate) struct RouteTable {
    pub generation: u64,
    hosts: HashMap<String, usize>,
    wildcards: Vec<(String, usize)>,
    catch_all: Option<usize>,
    pub vhosts: Vec<VirtualHost>,
    pub warnings: Vec<String>,
}

pub(crate) struct VirtualHost {
    pub name: String,
    pub routes: Vec<Arc<Route>>,
}

/// A route with its destinations resolved to clusters.
pub(crate) struct Route {
    pub plan: RoutePlan,
    pub dests: Vec<Dest>,
    pub total_weight: u32,
}

pub(crate) struct Dest {
    pub cluster: Arc<Cluster>,
    pub weight: u32,
    pub headers: crate::plan::HeaderOps,
}

/// An upstream cluster at run time.
pub(crate) struct Cluster {
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    pub policy: ClusterPolicy,
    pub state: Arc<ClusterState>,
    pub service: Arc<ServiceStats>,
    /// Series for answers given without an endpoint (no healthy upstream, timeouts, faults).
    pub local_series: Arc<RequestSeries>,
}

pub(crate) struct Endpoint {
    pub addr: SocketAddr,
    pub authority: Authority,
    pub hash: u64,
    pub series: Arc<RequestSeries>,
    pub state: Arc<EndpointState>,
}

/// Per (cluster, address) state that survives table swaps.
#[derive(Default)]
pub(crate) struct EndpointState {
    /// Requests in flight (for LEAST_REQUEST).
    pub active: AtomicU32,
    /// Fast path: whether the endpoint may be ejected (the lock holds the truth).
    ejected: AtomicBool,
    outlier: Mutex<OutlierHost>,
    /// Idle HTTP/1.1 connections.
    pub h1: crate::proxy::H1Pool,
    /// The shared HTTP/2 connection.
    pub h2: Mutex<Option<hyper::client::conn::http2::SendRequest<ReqBody>>>,
}

#[derive(Default)]
struct OutlierHost {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    ejected_until: Option<Instant>,
    ejections: u32,
    released_at: Option<Instant>,
}

/// Per cluster state that survives table swaps while the cluster's policy is unchanged.
pub(crate) struct ClusterState {
    rr: AtomicUsize,
    ejected: AtomicU32,
    pub in_flight: AtomicU32,
    pub pending: AtomicU32,
    /// Connection slots (HTTP/1.1 upstreams with a `maxConnections` limit).
    pub connections: Option<Arc<Semaphore>>,
}

impl ClusterState {
    fn new(pool: &PoolSettings) -> Self {
        let connections = (!pool.http2 && pool.max_connections != u32::MAX)
            .then(|| Arc::new(Semaphore::new(pool.max_connections as usize)));
        ClusterState {
            rr: AtomicUsize::new(0),
            ejected: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            connections,
        }
    }
}

/// The outcome of one try, for outlier detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The upstream answered with this status.
    Status(u16),
    /// Connect failure, reset or timeout: a locally originated error.
    LocalFailure,
}

/// Registries of state shared by successive tables.
pub(crate) struct Runtime {
    pub metrics: Arc<Metrics>,
    clusters: Mutex<HashMap<String, (ClusterPolicy, Arc<ClusterState>)>>,
    endpoints: Mutex<HashMap<(String, SocketAddr), Arc<EndpointState>>>,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a, stable across runs (consistent hashing must not depend on a random seed).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Runtime {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Runtime {
            metrics,
            clusters: Mutex::new(HashMap::new()),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    fn cluster(&self, plan: &ClusterPlan) -> Cluster {
        let state = {
            let mut map = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&plan.name) {
                Some((policy, state)) if *policy == plan.policy => state.clone(),
                _ => {
                    let state = Arc::new(ClusterState::new(&plan.policy.pool));
                    map.insert(plan.name.clone(), (plan.policy.clone(), state.clone()));
                    state
                }
            }
        };
        let mut endpoints = Vec::with_capacity(plan.endpoints.len());
        {
            let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
            for ep in &plan.endpoints {
                let st = map
                    .entry((plan.name.clone(), ep.addr))
                    .or_insert_with(|| Arc::new(EndpointState::default()))
                    .clone();
                let (workload, pod) = match &ep.pod {
                    Some(p) => (p.workload.clone(), p.name.clone()),
                    None => ("unknown".to_string(), ep.addr.to_string()),
                };
                let series = self.metrics.series(
                    SeriesKey {
                        service: plan.service.clone(),
                        workload,
                        pod,
                    },
                    ep.pod
                        .as_ref()
                        .map(|p| (p.namespace.as_str(), p.name.as_str())),
                );
                let authority: Authority = ep
                    .addr
                    .to_string()
                    .parse()
                    .expect("a socket address is a valid authority");
                endpoints.push(Endpoint {
                    addr: ep.addr,
                    hash: mix(fnv1a(ep.addr.to_string().as_bytes())),
                    authority,
                    series,
                    state: st,
                });
            }
        }
        // Keep the ejected count true to the endpoints this table has.
        let ejected = endpoints
            .iter()
            .filter(|e| e.state.ejected.load(Ordering::Acquire))
            .count() as u32;
        state.ejected.store(ejected, Ordering::Release);
        Cluster {
            name: plan.name.clone(),
            endpoints,
            service: self.metrics.service(&plan.service),
            local_series: self.metrics.series(
                SeriesKey {
                    service: plan.service.clone(),
                    workload: "unknown".into(),
                    pod: "unknown".into(),
                },
                None,
            ),
            policy: plan.policy.clone(),
            state,
        }
    }

    /// Attach runtime state to a plan.
    pub(crate) fn build(&self, plan: Plan, generation: u64) -> RouteTable {
        let clusters: Vec<Arc<Cluster>> = plan
            .clusters
            .iter()
            .map(|c| Arc::new(self.cluster(c)))
            .collect();
        let vhosts = plan
            .vhosts
            .into_iter()
            .map(|vh| VirtualHost {
                name: vh.name,
                routes: vh
                    .routes
                    .into_iter()
                    .map(|r| {
                        let dests: Vec<Dest> = match &r.action {
                            crate::plan::Action::Route(ds) => ds
                                .iter()
                                .map(|d| Dest {
                                    cluster: clusters[d.cluster].clone(),
                                    weight: d.weight,
                                    headers: d.headers.clone(),
                                })
                                .collect(),
                            _ => Vec::new(),
                        };
                        let total_weight = dests.iter().map(|d| d.weight).sum();
                        Arc::new(Route {
                            plan: r,
                            dests,
                            total_weight,
                        })
                    })
                    .collect(),
            })
            .collect();
        // Forget state of clusters and endpoints that are gone.
        {
            let names: std::collections::HashSet<&str> =
                plan.clusters.iter().map(|c| c.name.as_str()).collect();
            self.clusters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|k, _| names.contains(k.as_str()));
            let addrs: std::collections::HashSet<(&str, SocketAddr)> = plan
                .clusters
                .iter()
                .flat_map(|c| c.endpoints.iter().map(move |e| (c.name.as_str(), e.addr)))
                .collect();
            self.endpoints
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(c, a), _| addrs.contains(&(c.as_str(), *a)));
        }
        RouteTable {
            generation,
            hosts: plan.hosts,
            wildcards: plan.wildcards,
            catch_all: plan.catch_all,
            vhosts,
            warnings: plan.warnings,
        }
    }
}

impl RouteTable {
    /// An empty table (everything answers 404).
    pub(crate) fn empty() -> Self {
        RouteTable {
            generation: 0,
            hosts: HashMap::new(),
            wildcards: Vec::new(),
            catch_all: None,
            vhosts: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The virtual host for a host name (lowercase, no port).
    pub(crate) fn vhost(&self, host: &str) -> Option<&VirtualHost> {
        let i = match self.hosts.get(host) {
            Some(i) => Some(*i),
            None => self
                .wildcards
                .iter()
                .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
                .map(|(_, vh)| *vh)
                .or(self.catch_all),
        };
        i.map(|i| &self.vhosts[i])
    }
}

/// Inputs to an endpoint pick.
pub(crate) struct PickCtx<'a> {
    pub headers: &'a http::HeaderMap,
    pub query: Option<&'a str>,
    pub peer: SocketAddr,
    /// Endpoints already tried by this request (bit i = endpoint i), avoided when possible.
    pub tried: u64,
}

impl Cluster {
    fn usable(&self, i: usize, now: Instant, panic: bool) -> bool {
        panic || !self.endpoints[i].is_ejected(now, &self.state)
    }

    fn panic_mode(&self) -> bool {
        let Some(o) = &self.policy.outlier else {
            return false;
        };
        if o.min_health_percent == 0 {
            return false;
        }
        let n = self.endpoints.len() as u64;
        let ejected = u64::from(self.state.ejected.load(Ordering::Acquire)).min(n);
        (n - ejected) * 100 < n * u64::from(o.min_health_percent)
    }

    /// Choose an endpoint, or `None` when there is no healthy one.
    pub(crate) fn pick(&self, ctx: &PickCtx<'_>) -> Option<usize> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let now = Instant::now();
        let panic = self.panic_mode();
        let fresh = |i: usize| i >= 64 || ctx.tried & (1 << i) == 0;
        // Prefer untried usable endpoints; fall back to tried usable ones.
        for pass in 0..2 {
            let ok = |i: usize| self.usable(i, now, panic) && (pass == 1 || fresh(i));
            let found = match &self.policy.lb {
                LbPolicy::RoundRobin => {
                    let start = self.state.rr.fetch_add(1, Ordering::Relaxed);
                    (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
                }
                LbPolicy::Random => {
                    let start = rand::random_range(0..n);
                    (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
                }
                LbPolicy::LeastRequest => {
                    let a = rand::random_range(0..n);
                    let first = (0..n).map(|k| (a + k) % n).find(|&i| ok(i));
                    first.map(|x| {
                        if n == 1 {
                            return x;
                        }
                        let b = rand::random_range(0..n);
                        let second = (0..n).map(|k| (b + k) % n).find(|&i| ok(i) && i != x);
                        match second {
                            Some(y)
                                if self.endpoints[y].state.active.load(Ordering::Relaxed)
                                    < self.endpoints[x].state.active.load(Ordering::Relaxed) =>
                            {
                                y
                            }
                            _ => x,
                        }
                    })
                }
                LbPolicy::ConsistentHash(key) => {
                    let h = match key {
                        HashKey::Header(name) => ctx.headers.get(name).map(|v| fnv1a(v.as_bytes())),
                        HashKey::SourceIp => Some(fnv1a(ctx.peer.ip().to_string().as_bytes())),
                        HashKey::QueryParameter(p) => ctx.query.and_then(|q| {
                            q.split('&').find_map(|kv| {
                                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                                (k == p).then(|| fnv1a(v.as_bytes()))
                            })
                        }),
                    };
                    match h {
                        // Rendezvous hashing: the endpoint with the highest mixed score wins, so
                        // removing an endpoint moves only the keys that were on it.
                        Some(h) => (0..n)
                            .filter(|&i| ok(i))
                            .max_by_key(|&i| mix(h ^ self.endpoints[i].hash)),
                        None => {
                            let start = rand::random_range(0..n);
                            (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
                        }
                    }
                }
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Record the outcome of a try on endpoint `i` for outlier detection.
    pub(crate) fn report(&self, i: usize, outcome: Outcome) {
        let Some(o) = &self.policy.outlier else {
            return;
        };
        let ep = &self.endpoints[i];
        let mut host = ep.state.outlier.lock().unwrap_or_else(|e| e.into_inner());
        let trip = match outcome {
            Outcome::Status(code) if code >= 500 => {
                let gateway = matches!(code, 502..=504);
                host.consecutive_5xx += 1;
                if gateway {
                    host.consecutive_gateway += 1;
                } else {
                    host.consecutive_gateway = 0;
                }
                if !o.split_local_origin {
                    host.consecutive_local = 0;
                }
                (o.consecutive_5xx > 0 && host.consecutive_5xx >= o.consecutive_5xx)
                    || (o.consecutive_gateway > 0
                        && host.consecutive_gateway >= o.consecutive_gateway)
            }
            Outcome::Status(_) => {
                host.consecutive_5xx = 0;
                host.consecutive_gateway = 0;
                host.consecutive_local = 0;
                false
            }
            Outcome::LocalFailure if o.split_local_origin => {
                host.consecutive_local += 1;
                o.consecutive_local_origin > 0
                    && host.consecutive_local >= o.consecutive_local_origin
            }
            Outcome::LocalFailure => {
                // Not split: a local failure counts as a 503 from the upstream.
                host.consecutive_5xx += 1;
                host.consecutive_gateway += 1;
                (o.consecutive_5xx > 0 && host.consecutive_5xx >= o.consecutive_5xx)
                    || (o.consecutive_gateway > 0
                        && host.consecutive_gateway >= o.consecutive_gateway)
            }
        };
        if trip && host.ejected_until.is_none() {
            self.eject(i, &mut host, o);
        }
    }

    fn eject(&self, i: usize, host: &mut OutlierHost, o: &OutlierSettings) {
        let n = self.endpoints.len() as u64;
        let ejected = u64::from(self.state.ejected.load(Ordering::Acquire));
        // maxEjectionPercent, but one host can always be ejected (as Envoy does).
        if ejected > 0 && (ejected + 1) * 100 > n * u64::from(o.max_ejection_percent) {
            return;
        }
        let now = Instant::now();
        // The multiplier decays by one for each interval the host stayed healthy.
        if let Some(released) = host.released_at {
            let healthy =
                now.saturating_duration_since(released).as_nanos() / o.interval.as_nanos().max(1);
            host.ejections = host
                .ejections
                .saturating_sub(u32::try_from(healthy).unwrap_or(u32::MAX));
        }
        host.ejections += 1;
        let time = o.base_ejection_time.saturating_mul(host.ejections);
        // Envoy caps the ejection time at max(300 s, baseEjectionTime).
        let time = time.min(o.base_ejection_time.max(Duration::from_secs(300)));
        host.ejected_until = Some(now + time);
        host.consecutive_5xx = 0;
        host.consecutive_gateway = 0;
        host.consecutive_local = 0;
        let ep = &self.endpoints[i];
        ep.state.ejected.store(true, Ordering::Release);
        self.state.ejected.fetch_add(1, Ordering::AcqRel);
        ep.series.ejections.fetch_add(1, Ordering::Relaxed);
        ep.series.ejected.store(true, Ordering::Relaxed);
        tracing::warn!(
            cluster = %self.name,
            endpoint = %ep.addr,
            ejection_seconds = time.as_secs_f64(),
            ejections = host.ejections,
            "outlier detection ejected an endpoint"
        );
    }
}

impl Endpoint {
    /// Whether the endpoint is ejected now; releases it when its time is over.
    fn is_ejected(&self, now: Instant, cluster: &ClusterState) -> bool {
        if !self.state.ejected.load(Ordering::Acquire) {
            return false;
        }
        let mut host = self.state.outlier.lock().unwrap_or_else(|e| e.into_inner());
        match host.ejected_until {
            Some(until) if now < until => true,
            Some(until) => {
                host.ejected_until = None;
                host.released_at = Some(until);
                self.state.ejected.store(false, Ordering::Release);
                let _ = cluster
                    .ejected
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
                self.series.ejected.store(false, Ordering::Relaxed);
                tracing::info!(endpoint = %self.addr, "outlier detection returned an endpoint");
                false
            }
            None => false,
        }
    }
}
