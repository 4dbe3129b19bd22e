//! The seed's Deployment end to end: apply with warnings, the controllers' ReplicaSet and
//! Pods, then a rolling update stepped by a test that plays the node agent.

use std::collections::BTreeMap;
use std::time::Duration;

use aos_client::{Client, ListParams};
use serde_json::{Value, json};

use super::support::{Aos, data, eventually, rt};

const NS: &str = "agent-os";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_deployment_rolls_out_within_surge_and_unavailability() {
    let tmp = tempfile::tempdir().unwrap();
    let aos = Aos::start(&tmp.path().join("data")).await;
    let ns_file = data("namespace.yaml");
    let deploy_file = data("deployment.yaml");
    let (ns_file, deploy_file) = (ns_file.to_str().unwrap(), deploy_file.to_str().unwrap());

    // Deployment first on the command line: the namespace is still created first.
    let run = aos.aos(&["apply", "-f", deploy_file, "-f", ns_file]);
    assert_eq!(
        run.ok(),
        "namespace/agent-os created\ndeployment.apps/agent-registry created\n",
        "stderr: {}",
        run.stderr
    );
    let prefix = format!(
        "Warning: {deploy_file}: document 1 (Deployment agent-os/agent-registry): spec.template.spec.securityContext."
    );
    for field in [
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "capabilities",
    ] {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with(&format!("{prefix}{field}"))),
            "no warning for the pod-level {field}; stderr:\n{}",
            run.stderr
        );
    }

    // Applying the same files again changes nothing.
    let again = aos.aos(&["apply", "-f", ns_file, "-f", deploy_file]);
    assert_eq!(
        again.ok(),
        "namespace/agent-os unchanged\ndeployment.apps/agent-registry unchanged\n"
    );

    let client = aos.client();
    let pods = eventually(
        "3 pods of one ReplicaSet",
        Duration::from_secs(15),
        || async {
            let sets = list(&client, "apps/v1", "ReplicaSet").await;
            let pods = list(&client, "v1", "Pod").await;
            (sets.len() == 1 && pods.len() == 3).then_some(pods)
        },
    )
    .await;
    let rs_name = list(&client, "apps/v1", "ReplicaSet").await[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(rs_name.starts_with("agent-registry-"), "{rs_name}");
    for pod in &pods {
        assert!(
            name(pod).starts_with(&format!("{rs_name}-")),
            "{}",
            name(pod)
        );
    }
    // Without a node, the pods wait with a reason.
    eventually(
        "pods Pending and unschedulable",
        Duration::from_secs(10),
        || async {
            let pods = list(&client, "v1", "Pod").await;
            pods.iter()
                .all(|p| {
                    p["status"]["phase"] == "Pending"
                        && conditions(p).get("PodScheduled").is_some_and(|c| {
                            c["status"] == "False"
                                && c["message"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .contains("no nodes available")
                        })
                })
                .then_some(())
        },
    )
    .await;

    // The CLI's read verbs.
    let table = aos.aos(&["get", "deployments", "-n", NS]);
    let header = table.ok().lines().next().unwrap_or_default().to_string();
    assert!(
        header.starts_with("NAME") && header.contains("READY") && header.contains("AGE"),
        "{header}"
    );
    assert!(table.stdout.contains("agent-registry"), "{}", table.stdout);
    let json_list: Value =
        serde_json::from_str(aos.aos(&["get", "pods", "-n", NS, "-o", "json"]).ok()).unwrap();
    assert_eq!(json_list["kind"], "List");
    assert_eq!(json_list["items"].as_array().unwrap().len(), 3);
    assert_eq!(
        aos.aos(&["get", "deploy/agent-registry", "-n", NS, "-o", "name"])
            .ok(),
        "deployment.apps/agent-registry\n"
    );
    let all = aos.aos(&["get", "all", "-n", NS]);
    assert!(
        all.ok().contains("deployment.apps/agent-registry"),
        "{}",
        all.stdout
    );
    assert!(
        all.stdout.contains(&format!("replicaset.apps/{rs_name}")),
        "{}",
        all.stdout
    );
    let yaml = aos.aos(&[
        "get",
        "deployment",
        "agent-registry",
        "-n",
        NS,
        "-o",
        "yaml",
    ]);
    assert!(yaml.ok().contains("kind: Deployment"), "{}", yaml.stdout);
    let described = aos.aos(&["describe", "deployment", "agent-registry", "-n", NS]);
    for needle in [
        "Name:",
        "Replicas:",
        "StrategyType:",
        "RollingUpdateStrategy:",
        "Pod Template:",
        "NewReplicaSet:",
        "Events:",
    ] {
        assert!(
            described.ok().contains(needle),
            "describe lacks {needle}:\n{}",
            described.stdout
        );
    }
    let described_pod = aos.aos(&["describe", "pod", name(&pods[0]), "-n", NS]);
    for needle in [
        "Status:",
        "Pending",
        "QoS Class:",
        "Burstable",
        "Conditions:",
        "PodScheduled",
    ] {
        assert!(
            described_pod.ok().contains(needle),
            "describe pod lacks {needle}:\n{}",
            described_pod.stdout
        );
    }
    let empty = aos.aos(&["get", "services", "-n", NS]);
    assert_eq!(empty.ok(), "");
    assert!(
        empty
            .stderr
            .contains("No resources found in agent-os namespace."),
        "{}",
        empty.stderr
    );

    // Play the node: make every pod ready, then the Deployment is Available.
    for pod in &pods {
        mark_ready(&client, pod).await;
    }
    aos.aos(&[
        "wait",
        "--for=condition=Available",
        "deployment/agent-registry",
        "-n",
        NS,
        "--timeout=20s",
    ])
    .ok();

    // A new image: a second ReplicaSet, stepped within maxSurge 1 / maxUnavailable 0.
    let tmp_manifest = tmp.path().join("deployment-v2.yaml");
    let text = std::fs::read_to_string(data("deployment.yaml"))
        .unwrap()
        .replace("image: agent-registry:1.0.0", "image: agent-registry:1.0.1");
    std::fs::write(&tmp_manifest, text).unwrap();
    let run = aos.aos(&["apply", "-f", tmp_manifest.to_str().unwrap()]);
    assert_eq!(
        run.ok(),
        "deployment.apps/agent-registry configured\n",
        "stderr: {}",
        run.stderr
    );

    let mut max_total = 0;
    let mut min_ready = usize::MAX;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pods: Vec<Value> = list(&client, "v1", "Pod")
            .await
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let ready: Vec<&Value> = pods.iter().filter(|p| is_ready(p)).collect();
        max_total = max_total.max(pods.len());
        min_ready = min_ready.min(ready.len());
        assert!(
            pods.len() <= 4,
            "more than replicas + maxSurge pods: {}",
            pods.len()
        );
        assert!(
            ready.len() >= 3,
            "fewer than replicas - maxUnavailable ready pods: {}",
            ready.len()
        );
        let sets = list(&client, "apps/v1", "ReplicaSet").await;
        let new_rs = sets
            .iter()
            .find(|rs| rs["metadata"]["name"] != rs_name.as_str());
        let old_rs = sets
            .iter()
            .find(|rs| rs["metadata"]["name"] == rs_name.as_str());
        if let (Some(new_rs), Some(old_rs)) = (new_rs, old_rs) {
            let done = new_rs["spec"]["replicas"] == 3
                && new_rs["status"]["readyReplicas"] == 3
                && old_rs["spec"]["replicas"] == 0
                && pods.len() == 3
                && pods.iter().all(|p| {
                    p["metadata"]["labels"]["pod-template-hash"]
                        == new_rs["metadata"]["labels"]["pod-template-hash"]
                });
            if done {
                break;
            }
        }
        // The node: every pod that is not ready yet becomes ready.
        for pod in pods.iter().filter(|p| !is_ready(p)) {
            mark_ready(&client, pod).await;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rollout did not complete; replica sets: {sets:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(max_total, 4, "the rollout should use its surge pod");
    assert_eq!(min_ready, 3);
    let sets = list(&client, "apps/v1", "ReplicaSet").await;
    assert_eq!(sets.len(), 2);
    aos.aos(&[
        "wait",
        "--for=condition=Available",
        "deployment/agent-registry",
        "-n",
        NS,
        "--timeout=10s",
    ])
    .ok();

    // Scale through the scale subresource, then delete and wait for the deletion.
    assert_eq!(
        aos.aos(&[
            "scale",
            "deployment/agent-registry",
            "--replicas=2",
            "-n",
            NS
        ])
        .ok(),
        "deployment.apps/agent-registry scaled\n"
    );
    let d = client
        .get(rt("apps/v1", "Deployment"), Some(NS), "agent-registry")
        .await
        .unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        aos.aos(&["delete", "deployment", "agent-registry", "-n", NS])
            .ok(),
        "deployment.apps \"agent-registry\" deleted\n"
    );
    aos.aos(&[
        "wait",
        "--for=delete",
        "deployment/agent-registry",
        "-n",
        NS,
        "--timeout=5s",
    ])
    .ok();
}

async fn list(client: &Client, api_version: &str, kind: &str) -> Vec<Value> {
    client
        .list(rt(api_version, kind), Some(NS), &ListParams::default())
        .await
        .expect("list")
        .items
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

fn conditions(pod: &Value) -> BTreeMap<String, Value> {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or_default().to_string(),
                c.clone(),
            )
        })
        .collect()
}

fn is_ready(pod: &Value) -> bool {
    conditions(pod)
        .get("Ready")
        .is_some_and(|c| c["status"] == "True")
}

/// What a node agent writes when a pod's container is up and its readiness probe passes.
async fn mark_ready(client: &Client, pod: &Value) {
    let now = "2025-01-01T00:00:00Z";
    let mut pod = pod.clone();
    let container = pod["spec"]["containers"][0]["name"].clone();
    let image = pod["spec"]["containers"][0]["image"].clone();
    pod["status"] = json!({
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now}
        ],
        "containerStatuses": [{
            "name": container, "image": image, "imageID": "", "ready": true, "started": true,
            "restartCount": 0, "state": {"running": {"startedAt": now}}
        }],
        "startTime": now
    });
    if let Some(meta) = pod["metadata"].as_object_mut() {
        // Unconditional write: the test is the only status writer for ready pods.
        meta.remove("resourceVersion");
    }
    let result = client
        .replace_status(rt("v1", "Pod"), Some(NS), name(&pod), &pod)
        .await;
    match result {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {} // scaled down meanwhile
        Err(e) => panic!("mark {} ready: {e}", name(&pod)),
    }
}
