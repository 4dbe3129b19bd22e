//! Filters, in kube-scheduler's default order and words: NodeUnschedulable,
//! TaintToleration, NodeAffinity (nodeSelector and required node affinity),
//! NodeResourcesFit. A node passes when no filter gives a reason.
//!
//! A node whose `Ready` condition is not `True` is treated as carrying the taint the
//! Kubernetes node lifecycle controller would put on it (`node.kubernetes.io/not-ready`, or
//! `node.kubernetes.io/unreachable` for `Unknown`, effect `NoSchedule`), so it is skipped
//! unless the pod tolerates that, and the reason reads as in Kubernetes.

use std::collections::BTreeMap;

use serde_json::Value;

use super::resources::{Allocatable, PodRequests, node_allocatable, pod_requests};
use crate::meta;

/// Taint key of a node that is not ready.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint key of a node whose readiness is unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint key a pod tolerates to land on an unschedulable (cordoned) node.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// `NodeUnschedulable`'s reason.
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// `NodeAffinity`'s reason.
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// `NodeResourcesFit`'s reason when the pod count is exhausted.
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

/// A taint's effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// New pods that do not tolerate it are not scheduled.
    NoSchedule,
    /// The scheduler avoids the node for pods that do not tolerate it.
    PreferNoSchedule,
    /// As `NoSchedule` (eviction of running pods is the node lifecycle's business).
    NoExecute,
}

impl Effect {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NoSchedule" => Self::NoSchedule,
            "PreferNoSchedule" => Self::PreferNoSchedule,
            "NoExecute" => Self::NoExecute,
            _ => return None,
        })
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::NoSchedule => "NoSchedule",
            Self::PreferNoSchedule => "PreferNoSchedule",
            Self::NoExecute => "NoExecute",
        }
    }
}

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value (may be empty).
    pub value: String,
    /// Effect.
    pub effect: Effect,
}

/// A pod toleration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Toleration {
    /// Key; empty with `Exists` tolerates every taint.
    pub key: String,
    /// `Equal` (also when empty) or `Exists`.
    pub operator: String,
    /// Value compared by `Equal`.
    pub value: String,
    /// Effect; empty matches every effect.
    pub effect: String,
}

impl Toleration {
    /// Whether this toleration tolerates `taint` (Kubernetes' `ToleratesTaint`).
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect.as_str() {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "" | "Equal" => self.value == taint.value,
            "Exists" => true,
            _ => false,
        }
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The scheduler's view of a pod.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_affinity: Option<Value>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// The effective resource request.
    pub requests: PodRequests,
}

impl PodInfo {
    /// Read a pod.
    pub fn from_pod(pod: &Value) -> Self {
        let tolerations = pod
            .pointer("/spec/tolerations")
            .and_then(Value::as_array)
            .map(|ts| {
                ts.iter()
                    .map(|t| Toleration {
                        key: str_at(t, "key").to_owned(),
                        operator: str_at(t, "operator").to_owned(),
                        value: str_at(t, "value").to_owned(),
                        effect: str_at(t, "effect").to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            node_selector: meta::string_map(pod, "/spec/nodeSelector"),
            required_affinity: pod
                .pointer(
                    "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution",
                )
                .filter(|v| !v.is_null())
                .cloned(),
            tolerations,
            requests: pod_requests(pod),
        }
    }

    fn tolerates(&self, taint: &Taint) -> bool {
        self.tolerations.iter().any(|t| t.tolerates(taint))
    }
}

/// The scheduler's view of a node, with what is already requested on it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints, including the implicit not-ready/unreachable one.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// What the node offers.
    pub allocatable: Allocatable,
    /// What the pods on it (bound or assumed) request.
    pub requested: PodRequests,
    /// How many pods are on it.
    pub pod_count: i64,
}

impl NodeInfo {
    /// Read a node (with nothing requested yet).
    pub fn from_node(node: &Value) -> Self {
        let mut taints: Vec<Taint> = node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| {
                        Some(Taint {
                            key: str_at(t, "key").to_owned(),
                            value: str_at(t, "value").to_owned(),
                            effect: Effect::parse(str_at(t, "effect"))?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ready = node
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| str_at(c, "type") == "Ready"))
            .map(|c| str_at(c, "status"));
        let implicit = match ready {
            Some("True") => None,
            Some("Unknown") => Some(TAINT_UNREACHABLE),
            _ => Some(TAINT_NOT_READY),
        };
        if let Some(key) = implicit
            && !taints
                .iter()
                .any(|t| t.key == key && t.effect == Effect::NoSchedule)
        {
            taints.push(Taint {
                key: key.to_owned(),
                value: String::new(),
                effect: Effect::NoSchedule,
            });
        }
        Self {
            name: meta::name(node).to_owned(),
            labels: meta::labels(node),
            taints,
            unschedulable: node
                .pointer("/spec/unschedulable")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            allocatable: node_allocatable(node),
            requested: PodRequests::default(),
            pod_count: 0,
        }
    }

    /// Count a pod as placed on this node.
    pub fn add_pod(&mut self, requests: &PodRequests) {
        self.requested.add(requests);
        self.pod_count += 1;
    }

    /// PreferNoSchedule taints the pod does not tolerate (tolerations with an empty or
    /// PreferNoSchedule effect count, as in Kubernetes' scoring).
    pub fn intolerable_preferred_taints(&self, pod: &PodInfo) -> usize {
        self.taints
            .iter()
            .filter(|t| t.effect == Effect::PreferNoSchedule)
            .filter(|t| {
                !pod.tolerations.iter().any(|tol| {
                    (tol.effect.is_empty() || tol.effect == "PreferNoSchedule") && tol.tolerates(t)
                })
            })
            .count()
    }
}

/// Why `node` cannot take `pod` (empty: it can), in kube-scheduler's words.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    // NodeUnschedulable
    if node.unschedulable {
        let cordon = Taint {
            key: TAINT_UNSCHEDULABLE.to_owned(),
            value: String::new(),
            effect: Effect::NoSchedule,
        };
        if !pod.tolerates(&cordon) {
            return vec![REASON_UNSCHEDULABLE.to_owned()];
        }
    }
    // TaintToleration: the first untolerated NoSchedule/NoExecute taint.
    if let Some(t) = node
        .taints
        .iter()
        .filter(|t| matches!(t.effect, Effect::NoSchedule | Effect::NoExecute))
        .find(|t| !pod.tolerates(t))
    {
        return vec![format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key, t.value
        )];
    }
    // NodeAffinity
    let selector_ok = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let affinity_ok = pod
        .required_affinity
        .as_ref()
        .is_none_or(|req| node_selector_matches(req, node));
    if !selector_ok || !affinity_ok {
        return vec![REASON_NODE_AFFINITY.to_owned()];
    }
    // NodeResourcesFit
    let mut reasons = Vec::new();
    if node.pod_count + 1 > node.allocatable.pods {
        reasons.push(REASON_TOO_MANY_PODS.to_owned());
    }
    let want = pod.requests.request;
    let have = node.allocatable.amounts;
    let used = node.requested.request;
    if want.milli_cpu > 0 && want.milli_cpu > have.milli_cpu.saturating_sub(used.milli_cpu) {
        reasons.push("Insufficient cpu".to_owned());
    }
    if want.memory > 0 && want.memory > have.memory.saturating_sub(used.memory) {
        reasons.push("Insufficient memory".to_owned());
    }
    reasons
}

/// A `NodeSelector` (terms ORed; expressions and fields in a term ANDed) against a node.
fn node_selector_matches(selector: &Value, node: &NodeInfo) -> bool {
    let Some(terms) = selector.get("nodeSelectorTerms").and_then(Value::as_array) else {
        return false;
    };
    terms.iter().any(|term| {
        let exprs = term.get("matchExpressions").and_then(Value::as_array);
        let fields = term.get("matchFields").and_then(Value::as_array);
        if exprs.is_none_or(Vec::is_empty) && fields.is_none_or(Vec::is_empty) {
            // An empty term matches no objects.
            return false;
        }
        exprs
            .into_iter()
            .flatten()
            .all(|e| requirement_matches(e, node.labels.get(str_at(e, "key")).map(String::as_str)))
            && fields.into_iter().flatten().all(|e| {
                let value = (str_at(e, "key") == "metadata.name").then_some(node.name.as_str());
                requirement_matches(e, value)
            })
    })
}

fn requirement_matches(expr: &Value, actual: Option<&str>) -> bool {
    let values: Vec<&str> = expr
        .get("values")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match str_at(expr, "operator") {
        "In" => actual.is_some_and(|a| values.contains(&a)),
        "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(a), [v]) = (
                actual.and_then(|a| a.parse::<i64>().ok()),
                values.as_slice(),
            ) else {
                return false;
            };
            let Ok(v) = v.parse::<i64>() else {
                return false;
            };
            if op == "Gt" { a > v } else { a < v }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(extra: Value) -> NodeInfo {
        let mut n = json!({
            "metadata": {"name": "n1", "labels": {"agent.os": "linux"}},
            "spec": {},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "2"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        });
        crate::cluster::fake::merge_patch(&mut n, &extra);
        NodeInfo::from_node(&n)
    }

    fn pod(spec: Value) -> PodInfo {
        let mut p = json!({"spec": {"containers": [{"name": "c"}]}});
        crate::cluster::fake::merge_patch(&mut p, &json!({ "spec": spec }));
        PodInfo::from_pod(&p)
    }

    #[test]
    fn toleration_matching_table() {
        let taint = Taint {
            key: "agent.os".into(),
            value: "linux".into(),
            effect: Effect::NoSchedule,
        };
        let tol = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: key.into(),
            operator: op.into(),
            value: value.into(),
            effect: effect.into(),
        };
        let table = [
            (tol("agent.os", "Exists", "", "NoSchedule"), true),
            (tol("agent.os", "Exists", "", ""), true),
            (tol("agent.os", "Equal", "linux", "NoSchedule"), true),
            (tol("agent.os", "", "linux", ""), true),
            (tol("agent.os", "Equal", "windows", "NoSchedule"), false),
            (tol("agent.os", "Exists", "", "NoExecute"), false),
            (tol("", "Exists", "", ""), true),
            (tol("other", "Exists", "", ""), false),
            (tol("agent.os", "Bogus", "", ""), false),
        ];
        for (t, want) in table {
            assert_eq!(t.tolerates(&taint), want, "{t:?}");
        }
    }

    #[test]
    fn filters_in_kube_scheduler_words() {
        let fits = pod(json!({"nodeSelector": {"agent.os": "linux"}}));
        assert!(filter(&fits, &node(json!({}))).is_empty());

        let wrong_os = pod(json!({"nodeSelector": {"agent.os": "windows"}}));
        assert_eq!(filter(&wrong_os, &node(json!({}))), [REASON_NODE_AFFINITY]);

        let tainted = node(
            json!({"spec": {"taints": [{"key": "agent.os", "value": "linux", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(
            filter(&fits, &tainted),
            ["node(s) had untolerated taint {agent.os: linux}"]
        );
        let tolerant = pod(json!({"tolerations": [
            {"key": "agent.os", "operator": "Exists", "effect": "NoSchedule"}]}));
        assert!(filter(&tolerant, &tainted).is_empty());

        let prefer =
            node(json!({"spec": {"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}}));
        assert!(filter(&fits, &prefer).is_empty());
        assert_eq!(prefer.intolerable_preferred_taints(&fits), 1);
        assert_eq!(prefer.intolerable_preferred_taints(&tolerant), 1);

        let cordoned = node(json!({"spec": {"unschedulable": true}}));
        assert_eq!(filter(&fits, &cordoned), [REASON_UNSCHEDULABLE]);

        let not_ready =
            node(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(
            filter(&fits, &not_ready),
            ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
        );
        let unknown =
            node(json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}));
        assert_eq!(
            filter(&fits, &unknown),
            ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]
        );
        let everything = pod(json!({"tolerations": [{"operator": "Exists"}]}));
        assert!(filter(&everything, &not_ready).is_empty());
    }

    #[test]
    fn resources_fit_against_what_is_left() {
        let big = pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "600m", "memory": "2Gi"}}}]}),
        );
        assert_eq!(filter(&big, &node(json!({}))), ["Insufficient memory"]);
        let mut n = node(json!({}));
        let half =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}));
        n.add_pod(&half.requests);
        assert!(filter(&half, &n).is_empty());
        n.add_pod(&half.requests);
        assert_eq!(
            filter(&half, &n),
            [REASON_TOO_MANY_PODS, "Insufficient cpu"]
        );
        // A pod that requests nothing still needs a pod slot.
        assert_eq!(filter(&pod(json!({})), &n), [REASON_TOO_MANY_PODS]);
    }

    #[test]
    fn required_node_affinity() {
        let n = node(json!({"metadata": {"labels": {"zone": "a", "cores": "8"}}}));
        let with = |terms: Value| {
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
            )
        };
        let table = [
            (
                json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]),
                false,
            ),
            (
                json!([{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}]),
                false,
            ),
            (
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]),
                true,
            ),
            (json!([{}]), false),
        ];
        for (terms, want) in table {
            let p = with(terms.clone());
            assert_eq!(filter(&p, &n).is_empty(), want, "{terms}");
        }
    }
}
