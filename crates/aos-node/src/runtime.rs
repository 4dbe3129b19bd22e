//! The container runtime as the pod workers see it: a narrow async trait with two
//! implementations, [`shim::ShimRuntime`] (the real one: a per-pod shim process) and
//! [`fake::FakeRuntime`] (in memory, for the state-machine tests).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use aos_sandbox::ExitStatus;
use aos_sandbox::spec::{NamespacePaths, SandboxSpec};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod fake;
pub mod shim;

/// A runtime call that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// The shim could not be started or reached.
    #[error("shim of pod {pod}: {detail}")]
    Shim {
        /// The pod uid.
        pod: String,
        /// What went wrong.
        detail: String,
    },
    /// The shim (or the sandbox library) refused or failed the request.
    #[error("{0}")]
    Failed(String),
    /// No such container.
    #[error("container {0} not found")]
    NotFound(String),
    /// The operation is not available in this runtime.
    #[error("{0} is not supported by this runtime")]
    Unsupported(&'static str),
}

/// What a pod's sandbox needs: namespaces with a host name, an address, a cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxConfig {
    /// The pod uid (names the sandbox).
    pub uid: String,
    /// The pod namespace.
    pub namespace: String,
    /// The pod name.
    pub name: String,
    /// The host name inside the pod (the pod name, or `spec.hostname`).
    pub hostname: String,
    /// Directories to mount a tmpfs on (emptyDir with `medium: Memory`) and their size limits.
    #[serde(default)]
    pub memory_volumes: Vec<MemoryVolume>,
}

/// A tmpfs-backed emptyDir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryVolume {
    /// The host directory.
    pub path: PathBuf,
    /// `sizeLimit` in bytes.
    pub size_bytes: Option<u64>,
}

/// A ready sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    /// The pod IP.
    pub ip: Option<Ipv4Addr>,
    /// Namespace files for the containers to join.
    pub namespaces: NamespacePaths,
    /// The pod cgroup (parent of the containers' cgroups).
    pub cgroup_parent: String,
    /// The pod's directory (volumes, logs, container layers).
    pub pod_dir: PathBuf,
}

/// A container to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRequest {
    /// The container name in the pod spec.
    pub name: String,
    /// 0 for the first run, then one more per restart.
    pub attempt: u32,
    /// The sandbox spec (its `id` names the container on the node). Its `stdout`/`stderr` are
    /// set by the runtime.
    pub spec: SandboxSpec,
    /// The CRI log file of this attempt.
    pub log_path: PathBuf,
    /// The signal that asks the container to stop (the image's STOPSIGNAL, else SIGTERM).
    pub stop_signal: i32,
    /// `sha256:...` of the image configuration, reported as `imageID`.
    pub image_id: String,
}

/// A container as the runtime knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInfo {
    /// The node-unique id.
    pub id: String,
    /// The container name in the pod spec.
    pub name: String,
    /// The attempt number.
    pub attempt: u32,
    /// Its init pid (host view).
    pub pid: i32,
    /// When it started.
    pub started_at: jiff::Timestamp,
    /// When it ended.
    #[serde(default)]
    pub finished_at: Option<jiff::Timestamp>,
    /// How it ended.
    #[serde(default)]
    pub exit: Option<ExitStatus>,
    /// Its stop signal.
    pub stop_signal: i32,
    /// Its image's id.
    #[serde(default)]
    pub image_id: String,
    /// Its log file.
    pub log_path: PathBuf,
}

impl ContainerInfo {
    /// Whether it still runs.
    pub fn running(&self) -> bool {
        self.exit.is_none()
    }
}

/// The record of a sandbox on disk (for recovery and clean-up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxRecord {
    /// The pod uid.
    pub uid: String,
    /// The pod namespace.
    pub namespace: String,
    /// The pod name.
    pub name: String,
}

/// The result of running a command in a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit code (128 + signal when a signal ended it).
    pub exit_code: i32,
    /// stdout and stderr together, cut at 10 KiB.
    pub output: String,
    /// It ran past its timeout and was killed.
    pub timed_out: bool,
}

/// What the pod workers need from a container runtime.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Create the pod's namespaces, address and cgroup, unless they exist (idempotent).
    async fn ensure_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox, RuntimeError>;
    /// Start a container in the pod's sandbox.
    async fn start_container(
        &self,
        pod_uid: &str,
        request: ContainerRequest,
    ) -> Result<ContainerInfo, RuntimeError>;
    /// The pod's containers, every attempt still kept; empty when the pod has no sandbox.
    async fn containers(&self, pod_uid: &str) -> Result<Vec<ContainerInfo>, RuntimeError>;
    /// Send a signal to a container's init.
    async fn signal(&self, pod_uid: &str, id: &str, signal: i32) -> Result<(), RuntimeError>;
    /// Delete an exited container's runtime state and writable layer (its log stays).
    async fn remove_container(&self, pod_uid: &str, id: &str) -> Result<(), RuntimeError>;
    /// Run a command in a running container (exec probes and hooks) as the container's
    /// process runs: its namespaces, cgroup, user, capabilities, seccomp profile, environment
    /// and working directory. At `timeout` the command is killed and the result says
    /// `timed_out`.
    async fn exec(
        &self,
        pod_uid: &str,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError>;
    /// Kill whatever still runs and remove the sandbox: cgroups, mounts, veth, address, files.
    async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError>;
    /// The sandboxes that exist on this node.
    async fn list_sandboxes(&self) -> Result<Vec<SandboxRecord>, RuntimeError>;
    /// Resolve when the pod's containers changed (one exited) after `seen`; returns the new
    /// generation. Implementations may also resolve spuriously.
    async fn wait_change(&self, pod_uid: &str, seen: u64) -> u64;
    /// Let go of in-memory connections to a pod's shim without stopping anything (agent
    /// shutdown with pods left running).
    async fn detach(&self, pod_uid: &str);
}
