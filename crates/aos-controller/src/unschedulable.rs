//! Stand-in for a scheduler, for a control plane run without [`crate::scheduler`]
//! ([`crate::ControllerOptions::scheduler`] off, `mark_unschedulable` on): every unbound
//! pod is reported as `PodScheduled=False` (reason `Unschedulable`, "no nodes available to
//! schedule pods"). When the scheduler runs, it owns the condition and this does not run.
//!
//! The status write here is conditional on the pod's resourceVersion, so a pod that a
//! scheduler bound in the meantime is never marked: the write fails with a conflict, the
//! pod is looked at again, and now it has a node.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::{Cluster, ClusterError};
use crate::kinds::Kinds;
use crate::meta::{self, Clock};
use crate::runtime::{Action, Controller, Informer};

/// The message of the condition, as Kubernetes' scheduler words it with no nodes.
pub const NO_NODES_MESSAGE: &str = crate::scheduler::NO_NODES_MESSAGE;

/// What the controller works with.
pub struct UnschedulableContext {
    /// The API.
    pub cluster: Arc<dyn Cluster>,
    /// Resource types.
    pub kinds: Kinds,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

/// Build the controller over pods.
pub fn controller(pods: Informer) -> Controller {
    Controller::new("unschedulable", pods)
}

/// Errors retry with backoff.
pub fn error_policy(
    _obj: Arc<Value>,
    _err: &ClusterError,
    _ctx: Arc<UnschedulableContext>,
) -> Action {
    Action::backoff()
}

fn needs_mark(pod: &Value) -> bool {
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    let marked = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("PodScheduled")
                    && c.get("status").and_then(Value::as_str) == Some("False")
                    && c.get("reason").and_then(Value::as_str) == Some("Unschedulable")
            })
        });
    !bound && !meta::is_deleting(pod) && phase == "Pending" && !marked
}

/// Mark one unbound pod unschedulable.
pub async fn reconcile(
    pod: Arc<Value>,
    ctx: Arc<UnschedulableContext>,
) -> Result<Action, ClusterError> {
    if !needs_mark(&pod) {
        return Ok(Action::await_change());
    }
    let now = meta::format_time(meta::now_seconds(&*ctx.clock));
    let mut body = (*pod).clone();
    let mut status = body
        .get("status")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
    conditions.push(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": NO_NODES_MESSAGE,
        "lastProbeTime": null,
        "lastTransitionTime": now,
    }));
    status["phase"] = json!("Pending");
    status["conditions"] = Value::Array(conditions);
    body["status"] = status;
    match ctx
        .cluster
        .replace_status(
            ctx.kinds.pods,
            meta::namespace(&pod),
            meta::name(&pod),
            &body,
        )
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if e.is_not_found() => Ok(Action::await_change()),
        // Changed meanwhile (maybe bound): the change brings the pod back here.
        Err(e) if e.is_conflict() => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unbound_pending_unmarked_pods() {
        assert!(needs_mark(
            &json!({"spec": {}, "status": {"phase": "Pending"}})
        ));
        assert!(needs_mark(&json!({"spec": {}})));
        assert!(!needs_mark(
            &json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}})
        ));
        assert!(!needs_mark(
            &json!({"spec": {}, "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}})
        ));
        assert!(!needs_mark(
            &json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "spec": {}})
        ));
    }
}
