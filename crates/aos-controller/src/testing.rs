//! A running controller manager over the fake cluster, for tests.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::cluster::fake::FakeCluster;
use crate::kinds::tests::{DEPLOYMENTS, EVENTS, NAMESPACES, PODS, REPLICASETS, kinds};
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
            "timed out waiting for: {what}\npods: {:#?}\nreplicasets: {:#?}",
            self.pods(),
            self.rses()
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
