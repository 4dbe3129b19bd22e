//! ReplicaSet controller tests against the fake cluster.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::kinds::tests::{PODS, REPLICASETS};
use crate::testing::Harness;

fn replica_set(name: &str, replicas: i32, min_ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        }
    })
}

fn rs_status(h: &Harness, name: &str) -> Value {
    h.fake
        .object(&REPLICASETS, Some("default"), name)
        .map(|r| r["status"].clone())
        .unwrap_or(Value::Null)
}

fn scale(h: &Harness, name: &str, replicas: i32) {
    h.fake
        .modify(&REPLICASETS, Some("default"), name, |r| {
            r["spec"]["replicas"] = json!(replicas)
        })
        .unwrap();
}

#[tokio::test]
async fn scale_down_deletes_unready_then_newest_first() {
    let h = Harness::start().await;
    h.create(&replica_set("rs", 4, 0)).await;
    h.eventually("4 pods", |h| h.pods().len() == 4).await;
    let names: Vec<String> = h.pods().iter().map(|p| meta::name(p).to_owned()).collect();
    // Two pods ready on a node, two unready: the unready ones go first.
    h.mark_ready(&names[0]);
    h.mark_ready(&names[1]);
    h.fake
        .set_pod_ready(&PODS, "default", &names[2], false, "2024-06-01T12:00:00Z");
    h.eventually("status counts ready", |h| {
        rs_status(h, "rs")["readyReplicas"] == 2
    })
    .await;
    scale(&h, "rs", 2);
    h.eventually("2 pods left", |h| h.pods().len() == 2).await;
    let left: Vec<String> = h.pods().iter().map(|p| meta::name(p).to_owned()).collect();
    assert!(
        left.contains(&names[0]) && left.contains(&names[1]),
        "kept {left:?}"
    );
    let deleted = h
        .events()
        .iter()
        .filter(|e| e["reason"] == "SuccessfulDelete")
        .count();
    assert_eq!(deleted, 2);
    h.eventually("status replicas 2", |h| {
        let s = rs_status(h, "rs");
        s["replicas"] == 2
            && s["readyReplicas"] == 2
            && s["availableReplicas"] == 2
            && s["fullyLabeledReplicas"] == 2
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn min_ready_seconds_delays_availability() {
    let h = Harness::start().await;
    h.create(&replica_set("slow", 1, 30)).await;
    h.eventually("1 pod", |h| h.pods().len() == 1).await;
    let pod = meta::name(&h.pods()[0]).to_owned();
    h.mark_ready(&pod);
    h.eventually("ready but not available", |h| {
        let s = rs_status(h, "slow");
        s["readyReplicas"] == 1 && s.get("availableReplicas").is_none()
    })
    .await;
    h.clock.advance(Duration::from_secs(31));
    // Any change brings the ReplicaSet back (the controller also requeues itself after minReadySeconds).
    h.fake.modify(&REPLICASETS, Some("default"), "slow", |r| {
        r["metadata"]["labels"]["poke"] = json!("1")
    });
    h.eventually("available", |h| {
        rs_status(h, "slow")["availableReplicas"] == 1
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn adopts_orphans_and_replaces_deleted_pods() {
    let h = Harness::start().await;
    let orphan = json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "stray", "labels": {"app": "rs"}},
                        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    h.create(&orphan).await;
    h.create(&replica_set("rs", 2, 0)).await;
    h.eventually("2 pods, orphan adopted", |h| {
        let pods = h.pods();
        pods.len() == 2
            && pods
                .iter()
                .all(|p| meta::controller_ref(p).is_some_and(|r| r.name == "rs"))
    })
    .await;
    assert_eq!(
        h.fake.calls("create", "pods"),
        2,
        "one orphan + one created"
    );
    let victim = meta::name(&h.pods()[0]).to_owned();
    h.fake
        .delete(&PODS, Some("default"), &victim, &Default::default())
        .await
        .unwrap();
    h.eventually("replaced", |h| {
        h.pods().len() == 2 && h.pods().iter().all(|p| meta::name(p) != victim)
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn two_replica_sets_with_overlapping_selectors_do_not_fight() {
    let h = Harness::start().await;
    let mut a = replica_set("a", 2, 0);
    let mut b = replica_set("b", 2, 0);
    for rs in [&mut a, &mut b] {
        rs["spec"]["selector"] = json!({"matchLabels": {"tier": "web"}});
        rs["spec"]["template"]["metadata"]["labels"] = json!({"tier": "web"});
    }
    h.create(&a).await;
    h.create(&b).await;
    h.eventually("4 pods, 2 each", |h| {
        let pods = h.pods();
        let of = |n: &str| {
            pods.iter()
                .filter(|p| meta::controller_ref(p).is_some_and(|r| r.name == n))
                .count()
        };
        pods.len() == 4 && of("a") == 2 && of("b") == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.pods().len(), 4);
    assert_eq!(h.fake.calls("delete", "pods"), 0);
    h.stop().await;
}

#[test]
fn pod_from_template_copies_labels_and_owner() {
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": "web-abc", "namespace": "ns", "uid": "u1"},
                    "spec": {"template": {"metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                                          "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let pod = pod_from_template(&rs, "web-abc-xyz12");
    assert_eq!(pod["metadata"]["labels"]["app"], "web");
    assert_eq!(pod["metadata"]["annotations"]["a"], "b");
    assert_eq!(pod["metadata"]["namespace"], "ns");
    assert_eq!(pod["status"]["phase"], "Pending");
    let r = meta::controller_ref(&pod).unwrap();
    assert_eq!(
        (r.kind.as_str(), r.uid.as_str(), r.controller),
        ("ReplicaSet", "u1", true)
    );
}

#[test]
fn availability_respects_min_ready_seconds() {
    let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
    let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    assert!(pod_availability(&pod, 0, t("2024-01-01T00:00:00Z")).0);
    let (avail, wait) = pod_availability(&pod, 10, t("2024-01-01T00:00:05Z"));
    assert!(!avail);
    assert_eq!(wait, Some(Duration::from_secs(6)));
    assert!(pod_availability(&pod, 10, t("2024-01-01T00:00:11Z")).0);
}
