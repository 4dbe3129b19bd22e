//! Test support: local upstream servers, snapshot builders and a client.

#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aos_gateway::{Gateway, GatewayConfig, GatewayHandle, Snapshot, SnapshotSender};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What an upstream does with its n-th request (0-based): status and delay.
pub type Behavior = Arc<dyn Fn(u64, &Request<Incoming>) -> (u16, Duration) + Send + Sync>;

pub fn ok() -> Behavior {
    Arc::new(|_, _| (200, Duration::ZERO))
}

pub fn status(code: u16) -> Behavior {
    Arc::new(move |_, _| (code, Duration::ZERO))
}

pub fn slow(d: Duration) -> Behavior {
    Arc::new(move |_, _| (200, d))
}

/// A local HTTP/1.1 + h2c server that answers with its name.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Upstream {
    pub async fn start(name: &str, behavior: Behavior) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (h, s, n) = (hits.clone(), stop.clone(), name.to_string());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = s.cancelled() => return,
                    r = listener.accept() => r.unwrap(),
                };
                let (h, n, b, s2) = (h.clone(), n.clone(), behavior.clone(), s.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let i = h.fetch_add(1, Ordering::SeqCst);
                        let (code, delay) = b(i, &req);
                        let body = format!("{n} {} {}", req.method(), req.uri().path());
                        let echo: Vec<(String, String)> = req
                            .headers()
                            .iter()
                            .filter(|(k, _)| k.as_str().starts_with("x-"))
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        // Bodies: the answer ends with the number of bytes received.
                        let count_body = req.method() == http::Method::POST;
                        let incoming = req.into_body();
                        async move {
                            let mut body = body;
                            if count_body {
                                let n = match incoming.collect().await {
                                    Ok(b) => b.to_bytes().len().to_string(),
                                    Err(e) => format!("error {e}"),
                                };
                                body.push_str(&format!(" len={n}"));
                            }
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let mut resp = Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() = StatusCode::from_u16(code).unwrap();
                            for (k, v) in echo {
                                resp.headers_mut().insert(
                                    http::HeaderName::from_bytes(format!("echo-{k}").as_bytes())
                                        .unwrap(),
                                    v.parse().unwrap(),
                                );
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .into_owned();
                    tokio::select! {
                        _ = conn => {}
                        _ = s2.cancelled() => {}
                    }
                });
            }
        });
        Upstream {
            name: name.to_string(),
            addr,
            hits,
            stop,
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stop accepting and close every connection.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn service(ns: &str, name: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": port, "targetPort": port}], "selector": {"app": name}},
    })
}

/// Endpoints with one subset per upstream (each on its own port), each naming pod `name-i`.
pub fn endpoints(ns: &str, name: &str, ups: &[&Upstream]) -> Value {
    let subsets: Vec<Value> = ups
        .iter()
        .map(|u| {
            json!({
                "addresses": [{"ip": u.addr.ip().to_string(), "targetRef": {"kind": "Pod", "name": u.name, "namespace": ns}}],
                "ports": [{"name": "http", "port": u.addr.port()}],
            })
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns},
        "subsets": subsets,
    })
}

pub fn pod(ns: &str, name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7c9b4f", "controller": true, "uid": "x"}]},
    })
}

pub fn virtual_service(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    })
}

pub fn destination_rule(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    })
}

pub fn snapshot(objects: Vec<Value>) -> Snapshot {
    let (snap, other) = Snapshot::from_objects(objects);
    assert!(other.is_empty(), "unexpected objects: {other:?}");
    snap
}

/// A running gateway on free ports, fed by a channel.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub handle: GatewayHandle,
    pub sender: SnapshotSender,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), aos_gateway::GatewayError>>,
    generation: u64,
}

impl TestGateway {
    pub async fn start(snap: Snapshot) -> TestGateway {
        Self::start_with(
            snap,
            GatewayConfig {
                drain_grace_seconds: 5,
                ..GatewayConfig::default()
            },
        )
        .await
    }

    /// Start with `config`, on free ports.
    pub async fn start_with(snap: Snapshot, config: GatewayConfig) -> TestGateway {
        let config = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            ..config
        };
        let gw = Gateway::bind(config).await.unwrap();
        let (addr, admin, handle) = (gw.local_addr(), gw.admin_addr(), gw.handle());
        let (sender, source) = aos_gateway::channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gw.serve(source, shutdown.clone()));
        sender.send(snap);
        handle.wait_for_generation(1).await;
        TestGateway {
            addr,
            admin,
            handle,
            sender,
            shutdown,
            task,
            generation: 1,
        }
    }

    /// Publish a snapshot and wait until it is in use.
    pub async fn apply(&mut self, snap: Snapshot) {
        self.sender.send(snap);
        self.generation += 1;
        self.handle.wait_for_generation(self.generation).await;
    }
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

/// An answer: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

pub async fn send(c: &TestClient, addr: SocketAddr, req: Request<Full<Bytes>>) -> Answer {
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = format!("http://{addr}{pq}").parse().unwrap();
    let resp = c.request(Request::from_parts(parts, body)).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(c: &TestClient, addr: SocketAddr, host: &str, path: &str) -> Answer {
    let req = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(c, addr, req).await
}

/// Send `n` GETs with `concurrency` in flight; returns the answers' statuses and bodies.
pub async fn load(
    addr: SocketAddr,
    host: &str,
    path: &str,
    n: usize,
    concurrency: usize,
) -> Vec<(u16, String)> {
    let c = client();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (c, next, host, path) = (c.clone(), next.clone(), host.to_string(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while (next.fetch_add(1, Ordering::SeqCst) as usize) < n {
                let a = get(&c, addr, &host, &path).await;
                out.push((a.status, a.body));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// GET on the admin port.
pub async fn admin_get(admin: SocketAddr, path: &str) -> Answer {
    let c: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = c
        .request(
            Request::get(format!("http://{admin}{path}"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
