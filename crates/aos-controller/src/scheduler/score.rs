//! Scores of feasible nodes, as kube-scheduler's default plugins compute them, with
//! their default weights: TaintToleration (3: fewer untolerated `PreferNoSchedule` taints
//! is better), NodeResourcesFit with the LeastAllocated strategy (1: more room left is
//! better) and NodeResourcesBalancedAllocation (1: CPU and memory used in proportion is
//! better). Each plugin scores 0..=100; the highest weighted sum wins, ties go to the
//! first node by name (kube-scheduler picks among ties at random; a fixed order is easier
//! to reason about and to test).

use super::filter::{NodeInfo, PodInfo};

/// The best score a plugin gives.
pub const MAX_NODE_SCORE: i64 = 100;
const WEIGHT_TAINT_TOLERATION: i64 = 3;
const WEIGHT_LEAST_ALLOCATED: i64 = 1;
const WEIGHT_BALANCED_ALLOCATION: i64 = 1;

fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    // i128: `capacity * 100` overflows i64 for exabyte-sized (saturated) capacities.
    ((i128::from(capacity - requested) * i128::from(MAX_NODE_SCORE)) / i128::from(capacity)) as i64
}

/// LeastAllocated: the mean share of CPU and memory left after placing the pod (requests
/// of containers that ask for nothing count as 100m / 200Mi).
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let cap = node.allocatable.amounts;
    let cpu = node
        .requested
        .non_zero
        .milli_cpu
        .saturating_add(pod.requests.non_zero.milli_cpu);
    let mem = node
        .requested
        .non_zero
        .memory
        .saturating_add(pod.requests.non_zero.memory);
    (least_requested(cpu, cap.milli_cpu) + least_requested(mem, cap.memory)) / 2
}

/// BalancedAllocation: 100 when CPU and memory would be used in the same proportion.
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let cap = node.allocatable.amounts;
    let req = node.requested.request;
    let want = pod.requests.request;
    let mut fractions = Vec::with_capacity(2);
    for (used, capacity) in [
        (req.milli_cpu.saturating_add(want.milli_cpu), cap.milli_cpu),
        (req.memory.saturating_add(want.memory), cap.memory),
    ] {
        if capacity > 0 {
            fractions.push((used as f64 / capacity as f64).min(1.0));
        }
    }
    let std = match fractions.as_slice() {
        [a, b] => ((a - b) / 2.0).abs(),
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// Weighted scores of `nodes` (all feasible for `pod`), in the same order.
pub fn scores(pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let taints: Vec<usize> = nodes
        .iter()
        .map(|n| n.intolerable_preferred_taints(pod))
        .collect();
    let max_taints = taints.iter().copied().max().unwrap_or(0);
    nodes
        .iter()
        .zip(&taints)
        .map(|(n, &t)| {
            // DefaultNormalizeScore, reversed: the most tainted node scores 0.
            let taint_score = if max_taints == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE - MAX_NODE_SCORE * t as i64 / max_taints as i64
            };
            WEIGHT_TAINT_TOLERATION * taint_score
                + WEIGHT_LEAST_ALLOCATED * least_allocated(pod, n)
                + WEIGHT_BALANCED_ALLOCATION * balanced_allocation(pod, n)
        })
        .collect()
}

/// The node to bind `pod` to among `feasible`: the best score, then the first name.
pub fn select<'a>(pod: &PodInfo, feasible: &[&'a NodeInfo]) -> Option<&'a NodeInfo> {
    let scores = scores(pod, feasible);
    feasible
        .iter()
        .zip(scores)
        .max_by(|(a, sa), (b, sb)| sa.cmp(sb).then_with(|| b.name.cmp(&a.name)))
        .map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn node(name: &str, cpu: &str, memory: &str, taints: Value) -> NodeInfo {
        NodeInfo::from_node(&json!({
            "metadata": {"name": name},
            "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
    }

    fn pod(cpu: &str, memory: &str) -> PodInfo {
        PodInfo::from_pod(&json!({"spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}))
    }

    #[test]
    fn least_allocated_and_balanced_match_kubernetes_arithmetic() {
        // Kubernetes' documented example: node 4 CPU / 10000 MB, pod 1 CPU / 2000 MB on an
        // empty node: cpu (4-1)/4 = 75, memory (10000-2000)/10000 = 80 → 77.
        let n = node("a", "4", "10000M", json!([]));
        let p = pod("1", "2000M");
        assert_eq!(least_allocated(&p, &n), 77);
        // fractions 0.25 and 0.2 → std 0.025 → 97
        assert_eq!(balanced_allocation(&p, &n), 97);
    }

    #[test]
    fn prefers_emptier_nodes_then_names() {
        let a = node("a", "2", "4Gi", json!([]));
        let mut b = node("b", "2", "4Gi", json!([]));
        let p = pod("500m", "512Mi");
        assert_eq!(select(&p, &[&b, &a]).unwrap().name, "a", "ties go by name");
        let mut busy_a = a.clone();
        busy_a.add_pod(&p.requests);
        assert_eq!(select(&p, &[&busy_a, &b]).unwrap().name, "b");
        b.add_pod(&p.requests);
        b.add_pod(&p.requests);
        assert_eq!(select(&p, &[&busy_a, &b]).unwrap().name, "a");
    }

    #[test]
    fn prefer_no_schedule_lowers_the_score() {
        let tainted = node(
            "a",
            "8",
            "16Gi",
            json!([{"key": "k", "effect": "PreferNoSchedule"}]),
        );
        let mut plain = node("b", "2", "4Gi", json!([]));
        let p = pod("500m", "512Mi");
        plain.add_pod(&p.requests);
        assert_eq!(select(&p, &[&tainted, &plain]).unwrap().name, "b");
        let tolerant = PodInfo {
            tolerations: vec![super::super::filter::Toleration {
                key: "k".into(),
                operator: "Exists".into(),
                ..Default::default()
            }],
            ..p
        };
        assert_eq!(select(&tolerant, &[&tainted, &plain]).unwrap().name, "a");
    }
}
