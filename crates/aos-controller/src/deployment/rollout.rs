//! The arithmetic of rollouts, as pure functions over replica-set sizes:
//! maxSurge/maxUnavailable resolution, how far the new ReplicaSet may grow,
//! how far old ones may shrink, and proportional scaling. Each mirrors the
//! function of Kubernetes' deployment controller named in its doc comment.

use std::cmp::Ordering;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// An int-or-percent value that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid int or percent {0:?}")]
pub struct IntOrPercentError(pub String);

/// Resolve an int or a percent of `total` (`GetScaledValueFromIntOrPercent`):
/// percents round up or down as asked.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, IntOrPercentError> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(|| IntOrPercentError(s.clone()))?;
            let scaled = pct * i64::from(total);
            let value = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(value).map_err(|_| IntOrPercentError(s.clone()))
        }
    }
}

/// The deployment strategy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Kill all old pods before creating new ones.
    Recreate,
    /// Replace pods gradually.
    RollingUpdate {
        /// `maxSurge` (Kubernetes defaults it to 25%).
        max_surge: IntOrString,
        /// `maxUnavailable` (Kubernetes defaults it to 25%).
        max_unavailable: IntOrString,
    },
}

/// The parts of a Deployment's spec the arithmetic needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `spec.strategy`.
    pub strategy: Strategy,
}

impl Spec {
    /// A rolling-update spec (tests and examples).
    pub fn rolling(replicas: i32, max_surge: IntOrString, max_unavailable: IntOrString) -> Self {
        Self {
            replicas,
            strategy: Strategy::RollingUpdate {
                max_surge,
                max_unavailable,
            },
        }
    }
}

/// `ResolveFenceposts`: maxSurge rounds up, maxUnavailable rounds down, and
/// both zero becomes maxUnavailable 1.
pub fn resolve_fenceposts(
    max_surge: &IntOrString,
    max_unavailable: &IntOrString,
    desired: i32,
) -> Result<(i32, i32), IntOrPercentError> {
    let surge = scaled_value(max_surge, desired, true)?;
    let mut unavailable = scaled_value(max_unavailable, desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// `MaxSurge`: 0 for Recreate.
pub fn max_surge(spec: &Spec) -> i32 {
    match &spec.strategy {
        Strategy::Recreate => 0,
        Strategy::RollingUpdate {
            max_surge,
            max_unavailable,
        } => resolve_fenceposts(max_surge, max_unavailable, spec.replicas)
            .map(|(s, _)| s)
            .unwrap_or(0),
    }
}

/// `MaxUnavailable`: 0 for Recreate or zero replicas, at most `replicas`.
pub fn max_unavailable(spec: &Spec) -> i32 {
    match &spec.strategy {
        Strategy::Recreate => 0,
        _ if spec.replicas == 0 => 0,
        Strategy::RollingUpdate {
            max_surge,
            max_unavailable,
        } => {
            let (_, u) =
                resolve_fenceposts(max_surge, max_unavailable, spec.replicas).unwrap_or((0, 0));
            u.min(spec.replicas)
        }
    }
}

/// One ReplicaSet as the arithmetic sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsState {
    /// Name (ties and identification).
    pub name: String,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`.
    pub status_replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// `deployment.kubernetes.io/desired-replicas`.
    pub desired_annotation: Option<i32>,
    /// `deployment.kubernetes.io/max-replicas`.
    pub max_annotation: Option<i32>,
}

impl RsState {
    /// A ReplicaSet with `replicas` pods, all of them available.
    pub fn new(name: &str, created_second: i64, replicas: i32) -> Self {
        Self {
            name: name.to_owned(),
            created: Timestamp::from_second(created_second).ok(),
            replicas,
            status_replicas: replicas,
            ready: replicas,
            available: replicas,
            desired_annotation: None,
            max_annotation: None,
        }
    }
}

/// `ReplicaSetsByCreationTimestamp`: older first, then by name.
pub fn by_creation(a: &RsState, b: &RsState) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
}

/// `GetReplicaCountForReplicaSets`: sum of `spec.replicas`.
pub fn replica_count(rs: &[&RsState]) -> i32 {
    rs.iter().map(|r| r.replicas).sum()
}

/// `GetAvailableReplicaCountForReplicaSets`.
pub fn available_count(rs: &[&RsState]) -> i32 {
    rs.iter().map(|r| r.available).sum()
}

/// `NewRSNewReplicas`: the size the new ReplicaSet may grow to now.
pub fn new_rs_new_replicas(spec: &Spec, current_pod_count: i32, new_rs_replicas: i32) -> i32 {
    match spec.strategy {
        Strategy::Recreate => spec.replicas,
        Strategy::RollingUpdate { .. } => {
            let max_total = spec.replicas + max_surge(spec);
            if current_pod_count >= max_total {
                return new_rs_replicas;
            }
            let scale_up = (max_total - current_pod_count).min(spec.replicas - new_rs_replicas);
            new_rs_replicas + scale_up
        }
    }
}

/// `reconcileNewReplicaSet`: the new size of the new ReplicaSet, if it changes.
pub fn reconcile_new(spec: &Spec, all: &[RsState], new: usize) -> Option<i32> {
    let cur = all[new].replicas;
    if cur == spec.replicas {
        return None;
    }
    if cur > spec.replicas {
        return Some(spec.replicas);
    }
    let refs: Vec<&RsState> = all.iter().collect();
    let target = new_rs_new_replicas(spec, replica_count(&refs), cur);
    (target != cur).then_some(target)
}

/// `reconcileOldReplicaSets` with `cleanupUnhealthyReplicas` and
/// `scaleDownOldReplicaSetsForRollingUpdate`: shrink old ReplicaSets (in
/// `all`, all but index `new`) as far as availability allows, unhealthy pods
/// first. Returns whether anything shrank.
pub fn reconcile_old(spec: &Spec, all: &mut [RsState], new: Option<usize>) -> bool {
    let old_idx: Vec<usize> = (0..all.len())
        .filter(|i| Some(*i) != new && all[*i].replicas > 0)
        .collect();
    let old_pods: i32 = old_idx.iter().map(|i| all[*i].replicas).sum();
    if old_pods == 0 {
        return false;
    }
    let all_pods: i32 = all.iter().map(|r| r.replicas).sum();
    let min_available = spec.replicas - max_unavailable(spec);
    let new_unavailable = new.map_or(0, |n| all[n].replicas - all[n].available);
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return false;
    }
    let mut order = old_idx;
    order.sort_by(|a, b| by_creation(&all[*a], &all[*b]));

    // Unhealthy replicas first: they do not count towards availability anyway.
    let mut cleaned = 0;
    for &i in &order {
        if cleaned >= max_scaled_down {
            break;
        }
        let rs = &mut all[i];
        if rs.replicas == 0 || rs.replicas == rs.available {
            continue;
        }
        let n = (max_scaled_down - cleaned).min(rs.replicas - rs.available);
        rs.replicas -= n;
        cleaned += n;
    }

    // Then healthy ones, keeping minAvailable.
    let available: i32 = all.iter().map(|r| r.available).sum();
    let mut scaled = 0;
    if available > min_available {
        let total = available - min_available;
        for &i in &order {
            if scaled >= total {
                break;
            }
            let rs = &mut all[i];
            if rs.replicas == 0 {
                continue;
            }
            let n = rs.replicas.min(total - scaled);
            rs.replicas -= n;
            scaled += n;
        }
    }
    cleaned + scaled > 0
}

/// `IsSaturated`: the ReplicaSet runs the whole deployment, all available.
pub fn is_saturated(spec: &Spec, rs: &RsState) -> bool {
    rs.desired_annotation == Some(spec.replicas)
        && rs.available == spec.replicas
        && rs.replicas == spec.replicas
}

/// `getReplicaSetFraction`: how many replicas `rs` gains (or loses) when the
/// deployment grows to `replicas + maxSurge`, in proportion to its size.
fn rs_fraction(spec: &Spec, status_replicas: i32, rs: &RsState) -> i32 {
    if spec.replicas == 0 {
        return -rs.replicas;
    }
    let deployment_replicas = spec.replicas + max_surge(spec);
    let annotated = rs.max_annotation.unwrap_or(status_replicas);
    if annotated == 0 {
        // No basis for a proportion (Kubernetes would divide by zero here).
        return 0;
    }
    let size = f64::from(rs.replicas) * f64::from(deployment_replicas) / f64::from(annotated);
    // Go's math.Round: half away from zero, as f64::round.
    size.round() as i32 - rs.replicas
}

/// `GetProportion`.
fn proportion(spec: &Spec, status_replicas: i32, rs: &RsState, to_add: i32, added: i32) -> i32 {
    if rs.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = rs_fraction(spec, status_replicas, rs);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Which way a scaling goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Growing.
    Up,
    /// Shrinking.
    Down,
}

/// `scale()` of Kubernetes' sync.go: the new sizes of the ReplicaSets when
/// the deployment's size changed (or it is paused) mid-rollout. `all` holds
/// every ReplicaSet (old and new); `new` indexes the new one; `status_replicas`
/// is the deployment's `status.replicas`. Sizes change in place; returns the
/// indices that changed, in the order Kubernetes scales them.
pub fn scale(
    spec: &Spec,
    status_replicas: i32,
    all: &mut [RsState],
    new: Option<usize>,
) -> Vec<usize> {
    let active: Vec<usize> = (0..all.len()).filter(|i| all[*i].replicas > 0).collect();
    // FindActiveOrLatest: with at most one active ReplicaSet, it takes the whole size.
    let single = match active.len() {
        0 => new.or_else(|| {
            let mut old: Vec<usize> = (0..all.len()).filter(|i| Some(*i) != new).collect();
            old.sort_by(|a, b| by_creation(&all[*a], &all[*b]));
            old.last().copied()
        }),
        1 => Some(active[0]),
        _ => None,
    };
    if let Some(i) = single {
        if all[i].replicas == spec.replicas {
            return Vec::new();
        }
        all[i].replicas = spec.replicas;
        return vec![i];
    }
    if let Some(n) = new
        && is_saturated(spec, &all[n])
    {
        let mut changed = Vec::new();
        for i in active {
            if i != n && all[i].replicas != 0 {
                all[i].replicas = 0;
                changed.push(i);
            }
        }
        return changed;
    }
    if matches!(spec.strategy, Strategy::Recreate) {
        return Vec::new();
    }
    let total: i32 = active.iter().map(|i| all[*i].replicas).sum();
    let allowed = if spec.replicas > 0 {
        spec.replicas + max_surge(spec)
    } else {
        0
    };
    let to_add = allowed - total;
    let mut order = active;
    if to_add > 0 {
        // ReplicaSetsBySizeNewer: larger first, then newer first.
        order.sort_by(|a, b| {
            all[*b]
                .replicas
                .cmp(&all[*a].replicas)
                .then_with(|| by_creation(&all[*b], &all[*a]))
        });
    } else if to_add < 0 {
        // ReplicaSetsBySizeOlder: larger first, then older first.
        order.sort_by(|a, b| {
            all[*b]
                .replicas
                .cmp(&all[*a].replicas)
                .then_with(|| by_creation(&all[*a], &all[*b]))
        });
    } else {
        return Vec::new();
    }
    let mut added = 0;
    let mut sizes: Vec<i32> = Vec::with_capacity(order.len());
    for &i in &order {
        let p = proportion(spec, status_replicas, &all[i], to_add, added);
        sizes.push(all[i].replicas + p);
        added += p;
    }
    // Leftovers go to the first (largest) ReplicaSet.
    if let Some(first) = sizes.first_mut() {
        *first = (*first + to_add - added).max(0);
    }
    let mut changed = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if all[i].replicas != sizes[k] {
            all[i].replicas = sizes[k];
            changed.push(i);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.to_owned())
    }
    fn int(i: i32) -> IntOrString {
        IntOrString::Int(i)
    }

    #[test]
    fn scaled_value_table() {
        // (value, total, round_up, expected)
        let cases = [
            (pct("25%"), 10, true, 3),
            (pct("25%"), 10, false, 2),
            (pct("0%"), 10, true, 0),
            (pct("100%"), 3, false, 3),
            (pct("50%"), 5, true, 3),
            (pct("50%"), 5, false, 2),
            (pct("1%"), 1, true, 1),
            (pct("1%"), 1, false, 0),
            (int(7), 3, true, 7),
        ];
        for (v, total, up, want) in cases {
            assert_eq!(
                scaled_value(&v, total, up).unwrap(),
                want,
                "{v:?} of {total} up={up}"
            );
        }
        assert!(scaled_value(&pct("abc"), 10, true).is_err());
        assert!(scaled_value(&pct("25"), 10, true).is_err());
    }

    #[test]
    fn resolve_fenceposts_table() {
        // From Kubernetes' TestResolveFenceposts and the docs' examples.
        let cases = [
            (int(0), int(0), 10, (0, 1)),
            (int(1), int(0), 10, (1, 0)),
            (pct("25%"), pct("25%"), 10, (3, 2)),
            (pct("25%"), pct("25%"), 4, (1, 1)),
            (pct("25%"), pct("25%"), 1, (1, 0)),
            (pct("0%"), pct("0%"), 10, (0, 1)),
            (pct("10%"), pct("10%"), 1, (1, 0)),
            (pct("50%"), pct("50%"), 3, (2, 1)),
            (int(3), int(2), 10, (3, 2)),
            (pct("0%"), pct("1%"), 10, (0, 1)),
            (pct("0%"), pct("1%"), 0, (0, 1)),
        ];
        for (s, u, d, want) in cases {
            assert_eq!(
                resolve_fenceposts(&s, &u, d).unwrap(),
                want,
                "surge {s:?} unavailable {u:?} desired {d}"
            );
        }
    }

    #[test]
    fn max_unavailable_is_capped_and_zero_for_recreate() {
        assert_eq!(max_unavailable(&Spec::rolling(2, int(0), int(5))), 2);
        assert_eq!(max_unavailable(&Spec::rolling(0, int(1), int(1))), 0);
        assert_eq!(
            max_unavailable(&Spec {
                replicas: 3,
                strategy: Strategy::Recreate
            }),
            0
        );
        assert_eq!(
            max_surge(&Spec {
                replicas: 3,
                strategy: Strategy::Recreate
            }),
            0
        );
    }

    #[test]
    fn new_rs_new_replicas_table() {
        // (replicas, maxSurge, old RS size, new RS size, expected)
        let cases = [
            (1, 1, 5, 0, 0), // already above replicas + surge: no growth
            (1, 1, 1, 0, 1), // surge caps total at 2: 1 old + 1 new
            (3, 3, 5, 0, 1), // room for one more under 3 + 3
            (3, 3, 0, 0, 3), // never beyond replicas
            (10, 3, 10, 0, 3),
            (10, 3, 10, 3, 3), // at the cap: no growth
            (10, 3, 7, 3, 6),
            (5, 1, 0, 4, 5),
        ];
        for (replicas, surge, old, new, want) in cases {
            let spec = Spec::rolling(replicas, int(surge), int(0));
            assert_eq!(
                new_rs_new_replicas(&spec, old + new, new),
                want,
                "replicas {replicas} surge {surge} old {old} new {new}"
            );
        }
        let recreate = Spec {
            replicas: 4,
            strategy: Strategy::Recreate,
        };
        assert_eq!(new_rs_new_replicas(&recreate, 9, 0), 4);
    }

    /// The example of the Kubernetes docs: 3 replicas, 25%/25% resolves to
    /// maxSurge 1, maxUnavailable 0, so a rollout goes 3+1, then old 2, and so on.
    #[test]
    fn docs_rolling_example_steps() {
        let spec = Spec::rolling(3, pct("25%"), pct("25%"));
        assert_eq!(
            resolve_fenceposts(&pct("25%"), &pct("25%"), 3).unwrap(),
            (1, 0)
        );
        let mut all = vec![
            RsState::new("old", 1, 3),
            RsState {
                available: 0,
                ready: 0,
                status_replicas: 0,
                ..RsState::new("new", 2, 0)
            },
        ];
        assert_eq!(reconcile_new(&spec, &all, 1), Some(1));
        all[1].replicas = 1;
        // the new pod is not available: nothing old may go
        assert!(!reconcile_old(&spec, &mut all, Some(1)));
        all[1].available = 1;
        assert!(reconcile_old(&spec, &mut all, Some(1)));
        assert_eq!(all[0].replicas, 2);
        assert_eq!(reconcile_new(&spec, &all, 1), Some(2));
    }

    #[test]
    fn reconcile_old_cleans_unhealthy_first() {
        // 10 replicas, maxUnavailable 2, surge 0; old RS has 10 pods of which 4 are unavailable.
        let spec = Spec::rolling(10, int(0), int(2));
        let mut all = vec![
            RsState {
                available: 6,
                ready: 6,
                ..RsState::new("old", 1, 10)
            },
            RsState {
                available: 0,
                ready: 0,
                status_replicas: 0,
                ..RsState::new("new", 2, 0)
            },
        ];
        // maxScaledDown = 10 - 8 - 0 = 2: only unhealthy pods go, availability stays 6
        assert!(reconcile_old(&spec, &mut all, Some(1)));
        assert_eq!(all[0].replicas, 8);
    }

    #[test]
    fn reconcile_old_keeps_min_available() {
        // 10 replicas, maxSurge 3, maxUnavailable 2: new RS at 3 (unavailable), old at 10.
        let spec = Spec::rolling(10, int(3), int(2));
        let mut all = vec![
            RsState::new("old", 1, 10),
            RsState {
                available: 0,
                ready: 0,
                status_replicas: 3,
                ..RsState::new("new", 2, 3)
            },
        ];
        // maxScaledDown = 13 - 8 - 3 = 2; available 10 > 8 -> scale old by 2.
        assert!(reconcile_old(&spec, &mut all, Some(1)));
        assert_eq!(all[0].replicas, 8);
        // again: allPods 11 - 8 - 3 = 0 -> nothing
        all[0].available = 8;
        assert!(!reconcile_old(&spec, &mut all, Some(1)));
    }

    #[test]
    fn proportional_scaling_docs_example() {
        // Kubernetes docs: 10 replicas, maxSurge 3, maxUnavailable 2, rollout stuck with
        // old RS at 8 and new RS at 5; scaling to 15 adds 3 to the old and 2 to the new.
        let spec = Spec::rolling(15, int(3), int(2));
        let mut all = vec![
            RsState {
                max_annotation: Some(13),
                desired_annotation: Some(10),
                ..RsState::new("old", 1, 8)
            },
            RsState {
                max_annotation: Some(13),
                desired_annotation: Some(10),
                available: 0,
                ..RsState::new("new", 2, 5)
            },
        ];
        let changed = scale(&spec, 13, &mut all, Some(1));
        assert_eq!(changed, vec![0, 1]);
        assert_eq!((all[0].replicas, all[1].replicas), (11, 7));
    }

    #[test]
    fn proportional_scaling_table() {
        struct Case {
            name: &'static str,
            replicas: i32,
            surge: i32,
            status_replicas: i32,
            sizes: Vec<(i32, Option<i32>)>, // (replicas, max-replicas annotation), oldest first; last is new
            want: Vec<i32>,
        }
        let cases = vec![
            Case {
                name: "scale up 10 -> 20, two even RSes",
                replicas: 20,
                surge: 0,
                status_replicas: 10,
                sizes: vec![(5, Some(10)), (5, Some(10))],
                want: vec![10, 10],
            },
            Case {
                name: "scale down 20 -> 10",
                replicas: 10,
                surge: 0,
                status_replicas: 20,
                sizes: vec![(10, Some(20)), (10, Some(20))],
                want: vec![5, 5],
            },
            Case {
                name: "leftover goes to the largest (newer on ties when growing)",
                replicas: 11,
                surge: 0,
                status_replicas: 10,
                sizes: vec![(5, Some(10)), (5, Some(10))],
                want: vec![5, 6],
            },
            Case {
                name: "leftover goes to the largest (older on ties when shrinking)",
                replicas: 9,
                surge: 0,
                status_replicas: 10,
                sizes: vec![(5, Some(10)), (5, Some(10))],
                want: vec![4, 5],
            },
            Case {
                name: "three RSes, uneven",
                replicas: 30,
                surge: 0,
                status_replicas: 15,
                sizes: vec![(3, Some(15)), (4, Some(15)), (8, Some(15))],
                want: vec![6, 8, 16],
            },
            Case {
                name: "no annotation falls back to status.replicas",
                replicas: 20,
                surge: 0,
                status_replicas: 10,
                sizes: vec![(2, None), (8, None)],
                want: vec![4, 16],
            },
            Case {
                name: "scale to zero",
                replicas: 0,
                surge: 0,
                status_replicas: 10,
                sizes: vec![(4, Some(10)), (6, Some(10))],
                want: vec![0, 0],
            },
        ];
        for c in cases {
            let spec = Spec::rolling(c.replicas, int(c.surge), int(1));
            let mut all: Vec<RsState> = c
                .sizes
                .iter()
                .enumerate()
                .map(|(i, (r, m))| RsState {
                    max_annotation: *m,
                    ..RsState::new(&format!("rs{i}"), i as i64, *r)
                })
                .collect();
            let new = Some(all.len() - 1);
            scale(&spec, c.status_replicas, &mut all, new);
            let got: Vec<i32> = all.iter().map(|r| r.replicas).collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn scale_with_one_active_rs_sets_it_whole() {
        let spec = Spec::rolling(7, int(1), int(1));
        let mut all = vec![RsState::new("old", 1, 0), RsState::new("new", 2, 3)];
        assert_eq!(scale(&spec, 3, &mut all, Some(1)), vec![1]);
        assert_eq!(all[1].replicas, 7);
        // none active, no new: the latest old takes it
        let mut all = vec![RsState::new("a", 1, 0), RsState::new("b", 2, 0)];
        assert_eq!(scale(&spec, 0, &mut all, None), vec![1]);
        assert_eq!(all[1].replicas, 7);
    }

    #[test]
    fn saturated_new_rs_scales_old_to_zero() {
        let spec = Spec::rolling(3, int(1), int(0));
        let mut all = vec![
            RsState::new("old", 1, 1),
            RsState {
                desired_annotation: Some(3),
                ..RsState::new("new", 2, 3)
            },
        ];
        assert_eq!(scale(&spec, 4, &mut all, Some(1)), vec![0]);
        assert_eq!(all[0].replicas, 0);
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::{
        Strategy as _, TestCaseError, any, prop_assert, prop_assert_eq, prop_oneof, proptest,
    };

    use super::*;

    fn int_or_pct() -> impl proptest::strategy::Strategy<Value = IntOrString> {
        prop_oneof![
            (0..6i32).prop_map(IntOrString::Int),
            (0..=100u32).prop_map(|p| IntOrString::String(format!("{p}%")))
        ]
    }

    /// One controller pass of a rolling update: grow the new ReplicaSet, else shrink old ones.
    /// The ReplicaSet controller is assumed instant: pods exist as soon as replicas say so.
    fn controller_pass(spec: &Spec, all: &mut [RsState]) {
        if let Some(t) = reconcile_new(spec, all, 1) {
            all[1].replicas = t;
            all[1].available = all[1].available.min(t);
        } else {
            reconcile_old(spec, all, Some(1));
            all[0].available = all[0].available.min(all[0].replicas);
        }
    }

    fn check(spec: &Spec, all: &[RsState]) -> Result<(), TestCaseError> {
        let total: i32 = all.iter().map(|r| r.replicas).sum();
        let available: i32 = all.iter().map(|r| r.available).sum();
        prop_assert!(
            total <= spec.replicas + max_surge(spec),
            "total {total} exceeds replicas + maxSurge"
        );
        prop_assert!(
            available >= spec.replicas - max_unavailable(spec),
            "available {available} below replicas - maxUnavailable"
        );
        Ok(())
    }

    proptest! {
        #[test]
        fn rollout_respects_surge_and_availability(
            replicas in 1..25i32,
            surge in int_or_pct(),
            unavailable in int_or_pct(),
            readiness in proptest::collection::vec(any::<u8>(), 1..120),
        ) {
            let spec = Spec::rolling(replicas, surge, unavailable);
            let mut all = vec![
                RsState::new("old", 1, replicas),
                RsState { available: 0, ready: 0, status_replicas: 0, ..RsState::new("new", 2, 0) },
            ];
            check(&spec, &all)?;
            // Pods of the new ReplicaSet become ready in an arbitrary order and pace.
            for r in readiness {
                controller_pass(&spec, &mut all);
                check(&spec, &all)?;
                let unready = all[1].replicas - all[1].available;
                all[1].available += i32::from(r) % (unready + 1);
                check(&spec, &all)?;
            }
            // Then every pod becomes ready at once: the rollout must finish.
            for _ in 0..(4 * replicas + 10) {
                controller_pass(&spec, &mut all);
                check(&spec, &all)?;
                all[1].available = all[1].replicas;
            }
            prop_assert_eq!(all[0].replicas, 0);
            prop_assert_eq!(all[1].replicas, replicas);
        }
    }
}
