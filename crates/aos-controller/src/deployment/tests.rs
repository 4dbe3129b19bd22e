//! Deployment controller tests against the fake cluster, with the
//! ReplicaSet controller, garbage collector and namespace controller running.

use serde_json::{Value, json};

use super::*;
use crate::kinds::tests::{DEPLOYMENTS, NAMESPACES};
use crate::testing::{Harness, deployment};

fn condition<'a>(d: &'a Value, type_: &str) -> Option<&'a Value> {
    d.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Mark every pod ready that is not yet.
fn ready_all(h: &Harness) -> usize {
    let mut n = 0;
    for p in h.pods() {
        if !Harness::is_ready(&p) && !meta::is_deleting(&p) {
            h.mark_ready(meta::name(&p));
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn deployment_creates_replica_set_and_pods() {
    let h = Harness::start().await;
    let d = h.create(&deployment("web", 3, "nginx:1")).await;
    h.eventually("3 pods", |h| h.pods().len() == 3).await;

    let rses = h.rses();
    assert_eq!(rses.len(), 1);
    let rs = &rses[0];
    let hash = meta::labels(rs)["pod-template-hash"].clone();
    assert_eq!(meta::name(rs), format!("web-{hash}"));
    assert_eq!(hash, pod_template_hash(&d["spec"]["template"], None));
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash.as_str()
    );
    assert_eq!(
        rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"],
        hash.as_str()
    );
    assert_eq!(meta::annotation(rs, REVISION_ANNOTATION), Some("1"));
    assert_eq!(meta::annotation(rs, DESIRED_REPLICAS_ANNOTATION), Some("3"));
    assert_eq!(meta::annotation(rs, MAX_REPLICAS_ANNOTATION), Some("4"));
    let owner = meta::controller_ref(rs).unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Deployment", meta::uid(&d))
    );
    assert!(owner.block_owner_deletion);

    for p in h.pods() {
        let name = meta::name(&p);
        let suffix = name
            .strip_prefix(&format!("{}-", meta::name(rs)))
            .expect("pod named after its replica set");
        assert_eq!(suffix.len(), 5);
        assert!(
            suffix
                .bytes()
                .all(|c| aos_types::hash::SAFE_ALPHABET.contains(&c))
        );
        assert_eq!(meta::labels(&p)["pod-template-hash"], hash);
        assert_eq!(meta::controller_ref(&p).unwrap().uid, meta::uid(rs));
    }
    h.eventually("pods marked unschedulable", |h| {
        h.pods().iter().all(|p| {
            p["status"]["phase"] == "Pending"
                && p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"] == "PodScheduled"
                            && c["status"] == "False"
                            && c["reason"] == "Unschedulable"
                            && c["message"] == "no nodes available to schedule pods"
                    })
                })
        })
    })
    .await;
    h.eventually("deployment status", |h| {
        let d = h.deployment("web").unwrap();
        d["status"]["replicas"] == 3
            && d["status"]["unavailableReplicas"] == 3
            && d["status"]["updatedReplicas"] == 3
    })
    .await;
    let d = h.deployment("web").unwrap();
    assert_eq!(condition(&d, "Available").unwrap()["status"], "False");
    assert_eq!(
        condition(&d, "Available").unwrap()["reason"],
        "MinimumReplicasUnavailable"
    );
    assert_eq!(
        condition(&d, "Progressing").unwrap()["reason"],
        "ReplicaSetUpdated"
    );
    assert_eq!(meta::annotation(&d, REVISION_ANNOTATION), Some("1"));

    ready_all(&h);
    h.eventually("deployment available and complete", |h| {
        let d = h.deployment("web").unwrap();
        d["status"]["availableReplicas"] == 3
            && condition(&d, "Progressing").is_some_and(|c| c["reason"] == "NewReplicaSetAvailable")
    })
    .await;
    let d = h.deployment("web").unwrap();
    assert_eq!(
        condition(&d, "Available").unwrap()["reason"],
        "MinimumReplicasAvailable"
    );
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert!(d["status"].get("unavailableReplicas").is_none());

    let events = h.events();
    let scaled = events
        .iter()
        .find(|e| e["reason"] == "ScalingReplicaSet")
        .expect("scaling event");
    assert_eq!(
        scaled["message"],
        format!("Scaled up replica set {} from 0 to 3", meta::name(rs))
    );
    assert_eq!(scaled["involvedObject"]["kind"], "Deployment");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["reason"] == "SuccessfulCreate")
            .count(),
        3
    );
    // The ReplicaSet controller created exactly three pods: expectations held back any extra.
    assert_eq!(h.fake.calls("create", "pods"), 3);
    h.stop().await;
}

#[tokio::test]
async fn rolling_update_steps_within_surge_and_unavailability() {
    let h = Harness::start().await;
    h.create(&deployment("web", 4, "nginx:1")).await;
    h.eventually("4 pods", |h| h.pods().len() == 4).await;
    ready_all(&h);
    h.eventually("complete", |h| {
        h.deployment("web").unwrap()["status"]["availableReplicas"] == 4
    })
    .await;

    // 4 replicas at 25%/25%: maxSurge 1, maxUnavailable 1.
    h.update_deployment("web", |s| {
        s["template"]["spec"]["containers"][0]["image"] = json!("nginx:2")
    });
    h.eventually("second replica set", |h| h.rses().len() == 2)
        .await;
    let mut steps = 0;
    loop {
        let pods = h.pods();
        let total = pods.len();
        let ready = pods.iter().filter(|p| Harness::is_ready(p)).count();
        assert!(total <= 5, "{total} pods exceed replicas + maxSurge");
        assert!(
            ready >= 3,
            "{ready} ready pods fall below replicas - maxUnavailable"
        );
        let rses = h.rses();
        let d = h.deployment("web").unwrap();
        let old_rs = rses
            .iter()
            .find(|r| meta::annotation(r, REVISION_ANNOTATION) == Some("1"))
            .unwrap();
        if Harness::rs_replicas(old_rs) == 0
            && d["status"]["updatedReplicas"] == 4
            && d["status"]["availableReplicas"] == 4
            && d["status"]["replicas"] == 4
        {
            break;
        }
        // Let the controllers settle, then the "node agent" readies one pod.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if let Some(p) = h.pods().iter().find(|p| !Harness::is_ready(p)) {
            h.mark_ready(meta::name(p));
        }
        steps += 1;
        assert!(steps < 200, "rollout did not finish");
    }
    h.eventually("old pods gone", |h| h.pods().len() == 4).await;
    let d = h.deployment("web").unwrap();
    assert_eq!(meta::annotation(&d, REVISION_ANNOTATION), Some("2"));
    h.eventually("complete condition", |h| {
        condition(&h.deployment("web").unwrap(), "Progressing")
            .is_some_and(|c| c["reason"] == "NewReplicaSetAvailable")
    })
    .await;
    let msgs: Vec<String> = h
        .events()
        .iter()
        .filter(|e| e["reason"] == "ScalingReplicaSet")
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("Scaled up replica set web-") && m.ends_with("from 0 to 1")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("Scaled down replica set web-") && m.ends_with("to 0")),
        "{msgs:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn revision_history_limit_deletes_oldest_empty_replica_sets() {
    let h = Harness::start().await;
    let mut d = deployment("web", 1, "img:0");
    d["spec"]["revisionHistoryLimit"] = json!(1);
    h.create(&d).await;
    for version in 1..=3 {
        h.eventually("pod", |h| !h.pods().is_empty()).await;
        ready_all(&h);
        h.update_deployment("web", |s| {
            s["template"]["spec"]["containers"][0]["image"] = json!(format!("img:{version}"))
        });
        h.eventually("rollout finished", |h| {
            ready_all(h);
            let d = h.deployment("web").unwrap();
            meta::annotation(&d, REVISION_ANNOTATION) == Some(&(version + 1).to_string())
                && d["status"]["updatedReplicas"] == 1
                && d["status"]["availableReplicas"] == 1
                && d["status"]["replicas"] == 1
        })
        .await;
    }
    // New RS (revision 4) plus at most one old one.
    h.eventually("old replica sets cleaned", |h| h.rses().len() == 2)
        .await;
    let revisions: Vec<String> = h
        .rses()
        .iter()
        .map(|r| meta::annotation(r, REVISION_ANNOTATION).unwrap().to_owned())
        .collect();
    assert!(
        revisions.contains(&"4".to_owned()) && revisions.contains(&"3".to_owned()),
        "{revisions:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn deleting_a_deployment_collects_replica_sets_and_pods() {
    let h = Harness::start().await;
    h.create(&deployment("web", 2, "nginx:1")).await;
    h.eventually("2 pods", |h| h.pods().len() == 2).await;
    h.fake
        .delete(&DEPLOYMENTS, Some("default"), "web", &Default::default())
        .await
        .unwrap();
    h.eventually("everything collected", |h| {
        h.rses().is_empty() && h.pods().is_empty()
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_dependents() {
    let h = Harness::start().await;
    h.create(&deployment("web", 2, "nginx:1")).await;
    h.eventually("2 pods", |h| h.pods().len() == 2).await;
    let params = crate::cluster::DeleteParams {
        propagation_policy: Some(crate::cluster::Propagation::Foreground),
        ..Default::default()
    };
    h.fake
        .delete(&DEPLOYMENTS, Some("default"), "web", &params)
        .await
        .unwrap();
    h.eventually("deployment, replica set and pods gone", |h| {
        h.deployment("web").is_none() && h.rses().is_empty() && h.pods().is_empty()
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn recreate_stops_old_pods_before_starting_new() {
    let h = Harness::start().await;
    let mut d = deployment("job", 2, "img:1");
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    h.create(&d).await;
    h.eventually("2 pods", |h| h.pods().len() == 2).await;
    ready_all(&h);
    h.update_deployment("job", |s| {
        s["template"]["spec"]["containers"][0]["image"] = json!("img:2")
    });
    h.eventually("new pods running", |h| {
        let pods = h.pods();
        pods.len() == 2
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "img:2")
    })
    .await;
    // The new ReplicaSet was created only after the old one emptied: it never ran beside old pods.
    let new_rs = h
        .rses()
        .into_iter()
        .find(|r| meta::annotation(r, REVISION_ANNOTATION) == Some("2"))
        .unwrap();
    assert_eq!(Harness::rs_replicas(&new_rs), 2);
    h.stop().await;
}

#[tokio::test]
async fn paused_deployment_does_not_roll_but_scales() {
    let h = Harness::start().await;
    h.create(&deployment("web", 2, "img:1")).await;
    h.eventually("2 pods", |h| h.pods().len() == 2).await;
    h.update_deployment("web", |s| {
        s["paused"] = json!(true);
        s["template"]["spec"]["containers"][0]["image"] = json!("img:2");
    });
    h.eventually("paused condition", |h| {
        condition(&h.deployment("web").unwrap(), "Progressing")
            .is_some_and(|c| c["reason"] == "DeploymentPaused")
    })
    .await;
    h.update_deployment("web", |s| s["replicas"] = json!(3));
    h.eventually("scaled while paused", |h| h.pods().len() == 3)
        .await;
    assert_eq!(
        h.rses().len(),
        1,
        "a paused deployment does not create a new replica set"
    );
    h.update_deployment("web", |s| s["paused"] = json!(false));
    h.eventually("rollout after resume", |h| h.rses().len() == 2)
        .await;
    h.stop().await;
}

#[tokio::test]
async fn namespace_deletion_empties_and_finalizes() {
    let h = Harness::start().await;
    h.create(&deployment("web", 2, "img:1")).await;
    h.eventually("2 pods", |h| h.pods().len() == 2).await;
    h.fake
        .delete(&NAMESPACES, None, "default", &Default::default())
        .await
        .unwrap();
    h.eventually("namespace gone", |h| {
        h.fake.object(&NAMESPACES, None, "default").is_none()
    })
    .await;
    assert!(h.pods().is_empty() && h.rses().is_empty() && h.deployment("web").is_none());
    h.stop().await;
}

#[tokio::test]
async fn scaling_mid_rollout_is_proportional() {
    let h = Harness::start().await;
    let mut d = deployment("web", 10, "img:1");
    d["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": 3, "maxUnavailable": 2});
    h.create(&d).await;
    h.eventually("10 pods", |h| h.pods().len() == 10).await;
    ready_all(&h);
    h.eventually("available", |h| {
        h.deployment("web").unwrap()["status"]["availableReplicas"] == 10
    })
    .await;
    // A rollout that cannot progress: the new pods never become ready.
    h.update_deployment("web", |s| {
        s["template"]["spec"]["containers"][0]["image"] = json!("img:bad")
    });
    h.eventually("stuck at 8 old + 5 new", |h| {
        let mut sizes: Vec<i64> = h.rses().iter().map(Harness::rs_replicas).collect();
        sizes.sort();
        sizes == vec![5, 8] && h.pods().len() == 13
    })
    .await;
    h.update_deployment("web", |s| s["replicas"] = json!(15));
    h.eventually("proportionally scaled to 11 old + 7 new", |h| {
        let rses = h.rses();
        let old = rses
            .iter()
            .find(|r| meta::annotation(r, REVISION_ANNOTATION) == Some("1"))
            .unwrap();
        let new = rses
            .iter()
            .find(|r| meta::annotation(r, REVISION_ANNOTATION) == Some("2"))
            .unwrap();
        Harness::rs_replicas(old) == 11 && Harness::rs_replicas(new) == 7
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn progress_deadline_exceeded() {
    let h = Harness::start().await;
    let mut d = deployment("stuck", 1, "img:1");
    d["spec"]["progressDeadlineSeconds"] = json!(10);
    h.create(&d).await;
    // Wait for the status to settle (the pod counted, unavailable): a later change would
    // count as progress and push the deadline past the clock's advance.
    h.eventually("progressing, settled", |h| {
        let d = h.deployment("stuck").unwrap();
        condition(&d, "Progressing").is_some_and(|c| c["status"] == "True")
            && d["status"]["replicas"] == 1
            && d["status"]["updatedReplicas"] == 1
            && d["status"]["unavailableReplicas"] == 1
    })
    .await;
    h.clock.advance(std::time::Duration::from_secs(11));
    // Any change brings it back (the controller also requeues itself at the deadline).
    h.fake.modify(&DEPLOYMENTS, Some("default"), "stuck", |d| {
        d["metadata"]["labels"] = json!({"poke": "1"})
    });
    h.eventually("timed out", |h| {
        condition(&h.deployment("stuck").unwrap(), "Progressing")
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "ProgressDeadlineExceeded")
    })
    .await;
    let d = h.deployment("stuck").unwrap();
    let c = condition(&d, "Progressing").unwrap();
    assert_eq!(
        c["message"],
        format!(
            "ReplicaSet \"{}\" has timed out progressing.",
            meta::name(&h.rses()[0])
        )
    );
    h.stop().await;
}

#[test]
fn set_condition_keeps_transition_time_when_status_unchanged() {
    let t0: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
    let t1: Timestamp = "2024-01-01T00:05:00Z".parse().unwrap();
    let mut st = DeploymentStatus::default();
    set_condition(
        &mut st,
        new_condition(
            "Progressing",
            "True",
            reason::NEW_RS_CREATED,
            "a".into(),
            t0,
        ),
    );
    // Same status and reason: nothing changes, not even lastUpdateTime.
    set_condition(
        &mut st,
        new_condition(
            "Progressing",
            "True",
            reason::NEW_RS_CREATED,
            "b".into(),
            t1,
        ),
    );
    assert_eq!(
        get_condition(&st, "Progressing")
            .unwrap()
            .message
            .as_deref(),
        Some("a")
    );
    // Same status, new reason: lastTransitionTime stays, lastUpdateTime moves.
    set_condition(
        &mut st,
        new_condition(
            "Progressing",
            "True",
            reason::NEW_RS_AVAILABLE,
            "c".into(),
            t1,
        ),
    );
    let c = get_condition(&st, "Progressing").unwrap();
    assert_eq!(c.last_transition_time.as_ref().unwrap().0, t0);
    assert_eq!(c.last_update_time.as_ref().unwrap().0, t1);
    // New status: both move.
    set_condition(
        &mut st,
        new_condition("Progressing", "False", reason::TIMED_OUT, "d".into(), t1),
    );
    assert_eq!(
        get_condition(&st, "Progressing")
            .unwrap()
            .last_transition_time
            .as_ref()
            .unwrap()
            .0,
        t1
    );
}

#[test]
fn template_comparison_ignores_nulls_and_the_hash_label() {
    let a = json!({"metadata": {"labels": {"app": "x", "pod-template-hash": "abc"}},
                   "spec": {"containers": [{"name": "c", "image": "i", "args": null}]}});
    let b = json!({"metadata": {"labels": {"app": "x"}, "annotations": null},
                   "spec": {"containers": [{"image": "i", "name": "c"}]}});
    assert_eq!(normalize_template(&a), normalize_template(&b));
    let bare = json!({"metadata": {"labels": {"pod-template-hash": "abc"}}, "spec": {}});
    assert_eq!(normalize_template(&bare), json!({"spec": {}}));
    // The hash of the project's one definition ignores the same things.
    assert_eq!(pod_template_hash(&a, None), pod_template_hash(&b, None));
}
