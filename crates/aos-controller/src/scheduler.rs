//! The scheduler: binds Pending pods to nodes, as kube-scheduler's default profile does.
//!
//! It takes unbound pods whose `spec.schedulerName` is `default-scheduler` (or unset),
//! filters the nodes ([`filter`]: cordon, taints and tolerations, nodeSelector and required
//! node affinity, CPU / memory / pod count against `status.allocatable`), scores the
//! feasible ones ([`score`]) and binds the pod to the best.
//!
//! - **Assumed pods.** A pod is counted on its node from the moment it is chosen, before the
//!   bind is acknowledged and long before the informer shows it bound, so the next decision
//!   cannot overcommit the node (kube-scheduler's assume cache). The choice and the
//!   assumption happen under one lock; binds run outside it.
//! - **Binding.** `POST pods/{name}/binding` first, as Kubernetes binds. When the API does
//!   not serve that subresource (404/405), a merge patch of `spec.nodeName`, conditional on
//!   the pod's resourceVersion, binds instead; the way that worked is remembered. Then the
//!   `PodScheduled=True` condition is written through the status subresource (unless the
//!   server set it, as Kubernetes' binding does) and an Event `Scheduled` is recorded.
//! - **Unschedulable pods** get `PodScheduled=False`, reason `Unschedulable`, with
//!   kube-scheduler's message (`0/3 nodes are available: 1 Insufficient cpu, 2 node(s)
//!   didn't match Pod's node affinity/selector.`, or `no nodes available to schedule pods`),
//!   and a Warning Event `FailedScheduling`. They are tried again when a node appears or
//!   changes in a way that matters, or a pod goes away, but not sooner than their backoff
//!   (1 s doubling to 10 s), and at least every [`UNSCHEDULABLE_FLUSH`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::cluster::{Cluster, ClusterError, ObjectKey, Patch};
use crate::events::{EventType, Recorder};
use crate::kinds::Kinds;
use crate::meta::{self, Clock};
use crate::runtime::{Action, Cache, Controller, Informer, InformerEvent};

pub mod filter;
pub mod resources;
pub mod score;
#[cfg(test)]
mod tests;

use filter::{NodeInfo, PodInfo};
use resources::PodRequests;

/// The `spec.schedulerName` this scheduler serves (an unset name means it too).
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// The message when the cluster has no node at all.
pub const NO_NODES_MESSAGE: &str = "no nodes available to schedule pods";
/// First retry delay of an unschedulable pod (kube-scheduler's `podInitialBackoffSeconds`).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay of an unschedulable pod (kube-scheduler's `podMaxBackoffSeconds`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// An unschedulable pod is tried again after this long even if nothing seems to have changed.
pub const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(60);
/// How many times a write that lost a resourceVersion race is retried on a fresh read.
const CONFLICT_RETRIES: usize = 3;

/// A failed scheduling attempt (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// An API call failed.
    #[error("api call failed: {0}")]
    Cluster(#[from] ClusterError),
}

/// How pods are bound (learnt from the API's answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum BindVia {
    /// `POST pods/{name}/binding`.
    Binding = 0,
    /// Merge patch of `spec.nodeName`.
    Patch = 1,
}

#[derive(Clone, Debug)]
struct Assumed {
    uid: String,
    node: String,
    requests: PodRequests,
}

#[derive(Clone, Debug)]
struct Attempt {
    uid: String,
    pod_generation: i64,
    cluster_generation: u64,
    failures: u32,
    at: Instant,
    next_try: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    assumed: HashMap<ObjectKey, Assumed>,
    attempts: HashMap<ObjectKey, Attempt>,
}

type Requeue = Box<dyn Fn() + Send + Sync>;

/// The scheduler's memory between attempts: assumed pods and the backoff of unschedulable
/// ones. Losing it (a restart) loses nothing that matters: assumed pods are soon seen bound,
/// and unschedulable pods are simply tried again.
pub struct SchedulerState {
    inner: Mutex<Inner>,
    /// Bumped by every cluster change that may let an unschedulable pod fit.
    cluster_generation: AtomicU64,
    bind_via: AtomicU8,
    /// Queues every pending pod (set by [`controller`]).
    requeue_pending: OnceLock<Requeue>,
}

impl std::fmt::Debug for SchedulerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerState")
            .field("inner", &self.inner)
            .field("cluster_generation", &self.cluster_generation)
            .finish_non_exhaustive()
    }
}

impl Default for SchedulerState {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            cluster_generation: AtomicU64::new(0),
            bind_via: AtomicU8::new(BindVia::Binding as u8),
            requeue_pending: OnceLock::new(),
        }
    }
}

impl SchedulerState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("scheduler state lock poisoned")
    }

    fn bump(&self) {
        self.cluster_generation.fetch_add(1, Ordering::SeqCst);
    }

    fn bind_order(&self) -> [BindVia; 2] {
        if self.bind_via.load(Ordering::Relaxed) == BindVia::Patch as u8 {
            [BindVia::Patch, BindVia::Binding]
        } else {
            [BindVia::Binding, BindVia::Patch]
        }
    }

    /// Pods assumed on nodes whose binding the informer has not shown yet.
    pub fn assumed_count(&self) -> usize {
        self.lock().assumed.len()
    }

    /// Drop an assumption whose bind failed: its room is free again for the pending pods.
    fn forget_assumed(&self, key: &ObjectKey) {
        let removed = self.lock().assumed.remove(key).is_some();
        if removed {
            self.bump();
            if let Some(requeue) = self.requeue_pending.get() {
                requeue();
            }
        }
    }
}

/// What the scheduler works with.
pub struct SchedulerContext {
    /// The API.
    pub cluster: Arc<dyn Cluster>,
    /// Resource types.
    pub kinds: Kinds,
    /// Every pod (for what is requested on each node).
    pub pods: Cache,
    /// Every node.
    pub nodes: Cache,
    /// Events (`source.component` `default-scheduler`).
    pub recorder: Recorder,
    /// Time, for condition timestamps.
    pub clock: Arc<dyn Clock>,
    /// Assumed pods and backoff.
    pub state: Arc<SchedulerState>,
}

/// Whether this scheduler is responsible for `pod`.
pub fn is_ours(pod: &Value) -> bool {
    pod.pointer("/spec/schedulerName")
        .and_then(Value::as_str)
        .is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME)
}

fn node_name(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
}

fn is_terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// Whether `pod` waits for this scheduler.
pub fn needs_scheduling(pod: &Value) -> bool {
    is_ours(pod) && node_name(pod).is_none() && !meta::is_deleting(pod) && !is_terminal(pod)
}

/// What about a node matters to scheduling (a heartbeat does not).
fn node_fingerprint(node: &Value) -> Value {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"].clone());
    json!([
        node.pointer("/metadata/labels"),
        node.pointer("/spec/taints"),
        node.pointer("/spec/unschedulable"),
        node.pointer("/status/allocatable"),
        node.pointer("/status/capacity"),
        ready,
    ])
}

/// Whether a pod change may free room on a node.
fn frees_resources(ev: &InformerEvent) -> bool {
    match ev {
        InformerEvent::Added(_) => false,
        InformerEvent::Deleted(p) => node_name(p).is_some(),
        InformerEvent::Modified { old, new } => {
            node_name(old).is_some() && !is_terminal(old) && is_terminal(new)
        }
    }
}

fn pending_keys(pods: &Cache) -> Vec<ObjectKey> {
    pods.list_all()
        .iter()
        .filter(|p| needs_scheduling(p))
        .filter_map(|p| ObjectKey::of(p))
        .collect()
}

/// Build the scheduler over pods; node changes and pods going away requeue the pending pods.
/// Also keeps `state`'s assumed pods in step with what the pod informer shows.
pub fn controller(pods: Informer, nodes: Informer, state: Arc<SchedulerState>) -> Controller {
    let cache = pods.cache().clone();
    let node_state = state.clone();
    let node_pods = cache.clone();
    let requeue_pods = cache.clone();
    let pod_state = state.clone();
    let ctl = Controller::new("scheduler", pods.clone())
        .watches(nodes, move |ev| {
            let relevant = match ev {
                InformerEvent::Added(_) => true,
                InformerEvent::Modified { old, new } => {
                    node_fingerprint(old) != node_fingerprint(new)
                }
                InformerEvent::Deleted(_) => false,
            };
            if !relevant {
                return Vec::new();
            }
            node_state.bump();
            pending_keys(&node_pods)
        })
        .watches(pods, move |ev| {
            let obj = ev.object();
            if let Some(key) = ObjectKey::of(obj) {
                let mut inner = pod_state.lock();
                let gone = matches!(ev, InformerEvent::Deleted(_));
                let same_uid = |uid: &str| uid == meta::uid(obj);
                // Once the informer shows the pod bound (or gone), it no longer needs assuming.
                if inner
                    .assumed
                    .get(&key)
                    .is_some_and(|a| gone || !same_uid(&a.uid) || node_name(obj).is_some())
                {
                    inner.assumed.remove(&key);
                }
                if gone || node_name(obj).is_some() {
                    inner.attempts.remove(&key);
                }
            }
            if !frees_resources(ev) {
                return Vec::new();
            }
            pod_state.bump();
            pending_keys(&cache)
        });
    let queue = ctl.queue();
    // A second controller over the same state would keep the first hook: one scheduler per state.
    let _ = state.requeue_pending.set(Box::new(move || {
        for key in pending_keys(&requeue_pods) {
            queue.add(key);
        }
    }));
    ctl
}

/// Errors retry with the work queue's backoff.
pub fn error_policy(
    _pod: Arc<Value>,
    _err: &SchedulerError,
    _ctx: Arc<SchedulerContext>,
) -> Action {
    Action::backoff()
}

/// The outcome of one scheduling decision.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Decision {
    /// Bind to this node (already assumed there).
    Node(String),
    /// No node fits; the message says why.
    Unschedulable(String),
}

/// Decide where `pod` goes, over the cached nodes and pods plus the assumed ones; a chosen
/// node gets the pod assumed on it before the lock is released.
fn decide(ctx: &SchedulerContext, key: &ObjectKey, pod: &Value) -> Decision {
    let info = PodInfo::from_pod(pod);
    let mut inner = ctx.state.lock();
    let mut nodes: BTreeMap<String, NodeInfo> = ctx
        .nodes
        .list_all()
        .iter()
        .map(|n| {
            let info = NodeInfo::from_node(n);
            (info.name.clone(), info)
        })
        .collect();
    if nodes.is_empty() {
        return Decision::Unschedulable(NO_NODES_MESSAGE.to_owned());
    }
    // Pods the informer shows bound: their assumption (if any) is not counted twice.
    let mut counted: HashSet<ObjectKey> = HashSet::new();
    for p in ctx.pods.list_all() {
        let Some(n) = node_name(&p) else { continue };
        if is_terminal(&p) {
            continue;
        }
        if let Some(node) = nodes.get_mut(n) {
            node.add_pod(&resources::pod_requests(&p));
        }
        if let Some(k) = ObjectKey::of(&p) {
            counted.insert(k);
        }
    }
    for (k, a) in &inner.assumed {
        if counted.contains(k) {
            continue;
        }
        if let Some(node) = nodes.get_mut(&a.node) {
            node.add_pod(&a.requests);
        }
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible = Vec::new();
    for node in nodes.values() {
        let why = filter::filter(&info, node);
        if why.is_empty() {
            feasible.push(node);
        }
        for r in why {
            *reasons.entry(r).or_default() += 1;
        }
    }
    match score::select(&info, &feasible) {
        Some(best) => {
            let node = best.name.clone();
            inner.assumed.insert(
                key.clone(),
                Assumed {
                    uid: meta::uid(pod).to_owned(),
                    node: node.clone(),
                    requests: info.requests,
                },
            );
            Decision::Node(node)
        }
        None => Decision::Unschedulable(unschedulable_message(nodes.len(), &reasons)),
    }
}

/// kube-scheduler's `FitError` text: `0/N nodes are available: <count reason>, ... .`, the
/// histogram entries sorted as strings.
pub fn unschedulable_message(nodes: usize, reasons: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    if parts.is_empty() {
        format!("0/{nodes} nodes are available.")
    } else {
        format!("0/{nodes} nodes are available: {}.", parts.join(", "))
    }
}

fn backoff_after(failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1).min(16))
        .unwrap_or(u32::MAX);
    INITIAL_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

fn pod_scheduled_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == "PodScheduled")
}

/// The pod's conditions with `PodScheduled` replaced by `cond` (its transition time kept
/// when the status does not change).
fn with_pod_scheduled(pod: &Value, mut cond: Value) -> Vec<Value> {
    let mut conditions: Vec<Value> = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(old) = pod_scheduled_condition(pod)
        && old["status"] == cond["status"]
        && let Some(t) = old.get("lastTransitionTime").filter(|t| !t.is_null())
    {
        cond["lastTransitionTime"] = t.clone();
    }
    match conditions.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(c) => *c = cond,
        None => conditions.push(cond),
    }
    conditions
}

/// Write the `PodScheduled` condition built by `cond` from the current pod, conditional on
/// its resourceVersion; on a lost race, read the pod again and retry. `keep_going` says, for
/// a fresh read, whether the write still applies. Answers the written pod, or `None` when
/// `keep_going` said no or the pod is gone.
async fn write_pod_scheduled(
    ctx: &SchedulerContext,
    pod: &Value,
    cond: impl Fn(&Value) -> Option<Value>,
    keep_going: impl Fn(&Value) -> bool,
) -> Result<Option<Value>, ClusterError> {
    let ns = meta::namespace(pod);
    let name = meta::name(pod);
    let mut current = pod.clone();
    for _ in 0..CONFLICT_RETRIES {
        let Some(c) = cond(&current) else {
            return Ok(Some(current));
        };
        let patch = json!({
            "metadata": {"resourceVersion": meta::resource_version(&current)},
            "status": {"conditions": with_pod_scheduled(&current, c)},
        });
        match ctx
            .cluster
            .patch(
                ctx.kinds.pods,
                ns,
                name,
                &Patch::Merge(patch),
                Some("status"),
            )
            .await
        {
            Ok(p) => return Ok(Some(p)),
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) if e.is_conflict() => {
                current = match ctx.cluster.get(ctx.kinds.pods, ns, name).await {
                    Ok(p) => p,
                    Err(e) if e.is_not_found() => return Ok(None),
                    Err(e) => return Err(e),
                };
                if meta::uid(&current) != meta::uid(pod) || !keep_going(&current) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(ClusterError::Api {
        code: 409,
        reason: "Conflict".to_owned(),
        message: format!("pod {name} kept changing while its PodScheduled condition was written"),
    })
}

/// How a bind ended.
enum Bound {
    /// Bound; the pod as the API answered it, when it did.
    Yes(Option<Value>),
    /// Someone else bound the pod, or it went away or is being deleted.
    Lost,
}

/// Whether `err` says the API does not bind this way.
fn unsupported(via: BindVia, err: &ClusterError) -> bool {
    match via {
        BindVia::Binding => matches!(err.code(), Some(404 | 405 | 415)),
        // Kubernetes forbids changing `spec.nodeName` in an update.
        BindVia::Patch => matches!(err.code(), Some(403 | 405 | 415 | 422)),
    }
}

async fn bind_once(
    ctx: &SchedulerContext,
    via: BindVia,
    pod: &Value,
    node: &str,
) -> Result<Bound, ClusterError> {
    let ns = meta::namespace(pod);
    let name = meta::name(pod);
    match via {
        BindVia::Binding => {
            let binding = json!({
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": meta::uid(pod)},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            match ctx
                .cluster
                .create_subresource(ctx.kinds.pods, ns, name, "binding", &binding)
                .await
            {
                Ok(_) => Ok(Bound::Yes(None)),
                // "already assigned", or a uid precondition on a re-created pod
                Err(e) if e.is_conflict() => Ok(Bound::Lost),
                Err(e) => Err(e),
            }
        }
        BindVia::Patch => {
            let mut current = pod.clone();
            for _ in 0..CONFLICT_RETRIES {
                let patch = json!({
                    "metadata": {"resourceVersion": meta::resource_version(&current)},
                    "spec": {"nodeName": node},
                });
                match ctx
                    .cluster
                    .patch(ctx.kinds.pods, ns, name, &Patch::Merge(patch), None)
                    .await
                {
                    Ok(p) => return Ok(Bound::Yes(Some(p))),
                    Err(e) if e.is_conflict() => {
                        current = match ctx.cluster.get(ctx.kinds.pods, ns, name).await {
                            Ok(p) => p,
                            Err(e) if e.is_not_found() => return Ok(Bound::Lost),
                            Err(e) => return Err(e),
                        };
                        if meta::uid(&current) != meta::uid(pod) || !needs_scheduling(&current) {
                            return Ok(Bound::Lost);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(ClusterError::Api {
                code: 409,
                reason: "Conflict".to_owned(),
                message: format!("pod {name} kept changing while it was bound"),
            })
        }
    }
}

/// Bind `pod` to `node`, the way the API supports.
async fn bind(ctx: &SchedulerContext, pod: &Value, node: &str) -> Result<Bound, ClusterError> {
    let order = ctx.state.bind_order();
    let mut last = None;
    for via in order {
        match bind_once(ctx, via, pod, node).await {
            Ok(b) => {
                if let Bound::Yes(_) = b {
                    ctx.state.bind_via.store(via as u8, Ordering::Relaxed);
                }
                return Ok(b);
            }
            Err(e) if unsupported(via, &e) => {
                tracing::debug!(?via, error = %e, "the API does not bind this way; trying the other");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("the loop ran at least once and recorded its error"))
}

/// Schedule one pod.
pub async fn reconcile(
    pod: Arc<Value>,
    ctx: Arc<SchedulerContext>,
) -> Result<Action, SchedulerError> {
    let Some(key) = ObjectKey::of(&pod) else {
        return Ok(Action::await_change());
    };
    if !needs_scheduling(&pod) {
        return Ok(Action::await_change());
    }
    let uid = meta::uid(&pod).to_owned();
    let pod_generation = meta::generation(&pod);
    // Sampled before the caches are read: a change during the attempt forces another one.
    let cluster_generation = ctx.state.cluster_generation.load(Ordering::SeqCst);
    {
        let inner = ctx.state.lock();
        if inner.assumed.get(&key).is_some_and(|a| a.uid == uid) {
            // Bound (or being bound); the informer has not shown it yet.
            return Ok(Action::await_change());
        }
        if let Some(a) = inner.attempts.get(&key)
            && a.uid == uid
            && a.pod_generation == pod_generation
        {
            let now = Instant::now();
            if now < a.next_try {
                return Ok(Action::requeue(a.next_try - now));
            }
            let flush_at = a.at + UNSCHEDULABLE_FLUSH;
            if a.cluster_generation == cluster_generation && now < flush_at {
                return Ok(Action::requeue(flush_at - now));
            }
        }
    }

    match decide(&ctx, &key, &pod) {
        Decision::Node(node) => schedule_to(&ctx, &key, &pod, &node).await,
        Decision::Unschedulable(message) => {
            mark_unschedulable(&ctx, &key, &pod, &message, cluster_generation).await
        }
    }
}

async fn schedule_to(
    ctx: &SchedulerContext,
    key: &ObjectKey,
    pod: &Value,
    node: &str,
) -> Result<Action, SchedulerError> {
    let bound = match bind(ctx, pod, node).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            ctx.state.forget_assumed(key);
            return Ok(Action::await_change());
        }
        Err(e) => {
            ctx.state.forget_assumed(key);
            return Err(e.into());
        }
    };
    let after = match bound {
        Bound::Lost => {
            ctx.state.forget_assumed(key);
            return Ok(Action::await_change());
        }
        Bound::Yes(after) => after,
    };
    ctx.state.lock().attempts.remove(key);
    tracing::info!(pod = %key, node, "pod scheduled");
    ctx.recorder
        .publish(
            pod,
            EventType::Normal,
            "Scheduled",
            &format!("Successfully assigned {key} to {node}"),
        )
        .await;
    // The condition is informative (the node agent reports its own): a failure to write it
    // is logged, not retried, since the pod is bound either way.
    let current = match after {
        Some(p) => Ok(p),
        None => {
            ctx.cluster
                .get(ctx.kinds.pods, meta::namespace(pod), meta::name(pod))
                .await
        }
    };
    let now = meta::format_time(meta::now_seconds(&*ctx.clock));
    let result = match current {
        Ok(current) => {
            write_pod_scheduled(
                ctx,
                &current,
                |p| {
                    let done = pod_scheduled_condition(p).is_some_and(|c| c["status"] == "True");
                    (!done).then(|| {
                        json!({"type": "PodScheduled", "status": "True",
                           "lastProbeTime": null, "lastTransitionTime": now})
                    })
                },
                |p| node_name(p) == Some(node) && !meta::is_deleting(p),
            )
            .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result
        && !e.is_not_found()
    {
        tracing::warn!(pod = %key, error = %e, "could not set PodScheduled=True");
    }
    Ok(Action::await_change())
}

async fn mark_unschedulable(
    ctx: &SchedulerContext,
    key: &ObjectKey,
    pod: &Value,
    message: &str,
    cluster_generation: u64,
) -> Result<Action, SchedulerError> {
    tracing::debug!(pod = %key, message, "pod unschedulable");
    ctx.recorder
        .publish(pod, EventType::Warning, "FailedScheduling", message)
        .await;
    let now = meta::format_time(meta::now_seconds(&*ctx.clock));
    let written = write_pod_scheduled(
        ctx,
        pod,
        |p| {
            let same = pod_scheduled_condition(p).is_some_and(|c| {
                c["status"] == "False" && c["reason"] == "Unschedulable" && c["message"] == message
            });
            (!same).then(|| {
                json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                       "message": message, "lastProbeTime": null, "lastTransitionTime": now})
            })
        },
        needs_scheduling,
    )
    .await?;
    if written.is_none() {
        // Gone or bound meanwhile: its change brings it back if anything is left to do.
        return Ok(Action::await_change());
    }
    let now = Instant::now();
    let mut inner = ctx.state.lock();
    let failures = inner
        .attempts
        .get(key)
        .filter(|a| a.uid == meta::uid(pod))
        .map_or(0, |a| a.failures)
        .saturating_add(1);
    let delay = backoff_after(failures);
    inner.attempts.insert(
        key.clone(),
        Attempt {
            uid: meta::uid(pod).to_owned(),
            pod_generation: meta::generation(pod),
            cluster_generation,
            failures,
            at: now,
            next_try: now + delay,
        },
    );
    Ok(Action::requeue(UNSCHEDULABLE_FLUSH))
}
