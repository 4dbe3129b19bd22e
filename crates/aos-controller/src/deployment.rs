//! The Deployment controller, with the behaviour of Kubernetes' deployment
//! controller: one ReplicaSet per pod template (named
//! `<deployment>-<pod-template-hash>`), rolling updates with maxSurge and
//! maxUnavailable, Recreate, proportional scaling mid-rollout, revision
//! history cleanup, pause, and the status with its `Available` and
//! `Progressing` conditions.

use std::sync::Arc;
use std::time::Duration;

use aos_types::hash::{POD_TEMPLATE_HASH_LABEL, pod_template_hash};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use crate::cluster::{Cluster, ClusterError, DeleteParams, ObjectKey};
use crate::events::{EventType, Recorder};
use crate::kinds::Kinds;
use crate::meta::{self, Clock, OwnerRef};
use crate::runtime::{Action, Cache, Controller, Informer, InformerEvent};
use crate::selector::Selector;

pub mod rollout;

#[cfg(test)]
mod tests;

use rollout::{RsState, Spec, Strategy};

/// Annotation with the revision of a ReplicaSet (and of its Deployment).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Annotation with the Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// Annotation with `replicas + maxSurge` when the ReplicaSet was last scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations that are not copied to ReplicaSets.
const SKIPPED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];

/// Condition reasons, as Kubernetes names them.
pub mod reason {
    /// Progressing: a new ReplicaSet was created.
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    /// Progressing: the new ReplicaSet already existed.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// Progressing: the rollout moved.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// Progressing: the rollout completed.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// Progressing false: no progress within `progressDeadlineSeconds`.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// Progressing unknown: paused.
    pub const PAUSED: &str = "DeploymentPaused";
    /// Progressing unknown: resumed.
    pub const RESUMED: &str = "DeploymentResumed";
    /// Progressing false: the ReplicaSet could not be created.
    pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
    /// Available true.
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Available false.
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
}

/// A failed Deployment reconciliation.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// An API call failed.
    #[error("api call failed: {0}")]
    Cluster(#[from] ClusterError),
    /// The object could not be decoded.
    #[error("cannot decode object: {0}")]
    Decode(#[from] serde_json::Error),
    /// The selector cannot be parsed.
    #[error(transparent)]
    Selector(#[from] crate::selector::SelectorError),
    /// maxSurge or maxUnavailable is invalid.
    #[error(transparent)]
    IntOrPercent(#[from] rollout::IntOrPercentError),
    /// The ReplicaSet name for the template is taken by another template; collisionCount was raised.
    #[error(
        "replica set name {0} is taken by another template; retrying with a new collision count"
    )]
    HashCollision(String),
}

/// What the Deployment controller works with.
pub struct DeploymentContext {
    /// The API.
    pub cluster: Arc<dyn Cluster>,
    /// Resource types.
    pub kinds: Kinds,
    /// ReplicaSet cache.
    pub replicasets: Cache,
    /// Pod cache.
    pub pods: Cache,
    /// Event recorder.
    pub recorder: Recorder,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

/// Build the controller: Deployments, their ReplicaSets, and deletions of their pods.
pub fn controller(deployments: Informer, replicasets: Informer, pods: Informer) -> Controller {
    let rs_cache = replicasets.cache().clone();
    Controller::new("deployment", deployments)
        .owns(replicasets, "Deployment")
        .watches(pods, move |ev| {
            // Recreate waits for old pods to be gone: their deletion is news.
            let InformerEvent::Deleted(pod) = ev else {
                return Vec::new();
            };
            let Some(rs_ref) = meta::controller_ref(pod).filter(|r| r.kind == "ReplicaSet") else {
                return Vec::new();
            };
            let Some(ns) = meta::namespace(pod) else {
                return Vec::new();
            };
            let Some(rs) = rs_cache.get(&ObjectKey::new(ns, &rs_ref.name)) else {
                return Vec::new();
            };
            meta::controller_ref(&rs)
                .filter(|r| r.kind == "Deployment")
                .map(|r| ObjectKey::new(ns, r.name))
                .into_iter()
                .collect()
        })
}

/// Errors retry with the key's exponential backoff.
pub fn error_policy(
    _obj: Arc<Value>,
    _err: &DeploymentError,
    _ctx: Arc<DeploymentContext>,
) -> Action {
    Action::backoff()
}

/// One ReplicaSet of the Deployment.
#[derive(Clone, Debug)]
struct Rs {
    obj: Value,
    state: RsState,
    revision: i64,
}

impl Rs {
    fn from_value(obj: Value) -> Self {
        let int = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0) as i32;
        let ann_int = |k: &str| meta::annotation(&obj, k).and_then(|v| v.parse::<i32>().ok());
        let state = RsState {
            name: meta::name(&obj).to_owned(),
            created: meta::creation_timestamp(&obj),
            replicas: obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .map_or(1, |r| r as i32),
            status_replicas: int("/status/replicas"),
            ready: int("/status/readyReplicas"),
            available: int("/status/availableReplicas"),
            desired_annotation: ann_int(DESIRED_REPLICAS_ANNOTATION),
            max_annotation: ann_int(MAX_REPLICAS_ANNOTATION),
        };
        let revision = meta::annotation(&obj, REVISION_ANNOTATION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Self {
            obj,
            state,
            revision,
        }
    }

    fn uid(&self) -> &str {
        meta::uid(&self.obj)
    }

    fn template(&self) -> Value {
        normalize_template(self.obj.pointer("/spec/template").unwrap_or(&Value::Null))
    }
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn get_condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// `SetDeploymentCondition`: no change when status and reason are the same;
/// the transition time is kept when only the reason changes.
fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(cur) = get_condition(status, &cond.type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    let mut conds: Vec<DeploymentCondition> = status
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != cond.type_)
        .collect();
    conds.push(cond);
    status.conditions = Some(conds);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conds) = status.conditions.as_mut() {
        conds.retain(|c| c.type_ != type_);
        if conds.is_empty() {
            status.conditions = None;
        }
    }
}

/// Zero counts are omitted on the wire, as Go's `omitempty` does.
fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn normalize_status(mut s: DeploymentStatus) -> DeploymentStatus {
    for f in [
        &mut s.replicas,
        &mut s.updated_replicas,
        &mut s.ready_replicas,
        &mut s.available_replicas,
        &mut s.unavailable_replicas,
    ] {
        if *f == Some(0) {
            *f = None;
        }
    }
    if s.observed_generation == Some(0) {
        s.observed_generation = None;
    }
    if s.conditions.as_ref().is_some_and(Vec::is_empty) {
        s.conditions = None;
    }
    s
}

/// Reconcile one Deployment (`syncDeployment`).
pub async fn reconcile(
    obj: Arc<Value>,
    ctx: Arc<DeploymentContext>,
) -> Result<Action, DeploymentError> {
    let mut s = Sync::new(&ctx, &obj)?;
    s.run().await
}

/// The state of one reconciliation.
struct Sync<'a> {
    ctx: &'a DeploymentContext,
    /// The Deployment as last written or read.
    d: Value,
    ns: String,
    name: String,
    spec: Spec,
    selector: Value,
    template: Value,
    min_ready_seconds: i32,
    revision_history_limit: i32,
    progress_deadline_seconds: Option<i32>,
    paused: bool,
    status: DeploymentStatus,
    rses: Vec<Rs>,
    new: Option<usize>,
    now: Timestamp,
}

impl<'a> Sync<'a> {
    fn new(ctx: &'a DeploymentContext, obj: &Value) -> Result<Self, DeploymentError> {
        let dep: Deployment = meta::typed(obj)?;
        let spec = dep.spec.unwrap_or_default();
        let strategy = match spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) {
            Some("Recreate") => Strategy::Recreate,
            _ => {
                let ru = spec
                    .strategy
                    .as_ref()
                    .and_then(|s| s.rolling_update.clone())
                    .unwrap_or_default();
                Strategy::RollingUpdate {
                    max_surge: ru
                        .max_surge
                        .unwrap_or_else(|| IntOrString::String("25%".into())),
                    max_unavailable: ru
                        .max_unavailable
                        .unwrap_or_else(|| IntOrString::String("25%".into())),
                }
            }
        };
        if let Strategy::RollingUpdate {
            max_surge,
            max_unavailable,
        } = &strategy
        {
            rollout::resolve_fenceposts(max_surge, max_unavailable, spec.replicas.unwrap_or(1))?;
        }
        let mut template = obj.pointer("/spec/template").cloned().unwrap_or(json!({}));
        if let Some(m) = template.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("creationTimestamp");
        }
        Ok(Self {
            ctx,
            d: obj.clone(),
            ns: meta::namespace(obj).unwrap_or("default").to_owned(),
            name: meta::name(obj).to_owned(),
            spec: Spec {
                replicas: spec.replicas.unwrap_or(1),
                strategy,
            },
            selector: obj.pointer("/spec/selector").cloned().unwrap_or(json!({})),
            template,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            revision_history_limit: spec.revision_history_limit.unwrap_or(10),
            // apps/v1 defaults progressDeadlineSeconds to 600; i32::MAX means "none".
            progress_deadline_seconds: Some(spec.progress_deadline_seconds.unwrap_or(600))
                .filter(|s| *s != i32::MAX),
            paused: spec.paused.unwrap_or(false),
            status: normalize_status(dep.status.unwrap_or_default()),
            rses: Vec::new(),
            new: None,
            now: meta::now_seconds(&*ctx.clock),
        })
    }

    fn rt_d(&self) -> &'static aos_types::ResourceType {
        self.ctx.kinds.deployments
    }

    fn rt_rs(&self) -> &'static aos_types::ResourceType {
        self.ctx.kinds.replicasets
    }

    async fn event(&self, type_: EventType, reason: &str, message: &str) {
        self.ctx
            .recorder
            .publish(&self.d, type_, reason, message)
            .await;
    }

    async fn run(&mut self) -> Result<Action, DeploymentError> {
        let selector = Selector::from_object(&self.selector)?;
        if selector.is_empty() {
            self.event(
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            .await;
            let mut st = self.status.clone();
            st.observed_generation = Some(meta::generation(&self.d));
            self.write_status(st).await?;
            return Ok(Action::await_change());
        }
        self.load_replica_sets(&selector).await?;

        if meta::is_deleting(&self.d) {
            self.find_new_and_sync_revision(false).await?;
            self.sync_status().await?;
            return Ok(Action::await_change());
        }

        self.check_paused_conditions().await?;
        if self.paused || self.is_scaling_event() {
            return self.sync_scaling().await;
        }
        match self.spec.strategy {
            Strategy::Recreate => self.rollout_recreate().await,
            Strategy::RollingUpdate { .. } => self.rollout_rolling().await,
        }
    }

    /// The ReplicaSets this Deployment controls; orphans matching its selector are adopted.
    async fn load_replica_sets(&mut self, selector: &Selector) -> Result<(), DeploymentError> {
        let uid = meta::uid(&self.d).to_owned();
        let mut rses = Vec::new();
        for rs in self.ctx.replicasets.list_namespace(Some(&self.ns)) {
            match meta::controller_ref(&rs) {
                Some(r) if r.uid == uid => rses.push(Rs::from_value((*rs).clone())),
                Some(_) => {}
                None => {
                    if meta::is_deleting(&self.d)
                        || meta::is_deleting(&rs)
                        || !selector.matches(&meta::labels(&rs))
                    {
                        continue;
                    }
                    let mut adopted = (*rs).clone();
                    let mut refs = adopted
                        .pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    refs.push(OwnerRef::controller_of(&self.d).to_value());
                    meta::ensure_object(&mut adopted, "metadata")["ownerReferences"] =
                        Value::Array(refs);
                    match self
                        .ctx
                        .cluster
                        .replace(self.rt_rs(), Some(&self.ns), meta::name(&rs), &adopted)
                        .await
                    {
                        Ok(updated) => {
                            tracing::info!(deployment = %self.name, replicaset = meta::name(&rs), "adopted replica set");
                            rses.push(Rs::from_value(updated));
                        }
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        rses.sort_by(|a, b| rollout::by_creation(&a.state, &b.state));
        self.rses = rses;
        Ok(())
    }

    fn old_indices(&self) -> Vec<usize> {
        (0..self.rses.len())
            .filter(|i| Some(*i) != self.new)
            .collect()
    }

    fn states(&self) -> Vec<RsState> {
        self.rses.iter().map(|r| r.state.clone()).collect()
    }

    /// `FindNewReplicaSet`: the oldest ReplicaSet whose template equals the Deployment's.
    fn find_new(&self) -> Option<usize> {
        let want = normalize_template(&self.template);
        self.rses.iter().position(|rs| rs.template() == want)
    }

    fn max_surge(&self) -> i32 {
        rollout::max_surge(&self.spec)
    }

    async fn patch_deployment_revision(&mut self, revision: &str) -> Result<(), DeploymentError> {
        if meta::annotation(&self.d, REVISION_ANNOTATION) == Some(revision) {
            return Ok(());
        }
        let mut updated = self.d.clone();
        meta::set_annotation(&mut updated, REVISION_ANNOTATION, revision);
        let res = self
            .ctx
            .cluster
            .replace(self.rt_d(), Some(&self.ns), &self.name, &updated)
            .await?;
        self.d = res;
        Ok(())
    }

    /// Write the status through the status subresource, if it changed.
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), DeploymentError> {
        let status = normalize_status(status);
        let current: DeploymentStatus = normalize_status(
            self.d
                .get("status")
                .map(meta::typed)
                .transpose()?
                .unwrap_or_default(),
        );
        if status == current {
            self.status = status;
            return Ok(());
        }
        let mut body = self.d.clone();
        body["status"] = serde_json::to_value(&status)?;
        let res = self
            .ctx
            .cluster
            .replace_status(self.rt_d(), Some(&self.ns), &self.name, &body)
            .await?;
        self.d = res;
        self.status = status;
        Ok(())
    }

    /// `SetNewReplicaSetAnnotations`: copy the Deployment's annotations, raise the revision,
    /// and on creation set the replicas annotations. Returns whether anything changed.
    fn set_new_rs_annotations(&self, rs: &mut Value, new_revision: i64, exists: bool) -> bool {
        let mut changed = false;
        let d_ann = meta::string_map(&self.d, "/metadata/annotations");
        for (k, v) in &d_ann {
            if SKIPPED_ANNOTATIONS.contains(&k.as_str()) {
                continue;
            }
            changed |= meta::set_annotation(rs, k, v);
        }
        let old_revision = meta::annotation(rs, REVISION_ANNOTATION).map(str::to_owned);
        let old_revision_int = match old_revision.as_deref() {
            None | Some("") => 0,
            Some(v) => match v.parse::<i64>() {
                Ok(n) => n,
                Err(_) => return changed,
            },
        };
        if old_revision_int < new_revision {
            changed |= meta::set_annotation(rs, REVISION_ANNOTATION, &new_revision.to_string());
        }
        if !exists {
            changed |= self.set_replicas_annotations(rs);
        }
        changed
    }

    fn set_replicas_annotations(&self, rs: &mut Value) -> bool {
        let mut changed = meta::set_annotation(
            rs,
            DESIRED_REPLICAS_ANNOTATION,
            &self.spec.replicas.to_string(),
        );
        changed |= meta::set_annotation(
            rs,
            MAX_REPLICAS_ANNOTATION,
            &(self.spec.replicas + self.max_surge()).to_string(),
        );
        changed
    }

    fn replicas_annotations_need_update(&self, rs: &Value) -> bool {
        meta::annotation(rs, DESIRED_REPLICAS_ANNOTATION) != Some(&self.spec.replicas.to_string())
            || meta::annotation(rs, MAX_REPLICAS_ANNOTATION)
                != Some(&(self.spec.replicas + self.max_surge()).to_string())
    }

    /// `getAllReplicaSetsAndSyncRevision` / `getNewReplicaSet`: find (or create) the new
    /// ReplicaSet and bring revisions up to date.
    async fn find_new_and_sync_revision(&mut self, create: bool) -> Result<(), DeploymentError> {
        self.new = self.find_new();
        let max_old_revision = self
            .old_indices()
            .into_iter()
            .map(|i| self.rses[i].revision)
            .max()
            .unwrap_or(0);
        let new_revision = max_old_revision + 1;

        if let Some(i) = self.new {
            let mut rs = self.rses[i].obj.clone();
            let ann_changed = self.set_new_rs_annotations(&mut rs, new_revision, true);
            let min_ready_changed = rs
                .pointer("/spec/minReadySeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                != i64::from(self.min_ready_seconds);
            if ann_changed || min_ready_changed {
                rs["spec"]["minReadySeconds"] = json!(self.min_ready_seconds);
                let updated = self
                    .ctx
                    .cluster
                    .replace(self.rt_rs(), Some(&self.ns), &self.rses[i].state.name, &rs)
                    .await?;
                self.rses[i] = Rs::from_value(updated);
            }
            let revision = meta::annotation(&self.rses[i].obj, REVISION_ANNOTATION)
                .unwrap_or_default()
                .to_owned();
            self.patch_deployment_revision(&revision).await?;
            if get_condition(&self.status, "Progressing").is_none()
                && self.progress_deadline_seconds.is_some()
            {
                let mut st = self.status.clone();
                let msg = format!("Found new replica set \"{}\"", self.rses[i].state.name);
                set_condition(
                    &mut st,
                    new_condition("Progressing", "True", reason::FOUND_NEW_RS, msg, self.now),
                );
                self.write_status(st).await?;
            }
            return Ok(());
        }
        if !create {
            return Ok(());
        }

        let collision_count = self.status.collision_count;
        let hash = pod_template_hash(&self.template, collision_count);
        let rs_name = format!("{}-{hash}", self.name);
        let mut template = self.template.clone();
        meta::ensure_object(meta::ensure_object(&mut template, "metadata"), "labels")
            [POD_TEMPLATE_HASH_LABEL] = json!(hash);
        let mut selector = self.selector.clone();
        meta::ensure_object(&mut selector, "matchLabels")[POD_TEMPLATE_HASH_LABEL] = json!(hash);
        let current_pods: i32 = self.rses.iter().map(|r| r.state.replicas).sum();
        let new_replicas = rollout::new_rs_new_replicas(&self.spec, current_pods, 0);
        let mut rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": self.ns,
                "labels": template["metadata"]["labels"].clone(),
                "ownerReferences": [OwnerRef::controller_of(&self.d).to_value()],
            },
            "spec": {
                "replicas": new_replicas,
                "minReadySeconds": self.min_ready_seconds,
                "selector": selector,
                "template": template,
            },
        });
        self.set_new_rs_annotations(&mut rs, new_revision, false);

        let (created, already_existed) = match self
            .ctx
            .cluster
            .create(self.rt_rs(), Some(&self.ns), &rs)
            .await
        {
            Ok(c) => (c, false),
            Err(e) if e.is_already_exists() => {
                let existing = self
                    .ctx
                    .cluster
                    .get(self.rt_rs(), Some(&self.ns), &rs_name)
                    .await?;
                let ours =
                    meta::controller_ref(&existing).is_some_and(|r| r.uid == meta::uid(&self.d));
                let same =
                    normalize_template(existing.pointer("/spec/template").unwrap_or(&Value::Null))
                        == normalize_template(&self.template);
                if ours && same {
                    (existing, true)
                } else {
                    let mut st = self.status.clone();
                    st.collision_count = Some(collision_count.unwrap_or(0) + 1);
                    self.write_status(st).await?;
                    return Err(DeploymentError::HashCollision(rs_name));
                }
            }
            Err(e) => {
                let mut st = self.status.clone();
                let msg = format!("Failed to create new replica set \"{rs_name}\": {e}");
                set_condition(
                    &mut st,
                    new_condition(
                        "Progressing",
                        "False",
                        reason::FAILED_RS_CREATE,
                        msg.clone(),
                        self.now,
                    ),
                );
                self.write_status(st).await?;
                self.event(EventType::Warning, reason::FAILED_RS_CREATE, &msg)
                    .await;
                return Err(e.into());
            }
        };
        if !already_existed && new_replicas > 0 {
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                &format!("Scaled up replica set {rs_name} from 0 to {new_replicas}"),
            )
            .await;
        }
        self.rses.push(Rs::from_value(created));
        self.new = Some(self.rses.len() - 1);
        self.patch_deployment_revision(&new_revision.to_string())
            .await?;
        if !already_existed && self.progress_deadline_seconds.is_some() {
            let mut st = self.status.clone();
            let msg = format!("Created new replica set \"{rs_name}\"");
            set_condition(
                &mut st,
                new_condition("Progressing", "True", reason::NEW_RS_CREATED, msg, self.now),
            );
            self.write_status(st).await?;
        }
        Ok(())
    }

    /// `scaleReplicaSet`: write a new size (and the replicas annotations); record an event
    /// when the size changed.
    async fn scale_rs(
        &mut self,
        i: usize,
        new_size: i32,
        force_annotations: bool,
    ) -> Result<bool, DeploymentError> {
        let old_size = self.rses[i].state.replicas;
        let size_changed = old_size != new_size;
        let annotate =
            force_annotations && self.replicas_annotations_need_update(&self.rses[i].obj);
        if !size_changed && !annotate {
            return Ok(false);
        }
        let mut rs = self.rses[i].obj.clone();
        rs["spec"]["replicas"] = json!(new_size);
        self.set_replicas_annotations(&mut rs);
        let name = self.rses[i].state.name.clone();
        let updated = self
            .ctx
            .cluster
            .replace(self.rt_rs(), Some(&self.ns), &name, &rs)
            .await?;
        self.rses[i] = Rs::from_value(updated);
        if size_changed {
            let op = if new_size > old_size { "up" } else { "down" };
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                &format!("Scaled {op} replica set {name} from {old_size} to {new_size}"),
            )
            .await;
        }
        Ok(size_changed)
    }

    /// `isScalingEvent`: an active ReplicaSet was sized for another replica count.
    fn is_scaling_event(&self) -> bool {
        self.rses.iter().filter(|r| r.state.replicas > 0).any(|r| {
            r.state
                .desired_annotation
                .is_some_and(|d| d != self.spec.replicas)
        })
    }

    /// `checkPausedConditions`.
    async fn check_paused_conditions(&mut self) -> Result<(), DeploymentError> {
        if self.progress_deadline_seconds.is_none() {
            return Ok(());
        }
        let paused_cond = get_condition(&self.status, "Progressing")
            .is_some_and(|c| c.reason.as_deref() == Some(reason::PAUSED));
        let mut st = self.status.clone();
        if self.paused && !paused_cond {
            set_condition(
                &mut st,
                new_condition(
                    "Progressing",
                    "Unknown",
                    reason::PAUSED,
                    "Deployment is paused".into(),
                    self.now,
                ),
            );
        } else if !self.paused && paused_cond {
            set_condition(
                &mut st,
                new_condition(
                    "Progressing",
                    "Unknown",
                    reason::RESUMED,
                    "Deployment is resumed".into(),
                    self.now,
                ),
            );
        } else {
            return Ok(());
        }
        self.write_status(st).await
    }

    /// `sync`: scaling (and paused deployments): proportional scaling, cleanup when paused, status.
    async fn sync_scaling(&mut self) -> Result<Action, DeploymentError> {
        self.find_new_and_sync_revision(false).await?;
        let mut states = self.states();
        let before: Vec<i32> = states.iter().map(|s| s.replicas).collect();
        let active: Vec<usize> = (0..states.len()).filter(|i| before[*i] > 0).collect();
        let status_replicas = self.status.replicas.unwrap_or(0);
        let changed = rollout::scale(&self.spec, status_replicas, &mut states, self.new);
        let proportional = active.len() > 1
            && !self
                .new
                .is_some_and(|n| rollout::is_saturated(&self.spec, &self.rses[n].state))
            && matches!(self.spec.strategy, Strategy::RollingUpdate { .. });
        if proportional {
            // Every active ReplicaSet gets the new replicas annotations, resized or not.
            for i in active {
                self.scale_rs(i, states[i].replicas, true).await?;
            }
        } else {
            for i in changed {
                self.scale_rs(i, states[i].replicas, true).await?;
            }
        }
        if self.paused {
            self.cleanup().await?;
        }
        self.sync_status().await?;
        Ok(Action::await_change())
    }

    /// `rolloutRolling`.
    async fn rollout_rolling(&mut self) -> Result<Action, DeploymentError> {
        self.find_new_and_sync_revision(true).await?;
        let Some(new) = self.new else {
            return self.sync_rollout_status().await;
        };
        if let Some(target) = rollout::reconcile_new(&self.spec, &self.states(), new) {
            self.scale_rs(new, target, false).await?;
            return self.sync_rollout_status().await;
        }
        let mut states = self.states();
        if rollout::reconcile_old(&self.spec, &mut states, Some(new)) {
            // Old ReplicaSets shrink oldest first, as Kubernetes scales them.
            for i in self.old_indices() {
                if states[i].replicas != self.rses[i].state.replicas {
                    self.scale_rs(i, states[i].replicas, false).await?;
                }
            }
            return self.sync_rollout_status().await;
        }
        if self.complete(&self.status) {
            self.cleanup().await?;
        }
        self.sync_rollout_status().await
    }

    /// `rolloutRecreate`.
    async fn rollout_recreate(&mut self) -> Result<Action, DeploymentError> {
        self.find_new_and_sync_revision(false).await?;
        let mut scaled_down = false;
        for i in self.old_indices() {
            if self.rses[i].state.replicas != 0 {
                self.scale_rs(i, 0, false).await?;
                scaled_down = true;
            }
        }
        if scaled_down || self.old_pods_running() {
            return self.sync_rollout_status().await;
        }
        if self.new.is_none() {
            self.find_new_and_sync_revision(true).await?;
        }
        if let Some(new) = self.new {
            let replicas = self.spec.replicas;
            self.scale_rs(new, replicas, false).await?;
        }
        if self.complete(&self.status) {
            self.cleanup().await?;
        }
        self.sync_rollout_status().await
    }

    /// `oldPodsRunning`: old ReplicaSets still report pods, or old pods are not finished.
    fn old_pods_running(&self) -> bool {
        let olds = self.old_indices();
        if olds
            .iter()
            .map(|i| self.rses[*i].state.status_replicas)
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let old_uids: Vec<&str> = olds.iter().map(|i| self.rses[*i].uid()).collect();
        self.ctx
            .pods
            .list_namespace(Some(&self.ns))
            .iter()
            .any(|p| {
                meta::controller_ref(p).is_some_and(|r| old_uids.contains(&r.uid.as_str()))
                    && !matches!(
                        p.pointer("/status/phase").and_then(Value::as_str),
                        Some("Failed" | "Succeeded")
                    )
            })
    }

    /// `cleanupDeployment`: delete the oldest empty old ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&mut self) -> Result<(), DeploymentError> {
        let mut cleanable: Vec<usize> = self
            .old_indices()
            .into_iter()
            .filter(|i| !meta::is_deleting(&self.rses[*i].obj))
            .collect();
        let diff = cleanable.len() as i64 - i64::from(self.revision_history_limit);
        if diff <= 0 {
            return Ok(());
        }
        // ReplicaSetsByRevision: lower revision first, then older.
        cleanable.sort_by(|a, b| {
            let (ra, rb) = (&self.rses[*a], &self.rses[*b]);
            ra.revision
                .cmp(&rb.revision)
                .then_with(|| rollout::by_creation(&ra.state, &rb.state))
        });
        let mut deleted = Vec::new();
        for &i in cleanable.iter().take(diff as usize) {
            let rs = &self.rses[i];
            let observed = rs
                .obj
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if rs.state.status_replicas != 0
                || rs.state.replicas != 0
                || meta::generation(&rs.obj) > observed
            {
                continue;
            }
            tracing::info!(deployment = %self.name, replicaset = %rs.state.name, "deleting old replica set beyond revision history");
            let params = DeleteParams {
                precondition_uid: Some(rs.uid().to_owned()),
                ..Default::default()
            };
            match self
                .ctx
                .cluster
                .delete(self.rt_rs(), Some(&self.ns), &rs.state.name, &params)
                .await
            {
                Ok(()) => deleted.push(i),
                Err(e) if e.is_not_found() => deleted.push(i),
                Err(e) => return Err(e.into()),
            }
        }
        // Keep indices valid: remove from the back.
        deleted.sort_unstable();
        for i in deleted.into_iter().rev() {
            self.rses.remove(i);
            if let Some(n) = self.new
                && n > i
            {
                self.new = Some(n - 1);
            }
        }
        Ok(())
    }

    /// `calculateStatus`.
    fn calculate_status(&self) -> DeploymentStatus {
        let all: Vec<&RsState> = self.rses.iter().map(|r| &r.state).collect();
        let available = rollout::available_count(&all);
        let total = rollout::replica_count(&all);
        let mut st = DeploymentStatus {
            observed_generation: Some(meta::generation(&self.d)),
            replicas: nonzero(all.iter().map(|r| r.status_replicas).sum()),
            updated_replicas: nonzero(self.new.map_or(0, |n| self.rses[n].state.status_replicas)),
            ready_replicas: nonzero(all.iter().map(|r| r.ready).sum()),
            available_replicas: nonzero(available),
            unavailable_replicas: nonzero((total - available).max(0)),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
            ..Default::default()
        };
        if available >= self.spec.replicas - rollout::max_unavailable(&self.spec) {
            set_condition(
                &mut st,
                new_condition(
                    "Available",
                    "True",
                    reason::MIN_AVAILABLE,
                    "Deployment has minimum availability.".into(),
                    self.now,
                ),
            );
        } else {
            set_condition(
                &mut st,
                new_condition(
                    "Available",
                    "False",
                    reason::MIN_UNAVAILABLE,
                    "Deployment does not have minimum availability.".into(),
                    self.now,
                ),
            );
        }
        st
    }

    /// `syncDeploymentStatus`.
    async fn sync_status(&mut self) -> Result<(), DeploymentError> {
        let st = self.calculate_status();
        self.write_status(st).await
    }

    /// `DeploymentComplete`.
    fn complete(&self, st: &DeploymentStatus) -> bool {
        let r = self.spec.replicas;
        st.updated_replicas.unwrap_or(0) == r
            && st.replicas.unwrap_or(0) == r
            && st.available_replicas.unwrap_or(0) == r
            && st.observed_generation.unwrap_or(0) >= meta::generation(&self.d)
    }

    /// `DeploymentProgressing`: compared with the stored status.
    fn progressing(&self, new: &DeploymentStatus) -> bool {
        let old = &self.status;
        let g = |o: Option<i32>| o.unwrap_or(0);
        let old_old = g(old.replicas) - g(old.updated_replicas);
        let new_old = g(new.replicas) - g(new.updated_replicas);
        g(new.updated_replicas) > g(old.updated_replicas)
            || new_old < old_old
            || g(new.ready_replicas) > g(old.ready_replicas)
            || g(new.available_replicas) > g(old.available_replicas)
    }

    /// `DeploymentTimedOut`.
    fn timed_out(&self, st: &DeploymentStatus) -> bool {
        let Some(deadline) = self.progress_deadline_seconds else {
            return false;
        };
        let Some(cond) = get_condition(st, "Progressing") else {
            return false;
        };
        match cond.reason.as_deref() {
            Some(reason::NEW_RS_AVAILABLE) => false,
            Some(reason::TIMED_OUT) => true,
            _ => cond.last_update_time.as_ref().is_some_and(|t| {
                t.0.checked_add(jiff::SignedDuration::from_secs(i64::from(deadline)))
                    .is_ok_and(|end| end < self.now)
            }),
        }
    }

    fn rs_or_deployment_message(&self, rs_fmt: &str, d_fmt: &str) -> String {
        match self.new {
            Some(n) => rs_fmt.replace("{}", &format!("\"{}\"", self.rses[n].state.name)),
            None => d_fmt.replace("{}", &format!("\"{}\"", self.name)),
        }
    }

    /// `syncRolloutStatus`, returning when to look again for the progress deadline.
    async fn sync_rollout_status(&mut self) -> Result<Action, DeploymentError> {
        let mut st = self.calculate_status();
        if self.progress_deadline_seconds.is_none() {
            remove_condition(&mut st, "Progressing");
        }
        let current = get_condition(&self.status, "Progressing").cloned();
        let is_complete = st.replicas == st.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(reason::NEW_RS_AVAILABLE));
        if self.progress_deadline_seconds.is_some() && !is_complete {
            if self.complete(&st) {
                let msg = self.rs_or_deployment_message(
                    "ReplicaSet {} has successfully progressed.",
                    "Deployment {} has successfully progressed.",
                );
                set_condition(
                    &mut st,
                    new_condition(
                        "Progressing",
                        "True",
                        reason::NEW_RS_AVAILABLE,
                        msg,
                        self.now,
                    ),
                );
            } else if self.progressing(&st) {
                let msg = self.rs_or_deployment_message(
                    "ReplicaSet {} is progressing.",
                    "Deployment {} is progressing.",
                );
                let mut cond =
                    new_condition("Progressing", "True", reason::RS_UPDATED, msg, self.now);
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        cond.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut st, "Progressing");
                }
                set_condition(&mut st, cond);
            } else if self.timed_out(&st) {
                let msg = self.rs_or_deployment_message(
                    "ReplicaSet {} has timed out progressing.",
                    "Deployment {} has timed out progressing.",
                );
                set_condition(
                    &mut st,
                    new_condition("Progressing", "False", reason::TIMED_OUT, msg, self.now),
                );
            }
        }
        let st = normalize_status(st);
        if st == self.status {
            return Ok(self.requeue_stuck(&st));
        }
        if get_condition(&st, "Progressing")
            .is_some_and(|c| c.reason.as_deref() == Some(reason::TIMED_OUT))
            && get_condition(&self.status, "Progressing")
                .is_none_or(|c| c.reason.as_deref() != Some(reason::TIMED_OUT))
        {
            let msg = get_condition(&st, "Progressing")
                .and_then(|c| c.message.clone())
                .unwrap_or_default();
            self.event(EventType::Warning, reason::TIMED_OUT, &msg)
                .await;
        }
        self.write_status(st).await?;
        Ok(Action::await_change())
    }

    /// `requeueStuckDeployment`: look again when the progress deadline would pass.
    fn requeue_stuck(&self, st: &DeploymentStatus) -> Action {
        let (Some(deadline), Some(cond)) = (
            self.progress_deadline_seconds,
            get_condition(st, "Progressing"),
        ) else {
            return Action::await_change();
        };
        if self.complete(st) || cond.reason.as_deref() == Some(reason::TIMED_OUT) {
            return Action::await_change();
        }
        let Some(last) = cond.last_update_time.as_ref() else {
            return Action::await_change();
        };
        let elapsed = self.now.duration_since(last.0).as_secs();
        let after = i64::from(deadline) - elapsed;
        if after < 1 {
            return Action::requeue(Duration::from_millis(100));
        }
        Action::requeue(Duration::from_secs(after as u64))
    }
}

/// The template with nulls and the hash label removed, for comparing templates
/// (Kubernetes' `EqualIgnoreHash`).
pub fn normalize_template(template: &Value) -> Value {
    fn strip_nulls(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => Some(Value::Object(
                m.iter()
                    .filter_map(|(k, v)| strip_nulls(v).map(|v| (k.clone(), v)))
                    .collect(),
            )),
            Value::Array(a) => Some(Value::Array(
                a.iter()
                    .map(|v| strip_nulls(v).unwrap_or(Value::Null))
                    .collect(),
            )),
            other => Some(other.clone()),
        }
    }
    let mut t = strip_nulls(template).unwrap_or(Value::Null);
    if let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
            if labels.is_empty() {
                meta.remove("labels");
            }
        }
        if meta.is_empty() {
            t.as_object_mut()
                .expect("template is an object")
                .remove("metadata");
        }
    }
    t
}
