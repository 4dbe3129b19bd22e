//! The shim's protocol: one JSON object per line over the shim's unix socket
//! (`DATA_DIR/run/shim/<pod uid>.sock`). A client connects, writes one [`Request`] line and
//! reads one [`Response`] line; the shim then closes the connection. `wait` is answered only
//! when a container of the pod changed (exited) after the given generation, so a client can
//! hold it open as a change notification.
//!
//! ```text
//! → {"op":"ensureSandbox","config":{"uid":"…","namespace":"…","name":"…","hostname":"…"}}
//! ← {"ok":true,"sandbox":{"ip":"10.88.0.2","namespaces":{…},"cgroupParent":"/aos/pod-…","podDir":"…"}}
//! → {"op":"start","request":{"name":"app","attempt":0,"spec":{…SandboxSpec…},"logPath":"…","stopSignal":15,"imageId":"sha256:…"}}
//! ← {"ok":true,"container":{"id":"…","pid":4242,"startedAt":"…",…}}
//! → {"op":"list"}                    ← {"ok":true,"containers":[…],"generation":3}
//! → {"op":"signal","id":"…","signal":15}
//! → {"op":"remove","id":"…"}
//! → {"op":"wait","after":3}          ← (when generation > 3) {"ok":true,"generation":4}
//! → {"op":"exec","id":"…","command":["cat","/tmp/ready"],"timeoutMs":1000}
//! ← (when it exits) {"ok":true,"exec":{"exitCode":0,"output":"…","timedOut":false}}
//! → {"op":"shutdown"}                ← {"ok":true}   (everything of the pod is gone; the shim exits)
//! ← {"ok":false,"error":"…"}         (any request that failed)
//! ```
//!
//! `exec` runs a command in a running container (exec probes and `preStop` hooks) and is
//! answered when the command exits; the shim serves other requests meanwhile. Its output
//! (stdout and stderr together) is cut at [`EXEC_OUTPUT_LIMIT`] bytes. At `timeoutMs` the
//! command's process group is killed and the answer says `timedOut`; a client that hangs up
//! first has the command killed too.
//!
//! The shim also keeps each container's record (`containers/<id>/info.json` in the pod
//! directory: pid, start and finish times, exit code, signal, OOM kill), written at start and
//! at exit, so the state survives the agent, and a lost shim's containers can be found.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::runtime::{ContainerInfo, ContainerRequest, Sandbox, SandboxConfig};

/// How much of an exec's output is kept (the kubelet keeps 10 KiB of a probe's output).
pub const EXEC_OUTPUT_LIMIT: usize = 10 * 1024;

/// A request to the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", deny_unknown_fields)]
pub enum Request {
    /// Create (or return) the pod's sandbox.
    EnsureSandbox {
        /// What the sandbox needs.
        config: SandboxConfig,
    },
    /// Start a container.
    Start {
        /// The container.
        request: Box<ContainerRequest>,
    },
    /// The containers.
    List,
    /// Send a signal.
    Signal {
        /// The container id.
        id: String,
        /// The signal number.
        signal: i32,
    },
    /// Delete an exited container.
    Remove {
        /// The container id.
        id: String,
    },
    /// Run a command in a running container; answered when it exits.
    Exec {
        /// The container id.
        id: String,
        /// argv.
        command: Vec<String>,
        /// Kill it after this many milliseconds.
        timeout_ms: u64,
    },
    /// Answer when the generation exceeds `after`.
    Wait {
        /// The generation the client has seen.
        after: u64,
    },
    /// Stop everything, remove the sandbox, exit.
    Shutdown,
}

impl Request {
    /// The operation's name, as on the wire (a metrics label).
    pub fn op(&self) -> &'static str {
        match self {
            Self::EnsureSandbox { .. } => "ensureSandbox",
            Self::Start { .. } => "start",
            Self::List => "list",
            Self::Signal { .. } => "signal",
            Self::Remove { .. } => "remove",
            Self::Exec { .. } => "exec",
            Self::Wait { .. } => "wait",
            Self::Shutdown => "shutdown",
        }
    }
}

/// The shim's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `ensureSandbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<Sandbox>,
    /// For `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// For `list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<ContainerInfo>>,
    /// For `list` and `wait`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// For `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecResult>,
}

/// How an exec ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecResult {
    /// The exit code: the process's own, or 128 + the signal that ended it.
    pub exit_code: i32,
    /// stdout and stderr as they came, cut at [`EXEC_OUTPUT_LIMIT`] bytes (lossy UTF-8).
    pub output: String,
    /// It ran past its timeout and was killed.
    pub timed_out: bool,
}

impl Response {
    /// A failure.
    pub fn error(e: impl ToString) -> Self {
        Self {
            ok: false,
            error: Some(e.to_string()),
            ..Default::default()
        }
    }

    /// A bare success.
    pub fn ok() -> Self {
        Self {
            ok: true,
            ..Default::default()
        }
    }
}

/// What the shim is started with: `SHIM_EXE [ARGS...] CONFIG.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShimConfig {
    /// The pod uid.
    pub uid: String,
    /// The pod directory.
    pub pod_dir: PathBuf,
    /// The socket to listen on.
    pub socket: PathBuf,
    /// libcontainer's state directory.
    pub state_root: PathBuf,
    /// Where pod namespace files live.
    pub netns_root: PathBuf,
    /// The bridge.
    pub bridge: String,
    /// The pod CIDR.
    pub pod_cidr: String,
    /// The address allocation file.
    pub ipam_file: PathBuf,
    /// The pod cgroup path (`/aos/pod-<uid>`).
    pub cgroup_parent: String,
    /// The pod's pids limit.
    pub pids_limit: i64,
}
