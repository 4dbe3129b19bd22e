//! Istio `networking.istio.io` resources (VirtualService, DestinationRule,
//! Gateway) as serde structs, shaped like Istio's JSON. Admission uses them to
//! find unknown fields; the gateway uses them to build its route table.
//!
//! Every field is optional, as in Istio's protobuf-derived JSON; durations are
//! Go duration strings (see [`crate::duration`]).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Declares a struct whose fields are all `Option`, camelCase in JSON, and
/// left out when absent.
macro_rules! istio_struct {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $(
                $(#[$fm])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

/// Declares a whole Istio resource: apiVersion, kind, metadata, spec, status.
macro_rules! istio_resource {
    ($(#[$m:meta])* $name:ident, $spec:ty) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// `networking.istio.io/v1` or `networking.istio.io/v1beta1`.
            #[serde(default)]
            pub api_version: String,
            /// The kind.
            #[serde(default)]
            pub kind: String,
            /// Standard object metadata.
            #[serde(default)]
            pub metadata: ObjectMeta,
            /// The desired configuration.
            #[serde(default)]
            pub spec: $spec,
            /// Istio's status (conditions, validation messages), kept as written.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<Value>,
        }
    };
}

istio_resource!(
    /// Routing rules for traffic to a set of hosts.
    VirtualService,
    VirtualServiceSpec
);
istio_resource!(
    /// Policies applied to traffic for a service after routing.
    DestinationRule,
    DestinationRuleSpec
);
istio_resource!(
    /// A load balancer at the edge of the mesh: ports, protocols, hosts.
    Gateway,
    GatewaySpec
);

istio_struct!(
    /// `VirtualService.spec`.
    VirtualServiceSpec {
        /// Destination hosts the rules apply to.
        hosts: Vec<String>,
        /// Gateways (and `mesh`) the rules apply to.
        gateways: Vec<String>,
        /// Ordered HTTP routes: the first match wins.
        http: Vec<HttpRoute>,
        /// TLS routes (not implemented by aos).
        tls: Vec<Value>,
        /// TCP routes (not implemented by aos).
        tcp: Vec<Value>,
        /// Namespaces the service is exported to.
        export_to: Vec<String>,
    }
);

istio_struct!(
    /// One HTTP route: match conditions and what to do.
    HttpRoute {
        /// Name for logging.
        name: String,
        /// Match conditions, OR-ed; absent matches everything.
        #[serde(rename = "match")]
        match_: Vec<HttpMatchRequest>,
        /// Weighted destinations.
        route: Vec<HttpRouteDestination>,
        /// Redirect instead of forwarding.
        redirect: HttpRedirect,
        /// Answer directly instead of forwarding.
        direct_response: DirectResponse,
        /// Delegate to another VirtualService.
        delegate: Delegate,
        /// Rewrite of the URI or authority before forwarding.
        rewrite: HttpRewrite,
        /// Timeout for the whole request, a Go duration.
        timeout: String,
        /// Retry policy.
        retries: HttpRetry,
        /// Fault injection.
        fault: HttpFaultInjection,
        /// Mirror traffic to another destination (not implemented by aos).
        mirror: Destination,
        /// Percentage of traffic mirrored.
        mirror_percentage: Percent,
        /// Several mirrors.
        mirrors: Vec<Value>,
        /// CORS policy.
        cors_policy: CorsPolicy,
        /// Header manipulation for all destinations.
        headers: Headers,
    }
);

istio_struct!(
    /// Match conditions for an HTTP request; fields are AND-ed.
    HttpMatchRequest {
        /// Name for logging.
        name: String,
        /// URI match.
        uri: StringMatch,
        /// Scheme match.
        scheme: StringMatch,
        /// Method match.
        method: StringMatch,
        /// Authority (Host header) match.
        authority: StringMatch,
        /// Header matches by header name (lowercase).
        headers: BTreeMap<String, StringMatch>,
        /// Headers that must not match.
        without_headers: BTreeMap<String, StringMatch>,
        /// Query parameter matches.
        query_params: BTreeMap<String, StringMatch>,
        /// Port the request arrived on.
        port: u32,
        /// Labels of the calling workload.
        source_labels: BTreeMap<String, String>,
        /// Gateways the match applies to.
        gateways: Vec<String>,
        /// Case-insensitive URI matching.
        ignore_uri_case: bool,
        /// Namespace of the calling workload.
        source_namespace: String,
        /// Prefix for statistics.
        stat_prefix: String,
    }
);

istio_struct!(
    /// Exactly one of `exact`, `prefix`, `regex` (RE2 syntax).
    StringMatch {
        /// Exact string.
        exact: String,
        /// Prefix.
        prefix: String,
        /// Regular expression, matched against the whole string.
        regex: String,
    }
);

istio_struct!(
    /// A weighted destination.
    HttpRouteDestination {
        /// Where to send the request.
        destination: Destination,
        /// Share of traffic, 0..=100.
        weight: i64,
        /// Header manipulation for this destination.
        headers: Headers,
    }
);

istio_struct!(
    /// A service (and optional subset and port) requests are sent to.
    Destination {
        /// Service host name, short or fully qualified.
        host: String,
        /// Subset from a DestinationRule.
        subset: String,
        /// Port on the host.
        port: PortSelector,
    }
);

istio_struct!(
    /// A port by number.
    PortSelector {
        /// Port number.
        number: u32,
    }
);

istio_struct!(
    /// Header operations on requests and responses.
    Headers {
        /// On the request.
        request: HeaderOperations,
        /// On the response.
        response: HeaderOperations,
    }
);

istio_struct!(
    /// Set, add and remove headers.
    HeaderOperations {
        /// Overwrite.
        set: BTreeMap<String, String>,
        /// Append.
        add: BTreeMap<String, String>,
        /// Remove.
        remove: Vec<String>,
    }
);

istio_struct!(
    /// An HTTP redirect.
    HttpRedirect {
        /// New path.
        uri: String,
        /// New authority.
        authority: String,
        /// New port.
        port: u32,
        /// `FROM_PROTOCOL_DEFAULT` or `FROM_REQUEST_PORT`.
        derive_port: String,
        /// New scheme.
        scheme: String,
        /// Status code, 301 by default.
        redirect_code: u32,
    }
);

istio_struct!(
    /// A fixed response.
    DirectResponse {
        /// Status code.
        status: u32,
        /// Body.
        body: Value,
    }
);

istio_struct!(
    /// A delegate VirtualService.
    Delegate {
        /// Its name.
        name: String,
        /// Its namespace.
        namespace: String,
    }
);

istio_struct!(
    /// URI and authority rewrite.
    HttpRewrite {
        /// Replace the matched prefix (or whole path for an exact match).
        uri: String,
        /// Replace the authority.
        authority: String,
        /// Regex rewrite.
        uri_regex_rewrite: RegexRewrite,
    }
);

istio_struct!(
    /// A regex substitution on the path.
    RegexRewrite {
        /// The pattern.
        #[serde(rename = "match")]
        match_: String,
        /// The replacement.
        rewrite: String,
    }
);

istio_struct!(
    /// Retry policy.
    HttpRetry {
        /// Number of retries; 0 disables retries.
        attempts: i64,
        /// Timeout per attempt, a Go duration.
        per_try_timeout: String,
        /// Comma-separated conditions (`5xx`, `gateway-error`, `connect-failure`, `refused-stream`, status codes...).
        retry_on: String,
        /// Retry on other localities.
        retry_remote_localities: bool,
    }
);

istio_struct!(
    /// Fault injection: delays and aborts.
    HttpFaultInjection {
        /// Delay requests.
        delay: FaultDelay,
        /// Abort requests.
        abort: FaultAbort,
    }
);

istio_struct!(
    /// A fixed delay for a share of requests.
    FaultDelay {
        /// The delay, a Go duration.
        fixed_delay: String,
        /// Share of requests delayed.
        percentage: Percent,
        /// Deprecated integer percentage.
        percent: i64,
        /// Exponential delay (not supported by Istio either).
        exponential_delay: String,
    }
);

istio_struct!(
    /// An abort with a status for a share of requests.
    FaultAbort {
        /// HTTP status to return.
        http_status: i64,
        /// gRPC status to return.
        grpc_status: String,
        /// HTTP/2 error to return.
        http2_error: String,
        /// Share of requests aborted.
        percentage: Percent,
    }
);

istio_struct!(
    /// A percentage, 0.0..=100.0.
    Percent {
        /// The value.
        value: f64,
    }
);

istio_struct!(
    /// Cross-origin resource sharing.
    CorsPolicy {
        /// Allowed origins.
        allow_origins: Vec<StringMatch>,
        /// Deprecated exact origins (Istio still reads them).
        allow_origin: Vec<String>,
        /// Allowed methods.
        allow_methods: Vec<String>,
        /// Allowed request headers.
        allow_headers: Vec<String>,
        /// Headers the browser may read.
        expose_headers: Vec<String>,
        /// How long a preflight result may be cached, a Go duration.
        max_age: String,
        /// Whether credentials are allowed.
        allow_credentials: bool,
        /// What to do with preflights that do not match.
        unmatched_preflights: String,
    }
);

istio_struct!(
    /// `DestinationRule.spec`.
    DestinationRuleSpec {
        /// Service host the rule applies to.
        host: String,
        /// Policies for all traffic to the host.
        traffic_policy: TrafficPolicy,
        /// Named subsets by pod labels.
        subsets: Vec<Subset>,
        /// Namespaces the rule is exported to.
        export_to: Vec<String>,
        /// Workloads the rule applies to.
        workload_selector: WorkloadSelector,
    }
);

istio_struct!(
    /// Selects workloads by labels.
    WorkloadSelector {
        /// Labels to match.
        match_labels: BTreeMap<String, String>,
    }
);

istio_struct!(
    /// A named subset of a service's endpoints.
    Subset {
        /// Name, referenced from VirtualService destinations.
        name: String,
        /// Pod labels that select the subset.
        labels: BTreeMap<String, String>,
        /// Policies overriding the rule's.
        traffic_policy: TrafficPolicy,
    }
);

istio_struct!(
    /// Load balancing, connection pool, outlier detection and TLS.
    TrafficPolicy {
        /// Load balancing.
        load_balancer: LoadBalancerSettings,
        /// Connection limits.
        connection_pool: ConnectionPoolSettings,
        /// Ejection of failing endpoints.
        outlier_detection: OutlierDetection,
        /// TLS to the upstream.
        tls: ClientTlsSettings,
        /// Per-port overrides.
        port_level_settings: Vec<PortTrafficPolicy>,
        /// Tunnelling (not implemented by aos).
        tunnel: Value,
        /// PROXY protocol (not implemented by aos).
        proxy_protocol: Value,
    }
);

istio_struct!(
    /// Policies for one port.
    PortTrafficPolicy {
        /// The port.
        port: PortSelector,
        /// Load balancing.
        load_balancer: LoadBalancerSettings,
        /// Connection limits.
        connection_pool: ConnectionPoolSettings,
        /// Ejection of failing endpoints.
        outlier_detection: OutlierDetection,
        /// TLS to the upstream.
        tls: ClientTlsSettings,
    }
);

istio_struct!(
    /// `simple` or `consistentHash`.
    LoadBalancerSettings {
        /// `UNSPECIFIED`, `RANDOM`, `PASSTHROUGH`, `ROUND_ROBIN`, `LEAST_REQUEST`, `LEAST_CONN`.
        simple: String,
        /// Session affinity by hash.
        consistent_hash: ConsistentHashLb,
        /// Locality-aware settings (not implemented by aos).
        locality_lb_setting: Value,
        /// Warm-up for new endpoints, a Go duration.
        warmup_duration_secs: String,
    }
);

istio_struct!(
    /// Consistent hashing on one request property.
    ConsistentHashLb {
        /// Hash on a header.
        http_header_name: String,
        /// Hash on a cookie.
        http_cookie: HttpCookie,
        /// Hash on the source IP.
        use_source_ip: bool,
        /// Hash on a query parameter.
        http_query_parameter_name: String,
        /// Ring hash parameters.
        ring_hash: Value,
        /// Maglev parameters.
        maglev: Value,
        /// Deprecated ring size.
        minimum_ring_size: u64,
    }
);

istio_struct!(
    /// A cookie to hash on (generated when missing).
    HttpCookie {
        /// Cookie name.
        name: String,
        /// Cookie path.
        path: String,
        /// Lifetime of a generated cookie, a Go duration.
        ttl: String,
    }
);

istio_struct!(
    /// Connection limits.
    ConnectionPoolSettings {
        /// TCP settings.
        tcp: TcpSettings,
        /// HTTP settings.
        http: HttpSettings,
    }
);

istio_struct!(
    /// TCP connection limits.
    TcpSettings {
        /// Maximum connections to the host.
        max_connections: i64,
        /// Connect timeout, a Go duration.
        connect_timeout: String,
        /// TCP keepalive (not implemented by aos).
        tcp_keepalive: TcpKeepalive,
        /// Maximum connection lifetime, a Go duration.
        max_connection_duration: String,
        /// Idle timeout, a Go duration.
        idle_timeout: String,
    }
);

istio_struct!(
    /// TCP keepalive probes.
    TcpKeepalive {
        /// Number of probes.
        probes: u32,
        /// Idle time before probing, a Go duration.
        time: String,
        /// Interval between probes, a Go duration.
        interval: String,
    }
);

istio_struct!(
    /// HTTP connection limits.
    HttpSettings {
        /// Maximum queued requests waiting for a connection.
        http1_max_pending_requests: i64,
        /// Maximum concurrent requests to the host.
        http2_max_requests: i64,
        /// Maximum requests per connection; 1 disables keep-alive.
        max_requests_per_connection: i64,
        /// Maximum concurrent retries.
        max_retries: i64,
        /// Idle timeout, a Go duration.
        idle_timeout: String,
        /// `DEFAULT`, `DO_NOT_UPGRADE`, `UPGRADE` (not implemented by aos).
        h2_upgrade_policy: String,
        /// Use the client's protocol upstream.
        use_client_protocol: bool,
        /// Maximum concurrent HTTP/2 streams per connection.
        max_concurrent_streams: i64,
    }
);

istio_struct!(
    /// Ejection of endpoints that fail.
    OutlierDetection {
        /// Treat locally originated failures apart.
        split_external_local_origin_errors: bool,
        /// Locally originated failures before ejection.
        consecutive_local_origin_failures: i64,
        /// 502, 503 and 504 in a row before ejection.
        consecutive_gateway_errors: i64,
        /// 5xx in a row before ejection.
        consecutive5xx_errors: i64,
        /// Deprecated form of `consecutive5xxErrors`.
        consecutive_errors: i64,
        /// Time between analysis sweeps, a Go duration.
        interval: String,
        /// Minimum ejection time, a Go duration.
        base_ejection_time: String,
        /// Most endpoints that may be ejected, percent.
        max_ejection_percent: i64,
        /// Ejection stops below this share of healthy endpoints, percent.
        min_health_percent: i64,
    }
);

istio_struct!(
    /// TLS from the proxy to the upstream.
    ClientTlsSettings {
        /// `DISABLE`, `SIMPLE`, `MUTUAL`, `ISTIO_MUTUAL`.
        mode: String,
        /// Client certificate file.
        client_certificate: String,
        /// Client key file.
        private_key: String,
        /// CA certificates file.
        ca_certificates: String,
        /// Secret holding the credentials.
        credential_name: String,
        /// Accepted subject alternative names.
        subject_alt_names: Vec<String>,
        /// SNI to send.
        sni: String,
        /// Skip verification.
        insecure_skip_verify: bool,
    }
);

istio_struct!(
    /// `Gateway.spec`.
    GatewaySpec {
        /// Servers (ports and hosts) the gateway exposes.
        servers: Vec<Server>,
        /// Labels of the gateway workload.
        selector: BTreeMap<String, String>,
    }
);

istio_struct!(
    /// One listener of a Gateway.
    Server {
        /// Port, protocol and name.
        port: GatewayPort,
        /// Address to bind.
        bind: String,
        /// Hosts exposed.
        hosts: Vec<String>,
        /// TLS settings.
        tls: ServerTlsSettings,
        /// Name.
        name: String,
        /// Default endpoint.
        default_endpoint: String,
    }
);

istio_struct!(
    /// A Gateway port.
    GatewayPort {
        /// Port number.
        number: u32,
        /// `HTTP`, `HTTPS`, `GRPC`, `GRPC-WEB`, `HTTP2`, `MONGO`, `TCP`, `TLS`.
        protocol: String,
        /// Port name.
        name: String,
        /// Port on the workload.
        target_port: u32,
    }
);

istio_struct!(
    /// TLS on a Gateway server.
    ServerTlsSettings {
        /// Redirect HTTP to HTTPS.
        https_redirect: bool,
        /// `PASSTHROUGH`, `SIMPLE`, `MUTUAL`, `AUTO_PASSTHROUGH`, `ISTIO_MUTUAL`, `OPTIONAL_MUTUAL`.
        mode: String,
        /// Server certificate file.
        server_certificate: String,
        /// Server key file.
        private_key: String,
        /// CA certificates file.
        ca_certificates: String,
        /// Certificate revocation list.
        ca_crl: String,
        /// Secret holding the credentials.
        credential_name: String,
        /// Several secrets.
        credential_names: Vec<String>,
        /// Accepted subject alternative names.
        subject_alt_names: Vec<String>,
        /// Pinned certificate hashes.
        verify_certificate_spki: Vec<String>,
        /// Pinned certificate hashes.
        verify_certificate_hash: Vec<String>,
        /// Minimum TLS version.
        min_protocol_version: String,
        /// Maximum TLS version.
        max_protocol_version: String,
        /// Cipher suites.
        cipher_suites: Vec<String>,
    }
);
