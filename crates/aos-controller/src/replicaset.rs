//! The ReplicaSet controller, as Kubernetes' replica set controller: create or
//! delete pods to match `spec.replicas` (slow-start batches, expectations),
//! adopt orphans that match the selector and release pods that stop
//! matching, delete the least valuable pods first, and report
//! replicas/fullyLabeled/ready/available in the status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::cluster::{Cluster, ClusterError, DeleteParams, ObjectKey};
use crate::events::{EventType, Recorder};
use crate::kinds::Kinds;
use crate::meta::{self, Clock, OwnerRef};
use crate::runtime::{Action, Cache, Controller, Informer, InformerEvent};
use crate::selector::Selector;

pub mod expectations;
pub mod rank;

#[cfg(test)]
mod tests;

use expectations::Expectations;

/// At most this many pods are created or deleted in one pass (`BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// The alphabet of generated name suffixes.
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A failed ReplicaSet reconciliation.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaSetError {
    /// An API call failed.
    #[error("api call failed: {0}")]
    Cluster(#[from] ClusterError),
    /// The selector cannot be parsed.
    #[error(transparent)]
    Selector(#[from] crate::selector::SelectorError),
    /// Some pods could not be created or deleted.
    #[error("{0}")]
    Manage(String),
}

/// What the ReplicaSet controller works with.
pub struct ReplicaSetContext {
    /// The API.
    pub cluster: Arc<dyn Cluster>,
    /// Resource types.
    pub kinds: Kinds,
    /// Pod cache.
    pub pods: Cache,
    /// ReplicaSet cache.
    pub replicasets: Cache,
    /// Event recorder.
    pub recorder: Recorder,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Pending creations and deletions per ReplicaSet.
    pub expectations: Arc<Expectations>,
}

fn pod_key(pod: &Value) -> String {
    format!(
        "{}/{}",
        meta::namespace(pod).unwrap_or_default(),
        meta::name(pod)
    )
}

fn rs_key_of_pod(pod: &Value) -> Option<ObjectKey> {
    let r = meta::controller_ref(pod).filter(|r| r.kind == "ReplicaSet")?;
    Some(ObjectKey::new(meta::namespace(pod)?, r.name))
}

/// Build the controller: ReplicaSets and their pods. Pod events settle expectations;
/// orphan pods wake the ReplicaSets whose selector matches them.
pub fn controller(
    replicasets: Informer,
    pods: Informer,
    expectations: Arc<Expectations>,
) -> Controller {
    let exp = expectations.clone();
    replicasets.add_handler(move |ev| {
        if let InformerEvent::Deleted(rs) = ev
            && let Some(key) = ObjectKey::of(rs)
        {
            exp.delete(&key);
        }
    });
    let rs_cache = replicasets.cache().clone();
    let matching_rs = move |pod: &Value| -> Vec<ObjectKey> {
        let Some(ns) = meta::namespace(pod) else {
            return Vec::new();
        };
        let labels = meta::labels(pod);
        rs_cache
            .list_namespace(Some(ns))
            .iter()
            .filter(|rs| {
                rs.pointer("/spec/selector")
                    .and_then(|s| Selector::from_object(s).ok())
                    .is_some_and(|s| !s.is_empty() && s.matches(&labels))
            })
            .filter_map(|rs| ObjectKey::of(rs))
            .collect()
    };
    Controller::new("replicaset", replicasets).watches(pods, move |ev| {
        let mut keys = Vec::new();
        match ev {
            InformerEvent::Added(pod) => {
                if let Some(key) = rs_key_of_pod(pod) {
                    if meta::is_deleting(pod) {
                        expectations.deletion_observed(&key, &pod_key(pod));
                    } else {
                        expectations.creation_observed(&key);
                    }
                    keys.push(key);
                } else if !meta::is_deleting(pod) {
                    keys.extend(matching_rs(pod));
                }
            }
            InformerEvent::Modified { old, new } => {
                let new_key = rs_key_of_pod(new);
                if meta::is_deleting(new)
                    && !meta::is_deleting(old)
                    && let Some(key) = &new_key
                {
                    expectations.deletion_observed(key, &pod_key(new));
                }
                if let Some(old_key) = rs_key_of_pod(old)
                    && Some(&old_key) != new_key.as_ref()
                {
                    keys.push(old_key);
                }
                match new_key {
                    Some(k) => keys.push(k),
                    None => keys.extend(matching_rs(new)),
                }
            }
            InformerEvent::Deleted(pod) => {
                if let Some(key) = rs_key_of_pod(pod) {
                    expectations.deletion_observed(&key, &pod_key(pod));
                    keys.push(key);
                }
            }
        }
        keys
    })
}

/// Errors retry with the key's exponential backoff.
pub fn error_policy(
    _obj: Arc<Value>,
    _err: &ReplicaSetError,
    _ctx: Arc<ReplicaSetContext>,
) -> Action {
    Action::backoff()
}

/// `IsPodActive`: not finished and not being deleted.
pub fn is_pod_active(pod: &Value) -> bool {
    !meta::is_deleting(pod)
        && !matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        )
}

/// `IsPodReady`.
pub fn is_pod_ready(pod: &Value) -> bool {
    rank::ready_condition(pod)
        .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

/// `IsPodAvailable`: ready for at least `min_ready_seconds`. Returns also when
/// a ready pod will become available, if not yet.
pub fn pod_availability(
    pod: &Value,
    min_ready_seconds: i64,
    now: Timestamp,
) -> (bool, Option<Duration>) {
    if !is_pod_ready(pod) {
        return (false, None);
    }
    if min_ready_seconds <= 0 {
        return (true, None);
    }
    let Some(since) =
        meta::parse_time(rank::ready_condition(pod).and_then(|c| c.get("lastTransitionTime")))
    else {
        return (false, None);
    };
    let Ok(at) = since.checked_add(jiff::SignedDuration::from_secs(min_ready_seconds)) else {
        return (false, None);
    };
    if at < now {
        (true, None)
    } else {
        let wait = at.duration_since(now).unsigned_abs() + Duration::from_secs(1);
        (false, Some(wait))
    }
}

fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect()
}

/// The pod a ReplicaSet creates from its template.
pub fn pod_from_template(rs: &Value, name: &str) -> Value {
    let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut metadata = json!({
        "name": name,
        "namespace": meta::namespace(rs).unwrap_or("default"),
        "ownerReferences": [OwnerRef::controller_of(rs).to_value()],
    });
    for field in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template
            .pointer(&format!("/metadata/{field}"))
            .filter(|v| !v.is_null())
        {
            metadata[field] = v.clone();
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
        "status": {"phase": "Pending"},
    })
}

/// Reconcile one ReplicaSet (`syncReplicaSet`).
pub async fn reconcile(
    rs: Arc<Value>,
    ctx: Arc<ReplicaSetContext>,
) -> Result<Action, ReplicaSetError> {
    let Some(key) = ObjectKey::of(&rs) else {
        return Ok(Action::await_change());
    };
    let ns = key
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let needs_sync = ctx.expectations.satisfied(&key);
    let selector = Selector::from_object(rs.pointer("/spec/selector").unwrap_or(&Value::Null))?;
    let pods = claim_pods(&ctx, &rs, &ns, &selector).await?;
    let desired = rs
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0) as usize;

    let mut manage_err = None;
    let mut diff_sign = 0i64;
    if needs_sync && !meta::is_deleting(&rs) {
        diff_sign = pods.len() as i64 - desired as i64;
        if let Err(e) = manage_replicas(&ctx, &rs, &key, &ns, &pods, desired).await {
            manage_err = Some(e);
        }
    }

    let (status_changed_requeue, status) =
        calculate_status(&ctx, &rs, &pods, manage_err.as_ref(), diff_sign);
    update_status(&ctx, &rs, &ns, status).await?;
    if let Some(e) = manage_err {
        return Err(e);
    }
    Ok(match status_changed_requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// `claimPods`: the active pods this ReplicaSet controls, adopting matching orphans and
/// releasing owned pods that no longer match.
async fn claim_pods(
    ctx: &ReplicaSetContext,
    rs: &Value,
    ns: &str,
    selector: &Selector,
) -> Result<Vec<Value>, ReplicaSetError> {
    let uid = meta::uid(rs);
    let mut owned = Vec::new();
    for pod in ctx.pods.list_namespace(Some(ns)) {
        if !is_pod_active(&pod) {
            continue;
        }
        let labels = meta::labels(&pod);
        let matches = !selector.is_empty() && selector.matches(&labels);
        match meta::controller_ref(&pod) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push((*pod).clone());
                } else if !meta::is_deleting(rs) {
                    // Release: the pod's labels no longer match.
                    let mut released = (*pod).clone();
                    if let Some(refs) = released
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                    }
                    match ctx
                        .cluster
                        .replace(ctx.kinds.pods, Some(ns), meta::name(&pod), &released)
                        .await
                    {
                        Ok(_) => tracing::info!(
                            replicaset = meta::name(rs),
                            pod = meta::name(&pod),
                            "released pod"
                        ),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Some(_) => {}
            None => {
                if !matches || meta::is_deleting(rs) {
                    continue;
                }
                let mut adopted = (*pod).clone();
                let mut refs = adopted
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                refs.push(OwnerRef::controller_of(rs).to_value());
                meta::ensure_object(&mut adopted, "metadata")["ownerReferences"] =
                    Value::Array(refs);
                match ctx
                    .cluster
                    .replace(ctx.kinds.pods, Some(ns), meta::name(&pod), &adopted)
                    .await
                {
                    Ok(updated) => {
                        tracing::info!(
                            replicaset = meta::name(rs),
                            pod = meta::name(&pod),
                            "adopted pod"
                        );
                        owned.push(updated);
                    }
                    Err(e) if e.is_not_found() => {}
                    // Changed meanwhile (maybe adopted by another ReplicaSet): count again on retry
                    // rather than create a replacement now.
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(owned)
}

/// `manageReplicas`.
async fn manage_replicas(
    ctx: &ReplicaSetContext,
    rs: &Value,
    key: &ObjectKey,
    ns: &str,
    pods: &[Value],
    desired: usize,
) -> Result<(), ReplicaSetError> {
    let rs_name = meta::name(rs);
    if pods.len() < desired {
        let n = (desired - pods.len()).min(BURST_REPLICAS);
        ctx.expectations.expect_creations(key, n);
        // Slow start: 1, 2, 4, ... pods at a time; stop at the first failing batch.
        let mut remaining = n;
        let mut batch = 1usize;
        let mut created = 0usize;
        let mut first_err: Option<ClusterError> = None;
        while remaining > 0 {
            let size = batch.min(remaining);
            let results =
                futures::future::join_all((0..size).map(|_| create_pod(ctx, rs, ns))).await;
            let mut batch_failed = false;
            for r in results {
                match r {
                    Ok(()) => created += 1,
                    Err(e) => {
                        batch_failed = true;
                        first_err.get_or_insert(e);
                    }
                }
            }
            remaining -= size;
            if batch_failed {
                break;
            }
            batch *= 2;
        }
        // Creations that did not happen will not be observed.
        for _ in created..n {
            ctx.expectations.creation_observed(key);
        }
        if let Some(e) = first_err {
            return Err(ReplicaSetError::Manage(format!(
                "failed to create pods for {rs_name}: {e}"
            )));
        }
    } else if pods.len() > desired {
        let n = (pods.len() - desired).min(BURST_REPLICAS);
        let refs: Vec<&Value> = pods.iter().collect();
        let related = related_pods(ctx, rs, ns);
        let related_refs: Vec<&Value> = related.iter().map(|p| &**p).collect();
        let victims = rank::pods_to_delete(&refs, &related_refs, n);
        ctx.expectations
            .expect_deletions(key, victims.iter().map(|p| pod_key(p)).collect());
        let results = futures::future::join_all(victims.iter().map(|p| async move {
            let name = meta::name(p);
            let params = DeleteParams {
                precondition_uid: Some(meta::uid(p).to_owned()),
                ..Default::default()
            };
            match ctx
                .cluster
                .delete(ctx.kinds.pods, Some(ns), name, &params)
                .await
            {
                Ok(()) => {
                    ctx.recorder
                        .publish(
                            rs,
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {name}"),
                        )
                        .await;
                    Ok(())
                }
                Err(e) if e.is_not_found() => {
                    ctx.expectations.deletion_observed(key, &pod_key(p));
                    Ok(())
                }
                Err(e) => {
                    ctx.expectations.deletion_observed(key, &pod_key(p));
                    ctx.recorder
                        .publish(
                            rs,
                            EventType::Warning,
                            "FailedDelete",
                            &format!("Error deleting: {e}"),
                        )
                        .await;
                    Err(e)
                }
            }
        }))
        .await;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            return Err(ReplicaSetError::Manage(format!(
                "failed to delete pods of {rs_name}: {e}"
            )));
        }
    }
    Ok(())
}

async fn create_pod(ctx: &ReplicaSetContext, rs: &Value, ns: &str) -> Result<(), ClusterError> {
    let rs_name = meta::name(rs);
    let mut last = None;
    // A taken name is retried with another suffix.
    for _ in 0..3 {
        let name = format!("{rs_name}-{}", random_suffix());
        let pod = pod_from_template(rs, &name);
        match ctx.cluster.create(ctx.kinds.pods, Some(ns), &pod).await {
            Ok(_) => {
                ctx.recorder
                    .publish(
                        rs,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {name}"),
                    )
                    .await;
                return Ok(());
            }
            Err(e) if e.is_already_exists() => last = Some(e),
            Err(e) => {
                // A terminating namespace refuses new content: expected, not worth an event.
                if !(e.code() == Some(403) && e.to_string().contains("being terminated")) {
                    ctx.recorder
                        .publish(
                            rs,
                            EventType::Warning,
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        )
                        .await;
                }
                return Err(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| ClusterError::Transport("pod name collision".to_owned())))
}

/// Active pods of every ReplicaSet controlled by the same owner (for co-location ranks).
fn related_pods(ctx: &ReplicaSetContext, rs: &Value, ns: &str) -> Vec<Arc<Value>> {
    let owner = meta::controller_ref(rs).map(|r| r.uid);
    let rs_uids: Vec<String> = match &owner {
        None => vec![meta::uid(rs).to_owned()],
        Some(owner_uid) => ctx
            .replicasets
            .list_namespace(Some(ns))
            .iter()
            .filter(|r| meta::controller_ref(r).is_some_and(|c| &c.uid == owner_uid))
            .map(|r| meta::uid(r).to_owned())
            .collect(),
    };
    ctx.pods
        .list_namespace(Some(ns))
        .into_iter()
        .filter(|p| {
            is_pod_active(p) && meta::controller_ref(p).is_some_and(|r| rs_uids.contains(&r.uid))
        })
        .collect()
}

/// `calculateStatus`: the new status, and when to look again for pods becoming available.
fn calculate_status(
    ctx: &ReplicaSetContext,
    rs: &Value,
    pods: &[Value],
    manage_err: Option<&ReplicaSetError>,
    diff: i64,
) -> (Option<Duration>, Value) {
    let now = meta::now_seconds(&*ctx.clock);
    let min_ready = rs
        .pointer("/spec/minReadySeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let template_labels: BTreeMap<String, String> =
        meta::string_map(rs, "/spec/template/metadata/labels");
    let (mut fully_labeled, mut ready, mut available) = (0i64, 0i64, 0i64);
    let mut next_check: Option<Duration> = None;
    for p in pods {
        let labels = meta::labels(p);
        if template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            fully_labeled += 1;
        }
        if is_pod_ready(p) {
            ready += 1;
        }
        let (avail, wait) = pod_availability(p, min_ready, now);
        if avail {
            available += 1;
        }
        if let Some(w) = wait {
            next_check = Some(next_check.map_or(w, |c| c.min(w)));
        }
    }
    let mut status = rs.get("status").cloned().unwrap_or(json!({}));
    if !status.is_object() {
        status = json!({});
    }
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has_failure = conditions
        .iter()
        .any(|c| c.get("type").and_then(Value::as_str) == Some("ReplicaFailure"));
    match manage_err {
        Some(e) if !has_failure => conditions.push(json!({
            "type": "ReplicaFailure",
            "status": "True",
            "reason": if diff < 0 { "FailedCreate" } else { "FailedDelete" },
            "message": e.to_string(),
            "lastTransitionTime": meta::format_time(now),
        })),
        None if has_failure => {
            conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("ReplicaFailure"));
        }
        _ => {}
    }
    let obj = status.as_object_mut().expect("made an object above");
    let mut set = |k: &str, v: i64| {
        if v == 0 && k != "replicas" {
            obj.remove(k);
        } else {
            obj.insert(k.to_owned(), json!(v));
        }
    };
    set("replicas", pods.len() as i64);
    set("fullyLabeledReplicas", fully_labeled);
    set("readyReplicas", ready);
    set("availableReplicas", available);
    obj.insert("observedGeneration".to_owned(), json!(meta::generation(rs)));
    if conditions.is_empty() {
        obj.remove("conditions");
    } else {
        obj.insert("conditions".to_owned(), Value::Array(conditions));
    }
    let requeue = if manage_err.is_none() && min_ready > 0 && ready > 0 && available != ready {
        next_check
    } else {
        None
    };
    (requeue, status)
}

async fn update_status(
    ctx: &ReplicaSetContext,
    rs: &Value,
    ns: &str,
    status: Value,
) -> Result<(), ReplicaSetError> {
    if rs.get("status") == Some(&status) {
        return Ok(());
    }
    let mut body = rs.clone();
    body["status"] = status;
    match ctx
        .cluster
        .replace_status(ctx.kinds.replicasets, Some(ns), meta::name(rs), &body)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}
