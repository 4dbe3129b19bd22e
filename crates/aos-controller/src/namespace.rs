//! The namespace controller: a namespace being deleted has all of its content
//! deleted; once nothing is left, the `kubernetes` finalizer is removed from
//! `spec.finalizers` through the `finalize` subresource, and the API server
//! removes the namespace.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{Cluster, ClusterError, DeleteParams, ListParams, Propagation};
use crate::kinds::Kinds;
use crate::meta;
use crate::runtime::{Action, Controller, Informer};

/// The finalizer the namespace controller owns.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// How long to wait before looking again at content that is still going away.
pub const RECHECK: Duration = Duration::from_secs(2);

/// A failed namespace reconciliation.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// An API call failed.
    #[error("api call failed: {0}")]
    Cluster(#[from] ClusterError),
}

/// What the namespace controller works with.
pub struct NamespaceContext {
    /// The API.
    pub cluster: Arc<dyn Cluster>,
    /// Resource types (every namespaced one is emptied).
    pub kinds: Kinds,
}

/// Build the controller over namespaces.
pub fn controller(namespaces: Informer) -> Controller {
    Controller::new("namespace", namespaces)
}

/// Errors retry with backoff.
pub fn error_policy(
    _obj: Arc<Value>,
    _err: &NamespaceError,
    _ctx: Arc<NamespaceContext>,
) -> Action {
    Action::backoff()
}

fn spec_finalizers(ns: &Value) -> Vec<String> {
    ns.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Reconcile one namespace.
pub async fn reconcile(
    ns: Arc<Value>,
    ctx: Arc<NamespaceContext>,
) -> Result<Action, NamespaceError> {
    if !meta::is_deleting(&ns) {
        return Ok(Action::await_change());
    }
    let finalizers = spec_finalizers(&ns);
    if !finalizers.iter().any(|f| f == KUBERNETES_FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = meta::name(&ns).to_owned();
    let mut remaining = 0usize;
    for rt in ctx.kinds.all.iter().copied().filter(|rt| rt.namespaced) {
        let list = match ctx
            .cluster
            .list(rt, Some(&name), &ListParams::default())
            .await
        {
            Ok(l) => l,
            // A type the server does not serve (any more): nothing to delete.
            Err(e) if matches!(e.code(), Some(404 | 405)) => continue,
            Err(e) => return Err(e.into()),
        };
        for item in &list.items {
            remaining += 1;
            if meta::is_deleting(item) {
                continue;
            }
            let params = DeleteParams {
                propagation_policy: Some(Propagation::Background),
                precondition_uid: Some(meta::uid(item).to_owned()).filter(|u| !u.is_empty()),
                ..Default::default()
            };
            match ctx
                .cluster
                .delete(rt, Some(&name), meta::name(item), &params)
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if remaining > 0 {
        tracing::debug!(namespace = %name, remaining, "namespace content still going away");
        return Ok(Action::requeue(RECHECK));
    }
    let mut body = (*ns).clone();
    let rest: Vec<String> = finalizers
        .into_iter()
        .filter(|f| f != KUBERNETES_FINALIZER)
        .collect();
    body["spec"]["finalizers"] = json!(rest);
    match ctx.cluster.finalize_namespace(&name, &body).await {
        Ok(_) => {
            tracing::info!(namespace = %name, "namespace finalized");
            Ok(Action::await_change())
        }
        Err(e) if e.is_not_found() => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}
