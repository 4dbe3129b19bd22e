//! Which pods go first when a ReplicaSet shrinks: Kubernetes'
//! `ActivePodsWithRanks` order and `getPodsToDelete`.

use std::cmp::Ordering;
use std::collections::HashMap;

use jiff::Timestamp;
use serde_json::Value;

use crate::meta;

/// Annotation that makes a pod cheaper (lower) or dearer (higher) to delete.
pub const POD_DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// What the ranking looks at in a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRank {
    /// `spec.nodeName` is empty.
    pub unassigned: bool,
    /// Pending 0, Unknown 1, Running 2 (others 0, as Kubernetes' map lookup gives).
    pub phase_ordinal: u8,
    /// The Ready condition is True.
    pub ready: bool,
    /// `controller.kubernetes.io/pod-deletion-cost`.
    pub deletion_cost: i32,
    /// Number of related pods on the same node (more doubled-up goes first).
    pub colocated: usize,
    /// When the pod became ready (lastTransitionTime of Ready), if ready.
    pub ready_since: Option<Timestamp>,
    /// Highest restart count of its containers.
    pub restarts: i64,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
}

impl PodRank {
    /// Extract from a pod; `colocated` is filled by [`pods_to_delete`].
    pub fn of(pod: &Value) -> Self {
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ready_cond = ready_condition(pod);
        let ready =
            ready_cond.is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"));
        Self {
            unassigned: pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty),
            phase_ordinal: match phase {
                "Unknown" => 1,
                "Running" => 2,
                _ => 0,
            },
            ready,
            deletion_cost: meta::annotation(pod, POD_DELETION_COST_ANNOTATION)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            colocated: 0,
            ready_since: if ready {
                meta::parse_time(ready_cond.and_then(|c| c.get("lastTransitionTime")))
            } else {
                None
            },
            restarts: pod
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0),
            created: meta::creation_timestamp(pod),
        }
    }
}

/// The pod's Ready condition.
pub fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
}

/// `afterOrZero`: a missing time sorts first, then the later time.
fn after_or_zero(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// `ActivePodsWithRanks.Less` as an ordering: the pod to delete first sorts first.
pub fn compare(a: &PodRank, b: &PodRank) -> Ordering {
    // 1. unassigned < assigned
    if a.unassigned != b.unassigned {
        return if a.unassigned {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // 2. Pending < Unknown < Running
    if a.phase_ordinal != b.phase_ordinal {
        return a.phase_ordinal.cmp(&b.phase_ordinal);
    }
    // 3. not ready < ready
    if a.ready != b.ready {
        return if a.ready {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    // 4. lower deletion cost < higher
    if a.deletion_cost != b.deletion_cost {
        return a.deletion_cost.cmp(&b.deletion_cost);
    }
    // 5. more doubled-up pods on the node first
    if a.colocated != b.colocated {
        return b.colocated.cmp(&a.colocated);
    }
    // 6. ready for a shorter time first
    if a.ready && b.ready && a.ready_since != b.ready_since {
        return after_or_zero(a.ready_since, b.ready_since);
    }
    // 7. more restarts first
    if a.restarts != b.restarts {
        return b.restarts.cmp(&a.restarts);
    }
    // 8. newer first
    if a.created != b.created {
        return after_or_zero(a.created, b.created);
    }
    Ordering::Equal
}

/// `getPodsToDelete`: the `n` pods of `pods` to delete first. `related` are
/// the active pods of every ReplicaSet of the same owner (for co-location ranks).
pub fn pods_to_delete<'a>(pods: &[&'a Value], related: &[&Value], n: usize) -> Vec<&'a Value> {
    if n >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related {
        if let Some(node) = p
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            *on_node.entry(node).or_default() += 1;
        }
    }
    let mut ranked: Vec<(PodRank, &'a Value)> = pods
        .iter()
        .map(|p| {
            let mut r = PodRank::of(p);
            let node = p
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            r.colocated = on_node.get(node).copied().unwrap_or(0);
            (r, *p)
        })
        .collect();
    ranked.sort_by(|a, b| compare(&a.0, &b.0));
    ranked.into_iter().take(n).map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(
        name: &str,
        node: &str,
        phase: &str,
        ready: Option<&str>,
        restarts: i64,
        created: &str,
    ) -> Value {
        let mut conds = vec![];
        if let Some(since) = ready {
            conds.push(json!({"type": "Ready", "status": "True", "lastTransitionTime": since}));
        }
        json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": conds,
                       "containerStatuses": [{"name": "c", "restartCount": restarts}]}
        })
    }

    fn order(pods: &[Value]) -> Vec<String> {
        let refs: Vec<&Value> = pods.iter().collect();
        pods_to_delete(&refs, &[], pods.len() - 1)
            .into_iter()
            .map(|p| meta::name(p).to_owned())
            .chain(std::iter::once("…".to_owned()))
            .collect()
    }

    const T0: &str = "2024-01-01T00:00:00Z";
    const T1: &str = "2024-01-01T00:01:00Z";
    const T2: &str = "2024-01-01T00:02:00Z";

    #[test]
    fn ranking_table() {
        // Each case: pods in any order; expected deletion order of all but the last kept one.
        let cases: Vec<(&str, Vec<Value>, Vec<&str>)> = vec![
            (
                "unassigned before assigned",
                vec![
                    pod("assigned", "n1", "Pending", None, 0, T0),
                    pod("unassigned", "", "Pending", None, 0, T0),
                ],
                vec!["unassigned"],
            ),
            (
                "pending before unknown before running",
                vec![
                    pod("running", "n1", "Running", None, 0, T0),
                    pod("unknown", "n1", "Unknown", None, 0, T0),
                    pod("pending", "n1", "Pending", None, 0, T0),
                ],
                vec!["pending", "unknown"],
            ),
            (
                "not ready before ready",
                vec![
                    pod("ready", "n1", "Running", Some(T0), 0, T0),
                    pod("notready", "n1", "Running", None, 0, T0),
                ],
                vec!["notready"],
            ),
            (
                "ready for less time first",
                vec![
                    pod("old-ready", "n1", "Running", Some(T0), 0, T0),
                    pod("new-ready", "n1", "Running", Some(T2), 0, T0),
                ],
                vec!["new-ready"],
            ),
            (
                "more restarts first",
                vec![
                    pod("calm", "n1", "Running", Some(T1), 0, T0),
                    pod("crashy", "n1", "Running", Some(T1), 5, T0),
                ],
                vec!["crashy"],
            ),
            (
                "newer first",
                vec![
                    pod("older", "n1", "Running", Some(T1), 0, T0),
                    pod("newer", "n1", "Running", Some(T1), 0, T2),
                ],
                vec!["newer"],
            ),
        ];
        for (name, pods, want) in cases {
            let mut want: Vec<String> = want.into_iter().map(String::from).collect();
            want.push("…".to_owned());
            assert_eq!(order(&pods), want, "{name}");
        }
    }

    #[test]
    fn deletion_cost_and_colocation() {
        let mut cheap = pod("cheap", "n1", "Running", Some(T1), 0, T0);
        cheap["metadata"]["annotations"] = json!({POD_DELETION_COST_ANNOTATION: "-10"});
        let dear = pod("dear", "n2", "Running", Some(T1), 0, T2);
        let refs = [&cheap, &dear];
        assert_eq!(meta::name(pods_to_delete(&refs, &[], 1)[0]), "cheap");

        let a = pod("a", "crowded", "Running", Some(T1), 0, T0);
        let b = pod("b", "quiet", "Running", Some(T1), 0, T2);
        let other = pod("x", "crowded", "Running", Some(T1), 0, T0);
        let pods = [&a, &b];
        let related = [&a, &b, &other];
        assert_eq!(meta::name(pods_to_delete(&pods, &related, 1)[0]), "a");
    }

    #[test]
    fn takes_all_when_asked_for_more() {
        let a = pod("a", "", "Pending", None, 0, T0);
        assert_eq!(pods_to_delete(&[&a], &[], 3).len(), 1);
    }
}
