//! The gateway end to end: real listeners on 127.0.0.1, local upstream servers, snapshots fed
//! through the channel source.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const NS: &str = "agent-os";
const HOST: &str = "agent-registry.example.com";

/// The seed's shape: a VirtualService for `agent-registry` bound to `agent-os-gateway`.
fn seed_like(ups: &[&Upstream], http: serde_json::Value) -> aos_gateway::Snapshot {
    snapshot(vec![
        service(NS, "agent-registry", 3000),
        endpoints(NS, "agent-registry", ups),
        virtual_service(
            NS,
            "agent-registry",
            json!({
                "hosts": ["agent-registry.agent-os.svc.cluster.local", HOST],
                "gateways": ["agent-os-gateway"],
                "http": http,
            }),
        ),
    ])
}

fn simple_route(extra: serde_json::Value) -> serde_json::Value {
    let mut route = json!({
        "match": [{"uri": {"prefix": "/api/v1/agent-registry"}}],
        "route": [{"destination": {"host": "agent-registry", "port": {"number": 3000}}}],
    });
    if let (Some(r), Some(e)) = (route.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    json!([route])
}

fn count_by_upstream(answers: &[(u16, String)]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (_, body) in answers {
        *m.entry(body.split(' ').next().unwrap_or("").to_string())
            .or_default() += 1;
    }
    m
}

#[tokio::test]
async fn routes_across_three_upstreams_by_host_and_path() {
    let (a, b, c) = (
        Upstream::start("a", ok()).await,
        Upstream::start("b", ok()).await,
        Upstream::start("c", ok()).await,
    );
    let gw = TestGateway::start(seed_like(&[&a, &b, &c], simple_route(json!({})))).await;
    assert!(
        gw.handle
            .warnings()
            .iter()
            .any(|w| w.contains("agent-os-gateway")),
        "{:?}",
        gw.handle.warnings()
    );

    let answers = load(gw.addr, HOST, "/api/v1/agent-registry/agents", 300, 4).await;
    assert!(answers.iter().all(|(s, _)| *s == 200));
    let counts = count_by_upstream(&answers);
    for name in ["a", "b", "c"] {
        // Round robin: an even split.
        assert_eq!(counts.get(name), Some(&100), "{counts:?}");
    }

    let cl = client();
    for host in [
        "agent-registry.agent-os.svc.cluster.local",
        "agent-registry.agent-os.svc",
        "agent-registry.agent-os",
        "Agent-Registry.Example.com:8080",
    ] {
        let r = get(&cl, gw.addr, host, "/api/v1/agent-registry/instance").await;
        assert_eq!(r.status, 200, "{host}");
        assert!(
            r.body.ends_with("GET /api/v1/agent-registry/instance"),
            "{}",
            r.body
        );
    }
    // No route for the path, no virtual host for the host: 404 as Envoy answers.
    assert_eq!(get(&cl, gw.addr, HOST, "/other").await.status, 404);
    assert_eq!(
        get(
            &cl,
            gw.addr,
            "unknown.example.com",
            "/api/v1/agent-registry"
        )
        .await
        .status,
        404
    );
    // The proxy adds x-forwarded-for and x-forwarded-proto.
    let r = get(&cl, gw.addr, HOST, "/api/v1/agent-registry").await;
    assert_eq!(r.headers.get("echo-x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(r.headers.get("echo-x-forwarded-proto").unwrap(), "http");
}

#[tokio::test]
async fn service_without_virtual_service_is_reachable_by_name_round_robin() {
    let (a, b) = (
        Upstream::start("a", ok()).await,
        Upstream::start("b", ok()).await,
    );
    let gw = TestGateway::start(snapshot(vec![
        service("default", "web", 80),
        endpoints("default", "web", &[&a, &b]),
    ]))
    .await;
    let answers = load(gw.addr, "web.default.svc.cluster.local", "/x", 40, 1).await;
    let counts = count_by_upstream(&answers);
    assert_eq!(counts.get("a"), Some(&20));
    assert_eq!(counts.get("b"), Some(&20));
    let cl = client();
    assert_eq!(get(&cl, gw.addr, "web.default", "/").await.status, 200);
    // Short names are for destinations only: the gateway has no namespace to resolve them in.
    assert_eq!(get(&cl, gw.addr, "web", "/").await.status, 404);
}

#[tokio::test]
async fn metrics_route_and_admin_endpoints() {
    let a = Upstream::start("a", ok()).await;
    let http = json!([
        {"match": [{"uri": {"prefix": "/api/v1/agent-registry"}}],
         "route": [{"destination": {"host": "agent-registry", "port": {"number": 3000}}}]},
        {"match": [{"uri": {"prefix": "/metrics"}}],
         "route": [{"destination": {"host": "agent-registry", "port": {"number": 3000}}}]},
    ]);
    let gw = TestGateway::start(snapshot(vec![
        service(NS, "agent-registry", 3000),
        endpoints(NS, "agent-registry", &[&a]),
        pod(NS, "a", json!({"app": "agent-registry"})),
        virtual_service(
            NS,
            "agent-registry",
            json!({"hosts": [HOST], "gateways": ["agent-os-gateway"], "http": http}),
        ),
    ]))
    .await;
    let cl = client();
    let r = get(&cl, gw.addr, HOST, "/metrics").await;
    assert_eq!((r.status, r.body.as_str()), (200, "a GET /metrics"));
    assert_eq!(get(&cl, gw.addr, HOST, "/nothing").await.status, 404);

    assert_eq!(admin_get(gw.admin, "/readyz").await.status, 200);
    let m = admin_get(gw.admin, "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.body.contains(
        "aos_requests_total{destination_service=\"agent-registry.agent-os.svc.cluster.local\",destination_workload=\"web\",destination_pod=\"a\",response_code=\"200\",retried=\"false\"} 1"
    ), "{}", m.body);
    assert!(m.body.contains("destination_service=\"unknown\",destination_workload=\"unknown\",destination_pod=\"unknown\",response_code=\"404\""));
    assert!(m.body.contains("aos_request_duration_seconds_bucket{destination_service=\"agent-registry.agent-os.svc.cluster.local\",le=\"+Inf\"} 1"));
    assert!(m.body.contains("aos_gateway_active_requests 0"));
    assert!(
        m.body
            .contains("aos_gateway_pod_http_requests_per_second{namespace=\"agent-os\",pod=\"a\"}")
    );
    assert!(gw.handle.pod_http_requests_per_second(NS, "a").unwrap() > 0.0);
    let config = admin_get(gw.admin, "/config").await;
    assert!(
        config
            .body
            .contains("outbound|3000||agent-registry.agent-os.svc.cluster.local")
    );
}

#[tokio::test]
async fn cors_preflight_is_answered_for_allowed_origins_only() {
    let a = Upstream::start("a", ok()).await;
    let gw = TestGateway::start(seed_like(
        &[&a],
        simple_route(json!({"corsPolicy": {
            "allowOrigins": [{"exact": "https://example.com"}, {"regex": "https://.*\\.example\\.org"}],
            "allowMethods": ["GET", "POST", "PUT", "DELETE"],
            "allowHeaders": ["content-type", "authorization"],
            "maxAge": "24h",
        }})),
    ))
    .await;
    let cl = client();
    let preflight = |origin: &str| {
        Request::options("/api/v1/agent-registry/agents")
            .header("host", HOST)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let r = send(&cl, gw.addr, preflight("https://example.com")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://example.com"
    );
    assert_eq!(
        r.headers["access-control-allow-methods"],
        "GET,POST,PUT,DELETE"
    );
    assert_eq!(
        r.headers["access-control-allow-headers"],
        "content-type,authorization"
    );
    assert_eq!(r.headers["access-control-max-age"], "86400");
    assert_eq!(a.hits(), 0, "the preflight is answered by the gateway");

    // Another origin: not answered by the gateway, no CORS headers.
    let r = send(&cl, gw.addr, preflight("https://evil.example.net")).await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
    assert_eq!(r.body, "a OPTIONS /api/v1/agent-registry/agents");

    // A simple request from an allowed origin gets the origin back.
    let req = Request::get("/api/v1/agent-registry/agents")
        .header("host", HOST)
        .header("origin", "https://api.example.org")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(&cl, gw.addr, req).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://api.example.org"
    );
}

#[tokio::test]
async fn abort_fault_hits_about_half_of_the_requests() {
    let a = Upstream::start("a", ok()).await;
    let gw = TestGateway::start(seed_like(
        &[&a],
        simple_route(json!({"fault": {"abort": {"httpStatus": 503, "percentage": {"value": 50}}}})),
    ))
    .await;
    let answers = load(gw.addr, HOST, "/api/v1/agent-registry/x", 2000, 16).await;
    let aborted = answers
        .iter()
        .filter(|(s, b)| *s == 503 && b == "fault filter abort")
        .count();
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(aborted + ok, 2000);
    assert!((800..=1200).contains(&aborted), "aborted {aborted} of 2000");
}

#[tokio::test]
async fn delay_fault_adds_its_delay() {
    let a = Upstream::start("a", ok()).await;
    let mut gw = TestGateway::start(seed_like(&[&a], simple_route(json!({})))).await;
    let cl = client();
    let _ = get(&cl, gw.addr, HOST, "/api/v1/agent-registry").await;
    let t = Instant::now();
    let _ = get(&cl, gw.addr, HOST, "/api/v1/agent-registry").await;
    let base = t.elapsed();
    gw.apply(seed_like(
        &[&a],
        simple_route(
            json!({"fault": {"delay": {"fixedDelay": "50ms", "percentage": {"value": 100}}}}),
        ),
    ))
    .await;
    let t = Instant::now();
    let r = get(&cl, gw.addr, HOST, "/api/v1/agent-registry").await;
    let delayed = t.elapsed();
    assert_eq!(r.status, 200);
    assert!(delayed >= Duration::from_millis(50), "{delayed:?}");
    assert!(
        delayed < base + Duration::from_millis(500),
        "{delayed:?} vs {base:?}"
    );
}

#[tokio::test]
async fn retries_hide_an_upstream_failing_one_request_in_three() {
    let flaky: Behavior = Arc::new(|n, _| (if n % 3 == 2 { 503 } else { 200 }, Duration::ZERO));
    let a = Upstream::start("a", flaky).await;
    let gw = TestGateway::start(seed_like(
        &[&a],
        // Under concurrency (and with back-off sleeps) each try fails with p ≈ 1/3 independently
        // of the previous one, so `attempts` retries succeed with 1 − (1/3)^(attempts+1):
        // 98.8 % for the seed's 3, 99.86 % for 5 — the value that makes "≥ 99 %" a sound test.
        simple_route(json!({"retries": {"attempts": 5, "perTryTimeout": "2s", "retryOn": "gateway-error,connect-failure,refused-stream"}})),
    ))
    .await;
    let answers = load(gw.addr, HOST, "/api/v1/agent-registry/x", 600, 8).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(ok * 100 >= 600 * 99, "{ok} of 600 succeeded: {failed:?}");
    assert!(a.hits() > 600, "the upstream saw the retries");
    let m = admin_get(gw.admin, "/metrics").await.body;
    assert!(m.contains("retried=\"true\""), "{m}");
    assert!(m.contains("aos_gateway_retries_total{destination_service=\"agent-registry.agent-os.svc.cluster.local\"}"));
}

#[tokio::test]
async fn default_retries_cover_a_dead_endpoint() {
    // Istio's default policy (2 retries on connect-failure, refused-stream, 503) makes a pod
    // that is gone but still listed in Endpoints cost nothing.
    let (a, b) = (
        Upstream::start("a", ok()).await,
        Upstream::start("b", ok()).await,
    );
    b.stop();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let gw = TestGateway::start(seed_like(&[&a, &b], simple_route(json!({})))).await;
    let answers = load(gw.addr, HOST, "/api/v1/agent-registry/x", 200, 4).await;
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "{:?}",
        answers.iter().find(|(s, _)| *s != 200)
    );
}

#[tokio::test]
async fn timeouts_cut_slow_responses_with_504() {
    let a = Upstream::start("a", slow(Duration::from_millis(400))).await;
    let gw = TestGateway::start(seed_like(
        &[&a],
        simple_route(json!({"timeout": "100ms", "retries": {"attempts": 0}})),
    ))
    .await;
    let cl = client();
    let t = Instant::now();
    let r = get(&cl, gw.addr, HOST, "/api/v1/agent-registry").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (504, "upstream request timeout")
    );
    assert!(
        t.elapsed() < Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );

    // A per-try timeout with retries: every try times out, the answer is 504 after 3 tries.
    let b = Upstream::start("b", slow(Duration::from_millis(400))).await;
    let mut gw = gw;
    gw.apply(seed_like(
        &[&b],
        simple_route(
            json!({"retries": {"attempts": 2, "perTryTimeout": "50ms", "retryOn": "5xx"}}),
        ),
    ))
    .await;
    let r = get(&cl, gw.addr, HOST, "/api/v1/agent-registry").await;
    assert_eq!(r.status, 504);
    assert_eq!(b.hits(), 3);

    // The route timeout covers every try and the back-off between them: with tries of at
    // most 100 ms and room for 20 of them, the answer still comes at the route's 250 ms.
    let c = Upstream::start("c", slow(Duration::from_millis(400))).await;
    gw.apply(seed_like(
        &[&c],
        simple_route(json!({
            "timeout": "250ms",
            "retries": {"attempts": 20, "perTryTimeout": "100ms", "retryOn": "5xx"},
        })),
    ))
    .await;
    let t = Instant::now();
    let r = get(&cl, gw.addr, HOST, "/api/v1/agent-registry").await;
    let took = t.elapsed();
    assert_eq!(
        (r.status, r.body.as_str()),
        (504, "upstream request timeout")
    );
    assert!(
        took >= Duration::from_millis(240) && took < Duration::from_millis(450),
        "{took:?}"
    );
    assert!((2..=4).contains(&c.hits()), "{} tries", c.hits());
}

#[tokio::test]
async fn outlier_detection_ejects_a_failing_endpoint_and_brings_it_back() {
    let good = Upstream::start("good", ok()).await;
    let bad = Upstream::start("bad", status(500)).await;
    let mut snap = seed_like(
        &[&good, &bad],
        simple_route(json!({"retries": {"attempts": 0}})),
    );
    snap.destination_rules.push(destination_rule(
        NS,
        "agent-registry",
        json!({"host": "agent-registry", "trafficPolicy": {"outlierDetection": {
            "consecutive5xxErrors": 3, "interval": "100ms", "baseEjectionTime": "300ms", "maxEjectionPercent": 100,
        }}}),
    ));
    let gw = TestGateway::start(snap).await;
    let cl = client();
    // Round robin: the bad endpoint answers every other request until its third 500.
    let mut fails = 0;
    for _ in 0..20 {
        if get(&cl, gw.addr, HOST, "/api/v1/agent-registry")
            .await
            .status
            == 500
        {
            fails += 1;
        }
    }
    assert_eq!(fails, 3);
    assert_eq!(bad.hits(), 3);
    let m = admin_get(gw.admin, "/metrics").await.body;
    assert!(m.contains("aos_gateway_outlier_ejections_total{destination_service=\"agent-registry.agent-os.svc.cluster.local\",destination_pod=\"bad\"} 1"), "{m}");
    assert!(m.contains("aos_gateway_outlier_ejected{destination_service=\"agent-registry.agent-os.svc.cluster.local\",destination_pod=\"bad\"} 1"));
    // After baseEjectionTime × 1 it is back.
    tokio::time::sleep(Duration::from_millis(320)).await;
    for _ in 0..4 {
        let _ = get(&cl, gw.addr, HOST, "/api/v1/agent-registry").await;
    }
    assert!(bad.hits() > 3, "the endpoint came back");
}

#[tokio::test]
async fn connection_pool_overflow_is_shed_with_503() {
    let a = Upstream::start("a", slow(Duration::from_millis(300))).await;
    let mut snap = seed_like(&[&a], simple_route(json!({})));
    snap.destination_rules.push(destination_rule(
        NS,
        "agent-registry",
        json!({"host": "agent-registry", "trafficPolicy": {"connectionPool": {
            "tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1},
        }}}),
    ));
    let gw = TestGateway::start(snap).await;
    let answers = load(gw.addr, HOST, "/api/v1/agent-registry", 6, 6).await;
    let shed = answers
        .iter()
        .filter(|(s, b)| *s == 503 && b.contains("overflow"))
        .count();
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert!(shed >= 3, "{answers:?}");
    assert!(ok >= 2, "{answers:?}");
    let cl = client();
    // Headers of a shed request.
    let slow_one = tokio::spawn({
        let (cl, addr) = (cl.clone(), gw.addr);
        async move { get(&cl, addr, HOST, "/api/v1/agent-registry").await.status }
    });
    let queued = tokio::spawn({
        let (cl, addr) = (cl.clone(), gw.addr);
        async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            get(&cl, addr, HOST, "/api/v1/agent-registry").await.status
        }
    });
    tokio::time::sleep(Duration::from_millis(80)).await;
    let r = get(&cl, gw.addr, HOST, "/api/v1/agent-registry").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["x-envoy-overloaded"], "true");
    assert_eq!(slow_one.await.unwrap(), 200);
    assert_eq!(queued.await.unwrap(), 200);
}

#[tokio::test]
async fn configuration_swaps_under_load_drop_nothing() {
    let ups = [
        Upstream::start("a", slow(Duration::from_millis(2))).await,
        Upstream::start("b", slow(Duration::from_millis(2))).await,
        Upstream::start("c", slow(Duration::from_millis(2))).await,
    ];
    let mut gw = TestGateway::start(seed_like(
        &[&ups[0]],
        simple_route(json!({"retries": {"attempts": 0}})),
    ))
    .await;
    let addr = gw.addr;
    let traffic =
        tokio::spawn(async move { load(addr, HOST, "/api/v1/agent-registry/x", 3000, 16).await });
    for i in 0..30 {
        let set: Vec<&Upstream> = match i % 3 {
            0 => vec![&ups[0], &ups[1]],
            1 => vec![&ups[1], &ups[2]],
            _ => vec![&ups[0], &ups[1], &ups[2]],
        };
        let http = if i % 2 == 0 {
            simple_route(json!({"retries": {"attempts": 0}}))
        } else {
            simple_route(json!({"retries": {"attempts": 0}, "timeout": "5s"}))
        };
        gw.apply(seed_like(&set, http)).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answers = traffic.await.unwrap();
    assert_eq!(answers.len(), 3000);
    let bad: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        bad.is_empty(),
        "{} failed, e.g. {:?}",
        bad.len(),
        bad.first()
    );
}

#[tokio::test]
async fn removing_an_endpoint_under_load_drops_nothing() {
    let (a, b) = (
        Upstream::start("a", slow(Duration::from_millis(5))).await,
        Upstream::start("b", slow(Duration::from_millis(5))).await,
    );
    let mut gw = TestGateway::start(seed_like(&[&a, &b], simple_route(json!({})))).await;
    let addr = gw.addr;
    let traffic =
        tokio::spawn(async move { load(addr, HOST, "/api/v1/agent-registry/x", 1500, 8).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The pod goes: first out of Endpoints, then its process stops (in-flight requests finish).
    gw.apply(seed_like(&[&a], simple_route(json!({})))).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.stop();
    let answers = traffic.await.unwrap();
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "{:?}",
        answers.iter().find(|(s, _)| *s != 200)
    );
}

#[tokio::test]
async fn http2_clients_work() {
    let a = Upstream::start("a", ok()).await;
    let gw = TestGateway::start(seed_like(&[&a], simple_route(json!({})))).await;
    let c: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    for _ in 0..3 {
        let req = Request::get(format!("http://{}/api/v1/agent-registry/h2", gw.addr))
            .header("host", HOST)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"a GET /api/v1/agent-registry/h2");
    }
    // An HTTP/2 request without a Host header routes by :authority.
    let req = Request::get(format!("http://{HOST}/api/v1/agent-registry/h2"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (mut parts, body) = req.into_parts();
    parts.uri = format!("http://{}/api/v1/agent-registry/h2", gw.addr)
        .parse()
        .unwrap();
    let _ = (parts, body);
}

#[tokio::test]
async fn h2_upgrade_policy_speaks_http2_to_the_upstream() {
    let a = Upstream::start(
        "a",
        Arc::new(|_, req: &http::Request<hyper::body::Incoming>| {
            (
                if req.version() == http::Version::HTTP_2 {
                    200
                } else {
                    418
                },
                Duration::ZERO,
            )
        }),
    )
    .await;
    let mut snap = seed_like(&[&a], simple_route(json!({})));
    snap.destination_rules.push(destination_rule(
        NS,
        "agent-registry",
        json!({"host": "agent-registry", "trafficPolicy": {"connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE"}}}}),
    ));
    let gw = TestGateway::start(snap).await;
    let r = get(&client(), gw.addr, HOST, "/api/v1/agent-registry").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn subsets_and_weights_split_traffic_by_pod_labels() {
    let (v1, v2) = (
        Upstream::start("v1pod", ok()).await,
        Upstream::start("v2pod", ok()).await,
    );
    let gw = TestGateway::start(snapshot(vec![
        service(NS, "agent-registry", 3000),
        endpoints(NS, "agent-registry", &[&v1, &v2]),
        pod(
            NS,
            "v1pod",
            json!({"app": "agent-registry", "version": "v1.0.0"}),
        ),
        pod(
            NS,
            "v2pod",
            json!({"app": "agent-registry", "version": "v2.0.0"}),
        ),
        destination_rule(
            NS,
            "agent-registry",
            json!({"host": "agent-registry", "subsets": [
                {"name": "v1", "labels": {"version": "v1.0.0"}},
                {"name": "v2", "labels": {"version": "v2.0.0"}},
            ]}),
        ),
        virtual_service(
            NS,
            "agent-registry",
            json!({"hosts": [HOST], "http": [
                {"match": [{"headers": {"x-canary": {"exact": "yes"}}}],
                 "route": [{"destination": {"host": "agent-registry", "subset": "v2"}}]},
                {"route": [
                    {"destination": {"host": "agent-registry", "subset": "v1"}, "weight": 80},
                    {"destination": {"host": "agent-registry", "subset": "v2"}, "weight": 20},
                ]},
            ]}),
        ),
    ]))
    .await;
    let answers = load(gw.addr, HOST, "/", 1000, 8).await;
    let counts = count_by_upstream(&answers);
    let v2n = counts.get("v2pod").copied().unwrap_or(0);
    assert!((130..=270).contains(&v2n), "{counts:?}");
    let cl = client();
    for _ in 0..10 {
        let req = Request::get("/")
            .header("host", HOST)
            .header("x-canary", "yes")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert!(send(&cl, gw.addr, req).await.body.starts_with("v2pod"));
    }
}

#[tokio::test]
async fn consistent_hash_on_a_header_sticks() {
    let ups = [
        Upstream::start("a", ok()).await,
        Upstream::start("b", ok()).await,
        Upstream::start("c", ok()).await,
    ];
    let mut snap = seed_like(&[&ups[0], &ups[1], &ups[2]], simple_route(json!({})));
    snap.destination_rules.push(destination_rule(
        NS,
        "agent-registry",
        json!({"host": "agent-registry", "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}}),
    ));
    let gw = TestGateway::start(snap).await;
    let cl = client();
    let mut seen = std::collections::HashSet::new();
    for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        let mut first = None;
        for _ in 0..5 {
            let req = Request::get("/api/v1/agent-registry")
                .header("host", HOST)
                .header("x-user", user)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let who = send(&cl, gw.addr, req)
                .await
                .body
                .split(' ')
                .next()
                .unwrap()
                .to_string();
            assert_eq!(*first.get_or_insert(who.clone()), who, "{user}");
        }
        seen.insert(first.unwrap());
    }
    assert!(seen.len() >= 2, "six users all on one endpoint: {seen:?}");
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let a = Upstream::start("a", slow(Duration::from_millis(200))).await;
    let gw = TestGateway::start(seed_like(&[&a], simple_route(json!({})))).await;
    shut_down_with_a_request_in_flight(gw).await;
}

/// Start a request (to a slow upstream), shut the gateway down while it is in flight: the
/// request is answered, the gateway ends cleanly and its listening socket is closed.
async fn shut_down_with_a_request_in_flight(gw: TestGateway) {
    let addr = gw.addr;
    let in_flight = tokio::spawn(async move {
        get(&client(), addr, HOST, "/api/v1/agent-registry")
            .await
            .status
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    gw.shutdown.cancel();
    assert_eq!(in_flight.await.unwrap(), 200);
    gw.task.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listening socket is closed"
    );
}

#[tokio::test]
async fn proxy_workers_serve_on_one_port_and_drain_on_shutdown() {
    let ups = [
        Upstream::start("a", ok()).await,
        Upstream::start("b", ok()).await,
        Upstream::start("c", slow(Duration::from_millis(200))).await,
    ];
    let refs: Vec<&Upstream> = ups.iter().collect();
    let mut gw = TestGateway::start_with(
        seed_like(&refs, simple_route(json!({}))),
        aos_gateway::GatewayConfig {
            workers: 3,
            drain_grace_seconds: 5,
            ..aos_gateway::GatewayConfig::default()
        },
    )
    .await;
    let addr = gw.addr;
    // The port is the first gateway's alone.
    let second = aos_gateway::Gateway::bind(aos_gateway::GatewayConfig {
        listen: addr,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        ..aos_gateway::GatewayConfig::default()
    })
    .await;
    assert!(
        matches!(second, Err(aos_gateway::GatewayError::Bind { .. })),
        "a second gateway on {addr} must fail"
    );
    // Many connections (the workers take them from one socket), each with a few requests:
    // every one answered, by every upstream.
    let mut clients = Vec::new();
    for _ in 0..24 {
        clients.push(tokio::spawn(async move {
            let cl = client();
            let mut answers = Vec::new();
            for _ in 0..3 {
                let r = get(&cl, addr, HOST, "/api/v1/agent-registry").await;
                answers.push((r.status, r.body));
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for c in clients {
        answers.extend(c.await.unwrap());
    }
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert_eq!(count_by_upstream(&answers).len(), 3, "{answers:?}");
    let text = gw.handle.metrics_text();
    assert!(
        text.lines()
            .filter(|l| l.starts_with("aos_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            >= 72.0,
        "{text}"
    );

    // A request in flight (to the slow upstream) when the shutdown starts is answered; then
    // every worker is done.
    gw.apply(seed_like(&refs[2..], simple_route(json!({}))))
        .await;
    shut_down_with_a_request_in_flight(gw).await;
}

#[tokio::test]
async fn redirects_rewrites_and_header_operations() {
    let a = Upstream::start("a", ok()).await;
    let gw = TestGateway::start(seed_like(&[&a], json!([
        {"match": [{"uri": {"exact": "/old"}}], "redirect": {"uri": "/new", "redirectCode": 308}},
        {"match": [{"uri": {"prefix": "/v1/"}, "method": {"exact": "GET"}}],
         "rewrite": {"uri": "/api/v1/agent-registry/"},
         "headers": {"request": {"set": {"x-added": "yes"}}, "response": {"add": {"x-served-by": "aos"}}},
         "route": [{"destination": {"host": "agent-registry"}}]},
    ])))
    .await;
    let cl = client();
    let r = get(&cl, gw.addr, "agent-registry.example.com:8080", "/old?q=1").await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.headers["location"],
        "http://agent-registry.example.com:8080/new?q=1"
    );
    let r = get(&cl, gw.addr, HOST, "/v1/agents").await;
    assert_eq!(r.body, "a GET /api/v1/agent-registry/agents");
    assert_eq!(r.headers["echo-x-added"], "yes");
    assert_eq!(r.headers["x-served-by"], "aos");
    // Method match: POST does not match the GET-only route.
    let req = Request::post("/v1/agents")
        .header("host", HOST)
        .body(Full::new(Bytes::from("{}")))
        .unwrap();
    assert_eq!(send(&cl, gw.addr, req).await.status, 404);
}

#[tokio::test]
async fn request_bodies_reach_the_upstream_whole() {
    let a = Upstream::start("a", ok()).await;
    let gw = TestGateway::start(seed_like(&[&a], simple_route(json!({})))).await;
    let cl = client();
    // Small (buffered for retries), large (streamed with its length).
    for size in [0usize, 10, 200 * 1024] {
        let req = Request::post("/api/v1/agent-registry/up")
            .header("host", HOST)
            .body(Full::new(Bytes::from(vec![b'x'; size])))
            .unwrap();
        let r = send(&cl, gw.addr, req).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            format!("a POST /api/v1/agent-registry/up len={size}")
        );
    }
    // Chunked, of unknown length: streamed upstream with chunked encoding.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/agent-registry/up HTTP/1.1\r\nhost: {HOST}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for part in ["hello", " ", "world"] {
        s.write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
            .await
            .unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("a POST /api/v1/agent-registry/up len=11"),
        "{answer}"
    );
}

#[tokio::test]
async fn idle_client_connections_are_closed_but_not_while_a_request_is_in_flight() {
    let a = Upstream::start("a", slow(Duration::from_millis(2200))).await;
    let gw = TestGateway::start_with(
        seed_like(&[&a], simple_route(json!({}))),
        aos_gateway::GatewayConfig {
            idle_timeout_seconds: 1,
            ..aos_gateway::GatewayConfig::default()
        },
    )
    .await;
    let started = Instant::now();
    // A connection that never sends a request.
    let mut silent = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // A connection whose request takes longer than the idle timeout.
    let mut busy = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    busy.write_all(
        format!("GET /api/v1/agent-registry HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf))
        .await
        .expect("the idle connection is closed")
        .unwrap();
    assert_eq!(n, 0);
    let idle_for = started.elapsed();
    assert!(
        idle_for >= Duration::from_secs(1),
        "closed after {idle_for:?}"
    );
    // The slow answer arrives whole, then its connection idles out in turn.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(8), busy.read_to_end(&mut answer))
        .await
        .expect("the busy connection is closed once idle")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("a GET /api/v1/agent-registry"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(3200));
}
