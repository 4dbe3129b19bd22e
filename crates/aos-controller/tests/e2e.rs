//! The scheduler and the Endpoints controller against the real API server (in process,
//! over a SQLite store in a temp dir, on 127.0.0.1), through the HTTPS client: what the
//! fake cluster cannot show, such as how the server answers a `binding` POST, whether it
//! accepts a `spec.nodeName` merge patch, and that the Endpoints written pass its admission.

use std::sync::Arc;
use std::time::Duration;

use aos_apiserver::{ApiServer, Config};
use aos_client::Client;
use aos_controller::cluster::{Cluster, DeleteParams};
use aos_controller::kinds::Kinds;
use aos_controller::{ControllerManager, ControllerOptions};
use aos_store::Store;
use aos_store::sqlite::{SqliteOptions, SqliteStore};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Env {
    client: Client,
    kinds: Kinds,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("store.db"), SqliteOptions::default()).unwrap(),
    );
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        external_hosts: vec![],
    };
    let server = ApiServer::bind(config, store).await.unwrap();
    let client = Client::from_kubeconfig(server.kubeconfig_path()).unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(server.serve(cancel.clone()));
    let kinds = Kinds::from_table().unwrap();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    match Cluster::create(&client, kinds.namespaces, None, &ns).await {
        Ok(_) => {}
        Err(e) if e.is_conflict() => {}
        Err(e) => panic!("creating the default namespace: {e}"),
    }
    let manager = ControllerManager::new(
        Arc::new(client.clone()),
        kinds.clone(),
        ControllerOptions::default(),
    );
    tokio::spawn(manager.run(cancel.clone()));
    Env {
        client,
        kinds,
        cancel,
        _dir: dir,
    }
}

impl Env {
    async fn eventually<F, Fut>(&self, what: &str, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..1000 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for: {what}");
    }

    async fn pod(&self, name: &str) -> Value {
        Cluster::get(&self.client, self.kinds.pods, Some("default"), name)
            .await
            .unwrap()
    }
}

fn seed_pod(name: &str, cpu: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "agent-registry"}},
        "spec": {
            "containers": [{"name": "agent-registry", "image": "agent-registry:1.0.0",
                "ports": [{"name": "http", "containerPort": 3000, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": cpu, "memory": "512Mi"}}}],
            "nodeSelector": {"agent.os": "linux"},
            "tolerations": [{"key": "agent.os", "operator": "Exists", "effect": "NoSchedule"}]
        }
    })
}

fn pod_scheduled(p: &Value) -> Option<&Value> {
    p.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodScheduled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_and_publishes_endpoints_through_the_real_api() {
    let env = start().await;
    let c = &env.client;
    let k = &env.kinds;
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "labels": {"agent.os": "linux"}},
        "spec": {"taints": [{"key": "agent.os", "value": "linux", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"cpu": "1", "memory": "4Gi", "pods": "110"},
            "capacity": {"cpu": "1", "memory": "4Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    });
    Cluster::create(c, k.nodes, None, &node).await.unwrap();
    for name in ["a", "b", "c"] {
        Cluster::create(c, k.pods, Some("default"), &seed_pod(name, "250m"))
            .await
            .unwrap();
    }
    Cluster::create(c, k.pods, Some("default"), &seed_pod("big", "2"))
        .await
        .unwrap();

    for name in ["a", "b", "c"] {
        env.eventually(&format!("{name} bound and PodScheduled=True"), || async {
            let p = env.pod(name).await;
            p["spec"]["nodeName"] == "node-1"
                && pod_scheduled(&p).is_some_and(|c| c["status"] == "True")
        })
        .await;
    }
    env.eventually("big refused", || async {
        pod_scheduled(&env.pod("big").await).is_some_and(|c| {
            c["status"] == "False"
                && c["reason"] == "Unschedulable"
                && c["message"] == "0/1 nodes are available: 1 Insufficient cpu."
        })
    })
    .await;

    // The node agent's part: IPs and readiness.
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let mut p = env.pod(name).await;
        p["status"]["podIP"] = json!(format!("10.1.0.{}", i + 1));
        p["status"]["phase"] = json!("Running");
        let mut conds: Vec<Value> = p["status"]["conditions"].as_array().cloned().unwrap();
        conds.push(json!({"type": "Ready", "status": if name == "c" { "False" } else { "True" }}));
        p["status"]["conditions"] = json!(conds);
        Cluster::replace_status(c, k.pods, Some("default"), name, &p)
            .await
            .unwrap();
    }
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "agent-registry", "namespace": "default", "labels": {"app": "agent-registry"}},
        "spec": {"selector": {"app": "agent-registry"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    });
    Cluster::create(c, k.services, Some("default"), &svc)
        .await
        .unwrap();
    env.eventually("endpoints", || async {
        let Ok(ep) = Cluster::get(c, k.endpoints, Some("default"), "agent-registry").await else {
            return false;
        };
        let ips = |field: &str| -> Vec<String> {
            ep.pointer(&format!("/subsets/0/{field}"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|x| x["ip"].as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        ips("addresses") == ["10.1.0.1", "10.1.0.2"]
            && ips("notReadyAddresses") == ["10.1.0.3"]
            && ep["subsets"][0]["ports"]
                == json!([{"name": "http", "port": 3000, "protocol": "TCP"}])
    })
    .await;

    Cluster::delete(
        c,
        k.services,
        Some("default"),
        "agent-registry",
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    env.eventually("endpoints deleted", || async {
        Cluster::get(c, k.endpoints, Some("default"), "agent-registry")
            .await
            .is_err_and(|e| e.is_not_found())
    })
    .await;
    env.cancel.cancel();
}
