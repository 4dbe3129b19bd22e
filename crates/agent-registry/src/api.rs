//! The HTTP API: routes, handlers, the error type every handler returns, and the telemetry
//! middleware that logs and measures every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderValue, Method, StatusCode, header};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::db::{AgentStore, DbError, ListQuery};
use crate::metrics::{self, Metrics};
use crate::model::{Agent, AgentSpec, AgentStatus, ValidationError};

/// Prefix of every API route.
pub const API_PREFIX: &str = "/api/v1/agent-registry";
/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Default page size of `GET agents`.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page size of `GET agents`.
pub const MAX_LIMIT: u32 = 1000;
/// Request header that delays a request by that many milliseconds, honoured only when test
/// hooks are enabled (`AGENT_REGISTRY_TEST_HOOKS=1`).
pub const TEST_DELAY_HEADER: &str = "x-test-delay-ms";
/// Longest delay [`TEST_DELAY_HEADER`] may ask for.
const MAX_TEST_DELAY: Duration = Duration::from_secs(60);
/// Route label of requests that match no route.
const UNMATCHED_ROUTE: &str = "unmatched";

/// Who is serving: the body of `GET instance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceInfo {
    /// The host name (in a container: the pod's name).
    pub hostname: String,
    /// The service's version.
    pub version: String,
    /// When the process started.
    pub started_at: Timestamp,
    /// The process id.
    pub pid: u32,
}

impl InstanceInfo {
    /// This process, started at `started_at`.
    pub fn current(started_at: Timestamp) -> Self {
        Self {
            hostname: hostname(),
            version: crate::VERSION.to_owned(),
            started_at,
            pid: std::process::id(),
        }
    }
}

/// The host name from the kernel (the UTS namespace's, so the pod's name in a container), else
/// `HOSTNAME`, else `unknown`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Everything the handlers share: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    store: AgentStore,
    clock: SharedClock,
    metrics: Metrics,
    instance: InstanceInfo,
    default_ttl: Duration,
    test_hooks: bool,
    draining: AtomicBool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.inner.store)
            .field("instance", &self.inner.instance)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for a service configured by `config`, storing agents in `store`, telling time by
    /// `clock`, describing itself as `instance`.
    pub fn new(
        config: &Config,
        store: AgentStore,
        clock: SharedClock,
        instance: InstanceInfo,
    ) -> Self {
        Self {
            inner: Arc::new(StateInner {
                metrics: Metrics::new(instance.started_at, crate::VERSION),
                store,
                clock,
                instance,
                default_ttl: config.default_ttl,
                test_hooks: config.test_hooks,
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// The agent store.
    pub fn store(&self) -> &AgentStore {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Marks the service as shutting down: `/ready` answers 503 from now on.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }
}

/// The service's router, with every route, the body limit and the telemetry middleware.
pub fn router(state: AppState) -> Router {
    let agents = format!("{API_PREFIX}/agents");
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route(&agents, get(list_agents).post(register_agent))
        .route(
            &format!("{agents}/{{id}}"),
            get(get_agent).put(update_agent).delete(delete_agent),
        )
        .route(&format!("{agents}/{{id}}/heartbeat"), post(heartbeat))
        .route(&format!("{API_PREFIX}/instance"), get(instance))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies larger than 64 KiB are refused (413) before they are read in full.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost: one log line and one metric sample per request, whatever the outcome.
        .layer(middleware::from_fn_with_state(state.clone(), telemetry))
        .with_state(state)
}

/// Logs and measures a request, labelled by its route template; applies the test-only delay.
async fn telemetry(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    if state.inner.test_hooks
        && let Some(delay) = test_delay(&req)
    {
        tracing::info!(%method, %route, delay_ms = delay.as_millis() as u64, "test hook: delaying request");
        tokio::time::sleep(delay).await;
    }
    let response = next.run(req).await;
    let took = start.elapsed();
    let status = response.status().as_u16();
    state
        .inner
        .metrics
        .observe_request(&method, &route, status, took);
    tracing::info!(
        %method,
        %route,
        status,
        // Microsecond precision: enough, and short in the log line.
        duration_ms = took.as_micros() as f64 / 1000.0,
        "request"
    );
    response
}

fn test_delay(req: &Request) -> Option<Duration> {
    let ms: u64 = req
        .headers()
        .get(TEST_DELAY_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms).min(MAX_TEST_DELAY))
}

/// An API error: turned into a JSON `{error, field}` body with the matching status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (400).
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The offending field or query parameter, if one.
        field: Option<String>,
    },
    /// A field has an invalid value (422).
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No agent has this id (404).
    #[error("agent {0} not found")]
    AgentNotFound(String),
    /// No route matches the path (404).
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// The route exists, not for this method (405).
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(Method),
    /// The body is larger than [`MAX_BODY_BYTES`] (413).
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    /// The database failed (503 if it is unavailable, else 500).
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        match e {
            ValidationError::Malformed(message) => Self::BadRequest {
                message,
                field: None,
            },
            ValidationError::Field { field, message } => Self::Invalid { field, message },
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge
        } else {
            Self::BadRequest {
                message: format!("cannot read request body: {}", e.body_text()),
                field: None,
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::BadRequest {
            message: format!("invalid query string: {}", e.body_text()),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, field) = match &self {
            Self::BadRequest { field, .. } => (StatusCode::BAD_REQUEST, field.clone()),
            Self::Invalid { field, .. } => (StatusCode::UNPROCESSABLE_ENTITY, Some(field.clone())),
            Self::AgentNotFound(_) | Self::RouteNotFound(_) => (StatusCode::NOT_FOUND, None),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, None),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, None),
            Self::Db(DbError::Unavailable(_)) => (StatusCode::SERVICE_UNAVAILABLE, None),
            Self::Db(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            // Internals go to the log, not to the client.
            tracing::error!(error = %self, "request failed");
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        (status, Json(json!({ "error": message, "field": field }))).into_response()
    }
}

async fn route_not_found(req: Request) -> ApiError {
    ApiError::RouteNotFound(req.uri().path().to_owned())
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.inner.draining.load(Ordering::Relaxed) {
        return not_ready("shutting down".to_owned());
    }
    match state.inner.store.ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => not_ready(e.to_string()),
    }
}

fn not_ready(reason: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "reason": reason })),
    )
        .into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let counts = state.inner.store.count_by_status(state.now()).await.ok();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        state.inner.metrics.render(counts),
    )
        .into_response()
}

async fn instance(State(state): State<AppState>) -> Json<InstanceInfo> {
    Json(state.inner.instance.clone())
}

/// The body of `GET agents`.
#[derive(Debug, Serialize)]
struct AgentList {
    agents: Vec<Agent>,
    total: u64,
    limit: u32,
    offset: u64,
}

fn parse_list_query(params: Vec<(String, String)>) -> Result<ListQuery, ApiError> {
    let bad = |field: &str, message: String| ApiError::BadRequest {
        message,
        field: Some(field.to_owned()),
    };
    let mut query = ListQuery {
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
    };
    for (key, value) in params {
        match key.as_str() {
            "status" => {
                query.status = Some(AgentStatus::parse(&value).ok_or_else(|| {
                    bad(
                        "status",
                        format!("status: unknown value {value:?}: expected active or expired"),
                    )
                })?);
            }
            "capability" => query.capability = Some(value),
            "name" => query.name = Some(value),
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(
                            "limit",
                            format!("limit: expected a whole number from 1 to {MAX_LIMIT}"),
                        )
                    })?;
            }
            "offset" => {
                query.offset = value.parse().map_err(|_| {
                    bad(
                        "offset",
                        "offset: expected a whole number, 0 or more".into(),
                    )
                })?;
            }
            other => {
                return Err(bad(
                    other,
                    format!(
                        "unknown query parameter {other:?}: expected status, capability, name, \
                         limit or offset"
                    ),
                ));
            }
        }
    }
    Ok(query)
}

async fn list_agents(
    State(state): State<AppState>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<AgentList>, ApiError> {
    let query = parse_list_query(params?.0)?;
    let (limit, offset) = (query.limit, query.offset);
    let page = state.inner.store.list(query, state.now()).await?;
    Ok(Json(AgentList {
        agents: page.agents,
        total: page.total,
        limit,
        offset,
    }))
}

async fn register_agent(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec = AgentSpec::from_json(&body?)?;
    let agent = state
        .inner
        .store
        .create(Uuid::new_v4(), spec, state.inner.default_ttl, state.now())
        .await?;
    tracing::info!(agent_id = %agent.id, agent_name = %agent.name, "agent registered");
    let location = format!("{API_PREFIX}/agents/{}", agent.id);
    let mut response = (StatusCode::CREATED, Json(agent)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The agent id in a path; an id that is not a UUID names no agent.
fn agent_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::AgentNotFound(raw.to_owned()))
}

async fn get_agent(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    let id = agent_id(&raw)?;
    state
        .inner
        .store
        .get(id, state.now())
        .await?
        .map(Json)
        .ok_or(ApiError::AgentNotFound(raw))
}

async fn update_agent(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Agent>, ApiError> {
    let id = agent_id(&raw)?;
    let spec = AgentSpec::from_json(&body?)?;
    let agent = state
        .inner
        .store
        .update(id, spec, state.inner.default_ttl, state.now())
        .await?
        .ok_or(ApiError::AgentNotFound(raw))?;
    tracing::info!(agent_id = %agent.id, agent_name = %agent.name, "agent updated");
    Ok(Json(agent))
}

async fn delete_agent(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = agent_id(&raw)?;
    if state.inner.store.delete(id).await? {
        tracing::info!(agent_id = %id, "agent deregistered");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::AgentNotFound(raw))
    }
}

async fn heartbeat(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    let id = agent_id(&raw)?;
    state
        .inner
        .store
        .heartbeat(id, state.now())
        .await?
        .map(Json)
        .ok_or(ApiError::AgentNotFound(raw))
}
