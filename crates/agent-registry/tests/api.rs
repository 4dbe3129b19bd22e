//! The HTTP API driven in-process through the router, with a fake clock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_registry::api::{self, AppState, InstanceInfo};
use agent_registry::clock::{ManualClock, SharedClock, TokioClock};
use agent_registry::config::{Config, DatabaseLocation};
use agent_registry::db::AgentStore;
use agent_registry::server;
use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const AGENTS: &str = "/api/v1/agent-registry/agents";

struct Harness {
    app: Router,
    state: AppState,
}

fn start() -> Timestamp {
    "2025-01-01T00:00:00Z".parse().unwrap()
}

impl Harness {
    fn new(location: DatabaseLocation, clock: SharedClock) -> Self {
        let config = Config {
            database: location.clone(),
            ..Config::default()
        };
        let state = AppState::new(
            &config,
            AgentStore::new(location),
            clock,
            InstanceInfo::current(start()),
        );
        Self {
            app: api::router(state.clone()),
            state,
        }
    }

    fn memory() -> (Self, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(start()));
        (Self::new(DatabaseLocation::Memory, clock.clone()), clock)
    }

    async fn raw(
        &self,
        method: Method,
        uri: &str,
        body: Body,
    ) -> (StatusCode, http::HeaderMap, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, bytes.to_vec())
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let (status, _, bytes) = self.raw(method, uri, body).await;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{uri}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, value)
    }

    async fn register(&self, body: Value) -> Value {
        let (status, agent) = self.call(Method::POST, AGENTS, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{agent}");
        agent
    }

    async fn text(&self, uri: &str) -> (StatusCode, String) {
        let (status, _, bytes) = self.raw(Method::GET, uri, Body::empty()).await;
        (status, String::from_utf8(bytes).unwrap())
    }
}

fn names(list: &Value) -> Vec<&str> {
    list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn register_get_update_delete() {
    let (h, clock) = Harness::memory();
    let (status, headers, bytes) = h
        .raw(
            Method::POST,
            AGENTS,
            Body::from(
                json!({
                    "name": "planner",
                    "kind": "llm",
                    "endpoint": "http://planner.agents:8080/rpc",
                    "capabilities": ["plan", "search"],
                    "metadata": {"team": "core"},
                    "ttl_seconds": 60
                })
                .to_string(),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let agent: Value = serde_json::from_slice(&bytes).unwrap();
    let id = agent["id"].as_str().unwrap().to_owned();
    uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(headers[header::LOCATION], format!("{AGENTS}/{id}").as_str());
    assert_eq!(agent["name"], "planner");
    assert_eq!(agent["kind"], "llm");
    assert_eq!(agent["capabilities"], json!(["plan", "search"]));
    assert_eq!(agent["metadata"], json!({"team": "core"}));
    assert_eq!(agent["ttl_seconds"], 60);
    assert_eq!(agent["status"], "active");
    assert_eq!(agent["registered_at"], "2025-01-01T00:00:00Z");
    assert_eq!(agent["last_heartbeat"], "2025-01-01T00:00:00Z");
    assert_eq!(agent["expires_at"], "2025-01-01T00:01:00Z");

    let (status, got) = h.call(Method::GET, &format!("{AGENTS}/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, agent);

    clock.advance(Duration::from_secs(10));
    let (status, updated) = h
        .call(
            Method::PUT,
            &format!("{AGENTS}/{id}"),
            Some(json!({"name": "planner-2", "capabilities": ["plan"], "ttl_seconds": 120})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["id"], id.as_str());
    assert_eq!(updated["name"], "planner-2");
    // PUT replaces what the client sets: absent fields go back to their defaults.
    assert_eq!(updated["kind"], Value::Null);
    assert_eq!(updated["metadata"], json!({}));
    assert_eq!(updated["ttl_seconds"], 120);
    assert_eq!(updated["registered_at"], "2025-01-01T00:00:00Z");
    assert_eq!(updated["updated_at"], "2025-01-01T00:00:10Z");
    // An update is not a heartbeat.
    assert_eq!(updated["last_heartbeat"], "2025-01-01T00:00:00Z");

    let (status, body) = h
        .call(Method::DELETE, &format!("{AGENTS}/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = h.call(method, &format!("{AGENTS}/{id}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], format!("agent {id} not found"));
        assert_eq!(body["field"], Value::Null);
    }
}

#[tokio::test]
async fn not_found_everywhere() {
    let (h, _) = Harness::memory();
    let missing = uuid::Uuid::new_v4();
    let cases = [
        (Method::GET, format!("{AGENTS}/{missing}"), None),
        (Method::DELETE, format!("{AGENTS}/{missing}"), None),
        (
            Method::PUT,
            format!("{AGENTS}/{missing}"),
            Some(json!({"name": "x"})),
        ),
        (Method::POST, format!("{AGENTS}/{missing}/heartbeat"), None),
        (Method::GET, format!("{AGENTS}/not-a-uuid"), None),
        (Method::GET, "/api/v1/agent-registry/nope".to_owned(), None),
        (Method::GET, "/".to_owned(), None),
    ];
    for (method, uri, body) in cases {
        let (status, body) = h.call(method.clone(), &uri, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {body}");
        assert!(body["error"].is_string(), "{method} {uri}: {body}");
    }
    let (status, body) = h.call(Method::PATCH, AGENTS, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(body["error"].as_str().unwrap().contains("PATCH"), "{body}");
}

#[tokio::test]
async fn validation_errors() {
    let (h, _) = Harness::memory();
    let cases = [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, Some("name")),
        (
            json!({"name": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("name"),
        ),
        (
            json!({"name": "x".repeat(254)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("name"),
        ),
        (
            json!({"name": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("name"),
        ),
        (
            json!({"name": "a", "capabilities": ["x", 3]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("capabilities[1]"),
        ),
        (
            json!({"name": "a", "ttl_seconds": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("ttl_seconds"),
        ),
        (
            json!({"name": "a", "metadata": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("metadata"),
        ),
        (
            json!({"name": "a", "endpoint": "nope"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("endpoint"),
        ),
        (
            json!({"name": "a", "colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("colour"),
        ),
        (json!(["name"]), StatusCode::BAD_REQUEST, None),
    ];
    for (body, want_status, want_field) in cases {
        let (status, err) = h.call(Method::POST, AGENTS, Some(body.clone())).await;
        assert_eq!(status, want_status, "{body}: {err}");
        assert_eq!(err["field"].as_str(), want_field, "{body}: {err}");
        assert!(err["error"].is_string(), "{body}: {err}");
    }
    let name_253 = "x".repeat(253);
    h.register(json!({"name": name_253})).await;

    // Not JSON at all; empty.
    for body in ["{\"name\":", ""] {
        let (status, _, bytes) = h.raw(Method::POST, AGENTS, Body::from(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        let err: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(err["field"], Value::Null);
    }

    // Just over 64 KiB: refused with 413, in our error shape.
    let big = json!({"name": "a", "metadata": {"blob": "x".repeat(64 * 1024)}}).to_string();
    let (status, _, bytes) = h.raw(Method::POST, AGENTS, Body::from(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let err: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(err["error"].as_str().unwrap().contains("65536"), "{err}");

    // A body just under the limit is fine.
    let fits = json!({"name": "a", "metadata": {"blob": "x".repeat(60 * 1024)}});
    h.register(fits).await;

    // The same validation on update.
    let agent = h.register(json!({"name": "a"})).await;
    let (status, err) = h
        .call(
            Method::PUT,
            &format!("{AGENTS}/{}", agent["id"].as_str().unwrap()),
            Some(json!({"kind": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["field"], "name");
}

#[tokio::test]
async fn list_filters_and_pages() {
    let (h, clock) = Harness::memory();
    h.register(json!({"name": "a", "capabilities": ["search", "plan"], "ttl_seconds": 10}))
        .await;
    clock.advance(Duration::from_secs(1));
    h.register(json!({"name": "b", "capabilities": ["search"]}))
        .await;
    clock.advance(Duration::from_secs(1));
    h.register(json!({"name": "c", "capabilities": ["code"], "ttl_seconds": 100}))
        .await;
    clock.advance(Duration::from_secs(18)); // t = 20 s: a (ttl 10) has expired.

    let list = |q: &'static str| {
        let h = &h;
        async move {
            let (status, body) = h.call(Method::GET, &format!("{AGENTS}{q}"), None).await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            body
        }
    };
    let all = list("").await;
    assert_eq!(names(&all), ["a", "b", "c"]);
    assert_eq!(all["total"], 3);
    assert_eq!(all["limit"], 100);
    assert_eq!(all["offset"], 0);
    assert_eq!(all["agents"][0]["status"], "expired");

    assert_eq!(names(&list("?status=expired").await), ["a"]);
    assert_eq!(names(&list("?status=active").await), ["b", "c"]);
    assert_eq!(names(&list("?capability=search").await), ["a", "b"]);
    assert_eq!(
        names(&list("?capability=search&status=active").await),
        ["b"]
    );
    assert_eq!(
        names(&list("?capability=nothing").await),
        Vec::<&str>::new()
    );
    assert_eq!(names(&list("?name=c").await), ["c"]);
    let page = list("?limit=1&offset=1").await;
    assert_eq!(names(&page), ["b"]);
    assert_eq!(page["total"], 3);
    assert_eq!(page["limit"], 1);
    assert_eq!(page["offset"], 1);
    assert_eq!(names(&list("?offset=5").await), Vec::<&str>::new());

    for (q, field) in [
        ("?status=dead", "status"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=x", "limit"),
        ("?offset=-1", "offset"),
        ("?sort=name", "sort"),
    ] {
        let (status, err) = h.call(Method::GET, &format!("{AGENTS}{q}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(err["field"], field, "{q}: {err}");
    }
}

#[tokio::test]
async fn ttl_expiry_and_heartbeat() {
    let (h, clock) = Harness::memory();
    let agent = h.register(json!({"name": "a"})).await;
    let id = agent["id"].as_str().unwrap();
    assert_eq!(agent["ttl_seconds"], 30, "HEARTBEAT_TTL_SECONDS default");
    let get = || async { h.call(Method::GET, &format!("{AGENTS}/{id}"), None).await.1 };

    clock.advance(Duration::from_secs(30));
    assert_eq!(
        get().await["status"],
        "active",
        "exactly at the TTL it is still active"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(get().await["status"], "expired");

    let (status, beat) = h
        .call(Method::POST, &format!("{AGENTS}/{id}/heartbeat"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(beat["status"], "active");
    assert_eq!(beat["last_heartbeat"], "2025-01-01T00:00:30.001Z");
    assert_eq!(beat["expires_at"], "2025-01-01T00:01:00.001Z");
    assert_eq!(get().await, beat);
}

#[tokio::test(start_paused = true)]
async fn reaper_marks_then_removes_expired_agents() {
    let clock: SharedClock = Arc::new(TokioClock::starting_at(start()));
    let h = Harness::new(DatabaseLocation::Memory, clock.clone());
    let doomed = h.register(json!({"name": "doomed"})).await;
    let doomed = doomed["id"].as_str().unwrap().to_owned();
    let kept = h
        .register(json!({"name": "kept", "ttl_seconds": 3600}))
        .await;
    let kept = kept["id"].as_str().unwrap().to_owned();

    let shutdown = CancellationToken::new();
    let interval = Duration::from_secs(5);
    let retention = Duration::from_secs(60);
    let reaper = server::spawn_reaper(h.state.clone(), interval, retention, shutdown.clone());

    // Step through virtual time one second at a time, noting when the agent is gone.
    let mut removed_at = None;
    let mut seen_expired = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (status, body) = h
            .call(Method::GET, &format!("{AGENTS}/{doomed}"), None)
            .await;
        if status == StatusCode::NOT_FOUND {
            removed_at = Some(clock.now().duration_since(start()));
            break;
        }
        seen_expired |= body["status"] == "expired";
    }
    let removed_at = removed_at.expect("the reaper never removed the expired agent");
    assert!(
        seen_expired,
        "the agent was never listed as expired before removal"
    );
    // Expired after 30 s, retained 60 s more, removed by the next reaper pass.
    let secs = removed_at.as_secs_f64();
    assert!(
        (90.0..=90.0 + 5.0 + 1.0).contains(&secs),
        "removed after {secs} s"
    );

    let (status, _) = h.call(Method::GET, &format!("{AGENTS}/{kept}"), None).await;
    assert_eq!(status, StatusCode::OK, "an agent within its TTL is kept");

    let (_, metrics) = h.text("/metrics").await;
    assert!(
        metrics.contains("agent_registry_agents_expired_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("agent_registry_agents_reaped_total 1\n"),
        "{metrics}"
    );

    shutdown.cancel();
    reaper.await.unwrap();
}

#[tokio::test]
async fn ready_follows_the_database_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("data");
    let clock = Arc::new(ManualClock::new(start()));
    let h = Harness::new(DatabaseLocation::File(db_dir.join("agents.db")), clock);

    let (status, body) = h.call(Method::GET, "/ready", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("does not exist") && reason.contains("data"),
        "{reason}"
    );
    // Liveness does not depend on the database.
    assert_eq!(h.call(Method::GET, "/health", None).await.0, StatusCode::OK);
    // The API says why it cannot serve.
    let (status, err) = h
        .call(Method::POST, AGENTS, Some(json!({"name": "a"})))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("database unavailable"),
        "{err}"
    );

    std::fs::create_dir(&db_dir).unwrap();
    let (status, body) = h.call(Method::GET, "/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.register(json!({"name": "a"})).await;

    h.state.start_draining();
    let (status, body) = h.call(Method::GET, "/ready", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], "shutting down");
}

#[tokio::test]
async fn ready_is_503_in_a_read_only_directory() {
    // /proc/self is a directory no one can create files in, root included.
    let clock = Arc::new(ManualClock::new(start()));
    let h = Harness::new(
        DatabaseLocation::File("/proc/self/agent-registry.db".into()),
        clock.clone(),
    );
    let (status, body) = h.call(Method::GET, "/ready", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("agent-registry.db"),
        "{body}"
    );

    // An ordinary directory without write permission: root bypasses mode bits, so this part
    // only means something for other users.
    if nix::unistd::geteuid().is_root() {
        eprintln!("skipping the chmod 0555 case: root ignores directory permissions");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    set_mode(dir.path(), 0o555);
    let h = Harness::new(DatabaseLocation::File(dir.path().join("agents.db")), clock);
    let (status, body) = h.call(Method::GET, "/ready", None).await;
    set_mode(dir.path(), 0o755);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn metrics_use_route_templates() {
    let (h, clock) = Harness::memory();
    let a = h.register(json!({"name": "a"})).await;
    h.register(json!({"name": "b", "ttl_seconds": 1})).await;
    clock.advance(Duration::from_secs(2));
    let id = a["id"].as_str().unwrap();
    h.call(Method::GET, &format!("{AGENTS}/{id}"), None).await;
    h.call(
        Method::GET,
        &format!("{AGENTS}/{}", uuid::Uuid::new_v4()),
        None,
    )
    .await;
    h.call(Method::GET, "/no/such/path", None).await;

    let (status, _, bytes) = h.raw(Method::GET, "/metrics", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes).unwrap();
    for line in [
        r#"http_requests_total{method="POST",route="/api/v1/agent-registry/agents",status="201"} 2"#,
        r#"http_requests_total{method="GET",route="/api/v1/agent-registry/agents/{id}",status="200"} 1"#,
        r#"http_requests_total{method="GET",route="/api/v1/agent-registry/agents/{id}",status="404"} 1"#,
        r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"http_request_duration_seconds_count{route="/api/v1/agent-registry/agents/{id}"} 2"#,
        r#"http_request_duration_seconds_bucket{route="/api/v1/agent-registry/agents",le="+Inf"} 2"#,
        r#"agent_registry_agents{status="active"} 1"#,
        r#"agent_registry_agents{status="expired"} 1"#,
        "process_start_time_seconds 1735689600",
        "# TYPE http_requests_total counter",
        "# TYPE agent_registry_agents gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains(id), "raw ids must not become label values");
    assert!(!text.contains("/no/such/path"));

    let (_, headers, _) = h.raw(Method::GET, "/metrics", Body::empty()).await;
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

#[tokio::test]
async fn instance_describes_the_process() {
    let (h, _) = Harness::memory();
    let (status, body) = h
        .call(Method::GET, "/api/v1/agent-registry/instance", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body["hostname"].as_str().unwrap().is_empty());
    assert_eq!(body["version"], agent_registry::VERSION);
    assert_eq!(body["started_at"], "2025-01-01T00:00:00Z");
    assert_eq!(body["pid"], std::process::id());
    let (status, body) = h.call(Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn serve_stops_on_cancel_and_closes_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agents.db");
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: DatabaseLocation::File(path.clone()),
        ..Config::default()
    };
    let state = AppState::new(
        &config,
        AgentStore::new(config.database.clone()),
        Arc::new(ManualClock::new(start())),
        InstanceInfo::current(start()),
    );
    let listener = server::bind(&config).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { server::serve(listener, state, &config, shutdown).await }
    });
    agent_registry::healthcheck::check(addr, Duration::from_secs(5))
        .await
        .unwrap();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
    // Closed cleanly: the WAL was checkpointed and removed.
    assert!(path.exists());
    assert!(!dir.path().join("agents.db-wal").exists());
}
