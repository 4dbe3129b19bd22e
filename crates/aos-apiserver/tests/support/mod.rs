//! In-process harness: an `ApiServer` on 127.0.0.1:0 over a SQLite store in a temp dir.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;

use aos_apiserver::{ApiServer, Config};
use aos_client::Client;
use aos_store::Store;
use aos_store::sqlite::{SqliteOptions, SqliteStore};
use aos_types::ResourceType;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Harness {
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub addr: std::net::SocketAddr,
    pub kubeconfig: PathBuf,
    pub store: Arc<SqliteStore>,
    pub cancel: CancellationToken,
    pub server: Option<JoinHandle<Result<(), aos_apiserver::ApiServerError>>>,
}

/// Extra lines for `tokens.csv` before the first start (e.g. a viewer).
pub async fn start_with_tokens(extra: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    if !extra.is_empty() {
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("admintoken0123456789,admin,admin,\"system:masters\"\n{extra}"),
        )
        .unwrap();
    }
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("store.db"), SqliteOptions::default()).unwrap(),
    );
    let dyn_store: Arc<dyn Store> = store.clone();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        external_hosts: vec![],
    };
    let server = ApiServer::bind(config, dyn_store).await.unwrap();
    let addr = server.local_addr();
    let kubeconfig = server.kubeconfig_path().to_path_buf();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(server.serve(cancel.clone()));
    let client = Client::from_kubeconfig(&kubeconfig).unwrap();
    Harness {
        client,
        dir,
        addr,
        kubeconfig,
        store,
        cancel,
        server: Some(handle),
    }
}

pub async fn start() -> Harness {
    start_with_tokens("").await
}

impl Harness {
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(h) = self.server.take() {
            h.await.unwrap().unwrap();
        }
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("pki/ca.crt")).unwrap()
    }

    pub fn client_with_token(&self, token: &str) -> Client {
        Client::new(self.client.server(), &self.ca_pem(), token.to_string()).unwrap()
    }

    pub async fn create_namespace(&self, name: &str) {
        self.client
            .create(
                rt("v1", "Namespace"),
                None,
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            )
            .await
            .unwrap();
    }
}

pub fn rt(api_version: &str, kind: &str) -> &'static ResourceType {
    aos_types::resource::by_kind(api_version, kind)
        .unwrap_or_else(|| panic!("no resource type {api_version} {kind}"))
}

pub fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

pub fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}
            }
        }
    })
}

pub fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "p"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}
    })
}

pub fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}
