//! Controllers of the control plane: deployments, replica sets, the scheduler, Endpoints,
//! garbage collection, namespaces.
//!
//! The controllers see the cluster only through the public API ([`cluster::Cluster`],
//! implemented for `aos_client::Client`), exactly as a controller on another machine would.
//! They are built on a small runtime in kube-runtime's shape ([`runtime`]): informers with
//! caches, a de-duplicating work queue with per-key backoff, and
//! `reconcile(object, ctx) -> Result<Action, E>` loops.
//!
//! Start everything with [`run_all`], or with a [`ControllerManager`] to get at its
//! [`metrics::Metrics`] and [`metrics::Readiness`] first.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub mod cluster;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod kinds;
pub mod meta;
pub mod metrics;
pub mod namespace;
pub mod replicaset;
pub mod runtime;
pub mod scheduler;
pub mod selector;
#[cfg(test)]
mod testing;
pub mod unschedulable;

use cluster::{Cluster, ListParams};
use events::Recorder;
use kinds::Kinds;
use meta::{Clock, SystemClock};
use metrics::{Metrics, Readiness};
use runtime::Informer;

/// Why the controllers could not run.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The resource table lacks a kind the controllers need.
    #[error(transparent)]
    MissingKind(#[from] kinds::MissingKind),
    /// A controller task ended abnormally.
    #[error("controller task failed: {0}")]
    Task(String),
}

/// Settings of the controller manager.
#[derive(Clone)]
pub struct ControllerOptions {
    /// Run the scheduler ([`scheduler`]): it binds pending pods to nodes and owns their
    /// `PodScheduled` condition. Turn it off when another scheduler binds the pods.
    pub scheduler: bool,
    /// With the scheduler off: mark every unbound pod `PodScheduled=False` (`Unschedulable`,
    /// "no nodes available to schedule pods"), the stop-gap of [`unschedulable`]. Ignored
    /// while the scheduler runs.
    pub mark_unschedulable: bool,
    /// Workers per controller.
    pub workers: usize,
    /// Time source (tests drive it by hand).
    pub clock: Arc<dyn Clock>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            scheduler: true,
            mark_unschedulable: true,
            workers: 2,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for ControllerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerOptions")
            .field("scheduler", &self.scheduler)
            .field("mark_unschedulable", &self.mark_unschedulable)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// Every controller, sharing one informer per resource type.
pub struct ControllerManager {
    cluster: Arc<dyn Cluster>,
    kinds: Kinds,
    options: ControllerOptions,
    metrics: Arc<Metrics>,
    informers: Vec<Informer>,
}

impl std::fmt::Debug for ControllerManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerManager")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Types the garbage collector does not track (nothing owns them, and they are many).
fn gc_ignored(rt: &aos_types::ResourceType) -> bool {
    rt.kind == "Event"
}

impl ControllerManager {
    /// A manager over `cluster`. Informers are created now (so readiness can be
    /// observed before [`ControllerManager::run`]); nothing runs until then.
    pub fn new(cluster: Arc<dyn Cluster>, kinds: Kinds, options: ControllerOptions) -> Self {
        let mut types: Vec<&'static aos_types::ResourceType> = Vec::new();
        for rt in [
            kinds.namespaces,
            kinds.deployments,
            kinds.replicasets,
            kinds.pods,
            kinds.nodes,
            kinds.services,
            kinds.endpoints,
        ]
        .into_iter()
        .chain(kinds.all.iter().copied().filter(|rt| !gc_ignored(rt)))
        {
            if !types
                .iter()
                .any(|t| std::ptr::eq(*t, rt) || (t.group == rt.group && t.plural == rt.plural))
            {
                types.push(rt);
            }
        }
        let informers = types
            .into_iter()
            .map(|rt| Informer::new(cluster.clone(), rt, None, ListParams::default()))
            .collect();
        Self {
            cluster,
            kinds,
            options,
            metrics: Arc::default(),
            informers,
        }
    }

    /// Reconcile metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// True once every informer has listed once.
    pub fn readiness(&self) -> Readiness {
        Readiness::new(self.informers.clone())
    }

    fn informer(&self, rt: &'static aos_types::ResourceType) -> Informer {
        self.informers
            .iter()
            .find(|i| i.resource().group == rt.group && i.resource().plural == rt.plural)
            .cloned()
            .expect("the manager creates an informer for every type it uses")
    }

    fn recorder(&self, component: &str) -> Recorder {
        Recorder::new(
            self.cluster.clone(),
            self.kinds.events,
            component,
            self.options.clock.clone(),
        )
    }

    /// Run every controller until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), ControllerError> {
        let workers = self.options.workers;
        let deployments = self.informer(self.kinds.deployments);
        let replicasets = self.informer(self.kinds.replicasets);
        let pods = self.informer(self.kinds.pods);
        let namespaces = self.informer(self.kinds.namespaces);
        let mut tasks = tokio::task::JoinSet::new();

        let dctx = Arc::new(deployment::DeploymentContext {
            cluster: self.cluster.clone(),
            kinds: self.kinds.clone(),
            replicasets: replicasets.cache().clone(),
            pods: pods.cache().clone(),
            recorder: self.recorder("deployment-controller"),
            clock: self.options.clock.clone(),
        });
        let dctl = deployment::controller(deployments.clone(), replicasets.clone(), pods.clone())
            .workers(workers)
            .metrics(self.metrics.clone());
        tasks.spawn(dctl.run(
            deployment::reconcile,
            deployment::error_policy,
            dctx,
            cancel.clone(),
        ));

        let expectations = Arc::new(replicaset::expectations::Expectations::default());
        let rctx = Arc::new(replicaset::ReplicaSetContext {
            cluster: self.cluster.clone(),
            kinds: self.kinds.clone(),
            pods: pods.cache().clone(),
            replicasets: replicasets.cache().clone(),
            recorder: self.recorder("replicaset-controller"),
            clock: self.options.clock.clone(),
            expectations: expectations.clone(),
        });
        let rctl = replicaset::controller(replicasets.clone(), pods.clone(), expectations)
            .workers(workers)
            .metrics(self.metrics.clone());
        tasks.spawn(rctl.run(
            replicaset::reconcile,
            replicaset::error_policy,
            rctx,
            cancel.clone(),
        ));

        if self.options.scheduler {
            let nodes = self.informer(self.kinds.nodes);
            let state = Arc::new(scheduler::SchedulerState::default());
            let sctx = Arc::new(scheduler::SchedulerContext {
                cluster: self.cluster.clone(),
                kinds: self.kinds.clone(),
                pods: pods.cache().clone(),
                nodes: nodes.cache().clone(),
                recorder: self.recorder(scheduler::SCHEDULER_NAME),
                clock: self.options.clock.clone(),
                state: state.clone(),
            });
            let sctl = scheduler::controller(pods.clone(), nodes, state)
                .workers(workers)
                .metrics(self.metrics.clone());
            tasks.spawn(sctl.run(
                scheduler::reconcile,
                scheduler::error_policy,
                sctx,
                cancel.clone(),
            ));
        } else if self.options.mark_unschedulable {
            let uctx = Arc::new(unschedulable::UnschedulableContext {
                cluster: self.cluster.clone(),
                kinds: self.kinds.clone(),
                clock: self.options.clock.clone(),
            });
            let uctl = unschedulable::controller(pods.clone())
                .workers(1)
                .metrics(self.metrics.clone());
            tasks.spawn(uctl.run(
                unschedulable::reconcile,
                unschedulable::error_policy,
                uctx,
                cancel.clone(),
            ));
        }

        let services = self.informer(self.kinds.services);
        let endpoints = self.informer(self.kinds.endpoints);
        let ectx = Arc::new(endpoints::EndpointsContext {
            cluster: self.cluster.clone(),
            kinds: self.kinds.clone(),
            pods: pods.cache().clone(),
            endpoints: endpoints.cache().clone(),
        });
        let ectl = endpoints::controller(services.clone(), pods.clone(), endpoints.clone())
            .workers(workers)
            .metrics(self.metrics.clone());
        let equeue = ectl.queue();
        tasks.spawn(ectl.run_keyed(
            endpoints::reconcile,
            endpoints::error_policy,
            ectx,
            cancel.clone(),
        ));
        // Endpoints whose Service was deleted while no controller ran.
        let leftovers_cancel = cancel.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = leftovers_cancel.cancelled() => return,
                _ = async { services.wait_ready().await; endpoints.wait_ready().await } => {}
            }
            for key in endpoints::leftover_keys(services.cache(), endpoints.cache()) {
                equeue.add(key);
            }
        });

        let nctx = Arc::new(namespace::NamespaceContext {
            cluster: self.cluster.clone(),
            kinds: self.kinds.clone(),
        });
        let nctl = namespace::controller(namespaces)
            .workers(1)
            .metrics(self.metrics.clone());
        tasks.spawn(nctl.run(
            namespace::reconcile,
            namespace::error_policy,
            nctx,
            cancel.clone(),
        ));

        let gc = gc::GarbageCollector::new(
            self.cluster.clone(),
            self.kinds.clone(),
            self.informers.clone(),
        )
        .metrics(self.metrics.clone());
        tasks.spawn(gc.run(workers, cancel.clone()));

        for inf in &self.informers {
            tasks.spawn(inf.clone().run(cancel.clone()));
        }
        tracing::info!(informers = self.informers.len(), "controllers started");

        let mut failure = None;
        while let Some(res) = tasks.join_next().await {
            if let Err(e) = res {
                tracing::error!(error = %e, "controller task failed");
                failure.get_or_insert(ControllerError::Task(e.to_string()));
                cancel.cancel();
            }
        }
        tracing::info!("controllers stopped");
        failure.map_or(Ok(()), Err)
    }
}

/// Run every controller, the scheduler included, against the API behind `client` until
/// `cancel` fires.
pub async fn run_all(
    client: aos_client::Client,
    cancel: CancellationToken,
) -> Result<(), ControllerError> {
    run_with(client, ControllerOptions::default(), cancel).await
}

/// As [`run_all`], with `options` (e.g. `scheduler: false` when another scheduler binds pods).
pub async fn run_with(
    client: aos_client::Client,
    options: ControllerOptions,
    cancel: CancellationToken,
) -> Result<(), ControllerError> {
    let kinds = Kinds::from_table()?;
    ControllerManager::new(Arc::new(client), kinds, options)
        .run(cancel)
        .await
}
