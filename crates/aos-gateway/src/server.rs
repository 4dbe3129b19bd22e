//! The gateway process: listeners, the configuration loop, the admin endpoint and shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::StreamExt as _;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::conns::{Conns, Watched};
use crate::error::GatewayError;
use crate::metrics::{Metrics, RequestSeries, SeriesKey};
use crate::plan;
use crate::snapshot::Snapshot;
use crate::source::ConfigSource;
use crate::table::{RouteTable, Runtime};

/// Settings of the gateway process.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the proxy listens (`--gateway-listen`; default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Where `/metrics`, `/readyz`, `/livez` and `/config` are served
    /// (`--gateway-admin-listen`; default `127.0.0.1:9901`).
    pub admin_listen: SocketAddr,
    /// How long shutdown waits for in-flight requests before closing connections (default 10 s).
    pub drain_grace_seconds: u64,
    /// Window of the per-pod request rate (default 60 s).
    pub rate_window_seconds: u64,
    /// How long a client connection may wait for a request head (its first, or the next one
    /// on a keep-alive connection) before the gateway closes it (default 60 s; checked once a
    /// second).
    pub idle_timeout_seconds: u64,
    /// Proxy workers, as nginx's worker processes: threads with a single-threaded runtime
    /// each, accepting on the one listening socket and keeping their own idle upstream
    /// connections. 0 (the default): the proxy runs on the caller's runtime. `aos gateway` and
    /// `aos up` run one per core.
    pub workers: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9901)),
            drain_grace_seconds: 10,
            rate_window_seconds: 60,
            idle_timeout_seconds: HEADER_READ_TIMEOUT.as_secs(),
            workers: 0,
        }
    }
}

/// State shared by the listeners, the request path and the configuration loop.
pub(crate) struct Shared {
    /// The current route table; requests take a snapshot and keep it to the end.
    pub table: ArcSwap<RouteTable>,
    pub metrics: Arc<Metrics>,
    /// The series of requests that matched no route.
    pub unknown: Arc<RequestSeries>,
    runtime: Runtime,
    ready: AtomicBool,
    applied: watch::Sender<u64>,
    warnings: Mutex<Vec<String>>,
}

impl Shared {
    fn new(config: &GatewayConfig) -> Arc<Self> {
        let metrics = Arc::new(Metrics::new(Duration::from_secs(
            config.rate_window_seconds.max(1),
        )));
        let unknown = metrics.series(
            SeriesKey {
                service: "unknown".into(),
                workload: "unknown".into(),
                pod: "unknown".into(),
            },
            None,
        );
        Arc::new(Shared {
            table: ArcSwap::from_pointee(RouteTable::empty()),
            runtime: Runtime::new(metrics.clone()),
            metrics,
            unknown,
            ready: AtomicBool::new(false),
            applied: watch::channel(0).0,
            warnings: Mutex::new(Vec::new()),
        })
    }

    /// Compile a snapshot and swap the new table in.
    fn apply(&self, snap: &Snapshot, generation: u64) {
        let started = std::time::Instant::now();
        let plan = plan::compile(snap);
        {
            let mut prev = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
            for w in &plan.warnings {
                if !prev.contains(w) {
                    tracing::warn!(generation, "{w}");
                }
            }
            prev.clone_from(&plan.warnings);
        }
        self.metrics
            .config_warnings
            .store(plan.warnings.len() as u64, Ordering::Relaxed);
        let vhosts = plan.vhosts.len();
        let clusters = plan.clusters.len();
        let table = self.runtime.build(plan, generation);
        self.table.store(Arc::new(table));
        self.metrics.prune();
        self.metrics.config_applied.fetch_add(1, Ordering::Relaxed);
        self.ready.store(true, Ordering::Release);
        self.applied.send_replace(generation);
        tracing::debug!(
            generation,
            vhosts,
            clusters,
            micros = started.elapsed().as_micros() as u64,
            "route table applied"
        );
    }

    fn config_json(&self) -> serde_json::Value {
        let table = self.table.load();
        let mut clusters = std::collections::BTreeMap::new();
        let vhosts: Vec<_> = table
            .vhosts
            .iter()
            .map(|vh| {
                json!({
                    "name": vh.name,
                    "routes": vh.routes.iter().map(|r| {
                        for d in &r.dests {
                            clusters.entry(d.cluster.name.clone()).or_insert_with(|| json!({
                                "lb": format!("{:?}", d.cluster.policy.lb),
                                "http2": d.cluster.policy.pool.http2,
                                "outlierDetection": d.cluster.policy.outlier.is_some(),
                                "endpoints": d.cluster.endpoints.iter().map(|e| json!({
                                    "address": e.addr.to_string(),
                                    "pod": e.series.key.pod,
                                    "active": e.state.active.load(Ordering::Relaxed),
                                    "ejected": e.series.ejected.load(Ordering::Relaxed),
                                })).collect::<Vec<_>>(),
                            }));
                        }
                        json!({
                            "name": r.plan.name,
                            "destinations": r.dests.iter().map(|d| json!({
                                "cluster": d.cluster.name, "weight": d.weight,
                            })).collect::<Vec<_>>(),
                            "timeoutSeconds": r.plan.timeout.map(|t| t.as_secs_f64()),
                            "retries": r.plan.retry.attempts,
                        })
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "generation": table.generation,
            "ready": self.ready.load(Ordering::Acquire),
            "warnings": table.warnings,
            "virtualHosts": vhosts,
            "clusters": clusters,
        })
    }
}

/// A handle on a running gateway: readiness, configuration generation and request rates
/// (for the autoscaler, in-process).
#[derive(Clone)]
pub struct GatewayHandle {
    shared: Arc<Shared>,
}

/// One pod's request rate.
#[derive(Clone, Debug, PartialEq)]
pub struct PodRequestRate {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Requests per second over the window.
    pub requests_per_second: f64,
}

impl std::fmt::Debug for GatewayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayHandle")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl GatewayHandle {
    /// Requests per second the gateway sent to a pod over the sliding window: the
    /// `http_requests_per_second` pods metric of the autoscaler. `None` when the gateway knows
    /// no endpoint of that pod.
    pub fn pod_http_requests_per_second(&self, namespace: &str, pod: &str) -> Option<f64> {
        self.shared.metrics.pod_rate_now(namespace, pod)
    }

    /// Every known pod's request rate.
    pub fn pod_request_rates(&self) -> Vec<PodRequestRate> {
        self.shared
            .metrics
            .pod_rates()
            .into_iter()
            .map(|(namespace, pod, r)| PodRequestRate {
                namespace,
                pod,
                requests_per_second: r,
            })
            .collect()
    }

    /// Whether a configuration has been applied (the `/readyz` answer).
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// The generation of the route table in use (0 before the first).
    pub fn generation(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// Wait until a table of generation `generation` or later is in use.
    pub async fn wait_for_generation(&self, generation: u64) {
        let mut rx = self.shared.applied.subscribe();
        let _ = rx.wait_for(|g| *g >= generation).await;
    }

    /// The warnings of the current configuration.
    pub fn warnings(&self) -> Vec<String> {
        self.shared.table.load().warnings.clone()
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.render()
    }
}

/// Where the proxy accepts connections.
enum ProxyListener {
    /// One listener, served on the caller's runtime.
    Runtime(TcpListener),
    /// A handle on the listening socket per worker.
    Workers(Vec<std::net::TcpListener>),
}

impl ProxyListener {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            ProxyListener::Runtime(l) => l.local_addr(),
            ProxyListener::Workers(ls) => ls[0].local_addr(),
        }
    }
}

/// One listening socket on `addr`, and a handle on it for each of `workers`. One bind, not one
/// `SO_REUSEPORT` socket per worker: a second gateway on the same port fails with "address in
/// use" instead of silently taking half of the connections. Every worker waiting for events is
/// woken by a new connection and the first to accept it takes it, so busy workers take fewer.
fn bind_shared(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = std::net::TcpListener::bind(addr)?;
    first.set_nonblocking(true)?;
    let mut listeners = Vec::with_capacity(workers);
    for _ in 1..workers {
        listeners.push(first.try_clone()?);
    }
    listeners.push(first);
    Ok(listeners)
}

/// A gateway with its listeners bound, not yet serving.
pub struct Gateway {
    config: GatewayConfig,
    listener: ProxyListener,
    admin: TcpListener,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.local_addr())
            .field("admin_listen", &self.admin_addr())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Bind the proxy and admin listeners (port 0 picks a free port).
    pub async fn bind(config: GatewayConfig) -> Result<Gateway, GatewayError> {
        let bind_error = |source| GatewayError::Bind {
            what: "proxy",
            addr: config.listen,
            source,
        };
        // Each worker keeps its own idle upstream connections.
        crate::proxy::h1::reserve_pool_shards(config.workers);
        let listener = if config.workers == 0 {
            ProxyListener::Runtime(TcpListener::bind(config.listen).await.map_err(bind_error)?)
        } else {
            ProxyListener::Workers(bind_shared(config.listen, config.workers).map_err(bind_error)?)
        };
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .map_err(|source| GatewayError::Bind {
                what: "admin",
                addr: config.admin_listen,
                source,
            })?;
        let shared = Shared::new(&config);
        Ok(Gateway {
            config,
            listener,
            admin,
            shared,
        })
    }

    /// The proxy's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The admin endpoint's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// A handle for readiness, generations and request rates.
    pub fn handle(&self) -> GatewayHandle {
        GatewayHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serve until `shutdown` is cancelled, then stop accepting, let in-flight requests finish
    /// (up to the drain grace period) and return.
    pub async fn serve(
        self,
        source: impl ConfigSource,
        shutdown: CancellationToken,
    ) -> Result<(), GatewayError> {
        let Gateway {
            config,
            listener,
            admin,
            shared,
        } = self;
        tracing::info!(
            listen = %listener.local_addr().map_err(|source| GatewayError::Io { what: "proxy", source })?,
            admin = %admin.local_addr().map_err(|source| GatewayError::Io { what: "admin", source })?,
            "gateway serving"
        );
        let snapshots = source.start(shutdown.child_token());
        let config_loop = tokio::spawn(config_loop(shared.clone(), snapshots, shutdown.clone()));
        let admin_task = tokio::spawn(serve_admin(admin, shared.clone(), shutdown.clone()));
        let grace = Duration::from_secs(config.drain_grace_seconds);
        let idle = Duration::from_secs(config.idle_timeout_seconds);
        let result = match listener {
            ProxyListener::Runtime(l) => {
                serve_proxy(l, shared, shutdown.clone(), grace, idle).await
            }
            ProxyListener::Workers(ls) => {
                serve_workers(ls, shared, shutdown.clone(), grace, idle).await
            }
        };
        shutdown.cancel();
        let _ = config_loop.await;
        let _ = admin_task.await;
        tracing::info!("gateway stopped");
        result
    }
}

/// Bind and serve: `Gateway::bind(config)` then `serve(source, shutdown)`.
pub async fn run(
    config: GatewayConfig,
    source: impl ConfigSource,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    Gateway::bind(config).await?.serve(source, shutdown).await
}

async fn config_loop(
    shared: Arc<Shared>,
    mut rx: watch::Receiver<Option<Arc<Snapshot>>>,
    shutdown: CancellationToken,
) {
    let mut generation = 0;
    loop {
        let snap = rx.borrow_and_update().clone();
        if let Some(snap) = snap {
            generation += 1;
            shared.apply(&snap, generation);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() {
                // The source is gone: keep serving the last table until shutdown.
                shutdown.cancelled().await;
                return;
            },
        }
    }
}

struct ConnGuard(Arc<Shared>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long a client connection may wait for a request head (the first one, or the next one
/// of a keep-alive connection) before it is closed: the admin endpoint's, and the proxy's
/// default.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The server settings of the admin endpoint, and those of the proxy but for the header read
/// timeout (see [`proxy_builder`]).
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .keep_alive_interval(Some(Duration::from_secs(60)));
    b
}

/// The proxy's server settings: the header read timeout is the sweeper's of [`Conns`] (hyper's
/// arms a timer per request), and hyper writes a response's head and a body chunk with one
/// `write` (copying the chunk) rather than a `writev`: cheaper for the small bodies of API traffic
/// and no slower for large ones (bench/gateway).
fn proxy_builder() -> auto::Builder<TokioExecutor> {
    let mut b = http_builder();
    b.http1().header_read_timeout(None).writev(false);
    b
}

async fn serve_proxy(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    grace: Duration,
    idle_timeout: Duration,
) -> Result<(), GatewayError> {
    let builder = proxy_builder();
    let conns = Conns::new(idle_timeout);
    let sweeper = tokio::spawn(conns.clone().sweeper());
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning or dying.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let guard = ConnGuard(shared.clone());
        let state = conns.add();
        let svc = crate::proxy::Proxy::new(shared.clone(), peer, state.clone());
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = Watched::new(conn, state, |c| c.graceful_shutdown());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
            drop(guard);
        });
    }
    drop(listener);
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "draining client connections"
    );
    conns.drain();
    tokio::select! {
        _ = conns.drained() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("drain grace period elapsed; closing the remaining connections");
        }
    }
    sweeper.abort();
    Ok(())
}

/// Run one proxy worker per listener, each on its own thread with a single-threaded runtime,
/// until `shutdown` and their drain; the first error of any is the result.
async fn serve_workers(
    listeners: Vec<std::net::TcpListener>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    grace: Duration,
    idle_timeout: Duration,
) -> Result<(), GatewayError> {
    let mut running = Vec::with_capacity(listeners.len());
    for (worker, listener) in listeners.into_iter().enumerate() {
        let (done, finished) = tokio::sync::oneshot::channel();
        let (shared, stop) = (shared.clone(), shutdown.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("aos-gw-{worker}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| GatewayError::Io {
                        what: "proxy worker runtime",
                        source,
                    })
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            crate::proxy::set_worker(worker);
                            let listener = TcpListener::from_std(listener).map_err(|source| {
                                GatewayError::Io {
                                    what: "proxy",
                                    source,
                                }
                            })?;
                            serve_proxy(listener, shared, stop, grace, idle_timeout).await
                        })
                    });
                let _ = done.send(result);
            });
        if let Err(source) = spawned {
            // Those started stop with the others' shutdown.
            shutdown.cancel();
            return Err(GatewayError::Io {
                what: "proxy worker thread",
                source,
            });
        }
        running.push(finished);
    }
    // A worker that fails (or panics) stops the others: the gateway ends with its error.
    let mut running: futures::stream::FuturesUnordered<_> = running.into_iter().collect();
    let mut result = Ok(());
    while let Some(finished) = running.next().await {
        if let Err(e) = finished.unwrap_or(Err(GatewayError::WorkerPanicked)) {
            tracing::error!(error = %e, "a proxy worker stopped");
            shutdown.cancel();
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
}

fn admin_response(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String, ctype: &'static str| {
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            shared.metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/readyz" => {
            if shared.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ok\n".into(), "text/plain")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "waiting for the first configuration\n".into(),
                    "text/plain",
                )
            }
        }
        "/livez" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/config" => text(
            StatusCode::OK,
            serde_json::to_string_pretty(&shared.config_json()).unwrap_or_default(),
            "application/json",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}

async fn serve_admin(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let builder = http_builder();
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an admin connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let resp = admin_response(&shared, &req);
            async move { Ok::<_, std::convert::Infallible>(resp) }
        });
        let conn = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned(),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
}
