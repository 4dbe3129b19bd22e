//! `aos up --demo`: the seed's agent-registry service, ready to look at.
//!
//! Once the API is ready, and idempotently across restarts (apply semantics):
//! 1. the image `agent-registry:1.0.0` is built into the data dir's image store if it is
//!    missing, with `images/agent-registry/build.sh` from the source tree (it needs cargo);
//!    `AOS_DEMO_SKIP_IMAGE_BUILD=1` (or `--demo-skip-image-build`) skips this step;
//! 2. namespace `agent-os` is applied, and the Secret `agent-registry-secrets` the seed's
//!    Deployment reads is created when absent (an existing one is left as the user set it);
//! 3. the seed's Deployment, a Service `agent-registry` (which the seed lacks but its
//!    VirtualService routes to), and the seed's corrected VirtualService and DestinationRule are
//!    applied;
//! 4. how to reach the pods is logged, saying only what this process actually runs.
//!
//! Failures are logged and the demo goes on with the next step: `aos up` keeps running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use aos_client::{Client, ListParams};
use aos_image::{ImageStore, StoreError};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cmd::apply::apply_one;
use crate::manifests::{Source, parse_items};

/// The image the seed's Deployment runs.
pub(crate) const IMAGE: &str = "agent-registry:1.0.0";
/// The namespace the demo lives in.
const NAMESPACE: &str = "agent-os";
/// The Secret the seed's Deployment reads `DATABASE_URL` and `REDIS_URL` from.
const SECRET: &str = "agent-registry-secrets";
/// Where the service keeps its SQLite database: the pod's writable `/tmp`.
const DATABASE_URL: &str = "sqlite:///tmp/agent-registry.db";
/// The seed's Redis address. agent-registry does not use Redis; the key exists because the
/// seed's Deployment reads it, and a missing key would keep the pods from starting.
const REDIS_URL: &str = "redis://localhost:6379/0";
/// The host name the seed's VirtualService serves.
const PUBLIC_HOST: &str = "agent-registry.example.com";
/// The source tree's build directory of the image, relative to the repository root.
const IMAGE_DIR: &str = "images/agent-registry";

/// The Service the seed's VirtualService routes to (host `agent-registry`, port 3000) and
/// that no seed file defines.
const SERVICE_YAML: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: agent-registry
  namespace: agent-os
  labels:
    app: agent-registry
spec:
  selector:
    app: agent-registry
  ports:
  - name: http
    protocol: TCP
    port: 3000
    targetPort: http
";

/// The manifests applied, in order, embedded at build time. Namespace first.
const MANIFESTS: [(&str, &str); 5] = [
    (
        "examples/seed/namespace.yaml",
        include_str!("../../../examples/seed/namespace.yaml"),
    ),
    (
        "examples/seed/deployment.yaml",
        include_str!("../../../examples/seed/deployment.yaml"),
    ),
    ("demo: service agent-registry", SERVICE_YAML),
    (
        "examples/seed/virtualservice.yaml",
        include_str!("../../../examples/seed/virtualservice.yaml"),
    ),
    (
        "examples/seed/destinationrule.yaml",
        include_str!("../../../examples/seed/destinationrule.yaml"),
    ),
];

/// What the demo needs to know about the process it runs in.
#[derive(Clone, Debug)]
pub(crate) struct Demo {
    /// The data dir, whose image store the image goes to.
    pub(crate) data_dir: PathBuf,
    /// The admin kubeconfig, for the commands the demo prints.
    pub(crate) kubeconfig: PathBuf,
    /// Build the image when it is missing (false with `AOS_DEMO_SKIP_IMAGE_BUILD=1`).
    pub(crate) build_image: bool,
    /// Where this process's gateway serves traffic, if it runs one.
    pub(crate) gateway: Option<SocketAddr>,
}

/// Run the demo's steps, logging what each did. Returns early only when `cancel` fires.
pub(crate) async fn run(client: Client, demo: Demo, cancel: CancellationToken) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = ensure_image(&demo) => {}
    }
    if cancel.is_cancelled() {
        return;
    }
    apply_namespace_first(&client).await;
    ensure_secret(&client).await;
    apply_rest(&client).await;
    explain(&client, &demo).await;
}

/// Whether the image store in `data_dir` has the demo image.
fn image_present(data_dir: &Path) -> Result<bool, StoreError> {
    let store = ImageStore::open(data_dir)?;
    match store.lookup(IMAGE) {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn image_present_async(data_dir: &Path) -> anyhow::Result<bool> {
    let dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || image_present(&dir))
        .await
        .context("image store check panicked")?
        .with_context(|| format!("cannot read the image store in {}", data_dir.display()))
}

/// Build the image if it is missing; every outcome is logged.
async fn ensure_image(demo: &Demo) {
    match image_present_async(&demo.data_dir).await {
        Ok(true) => {
            info!(image = IMAGE, "demo: image present");
            return;
        }
        Ok(false) => {}
        Err(e) => {
            warn!(error = %format!("{e:#}"), image = IMAGE, "demo: cannot check for the image; not building it");
            return;
        }
    }
    if !demo.build_image {
        info!(
            image = IMAGE,
            "demo: the image is missing and AOS_DEMO_SKIP_IMAGE_BUILD is set: not building it; pods wait for it"
        );
        return;
    }
    let Some(dir) = find_image_dir() else {
        warn!(
            image = IMAGE,
            "demo: the image is missing and {IMAGE_DIR}/ was not found (neither under the current directory nor in the source tree this binary was built from); \
             build it from a checkout of aos with `AOS_DATA_DIR={} AOS={} {IMAGE_DIR}/build.sh`; the demo goes on without it",
            demo.data_dir.display(),
            std::env::current_exe().map_or_else(|_| "aos".to_string(), |p| p.display().to_string()),
        );
        return;
    };
    info!(image = IMAGE, script = %dir.join("build.sh").display(), "demo: the image is missing: building it (cargo, then aos image build)");
    match build_image(&dir, &demo.data_dir).await {
        Ok(()) => match image_present_async(&demo.data_dir).await {
            Ok(true) => info!(image = IMAGE, "demo: image built"),
            Ok(false) => warn!(
                image = IMAGE,
                "demo: the build script succeeded but the image is not in the store; pods wait for it"
            ),
            Err(e) => warn!(error = %format!("{e:#}"), "demo: cannot check for the built image"),
        },
        Err(e) => warn!(
            error = %format!("{e:#}"),
            image = IMAGE,
            "demo: the image build failed; fix it and run {}/build.sh with AOS_DATA_DIR={}; the demo goes on without it",
            dir.display(),
            demo.data_dir.display()
        ),
    }
}

/// `images/agent-registry/` under the current directory, else in the source tree this binary
/// was built from. It must hold the build script and the Dockerfile.
fn find_image_dir() -> Option<PathBuf> {
    let source_tree = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(IMAGE_DIR);
    let cwd = std::env::current_dir().ok().map(|d| d.join(IMAGE_DIR));
    cwd.into_iter()
        .chain(std::iter::once(source_tree))
        .find(|dir| dir.join("build.sh").is_file() && dir.join("Dockerfile").is_file())
        .map(|dir| dir.canonicalize().unwrap_or(dir))
}

/// Run the build script with this binary as `aos` and this data dir's image store. Its output
/// goes to our stderr, beside the log; the digest it prints is logged.
async fn build_image(dir: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let aos = std::env::current_exe().context("cannot find the path of this aos binary")?;
    let mut command = tokio::process::Command::new("bash");
    command
        .arg(dir.join("build.sh"))
        .env("AOS", &aos)
        .env("AOS_DATA_DIR", data_dir)
        .env("TAG", IMAGE)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group, so that cargo and aos stop with it if aos up is stopped.
        .process_group(0)
        .kill_on_drop(true);
    let child = command
        .spawn()
        .with_context(|| format!("cannot run bash {}", dir.join("build.sh").display()))?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    let guard = GroupGuard(pgid);
    let output = child
        .wait_with_output()
        .await
        .context("cannot wait for the build script")?;
    drop(guard.disarm());
    if !output.status.success() {
        anyhow::bail!("build.sh exited with {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    if let Some(digest) = stdout.lines().rev().find(|l| l.starts_with("sha256:")) {
        info!(image = IMAGE, digest, "demo: build script finished");
    }
    Ok(())
}

/// Kills the build's process group when dropped before the build finished (aos up stopping).
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn disarm(mut self) -> Self {
        self.0 = None;
        self
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// Apply the embedded manifests whose kind matches `pick`, in order.
async fn apply_matching(client: &Client, pick: impl Fn(&str) -> bool) {
    let sources: Vec<Source> = MANIFESTS
        .iter()
        .map(|(name, text)| Source {
            name: (*name).to_string(),
            text: (*text).to_string(),
        })
        .collect();
    let (items, errors) = parse_items(&sources, None);
    for e in errors {
        error!(error = %e, "demo: manifest");
    }
    for item in items.iter().filter(|item| pick(item.rt.kind)) {
        let mut warnings = Vec::new();
        match apply_one(client, item, &mut |w| warnings.push(w)).await {
            Ok(outcome) => info!(
                object = %crate::output::object_ref(item.rt, &item.name),
                namespace = item.namespace.as_deref().unwrap_or(""),
                outcome = outcome.as_str(),
                "demo: applied"
            ),
            Err(e) => error!(origin = %item.origin, error = %e, "demo: apply failed"),
        }
        for w in warnings {
            warn!(origin = %item.origin, "{w}");
        }
    }
}

async fn apply_namespace_first(client: &Client) {
    apply_matching(client, |kind| kind == "Namespace").await;
}

async fn apply_rest(client: &Client) {
    apply_matching(client, |kind| kind != "Namespace").await;
}

/// Create the Secret the seed's Deployment reads, unless it exists: values a user changed are
/// kept. The values are never logged.
async fn ensure_secret(client: &Client) {
    let Some(rt) = aos_types::resource::by_kind("v1", "Secret") else {
        error!("demo: this build serves no v1 Secret");
        return;
    };
    match client.get(rt, Some(NAMESPACE), SECRET).await {
        Ok(_) => {
            info!(
                secret = %format!("{NAMESPACE}/{SECRET}"),
                "demo: secret exists; left as it is"
            );
            return;
        }
        Err(e) if crate::api::is_not_found(&e) => {}
        Err(e) => {
            error!(error = %crate::api::error_line(&e), "demo: cannot read the secret");
            return;
        }
    }
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET,
            "namespace": NAMESPACE,
            "labels": {"app": "agent-registry"},
        },
        "type": "Opaque",
        "stringData": {
            "database-url": DATABASE_URL,
            "redis-url": REDIS_URL,
        },
    });
    match client.create(rt, Some(NAMESPACE), &secret).await {
        Ok(_) => info!(
            secret = %format!("{NAMESPACE}/{SECRET}"),
            "demo: secret created with database-url (SQLite in the pod's /tmp) and redis-url \
             (agent-registry does not use Redis: the key is there because the seed's Deployment reads it)"
        ),
        Err(e) if crate::api::is_already_exists(&e) => {
            info!(secret = %format!("{NAMESPACE}/{SECRET}"), "demo: secret exists; left as it is");
        }
        Err(e) => error!(error = %crate::api::error_line(&e), "demo: cannot create the secret"),
    }
}

/// Log how to reach the pods, from what runs: registered Nodes and this process's gateway.
async fn explain(client: &Client, demo: &Demo) {
    let kubeconfig_flag = match crate::paths::default_data_dir() {
        Ok(default) if default == demo.data_dir => String::new(),
        _ => format!(" --kubeconfig {}", demo.kubeconfig.display()),
    };
    info!("demo: see the pods with `aos{kubeconfig_flag} get pods -n {NAMESPACE} -o wide`");
    match nodes_for_the_seed(client).await {
        Ok(NodeState::Ready(names)) => info!(
            nodes = %names.join(","),
            "demo: pods run on the node agent; each answers on http://POD_IP:3000/health (POD_IP from the command above)"
        ),
        Ok(NodeState::NoneLabelled) => warn!(
            "demo: no registered Node has the label agent.os=linux that the seed's nodeSelector asks for: the pods stay Pending"
        ),
        Ok(NodeState::NoNodes) => info!(
            "demo: no Node is registered yet: the pods stay Pending until a node agent registers one"
        ),
        Err(e) => warn!(error = %e, "demo: cannot list Nodes"),
    }
    match demo.gateway {
        Some(addr) => {
            let url = if addr.port() == 0 {
                format!(
                    "http://{}:PORT/api/v1/agent-registry/instance (PORT: see the `gateway serving` log line)",
                    addr.ip()
                )
            } else {
                format!("http://{addr}/api/v1/agent-registry/instance")
            };
            info!("demo: through the gateway: curl -H 'Host: {PUBLIC_HOST}' {url}");
        }
        None => info!(
            "demo: this process runs no gateway: the VirtualService is stored, but nothing serves {PUBLIC_HOST} here"
        ),
    }
}

enum NodeState {
    NoNodes,
    NoneLabelled,
    Ready(Vec<String>),
}

async fn nodes_for_the_seed(client: &Client) -> Result<NodeState, String> {
    let rt = aos_types::resource::by_kind("v1", "Node")
        .ok_or_else(|| "this build serves no v1 Node".to_string())?;
    let list = client
        .list(rt, None, &ListParams::default())
        .await
        .map_err(|e| crate::api::error_line(&e))?;
    if list.items.is_empty() {
        return Ok(NodeState::NoNodes);
    }
    let labelled: Vec<String> = list
        .items
        .iter()
        .filter(|n| {
            n.pointer("/metadata/labels/agent.os")
                .and_then(|v| v.as_str())
                == Some("linux")
        })
        .map(|n| crate::api::name_of(n).to_string())
        .collect();
    if labelled.is_empty() {
        Ok(NodeState::NoneLabelled)
    } else {
        Ok(NodeState::Ready(labelled))
    }
}
