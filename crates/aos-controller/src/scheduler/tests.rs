//! The scheduler against the fake cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::cluster::ListParams;
use crate::cluster::fake::FakeCluster;
use crate::kinds::tests::{EVENTS, NODES, PODS, kinds};
use crate::meta::ManualClock;
use crate::testing::{Harness, condition, node, pod};

/// The seed's pod template: `nodeSelector {agent.os: linux}` and the toleration
/// `agent.os Exists NoSchedule`, requesting 250m CPU and 512Mi.
fn seed_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "agent-registry"}},
        "spec": {
            "containers": [{"name": "agent-registry", "image": "agent-registry:1.0.0",
                "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                              "limits": {"cpu": "500m", "memory": "1Gi"}}}],
            "nodeSelector": {"agent.os": "linux"},
            "tolerations": [{"key": "agent.os", "operator": "Exists", "effect": "NoSchedule"}]
        }
    })
}

fn events_for(h: &Harness, pod: &str, reason: &str) -> Vec<Value> {
    h.events()
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == pod && e["reason"] == reason)
        .collect()
}

#[tokio::test]
async fn node_selector_waits_for_a_matching_node() {
    let h = Harness::start().await;
    h.create(&node("n1", "4", "8Gi")).await;
    h.create(&seed_pod("p")).await;
    h.eventually("selector mismatch reported", |h| {
        h.unschedulable_message("p").as_deref()
            == Some("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.")
    })
    .await;
    let failed = events_for(&h, "p", "FailedScheduling");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["type"], "Warning");
    assert_eq!(failed[0]["source"]["component"], "default-scheduler");

    // The node agent gets the seed's label: the pod is tried again and bound.
    h.update_node("n1", |n| {
        n["metadata"]["labels"]["agent.os"] = json!("linux")
    });
    h.eventually("bound to n1", |h| h.node_of("p").as_deref() == Some("n1"))
        .await;
    h.eventually("PodScheduled=True", |h| {
        h.pod("p")
            .and_then(|p| condition(&p, "PodScheduled"))
            .is_some_and(|c| c["status"] == "True")
    })
    .await;
    h.eventually("Scheduled event", |h| {
        !events_for(h, "p", "Scheduled").is_empty()
    })
    .await;
    let ev = &events_for(&h, "p", "Scheduled")[0];
    assert_eq!(ev["message"], "Successfully assigned default/p to n1");
    assert_eq!(ev["type"], "Normal");
    h.stop().await;
}

#[tokio::test]
async fn taints_need_tolerations() {
    let h = Harness::start().await;
    let mut n = node("n1", "4", "8Gi");
    n["metadata"]["labels"]["agent.os"] = json!("linux");
    n["spec"]["taints"] = json!([{"key": "agent.os", "value": "linux", "effect": "NoSchedule"}]);
    h.create(&n).await;
    let mut intolerant = seed_pod("intolerant");
    intolerant["spec"]["tolerations"] = json!([]);
    h.create(&intolerant).await;
    h.create(&seed_pod("tolerant")).await;
    h.eventually("tolerant pod bound", |h| {
        h.node_of("tolerant").as_deref() == Some("n1")
    })
    .await;
    h.eventually("intolerant pod refused", |h| {
        h.unschedulable_message("intolerant").as_deref()
            == Some("0/1 nodes are available: 1 node(s) had untolerated taint {agent.os: linux}.")
    })
    .await;
    assert_eq!(h.node_of("intolerant"), None);
    h.stop().await;
}

#[tokio::test]
async fn insufficient_resources_say_which() {
    let h = Harness::start().await;
    h.create(&node("small", "1", "1Gi")).await;
    let mut big = pod("big", Some("1500m"));
    big["spec"]["containers"][0]["resources"]["requests"]["memory"] = json!("2Gi");
    h.create(&big).await;
    h.eventually("insufficient cpu and memory", |h| {
        h.unschedulable_message("big").as_deref()
            == Some("0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.")
    })
    .await;
    let ev = &events_for(&h, "big", "FailedScheduling")[0];
    assert_eq!(
        ev["message"],
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
    );
    // A bigger node arrives: the pod goes there.
    h.create(&node("large", "4", "8Gi")).await;
    h.eventually("bound to the large node", |h| {
        h.node_of("big").as_deref() == Some("large")
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn no_nodes_then_a_node() {
    let h = Harness::start().await;
    h.create(&pod("p", None)).await;
    h.eventually("no nodes", |h| {
        h.unschedulable_message("p").as_deref() == Some(NO_NODES_MESSAGE)
    })
    .await;
    h.create(&node("n1", "1", "1Gi")).await;
    h.eventually("bound", |h| h.node_of("p").as_deref() == Some("n1"))
        .await;
    h.stop().await;
}

#[tokio::test]
async fn many_pods_pack_within_allocatable() {
    let h = Harness::start().await;
    h.create(&node("a", "1", "4Gi")).await;
    h.create(&node("b", "1", "4Gi")).await;
    for i in 0..10 {
        h.create(&pod(&format!("p{i}"), Some("300m"))).await;
    }
    let names: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    h.eventually("six bound, four refused", |h| {
        let bound = names.iter().filter(|n| h.node_of(n).is_some()).count();
        let refused = names
            .iter()
            .filter(|n| {
                h.unschedulable_message(n).as_deref()
                    == Some("0/2 nodes are available: 2 Insufficient cpu.")
            })
            .count();
        bound == 6 && refused == 4
    })
    .await;
    let mut per_node: BTreeMap<String, i64> = BTreeMap::new();
    for n in &names {
        if let Some(node) = h.node_of(n) {
            *per_node.entry(node).or_default() += 300;
        }
    }
    assert_eq!(
        per_node,
        BTreeMap::from([("a".into(), 900), ("b".into(), 900)])
    );

    // A bound pod goes away: one waiting pod takes its room, no more.
    let victim = names
        .iter()
        .find(|n| h.node_of(n).is_some())
        .unwrap()
        .clone();
    h.fake
        .delete(&PODS, Some("default"), &victim, &Default::default())
        .await
        .unwrap();
    h.eventually("a waiting pod takes the freed room", |h| {
        names.iter().filter(|n| h.node_of(n).is_some()).count() == 6
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(names.iter().filter(|n| h.node_of(n).is_some()).count(), 6);
    h.stop().await;
}

#[tokio::test]
async fn not_ready_and_cordoned_nodes_are_skipped() {
    let h = Harness::start().await;
    let mut sick = node("a-sick", "8", "16Gi");
    sick["status"]["conditions"][0]["status"] = json!("False");
    h.create(&sick).await;
    let mut cordoned = node("b-cordoned", "8", "16Gi");
    cordoned["spec"]["unschedulable"] = json!(true);
    h.create(&cordoned).await;
    h.create(&pod("p", Some("100m"))).await;
    h.eventually("both refused", |h| {
        h.unschedulable_message("p").as_deref()
            == Some("0/2 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable.")
    })
    .await;
    h.create(&node("c-small", "1", "1Gi")).await;
    h.eventually("bound to the ready node", |h| {
        h.node_of("p").as_deref() == Some("c-small")
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn other_schedulers_pods_and_bound_pods_are_left_alone() {
    let h = Harness::start().await;
    h.create(&node("n1", "1", "1Gi")).await;
    let mut other = pod("other", None);
    other["spec"]["schedulerName"] = json!("my-scheduler");
    h.create(&other).await;
    let mut preset = pod("preset", Some("100m"));
    preset["spec"]["nodeName"] = json!("elsewhere");
    h.create(&preset).await;
    h.create(&pod("mine", None)).await;
    h.eventually("mine bound", |h| h.node_of("mine").is_some())
        .await;
    let other = h.pod("other").unwrap();
    assert_eq!(other.pointer("/spec/nodeName"), None);
    assert_eq!(condition(&other, "PodScheduled"), None);
    assert_eq!(h.node_of("preset").as_deref(), Some("elsewhere"));
    h.stop().await;
}

#[tokio::test]
async fn binds_through_the_binding_subresource_when_served() {
    let h = Harness::start().await;
    h.fake.serve_binding(true);
    h.create(&node("n1", "1", "1Gi")).await;
    h.create(&pod("p", None)).await;
    h.eventually("bound", |h| h.node_of("p").as_deref() == Some("n1"))
        .await;
    assert_eq!(h.fake.calls("create_subresource", "pods"), 1);
    let p = h.pod("p").unwrap();
    assert_eq!(condition(&p, "PodScheduled").unwrap()["status"], "True");
    h.stop().await;
}

/// A scheduler whose caches are filled once and then frozen, so that nothing the binds
/// write comes back through the informers: only the assumed-pods cache can tell.
async fn frozen(fake: &Arc<FakeCluster>) -> Arc<SchedulerContext> {
    frozen_with_informers(fake).await.0
}

async fn frozen_with_informers(
    fake: &Arc<FakeCluster>,
) -> (Arc<SchedulerContext>, Informer, Informer) {
    let pods = Informer::new(fake.clone(), &PODS, None, ListParams::default());
    let nodes = Informer::new(fake.clone(), &NODES, None, ListParams::default());
    let cancel = CancellationToken::new();
    tokio::spawn(pods.clone().run(cancel.clone()));
    tokio::spawn(nodes.clone().run(cancel.clone()));
    pods.wait_ready().await;
    nodes.wait_ready().await;
    cancel.cancel();
    let clock = ManualClock::new("2024-06-01T12:00:00Z".parse().unwrap());
    let ctx = Arc::new(SchedulerContext {
        cluster: fake.clone(),
        kinds: kinds(),
        pods: pods.cache().clone(),
        nodes: nodes.cache().clone(),
        recorder: Recorder::new(fake.clone(), &EVENTS, SCHEDULER_NAME, clock.clone()),
        clock,
        state: Arc::default(),
    });
    (ctx, pods, nodes)
}

#[tokio::test]
async fn a_failed_bind_frees_its_room_at_once() {
    let fake = FakeCluster::new();
    fake.create(&NODES, None, &node("n1", "1", "4Gi"))
        .await
        .unwrap();
    let a = fake
        .create(&PODS, Some("default"), &pod("a", Some("700m")))
        .await
        .unwrap();
    fake.create(&PODS, Some("default"), &pod("b", Some("700m")))
        .await
        .unwrap();
    let (ctx, pods, nodes) = frozen_with_informers(&fake).await;
    let ctl = controller(pods, nodes, ctx.state.clone());
    let queue = ctl.queue();
    while !queue.is_empty() {
        let k = queue.get().await.unwrap();
        queue.done(&k);
    }
    fake.fail_next(
        "patch",
        &PODS,
        ClusterError::Api {
            code: 500,
            reason: "InternalError".into(),
            message: "store unavailable".into(),
        },
    );
    assert!(reconcile(Arc::new(a), ctx.clone()).await.is_err());
    assert_eq!(ctx.state.assumed_count(), 0);
    // The pods waiting for room are queued again now, not at the next flush.
    let mut queued = Vec::new();
    while !queue.is_empty() {
        let k = queue.get().await.unwrap();
        queued.push(k.name.clone());
        queue.done(&k);
    }
    queued.sort();
    assert_eq!(queued, ["a", "b"]);
}

#[tokio::test]
async fn assumed_pods_prevent_overcommit() {
    let fake = FakeCluster::new();
    fake.create(&NODES, None, &node("n1", "1", "4Gi"))
        .await
        .unwrap();
    let a = fake
        .create(&PODS, Some("default"), &pod("a", Some("700m")))
        .await
        .unwrap();
    let b = fake
        .create(&PODS, Some("default"), &pod("b", Some("700m")))
        .await
        .unwrap();
    let ctx = frozen(&fake).await;

    let action = reconcile(Arc::new(a.clone()), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let bound = fake.object(&PODS, Some("default"), "a").unwrap();
    assert_eq!(bound["spec"]["nodeName"], "n1");
    assert_eq!(ctx.state.assumed_count(), 1);

    // The cache still shows `a` unbound; without the assumption `b` would fit too.
    reconcile(Arc::new(b), ctx.clone()).await.unwrap();
    let b = fake.object(&PODS, Some("default"), "b").unwrap();
    assert_eq!(b.pointer("/spec/nodeName"), None);
    assert_eq!(
        condition(&b, "PodScheduled").unwrap()["message"],
        "0/1 nodes are available: 1 Insufficient cpu."
    );

    // `a` comes round again from the stale cache: it is not bound a second time.
    let patches = fake.calls("patch", "pods");
    reconcile(Arc::new(a), ctx.clone()).await.unwrap();
    assert_eq!(fake.calls("patch", "pods"), patches);
}

#[tokio::test(start_paused = true)]
async fn unschedulable_pods_back_off_until_something_changes() {
    let fake = FakeCluster::new();
    fake.create(&NODES, None, &node("n1", "1", "4Gi"))
        .await
        .unwrap();
    fake.create(&PODS, Some("default"), &pod("p", Some("2")))
        .await
        .unwrap();
    let ctx = frozen(&fake).await;
    let p = || Arc::new(fake.object(&PODS, Some("default"), "p").unwrap());

    let first = reconcile(p(), ctx.clone()).await.unwrap();
    assert_eq!(first.requeue_after(), Some(UNSCHEDULABLE_FLUSH));
    let writes = fake.calls("patch", "pods");
    assert!(writes >= 1);

    // Its own status write brings it back: nothing changed, so no new attempt before the flush.
    let again = reconcile(p(), ctx.clone()).await.unwrap();
    assert_eq!(again.requeue_after(), Some(INITIAL_BACKOFF));
    tokio::time::advance(INITIAL_BACKOFF).await;
    let later = reconcile(p(), ctx.clone()).await.unwrap();
    assert_eq!(
        later.requeue_after(),
        Some(UNSCHEDULABLE_FLUSH - INITIAL_BACKOFF)
    );
    assert_eq!(fake.calls("patch", "pods"), writes);
    assert_eq!(events_count(&fake), 1);

    // A cluster change makes it eligible; the attempt fails again (nothing fits), and
    // the backoff doubles.
    ctx.state.bump();
    reconcile(p(), ctx.clone()).await.unwrap();
    assert_eq!(events_count(&fake), 2);
    ctx.state.bump();
    let backing_off = reconcile(p(), ctx.clone()).await.unwrap();
    assert_eq!(backing_off.requeue_after(), Some(INITIAL_BACKOFF * 2));
    // The condition was written once: its message has not changed.
    assert_eq!(fake.calls("patch", "pods"), writes);
}

fn events_count(fake: &FakeCluster) -> i64 {
    fake.objects(&EVENTS)
        .iter()
        .filter(|e| e["reason"] == "FailedScheduling")
        .map(|e| e["count"].as_i64().unwrap_or(0))
        .sum()
}

#[test]
fn message_histogram_is_sorted_as_strings() {
    let reasons = BTreeMap::from([
        (
            "node(s) didn't match Pod's node affinity/selector".to_owned(),
            2,
        ),
        ("Insufficient cpu".to_owned(), 10),
        ("Insufficient memory".to_owned(), 1),
    ]);
    assert_eq!(
        unschedulable_message(13, &reasons),
        "0/13 nodes are available: 1 Insufficient memory, 10 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
    );
}

#[test]
fn backoff_doubles_to_the_cap() {
    let delays: Vec<u64> = (1..=6).map(|f| backoff_after(f).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
}
