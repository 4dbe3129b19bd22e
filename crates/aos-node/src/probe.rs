//! Container probes as the kubelet runs them: startup, liveness and readiness, by httpGet,
//! tcpSocket or exec, with `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`,
//! `successThreshold` and `failureThreshold`.
//!
//! Each probe of a running container is a task that writes its result into the container's
//! [`ProbeState`] and wakes the pod worker when the result changes. Liveness and readiness wait
//! for the startup probe to succeed; a failed liveness or startup probe stops probing until the
//! worker restarts the container.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::metrics::NodeMetrics;
use crate::runtime::ContainerRuntime;

/// How much longer than its timeout an exec probe waits for the runtime's answer.
const EXEC_ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// `startupProbe`.
    Startup,
    /// `livenessProbe`.
    Liveness,
    /// `readinessProbe`.
    Readiness,
}

impl ProbeKind {
    /// The name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Liveness => "liveness",
            Self::Readiness => "readiness",
        }
    }
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// It passed.
    Success,
    /// It failed, and why.
    Failure(String),
    /// It could not be run (the result is ignored).
    Unknown(String),
}

/// How to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// `httpGet`: a GET whose status is 200–399.
    Http {
        /// `host` (the pod IP when empty).
        host: String,
        /// The port.
        port: u16,
        /// The path with query.
        path: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// `tcpSocket`: a connection that opens.
    Tcp {
        /// `host` (the pod IP when empty).
        host: String,
        /// The port.
        port: u16,
    },
    /// `exec`: a command that exits 0.
    Exec {
        /// The command.
        command: Vec<String>,
    },
}

/// A probe's settings with Kubernetes' defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// What to do.
    pub action: ProbeAction,
    /// `initialDelaySeconds` (0).
    pub initial_delay: Duration,
    /// `periodSeconds` (10).
    pub period: Duration,
    /// `timeoutSeconds` (1).
    pub timeout: Duration,
    /// `successThreshold` (1).
    pub success_threshold: u32,
    /// `failureThreshold` (3).
    pub failure_threshold: u32,
}

/// A probe the agent cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No handler, or one the agent does not implement (grpc).
    #[error("{0} probe has no supported handler (httpGet, tcpSocket or exec)")]
    NoHandler(&'static str),
    /// A named port not among the container's ports.
    #[error("{kind} probe: port {port:?} is not a named port of the container")]
    UnknownPort {
        /// Which probe.
        kind: &'static str,
        /// The name.
        port: String,
    },
}

fn resolve_port(port: &IntOrString, c: &Container, kind: ProbeKind) -> Result<u16, ProbeError> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| ProbeError::UnknownPort {
            kind: kind.name(),
            port: p.to_string(),
        }),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| ProbeError::UnknownPort {
                    kind: kind.name(),
                    port: name.clone(),
                })
        }
    }
}

fn secs(v: Option<i32>, default: u64, min: u64) -> Duration {
    Duration::from_secs(v.map_or(default, |v| (v.max(0) as u64).max(min)))
}

impl ProbeSpec {
    /// Read a probe of container `c`.
    pub fn from_k8s(p: &Probe, c: &Container, kind: ProbeKind) -> Result<Self, ProbeError> {
        let action = if let Some(h) = &p.http_get {
            let mut path = h.path.clone().unwrap_or_else(|| "/".to_owned());
            if !path.starts_with('/') {
                path.insert(0, '/');
            }
            ProbeAction::Http {
                host: h.host.clone().unwrap_or_default(),
                port: resolve_port(&h.port, c, kind)?,
                path,
                headers: h
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            }
        } else if let Some(t) = &p.tcp_socket {
            ProbeAction::Tcp {
                host: t.host.clone().unwrap_or_default(),
                port: resolve_port(&t.port, c, kind)?,
            }
        } else if let Some(e) = &p.exec {
            ProbeAction::Exec {
                command: e.command.clone().unwrap_or_default(),
            }
        } else {
            return Err(ProbeError::NoHandler(kind.name()));
        };
        Ok(Self {
            action,
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            // Liveness and startup need exactly 1 success; validation enforces it.
            success_threshold: match kind {
                ProbeKind::Readiness => p.success_threshold.map_or(1, |v| v.max(1) as u32),
                _ => 1,
            },
            failure_threshold: p.failure_threshold.map_or(3, |v| v.max(1) as u32),
        })
    }
}

/// Where a probe goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The pod uid.
    pub pod_uid: String,
    /// The container id.
    pub container_id: String,
    /// The container name.
    pub container_name: String,
    /// The pod IP (the default host).
    pub pod_ip: String,
}

/// Runs one probe.
#[async_trait]
pub trait Prober: Send + Sync + 'static {
    /// Probe `target` once; never longer than `timeout`.
    async fn probe(
        &self,
        target: &ProbeTarget,
        action: &ProbeAction,
        timeout: Duration,
    ) -> ProbeResult;
}

/// The real prober: HTTP and TCP from the node, exec through the runtime.
pub struct NetProber {
    runtime: Arc<dyn ContainerRuntime>,
}

impl std::fmt::Debug for NetProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetProber").finish_non_exhaustive()
    }
}

impl NetProber {
    /// A prober that execs through `runtime`.
    pub fn new(runtime: Arc<dyn ContainerRuntime>) -> Self {
        Self { runtime }
    }
}

/// One HTTP GET, status 200–399 is a success (redirects are not followed: a 3xx passes, as the
/// kubelet counts a redirect to another host).
pub async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> ProbeResult {
    let addr = format!("{host}:{port}");
    let mut stream = match tokio::net::TcpStream::connect(&addr).await {
        Ok(s) => s,
        Err(e) => return ProbeResult::Failure(format!("Get \"http://{addr}{path}\": {e}")),
    };
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if let Err(e) = stream.write_all(req.as_bytes()).await {
        return ProbeResult::Failure(format!("Get \"http://{addr}{path}\": {e}"));
    }
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // The status line is all that matters.
    while !buf.contains(&b'\n') && buf.len() < 8192 {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return ProbeResult::Failure(format!("Get \"http://{addr}{path}\": {e}")),
        }
    }
    let line = String::from_utf8_lossy(&buf);
    let code = line
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if (200..400).contains(&c) => ProbeResult::Success,
        Some(c) => ProbeResult::Failure(format!("HTTP probe failed with statuscode: {c}")),
        None => ProbeResult::Failure(format!(
            "Get \"http://{addr}{path}\": malformed HTTP response"
        )),
    }
}

#[async_trait]
impl Prober for NetProber {
    async fn probe(
        &self,
        target: &ProbeTarget,
        action: &ProbeAction,
        timeout: Duration,
    ) -> ProbeResult {
        let host = |h: &str| {
            if h.is_empty() {
                target.pod_ip.clone()
            } else {
                h.to_owned()
            }
        };
        let work = async {
            match action {
                ProbeAction::Http {
                    host: h,
                    port,
                    path,
                    headers,
                } => http_get(&host(h), *port, path, headers).await,
                ProbeAction::Tcp { host: h, port } => {
                    let addr = format!("{}:{port}", host(h));
                    match tokio::net::TcpStream::connect(&addr).await {
                        Ok(_) => ProbeResult::Success,
                        Err(e) => ProbeResult::Failure(format!("dial tcp {addr}: {e}")),
                    }
                }
                ProbeAction::Exec { command } => {
                    match self
                        .runtime
                        .exec(&target.pod_uid, &target.container_id, command, timeout)
                        .await
                    {
                        Ok(o) if o.timed_out => ProbeResult::Failure(format!(
                            "command {command:?} timed out after {}s",
                            timeout.as_secs()
                        )),
                        Ok(o) if o.exit_code == 0 => ProbeResult::Success,
                        Ok(o) => ProbeResult::Failure(format!(
                            "command {command:?} exited with {}: {}",
                            o.exit_code,
                            o.output.trim()
                        )),
                        Err(e) => ProbeResult::Unknown(e.to_string()),
                    }
                }
            }
        };
        // The runtime kills an exec at `timeout` and says so; the margin lets that answer
        // arrive. Network probes end at `timeout`.
        let limit = match action {
            ProbeAction::Exec { .. } => timeout.saturating_add(EXEC_ANSWER_MARGIN),
            _ => timeout,
        };
        match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => ProbeResult::Failure(format!("probe timed out after {}s", timeout.as_secs())),
        }
    }
}

/// What the probes of one running container say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeState {
    /// The startup probe passed (or there is none).
    pub started: bool,
    /// The readiness probe passes (or there is none and the container started).
    pub ready: bool,
    /// The liveness or startup probe failed: the container must be restarted.
    pub failed: Option<String>,
}

/// The probes of one container instance; dropping it stops them.
#[derive(Debug)]
pub struct ContainerProbes {
    /// The container id they belong to.
    pub container_id: String,
    state: Arc<Mutex<ProbeState>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Probes of a container, read from its spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerProbeSpecs {
    /// `startupProbe`.
    pub startup: Option<ProbeSpec>,
    /// `livenessProbe`.
    pub liveness: Option<ProbeSpec>,
    /// `readinessProbe`.
    pub readiness: Option<ProbeSpec>,
}

impl ContainerProbeSpecs {
    /// Read the probes of `c`.
    pub fn of(c: &Container) -> Result<Self, ProbeError> {
        let read =
            |p: &Option<Probe>, k| p.as_ref().map(|p| ProbeSpec::from_k8s(p, c, k)).transpose();
        Ok(Self {
            startup: read(&c.startup_probe, ProbeKind::Startup)?,
            liveness: read(&c.liveness_probe, ProbeKind::Liveness)?,
            readiness: read(&c.readiness_probe, ProbeKind::Readiness)?,
        })
    }
}

impl ContainerProbes {
    /// Start the probes of a container that started at `started_at`; `notify` wakes the pod
    /// worker when a result changes.
    pub fn start(
        specs: &ContainerProbeSpecs,
        target: ProbeTarget,
        started_at: jiff::Timestamp,
        clock: Clock,
        prober: Arc<dyn Prober>,
        notify: Arc<Notify>,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        let state = Arc::new(Mutex::new(ProbeState {
            started: specs.startup.is_none(),
            ready: specs.readiness.is_none(),
            failed: None,
        }));
        // Started-ness changes are seen by the other probes through this channel.
        let (started_tx, started_rx) = tokio::sync::watch::channel(specs.startup.is_none());
        let mut tasks = Vec::new();
        let kinds = [
            (ProbeKind::Startup, &specs.startup),
            (ProbeKind::Liveness, &specs.liveness),
            (ProbeKind::Readiness, &specs.readiness),
        ];
        for (kind, spec) in kinds {
            let Some(spec) = spec.clone() else { continue };
            let w = ProbeWorker {
                kind,
                spec,
                target: target.clone(),
                started_at,
                clock,
                prober: prober.clone(),
                state: state.clone(),
                notify: notify.clone(),
                metrics: metrics.clone(),
                started_tx: started_tx.clone(),
                started_rx: started_rx.clone(),
            };
            tasks.push(tokio::spawn(w.run()));
        }
        Self {
            container_id: target.container_id,
            state,
            tasks,
        }
    }

    /// The current results.
    pub fn state(&self) -> ProbeState {
        self.state
            .lock()
            .expect("probe state lock poisoned")
            .clone()
    }
}

struct ProbeWorker {
    kind: ProbeKind,
    spec: ProbeSpec,
    target: ProbeTarget,
    started_at: jiff::Timestamp,
    clock: Clock,
    prober: Arc<dyn Prober>,
    state: Arc<Mutex<ProbeState>>,
    notify: Arc<Notify>,
    metrics: Arc<NodeMetrics>,
    started_tx: tokio::sync::watch::Sender<bool>,
    started_rx: tokio::sync::watch::Receiver<bool>,
}

impl ProbeWorker {
    async fn run(mut self) {
        // Nothing before the initial delay, counted from the container's start.
        let first = self.started_at
            + jiff::SignedDuration::try_from(self.spec.initial_delay).unwrap_or_default();
        // `started_at` is the shim's wall clock: never wait longer than the delay itself, even
        // if that clock is ahead of the agent's.
        tokio::time::sleep(self.clock.until(first).min(self.spec.initial_delay)).await;
        if self.kind != ProbeKind::Startup {
            // Liveness and readiness begin once the startup probe passed.
            if self.started_rx.wait_for(|s| *s).await.is_err() {
                return;
            }
        }
        let mut last: Option<bool> = None;
        let mut run = 0u32;
        let mut tick = tokio::time::interval(self.spec.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let result = self
                .prober
                .probe(&self.target, &self.spec.action, self.spec.timeout)
                .await;
            self.metrics.probe_result(self.kind, &result);
            let (ok, message) = match result {
                ProbeResult::Success => (true, String::new()),
                ProbeResult::Failure(m) => (false, m),
                ProbeResult::Unknown(m) => {
                    tracing::debug!(container = %self.target.container_name, probe = self.kind.name(), error = %m, "probe could not run");
                    continue;
                }
            };
            if last == Some(ok) {
                run = run.saturating_add(1);
            } else {
                last = Some(ok);
                run = 1;
            }
            let threshold = if ok {
                self.spec.success_threshold
            } else {
                self.spec.failure_threshold
            };
            if run < threshold {
                continue;
            }
            let done = self.apply(ok, message);
            if done {
                return;
            }
        }
    }

    /// Record a result that crossed its threshold; `true` when probing stops.
    fn apply(&mut self, ok: bool, message: String) -> bool {
        let mut changed = false;
        let mut stop = false;
        {
            let mut s = self.state.lock().expect("probe state lock poisoned");
            match (self.kind, ok) {
                (ProbeKind::Startup, true) => {
                    changed = !s.started;
                    s.started = true;
                    if s.ready && changed {
                        // Readiness without a probe follows startedness.
                    }
                    stop = true;
                }
                (ProbeKind::Startup, false) | (ProbeKind::Liveness, false) => {
                    tracing::info!(
                        container = %self.target.container_name,
                        probe = self.kind.name(),
                        %message,
                        "probe failed; the container will be restarted"
                    );
                    s.failed = Some(format!(
                        "Container {} failed {} probe, will be restarted: {message}",
                        self.target.container_name,
                        self.kind.name()
                    ));
                    changed = true;
                    stop = true;
                }
                (ProbeKind::Liveness, true) => {}
                (ProbeKind::Readiness, r) => {
                    if s.ready != r {
                        tracing::debug!(container = %self.target.container_name, ready = r, %message, "readiness changed");
                        s.ready = r;
                        changed = true;
                    }
                }
            }
        }
        if self.kind == ProbeKind::Startup && ok {
            let _ = self.started_tx.send(true);
        }
        if changed {
            self.notify.notify_one();
        }
        stop
    }
}

/// A prober whose answers the test sets per container name and probe action.
#[derive(Debug, Default)]
pub struct FakeProber {
    results: Mutex<std::collections::BTreeMap<(String, String), ProbeResult>>,
    calls: Mutex<Vec<(String, jiff::Timestamp)>>,
}

fn action_key(a: &ProbeAction) -> String {
    match a {
        ProbeAction::Http { path, port, .. } => format!("http:{port}{path}"),
        ProbeAction::Tcp { port, .. } => format!("tcp:{port}"),
        ProbeAction::Exec { command } => format!("exec:{}", command.join(" ")),
    }
}

impl FakeProber {
    /// Answer probes of container `name` with action key `key` (`http:3000/ready`,
    /// `tcp:80`, `exec:cat /x`) with `result`; unset keys succeed.
    pub fn set(&self, name: &str, key: &str, result: ProbeResult) {
        self.results
            .lock()
            .expect("fake prober lock poisoned")
            .insert((name.to_owned(), key.to_owned()), result);
    }

    /// How many probes ran for `name`.
    pub fn calls(&self, name: &str) -> usize {
        self.calls
            .lock()
            .expect("fake prober lock poisoned")
            .iter()
            .filter(|(n, _)| n == name)
            .count()
    }
}

#[async_trait]
impl Prober for FakeProber {
    async fn probe(
        &self,
        target: &ProbeTarget,
        action: &ProbeAction,
        _timeout: Duration,
    ) -> ProbeResult {
        self.calls
            .lock()
            .expect("fake prober lock poisoned")
            .push((target.container_name.clone(), jiff::Timestamp::now()));
        self.results
            .lock()
            .expect("fake prober lock poisoned")
            .get(&(target.container_name.clone(), action_key(action)))
            .cloned()
            .unwrap_or(ProbeResult::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn spec_defaults_and_named_ports() {
        let c = container(json!({
            "name": "a",
            "ports": [{"name": "http", "containerPort": 3000}],
            "readinessProbe": {"httpGet": {"path": "ready", "port": "http"}, "successThreshold": 2},
            "livenessProbe": {"tcpSocket": {"port": 3000}, "periodSeconds": 5, "failureThreshold": 1},
        }));
        let s = ContainerProbeSpecs::of(&c).unwrap();
        let r = s.readiness.unwrap();
        assert_eq!(
            r.action,
            ProbeAction::Http {
                host: String::new(),
                port: 3000,
                path: "/ready".into(),
                headers: vec![]
            }
        );
        assert_eq!(
            (r.period, r.timeout),
            (Duration::from_secs(10), Duration::from_secs(1))
        );
        assert_eq!((r.success_threshold, r.failure_threshold), (2, 3));
        let l = s.liveness.unwrap();
        assert_eq!(l.period, Duration::from_secs(5));
        assert_eq!(l.failure_threshold, 1);
        let bad = container(json!({"name": "a", "livenessProbe": {"httpGet": {"port": "nope"}}}));
        assert!(ContainerProbeSpecs::of(&bad).is_err());
        let none = container(json!({"name": "a", "livenessProbe": {"periodSeconds": 3}}));
        assert_eq!(
            ContainerProbeSpecs::of(&none),
            Err(ProbeError::NoHandler("liveness"))
        );
    }

    fn target() -> ProbeTarget {
        ProbeTarget {
            pod_uid: "u".into(),
            container_id: "c1".into(),
            container_name: "app".into(),
            pod_ip: "127.0.0.1".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_delay_and_startup_gate() {
        let c = container(json!({
            "name": "app",
            "startupProbe": {"tcpSocket": {"port": 1}, "periodSeconds": 1, "failureThreshold": 30},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 2}, "initialDelaySeconds": 5, "periodSeconds": 2, "successThreshold": 2, "failureThreshold": 2},
            "livenessProbe": {"httpGet": {"path": "/health", "port": 2}, "periodSeconds": 10, "failureThreshold": 3},
        }));
        let specs = ContainerProbeSpecs::of(&c).unwrap();
        let prober = Arc::new(FakeProber::default());
        prober.set("app", "tcp:1", ProbeResult::Failure("refused".into()));
        let notify = Arc::new(Notify::new());
        let clock = Clock::new();
        let probes = ContainerProbes::start(
            &specs,
            target(),
            clock.now(),
            clock,
            prober.clone(),
            notify.clone(),
            Arc::default(),
        );
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let s = probes.state();
        assert!(!s.started && !s.ready && s.failed.is_none());
        // Startup passes at t=4; readiness starts at its initial delay (t=5) and needs two
        // successes 2 s apart.
        prober.set("app", "tcp:1", ProbeResult::Success);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(probes.state().started);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(!probes.state().ready, "one success is not enough");
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(probes.state().ready);
        // Two failures make it unready.
        prober.set("app", "http:2/ready", ProbeResult::Failure("500".into()));
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(probes.state().ready);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(!probes.state().ready);
        // Liveness: three failures 10 s apart.
        prober.set(
            "app",
            "http:2/health",
            ProbeResult::Failure("HTTP probe failed with statuscode: 500".into()),
        );
        tokio::time::sleep(Duration::from_secs(19)).await;
        assert!(probes.state().failed.is_none());
        tokio::time::sleep(Duration::from_secs(12)).await;
        let failed = probes.state().failed.unwrap();
        assert!(failed.contains("failed liveness probe"), "{failed}");
    }

    #[tokio::test]
    async fn http_and_tcp_against_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let status = if req.starts_with("GET /ok ") {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        assert_eq!(
            http_get("127.0.0.1", port, "/ok", &[]).await,
            ProbeResult::Success
        );
        match http_get("127.0.0.1", port, "/bad", &[]).await {
            ProbeResult::Failure(m) => assert!(m.contains("503"), "{m}"),
            other => panic!("{other:?}"),
        }
        let runtime = Arc::new(crate::runtime::fake::FakeRuntime::new(Clock::new()));
        let prober = NetProber::new(runtime);
        let t = target();
        let tcp = ProbeAction::Tcp {
            host: String::new(),
            port,
        };
        assert_eq!(
            prober.probe(&t, &tcp, Duration::from_secs(1)).await,
            ProbeResult::Success
        );
        // A closed port fails.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let tcp = ProbeAction::Tcp {
            host: String::new(),
            port: closed_port,
        };
        assert!(matches!(
            prober.probe(&t, &tcp, Duration::from_secs(1)).await,
            ProbeResult::Failure(_)
        ));
    }
}
