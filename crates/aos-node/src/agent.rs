//! The node agent: registers the Node, heartbeats, watches the pods bound to it through the
//! public API and runs one [`PodWorker`] per pod.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aos_controller::cluster::{Cluster, ListParams};
use aos_controller::runtime::{Informer, InformerEvent};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::image::{ImageSource, StoreImages};
use crate::kinds::PODS;
use crate::metrics::{NodeMetrics, PodGauges};
use crate::node::{MachineInfo, NodeRegistrar};
use crate::pod::{Ctx, PodWorker};
use crate::probe::{NetProber, Prober};
use crate::runtime::shim::ShimRuntime;
use crate::runtime::{ContainerRuntime, RuntimeError};
use crate::server::{NodeServer, ServerError, ServerState, ServingIdentity};
use crate::stats::{CgroupFs, PodRef, ProcFs, Sampler, StatsCollector};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The image store could not be opened.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The runtime could not be set up.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The HTTPS server (logs, stats, metrics) could not start.
    #[error("node agent server: {0}")]
    Server(#[from] ServerError),
}

/// How long shutdown waits for the pod workers.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);

/// The node agent.
pub struct NodeAgent {
    cluster: Arc<dyn Cluster>,
    runtime: Arc<dyn ContainerRuntime>,
    images: Arc<dyn ImageSource>,
    prober: Arc<dyn Prober>,
    config: NodeConfig,
    clock: Clock,
    machine: MachineInfo,
    pods: RunningPods,
    metrics: Arc<NodeMetrics>,
    /// The bound server, between [`NodeAgent::bind`] and [`NodeAgent::run`].
    server: Option<NodeServer>,
}

impl std::fmt::Debug for NodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent")
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

struct WorkerHandle {
    tx: watch::Sender<Option<Value>>,
    task: JoinHandle<()>,
}

impl NodeAgent {
    /// The agent for this machine, talking to the API through `cluster` (an
    /// `aos_client::Client`), running containers through the shim in `config.shim_exe`.
    pub fn new(config: NodeConfig, cluster: Arc<dyn Cluster>) -> Result<Self, AgentError> {
        // Made first, so that the parts can count into it.
        let metrics = Arc::new(NodeMetrics::new());
        let images: Arc<dyn ImageSource> = Arc::new(StoreImages::open(&config.data_dir)?);
        let runtime: Arc<dyn ContainerRuntime> =
            Arc::new(ShimRuntime::new(&config, metrics.clone())?);
        let prober: Arc<dyn Prober> = Arc::new(NetProber::new(runtime.clone()));
        Ok(Self::with_parts(
            config,
            cluster,
            runtime,
            images,
            prober,
            Clock::new(),
            MachineInfo::read(),
        )
        .with_metrics(metrics))
    }

    /// Count into `metrics` instead of a set of the agent's own (when parts made before the
    /// agent report to it).
    pub fn with_metrics(mut self, metrics: Arc<NodeMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// An agent from its parts (tests use fakes).
    pub fn with_parts(
        config: NodeConfig,
        cluster: Arc<dyn Cluster>,
        runtime: Arc<dyn ContainerRuntime>,
        images: Arc<dyn ImageSource>,
        prober: Arc<dyn Prober>,
        clock: Clock,
        machine: MachineInfo,
    ) -> Self {
        Self {
            cluster,
            runtime,
            images,
            prober,
            config,
            clock,
            machine,
            pods: RunningPods::default(),
            metrics: Arc::new(NodeMetrics::new()),
            server: None,
        }
    }

    /// The runtime (for the log reader and tests).
    pub fn runtime(&self) -> Arc<dyn ContainerRuntime> {
        self.runtime.clone()
    }

    /// The agent's metrics, for the pod workers and probes to count into.
    pub fn metrics(&self) -> Arc<NodeMetrics> {
        self.metrics.clone()
    }

    /// The pods the agent runs (filled while it runs).
    pub fn pods(&self) -> RunningPods {
        self.pods.clone()
    }

    /// Make (or load) the serving certificate and bind the HTTPS server on
    /// [`NodeConfig::listen`], so that a taken port is a start-up error. Returns the bound
    /// address, or `None` when no client CA is configured (nothing is served then).
    /// [`NodeAgent::run`] binds by itself when this was not called. Must run inside a tokio
    /// runtime.
    pub fn bind(&mut self) -> Result<Option<SocketAddr>, AgentError> {
        if let Some(s) = &self.server {
            return Ok(Some(s.local_addr()));
        }
        let Some(ca) = &self.config.client_ca_pem else {
            return Ok(None);
        };
        let listen = self.config.listen;
        let mut names = vec![self.machine.hostname.clone()];
        if !listen.ip().is_unspecified() {
            names.push(listen.ip().to_string());
        }
        names.retain(|n| !n.is_empty());
        let identity =
            ServingIdentity::ensure(&self.config.node_dir(), &self.config.node_name, &names)?;
        let server = NodeServer::bind(listen, &identity, ca)?;
        let addr = server.local_addr();
        self.server = Some(server);
        Ok(Some(addr))
    }

    /// Run until `cancel`: register and heartbeat, adopt what runs, clean up what no longer
    /// belongs here, and keep every bound pod reconciled. On cancel, pods are left running for
    /// the next agent (or stopped, with `stop_pods_on_shutdown`).
    pub async fn run(mut self, cancel: CancellationToken) {
        if self.config.client_ca_pem.is_none() {
            tracing::warn!(
                "no client CA configured: the node agent serves no logs, stats or metrics"
            );
        } else if let Err(e) = self.bind() {
            tracing::error!(error = %e, "the node agent serves no logs, stats or metrics");
        }
        let mut registrar = NodeRegistrar::with_machine(
            self.cluster.clone(),
            self.config.clone(),
            self.machine.clone(),
        );
        let mut side_tasks: Vec<JoinHandle<()>> = Vec::new();
        if let Some(server) = self.server.take() {
            registrar = registrar.with_serving(server.local_addr(), server.cert_sha256());
            let sampler = Sampler::new(
                self.config.node_name.clone(),
                CgroupFs::host(),
                ProcFs::host(),
                self.config.cgroup_root.clone(),
            );
            let stats = Arc::new(StatsCollector::new(sampler));
            let pods = self.pods.clone();
            side_tasks.push(tokio::spawn(stats.clone().run(
                move || pods.refs(),
                self.config.stats_interval,
                cancel.child_token(),
            )));
            let state = Arc::new(ServerState {
                node_name: self.config.node_name.clone(),
                data_dir: self.config.data_dir.clone(),
                pods: self.pods.clone(),
                runtime: self.runtime.clone(),
                stats,
                metrics: self.metrics.clone(),
            });
            side_tasks.push(tokio::spawn(server.serve(state, cancel.child_token())));
        }
        let node_ip = registrar.node_ip().to_string();
        let heartbeat = tokio::spawn(registrar.run(cancel.child_token()));

        let ctx = Arc::new(Ctx {
            cluster: self.cluster.clone(),
            runtime: self.runtime.clone(),
            images: self.images.clone(),
            prober: self.prober.clone(),
            config: self.config.clone(),
            clock: self.clock,
            node_ip,
            node_cpu_millis: self.machine.cpus * 1000,
            node_memory_bytes: self.machine.memory_kib * 1024,
            metrics: self.metrics.clone(),
        });
        let node = self.config.node_name.clone();
        let informer = Informer::new(
            self.cluster.clone(),
            &PODS,
            None,
            ListParams {
                field_selector: Some(format!("spec.nodeName={node}")),
                ..Default::default()
            },
        );
        let (tx, mut rx) = mpsc::unbounded_channel::<InformerEvent>();
        informer.add_handler(move |ev| {
            let _ = tx.send(ev.clone());
        });
        let informer_task = tokio::spawn(informer.clone().run(cancel.child_token()));
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = informer.wait_ready() => {}
        }
        let workers_cancel = cancel.child_token();
        let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
        if !cancel.is_cancelled() {
            // Sandboxes of pods that are no longer bound here go away.
            match self.runtime.list_sandboxes().await {
                Ok(sandboxes) => {
                    let bound: std::collections::HashSet<String> = informer
                        .cache()
                        .list_all()
                        .iter()
                        .filter(|p| bound_to(p, &node))
                        .filter_map(|p| {
                            p.pointer("/metadata/uid")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        })
                        .collect();
                    for s in sandboxes.into_iter().filter(|s| !bound.contains(&s.uid)) {
                        tracing::info!(pod = %format!("{}/{}", s.namespace, s.name), uid = %s.uid, "cleaning up a pod no longer bound to this node");
                        spawn_worker(&ctx, &mut workers, &s.uid, None, &workers_cancel);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "listing sandboxes"),
            }
        }
        loop {
            let ev = tokio::select! {
                _ = cancel.cancelled() => break,
                ev = rx.recv() => match ev { Some(ev) => ev, None => break },
            };
            workers.retain(|_, w| !w.task.is_finished());
            let obj = ev.object();
            let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) else {
                continue;
            };
            let value = match &ev {
                InformerEvent::Deleted(_) => None,
                _ if !bound_to(obj, &node) => None,
                _ => Some((**obj).clone()),
            };
            match &value {
                Some(pod) => {
                    if let Some(took) = self.pods.update(pod) {
                        self.metrics.pod_started(took);
                    }
                }
                None => self.pods.remove(uid),
            }
            match workers.get(uid) {
                Some(w) => {
                    let _ = w.tx.send(value);
                }
                None if value.is_some() => {
                    spawn_worker(&ctx, &mut workers, uid, value, &workers_cancel);
                }
                None => {}
            }
        }
        // Shutdown: the workers see the cancellation and leave pods running (or stop them).
        workers_cancel.cancel();
        // Keep each worker's sender until it has finished: a dropped sender reads as "the pod
        // left", which must not race the shutdown path.
        let (senders, tasks): (Vec<_>, Vec<JoinHandle<()>>) =
            workers.into_values().map(|w| (w.tx, w.task)).unzip();
        if tokio::time::timeout(SHUTDOWN_WAIT, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!("pod workers did not stop in time");
        }
        drop(senders);
        let _ = informer_task.await;
        let _ = heartbeat.await;
        for t in side_tasks {
            let _ = t.await;
        }
        tracing::info!(node = %node, "node agent stopped");
    }
}

/// What the agent knows of one pod it runs, from the pod as the API last showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEntry {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Its containers' names (init containers included), from the spec.
    pub containers: Vec<String>,
    /// `status.phase` (`Pending` when none yet).
    pub phase: String,
    /// Containers whose status is `running`.
    pub running_containers: u64,
    /// Whether its `Ready` condition is `True`.
    pub ready: bool,
    /// When the agent first saw it.
    first_seen: tokio::time::Instant,
    /// Whether its start (first sight to Ready) was measured, or cannot be: it was Ready
    /// when first seen (adopted from an earlier agent).
    start_measured: bool,
}

/// The pods bound to this node, as the agent's watch sees them: looked up by the server
/// (namespace and name to uid), listed by the statistics sampler, counted by `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct RunningPods {
    inner: Arc<RwLock<HashMap<String, PodEntry>>>,
}

fn names_of(pod: &Value, pointer: &str) -> Vec<String> {
    pod.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

impl RunningPods {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, PodEntry>> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, PodEntry>> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record the latest version of a pod bound here. Returns how long it took from the
    /// first sight to Ready when this version is the first Ready one.
    pub fn update(&self, pod: &Value) -> Option<Duration> {
        let s = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let uid = s("/metadata/uid");
        if uid.is_empty() {
            return None;
        }
        let mut containers = names_of(pod, "/spec/initContainers");
        containers.extend(names_of(pod, "/spec/containers"));
        let phase = match s("/status/phase") {
            "" => "Pending",
            p => p,
        };
        let running_containers = ["/status/containerStatuses", "/status/initContainerStatuses"]
            .iter()
            .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
            .flatten()
            .filter(|c| c.pointer("/state/running").is_some())
            .count() as u64;
        let ready = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let mut pods = self.write();
        let entry = pods.entry(uid.to_owned()).or_insert_with(|| PodEntry {
            namespace: String::new(),
            name: String::new(),
            uid: uid.to_owned(),
            containers: Vec::new(),
            phase: String::new(),
            running_containers: 0,
            ready,
            first_seen: tokio::time::Instant::now(),
            // Ready at first sight: started by someone else.
            start_measured: ready,
        });
        entry.namespace = s("/metadata/namespace").to_owned();
        entry.name = s("/metadata/name").to_owned();
        entry.containers = containers;
        entry.phase = phase.to_owned();
        entry.running_containers = running_containers;
        entry.ready = ready;
        if ready && !entry.start_measured {
            entry.start_measured = true;
            return Some(entry.first_seen.elapsed());
        }
        None
    }

    /// Forget a pod (deleted, or no longer bound here).
    pub fn remove(&self, uid: &str) {
        self.write().remove(uid);
    }

    /// The pod `namespace/name`, if it runs here.
    pub fn find(&self, namespace: &str, name: &str) -> Option<PodEntry> {
        self.read()
            .values()
            .find(|p| p.namespace == namespace && p.name == name)
            .cloned()
    }

    /// Whether the pod with `uid` runs here.
    pub fn contains_uid(&self, uid: &str) -> bool {
        self.read().contains_key(uid)
    }

    /// Every pod, for the statistics sampler.
    pub fn refs(&self) -> Vec<PodRef> {
        self.read()
            .values()
            .map(|p| PodRef {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                uid: p.uid.clone(),
                containers: p.containers.clone(),
            })
            .collect()
    }

    /// The pod gauges of `/metrics`.
    pub fn gauges(&self) -> PodGauges {
        let mut g = PodGauges::default();
        for p in self.read().values() {
            *g.by_phase.entry(p.phase.clone()).or_default() += 1;
            g.containers_running += p.running_containers;
        }
        g
    }
}

fn bound_to(pod: &Value, node: &str) -> bool {
    pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)
}

fn spawn_worker(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, WorkerHandle>,
    uid: &str,
    pod: Option<Value>,
    cancel: &CancellationToken,
) {
    let (tx, rx) = watch::channel(pod);
    let worker = PodWorker::new(ctx.clone(), uid.to_owned());
    let task = tokio::spawn(worker.run(rx, cancel.clone()));
    workers.insert(uid.to_owned(), WorkerHandle { tx, task });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, phase: Option<&str>, ready: bool, running: usize) -> Value {
        let mut p = json!({
            "metadata": {"namespace": "ns", "name": format!("p-{uid}"), "uid": uid},
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": (0..running).map(|i| json!({"name": i.to_string(), "state": {"running": {}}})).collect::<Vec<_>>(),
            },
        });
        if let Some(phase) = phase {
            p["status"]["phase"] = json!(phase);
        }
        p
    }

    #[tokio::test(start_paused = true)]
    async fn running_pods_track_lookups_gauges_and_start_latency() {
        let pods = RunningPods::default();
        assert_eq!(pods.update(&pod("u1", None, false, 0)), None);
        assert_eq!(
            pods.update(&pod("u2", Some("Running"), true, 2)),
            None,
            "adopted Ready"
        );
        let e = pods.find("ns", "p-u1").unwrap();
        assert_eq!(e.uid, "u1");
        assert_eq!(e.containers, vec!["init", "a", "b"]);
        assert!(pods.find("other", "p-u1").is_none());

        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(pods.update(&pod("u1", Some("Running"), false, 1)), None);
        assert_eq!(
            pods.update(&pod("u1", Some("Running"), true, 2)),
            Some(Duration::from_millis(1500))
        );
        // Measured once, whatever happens later.
        assert_eq!(pods.update(&pod("u1", Some("Running"), false, 2)), None);
        assert_eq!(pods.update(&pod("u1", Some("Running"), true, 2)), None);

        let g = pods.gauges();
        assert_eq!(g.by_phase.get("Running"), Some(&2));
        assert_eq!(g.containers_running, 4);
        assert_eq!(pods.refs().len(), 2);
        pods.remove("u1");
        assert!(!pods.contains_uid("u1"));
        assert!(pods.contains_uid("u2"));
        assert_eq!(
            pods.update(&json!({"metadata": {}})),
            None,
            "no uid: ignored"
        );
        assert_eq!(pods.refs().len(), 1);
    }
}
