//! The node agent against a real, in-process `aos-apiserver` over a SQLite store in a temp
//! dir, through the HTTPS client: Node registration, the Lease, the watch of bound pods by
//! field selector, status writes through the status subresource, and graceful deletion
//! finished by the agent with grace 0. Containers run in the fake runtime (no root needed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_apiserver::{ApiServer, Config};
use aos_client::{Client, DeleteParams};
use aos_controller::cluster::Cluster;
use aos_node::clock::Clock;
use aos_node::image::{FakeImages, ImageSource, ResolvedImage};
use aos_node::kinds::{LEASES, NODES, PODS};
use aos_node::node::MachineInfo;
use aos_node::probe::{FakeProber, Prober};
use aos_node::runtime::ContainerRuntime;
use aos_node::runtime::fake::FakeRuntime;
use aos_node::{NodeAgent, NodeConfig};
use aos_store::Store;
use aos_store::sqlite::{SqliteOptions, SqliteStore};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn wait_for(client: &Client, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let p = aos_client::Client::get(client, &PODS, Some("default"), name).await;
        if let Ok(p) = &p
            && f(p)
        {
            return p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_against_the_real_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("store.db"), SqliteOptions::default()).unwrap(),
    );
    let server = ApiServer::bind(
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            external_hosts: vec![],
        },
        store,
    )
    .await
    .unwrap();
    let kubeconfig = server.kubeconfig_path().to_path_buf();
    let stop_server = CancellationToken::new();
    let server_task = tokio::spawn(server.serve(stop_server.clone()));
    let client = Client::from_kubeconfig(&kubeconfig).unwrap();

    let clock = Clock::new();
    let runtime = Arc::new(FakeRuntime::new(clock));
    let images = Arc::new(FakeImages::default());
    images.insert(
        "app:1",
        ResolvedImage {
            id: "sha256:feed".into(),
            cmd: vec!["/app".into()],
            ..Default::default()
        },
    );
    let mut config = NodeConfig::new("node-a", dir.path(), "/bin/false");
    config.node_ip = Some("127.0.0.1".parse().unwrap());
    config.labels.insert("agent.os".into(), "linux".into());
    let cluster: Arc<dyn Cluster> = Arc::new(client.clone());
    let agent = NodeAgent::with_parts(
        config,
        cluster,
        runtime.clone() as Arc<dyn ContainerRuntime>,
        images as Arc<dyn ImageSource>,
        Arc::new(FakeProber::default()) as Arc<dyn Prober>,
        clock,
        MachineInfo::read(),
    );
    let cancel = CancellationToken::new();
    let agent_task = tokio::spawn(agent.run(cancel.clone()));

    // The Node and its Lease.
    let deadline = Instant::now() + Duration::from_secs(10);
    let node = loop {
        if let Ok(n) = aos_client::Client::get(&client, &NODES, None, "node-a").await
            && n["status"]["nodeInfo"]["containerRuntimeVersion"] == "aos://0.1.0"
        {
            break n;
        }
        assert!(Instant::now() < deadline, "node not registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(node["metadata"]["labels"]["agent.os"], "linux");
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "node-a"
    );
    assert_eq!(node["status"]["allocatable"]["pods"], "110");
    let lease = loop {
        if let Ok(l) =
            aos_client::Client::get(&client, &LEASES, Some("kube-node-lease"), "node-a").await
        {
            break l;
        }
        assert!(Instant::now() < deadline, "lease not created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(lease["spec"]["holderIdentity"], "node-a");

    // A pod bound to this node runs; one bound elsewhere is not touched.
    let pod = |name: &str, node: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"nodeName": node, "terminationGracePeriodSeconds": 5,
                        "containers": [{"name": "c", "image": "app:1", "imagePullPolicy": "Never"}]}})
    };
    client
        .create(&PODS, Some("default"), &pod("mine", "node-a"))
        .await
        .unwrap();
    client
        .create(&PODS, Some("default"), &pod("theirs", "node-b"))
        .await
        .unwrap();
    let p = wait_for(&client, "mine", "Running and Ready", |p| {
        p["status"]["phase"] == "Running"
            && p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    })
    .await;
    assert_eq!(p["status"]["podIP"], "10.88.0.2");
    assert_eq!(
        p["status"]["containerStatuses"][0]["imageID"],
        "sha256:feed"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let theirs = aos_client::Client::get(&client, &PODS, Some("default"), "theirs")
        .await
        .unwrap();
    assert!(
        theirs
            .get("status")
            .is_none_or(|s| s.get("containerStatuses").is_none())
    );
    assert_eq!(runtime.started().len(), 1);

    // Deletion: the API keeps the bound pod (graceful); the agent stops it and deletes it.
    client
        .delete(&PODS, Some("default"), "mine", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while aos_client::Client::get(&client, &PODS, Some("default"), "mine")
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "pod not deleted by the agent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(runtime.signals(), vec![("c".to_string(), 15)]);
    assert_eq!(runtime.removed_sandboxes().len(), 1);

    cancel.cancel();
    agent_task.await.unwrap();
    stop_server.cancel();
    server_task.await.unwrap().unwrap();
}
