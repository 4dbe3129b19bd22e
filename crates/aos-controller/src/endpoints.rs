//! The Endpoints controller: for every Service with a selector, an `Endpoints` object of
//! the same name listing the pods behind it, as Kubernetes' endpoints controller keeps it.
//!
//! - A pod is listed when it matches the selector in the Service's namespace, has a
//!   `status.podIP`, is not terminal (`Succeeded`/`Failed`) and is not being deleted: a
//!   terminating pod leaves the set at once, before its containers get SIGTERM, so
//!   traffic drains first. Ready pods go to `addresses`, the others to
//!   `notReadyAddresses` (all to `addresses` with `spec.publishNotReadyAddresses`).
//! - Each address has `ip`, `nodeName`, `targetRef` to the pod (and `hostname` when the pod's
//!   `spec.subdomain` is the Service's name). Each Service port is resolved per pod: a
//!   numeric `targetPort`, a named one looked up in the pod's container ports (pods that give
//!   the name different numbers land in different subsets), or the `port` itself when unset.
//!   A pod lacking a named port is left out of that port.
//! - The Endpoints carry the Service's labels and no owner (Kubernetes sets none). They are
//!   written only when they differ from the stored ones; the order of subsets, addresses and
//!   ports is deterministic. They are deleted when the Service goes.
//! - A Service without a selector is left alone: its Endpoints are the user's, the way to
//!   point a Service at something outside the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::{Cluster, ClusterError, DeleteParams, ObjectKey};
use crate::kinds::Kinds;
use crate::meta;
use crate::runtime::{Action, Cache, Controller, Informer, InformerEvent};
use crate::selector::Selector;

#[cfg(test)]
mod tests;

/// A failed Endpoints reconciliation (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    /// An API call failed.
    #[error("api call failed: {0}")]
    Cluster(#[from] ClusterError),
}

/// What the controller works with.
pub struct EndpointsContext {
    /// The API.
    pub cluster: Arc<dyn Cluster>,
    /// Resource types.
    pub kinds: Kinds,
    /// Every pod.
    pub pods: Cache,
    /// Every Endpoints object.
    pub endpoints: Cache,
}

/// A Service's selector, when it has one (`None`: user-managed Endpoints).
fn service_selector(svc: &Value) -> Option<Selector> {
    let sel = svc.pointer("/spec/selector")?.as_object()?;
    let map: BTreeMap<String, String> = sel
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    let text: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // A map of plain key=value pairs always parses.
    Selector::parse(&text.join(",")).ok()
}

fn services_selecting(services: &Cache, pod: &Value) -> Vec<ObjectKey> {
    let labels = meta::labels(pod);
    services
        .list_namespace(meta::namespace(pod))
        .iter()
        .filter(|svc| service_selector(svc).is_some_and(|s| s.matches(&labels)))
        .filter_map(|svc| ObjectKey::of(svc))
        .collect()
}

/// Build the controller over Services; pod changes requeue the Services selecting the pod
/// (before or after the change), and a deleted or edited Endpoints object its Service.
pub fn controller(services: Informer, pods: Informer, endpoints: Informer) -> Controller {
    let svc_cache = services.cache().clone();
    let svc_cache2 = svc_cache.clone();
    Controller::new("endpoints", services)
        .watches(pods, move |ev| {
            let mut keys = services_selecting(&svc_cache, ev.object());
            if let Some(old) = ev.old() {
                for k in services_selecting(&svc_cache, old) {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
            }
            keys
        })
        .watches(endpoints, move |ev| match ev {
            // Someone removed or edited the Endpoints of a Service: put them back. Endpoints
            // without a Service are not touched here: they may be a user's, made before
            // their selector-less Service.
            InformerEvent::Deleted(e) | InformerEvent::Modified { new: e, .. } => ObjectKey::of(e)
                .filter(|k| svc_cache2.get(k).is_some())
                .into_iter()
                .collect(),
            InformerEvent::Added(_) => Vec::new(),
        })
}

/// Errors retry with backoff.
pub fn error_policy(
    _key: &ObjectKey,
    _svc: Option<Arc<Value>>,
    _err: &EndpointsError,
    _ctx: Arc<EndpointsContext>,
) -> Action {
    Action::backoff()
}

fn is_pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Whether a pod belongs in Endpoints at all (Kubernetes' `ShouldPodBeInEndpoints`, with
/// terminating pods left out).
fn pod_is_endpoint(pod: &Value) -> bool {
    let has_ip = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .is_some_and(|ip| !ip.is_empty());
    let terminal = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    has_ip && !terminal && !meta::is_deleting(pod)
}

/// Resolve a Service port's `targetPort` for `pod` (Kubernetes' `FindPort`).
fn find_port(pod: &Value, svc_port: &Value) -> Option<i64> {
    let protocol = svc_port
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("TCP");
    match svc_port.get("targetPort") {
        Some(Value::String(name)) => match name.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)?
                .iter()
                .flat_map(|c| {
                    c.get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .find(|p| {
                    p.get("name").and_then(Value::as_str) == Some(name.as_str())
                        && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == protocol
                })
                .and_then(|p| p.get("containerPort").and_then(Value::as_i64)),
        },
        Some(Value::Number(n)) => n.as_i64(),
        _ => svc_port.get("port").and_then(Value::as_i64),
    }
    .filter(|p| (1..=65535).contains(p))
}

/// An address entry, with its sort key.
fn address(pod: &Value, svc: &Value) -> Value {
    let mut a = json!({
        "ip": pod.pointer("/status/podIP").and_then(Value::as_str).unwrap_or_default(),
        "targetRef": {
            "kind": "Pod",
            "namespace": meta::namespace(pod).unwrap_or_default(),
            "name": meta::name(pod),
            "uid": meta::uid(pod),
        },
    });
    if let Some(node) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        a["nodeName"] = json!(node);
    }
    let hostname = pod.pointer("/spec/hostname").and_then(Value::as_str);
    let subdomain = pod.pointer("/spec/subdomain").and_then(Value::as_str);
    if let (Some(h), Some(s)) = (hostname, subdomain)
        && !h.is_empty()
        && s == meta::name(svc)
    {
        a["hostname"] = json!(h);
    }
    a
}

fn address_key(a: &Value) -> (String, String) {
    (
        a["ip"].as_str().unwrap_or_default().to_owned(),
        a.pointer("/targetRef/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    )
}

/// One resolved endpoint port; ordered for a deterministic output.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Port {
    name: String,
    port: i64,
    protocol: String,
    app_protocol: Option<String>,
}

impl Port {
    fn to_value(&self) -> Value {
        let mut v = json!({"port": self.port, "protocol": self.protocol});
        if !self.name.is_empty() {
            v["name"] = json!(self.name);
        }
        if let Some(ap) = &self.app_protocol {
            v["appProtocol"] = json!(ap);
        }
        v
    }
}

#[derive(Default)]
struct Subset {
    ready: BTreeMap<(String, String), Value>,
    not_ready: BTreeMap<(String, String), Value>,
}

/// The `subsets` for `svc` over `pods` (in its namespace).
pub fn compute_subsets(svc: &Value, pods: &[Arc<Value>]) -> Vec<Value> {
    let Some(selector) = service_selector(svc) else {
        return Vec::new();
    };
    let publish_not_ready = svc
        .pointer("/spec/publishNotReadyAddresses")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let svc_ports: Vec<Value> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let headless = svc.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    let mut subsets: BTreeMap<BTreeSet<Port>, Subset> = BTreeMap::new();
    for pod in pods {
        if !selector.matches(&meta::labels(pod)) || !pod_is_endpoint(pod) {
            continue;
        }
        let ports: BTreeSet<Port> = svc_ports
            .iter()
            .filter_map(|sp| {
                let port = find_port(pod, sp)?;
                Some(Port {
                    name: sp
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    port,
                    protocol: sp
                        .get("protocol")
                        .and_then(Value::as_str)
                        .unwrap_or("TCP")
                        .to_owned(),
                    app_protocol: sp
                        .get("appProtocol")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
            })
            .collect();
        if ports.is_empty() && !(svc_ports.is_empty() && headless) {
            // No port of the Service resolves on this pod: nothing to reach it on.
            continue;
        }
        let addr = address(pod, svc);
        let entry = subsets.entry(ports).or_default();
        if publish_not_ready || is_pod_ready(pod) {
            entry.ready.insert(address_key(&addr), addr);
        } else {
            entry.not_ready.insert(address_key(&addr), addr);
        }
    }
    subsets
        .into_iter()
        .map(|(ports, s)| {
            let mut v = json!({});
            if !s.ready.is_empty() {
                v["addresses"] = Value::Array(s.ready.into_values().collect());
            }
            if !s.not_ready.is_empty() {
                v["notReadyAddresses"] = Value::Array(s.not_ready.into_values().collect());
            }
            if !ports.is_empty() {
                v["ports"] = Value::Array(ports.iter().map(Port::to_value).collect());
            }
            v
        })
        .collect()
}

fn stored_subsets(ep: &Value) -> Vec<Value> {
    ep.get("subsets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn labels_value(obj: &Value) -> Value {
    obj.pointer("/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// Keep one Service's Endpoints in step (or delete them when the Service is gone).
pub async fn reconcile(
    key: ObjectKey,
    svc: Option<Arc<Value>>,
    ctx: Arc<EndpointsContext>,
) -> Result<Action, EndpointsError> {
    let existing = ctx.endpoints.get(&key);
    let Some(svc) = svc else {
        // The Service is gone: so are its Endpoints.
        if let Some(ep) = existing {
            let params = DeleteParams {
                precondition_uid: Some(meta::uid(&ep).to_owned()).filter(|u| !u.is_empty()),
                ..Default::default()
            };
            match ctx
                .cluster
                .delete(ctx.kinds.endpoints, key.ns(), &key.name, &params)
                .await
            {
                Ok(()) => {
                    tracing::debug!(endpoints = %key, "deleted endpoints of a deleted service")
                }
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(Action::await_change());
    };
    if service_selector(&svc).is_none() || meta::is_deleting(&svc) {
        return Ok(Action::await_change());
    }
    let pods = ctx.pods.list_namespace(key.ns());
    let subsets = compute_subsets(&svc, &pods);
    let labels = labels_value(&svc);
    match existing {
        Some(ep) if stored_subsets(&ep) == subsets && labels_value(&ep) == labels => {
            Ok(Action::await_change())
        }
        Some(ep) => {
            let mut body = (*ep).clone();
            body["metadata"]["labels"] = labels;
            if subsets.is_empty() {
                if let Some(m) = body.as_object_mut() {
                    m.remove("subsets");
                }
            } else {
                body["subsets"] = Value::Array(subsets);
            }
            match ctx
                .cluster
                .replace(ctx.kinds.endpoints, key.ns(), &key.name, &body)
                .await
            {
                Ok(_) => Ok(Action::await_change()),
                // Stale cache or gone meanwhile: the informer's event brings the key back.
                Err(e) if e.is_conflict() || e.is_not_found() => Ok(Action::await_change()),
                Err(e) => Err(e.into()),
            }
        }
        None => {
            let mut body = json!({
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": key.name, "namespace": key.ns(), "labels": labels},
            });
            if !subsets.is_empty() {
                body["subsets"] = Value::Array(subsets);
            }
            match ctx
                .cluster
                .create(ctx.kinds.endpoints, key.ns(), &body)
                .await
            {
                Ok(_) => Ok(Action::await_change()),
                Err(e) if e.is_already_exists() => Ok(Action::await_change()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Keys of Endpoints whose Service no longer exists (deleted while no controller ran), as
/// Kubernetes' controller looks for them at start.
pub fn leftover_keys(services: &Cache, endpoints: &Cache) -> Vec<ObjectKey> {
    endpoints
        .list_all()
        .iter()
        .filter_map(|e| ObjectKey::of(e))
        .filter(|k| services.get(k).is_none())
        .collect()
}
