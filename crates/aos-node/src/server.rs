//! The agent's HTTPS server, in the kubelet's shape: container logs, resource statistics and
//! the agent's metrics, for the API server only.
//!
//! **Trust.** The server's certificate is self-signed ([`ServingIdentity`], kept in
//! `DATA_DIR/node/serving.{crt,key}`); the agent publishes its SHA-256 in its Node
//! (annotation [`crate::node::SERVING_CERT_ANNOTATION`]) and the API server pins it. Clients
//! must present a certificate that chains to the cluster CA the agent trusts (the CA of its
//! kubeconfig), or the TLS handshake fails; a verified certificate whose Common Name is not
//! [`API_SERVER_CN`] gets 403.
//!
//! **Endpoints** (GET):
//! - `/healthz`: `ok`.
//! - `/containerLogs/{namespace}/{pod}/{container}` with `follow`, `previous`, `tailLines`,
//!   `timestamps`, `sinceSeconds`, `sinceTime`, `limitBytes`: the container's log as chunked
//!   `text/plain`. A follow ends when the followed attempt has ended and its last lines are
//!   out, when the pod leaves the node, when the server stops, or when the client goes away.
//! - `/stats/resource`: [`crate::stats::ResourceStats`] as JSON.
//! - `/metrics`: [`crate::metrics::NodeMetrics`] in the Prometheus text format.

use std::convert::Infallible;
use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use sha2::Digest as _;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::agent::RunningPods;
use crate::logs::{LogError, LogOptions};
use crate::metrics::NodeMetrics;
use crate::runtime::ContainerRuntime;
use crate::stats::StatsCollector;

/// The Common Name the API server's client certificate must carry.
pub const API_SERVER_CN: &str = "aos:apiserver";
/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long requests in flight get after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a follow checks whether its container's attempt has ended.
const FOLLOW_CHECK: Duration = Duration::from_secs(1);
/// After the attempt ended, a follow ends once no new line came for this long (the log reader
/// polls the file every 200 ms).
const FOLLOW_DRAIN_IDLE: Duration = Duration::from_millis(600);
/// The serving certificate's validity (it is pinned, not chained, so this only bounds it).
const SERVING_DAYS: i64 = 3650;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The serving identity could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The serving certificate could not be made or used.
    #[error("serving certificate: {0}")]
    Certificate(String),
    /// The CA that client certificates must chain to is unusable.
    #[error("client certificate authority: {0}")]
    ClientCa(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The agent's self-signed serving certificate and key.
#[derive(Clone)]
pub struct ServingIdentity {
    cert_der: rustls::pki_types::CertificateDer<'static>,
    key_pem: String,
    sha256: String,
}

impl std::fmt::Debug for ServingIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingIdentity")
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// Lowercase hex SHA-256 of a certificate's DER.
pub fn cert_sha256(der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(der))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), ServerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn cert_err(e: impl std::fmt::Display) -> ServerError {
    ServerError::Certificate(e.to_string())
}

impl ServingIdentity {
    /// Load `dir/serving.crt` and `dir/serving.key`, or make a new self-signed pair (0600)
    /// when either is missing or unreadable. `names` are the subject alternative names
    /// (host names or IP addresses); `node_name` goes in the subject.
    pub fn ensure(dir: &Path, node_name: &str, names: &[String]) -> Result<Self, ServerError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
        let (crt, key) = (dir.join("serving.crt"), dir.join("serving.key"));
        if crt.exists() && key.exists() {
            match Self::load(&crt, &key) {
                Ok(id) => return Ok(id),
                Err(e) => {
                    tracing::warn!(error = %e, "serving certificate unusable; making a new one")
                }
            }
        }
        let key_pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let mut sans: Vec<String> = vec!["localhost".into(), node_name.to_owned()];
        sans.extend(names.iter().cloned());
        sans.sort();
        sans.dedup();
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        params.subject_alt_names = sans
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
                Err(_) => n
                    .clone()
                    .try_into()
                    .map(rcgen::SanType::DnsName)
                    .map_err(cert_err),
            })
            .collect::<Result<_, _>>()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("aos-node:{node_name}"));
        params.distinguished_name = dn;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = jiff::Timestamp::now();
        let date = |days: i64| {
            let d = (now + jiff::SignedDuration::from_hours(24 * days))
                .to_zoned(jiff::tz::TimeZone::UTC)
                .date();
            rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
        };
        params.not_before = date(-1);
        params.not_after = date(SERVING_DAYS);
        let cert = params.self_signed(&key_pair).map_err(cert_err)?;
        write_private(&key, key_pair.serialize_pem().as_bytes())?;
        write_private(&crt, cert.pem().as_bytes())?;
        let id = Self::load(&crt, &key)?;
        tracing::info!(path = %crt.display(), sha256 = %id.sha256, "made the node agent's serving certificate");
        Ok(id)
    }

    fn load(crt: &Path, key: &Path) -> Result<Self, ServerError> {
        let crt_pem = fs::read(crt).map_err(io_err(crt))?;
        let key_pem = fs::read_to_string(key).map_err(io_err(key))?;
        let cert_der = rustls_pemfile::certs(&mut crt_pem.as_slice())
            .next()
            .ok_or_else(|| cert_err(format!("{}: no certificate", crt.display())))?
            .map_err(cert_err)?;
        // The key must parse too, or the pair is remade.
        rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(cert_err)?
            .ok_or_else(|| cert_err(format!("{}: no private key", key.display())))?;
        let sha256 = cert_sha256(&cert_der);
        Ok(Self {
            cert_der,
            key_pem,
            sha256,
        })
    }

    /// Lowercase hex SHA-256 of the certificate's DER (what the Node publishes).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The certificate's DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }
}

/// TLS settings: the serving identity, and client certificates required to chain to the CA in
/// `client_ca_pem`.
pub fn tls_config(
    identity: &ServingIdentity,
    client_ca_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &client_ca_pem[..]) {
        let cert = cert.map_err(|e| ServerError::ClientCa(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| ServerError::ClientCa(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ServerError::ClientCa("no PEM certificate found".into()));
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| ServerError::ClientCa(e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut identity.key_pem.as_bytes())
        .map_err(cert_err)?
        .ok_or_else(|| cert_err("no private key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(cert_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert_der.clone()], key)
        .map_err(cert_err)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What the handlers read.
pub struct ServerState {
    /// The Node's name.
    pub node_name: String,
    /// The data directory (pods' logs are under `pods/`).
    pub data_dir: PathBuf,
    /// The pods this agent runs.
    pub pods: RunningPods,
    /// The container runtime (to see whether a followed attempt has ended).
    pub runtime: Arc<dyn ContainerRuntime>,
    /// Resource statistics.
    pub stats: Arc<StatsCollector>,
    /// The agent's metrics.
    pub metrics: Arc<NodeMetrics>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

/// A bound server, not yet serving.
pub struct NodeServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    cert_sha256: String,
}

impl std::fmt::Debug for NodeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeServer")
            .field("local_addr", &self.local_addr)
            .field("cert_sha256", &self.cert_sha256)
            .finish_non_exhaustive()
    }
}

impl NodeServer {
    /// Listen on `addr` (port 0: any free port) with `identity`, accepting clients whose
    /// certificate chains to `client_ca_pem`. Must run inside a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        identity: &ServingIdentity,
        client_ca_pem: &[u8],
    ) -> Result<Self, ServerError> {
        let tls = tls_config(identity, client_ca_pem)?;
        let bind_err = |source| ServerError::Bind { addr, source };
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(bind_err)?;
        // A restarted agent must get its port back despite connections in TIME_WAIT.
        socket.set_reuseaddr(true).map_err(bind_err)?;
        socket.bind(addr).map_err(bind_err)?;
        let listener = socket.listen(1024).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        Ok(Self {
            listener,
            local_addr,
            tls,
            cert_sha256: identity.sha256().to_owned(),
        })
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The SHA-256 of the serving certificate.
    pub fn cert_sha256(&self) -> &str {
        &self.cert_sha256
    }

    /// Serve until `cancel`, then give requests in flight a few seconds (follows end at once).
    pub async fn serve(self, state: Arc<ServerState>, cancel: CancellationToken) {
        let acceptor = TlsAcceptor::from(self.tls);
        let graceful = GracefulShutdown::new();
        tracing::info!(addr = %self.local_addr, "node agent serving logs, stats and metrics");
        loop {
            let (stream, peer) = tokio::select! {
                () = cancel.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off a little instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let state = state.clone();
            let cancel = cancel.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = tokio::select! {
                    () = cancel.cancelled() => return,
                    r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => match r {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake refused");
                            return;
                        }
                        Err(_) => return,
                    },
                };
                let identity = client_common_name(tls.get_ref().1.peer_certificates());
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    let identity = identity.clone();
                    let cancel = cancel.clone();
                    async move {
                        Ok::<_, Infallible>(handle(&state, identity.as_deref(), req, cancel).await)
                    }
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                let conn = builder.serve_connection(TokioIo::new(tls), service);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(self.listener);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("node agent server drain timed out; closing remaining connections");
        }
        tracing::info!("node agent server stopped");
    }
}

/// The Common Name of a verified client certificate (the handshake already checked the chain).
fn client_common_name(
    certs: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Option<String> {
    let der = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_str(content_type)
            .unwrap_or(header::HeaderValue::from_static("text/plain")),
    );
    resp
}

/// A one-line plain-text answer, as Go's `http.Error` writes it.
fn text(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

async fn handle(
    state: &Arc<ServerState>,
    identity: Option<&str>,
    req: Request<Incoming>,
    cancel: CancellationToken,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let label = route_label(&path);
    let resp = if identity != Some(API_SERVER_CN) {
        text(
            StatusCode::FORBIDDEN,
            format!(
                "forbidden: client {:?} may not use the node agent (only {API_SERVER_CN})",
                identity.unwrap_or("")
            ),
        )
    } else if req.method() != Method::GET {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        r
    } else {
        route(state, &path, req.uri().query().unwrap_or(""), cancel).await
    };
    state.metrics.server_request(label, resp.status().as_u16());
    resp
}

fn route_label(path: &str) -> &'static str {
    match path {
        "/healthz" => "/healthz",
        "/stats/resource" => "/stats/resource",
        "/metrics" => "/metrics",
        p if p.starts_with("/containerLogs/") => "/containerLogs",
        _ => "other",
    }
}

async fn route(
    state: &Arc<ServerState>,
    path: &str,
    query: &str,
    cancel: CancellationToken,
) -> Response<Body> {
    match path {
        "/healthz" => text(StatusCode::OK, "ok"),
        "/metrics" => full(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(&state.pods.gauges()),
        ),
        "/stats/resource" => match state.stats.latest() {
            Some(stats) => match serde_json::to_vec(&*stats) {
                Ok(json) => full(StatusCode::OK, "application/json", json),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
            },
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no resource statistics yet: the first window has not ended",
            ),
        },
        p => match p.strip_prefix("/containerLogs/") {
            Some(rest) => {
                let parts: Vec<&str> = rest.split('/').collect();
                match parts.as_slice() {
                    [ns, pod, container]
                        if !ns.is_empty() && !pod.is_empty() && !container.is_empty() =>
                    {
                        let (ns, pod, container) = (
                            percent_decode(ns),
                            percent_decode(pod),
                            percent_decode(container),
                        );
                        match LogQuery::parse(query) {
                            Ok(q) => container_logs(state, &ns, &pod, &container, q, cancel).await,
                            Err(e) => text(StatusCode::BAD_REQUEST, e),
                        }
                    }
                    _ => text(
                        StatusCode::NOT_FOUND,
                        "want /containerLogs/{namespace}/{pod}/{container}",
                    ),
                }
            }
            None => text(StatusCode::NOT_FOUND, format!("{p} not found")),
        },
    }
}

/// Decode `%XX` escapes (and `+` as a space, as in a query string when `plus` is set).
fn decode(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_decode(s: &str) -> String {
    decode(s, false)
}

/// The query of `/containerLogs`, validated as the API server validates `PodLogOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// What to read.
    pub options: LogOptions,
    /// Stop after this many bytes (`limitBytes`).
    pub limit_bytes: Option<u64>,
}

/// Go's `strconv.ParseBool`.
fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" | "" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid {name} {v:?}: want true or false")),
    }
}

fn parse_int(name: &str, v: &str) -> Result<i64, String> {
    v.parse::<i64>()
        .map_err(|_| format!("invalid {name} {v:?}: want an integer"))
}

impl LogQuery {
    /// Parse and check a query string. Unknown parameters are ignored.
    pub fn parse(query: &str) -> Result<Self, String> {
        let mut q = LogQuery::default();
        let mut since_seconds = None;
        let mut since_time = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k, true), decode(v, true));
            match k.as_str() {
                "follow" => q.options.follow = parse_bool("follow", &v)?,
                "previous" => q.options.previous = parse_bool("previous", &v)?,
                "timestamps" => q.options.timestamps = parse_bool("timestamps", &v)?,
                "tailLines" => {
                    let n = parse_int("tailLines", &v)?;
                    if n < 0 {
                        return Err("tailLines: must be greater than or equal to 0".into());
                    }
                    q.options.tail = Some(usize::try_from(n).unwrap_or(usize::MAX));
                }
                "sinceSeconds" => {
                    let n = parse_int("sinceSeconds", &v)?;
                    if n < 1 {
                        return Err("sinceSeconds: must be greater than 0".into());
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => {
                    let t: jiff::Timestamp = v
                        .parse()
                        .map_err(|_| format!("invalid sinceTime {v:?}: want RFC 3339"))?;
                    since_time = Some(t);
                }
                "limitBytes" => {
                    let n = parse_int("limitBytes", &v)?;
                    if n < 1 {
                        return Err("limitBytes: must be greater than 0".into());
                    }
                    q.limit_bytes = Some(n as u64);
                }
                _ => {}
            }
        }
        q.options.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err("at most one of sinceTime or sinceSeconds may be specified".into());
            }
            (Some(n), None) => Some(
                jiff::Timestamp::now()
                    .checked_sub(jiff::SignedDuration::from_secs(n))
                    .unwrap_or(jiff::Timestamp::MIN),
            ),
            (None, t) => t,
        };
        Ok(q)
    }
}

/// The attempts of a container that have a log file, ascending.
fn attempts(container_dir: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = fs::read_dir(container_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    out.sort_unstable();
    out
}

async fn container_logs(
    state: &Arc<ServerState>,
    namespace: &str,
    pod: &str,
    container: &str,
    query: LogQuery,
    cancel: CancellationToken,
) -> Response<Body> {
    let Some(entry) = state.pods.find(namespace, pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "pod \"{namespace}/{pod}\" not found on node \"{}\"",
                state.node_name
            ),
        );
    };
    if !entry.containers.iter().any(|c| c == container) {
        return text(
            StatusCode::NOT_FOUND,
            format!("container \"{container}\" not found in pod \"{namespace}/{pod}\""),
        );
    }
    let pod_dir = crate::logs::pod_dir(&state.data_dir, namespace, pod, &entry.uid);
    let opts = query.options.clone();
    let read = {
        let (pod_dir, container) = (pod_dir.clone(), container.to_owned());
        // The initial read goes through the whole file: off the async threads.
        tokio::task::spawn_blocking(move || {
            let attempt = attempts(&pod_dir.join(&container)).last().copied();
            // Boxed at once: the reader's `impl Stream + 'static` still names the borrowed
            // arguments' lifetimes (edition 2024 capture rules), a `dyn` does not.
            crate::logs::read_logs(&pod_dir, &container, &opts)
                .map(|s| (Box::pin(s) as LogStream, attempt))
        })
        .await
    };
    let (logs, attempt) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(LogError::NotFound { .. })) if query.options.previous => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            );
        }
        Ok(Err(LogError::NotFound { .. })) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("container \"{container}\" in pod \"{pod}\" is waiting to start"),
            );
        }
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let follow = (query.options.follow && !query.options.previous).then(|| Follow {
        state: state.clone(),
        uid: entry.uid.clone(),
        container: container.to_owned(),
        attempt: attempt.unwrap_or(0),
        cancel,
    });
    let body = LogBody {
        logs,
        follow,
        ended: false,
        remaining: query.limit_bytes,
        _guard: state.metrics.log_stream(),
    }
    .into_stream();
    let body = StreamBody::new(body.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut resp = Response::new(body.boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// What a follow watches besides the file.
struct Follow {
    state: Arc<ServerState>,
    uid: String,
    container: String,
    attempt: u32,
    cancel: CancellationToken,
}

impl Follow {
    /// Whether the followed attempt has ended, or its pod left the node.
    async fn over(&self) -> bool {
        if !self.state.pods.contains_uid(&self.uid) {
            return true;
        }
        match self.state.runtime.containers(&self.uid).await {
            // Ended, or already replaced by a later attempt (its record may be gone).
            Ok(list) => list.iter().any(|c| {
                c.name == self.container
                    && (c.attempt > self.attempt || (c.attempt == self.attempt && !c.running()))
            }),
            // The runtime does not answer: keep following; the pod's removal ends it.
            Err(_) => false,
        }
    }
}

type LogStream = Pin<Box<dyn Stream<Item = Result<String, LogError>> + Send>>;

/// A log response body: the reader's lines, cut at `limitBytes`, ended as a follow ends.
struct LogBody {
    logs: LogStream,
    follow: Option<Follow>,
    /// The attempt ended: drain what is left, then stop.
    ended: bool,
    remaining: Option<u64>,
    /// Counts the open stream until the body is dropped (the client went away or it ended).
    _guard: crate::metrics::LogStreamGuard,
}

impl LogBody {
    fn into_stream(self) -> impl Stream<Item = Bytes> + Send + 'static {
        futures::stream::unfold(self, |mut s| async move {
            let chunk = s.next_chunk().await?;
            Some((chunk, s))
        })
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.remaining == Some(0) {
            return None;
        }
        let text = loop {
            let item = match &self.follow {
                None => self.logs.next().await,
                Some(_) if self.ended => tokio::time::timeout(FOLLOW_DRAIN_IDLE, self.logs.next())
                    .await
                    .ok()
                    .flatten(),
                Some(f) => {
                    let mut check = tokio::time::interval(FOLLOW_CHECK);
                    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    // The first tick is immediate; the first check comes a period later.
                    check.tick().await;
                    loop {
                        tokio::select! {
                            item = self.logs.next() => break item,
                            () = f.cancel.cancelled() => return None,
                            _ = check.tick() => {
                                if f.over().await {
                                    self.ended = true;
                                    break tokio::time::timeout(FOLLOW_DRAIN_IDLE, self.logs.next())
                                        .await
                                        .ok()
                                        .flatten();
                                }
                            }
                        }
                    }
                }
            };
            match item {
                Some(Ok(t)) if t.is_empty() => continue,
                Some(Ok(t)) => break t,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reading a container log");
                    return None;
                }
                None => return None,
            }
        };
        let mut bytes = Bytes::from(text);
        if let Some(left) = self.remaining.as_mut() {
            if (bytes.len() as u64) > *left {
                bytes.truncate(*left as usize);
            }
            *left -= bytes.len() as u64;
        }
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = LogQuery::parse(
            "follow=true&previous=0&tailLines=10&timestamps=1&limitBytes=5&container=x",
        )
        .unwrap();
        assert!(q.options.follow && !q.options.previous && q.options.timestamps);
        assert_eq!(q.options.tail, Some(10));
        assert_eq!(q.limit_bytes, Some(5));
        let q = LogQuery::parse("sinceTime=2026-11-27T08%3A00%3A00Z").unwrap();
        assert_eq!(
            q.options.since,
            Some("2026-11-27T08:00:00Z".parse().unwrap())
        );
        let q = LogQuery::parse("sinceSeconds=60").unwrap();
        let since = q.options.since.unwrap();
        let age = jiff::Timestamp::now().duration_since(since);
        assert!(
            age >= jiff::SignedDuration::from_secs(60) && age < jiff::SignedDuration::from_secs(70)
        );
        for bad in [
            "follow=maybe",
            "tailLines=-1",
            "tailLines=x",
            "sinceSeconds=0",
            "limitBytes=0",
            "sinceTime=yesterday",
            "sinceSeconds=5&sinceTime=2026-11-27T08:00:00Z",
        ] {
            assert!(LogQuery::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(LogQuery::parse("").unwrap(), LogQuery::default());
    }

    #[test]
    fn decoding() {
        assert_eq!(decode("a%20b+c", true), "a b c");
        assert_eq!(decode("a+b", false), "a+b");
        assert_eq!(decode("100%", true), "100%");
        assert_eq!(decode("%zz%4", true), "%zz%4");
        assert_eq!(decode("%2B01%3A00", true), "+01:00");
    }

    #[test]
    fn identity_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node");
        let a = ServingIdentity::ensure(&node, "n1", &["127.0.0.1".into()]).unwrap();
        let b = ServingIdentity::ensure(&node, "n1", &[]).unwrap();
        assert_eq!(a.sha256(), b.sha256());
        assert_eq!(a.sha256().len(), 64);
        assert_eq!(a.sha256(), cert_sha256(a.cert_der()));
        for f in ["serving.crt", "serving.key"] {
            let mode = fs::metadata(node.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        fs::remove_file(node.join("serving.key")).unwrap();
        let c = ServingIdentity::ensure(&node, "n1", &[]).unwrap();
        assert_ne!(a.sha256(), c.sha256(), "a missing key remakes the pair");
        fs::write(node.join("serving.crt"), "garbage").unwrap();
        let d = ServingIdentity::ensure(&node, "n1", &[]).unwrap();
        assert_ne!(c.sha256(), d.sha256());
    }
}
