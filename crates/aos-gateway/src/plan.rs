//! The route compiler: a pure function from a [`Snapshot`] to a [`Plan`] (virtual hosts, routes,
//! clusters with their endpoints and policies) plus warnings. No I/O, no clocks: table tests
//! feed it objects and check the plan.
//!
//! Semantics follow Istio where it has them:
//! - a VirtualService's short host names (`reviews`) mean `reviews.<its namespace>.svc.cluster.local`;
//!   a Service is also reachable as `NAME.NAMESPACE`, `NAME.NAMESPACE.svc` and its full name;
//! - a destination `host` resolves the same way, relative to the VirtualService's namespace;
//! - DestinationRule policies merge top level → port level → subset (each of `loadBalancer`,
//!   `connectionPool`, `outlierDetection` is replaced whole by the more specific level);
//! - retries default to Istio's policy (2 retries on `connect-failure,refused-stream,unavailable,
//!   cancelled,retriable-status-codes` with 503) when a route has no `retries`; timeouts are off
//!   unless set; fault percentages default to 100 % when absent.
//!
//! aos choices, where Istio has none because the mesh and the ingress are different proxies:
//! - one built-in gateway serves both mesh names and ingress names. A VirtualService is served if
//!   it lists no gateway, lists `mesh`, or lists a gateway that the built-in one serves: a
//!   Gateway object whose selector matches `istio: ingressgateway` (or is empty), or a gateway
//!   that no object defines (served, with a warning). A Gateway object's server hosts then
//!   restrict which of the VirtualService's hosts are served through it.
//! - the default load balancer is `ROUND_ROBIN` (Istio's current default is `LEAST_REQUEST`).
//! - a Service without a VirtualService answers on its names; the `Host` port picks the service
//!   port when it is one, else the first port is used.
//! - subsets select endpoints by the labels of the pod that `Endpoints.subsets[].addresses[].targetRef`
//!   names (the gateway watches Pods); an address without a pod matches only label-less subsets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::duration;
use crate::matcher::StrMatch;
use crate::model::{self, Meta as _};
use crate::snapshot::Snapshot;

/// The DNS suffix of Service names.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// Labels the built-in gateway carries, for Gateway objects' `selector`.
pub const BUILTIN_GATEWAY_LABELS: [(&str, &str); 2] =
    [("istio", "ingressgateway"), ("app", "aos-gateway")];

/// The compiled configuration: what to do with a request, as data.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Virtual hosts, referenced by index from the host maps.
    pub vhosts: Vec<VirtualHostPlan>,
    /// Exact host (lowercase, no port) → virtual host.
    pub hosts: HashMap<String, usize>,
    /// `*.suffix` hosts: (`.suffix`, virtual host), longest suffix first.
    pub wildcards: Vec<(String, usize)>,
    /// The virtual host for `*`, if any.
    pub catch_all: Option<usize>,
    /// Upstream clusters, referenced by index from routes.
    pub clusters: Vec<ClusterPlan>,
    /// What is wrong or ignored in the configuration, one line each.
    pub warnings: Vec<String>,
}

/// One virtual host: the routes of a VirtualService, or a Service's implicit route.
#[derive(Clone, Debug)]
pub struct VirtualHostPlan {
    /// `VirtualService ns/name` or `Service ns/name`.
    pub name: String,
    /// Routes in order; the first that matches wins.
    pub routes: Vec<RoutePlan>,
}

/// One HTTP route.
#[derive(Clone, Debug)]
pub struct RoutePlan {
    /// The route's name, or `http[i]`.
    pub name: String,
    /// Any of these matches selects the route; none means every request.
    pub matches: Vec<RequestMatch>,
    /// Forward, redirect or answer.
    pub action: Action,
    /// The route timeout (`None`: disabled, Istio's default).
    pub timeout: Option<Duration>,
    /// The retry policy.
    pub retry: RetryPolicy,
    /// Fault injection.
    pub fault: Option<FaultPlan>,
    /// CORS policy.
    pub cors: Option<CorsPlan>,
    /// Header operations on the request and the response.
    pub headers: HeaderOps,
    /// `rewrite.uri` and `rewrite.authority`.
    pub rewrite: Option<RewritePlan>,
}

/// What a route does.
#[derive(Clone, Debug)]
pub enum Action {
    /// Forward to one of the weighted destinations.
    Route(Vec<WeightedDestination>),
    /// Answer with a redirect.
    Redirect(RedirectPlan),
    /// Answer with a fixed status and body.
    Direct {
        /// Status code.
        status: StatusCode,
        /// Body.
        body: bytes::Bytes,
    },
}

/// A destination and its weight.
#[derive(Clone, Debug)]
pub struct WeightedDestination {
    /// Index into [`Plan::clusters`].
    pub cluster: usize,
    /// Relative weight.
    pub weight: u32,
    /// Header operations of this destination.
    pub headers: HeaderOps,
}

/// One `HTTPMatchRequest`: every condition must hold.
#[derive(Clone, Debug, Default)]
pub struct RequestMatch {
    /// Path (without query).
    pub uri: Option<StrMatch>,
    /// `ignoreUriCase`.
    pub ignore_uri_case: bool,
    /// Method.
    pub method: Option<StrMatch>,
    /// Scheme (`http`).
    pub scheme: Option<StrMatch>,
    /// Host header (with port, as sent).
    pub authority: Option<StrMatch>,
    /// Headers that must match.
    pub headers: Vec<(HeaderName, StrMatch)>,
    /// Headers that must not match.
    pub without_headers: Vec<(HeaderName, StrMatch)>,
    /// Query parameters that must match.
    pub query_params: Vec<(String, StrMatch)>,
    /// The port the request was addressed to (the `Host` header's port).
    pub port: Option<u16>,
}

/// `rewrite`.
#[derive(Clone, Debug, Default)]
pub struct RewritePlan {
    /// Replacement of the matched prefix (or the whole path).
    pub uri: Option<String>,
    /// Replacement `Host`.
    pub authority: Option<HeaderValue>,
}

/// `redirect`.
#[derive(Clone, Debug)]
pub struct RedirectPlan {
    /// New path.
    pub uri: Option<String>,
    /// New host.
    pub authority: Option<String>,
    /// New port.
    pub port: Option<u16>,
    /// New scheme.
    pub scheme: Option<String>,
    /// Status (301 by default).
    pub status: StatusCode,
}

/// Header operations.
#[derive(Clone, Debug, Default)]
pub struct HeaderOps {
    /// On the request to the upstream.
    pub request: HeaderOpList,
    /// On the response to the client.
    pub response: HeaderOpList,
}

/// `set`, `add` and `remove`.
#[derive(Clone, Debug, Default)]
pub struct HeaderOpList {
    /// Replace.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Append.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Remove.
    pub remove: Vec<HeaderName>,
}

impl HeaderOpList {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Apply to a header map.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// Conditions for a retry (`retryOn`), as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryOn(pub u32);

impl RetryOn {
    /// `5xx`: any 5xx response, or no response at all (connect failure, reset, per-try timeout).
    pub const FIVE_XX: u32 = 1;
    /// `gateway-error`: 502, 503, 504 (a per-try timeout counts as 504).
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    /// `reset`: the upstream reset or closed the connection, or did not answer in time.
    pub const RESET: u32 = 1 << 2;
    /// `connect-failure`: the connection could not be made.
    pub const CONNECT_FAILURE: u32 = 1 << 3;
    /// `retriable-4xx`: 409.
    pub const RETRIABLE_4XX: u32 = 1 << 4;
    /// `refused-stream`: an HTTP/2 stream refused with `REFUSED_STREAM`.
    pub const REFUSED_STREAM: u32 = 1 << 5;
    /// `retriable-status-codes`: the codes in [`RetryPolicy::status_codes`].
    pub const STATUS_CODES: u32 = 1 << 6;
    /// gRPC `cancelled` (1).
    pub const CANCELLED: u32 = 1 << 7;
    /// gRPC `deadline-exceeded` (4).
    pub const DEADLINE_EXCEEDED: u32 = 1 << 8;
    /// gRPC `resource-exhausted` (8).
    pub const RESOURCE_EXHAUSTED: u32 = 1 << 9;
    /// gRPC `internal` (13).
    pub const INTERNAL: u32 = 1 << 10;
    /// gRPC `unavailable` (14).
    pub const UNAVAILABLE: u32 = 1 << 11;

    /// Whether `bit` is set.
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// A route's retry policy.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Number of retries after the first try (Istio's `attempts`); 0 disables retries.
    pub attempts: u32,
    /// Timeout of each try (`None`: only the route timeout applies).
    pub per_try_timeout: Option<Duration>,
    /// When to retry.
    pub on: RetryOn,
    /// Codes for `retriable-status-codes`.
    pub status_codes: Vec<u16>,
}

impl RetryPolicy {
    /// Istio's policy for a route without `retries`.
    ///
    /// Istio's `pilot/pkg/networking/core/route/retry/retry.go` (`DefaultPolicy`, checked for
    /// this gateway) gives Envoy `num_retries: 2`, `retry_on:
    /// connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`,
    /// `retriable_status_codes: [503]` (unless istiod runs with
    /// `EXCLUDE_503_FROM_DEFAULT_RETRIES`), the `previous_hosts` host predicate (dropped when
    /// the route hashes consistently) and no per-try timeout. Envoy's back-off then applies:
    /// 25 ms base, 250 ms cap, fully jittered (see `proxy::retry`). A `retries` block with
    /// `attempts: 0` (or none) turns retries off; one with attempts keeps this policy and
    /// overrides `num_retries`, and `retryOn` when given (its codes then replace the 503).
    pub fn istio_default() -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            per_try_timeout: None,
            on: RetryOn(
                RetryOn::CONNECT_FAILURE
                    | RetryOn::REFUSED_STREAM
                    | RetryOn::UNAVAILABLE
                    | RetryOn::CANCELLED
                    | RetryOn::STATUS_CODES,
            ),
            status_codes: vec![503],
        }
    }

    /// No retries.
    pub fn disabled() -> RetryPolicy {
        RetryPolicy {
            attempts: 0,
            ..RetryPolicy::istio_default()
        }
    }
}

/// Fault injection.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// Delay and the fraction (0..=1) of requests it applies to.
    pub delay: Option<(Duration, f64)>,
    /// Abort status and the fraction of requests it applies to.
    pub abort: Option<(StatusCode, f64)>,
}

/// CORS policy.
#[derive(Clone, Debug)]
pub struct CorsPlan {
    /// Allowed origins.
    pub allow_origins: Vec<StrMatch>,
    /// `access-control-allow-methods`.
    pub allow_methods: Option<HeaderValue>,
    /// `access-control-allow-headers`.
    pub allow_headers: Option<HeaderValue>,
    /// `access-control-expose-headers`.
    pub expose_headers: Option<HeaderValue>,
    /// `access-control-max-age` (seconds).
    pub max_age: Option<HeaderValue>,
    /// `access-control-allow-credentials: true`.
    pub allow_credentials: bool,
}

impl CorsPlan {
    /// Whether `origin` is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|m| m.matches(origin))
    }
}

/// An upstream cluster: a service port, possibly narrowed to a subset.
#[derive(Clone, Debug)]
pub struct ClusterPlan {
    /// Envoy-style name: `outbound|PORT|SUBSET|HOST`.
    pub name: String,
    /// The destination service's full name (the `destination_service` metric label).
    pub service: String,
    /// Endpoints, in a stable order.
    pub endpoints: Vec<EndpointPlan>,
    /// Policies from the DestinationRule.
    pub policy: ClusterPolicy,
}

/// One upstream address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointPlan {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The pod behind it, when `targetRef` names one.
    pub pod: Option<PodInfo>,
}

/// The pod behind an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The workload (the Deployment, derived from the owning ReplicaSet, or the owner's name).
    pub workload: String,
}

/// Load balancing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LbPolicy {
    /// `ROUND_ROBIN`.
    RoundRobin,
    /// `LEAST_REQUEST`: the less loaded of two random endpoints.
    LeastRequest,
    /// `RANDOM`.
    Random,
    /// `consistentHash`.
    ConsistentHash(HashKey),
}

/// What a consistent hash is computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// A request header.
    Header(HeaderName),
    /// The client's IP address.
    SourceIp,
    /// A query parameter.
    QueryParameter(String),
}

/// Circuit-breaker limits and connection settings (`connectionPool`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// `tcp.maxConnections`.
    pub max_connections: u32,
    /// `tcp.connectTimeout` (Istio default 10 s).
    pub connect_timeout: Duration,
    /// `http.http1MaxPendingRequests`.
    pub max_pending_requests: u32,
    /// `http.http2MaxRequests`: concurrent requests to the cluster.
    pub max_requests: u32,
    /// `http.idleTimeout` of upstream connections (Istio default 1 h).
    pub idle_timeout: Duration,
    /// Speak HTTP/2 (prior knowledge) to the upstream.
    pub http2: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: u32::MAX,
            connect_timeout: Duration::from_secs(10),
            max_pending_requests: u32::MAX,
            max_requests: u32::MAX,
            idle_timeout: Duration::from_secs(3600),
            http2: false,
        }
    }
}

/// `outlierDetection` with Istio's defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierSettings {
    /// `consecutive5xxErrors` (default 5; 0 disables).
    pub consecutive_5xx: u32,
    /// `consecutiveGatewayErrors` (default 0: disabled).
    pub consecutive_gateway: u32,
    /// `consecutiveLocalOriginFailures` (default 5), used when split.
    pub consecutive_local_origin: u32,
    /// `splitExternalLocalOriginErrors`.
    pub split_local_origin: bool,
    /// `interval` (default 10 s): the ejection multiplier decays by one per healthy interval.
    pub interval: Duration,
    /// `baseEjectionTime` (default 30 s), multiplied by the ejection count.
    pub base_ejection_time: Duration,
    /// `maxEjectionPercent` (default 10; at least one host can always be ejected).
    pub max_ejection_percent: u32,
    /// `minHealthPercent` (default 0): below it, ejections are ignored (panic mode).
    pub min_health_percent: u32,
}

/// Every policy of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPolicy {
    /// Load balancer.
    pub lb: LbPolicy,
    /// Connection pool.
    pub pool: PoolSettings,
    /// Outlier detection, when configured.
    pub outlier: Option<OutlierSettings>,
}

impl Default for ClusterPolicy {
    fn default() -> Self {
        ClusterPolicy {
            lb: LbPolicy::RoundRobin,
            pool: PoolSettings::default(),
            outlier: None,
        }
    }
}

// ---------------------------------------------------------------- compilation

struct Parsed<T> {
    obj: T,
    raw: Value,
}

struct Compiler<'a> {
    warnings: Vec<String>,
    services: BTreeMap<(String, String), model::Service>,
    endpoints: HashMap<(String, String), model::Endpoints>,
    pods: HashMap<(String, String), &'a model::Pod>,
    /// Full service host → DestinationRule, oldest first wins.
    rules: HashMap<String, &'a model::DestinationRule>,
    clusters: Vec<ClusterPlan>,
    cluster_index: HashMap<(String, u16, String), usize>,
}

fn parse_all<T: DeserializeOwned>(
    kind: &str,
    objs: &[Value],
    warnings: &mut Vec<String>,
) -> Vec<Parsed<T>> {
    let mut out = Vec::with_capacity(objs.len());
    for raw in objs {
        match serde_json::from_value::<T>(raw.clone()) {
            Ok(obj) => out.push(Parsed {
                obj,
                raw: raw.clone(),
            }),
            Err(e) => {
                let name = raw
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                let ns = raw
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                warnings.push(format!("{kind} {ns}/{name}: ignored: {e}"));
            }
        }
    }
    out
}

/// The order Istio resolves conflicts in: oldest first, then by namespace and name.
fn age_key(meta: &impl model::Meta) -> (String, String, String) {
    (
        meta.created(),
        meta.ns().to_string(),
        meta.name().to_string(),
    )
}

/// The full name of a service: `name.ns.svc.cluster.local`.
pub fn service_fqdn(ns: &str, name: &str) -> String {
    format!("{name}.{ns}.{CLUSTER_DOMAIN}")
}

/// Resolve a host to `(namespace, name)` of a Service, if it is one of a Service's names:
/// `name` (in `ctx_ns`), `name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local`.
fn service_of_host(
    host: &str,
    ctx_ns: &str,
    known: &BTreeMap<(String, String), model::Service>,
) -> Option<(String, String)> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let parts: Vec<&str> = host.split('.').collect();
    let key = match parts.as_slice() {
        [name] => (ctx_ns.to_string(), (*name).to_string()),
        [name, ns] | [name, ns, "svc"] | [name, ns, "svc", "cluster", "local"] => {
            ((*ns).to_string(), (*name).to_string())
        }
        _ => return None,
    };
    known.contains_key(&key).then_some(key)
}

/// Expand a VirtualService host the way Istio does (short names → FQDN in `ns`), and also
/// map `name.ns`/`name.ns.svc` of a known Service to its FQDN.
fn expand_host(host: &str, ns: &str, known: &BTreeMap<(String, String), model::Service>) -> String {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h.starts_with('*') {
        return h;
    }
    if !h.contains('.') {
        return service_fqdn(ns, &h);
    }
    match service_of_host(&h, ns, known) {
        Some((sns, sname)) => service_fqdn(&sns, &sname),
        None => h,
    }
}

/// The names a request may use for a full service name.
fn host_aliases(fqdn: &str) -> Vec<String> {
    let mut out = vec![fqdn.to_string()];
    if let Some(base) = fqdn.strip_suffix(&format!(".{CLUSTER_DOMAIN}"))
        && base.split('.').count() == 2
    {
        out.push(format!("{base}.svc"));
        out.push(base.to_string());
    }
    out
}

/// Whether a gateway server host (`host`, `ns/host`, `*/host`, `./host`, `*`, `*.example.com`)
/// admits `host` of a VirtualService in `vs_ns` (gateway in `gw_ns`).
fn server_host_admits(server_host: &str, host: &str, vs_ns: &str, gw_ns: &str) -> bool {
    let (ns, h) = match server_host.split_once('/') {
        Some((ns, h)) => (ns, h),
        None => ("*", server_host),
    };
    let ns_ok = ns == "*" || (ns == "." && vs_ns == gw_ns) || ns == vs_ns;
    ns_ok && wildcard_admits(h, host)
}

fn wildcard_admits(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return host.ends_with(suffix)
            || host.strip_prefix('*').is_some_and(|h| h.ends_with(suffix));
    }
    pattern == host
}

fn percent(p: Option<&model::Percent>, legacy: Option<i64>) -> f64 {
    match (p, legacy) {
        (Some(p), _) => (p.value.unwrap_or(0.0) / 100.0).clamp(0.0, 1.0),
        (None, Some(l)) if l > 0 => (l as f64 / 100.0).clamp(0.0, 1.0),
        // Istio: an absent percentage applies the fault to every request.
        _ => 1.0,
    }
}

/// An optional list as a slice.
fn list<T>(v: &Option<Vec<T>>) -> &[T] {
    v.as_deref().unwrap_or_default()
}

fn clamp_u32(v: Option<i64>, default: u32) -> u32 {
    match v {
        Some(v) if v >= 0 => u32::try_from(v).unwrap_or(u32::MAX),
        _ => default,
    }
}

fn header_value(s: &str, path: &str, warnings: &mut Vec<String>) -> Option<HeaderValue> {
    match HeaderValue::from_str(s) {
        Ok(v) => Some(v),
        Err(_) => {
            warnings.push(format!(
                "{path}: {s:?} is not a valid header value; ignored"
            ));
            None
        }
    }
}

fn header_name(s: &str, path: &str, warnings: &mut Vec<String>) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.to_ascii_lowercase().as_bytes()) {
        Ok(v) => Some(v),
        Err(_) => {
            warnings.push(format!("{path}: {s:?} is not a valid header name; ignored"));
            None
        }
    }
}

fn header_op_list(
    ops: Option<&model::HeaderOperations>,
    path: &str,
    warnings: &mut Vec<String>,
) -> HeaderOpList {
    let mut out = HeaderOpList::default();
    let Some(ops) = ops else { return out };
    for (k, v) in ops.set.iter().flatten() {
        if let (Some(n), Some(v)) = (
            header_name(k, path, warnings),
            header_value(v, path, warnings),
        ) {
            out.set.push((n, v));
        }
    }
    for (k, v) in ops.add.iter().flatten() {
        if let (Some(n), Some(v)) = (
            header_name(k, path, warnings),
            header_value(v, path, warnings),
        ) {
            out.add.push((n, v));
        }
    }
    for k in ops.remove.iter().flatten() {
        if let Some(n) = header_name(k, path, warnings) {
            out.remove.push(n);
        }
    }
    out
}

fn header_ops(h: Option<&model::Headers>, path: &str, warnings: &mut Vec<String>) -> HeaderOps {
    HeaderOps {
        request: header_op_list(
            h.and_then(|h| h.request.as_ref()),
            &format!("{path}.request"),
            warnings,
        ),
        response: header_op_list(
            h.and_then(|h| h.response.as_ref()),
            &format!("{path}.response"),
            warnings,
        ),
    }
}

/// Parse `retryOn`: known conditions and numeric status codes.
pub(crate) fn parse_retry_on(
    s: &str,
    path: &str,
    warnings: &mut Vec<String>,
) -> (RetryOn, Vec<u16>) {
    let mut bits = 0;
    let mut codes = Vec::new();
    for token in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        bits |= match token {
            "5xx" => RetryOn::FIVE_XX,
            "gateway-error" => RetryOn::GATEWAY_ERROR,
            "reset" | "reset-before-request" => RetryOn::RESET,
            "connect-failure" => RetryOn::CONNECT_FAILURE,
            "retriable-4xx" => RetryOn::RETRIABLE_4XX,
            "refused-stream" => RetryOn::REFUSED_STREAM,
            "retriable-status-codes" => RetryOn::STATUS_CODES,
            "cancelled" => RetryOn::CANCELLED,
            "deadline-exceeded" => RetryOn::DEADLINE_EXCEEDED,
            "resource-exhausted" => RetryOn::RESOURCE_EXHAUSTED,
            "internal" => RetryOn::INTERNAL,
            "unavailable" => RetryOn::UNAVAILABLE,
            other => match other.parse::<u16>() {
                Ok(code) if (100..600).contains(&code) => {
                    codes.push(code);
                    RetryOn::STATUS_CODES
                }
                _ => {
                    warnings.push(format!(
                        "{path}: retry condition {other:?} is not implemented; ignored"
                    ));
                    0
                }
            },
        };
    }
    (RetryOn(bits), codes)
}

fn retry_policy(
    r: Option<&model::HttpRetry>,
    path: &str,
    warnings: &mut Vec<String>,
) -> RetryPolicy {
    let Some(r) = r else {
        return RetryPolicy::istio_default();
    };
    let attempts = clamp_u32(r.attempts, 0);
    if attempts == 0 {
        return RetryPolicy::disabled();
    }
    let mut policy = RetryPolicy {
        attempts,
        ..RetryPolicy::istio_default()
    };
    if let Some(t) = &r.per_try_timeout {
        match duration::parse(t) {
            Ok(d) if !d.is_zero() => policy.per_try_timeout = Some(d),
            Ok(_) => {}
            Err(e) => warnings.push(format!("{path}.perTryTimeout: {e}; ignored")),
        }
    }
    if let Some(on) = r.retry_on.as_deref().filter(|s| !s.trim().is_empty()) {
        // Istio replaces both the conditions and the codes: `retryOn: 5xx` retries no 503
        // by code, `retryOn: retriable-status-codes` alone retries no code at all.
        let (bits, codes) = parse_retry_on(on, &format!("{path}.retryOn"), warnings);
        policy.on = bits;
        policy.status_codes = codes;
    }
    policy
}

fn fault_plan(
    f: Option<&model::HttpFaultInjection>,
    path: &str,
    warnings: &mut Vec<String>,
) -> Option<FaultPlan> {
    let f = f?;
    let delay = f.delay.as_ref().and_then(|d| {
        let fixed = d.fixed_delay.as_deref()?;
        match duration::parse(fixed) {
            Ok(dur) => Some((dur, percent(d.percentage.as_ref(), d.percent))),
            Err(e) => {
                warnings.push(format!("{path}.fault.delay.fixedDelay: {e}; ignored"));
                None
            }
        }
    });
    let abort = f.abort.as_ref().and_then(|a| {
        let code = a.http_status?;
        match u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(status) if code >= 200 => Some((status, percent(a.percentage.as_ref(), None))),
            _ => {
                warnings.push(format!(
                    "{path}.fault.abort.httpStatus: {code} is not a valid status; ignored"
                ));
                None
            }
        }
    });
    (delay.is_some() || abort.is_some()).then_some(FaultPlan { delay, abort })
}

fn cors_plan(
    c: Option<&model::CorsPolicy>,
    path: &str,
    warnings: &mut Vec<String>,
) -> Option<CorsPlan> {
    let c = c?;
    let mut origins = Vec::new();
    for (i, m) in c.allow_origins.iter().flatten().enumerate() {
        match StrMatch::compile(m) {
            Ok(m) => origins.push(m),
            Err(e) => warnings.push(format!("{path}.corsPolicy.allowOrigins[{i}]: {e}; ignored")),
        }
    }
    origins.extend(c.allow_origin.iter().flatten().map(|o| {
        if o == "*" {
            StrMatch::Present
        } else {
            StrMatch::Exact(o.clone())
        }
    }));
    let join = |v: &[String], field: &str, warnings: &mut Vec<String>| {
        (!v.is_empty())
            .then(|| {
                header_value(
                    &v.join(","),
                    &format!("{path}.corsPolicy.{field}"),
                    warnings,
                )
            })
            .flatten()
    };
    let max_age = c.max_age.as_deref().and_then(|m| match duration::parse(m) {
        Ok(d) => HeaderValue::from_str(&d.as_secs().to_string()).ok(),
        Err(e) => {
            warnings.push(format!("{path}.corsPolicy.maxAge: {e}; ignored"));
            None
        }
    });
    Some(CorsPlan {
        allow_origins: origins,
        allow_methods: join(list(&c.allow_methods), "allowMethods", warnings),
        allow_headers: join(list(&c.allow_headers), "allowHeaders", warnings),
        expose_headers: join(list(&c.expose_headers), "exposeHeaders", warnings),
        max_age,
        allow_credentials: c.allow_credentials.unwrap_or(false),
    })
}

fn request_match(
    m: &model::HttpMatchRequest,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<RequestMatch, String> {
    let compile =
        |sm: &Option<model::StringMatch>, field: &str| -> Result<Option<StrMatch>, String> {
            sm.as_ref()
                .map(|s| StrMatch::compile(s).map_err(|e| format!("{path}.{field}: {e}")))
                .transpose()
        };
    let mut out = RequestMatch {
        uri: compile(&m.uri, "uri")?,
        ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
        method: compile(&m.method, "method")?,
        scheme: compile(&m.scheme, "scheme")?,
        authority: compile(&m.authority, "authority")?,
        port: m.port.and_then(|p| u16::try_from(p).ok()),
        ..Default::default()
    };
    for (k, v) in m.headers.iter().flatten() {
        let n = header_name(k, &format!("{path}.headers"), warnings)
            .ok_or_else(|| format!("{path}.headers: invalid name {k:?}"))?;
        out.headers.push((
            n,
            StrMatch::compile(v).map_err(|e| format!("{path}.headers.{k}: {e}"))?,
        ));
    }
    for (k, v) in m.without_headers.iter().flatten() {
        let n = header_name(k, &format!("{path}.withoutHeaders"), warnings)
            .ok_or_else(|| format!("{path}.withoutHeaders: invalid name {k:?}"))?;
        out.without_headers.push((
            n,
            StrMatch::compile(v).map_err(|e| format!("{path}.withoutHeaders.{k}: {e}"))?,
        ));
    }
    for (k, v) in m.query_params.iter().flatten() {
        out.query_params.push((
            k.clone(),
            StrMatch::compile(v).map_err(|e| format!("{path}.queryParams.{k}: {e}"))?,
        ));
    }
    Ok(out)
}

/// Warn about fields that are valid Istio but not implemented by the gateway.
fn warn_unimplemented_vs(raw: &Value, who: &str, warnings: &mut Vec<String>) {
    let spec = raw.get("spec");
    for field in ["tcp", "tls"] {
        if spec
            .and_then(|s| s.get(field))
            .is_some_and(|v| !v.is_null())
        {
            warnings.push(format!(
                "{who}: spec.{field}: not implemented by the gateway; ignored"
            ));
        }
    }
    let routes = spec.and_then(|s| s.get("http")).and_then(Value::as_array);
    for (i, r) in routes.into_iter().flatten().enumerate() {
        for field in ["mirror", "mirrors", "mirrorPercentage", "delegate"] {
            if r.get(field).is_some_and(|v| !v.is_null()) {
                warnings.push(format!(
                    "{who}: spec.http[{i}].{field}: not implemented by the gateway; ignored"
                ));
            }
        }
        if r.pointer("/rewrite/uriRegexRewrite").is_some() {
            warnings.push(format!("{who}: spec.http[{i}].rewrite.uriRegexRewrite: not implemented by the gateway; ignored"));
        }
        for (j, m) in r
            .get("match")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for field in ["sourceLabels", "sourceNamespace", "statPrefix"] {
                if m.get(field).is_some_and(|v| !v.is_null()) {
                    warnings.push(format!(
                        "{who}: spec.http[{i}].match[{j}].{field}: not implemented by the gateway; ignored"
                    ));
                }
            }
        }
    }
}

fn warn_unimplemented_dr(raw: &Value, who: &str, warnings: &mut Vec<String>) {
    let mut policies: Vec<(String, &Value)> = Vec::new();
    if let Some(tp) = raw.pointer("/spec/trafficPolicy") {
        policies.push(("spec.trafficPolicy".into(), tp));
    }
    for (i, s) in raw
        .pointer("/spec/subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(tp) = s.get("trafficPolicy") {
            policies.push((format!("spec.subsets[{i}].trafficPolicy"), tp));
        }
    }
    for (path, tp) in policies {
        for (ptr, field) in [
            ("/tls", "tls"),
            ("/tunnel", "tunnel"),
            ("/proxyProtocol", "proxyProtocol"),
            (
                "/loadBalancer/localityLbSetting",
                "loadBalancer.localityLbSetting",
            ),
            (
                "/loadBalancer/warmupDurationSecs",
                "loadBalancer.warmupDurationSecs",
            ),
            (
                "/loadBalancer/consistentHash/httpCookie",
                "loadBalancer.consistentHash.httpCookie",
            ),
            (
                "/connectionPool/tcp/tcpKeepalive",
                "connectionPool.tcp.tcpKeepalive",
            ),
            (
                "/connectionPool/tcp/maxConnectionDuration",
                "connectionPool.tcp.maxConnectionDuration",
            ),
            (
                "/connectionPool/http/maxRequestsPerConnection",
                "connectionPool.http.maxRequestsPerConnection",
            ),
            (
                "/connectionPool/http/maxRetries",
                "connectionPool.http.maxRetries",
            ),
            (
                "/connectionPool/http/maxConcurrentStreams",
                "connectionPool.http.maxConcurrentStreams",
            ),
            (
                "/outlierDetection/consecutiveErrors",
                "outlierDetection.consecutiveErrors (deprecated; use consecutive5xxErrors)",
            ),
        ] {
            if tp.pointer(ptr).is_some_and(|v| !v.is_null()) {
                warnings.push(format!(
                    "{who}: {path}.{field}: not implemented by the gateway; ignored"
                ));
            }
        }
    }
}

fn lb_policy(lb: &model::LoadBalancerSettings, path: &str, warnings: &mut Vec<String>) -> LbPolicy {
    if let Some(ch) = &lb.consistent_hash {
        if let Some(h) = ch.http_header_name.as_deref()
            && let Some(n) = header_name(
                h,
                &format!("{path}.consistentHash.httpHeaderName"),
                warnings,
            )
        {
            return LbPolicy::ConsistentHash(HashKey::Header(n));
        }
        if ch.use_source_ip == Some(true) {
            return LbPolicy::ConsistentHash(HashKey::SourceIp);
        }
        if let Some(q) = &ch.http_query_parameter_name {
            return LbPolicy::ConsistentHash(HashKey::QueryParameter(q.clone()));
        }
        warnings.push(format!(
            "{path}.consistentHash: no supported hash key; using ROUND_ROBIN"
        ));
        return LbPolicy::RoundRobin;
    }
    match lb.simple.as_deref() {
        None | Some("UNSPECIFIED") | Some("ROUND_ROBIN") => LbPolicy::RoundRobin,
        Some("LEAST_REQUEST") | Some("LEAST_CONN") => LbPolicy::LeastRequest,
        Some("RANDOM") => LbPolicy::Random,
        Some(other) => {
            warnings.push(format!(
                "{path}.simple: {other} is not implemented; using ROUND_ROBIN"
            ));
            LbPolicy::RoundRobin
        }
    }
}

fn apply_pool(
    pool: &mut PoolSettings,
    cp: &model::ConnectionPoolSettings,
    path: &str,
    warnings: &mut Vec<String>,
) {
    let mut d = PoolSettings {
        http2: pool.http2,
        ..PoolSettings::default()
    };
    if let Some(tcp) = &cp.tcp {
        d.max_connections = clamp_u32(tcp.max_connections, d.max_connections).max(1);
        if let Some(t) = &tcp.connect_timeout {
            match duration::parse(t) {
                Ok(t) if !t.is_zero() => d.connect_timeout = t,
                Ok(_) => {}
                Err(e) => warnings.push(format!("{path}.tcp.connectTimeout: {e}; ignored")),
            }
        }
    }
    if let Some(http) = &cp.http {
        d.max_pending_requests = clamp_u32(http.http1_max_pending_requests, d.max_pending_requests);
        d.max_requests = clamp_u32(http.http2_max_requests, d.max_requests).max(1);
        if let Some(t) = &http.idle_timeout {
            match duration::parse(t) {
                Ok(t) if !t.is_zero() => d.idle_timeout = t,
                Ok(_) => {}
                Err(e) => warnings.push(format!("{path}.http.idleTimeout: {e}; ignored")),
            }
        }
        match http.h2_upgrade_policy.as_deref() {
            Some("UPGRADE") => d.http2 = true,
            Some("DO_NOT_UPGRADE") => d.http2 = false,
            _ => {}
        }
    }
    *pool = d;
}

fn outlier_settings(
    o: &model::OutlierDetection,
    path: &str,
    warnings: &mut Vec<String>,
) -> OutlierSettings {
    let dur =
        |v: &Option<String>, field: &str, default: Duration, warnings: &mut Vec<String>| match v {
            Some(s) => match duration::parse(s) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => default,
                Err(e) => {
                    warnings.push(format!("{path}.{field}: {e}; using the default"));
                    default
                }
            },
            None => default,
        };
    OutlierSettings {
        consecutive_5xx: clamp_u32(o.consecutive5xx_errors, 5),
        consecutive_gateway: clamp_u32(o.consecutive_gateway_errors, 0),
        consecutive_local_origin: clamp_u32(o.consecutive_local_origin_failures, 5),
        split_local_origin: o.split_external_local_origin_errors.unwrap_or(false),
        interval: dur(&o.interval, "interval", Duration::from_secs(10), warnings),
        base_ejection_time: dur(
            &o.base_ejection_time,
            "baseEjectionTime",
            Duration::from_secs(30),
            warnings,
        ),
        max_ejection_percent: clamp_u32(o.max_ejection_percent, 10).min(100),
        min_health_percent: clamp_u32(o.min_health_percent, 0).min(100),
    }
}

/// The level of a DestinationRule's policy that applies: the port-level settings of `port`
/// override the level's own settings.
fn apply_traffic_policy(
    policy: &mut ClusterPolicy,
    tp: &model::TrafficPolicy,
    port: u16,
    path: &str,
    warnings: &mut Vec<String>,
) {
    let mut apply = |lb: &Option<model::LoadBalancerSettings>,
                     cp: &Option<model::ConnectionPoolSettings>,
                     od: &Option<model::OutlierDetection>,
                     path: &str,
                     warnings: &mut Vec<String>| {
        if let Some(lb) = lb {
            policy.lb = lb_policy(lb, &format!("{path}.loadBalancer"), warnings);
        }
        if let Some(cp) = cp {
            apply_pool(
                &mut policy.pool,
                cp,
                &format!("{path}.connectionPool"),
                warnings,
            );
        }
        if let Some(od) = od {
            policy.outlier = Some(outlier_settings(
                od,
                &format!("{path}.outlierDetection"),
                warnings,
            ));
        }
    };
    apply(
        &tp.load_balancer,
        &tp.connection_pool,
        &tp.outlier_detection,
        path,
        warnings,
    );
    for (i, pl) in list(&tp.port_level_settings).iter().enumerate() {
        if pl.port.as_ref().and_then(|p| p.number) == Some(u32::from(port)) {
            apply(
                &pl.load_balancer,
                &pl.connection_pool,
                &pl.outlier_detection,
                &format!("{path}.portLevelSettings[{i}]"),
                warnings,
            );
        }
    }
}

/// The workload name of a pod: its Deployment (owning ReplicaSet minus the hash suffix), else its
/// controller's name, else the pod's own name.
fn workload_of(pod: &model::Pod) -> String {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| pod.metadata.owner_references.first());
    match owner {
        Some(o) if o.kind == "ReplicaSet" => match o.name.rsplit_once('-') {
            Some((deploy, hash))
                if !deploy.is_empty() && hash.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                deploy.to_string()
            }
            _ => o.name.clone(),
        },
        Some(o) => o.name.clone(),
        None => pod.metadata.name.clone(),
    }
}

impl<'a> Compiler<'a> {
    /// The cluster for (service, port, subset), created on first use.
    fn cluster(
        &mut self,
        ns: &str,
        name: &str,
        port: Option<u16>,
        subset: Option<&str>,
        who: &str,
    ) -> usize {
        let fqdn = service_fqdn(ns, name);
        let svc = self
            .services
            .get(&(ns.to_string(), name.to_string()))
            .cloned();
        let svc_port = match (&svc, port) {
            (Some(s), Some(p)) => {
                let found = s.spec.ports.iter().find(|sp| sp.port == p).cloned();
                if found.is_none() {
                    self.warnings.push(format!(
                        "{who}: port {p} is not a port of Service {ns}/{name}"
                    ));
                }
                found
            }
            (Some(s), None) => {
                if s.spec.ports.len() > 1 {
                    self.warnings.push(format!(
                        "{who}: Service {ns}/{name} has several ports and the destination names none; using the first"
                    ));
                }
                s.spec.ports.first().cloned()
            }
            (None, _) => None,
        };
        let port_num = svc_port.as_ref().map(|p| p.port).or(port).unwrap_or(0);
        let subset_name = subset.unwrap_or("").to_string();
        let key = (fqdn.clone(), port_num, subset_name.clone());
        if let Some(&i) = self.cluster_index.get(&key) {
            return i;
        }

        // Policies: DestinationRule top level → port level → subset.
        let mut policy = ClusterPolicy::default();
        if let Some(sp) = &svc_port {
            let proto = sp
                .app_protocol
                .as_deref()
                .or(sp.name.as_deref())
                .unwrap_or("");
            let proto = proto.split('-').next().unwrap_or("");
            policy.pool.http2 = matches!(proto, "http2" | "grpc" | "h2c" | "kubernetes.io/h2c");
        }
        let mut subset_labels: Option<BTreeMap<String, String>> = None;
        if let Some(dr) = self.rules.get(&fqdn).copied() {
            let drwho = format!(
                "DestinationRule {}/{}",
                dr.metadata.ns(),
                dr.metadata.name()
            );
            if let Some(tp) = &dr.spec.traffic_policy {
                apply_traffic_policy(
                    &mut policy,
                    tp,
                    port_num,
                    &format!("{drwho}: spec.trafficPolicy"),
                    &mut self.warnings,
                );
            }
            if let Some(sub) = subset {
                let subsets = list(&dr.spec.subsets);
                match subsets.iter().position(|s| s.name.as_deref() == Some(sub)) {
                    Some(i) => {
                        let s = &subsets[i];
                        subset_labels = Some(s.labels.clone().unwrap_or_default());
                        if let Some(tp) = &s.traffic_policy {
                            apply_traffic_policy(
                                &mut policy,
                                tp,
                                port_num,
                                &format!("{drwho}: spec.subsets[{i}].trafficPolicy"),
                                &mut self.warnings,
                            );
                        }
                    }
                    None => self
                        .warnings
                        .push(format!("{who}: subset {sub:?} is not defined by {drwho}")),
                }
            }
        } else if let Some(sub) = subset {
            self.warnings.push(format!(
                "{who}: subset {sub:?} but no DestinationRule for {fqdn}"
            ));
        }

        // Endpoints of the port, filtered by the subset's labels.
        let mut endpoints = Vec::new();
        let missing_subset = subset.is_some() && subset_labels.is_none();
        if let (Some(svc), Some(sp)) = (&svc, &svc_port) {
            if svc.spec.type_.as_deref() == Some("ExternalName") {
                self.warnings.push(format!(
                    "{who}: Service {ns}/{name} is ExternalName, which the gateway does not route"
                ));
            }
            if let Some(eps) = self.endpoints.get(&(ns.to_string(), name.to_string())) {
                let single_port = svc.spec.ports.len() == 1;
                for subset_ in &eps.subsets {
                    let ep_port = subset_
                        .ports
                        .iter()
                        .find(|p| {
                            p.name.as_deref().unwrap_or("") == sp.name.as_deref().unwrap_or("")
                        })
                        .or_else(|| {
                            (single_port && subset_.ports.len() == 1).then(|| &subset_.ports[0])
                        });
                    let Some(ep_port) = ep_port else { continue };
                    for a in &subset_.addresses {
                        let Ok(ip) = a.ip.parse::<IpAddr>() else {
                            self.warnings.push(format!(
                                "Endpoints {ns}/{name}: {:?} is not an IP address; ignored",
                                a.ip
                            ));
                            continue;
                        };
                        let pod = a
                            .target_ref
                            .as_ref()
                            .filter(|r| r.kind.as_deref().unwrap_or("Pod") == "Pod")
                            .and_then(|r| {
                                let pns = r.namespace.clone().unwrap_or_else(|| ns.to_string());
                                self.pods.get(&(pns, r.name.clone())).copied()
                            });
                        if let Some(labels) = &subset_labels {
                            let pod_labels = pod.map(|p| &p.metadata.labels);
                            let ok = labels
                                .iter()
                                .all(|(k, v)| pod_labels.and_then(|l| l.get(k)) == Some(v));
                            if !ok {
                                continue;
                            }
                        }
                        if missing_subset {
                            continue;
                        }
                        let info = match (a.target_ref.as_ref(), pod) {
                            (_, Some(p)) => Some(PodInfo {
                                namespace: p.metadata.ns().to_string(),
                                name: p.metadata.name.clone(),
                                workload: workload_of(p),
                            }),
                            (Some(r), None) if r.kind.as_deref().unwrap_or("Pod") == "Pod" => {
                                Some(PodInfo {
                                    namespace: r
                                        .namespace
                                        .clone()
                                        .unwrap_or_else(|| ns.to_string()),
                                    name: r.name.clone(),
                                    workload: "unknown".into(),
                                })
                            }
                            _ => None,
                        };
                        endpoints.push(EndpointPlan {
                            addr: SocketAddr::new(ip, ep_port.port),
                            pod: info,
                        });
                    }
                }
            }
        } else if svc.is_none() {
            self.warnings.push(format!(
                "{who}: {fqdn} is not a known Service; requests to it fail with 503"
            ));
        }
        endpoints.sort_by_key(|a| a.addr);
        endpoints.dedup_by(|a, b| a.addr == b.addr);
        let name = format!("outbound|{port_num}|{subset_name}|{fqdn}");
        self.clusters.push(ClusterPlan {
            name,
            service: fqdn,
            endpoints,
            policy,
        });
        let i = self.clusters.len() - 1;
        self.cluster_index.insert(key, i);
        i
    }
}

struct GatewayInfo {
    selects_builtin: bool,
    hosts: Vec<String>,
    ns: String,
}

/// Compile a snapshot into a plan. Pure: the same snapshot always gives the same plan.
pub fn compile(snap: &Snapshot) -> Plan {
    let mut warnings = Vec::new();
    let services: Vec<Parsed<model::Service>> = parse_all("Service", &snap.services, &mut warnings);
    let endpoints: Vec<Parsed<model::Endpoints>> =
        parse_all("Endpoints", &snap.endpoints, &mut warnings);
    let pods: Vec<Parsed<model::Pod>> = parse_all("Pod", &snap.pods, &mut warnings);
    let mut vss: Vec<Parsed<model::VirtualService>> =
        parse_all("VirtualService", &snap.virtual_services, &mut warnings);
    let mut drs: Vec<Parsed<model::DestinationRule>> =
        parse_all("DestinationRule", &snap.destination_rules, &mut warnings);
    let gateways: Vec<Parsed<model::Gateway>> = parse_all("Gateway", &snap.gateways, &mut warnings);
    vss.sort_by_key(|v| age_key(&v.obj.metadata));
    drs.sort_by_key(|d| age_key(&d.obj.metadata));

    let service_map: BTreeMap<(String, String), model::Service> = services
        .into_iter()
        .map(|s| {
            (
                (s.obj.metadata.ns().to_string(), s.obj.metadata.name.clone()),
                s.obj,
            )
        })
        .collect();

    let mut rules: HashMap<String, &model::DestinationRule> = HashMap::new();
    for dr in &drs {
        let who = format!(
            "DestinationRule {}/{}",
            dr.obj.metadata.ns(),
            dr.obj.metadata.name()
        );
        warn_unimplemented_dr(&dr.raw, &who, &mut warnings);
        let host = expand_host(
            dr.obj.spec.host.as_deref().unwrap_or(""),
            dr.obj.metadata.ns(),
            &service_map,
        );
        if let Some(prev) = rules.get(&host) {
            warnings.push(format!(
                "{who}: host {host} already has DestinationRule {}/{}; ignored",
                prev.metadata.ns(),
                prev.metadata.name()
            ));
            continue;
        }
        rules.insert(host, &dr.obj);
    }

    let gw_map: HashMap<String, GatewayInfo> = gateways
        .iter()
        .map(|g| {
            let sel = g.obj.spec.selector.clone().unwrap_or_default();
            let selects_builtin = sel.is_empty()
                || sel.iter().all(|(k, v)| {
                    BUILTIN_GATEWAY_LABELS
                        .iter()
                        .any(|(bk, bv)| bk == k && bv == v)
                });
            (
                format!("{}/{}", g.obj.metadata.ns(), g.obj.metadata.name()),
                GatewayInfo {
                    selects_builtin,
                    hosts: list(&g.obj.spec.servers)
                        .iter()
                        .flat_map(|s| list(&s.hosts).iter().cloned())
                        .collect(),
                    ns: g.obj.metadata.ns().to_string(),
                },
            )
        })
        .collect();

    let mut c = Compiler {
        warnings,
        services: service_map,
        endpoints: endpoints
            .into_iter()
            .map(|e| {
                (
                    (e.obj.metadata.ns().to_string(), e.obj.metadata.name.clone()),
                    e.obj,
                )
            })
            .collect(),
        pods: pods
            .iter()
            .map(|p| {
                (
                    (p.obj.metadata.ns().to_string(), p.obj.metadata.name.clone()),
                    &p.obj,
                )
            })
            .collect(),
        rules,
        clusters: Vec::new(),
        cluster_index: HashMap::new(),
    };

    let mut plan = Plan::default();
    let mut claimed: HashMap<String, String> = HashMap::new();
    let mut missing_gateways = BTreeSet::new();

    for vs in &vss {
        let meta = &vs.obj.metadata;
        let ns = meta.ns().to_string();
        let who = format!("VirtualService {ns}/{}", meta.name());
        warn_unimplemented_vs(&vs.raw, &who, &mut c.warnings);

        // Which hosts does the built-in gateway serve for this VirtualService?
        let gateways: Vec<String> = if list(&vs.obj.spec.gateways).is_empty() {
            vec!["mesh".into()]
        } else {
            list(&vs.obj.spec.gateways).to_vec()
        };
        let vs_hosts = list(&vs.obj.spec.hosts);
        let hosts: Vec<String> = vs_hosts
            .iter()
            .map(|h| expand_host(h, &ns, &c.services))
            .collect();
        let mut served: BTreeSet<String> = BTreeSet::new();
        for gw in &gateways {
            if gw == "mesh" {
                served.extend(hosts.iter().cloned());
                continue;
            }
            let key = if gw.contains('/') {
                gw.clone()
            } else {
                format!("{ns}/{gw}")
            };
            match gw_map.get(&key) {
                None => {
                    if missing_gateways.insert(key.clone()) {
                        c.warnings.push(format!(
                            "{who}: gateway {key} is not defined by any Gateway object; the built-in gateway serves it"
                        ));
                    }
                    served.extend(hosts.iter().cloned());
                }
                Some(info) if !info.selects_builtin => {
                    c.warnings.push(format!(
                        "{who}: gateway {key} does not select the built-in gateway (istio: ingressgateway); its hosts are not served through it"
                    ));
                }
                Some(info) => {
                    for (i, h) in hosts.iter().enumerate() {
                        let raw_h = vs_hosts[i].to_ascii_lowercase();
                        if info.hosts.iter().any(|sh| {
                            server_host_admits(sh, h, &ns, &info.ns)
                                || server_host_admits(sh, &raw_h, &ns, &info.ns)
                        }) {
                            served.insert(h.clone());
                        }
                    }
                }
            }
        }
        if served.is_empty() {
            continue;
        }

        // Compile routes.
        let mut routes = Vec::new();
        for (i, r) in list(&vs.obj.spec.http).iter().enumerate() {
            let path = format!("{who}: spec.http[{i}]");
            match compile_route(&mut c, r, i, &ns, &path) {
                Ok(route) => routes.push(route),
                Err(e) => c.warnings.push(format!("{e}; route ignored")),
            }
        }
        let vh = plan.vhosts.len();
        plan.vhosts.push(VirtualHostPlan {
            name: who.clone(),
            routes,
        });
        for h in served {
            register_host(&mut plan, &mut claimed, &h, vh, &who, &mut c.warnings);
        }
    }

    // Services without a VirtualService: their names route to them, round robin by default.
    let svc_keys: Vec<(String, String)> = c.services.keys().cloned().collect();
    for (ns, name) in svc_keys {
        let fqdn = service_fqdn(&ns, &name);
        if claimed.contains_key(&fqdn) {
            continue;
        }
        let ports: Vec<u16> = c.services[&(ns.clone(), name.clone())]
            .spec
            .ports
            .iter()
            .map(|p| p.port)
            .collect();
        if ports.is_empty() {
            continue;
        }
        let who = format!("Service {ns}/{name}");
        let mut routes = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let cluster = c.cluster(&ns, &name, Some(*p), None, &who);
            let route = |matches: Vec<RequestMatch>, name: String| RoutePlan {
                name,
                matches,
                action: Action::Route(vec![WeightedDestination {
                    cluster,
                    weight: 1,
                    headers: HeaderOps::default(),
                }]),
                timeout: None,
                retry: RetryPolicy::istio_default(),
                fault: None,
                cors: None,
                headers: HeaderOps::default(),
                rewrite: None,
            };
            if ports.len() > 1 {
                routes.push(route(
                    vec![RequestMatch {
                        port: Some(*p),
                        ..Default::default()
                    }],
                    format!("port-{p}"),
                ));
            }
            if i == 0 {
                // Any other port (the gateway's own) goes to the first service port.
                routes.push(route(Vec::new(), "default".into()));
            }
        }
        // The catch-all must come last.
        routes.sort_by_key(|r| r.matches.is_empty());
        let vh = plan.vhosts.len();
        plan.vhosts.push(VirtualHostPlan {
            name: who.clone(),
            routes,
        });
        register_host(&mut plan, &mut claimed, &fqdn, vh, &who, &mut c.warnings);
    }

    plan.wildcards
        .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    plan.clusters = c.clusters;
    plan.warnings = c.warnings;
    plan
}

fn register_host(
    plan: &mut Plan,
    claimed: &mut HashMap<String, String>,
    host: &str,
    vh: usize,
    who: &str,
    warnings: &mut Vec<String>,
) {
    if let Some(owner) = claimed.get(host) {
        if owner != who {
            warnings.push(format!(
                "{who}: host {host} is already served by {owner}; ignored for this host"
            ));
        }
        return;
    }
    claimed.insert(host.to_string(), who.to_string());
    if host == "*" {
        plan.catch_all = Some(vh);
    } else if let Some(suffix) = host.strip_prefix('*') {
        plan.wildcards.push((suffix.to_string(), vh));
    } else {
        for alias in host_aliases(host) {
            plan.hosts.entry(alias).or_insert(vh);
        }
    }
}

fn compile_route(
    c: &mut Compiler<'_>,
    r: &aos_types::istio::HttpRoute,
    i: usize,
    ns: &str,
    path: &str,
) -> Result<RoutePlan, String> {
    let mut matches = Vec::new();
    for (j, m) in list(&r.match_).iter().enumerate() {
        if !list(&m.gateways).is_empty() {
            c.warnings.push(format!("{path}.match[{j}].gateways: the built-in gateway serves every gateway; condition ignored"));
        }
        matches.push(request_match(
            m,
            &format!("{path}.match[{j}]"),
            &mut c.warnings,
        )?);
    }
    let action = if let Some(rd) = &r.redirect {
        let code = rd.redirect_code.unwrap_or(301);
        let status = u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(|s| s.is_redirection())
            .ok_or_else(|| {
                format!("{path}.redirect.redirectCode: {code} is not a redirect status")
            })?;
        Action::Redirect(RedirectPlan {
            uri: rd.uri.clone(),
            authority: rd.authority.clone(),
            port: rd.port.and_then(|p| u16::try_from(p).ok()),
            scheme: rd.scheme.clone(),
            status,
        })
    } else if let Some(dr) = &r.direct_response {
        let code = dr.status.unwrap_or(0);
        let status = u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| format!("{path}.directResponse.status: {code} is invalid"))?;
        let body = dr
            .body
            .as_ref()
            .and_then(|b| b.get("string"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Action::Direct {
            status,
            body: bytes::Bytes::from(body),
        }
    } else {
        let route = list(&r.route);
        if route.is_empty() {
            return Err(format!("{path}: no route, redirect or directResponse"));
        }
        let mut dests = Vec::new();
        let explicit: i64 = route.iter().filter_map(|d| d.weight).sum();
        for (k, d) in route.iter().enumerate() {
            let dpath = format!("{path}.route[{k}]");
            let weight = match d.weight {
                Some(w) if w < 0 => return Err(format!("{dpath}.weight: {w} is negative")),
                Some(w) => u32::try_from(w).unwrap_or(u32::MAX),
                // Istio: a lone destination without weight takes all traffic.
                None if route.len() == 1 || explicit == 0 => 1,
                None => 0,
            };
            let dest = d.destination.clone().unwrap_or_default();
            let dest_host = dest.host.as_deref().unwrap_or("");
            let dest_port = dest
                .port
                .as_ref()
                .and_then(|p| p.number)
                .and_then(|n| u16::try_from(n).ok());
            let (sns, sname) = match service_of_host(dest_host, ns, &c.services) {
                Some(target) => target,
                None => {
                    let host = expand_host(dest_host, ns, &c.services);
                    split_fqdn(&host).unwrap_or_else(|| (ns.to_string(), dest_host.to_string()))
                }
            };
            let cluster = c.cluster(
                &sns,
                &sname,
                dest_port,
                dest.subset.as_deref(),
                &format!("{dpath}.destination"),
            );
            dests.push(WeightedDestination {
                cluster,
                weight,
                headers: header_ops(
                    d.headers.as_ref(),
                    &format!("{dpath}.headers"),
                    &mut c.warnings,
                ),
            });
        }
        if dests.iter().all(|d| d.weight == 0) {
            return Err(format!("{path}.route: every weight is 0"));
        }
        Action::Route(dests)
    };
    let timeout = match &r.timeout {
        Some(t) => match duration::parse(t) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d),
            Err(e) => {
                c.warnings.push(format!("{path}.timeout: {e}; ignored"));
                None
            }
        },
        None => None,
    };
    let rewrite = r.rewrite.as_ref().map(|rw| RewritePlan {
        uri: rw.uri.clone(),
        authority: rw
            .authority
            .as_deref()
            .and_then(|a| header_value(a, &format!("{path}.rewrite.authority"), &mut c.warnings)),
    });
    Ok(RoutePlan {
        name: r.name.clone().unwrap_or_else(|| format!("http[{i}]")),
        matches,
        action,
        timeout,
        retry: retry_policy(
            r.retries.as_ref(),
            &format!("{path}.retries"),
            &mut c.warnings,
        ),
        fault: fault_plan(r.fault.as_ref(), path, &mut c.warnings),
        cors: cors_plan(r.cors_policy.as_ref(), path, &mut c.warnings),
        headers: header_ops(
            r.headers.as_ref(),
            &format!("{path}.headers"),
            &mut c.warnings,
        ),
        rewrite,
    })
}

/// `name.ns.svc.cluster.local` → `(ns, name)`.
fn split_fqdn(host: &str) -> Option<(String, String)> {
    let base = host.strip_suffix(&format!(".{CLUSTER_DOMAIN}"))?;
    let (name, ns) = base.split_once('.')?;
    (!ns.contains('.')).then(|| (ns.to_string(), name.to_string()))
}

impl Plan {
    /// The virtual host for a request's host (lowercase, without port).
    pub fn vhost_for(&self, host: &str) -> Option<usize> {
        if let Some(&vh) = self.hosts.get(host) {
            return Some(vh);
        }
        self.wildcards
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .map(|(_, vh)| *vh)
            .or(self.catch_all)
    }
}

#[cfg(test)]
mod tests;
