//! The termination gate: a deleted pod leaves the endpoint set before its containers are told
//! to stop, so that a deletion under load costs no failed request.
//!
//! The Endpoints controller drops a pod from `subsets[].addresses` as soon as it carries a
//! `deletionTimestamp`; the gateway learns of that through its watch of Endpoints and stops
//! routing to the pod. Until both happened, requests still arrive, and a container that
//! already got SIGTERM would refuse them. So before the preStop hooks and the stop signal the
//! worker waits, within the pod's grace period:
//!
//! 1. until no Endpoints object in the pod's namespace lists the pod's IP among
//!    `subsets[].addresses` (`notReadyAddresses` receive no traffic, so they do not count), at
//!    most [`MAX_WAIT`] (then it goes on with a warning);
//! 2. then [`SETTLE`], for the watchers of Endpoints to apply the change.
//!
//! A pod that no Service selects is in no endpoint set: it skips both at once. The whole gate
//! is part of the grace period: the stop signal and SIGKILL keep their deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use aos_controller::cluster::{Cluster, ListParams};
use aos_types::ResourceType;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::clock::Clock;

/// The longest wait for the Endpoints to drop the pod.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// Time given to the watchers of Endpoints (the gateway's route table) to see the pod leave
/// and stop sending it requests; taken from the grace period, never added to it.
pub const SETTLE: Duration = Duration::from_secs(1);
/// How often the Endpoints are read while waiting.
const POLL: Duration = Duration::from_millis(100);

/// How the gate ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOutcome {
    /// Nothing to wait for: no address, no grace period, or no Service selects the pod.
    Skipped,
    /// The pod left every endpoint set after `waited` (the settle time included).
    Left {
        /// Time spent at the gate.
        waited: Duration,
    },
    /// The pod was still listed at the end of the allowed wait.
    TimedOut {
        /// Time spent at the gate.
        waited: Duration,
    },
}

fn resource(kind: &'static str) -> Option<&'static ResourceType> {
    aos_types::resource::by_kind("v1", kind)
}

/// Whether the non-empty selector `sel` matches `labels` (a Service's `spec.selector`).
fn selects(sel: &serde_json::Map<String, Value>, labels: &BTreeMap<String, String>) -> bool {
    !sel.is_empty()
        && sel.iter().all(|(k, v)| {
            v.as_str()
                .is_some_and(|v| labels.get(k).is_some_and(|l| l == v))
        })
}

/// Whether an Endpoints object routes traffic to `ip`.
pub fn lists_address(endpoints: &Value, ip: &str) -> bool {
    endpoints
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("addresses").and_then(Value::as_array))
        .flatten()
        .any(|a| a.get("ip").and_then(Value::as_str) == Some(ip))
}

/// Whether a Service of the pod's namespace selects it; `true` when the Services cannot be
/// read (waiting needlessly costs little; not waiting may cost requests).
async fn selected(cluster: &dyn Cluster, pod: &Pod) -> bool {
    let Some(services) = resource("Service") else {
        return false;
    };
    let ns = pod.metadata.namespace.as_deref();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    match cluster.list(services, ns, &ListParams::default()).await {
        Ok(list) => list.items.iter().any(|svc| {
            svc.pointer("/spec/selector")
                .and_then(Value::as_object)
                .is_some_and(|sel| selects(sel, &labels))
        }),
        Err(e) => {
            tracing::warn!(error = %e, "listing services for the termination gate");
            true
        }
    }
}

/// Whether an Endpoints object of the namespace lists `ip`; `None` when they cannot be read.
async fn listed(
    cluster: &dyn Cluster,
    endpoints: &'static ResourceType,
    ns: Option<&str>,
    ip: &str,
) -> Option<bool> {
    match cluster.list(endpoints, ns, &ListParams::default()).await {
        Ok(list) => Some(list.items.iter().any(|e| lists_address(e, ip))),
        Err(e) => {
            tracing::warn!(error = %e, "listing endpoints for the termination gate");
            None
        }
    }
}

/// Wait, within `budget` (what is left of the grace period), until the pod with address
/// `pod_ip` is out of every endpoint set, then [`SETTLE`].
pub async fn wait_out_of_endpoints(
    cluster: &dyn Cluster,
    clock: Clock,
    pod: &Pod,
    pod_ip: Option<&str>,
    budget: Duration,
) -> GateOutcome {
    let Some(ip) = pod_ip.filter(|ip| !ip.is_empty()) else {
        return GateOutcome::Skipped;
    };
    if budget.is_zero() {
        return GateOutcome::Skipped;
    }
    let Some(endpoints) = resource("Endpoints") else {
        return GateOutcome::Skipped;
    };
    let start = clock.now();
    if !selected(cluster, pod).await {
        return GateOutcome::Skipped;
    }
    let ns = pod.metadata.namespace.as_deref();
    let wait = budget.min(MAX_WAIT);
    let left = loop {
        if listed(cluster, endpoints, ns, ip).await == Some(false) {
            break true;
        }
        let spent = clock.since(start);
        if spent >= wait {
            break false;
        }
        tokio::time::sleep(POLL.min(wait - spent)).await;
    };
    if !left {
        let waited = clock.since(start);
        tracing::warn!(
            pod = pod.metadata.name.as_deref().unwrap_or_default(),
            ip,
            ?waited,
            "the pod is still listed in Endpoints; stopping its containers anyway"
        );
        return GateOutcome::TimedOut { waited };
    }
    let settle = SETTLE.min(budget.saturating_sub(clock.since(start)));
    tokio::time::sleep(settle).await;
    GateOutcome::Left {
        waited: clock.since(start),
    }
}
