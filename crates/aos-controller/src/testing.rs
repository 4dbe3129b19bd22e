//! A running controller manager over the fake cluster, for tests.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::cluster::fake::FakeCluster;
use crate::kinds::tests::{
    DEPLOYMENTS, ENDPOINTS, EVENTS, NAMESPACES, NODES, PODS, REPLICASETS, SERVICES, kinds,
};
use crate::meta::{self, ManualClock};
use crate::{ControllerManager, ControllerOptions};

pub(crate) struct Harness {
    pub(crate) fake: Arc<FakeCluster>,
    pub(crate) clock: Arc<ManualClock>,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), crate::ControllerError>>,
}

pub(crate) fn deployment(name: &str, replicas: i32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    })
}

/// A Ready node with `cpu`, `memory` and 110 pods allocatable.
pub(crate) fn node(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
        }
    })
}

/// A bare pod in `default` whose one container requests `cpu` (if any).
pub(crate) fn pod(name: &str, cpu: Option<&str>) -> Value {
    let mut c = json!({"name": "app", "image": "app:1"});
    if let Some(cpu) = cpu {
        c["resources"] = json!({"requests": {"cpu": cpu, "memory": "64Mi"}});
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"containers": [c]},
        "status": {"phase": "Pending"}
    })
}

/// The condition of `type_` of an object.
pub(crate) fn condition(obj: &Value, type_: &str) -> Option<Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

impl Harness {
    pub(crate) async fn start() -> Self {
        let fake = FakeCluster::new();
        let clock = ManualClock::new("2024-06-01T12:00:00Z".parse().expect("valid time"));
        fake.create(
            &NAMESPACES,
            None,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
        )
        .await
        .expect("namespace");
        let options = ControllerOptions {
            scheduler: true,
            mark_unschedulable: true,
            workers: 2,
            clock: clock.clone(),
        };
        let manager = ControllerManager::new(fake.clone(), kinds(), options);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(manager.run(cancel.clone()));
        Self {
            fake,
            clock,
            cancel,
            task,
        }
    }

    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        self.task
            .await
            .expect("manager task")
            .expect("manager result");
    }

    /// Poll until `f` holds (the controllers run concurrently); panics after 10 s.
    pub(crate) async fn eventually(&self, what: &str, mut f: impl FnMut(&Self) -> bool) {
        for _ in 0..5000 {
            if f(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!(
            "timed out waiting for: {what}\npods: {:#}\nreplicasets: {:#}\ndeployments: {:#}",
            Value::Array(self.pods()),
            Value::Array(self.rses()),
            Value::Array(self.fake.objects(&DEPLOYMENTS)),
        );
    }

    pub(crate) fn pods(&self) -> Vec<Value> {
        self.fake.objects(&PODS)
    }

    pub(crate) fn rses(&self) -> Vec<Value> {
        self.fake.objects(&REPLICASETS)
    }

    pub(crate) fn events(&self) -> Vec<Value> {
        self.fake.objects(&EVENTS)
    }

    pub(crate) fn pod(&self, name: &str) -> Option<Value> {
        self.fake.object(&PODS, Some("default"), name)
    }

    pub(crate) fn endpoints(&self, name: &str) -> Option<Value> {
        self.fake.object(&ENDPOINTS, Some("default"), name)
    }

    /// The node a pod is bound to.
    pub(crate) fn node_of(&self, pod: &str) -> Option<String> {
        self.pod(pod)?
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The message of a pod's `PodScheduled=False` condition.
    pub(crate) fn unschedulable_message(&self, pod: &str) -> Option<String> {
        let c = condition(&self.pod(pod)?, "PodScheduled")?;
        (c["status"] == "False" && c["reason"] == "Unschedulable")
            .then(|| c["message"].as_str().unwrap_or_default().to_owned())
    }

    /// Change a node as its agent or an admin would.
    pub(crate) fn update_node(&self, name: &str, f: impl FnOnce(&mut Value)) {
        self.fake
            .modify(&NODES, None, name, f)
            .expect("node exists");
    }

    /// Change a pod as its node agent or a user would.
    pub(crate) fn update_pod(&self, name: &str, f: impl FnOnce(&mut Value)) {
        self.fake
            .modify(&PODS, Some("default"), name, f)
            .expect("pod exists");
    }

    pub(crate) fn deployment(&self, name: &str) -> Option<Value> {
        self.fake.object(&DEPLOYMENTS, Some("default"), name)
    }

    pub(crate) fn rs_replicas(rs: &Value) -> i64 {
        rs.pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// Mark a pod running and ready now (as a node agent would).
    pub(crate) fn mark_ready(&self, pod: &str) {
        let since = meta::format_time(meta::now_seconds(&*self.clock));
        self.fake.set_pod_ready(&PODS, "default", pod, true, &since);
    }

    pub(crate) fn is_ready(pod: &Value) -> bool {
        crate::replicaset::is_pod_ready(pod)
    }

    pub(crate) async fn create(&self, obj: &Value) -> Value {
        let rt = match obj["kind"].as_str() {
            Some("Deployment") => &DEPLOYMENTS,
            Some("ReplicaSet") => &REPLICASETS,
            Some("Pod") => &PODS,
            Some("Node") => &NODES,
            Some("Service") => &SERVICES,
            Some("Endpoints") => &ENDPOINTS,
            other => panic!("no test type for {other:?}"),
        };
        self.fake
            .create(rt, Some("default"), obj)
            .await
            .expect("create")
    }

    /// Change a Deployment's spec as a user would.
    pub(crate) fn update_deployment(&self, name: &str, f: impl FnOnce(&mut Value)) {
        self.fake
            .modify(&DEPLOYMENTS, Some("default"), name, |d| f(&mut d["spec"]))
            .expect("deployment exists");
    }
}
