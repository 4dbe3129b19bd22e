//! The request path: a tower stack of observation, authentication and
//! authorization around the routes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aos_store::Store;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, StatusCode, header};
use tokio_util::sync::CancellationToken;

use crate::auth::{Tokens, User};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Shared state of all requests.
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tokens: Tokens,
    pub(crate) metrics: Metrics,
    /// Cancelled when the server stops: open watches end.
    pub(crate) shutdown: CancellationToken,
    /// Address clients reach us at (for `/api`'s serverAddressByClientCIDRs).
    pub(crate) local_addr: SocketAddr,
    /// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
    pub(crate) bookmark_interval: Duration,
    serving: AtomicBool,
    /// More Prometheus text appended to `/metrics` (the store's).
    pub(crate) extra_metrics: std::sync::Mutex<Vec<MetricsSource>>,
    /// The client of node agents (logs, resource usage).
    pub(crate) nodes: crate::nodeproxy::NodeClient,
}

/// A function rendering Prometheus text.
pub(crate) type MetricsSource = Box<dyn Fn() -> String + Send + Sync>;

impl AppState {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        tokens: Tokens,
        local_addr: SocketAddr,
        nodes: crate::nodeproxy::NodeClient,
    ) -> Self {
        AppState {
            store,
            tokens,
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
            local_addr,
            bookmark_interval: Duration::from_secs(60),
            serving: AtomicBool::new(false),
            extra_metrics: std::sync::Mutex::new(Vec::new()),
            nodes,
        }
    }

    pub(crate) fn set_ready(&self) {
        self.serving.store(true, Ordering::Relaxed);
    }
}

/// What a response counts as in the metrics (set by the handler).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Labels {
    pub(crate) verb: &'static str,
    pub(crate) resource: &'static str,
}

/// The whole router, layers outermost last.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/healthz", get(livez))
        .route("/readyz", get(readyz))
        .route("/version", get(crate::discovery::version))
        .route("/metrics", get(metrics))
        .route("/openapi/v2", get(crate::discovery::openapi_v2))
        .route("/openapi/v3", get(crate::discovery::openapi_v3_root))
        .route("/openapi/v3/{*path}", get(crate::discovery::openapi_v3_doc))
        .fallback(crate::rest::dispatch)
        // Authenticate the bearer token, then authorize the method for its groups.
        .layer(from_fn_with_state(state.clone(), authenticate))
        // Outermost: count and time every request, including refused ones.
        .layer(from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Paths that need no token (as DESIGN.md fixes; Kubernetes serves `/version` anonymously too).
fn is_public(path: &str) -> bool {
    matches!(path, "/livez" | "/readyz" | "/healthz" | "/version")
}

async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(user) = token.and_then(|t| state.tokens.authenticate(t)) else {
        return ApiError::unauthorized().into_response();
    };
    if !user.may(req.method()) {
        let verb = crate::rest::verb_of(req.method(), req.uri().query().unwrap_or(""));
        let path = req.uri().path().to_string();
        return ApiError::forbidden(format!("user \"{}\" cannot {verb} {path}", user.name))
            .into_response();
    }
    req.extensions_mut().insert::<Arc<User>>(user);
    next.run(req).await
}

async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let elapsed = start.elapsed();
    let labels = resp
        .extensions()
        .get::<Labels>()
        .copied()
        .unwrap_or(Labels {
            verb: method_verb(&method),
            resource: non_resource(&path),
        });
    let code = resp.status().as_u16();
    state
        .metrics
        .observe(labels.verb, labels.resource, code, elapsed);
    // Bodies are never logged: they may hold Secret data.
    tracing::debug!(%method, %path, code, verb = labels.verb, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request");
    resp
}

fn method_verb(m: &Method) -> &'static str {
    match *m {
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::HEAD => "head",
        _ => "other",
    }
}

/// A small, fixed label for non-resource paths.
fn non_resource(path: &str) -> &'static str {
    match path {
        "/livez" | "/healthz" => "livez",
        "/readyz" => "readyz",
        "/version" => "version",
        "/metrics" => "metrics",
        p if p.starts_with("/openapi") => "openapi",
        p if p.starts_with("/api") => "discovery",
        _ => "other",
    }
}

fn text(code: StatusCode, body: String) -> Response {
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn livez(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let verbose = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "verbose" || p.starts_with("verbose="))
    });
    let _ = state;
    if verbose {
        text(StatusCode::OK, "[+]ping ok\nlivez check passed\n".into())
    } else {
        text(StatusCode::OK, "ok".into())
    }
}

/// Ready once serving and the store answers.
async fn readyz(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let verbose = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "verbose" || p.starts_with("verbose="))
    });
    let serving = state.serving.load(Ordering::Relaxed) && !state.shutdown.is_cancelled();
    let store =
        match tokio::time::timeout(Duration::from_secs(2), state.store.current_revision()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 2s".to_string()),
        };
    let ok = serving && store.is_ok();
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if verbose {
        let mut body = String::new();
        body.push_str(if serving {
            "[+]serving ok\n"
        } else {
            "[-]serving failed: shutting down or not started\n"
        });
        match &store {
            Ok(()) => body.push_str("[+]store ok\n"),
            Err(e) => body.push_str(&format!("[-]store failed: {e}\n")),
        }
        body.push_str(if ok {
            "readyz check passed\n"
        } else {
            "readyz check failed\n"
        });
        text(code, body)
    } else {
        text(code, if ok { "ok".into() } else { "not ready".into() })
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut body = state.metrics.render();
    if let Ok(sources) = state.extra_metrics.lock() {
        for source in sources.iter() {
            body.push_str(&source());
        }
    }
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
