//! The garbage collector, as Kubernetes' (`garbagecollector` package): a graph
//! of owner references built from informers of every resource type; objects
//! whose owners are all gone are deleted (with the propagation their own
//! finalizers ask for); owners in foreground deletion keep their
//! `foregroundDeletion` finalizer until the dependents that block it are
//! gone; owners with the `orphan` finalizer have their dependents' references
//! removed first.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use aos_types::ResourceType;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterError, DeleteParams, Propagation};
use crate::kinds::Kinds;
use crate::meta::{self, OwnerRef};
use crate::metrics::Metrics;
use crate::runtime::{Informer, InformerEvent, WorkQueue};

/// Finalizer of an owner in foreground deletion.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer of an owner whose dependents are to be orphaned.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// A failed garbage-collection step.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// An API call failed.
    #[error("api call failed: {0}")]
    Cluster(#[from] ClusterError),
}

#[derive(Clone, Debug)]
struct Node {
    rt: &'static ResourceType,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerRef>,
    deleting: bool,
    finalizers: Vec<String>,
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// owner uid -> dependent uids
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn unlink(&mut self, uid: &str, owners: &[OwnerRef]) {
        for o in owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
    }
}

/// The collector.
pub struct GarbageCollector {
    cluster: Arc<dyn Cluster>,
    kinds: Kinds,
    informers: Vec<Informer>,
    graph: Arc<Mutex<Graph>>,
    queue: WorkQueue<String>,
    metrics: Option<Arc<Metrics>>,
}

/// Whether to look at an item: it has owners, or it is an owner being deleted with a finalizer we handle.
fn interesting(node: &Node) -> bool {
    !node.owners.is_empty()
        || (node.deleting
            && node
                .finalizers
                .iter()
                .any(|f| f == FOREGROUND_FINALIZER || f == ORPHAN_FINALIZER))
}

impl GarbageCollector {
    /// A collector over these informers (one per resource type that may own or be owned).
    pub fn new(cluster: Arc<dyn Cluster>, kinds: Kinds, informers: Vec<Informer>) -> Self {
        let graph: Arc<Mutex<Graph>> = Arc::default();
        let queue: WorkQueue<String> = WorkQueue::default();
        for inf in &informers {
            let rt = inf.resource();
            let graph = graph.clone();
            let queue = queue.clone();
            inf.add_handler(move |ev| Self::observe(rt, &graph, &queue, ev));
        }
        Self {
            cluster,
            kinds,
            informers,
            graph,
            queue,
            metrics: None,
        }
    }

    /// Record per-item counts and durations under the controller name `garbagecollector`.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn observe(
        rt: &'static ResourceType,
        graph: &Mutex<Graph>,
        queue: &WorkQueue<String>,
        ev: &InformerEvent,
    ) {
        let obj = ev.object();
        let uid = meta::uid(obj).to_owned();
        if uid.is_empty() {
            return;
        }
        let mut g = graph.lock().expect("gc graph poisoned");
        let mut wake: Vec<String> = Vec::new();
        match ev {
            InformerEvent::Deleted(_) => {
                if let Some(old) = g.nodes.remove(&uid) {
                    g.unlink(&uid, &old.owners);
                    // Owners waiting for this dependent can move on.
                    wake.extend(old.owners.iter().map(|o| o.uid.clone()));
                }
                // Dependents may have lost their last owner.
                wake.extend(g.dependents.get(&uid).into_iter().flatten().cloned());
            }
            InformerEvent::Added(_) | InformerEvent::Modified { .. } => {
                let node = Node {
                    rt,
                    namespace: meta::namespace(obj).map(str::to_owned),
                    name: meta::name(obj).to_owned(),
                    owners: meta::owner_refs(obj),
                    deleting: meta::is_deleting(obj),
                    finalizers: meta::finalizers(obj),
                };
                let previous = g.nodes.insert(uid.clone(), node.clone());
                if let Some(prev) = &previous {
                    g.unlink(&uid, &prev.owners);
                    // Owners this object no longer references may be waiting for it.
                    for o in &prev.owners {
                        if !node.owners.iter().any(|n| n.uid == o.uid) {
                            wake.push(o.uid.clone());
                        }
                    }
                }
                for o in &node.owners {
                    g.dependents
                        .entry(o.uid.clone())
                        .or_default()
                        .insert(uid.clone());
                }
                if interesting(&node) {
                    wake.push(uid.clone());
                }
                // An owner entering foreground deletion: its dependents must go.
                let was_foreground = previous.as_ref().is_some_and(|p| {
                    p.deleting && p.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER)
                });
                let is_foreground =
                    node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER);
                if is_foreground && !was_foreground {
                    wake.extend(g.dependents.get(&uid).into_iter().flatten().cloned());
                }
            }
        }
        drop(g);
        for w in wake {
            queue.add(w);
        }
    }

    /// Wait for every informer's first list, then collect until `cancel` fires.
    pub async fn run(self, workers: usize, cancel: CancellationToken) {
        for inf in &self.informers {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = inf.wait_ready() => {}
            }
        }
        tracing::info!(types = self.informers.len(), "garbage collector synced");
        let this = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers.max(1) {
            let this = this.clone();
            tasks.spawn(async move {
                while let Some(uid) = this.queue.get().await {
                    let started = std::time::Instant::now();
                    let result = this.process(&uid).await;
                    if let Some(m) = &this.metrics {
                        m.record("garbagecollector", result.is_ok(), started.elapsed());
                    }
                    match result {
                        Ok(()) => this.queue.forget(&uid),
                        Err(e) => {
                            tracing::warn!(uid = %uid, error = %e, "garbage collection step failed");
                            this.queue.add_rate_limited(uid.clone());
                        }
                    }
                    this.queue.done(&uid);
                }
            });
        }
        cancel.cancelled().await;
        this.queue.shut_down();
        while tasks.join_next().await.is_some() {}
    }

    fn node(&self, uid: &str) -> Option<Node> {
        self.graph
            .lock()
            .expect("gc graph poisoned")
            .nodes
            .get(uid)
            .cloned()
    }

    fn dependents(&self, uid: &str) -> Vec<(String, Node)> {
        let g = self.graph.lock().expect("gc graph poisoned");
        g.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| g.nodes.get(d).map(|n| (d.clone(), n.clone())))
            .collect()
    }

    async fn process(&self, uid: &str) -> Result<(), GcError> {
        let Some(node) = self.node(uid) else {
            return Ok(());
        };
        if node.deleting {
            if node.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                return self.process_deleting_dependents(uid, &node).await;
            }
            if node.finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
                return self.orphan_dependents(uid, &node).await;
            }
            return Ok(());
        }
        if node.owners.is_empty() {
            return Ok(());
        }
        self.attempt_to_delete(uid, &node).await
    }

    /// Fetch the live object with the given uid, or `None` if it is gone (or replaced).
    async fn live(&self, node: &Node, uid: &str) -> Result<Option<Value>, GcError> {
        match self
            .cluster
            .get(node.rt, node.namespace.as_deref(), &node.name)
            .await
        {
            Ok(v) if meta::uid(&v) == uid => Ok(Some(v)),
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `attemptToDeleteItem`.
    async fn attempt_to_delete(&self, uid: &str, node: &Node) -> Result<(), GcError> {
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting = Vec::new();
        for owner in &node.owners {
            let cached = self.node(&owner.uid);
            let state = match cached {
                Some(o) => Some((o.deleting, o.finalizers)),
                None => {
                    // Not in the graph (yet): ask the API, the informers may lag.
                    match self.kinds.by_kind(&owner.api_version, &owner.kind) {
                        None => {
                            tracing::debug!(kind = %owner.kind, "owner of unknown kind; keeping the dependent");
                            Some((false, Vec::new()))
                        }
                        Some(rt) => {
                            let ns = if rt.namespaced {
                                node.namespace.as_deref()
                            } else {
                                None
                            };
                            match self.cluster.get(rt, ns, &owner.name).await {
                                Ok(v) if meta::uid(&v) == owner.uid => {
                                    Some((meta::is_deleting(&v), meta::finalizers(&v)))
                                }
                                Ok(_) => None,
                                Err(e) if e.is_not_found() => None,
                                Err(e) => return Err(e.into()),
                            }
                        }
                    }
                }
            };
            match state {
                None => dangling.push(owner.clone()),
                Some((deleting, finalizers))
                    if deleting && finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) =>
                {
                    waiting.push(owner.clone())
                }
                Some(_) => solid.push(owner.clone()),
            }
        }
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            // Keep the item; drop the references to owners that are gone or going.
            let Some(mut latest) = self.live(node, uid).await? else {
                return Ok(());
            };
            let drop_uids: HashSet<&str> = dangling
                .iter()
                .chain(&waiting)
                .map(|o| o.uid.as_str())
                .collect();
            if let Some(refs) = latest
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| {
                    !r.get("uid")
                        .and_then(Value::as_str)
                        .is_some_and(|u| drop_uids.contains(u))
                });
            }
            match self
                .cluster
                .replace(node.rt, node.namespace.as_deref(), &node.name, &latest)
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(e.into()),
            }
        } else {
            let has_dependents = !self.dependents(uid).is_empty();
            let policy = if !waiting.is_empty() && has_dependents {
                Propagation::Foreground
            } else if node.finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
                Propagation::Orphan
            } else if node.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                Propagation::Foreground
            } else {
                Propagation::Background
            };
            tracing::info!(
                resource = node.rt.plural,
                namespace = node.namespace.as_deref().unwrap_or_default(),
                name = %node.name,
                policy = policy.as_str(),
                "deleting object whose owners are gone"
            );
            let params = DeleteParams {
                propagation_policy: Some(policy),
                precondition_uid: Some(uid.to_owned()),
                ..Default::default()
            };
            match self
                .cluster
                .delete(node.rt, node.namespace.as_deref(), &node.name, &params)
                .await
            {
                Ok(()) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                // The uid precondition failed: a new object took the name.
                Err(e) if e.is_conflict() => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }

    /// `processDeletingDependentsItem`: remove the foreground finalizer once no blocking dependent is left.
    async fn process_deleting_dependents(&self, uid: &str, node: &Node) -> Result<(), GcError> {
        let blocking: Vec<(String, Node)> = self
            .dependents(uid)
            .into_iter()
            .filter(|(_, d)| {
                d.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion)
            })
            .collect();
        if blocking.is_empty() {
            return self.remove_finalizer(uid, node, FOREGROUND_FINALIZER).await;
        }
        for (dep_uid, dep) in blocking {
            if !dep.deleting {
                self.queue.add(dep_uid);
            }
        }
        Ok(())
    }

    /// `orphanDependents`, then drop the `orphan` finalizer.
    async fn orphan_dependents(&self, uid: &str, node: &Node) -> Result<(), GcError> {
        for (dep_uid, dep) in self.dependents(uid) {
            let Some(mut latest) = self.live(&dep, &dep_uid).await? else {
                continue;
            };
            if let Some(refs) = latest
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            }
            match self
                .cluster
                .replace(dep.rt, dep.namespace.as_deref(), &dep.name, &latest)
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.remove_finalizer(uid, node, ORPHAN_FINALIZER).await
    }

    async fn remove_finalizer(
        &self,
        uid: &str,
        node: &Node,
        finalizer: &str,
    ) -> Result<(), GcError> {
        let Some(mut latest) = self.live(node, uid).await? else {
            return Ok(());
        };
        let mut finalizers = meta::finalizers(&latest);
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        finalizers.retain(|f| f != finalizer);
        meta::ensure_object(&mut latest, "metadata")["finalizers"] = serde_json::json!(finalizers);
        match self
            .cluster
            .replace(node.rt, node.namespace.as_deref(), &node.name, &latest)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
