//! The node agent's HTTPS server, end to end over TLS on loopback: client-certificate
//! authentication (the CA, the Common Name), container logs (tail, previous, timestamps,
//! limits, follow that ends when the client goes away or the attempt ends), resource
//! statistics from fixture cgroups, metrics, and the Node fields the agent publishes.
//!
//! No root needed: logs are written with `LogWriter` into the pod directory layout, the
//! runtime is the in-memory fake, and cgroups are a fixture directory.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_apiserver::PinVerifier;
use aos_controller::cluster::Cluster;
use aos_controller::cluster::fake::FakeCluster;
use aos_node::agent::RunningPods;
use aos_node::clock::Clock;
use aos_node::image::{FakeImages, ImageSource};
use aos_node::kinds::NODES;
use aos_node::logs::{LogWriter, Stream2, log_path, pod_dir};
use aos_node::metrics::NodeMetrics;
use aos_node::node::{MachineInfo, SERVING_CERT_ANNOTATION};
use aos_node::probe::{FakeProber, Prober};
use aos_node::runtime::fake::FakeRuntime;
use aos_node::runtime::{ContainerInfo, ContainerRuntime, SandboxConfig};
use aos_node::server::{NodeServer, ServerState, ServingIdentity, cert_sha256};
use aos_node::stats::{CgroupFs, ProcFs, Sampler, StatsCollector};
use aos_node::{NodeAgent, NodeConfig};
use aos_sandbox::cgroup::CgroupVersion;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------
// A test CA and client certificates.

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn new_ca() -> Ca {
    named_ca("test-ca")
}

fn named_ca(name: &str) -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = ca_params(name).self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(ca_params(name), key),
    }
}

struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn client_cert(ca: &Ca, cn: &str) -> ClientCert {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    ClientCert {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    }
}

/// A hex SHA-256 pin as the verifier takes it.
fn pin_bytes(hex_pin: &str) -> [u8; 32] {
    hex::decode(hex_pin)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .expect("a SHA-256 pin is 64 hex digits")
}

// ---------------------------------------------------------------------------------------
// A minimal HTTPS client.

struct Answer {
    status: u16,
    content_type: String,
    body: hyper::body::Incoming,
}

impl Answer {
    async fn text(self) -> String {
        let bytes = self.body.collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}

/// A connection to the server, presenting `cert` (or none); fails where the TLS or HTTP
/// exchange fails.
async fn connect(
    addr: SocketAddr,
    pin: &str,
    cert: Option<&ClientCert>,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier::new(pin_bytes(pin), provider)));
    let config = match cert {
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

/// An error with its causes.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

async fn get_with(
    addr: SocketAddr,
    pin: &str,
    cert: Option<&ClientCert>,
    path: &str,
) -> Result<Answer, String> {
    let mut sender = connect(addr, pin, cert).await?;
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| chain(&e))?;
    Ok(Answer {
        status: resp.status().as_u16(),
        content_type: resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: resp.into_body(),
    })
}

// ---------------------------------------------------------------------------------------
// The server under test.

struct Fixture {
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    addr: SocketAddr,
    pin: String,
    ca: Ca,
    client: ClientCert,
    metrics: Arc<NodeMetrics>,
    runtime: Arc<FakeRuntime>,
    pods: RunningPods,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

const NS: &str = "agent-os";
const POD: &str = "registry-abc";
const UID: &str = "u-1";

fn pod_json() -> Value {
    json!({
        "metadata": {"namespace": NS, "name": POD, "uid": UID},
        "spec": {"nodeName": "n1", "containers": [{"name": "app"}, {"name": "side"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "app", "state": {"running": {}}},
                {"name": "side", "state": {"running": {}}},
            ],
        },
    })
}

fn write_fixture_cgroups(root: &Path, proc: &Path, scale: u64) {
    let w = |rel: String, text: String| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    for (c, cpu) in [("app", 1_000_000_000u64), ("side", 10_000_000)] {
        let base = format!("aos/pod-{UID}/{UID}-{c}-0");
        w(
            format!("cpuacct/{base}/cpuacct.usage"),
            format!("{}\n", cpu * scale),
        );
        w(
            format!("memory/{base}/memory.usage_in_bytes"),
            format!("{}\n", 50 << 20),
        );
        w(
            format!("memory/{base}/memory.stat"),
            format!("total_inactive_file {}\n", 10 << 20),
        );
    }
    std::fs::write(
        proc.join("stat"),
        format!("cpu  {} 0 0 1000 0 0 0 0 0 0\n", 100 * scale),
    )
    .unwrap();
    std::fs::write(
        proc.join("meminfo"),
        "MemTotal: 2000 kB\nMemAvailable: 500 kB\n",
    )
    .unwrap();
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    let ca = new_ca();
    let client = client_cert(&ca, "aos:apiserver");
    let identity = ServingIdentity::ensure(&data_dir.join("node"), "n1", &[]).unwrap();
    let server =
        NodeServer::bind("127.0.0.1:0".parse().unwrap(), &identity, ca.pem.as_bytes()).unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    let pods = RunningPods::default();
    pods.update(&pod_json());
    let runtime = Arc::new(FakeRuntime::new(Clock::new()));

    // Statistics from fixture cgroups: two samples 5 s apart.
    let cg = data_dir.join("cgroup");
    let proc = data_dir.join("proc");
    std::fs::create_dir_all(&proc).unwrap();
    let stats = Arc::new(StatsCollector::new(Sampler::new(
        "n1",
        CgroupFs::new(&cg, CgroupVersion::V1),
        ProcFs::new(&proc, 100),
        "/aos",
    )));
    let t0 = Instant::now();
    write_fixture_cgroups(&cg, &proc, 1);
    stats.sample_at(&pods.refs(), t0, jiff::Timestamp::now());
    write_fixture_cgroups(&cg, &proc, 2);
    stats.sample_at(
        &pods.refs(),
        t0 + Duration::from_secs(5),
        "2026-11-27T08:00:00Z".parse().unwrap(),
    );

    let metrics = Arc::new(NodeMetrics::new());
    let state = Arc::new(ServerState {
        node_name: "n1".into(),
        data_dir: data_dir.clone(),
        pods: pods.clone(),
        runtime: runtime.clone() as Arc<dyn ContainerRuntime>,
        stats,
        metrics: metrics.clone(),
    });
    let cancel = CancellationToken::new();
    let pin = server.cert_sha256().to_owned();
    assert_eq!(pin, identity.sha256());
    let task = tokio::spawn(server.serve(state, cancel.clone()));
    Fixture {
        _dir: dir,
        data_dir,
        addr,
        pin,
        ca,
        client,
        metrics,
        runtime,
        pods,
        cancel,
        task,
    }
}

impl Fixture {
    async fn get(&self, path: &str) -> Answer {
        get_with(self.addr, &self.pin, Some(&self.client), path)
            .await
            .unwrap()
    }

    fn pod_dir(&self) -> std::path::PathBuf {
        pod_dir(&self.data_dir, NS, POD, UID)
    }

    fn writer(&self, container: &str, attempt: u32) -> LogWriter {
        LogWriter::open(&log_path(&self.pod_dir(), container, attempt)).unwrap()
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops")
            .unwrap();
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn logs_tail_previous_timestamps_and_limits() {
    let f = start().await;
    let mut old = f.writer("app", 0);
    old.write(Stream2::Stdout, b"old 1\nold 2\n").unwrap();
    let mut cur = f.writer("app", 1);
    cur.write(Stream2::Stdout, b"a\nb\n").unwrap();
    cur.write(Stream2::Stderr, b"c\n").unwrap();
    f.writer("side", 0)
        .write(Stream2::Stdout, b"side\n")
        .unwrap();

    let base = format!("/containerLogs/{NS}/{POD}");
    let r = f.get(&format!("{base}/app")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/plain; charset=utf-8");
    assert_eq!(r.text().await, "a\nb\nc\n");
    assert_eq!(
        f.get(&format!("{base}/app?tailLines=1")).await.text().await,
        "c\n"
    );
    assert_eq!(
        f.get(&format!("{base}/app?previous=true"))
            .await
            .text()
            .await,
        "old 1\nold 2\n"
    );
    assert_eq!(
        f.get(&format!("{base}/app?limitBytes=3"))
            .await
            .text()
            .await,
        "a\nb"
    );
    let stamped = f
        .get(&format!("{base}/app?timestamps=true"))
        .await
        .text()
        .await;
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 3);
    for (line, want) in lines.iter().zip(["a", "b", "c"]) {
        let (ts, text) = line.split_once(' ').unwrap();
        assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
        assert_eq!(text, want);
    }
    // Everything written is after 2000; nothing after 2100.
    assert_eq!(
        f.get(&format!("{base}/app?sinceTime=2100-01-01T00:00:00Z"))
            .await
            .text()
            .await,
        ""
    );
    assert_eq!(
        f.get(&format!("{base}/app?sinceSeconds=3600"))
            .await
            .text()
            .await,
        "a\nb\nc\n"
    );

    // Errors: one line each, kubectl's wording where it has one.
    let r = f.get(&format!("{base}/side?previous=true")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text().await,
        format!("previous terminated container \"side\" in pod \"{POD}\" not found\n")
    );
    let r = f.get(&format!("{base}/nope")).await;
    assert_eq!(r.status, 404);
    assert!(r.text().await.contains("container \"nope\" not found"));
    let r = f.get(&format!("/containerLogs/{NS}/ghost/app")).await;
    assert_eq!(r.status, 404);
    assert!(r.text().await.contains("ghost"));
    let r = f.get(&format!("{base}/app?tailLines=-3")).await;
    assert_eq!(r.status, 400);
    assert!(r.text().await.contains("tailLines"));
    let r = f
        .get(&format!(
            "{base}/app?sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(f.get("/containerLogs/x").await.status, 404);

    // A pod deleted from the node: its logs are no longer served.
    f.pods.remove(UID);
    assert_eq!(f.get(&format!("{base}/app")).await.status, 404);
    f.stop().await;
}

#[tokio::test]
async fn follow_streams_new_lines_and_ends_when_the_client_goes() {
    let f = start().await;
    let mut w = f.writer("app", 0);
    w.write(Stream2::Stdout, b"before\n").unwrap();

    let mut sender = connect(f.addr, &f.pin, Some(&f.client)).await.unwrap();
    let req = http::Request::get(format!(
        "/containerLogs/{NS}/{POD}/app?follow=true&tailLines=1"
    ))
    .header("host", "localhost")
    .body(Empty::<Bytes>::new())
    .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none(), "chunked");
    let mut body = resp.into_body();
    let mut next = async || -> String {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a chunk in time")
            .expect("the stream is open")
            .unwrap();
        String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
    };
    assert_eq!(next().await, "before\n");
    assert_eq!(f.metrics.log_streams(), 1);
    w.write(Stream2::Stdout, b"after\n").unwrap();
    assert_eq!(next().await, "after\n");

    // The client goes away: the server's stream (and its file polling) ends with it.
    drop(body);
    drop(sender);
    wait_until("the follow to end", || f.metrics.log_streams() == 0).await;
    f.stop().await;
}

#[tokio::test]
async fn follow_ends_when_the_attempt_ends() {
    let f = start().await;
    let mut w = f.writer("app", 0);
    w.write(Stream2::Stdout, b"one\n").unwrap();
    f.runtime.adopt(
        SandboxConfig {
            uid: UID.into(),
            namespace: NS.into(),
            name: POD.into(),
            hostname: POD.into(),
            memory_volumes: Vec::new(),
        },
        vec![ContainerInfo {
            id: format!("{UID}-app-0"),
            name: "app".into(),
            attempt: 0,
            pid: 4242,
            started_at: jiff::Timestamp::now(),
            finished_at: None,
            exit: None,
            stop_signal: 15,
            image_id: String::new(),
            log_path: log_path(&f.pod_dir(), "app", 0),
        }],
    );
    let r = f
        .get(&format!("/containerLogs/{NS}/{POD}/app?follow=true"))
        .await;
    assert_eq!(r.status, 200);
    let mut body = r.body;
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "one\n");
    // Its last words, then the exit: the body carries them and ends.
    w.write(Stream2::Stdout, b"bye\n").unwrap();
    f.runtime.exit("app", 0, None, false);
    let rest = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("the follow ends after the container exits")
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "bye\n");
    wait_until("the stream count to drop", || f.metrics.log_streams() == 0).await;
    f.stop().await;
}

#[tokio::test]
async fn follow_ends_on_shutdown() {
    let f = start().await;
    f.writer("app", 0).write(Stream2::Stdout, b"x\n").unwrap();
    let r = f
        .get(&format!("/containerLogs/{NS}/{POD}/app?follow=true"))
        .await;
    let mut body = r.body;
    body.frame().await.unwrap().unwrap();
    let metrics = f.metrics.clone();
    f.stop().await;
    // The body ends (cleanly or cut): it does not hang.
    let _ = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .expect("the body ends with the server");
    assert_eq!(metrics.log_streams(), 0);
}

#[tokio::test]
async fn stats_metrics_and_health() {
    let f = start().await;
    let r = f.get("/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text().await, "ok\n");

    let r = f.get("/stats/resource").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json");
    let v: Value = serde_json::from_str(&r.text().await).unwrap();
    assert_eq!(
        v,
        json!({
            "node": {
                "name": "n1",
                "timestamp": "2026-11-27T08:00:00Z",
                "windowSeconds": 5.0,
                // 100 ticks at 100 Hz in 5 s.
                "cpuNanoCores": 200_000_000u64,
                "memoryWorkingSetBytes": 1500 * 1024,
            },
            "pods": [{
                "namespace": NS,
                "name": POD,
                "uid": UID,
                "timestamp": "2026-11-27T08:00:00Z",
                "windowSeconds": 5.0,
                "containers": [
                    {"name": "app", "cpuNanoCores": 200_000_000u64, "memoryWorkingSetBytes": 40u64 << 20},
                    {"name": "side", "cpuNanoCores": 2_000_000u64, "memoryWorkingSetBytes": 40u64 << 20},
                ],
            }],
        })
    );

    f.metrics.container_started(0);
    f.metrics.container_started(1);
    let r = f.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/plain; version=0.0.4"));
    let text = r.text().await;
    for line in [
        "aos_node_pods{phase=\"Running\"} 1",
        "aos_node_containers_running 2",
        "aos_node_container_starts_total 2",
        "aos_node_container_restarts_total 1",
        "aos_node_pod_start_seconds_count 0",
        "aos_node_server_requests_total{path=\"/stats/resource\",code=\"200\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("# TYPE aos_node_probe_results_total counter"));
    f.stop().await;
}

#[tokio::test]
async fn clients_without_the_right_certificate_are_refused() {
    let f = start().await;
    // No certificate: the handshake (or the first exchange after it) fails.
    let r = get_with(f.addr, &f.pin, None, "/healthz").await;
    let err = r.err().expect("no client certificate must be refused");
    assert!(err.contains("CertificateRequired"), "{err}");

    // A certificate from another CA, even with the right name; and from an impostor CA that
    // has the cluster CA's name but not its key.
    for (ca, alert) in [
        (named_ca("other-ca"), "UnknownCA"),
        (new_ca(), "DecryptError"),
    ] {
        let stranger = client_cert(&ca, "aos:apiserver");
        let r = get_with(f.addr, &f.pin, Some(&stranger), "/healthz").await;
        let err = r
            .err()
            .expect("a certificate of another CA must be refused");
        assert!(err.contains(alert), "{err}");
    }

    // The right CA, another name: authenticated, not authorized.
    let admin = client_cert(&f.ca, "admin");
    let r = get_with(f.addr, &f.pin, Some(&admin), "/metrics")
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert!(r.text().await.starts_with("forbidden"));
    let r = get_with(
        f.addr,
        &f.pin,
        Some(&admin),
        &format!("/containerLogs/{NS}/{POD}/app"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);

    // A plain-HTTP client gets nothing.
    let mut tcp = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("ok"));
    f.stop().await;
}

fn agent(config: NodeConfig, cluster: Arc<FakeCluster>) -> NodeAgent {
    let clock = Clock::new();
    NodeAgent::with_parts(
        config,
        cluster as Arc<dyn Cluster>,
        Arc::new(FakeRuntime::new(clock)) as Arc<dyn ContainerRuntime>,
        Arc::new(FakeImages::default()) as Arc<dyn ImageSource>,
        Arc::new(FakeProber::default()) as Arc<dyn Prober>,
        clock,
        MachineInfo::read(),
    )
}

#[tokio::test]
async fn agent_publishes_its_endpoint_and_pin_and_keeps_them_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca();
    let cluster = FakeCluster::new();
    let mut config = NodeConfig::new("n1", dir.path(), "/bin/false");
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.node_ip = Some("192.0.2.7".parse().unwrap());
    config.client_ca_pem = Some(ca.pem.clone().into_bytes());

    let node_fields = async |want_port: u16| -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(n) = cluster.object(&NODES, None, "n1")
                && n.pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
                    == Some(&json!(want_port))
                && n.pointer("/metadata/annotations").is_some()
            {
                return n;
            }
            assert!(Instant::now() < deadline, "node not published");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    let mut a = agent(config.clone(), cluster.clone());
    let addr = a.bind().unwrap().unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(a.run(cancel.clone()));
    let node = node_fields(addr.port()).await;
    let pin = node["metadata"]["annotations"][SERVING_CERT_ANNOTATION]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(pin.len(), 64);
    let der = std::fs::read(dir.path().join("node/serving.crt")).unwrap();
    let der = rustls_pemfile::certs(&mut der.as_slice())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(pin, cert_sha256(&der));
    // The listen address is specific: it is the InternalIP the API server calls.
    let internal: Vec<&Value> = node["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "InternalIP")
        .collect();
    assert_eq!(internal.len(), 1);
    assert_eq!(internal[0]["address"], "127.0.0.1");
    // The published endpoint answers with the published certificate.
    let client = client_cert(&ca, "aos:apiserver");
    let r = get_with(addr, &pin, Some(&client), "/healthz")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    cancel.cancel();
    task.await.unwrap();

    // A restart on another port: the Node follows, the certificate stays.
    let mut a = agent(config.clone(), cluster.clone());
    let addr2 = a.bind().unwrap().unwrap();
    assert_ne!(addr2.port(), addr.port());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(a.run(cancel.clone()));
    let node = node_fields(addr2.port()).await;
    assert_eq!(
        node["metadata"]["annotations"][SERVING_CERT_ANNOTATION],
        pin
    );
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_taken_port_is_a_start_up_error_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut config = NodeConfig::new("n1", dir.path(), "/bin/false");
    config.listen = addr;
    config.client_ca_pem = Some(new_ca().pem.into_bytes());
    let mut a = agent(config, FakeCluster::new());
    let err = a.bind().unwrap_err().to_string();
    assert!(err.contains(&addr.to_string()), "{err}");

    // Without a client CA nothing is served and nothing is bound.
    let mut config = NodeConfig::new("n1", dir.path(), "/bin/false");
    config.listen = addr;
    let mut a = agent(config, FakeCluster::new());
    assert_eq!(a.bind().unwrap(), None);
}
