//! The API server as a client of node agents: `pods/{name}/log` and `metrics.k8s.io`,
//! against a test "node" — a small rustls server in this file that implements the agent's
//! side of the interface (client certificate required and checked, `/containerLogs`,
//! `/stats/resource`), registered as a Node that publishes its certificate pin.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::Digest as _;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

type Body = BoxBody<Bytes, std::io::Error>;

/// What the test node saw and how it behaves.
#[derive(Default)]
struct Seen {
    /// Common Names of the client certificates of its connections.
    client_cns: Mutex<Vec<String>>,
    /// Path and query of each `/containerLogs` request.
    log_requests: Mutex<Vec<String>>,
    /// Set when a held-open log stream was dropped by the API server.
    hang_dropped: AtomicBool,
    /// Notified (once per waiter) to end the followed `p1` stream.
    release: Notify,
    dropped: Notify,
}

struct TestNode {
    addr: SocketAddr,
    pin: String,
    seen: Arc<Seen>,
    cancel: CancellationToken,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn text(code: u16, body: &str) -> hyper::Response<Body> {
    let body = http_body_util::Full::new(Bytes::from(body.to_string()))
        .map_err(|never: Infallible| match never {})
        .boxed();
    hyper::Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .unwrap()
}

/// Sets the flag when the stream holding it is dropped.
struct DropFlag(Arc<Seen>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.hang_dropped.store(true, Ordering::SeqCst);
        self.0.dropped.notify_waiters();
    }
}

fn stats() -> Value {
    json!({
        "node": {"name": "n1", "timestamp": "2026-11-27T08:00:00Z", "windowSeconds": 5.0,
                 "cpuNanoCores": 250_000_000u64, "memoryWorkingSetBytes": 1_073_741_824u64},
        "pods": [
            {"namespace": "default", "name": "p1", "uid": "", "timestamp": "2026-11-27T08:00:00Z", "windowSeconds": 5.0,
             "containers": [{"name": "app", "cpuNanoCores": 1_234_567u64, "memoryWorkingSetBytes": 23_453_696u64}]},
            {"namespace": "default", "name": "two", "uid": "", "timestamp": "2026-11-27T08:00:00Z", "windowSeconds": 5.0,
             "containers": [{"name": "a", "cpuNanoCores": 5_000_000u64, "memoryWorkingSetBytes": 1_048_576u64},
                            {"name": "b", "cpuNanoCores": 1_000_000u64, "memoryWorkingSetBytes": 2_097_152u64}]},
            {"namespace": "other", "name": "p1", "uid": "", "timestamp": "2026-11-27T08:00:00Z", "windowSeconds": 5.0,
             "containers": [{"name": "app", "cpuNanoCores": 7_000_000u64, "memoryWorkingSetBytes": 4_194_304u64}]},
            {"namespace": "default", "name": "gone", "uid": "", "timestamp": "2026-11-27T08:00:00Z", "windowSeconds": 5.0,
             "containers": [{"name": "app", "cpuNanoCores": 1u64, "memoryWorkingSetBytes": 1u64}]}
        ]
    })
}

async fn handle(
    seen: Arc<Seen>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path == "/stats/resource" {
        let mut r = text(200, &stats().to_string());
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        return r;
    }
    let Some(rest) = path.strip_prefix("/containerLogs/") else {
        return text(404, "not found");
    };
    seen.log_requests
        .lock()
        .unwrap()
        .push(format!("{path}?{query}"));
    let parts: Vec<&str> = rest.split('/').collect();
    let [ns, pod, container] = parts.as_slice() else {
        return text(404, "not found");
    };
    if *ns != "default" || !["p1", "hang", "two"].contains(pod) {
        return text(404, &format!("pod \"{pod}\" is not on this node"));
    }
    if query.split('&').any(|p| p == "previous=true") {
        return text(
            400,
            &format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
        );
    }
    let follow = query.split('&').any(|p| p == "follow=true");
    if *pod == "hang" {
        // One line, then held open until the reader goes away.
        let flag = DropFlag(seen.clone());
        let s = futures::stream::once(async {
            Ok::<_, std::io::Error>(Frame::data(Bytes::from("held\n")))
        })
        .chain(futures::stream::pending())
        .map(move |f| {
            let _ = &flag;
            f
        });
        return stream_response(http_body_util::BodyExt::boxed(StreamBody::new(s)));
    }
    if !follow {
        return text(
            200,
            &format!("{container} line 1\n{container} line 2\n{container} line 3\n"),
        );
    }
    // Two lines at once, the third after the test releases it, then the end.
    let s = futures::stream::iter([
        Ok::<_, std::io::Error>(Frame::data(Bytes::from("line 1\n"))),
        Ok(Frame::data(Bytes::from("line 2\n"))),
    ])
    .chain(futures::stream::once(async move {
        seen.release.notified().await;
        Ok(Frame::data(Bytes::from("line 3\n")))
    }));
    stream_response(http_body_util::BodyExt::boxed(StreamBody::new(s)))
}

fn stream_response(body: Body) -> hyper::Response<Body> {
    hyper::Response::builder()
        .status(200)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .unwrap()
}

fn common_name(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("client certificate parses");
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Start the test node: a self-signed serving certificate, client certificates
/// required and verified against the cluster CA in `ca_pem`.
async fn start_node(ca_pem: &[u8]) -> TestNode {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = cert.der().clone();
    let pin = hex::encode(sha2::Sha256::digest(der.as_ref()));
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![der],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let cancel = CancellationToken::new();
    let (seen2, cancel2) = (seen.clone(), cancel.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = cancel2.cancelled() => return,
                a = listener.accept() => a.unwrap(),
            };
            let (acceptor, seen) = (acceptor.clone(), seen2.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Some(chain) = tls.get_ref().1.peer_certificates() {
                    seen.client_cns
                        .lock()
                        .unwrap()
                        .push(common_name(chain[0].as_ref()));
                }
                let service = hyper::service::service_fn(move |req| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(handle(seen, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TestNode {
        addr,
        pin,
        seen,
        cancel,
    }
}

fn node_object(name: &str, addr: SocketAddr, pin: Option<&str>, ready: &str) -> Value {
    let mut annotations = serde_json::Map::new();
    if let Some(pin) = pin {
        annotations.insert("node.aos.dev/serving-cert-sha256".into(), json!(pin));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "tier": "test"}, "annotations": annotations},
        "status": {
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady", "message": "ready as can be"}],
            "addresses": [{"type": "InternalIP", "address": addr.ip().to_string()}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": addr.port()}},
        }
    })
}

async fn register(h: &Harness, node: Value) {
    h.client
        .create(rt("v1", "Node"), None, &node)
        .await
        .unwrap();
}

async fn bound_pod(h: &Harness, ns: &str, name: &str, node: Option<&str>, containers: &[&str]) {
    let containers: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox:1"}))
        .collect();
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"containers": containers},
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    h.client
        .create(rt("v1", "Pod"), Some(ns), &pod)
        .await
        .unwrap();
}

fn log_path(ns: &str, pod: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods/{pod}/log")
}

async fn read_all(
    mut s: futures::stream::BoxStream<'static, Result<Bytes, aos_client::ClientError>>,
) -> String {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

async fn log_error(
    h: &Harness,
    ns: &str,
    pod: &str,
    query: &[(&str, String)],
) -> aos_client::Status {
    match h.client.get_stream(&log_path(ns, pod), query).await {
        Ok(_) => panic!("log of {ns}/{pod} {query:?} should fail"),
        Err(aos_client::ClientError::Api(status)) => *status,
        Err(e) => panic!("log of {ns}/{pod}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_stream_from_the_pinned_node() {
    let h = start_with_tokens("viewertoken,alice,2,\"viewers\"\n").await;
    let node = start_node(&h.ca_pem()).await;
    register(&h, node_object("n1", node.addr, Some(&node.pin), "True")).await;
    bound_pod(&h, "default", "p1", Some("n1"), &["app"]).await;
    bound_pod(&h, "default", "hang", Some("n1"), &["app"]).await;

    // A plain read, with Kubernetes' query names passed on to the agent.
    let s = h
        .client
        .get_stream(
            &log_path("default", "p1"),
            &[("tailLines", "2".into()), ("timestamps", "true".into())],
        )
        .await
        .unwrap();
    assert_eq!(read_all(s).await, "app line 1\napp line 2\napp line 3\n");
    assert_eq!(
        node.seen.log_requests.lock().unwrap().last().unwrap(),
        "/containerLogs/default/p1/app?timestamps=true&tailLines=2"
    );
    // The agent saw the API server's client certificate, chained to the cluster CA (the
    // test node's verifier checked that) and named aos:apiserver.
    assert!(
        node.seen
            .client_cns
            .lock()
            .unwrap()
            .iter()
            .all(|cn| cn == "aos:apiserver"),
        "{:?}",
        node.seen.client_cns.lock().unwrap()
    );
    assert!(!node.seen.client_cns.lock().unwrap().is_empty());

    // follow: the first lines arrive before the agent ends the stream, and the stream
    // ends when the agent ends it.
    let mut s = h
        .client
        .get_stream(&log_path("default", "p1"), &[("follow", "true".into())])
        .await
        .unwrap();
    let mut got = String::new();
    while got != "line 1\nline 2\n" {
        let chunk = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("the first lines stream before the end")
            .expect("stream open")
            .unwrap();
        got.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    node.seen.release.notify_one();
    let rest = tokio::time::timeout(Duration::from_secs(10), read_all(s))
        .await
        .expect("the stream ends when the node ends it");
    assert_eq!(rest, "line 3\n");

    // A client that goes away: the API server drops the request to the node.
    let seen = node.seen.clone();
    let dropped = seen.dropped.notified();
    let mut s = h
        .client
        .get_stream(&log_path("default", "hang"), &[("follow", "1".into())])
        .await
        .unwrap();
    assert_eq!(&s.next().await.unwrap().unwrap()[..], b"held\n");
    assert!(!node.seen.hang_dropped.load(Ordering::SeqCst));
    drop(s);
    if !node.seen.hang_dropped.load(Ordering::SeqCst) {
        tokio::time::timeout(Duration::from_secs(10), dropped)
            .await
            .expect("the node's stream is dropped once the client goes away");
    }

    // The agent's own refusals pass through with its reason.
    let status = log_error(&h, "default", "p1", &[("previous", "true".into())]).await;
    assert_eq!(status.code, 400);
    assert_eq!(
        status.message,
        "previous terminated container \"app\" in pod \"p1\" not found"
    );

    // A viewer reads logs as it reads pods.
    let viewer = h.client_with_token("viewertoken");
    let s = viewer
        .get_stream(&log_path("default", "p1"), &[("container", "app".into())])
        .await
        .unwrap();
    assert!(read_all(s).await.starts_with("app line 1\n"));
    drop(node);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_log_errors_name_the_pod_or_node() {
    let h = start().await;
    let node = start_node(&h.ca_pem()).await;
    register(&h, node_object("n1", node.addr, Some(&node.pin), "True")).await;
    // Same address, another pin: the certificate presented is not the published one.
    let wrong = hex::encode([7u8; 32]);
    register(
        &h,
        node_object("n-wrong-pin", node.addr, Some(&wrong), "True"),
    )
    .await;
    register(&h, node_object("n-no-pin", node.addr, None, "True")).await;
    register(
        &h,
        node_object("n-down", node.addr, Some(&node.pin), "Unknown"),
    )
    .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    register(&h, node_object("n-gone", closed, Some(&node.pin), "True")).await;
    for (pod, n) in [
        ("on-wrong-pin", "n-wrong-pin"),
        ("on-no-pin", "n-no-pin"),
        ("on-down", "n-down"),
        ("on-gone", "n-gone"),
        ("on-missing", "n-missing"),
    ] {
        bound_pod(&h, "default", pod, Some(n), &["app"]).await;
    }
    bound_pod(&h, "default", "pending", None, &["app"]).await;
    bound_pod(&h, "default", "two", Some("n1"), &["a", "b"]).await;

    let cases: &[(&str, u16, &str)] = &[
        (
            "on-wrong-pin",
            503,
            "node \"n-wrong-pin\" presented a serving certificate (sha256 ",
        ),
        (
            "on-no-pin",
            503,
            "node \"n-no-pin\" does not publish its serving certificate",
        ),
        (
            "on-down",
            503,
            "node \"n-down\" is not ready: ready as can be",
        ),
        ("on-gone", 503, "cannot reach node \"n-gone\""),
        ("on-missing", 503, "node \"n-missing\" not found"),
        (
            "pending",
            400,
            "container \"app\" in pod \"pending\" is waiting to start",
        ),
        (
            "two",
            400,
            "a container name must be specified for pod two, choose one of: [a b]",
        ),
        ("nope", 404, "pods \"nope\" not found"),
    ];
    for (pod, code, message) in cases {
        let status = log_error(&h, "default", pod, &[]).await;
        assert_eq!(status.code, *code, "{pod}: {status:?}");
        assert!(
            status.message.contains(message),
            "{pod}: {:?} should contain {message:?}",
            status.message
        );
    }
    let status = log_error(&h, "default", "two", &[("container", "c".into())]).await;
    assert_eq!(status.message, "container c is not valid for pod two");
    let status = log_error(&h, "default", "two", &[("tailLines", "-1".into())]).await;
    assert_eq!(status.code, 422);
    let s = h
        .client
        .get_stream(&log_path("default", "two"), &[("container", "b".into())])
        .await
        .unwrap();
    assert_eq!(read_all(s).await, "b line 1\nb line 2\nb line 3\n");
    drop(node);
    h.stop().await;
}

async fn get_json(h: &Harness, path: &str) -> Value {
    let bytes = h
        .client
        .raw(http::Method::GET, path, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_api_serves_node_and_pod_metrics() {
    let h = start().await;
    h.create_namespace("other").await;
    let node = start_node(&h.ca_pem()).await;
    register(&h, node_object("n1", node.addr, Some(&node.pin), "True")).await;
    // A NotReady node is not asked and not listed.
    register(
        &h,
        node_object("n-down", node.addr, Some(&node.pin), "False"),
    )
    .await;
    bound_pod(&h, "default", "p1", Some("n1"), &["app"]).await;
    bound_pod(&h, "default", "two", Some("n1"), &["a", "b"]).await;
    bound_pod(&h, "other", "p1", Some("n1"), &["app"]).await;
    bound_pod(&h, "default", "no-stats", Some("n1"), &["app"]).await;

    let nodes = get_json(&h, "/apis/metrics.k8s.io/v1beta1/nodes").await;
    assert_eq!(nodes["kind"], "NodeMetricsList");
    assert_eq!(nodes["apiVersion"], "metrics.k8s.io/v1beta1");
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{nodes}");
    let n1 = &items[0];
    assert_eq!(n1["kind"], "NodeMetrics");
    assert_eq!(n1["metadata"]["name"], "n1");
    assert_eq!(n1["metadata"]["labels"]["tier"], "test");
    assert!(n1["metadata"]["creationTimestamp"].is_string());
    assert_eq!(n1["timestamp"], "2026-11-27T08:00:00Z");
    assert_eq!(n1["window"], "5s");
    assert_eq!(n1["usage"], json!({"cpu": "250m", "memory": "1Gi"}));
    let one = get_json(&h, "/apis/metrics.k8s.io/v1beta1/nodes/n1").await;
    assert_eq!(one["usage"], n1["usage"]);
    // Stats requests reuse the connection to the node.
    let connections = node.seen.client_cns.lock().unwrap().len();
    for _ in 0..3 {
        get_json(&h, "/apis/metrics.k8s.io/v1beta1/nodes/n1").await;
    }
    assert_eq!(node.seen.client_cns.lock().unwrap().len(), connections);
    let none = get_json(
        &h,
        "/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=tier%3Dprod",
    )
    .await;
    assert_eq!(none["items"], json!([]));

    // Pods of one namespace, with the Pod's labels; a pod the store does not have
    // ("gone") and one the agent has no sample for ("no-stats") are left out.
    let pods = get_json(&h, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods").await;
    assert_eq!(pods["kind"], "PodMetricsList");
    let names: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p1", "two"]);
    let p1 = &pods["items"][0];
    assert_eq!(p1["metadata"]["labels"], json!({"app": "p1"}), "{p1}");
    assert_eq!(p1["metadata"]["namespace"], "default");
    assert_eq!(p1["window"], "5s");
    assert_eq!(
        p1["containers"],
        json!([{"name": "app", "usage": {"cpu": "1234567n", "memory": "22904Ki"}}])
    );
    // Every namespace; selectors.
    let all = get_json(&h, "/apis/metrics.k8s.io/v1beta1/pods").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    let selected = get_json(
        &h,
        "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dtwo",
    )
    .await;
    assert_eq!(selected["items"][0]["metadata"]["name"], "two");
    assert_eq!(selected["items"].as_array().unwrap().len(), 1);
    let by_field = get_json(
        &h,
        "/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=metadata.namespace%3Dother",
    )
    .await;
    assert_eq!(by_field["items"].as_array().unwrap().len(), 1);
    // One pod; one without a sample is 404 as metrics-server answers.
    let other = get_json(&h, "/apis/metrics.k8s.io/v1beta1/namespaces/other/pods/p1").await;
    assert_eq!(other["kind"], "PodMetrics");
    assert_eq!(other["containers"][0]["usage"]["cpu"], "7m");
    let err = h
        .client
        .raw(
            http::Method::GET,
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/no-stats",
            None,
        )
        .await
        .unwrap_err();
    match err {
        aos_client::ClientError::Api(s) => {
            assert_eq!(s.code, 404);
            assert_eq!(s.message, "pods.metrics.k8s.io \"no-stats\" not found");
        }
        e => panic!("{e}"),
    }
    // Read-only.
    let err = h
        .client
        .raw(
            http::Method::DELETE,
            "/apis/metrics.k8s.io/v1beta1/nodes/n1",
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, aos_client::ClientError::Api(ref s) if s.code == 405),
        "{err}"
    );
    drop(node);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_metrics_k8s_io() {
    let h = start().await;
    let groups = get_json(&h, "/apis").await;
    let metrics = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "metrics.k8s.io")
        .expect("metrics.k8s.io in /apis");
    assert_eq!(
        metrics["preferredVersion"]["groupVersion"],
        "metrics.k8s.io/v1beta1"
    );
    let group = get_json(&h, "/apis/metrics.k8s.io").await;
    assert_eq!(group["kind"], "APIGroup");
    let resources = get_json(&h, "/apis/metrics.k8s.io/v1beta1").await;
    assert_eq!(resources["groupVersion"], "metrics.k8s.io/v1beta1");
    let kinds: Vec<(&str, &str, bool)> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["namespaced"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("nodes", "NodeMetrics", false),
            ("pods", "PodMetrics", true)
        ]
    );

    // Aggregated discovery, as kubectl 1.32 asks for it.
    let resp = reqwest_like_get(
        &h,
        "/apis",
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
    )
    .await;
    let item = resp["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "metrics.k8s.io")
        .expect("metrics.k8s.io in aggregated discovery");
    assert_eq!(item["versions"][0]["version"], "v1beta1");
    assert_eq!(
        item["versions"][0]["resources"][1]["responseKind"]["kind"],
        "PodMetrics"
    );
    h.stop().await;
}

/// GET with an explicit Accept header (the client library always asks for JSON).
async fn reqwest_like_get(h: &Harness, path: &str, accept: &str) -> Value {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &h.ca_pem()[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let token = aos_client::Kubeconfig::load(&h.kubeconfig)
        .unwrap()
        .token
        .unwrap();
    let req = hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .header("accept", accept)
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// `kubectl top pod` and `kubectl top node` against the server and the test node
/// (skipped when kubectl is not on PATH).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_top_reads_the_metrics_api() {
    if std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        eprintln!("skipped: kubectl is not on PATH");
        return;
    }
    let h = start().await;
    let node = start_node(&h.ca_pem()).await;
    register(&h, node_object("n1", node.addr, Some(&node.pin), "True")).await;
    bound_pod(&h, "default", "p1", Some("n1"), &["app"]).await;
    bound_pod(&h, "default", "two", Some("n1"), &["a", "b"]).await;
    bound_pod(&h, "default", "hang", Some("n1"), &["app"]).await;
    let cache = tempfile::tempdir().unwrap();
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&h.kubeconfig)
            .arg("--cache-dir")
            .arg(cache.path())
            .args(args)
            .env("HOME", cache.path())
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // kubectl's table output as rows of words.
    let rows = |args: &[&str]| -> Vec<Vec<String>> {
        tokio::task::block_in_place(|| kubectl(args))
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    let lines = rows(&["top", "pod"]);
    assert_eq!(
        lines,
        [
            vec!["NAME", "CPU(cores)", "MEMORY(bytes)"],
            vec!["p1", "2m", "22Mi"],
            vec!["two", "6m", "3Mi"],
        ],
        "{lines:?}"
    );
    let lines = rows(&["top", "pod", "two", "--containers"]);
    assert_eq!(
        lines,
        [
            vec!["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
            vec!["two", "a", "5m", "1Mi"],
            vec!["two", "b", "1m", "2Mi"],
        ],
        "{lines:?}"
    );
    let lines = rows(&["top", "node"]);
    assert_eq!(
        lines,
        [
            vec!["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
            vec!["n1", "250m", "12%", "1024Mi", "25%"]
        ],
        "{lines:?}"
    );
    // kubectl get reads the metrics as Tables.
    let lines = rows(&["get", "podmetrics", "p1"]);
    assert_eq!(
        lines,
        [
            vec!["NAME", "CPU", "MEMORY", "WINDOW"],
            vec!["p1", "1234567n", "22904Ki", "5s"]
        ],
        "{lines:?}"
    );
    // kubectl logs through the same path.
    let out = tokio::task::block_in_place(|| kubectl(&["logs", "p1", "--tail=2"]));
    assert_eq!(out, "app line 1\napp line 2\napp line 3\n");
    let out = tokio::task::block_in_place(|| kubectl(&["logs", "pod/two", "-c", "b"]));
    assert_eq!(out, "b line 1\nb line 2\nb line 3\n");
    assert!(
        node.seen
            .log_requests
            .lock()
            .unwrap()
            .contains(&"/containerLogs/default/p1/app?tailLines=2".to_string()),
        "{:?}",
        node.seen.log_requests.lock().unwrap()
    );
    drop(node);
    h.stop().await;
}
