//! The node agent: registers the Node, heartbeats, watches the pods bound to it through the
//! public API and runs one [`PodWorker`] per pod.

use std::collections::HashMap;
use std::sync::Arc;
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
use crate::node::{MachineInfo, NodeRegistrar};
use crate::pod::{Ctx, PodWorker};
use crate::probe::{NetProber, Prober};
use crate::runtime::shim::ShimRuntime;
use crate::runtime::{ContainerRuntime, RuntimeError};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The image store could not be opened.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The runtime could not be set up.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
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
        let images: Arc<dyn ImageSource> = Arc::new(StoreImages::open(&config.data_dir)?);
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(ShimRuntime::new(&config)?);
        let prober: Arc<dyn Prober> = Arc::new(NetProber::new(runtime.clone()));
        Ok(Self::with_parts(
            config,
            cluster,
            runtime,
            images,
            prober,
            Clock::new(),
            MachineInfo::read(),
        ))
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
        }
    }

    /// The runtime (for the log reader and tests).
    pub fn runtime(&self) -> Arc<dyn ContainerRuntime> {
        self.runtime.clone()
    }

    /// Run until `cancel`: register and heartbeat, adopt what runs, clean up what no longer
    /// belongs here, and keep every bound pod reconciled. On cancel, pods are left running for
    /// the next agent (or stopped, with `stop_pods_on_shutdown`).
    pub async fn run(self, cancel: CancellationToken) {
        let registrar = NodeRegistrar::with_machine(
            self.cluster.clone(),
            self.config.clone(),
            self.machine.clone(),
        );
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
        tracing::info!(node = %node, "node agent stopped");
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
