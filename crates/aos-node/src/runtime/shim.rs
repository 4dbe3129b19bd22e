//! The real runtime: one shim process per pod (see [`crate::shim`]), reached over its unix
//! socket. The agent never forks a container itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;

use super::{
    ContainerInfo, ContainerRequest, ContainerRuntime, ExecOutput, RuntimeError, Sandbox,
    SandboxConfig, SandboxRecord,
};
use crate::config::NodeConfig;
use crate::shim::protocol::{Request, Response, ShimConfig};

/// How long a request may take (a container start included).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How much longer than its timeout an exec may take to be answered.
const EXEC_MARGIN: Duration = Duration::from_secs(5);
/// How long a new shim has to open its socket.
const SHIM_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Pods run by per-pod shims.
#[derive(Debug)]
pub struct ShimRuntime {
    config: NodeConfig,
    metrics: Arc<crate::metrics::NodeMetrics>,
    /// Pod directories by uid (found on disk after a restart).
    dirs: Mutex<HashMap<String, PathBuf>>,
}

impl ShimRuntime {
    /// The runtime for `config`; creates its directories.
    pub fn new(
        config: &NodeConfig,
        metrics: Arc<crate::metrics::NodeMetrics>,
    ) -> Result<Self, RuntimeError> {
        for d in [config.pods_dir(), config.run_dir().join("shim")] {
            std::fs::create_dir_all(&d)
                .map_err(|e| RuntimeError::Failed(format!("{}: {e}", d.display())))?;
        }
        Ok(Self {
            config: config.clone(),
            metrics,
            dirs: Mutex::new(HashMap::new()),
        })
    }

    fn socket(&self, uid: &str) -> PathBuf {
        self.config
            .run_dir()
            .join("shim")
            .join(format!("{uid}.sock"))
    }

    fn pod_dir(&self, uid: &str) -> Option<PathBuf> {
        if let Some(d) = self.dirs.lock().expect("dirs lock poisoned").get(uid) {
            return Some(d.clone());
        }
        let suffix = format!("_{uid}");
        let found = std::fs::read_dir(self.config.pods_dir())
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(&suffix))
            })?;
        self.dirs
            .lock()
            .expect("dirs lock poisoned")
            .insert(uid.to_owned(), found.clone());
        Some(found)
    }

    fn shim_config(&self, uid: &str, pod_dir: &Path) -> ShimConfig {
        let run = self.config.run_dir();
        ShimConfig {
            uid: uid.to_owned(),
            pod_dir: pod_dir.to_path_buf(),
            socket: self.socket(uid),
            state_root: run.join("containers"),
            netns_root: run.join("netns"),
            bridge: self.config.bridge.clone(),
            pod_cidr: self.config.pod_cidr.clone(),
            ipam_file: self.config.ipam_file(),
            cgroup_parent: format!(
                "{}/pod-{uid}",
                self.config.cgroup_root.trim_end_matches('/')
            ),
            pids_limit: self.config.pids_limit,
        }
    }

    async fn call(&self, uid: &str, req: &Request) -> Result<Response, RuntimeError> {
        self.call_within(uid, req, CALL_TIMEOUT).await
    }

    async fn call_within(
        &self,
        uid: &str,
        req: &Request,
        limit: Duration,
    ) -> Result<Response, RuntimeError> {
        let shim_err = |detail: String| RuntimeError::Shim {
            pod: uid.to_owned(),
            detail,
        };
        let work = async {
            let mut s = UnixStream::connect(self.socket(uid))
                .await
                .map_err(|e| shim_err(format!("connect: {e}")))?;
            let mut line = serde_json::to_vec(req).map_err(|e| shim_err(e.to_string()))?;
            line.push(b'\n');
            s.write_all(&line)
                .await
                .map_err(|e| shim_err(format!("write: {e}")))?;
            let mut r = BufReader::new(s);
            let mut out = String::new();
            r.read_line(&mut out)
                .await
                .map_err(|e| shim_err(format!("read: {e}")))?;
            if out.is_empty() {
                return Err(shim_err("closed the connection without an answer".into()));
            }
            serde_json::from_str::<Response>(&out).map_err(|e| shim_err(format!("bad answer: {e}")))
        };
        let resp = tokio::time::timeout(limit, work)
            .await
            .map_err(|_| shim_err(format!("no answer within {limit:?}")))
            .and_then(|r| r);
        self.metrics
            .shim_request(req.op(), resp.as_ref().is_ok_and(|r| r.ok));
        let resp = resp?;
        if resp.ok {
            Ok(resp)
        } else {
            Err(RuntimeError::Failed(
                resp.error.unwrap_or_else(|| "shim request failed".into()),
            ))
        }
    }

    async fn alive(&self, uid: &str) -> bool {
        UnixStream::connect(self.socket(uid)).await.is_ok()
    }

    /// Start the pod's shim unless it runs.
    async fn ensure_shim(&self, uid: &str, pod_dir: &Path) -> Result<(), RuntimeError> {
        if self.alive(uid).await {
            return Ok(());
        }
        let shim_err = |detail: String| RuntimeError::Shim {
            pod: uid.to_owned(),
            detail,
        };
        let cfg = self.shim_config(uid, pod_dir);
        let cfg_path = pod_dir.join("shim.json");
        let bytes = serde_json::to_vec_pretty(&cfg).map_err(|e| shim_err(e.to_string()))?;
        tokio::fs::write(&cfg_path, bytes)
            .await
            .map_err(|e| shim_err(format!("{}: {e}", cfg_path.display())))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(pod_dir.join("shim.log"))
            .map_err(|e| shim_err(format!("shim log: {e}")))?;
        let mut child = tokio::process::Command::new(&self.config.shim_exe)
            .args(&self.config.shim_args)
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            // Its own process group: a Ctrl-C to the agent's terminal does not reach the shim.
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| shim_err(format!("starting {}: {e}", self.config.shim_exe.display())))?;
        let pid = child.id();
        // Reap the shim when it exits while this agent runs.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let deadline = tokio::time::Instant::now() + SHIM_START_TIMEOUT;
        while !self.alive(uid).await {
            if tokio::time::Instant::now() > deadline {
                return Err(shim_err(format!(
                    "the shim (pid {pid:?}) did not open its socket; see {}",
                    pod_dir.join("shim.log").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::debug!(pod = uid, pid, "shim started");
        Ok(())
    }
}

#[async_trait]
impl ContainerRuntime for ShimRuntime {
    async fn ensure_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox, RuntimeError> {
        let uid = config.uid.as_str();
        let pod_dir = match self.pod_dir(uid) {
            Some(d) => d,
            None => {
                let d = self.config.pods_dir().join(format!(
                    "{}_{}_{}",
                    config.namespace, config.name, config.uid
                ));
                self.dirs
                    .lock()
                    .expect("dirs lock poisoned")
                    .insert(uid.to_owned(), d.clone());
                d
            }
        };
        tokio::fs::create_dir_all(&pod_dir)
            .await
            .map_err(|e| RuntimeError::Failed(format!("{}: {e}", pod_dir.display())))?;
        let record = SandboxRecord {
            uid: config.uid.clone(),
            namespace: config.namespace.clone(),
            name: config.name.clone(),
        };
        let rec = serde_json::to_vec(&record).map_err(|e| RuntimeError::Failed(e.to_string()))?;
        tokio::fs::write(pod_dir.join("pod.json"), rec)
            .await
            .map_err(|e| RuntimeError::Failed(format!("pod record: {e}")))?;
        self.ensure_shim(uid, &pod_dir).await?;
        let resp = self
            .call(
                uid,
                &Request::EnsureSandbox {
                    config: config.clone(),
                },
            )
            .await?;
        resp.sandbox
            .ok_or_else(|| RuntimeError::Failed("shim answered without a sandbox".into()))
    }

    async fn start_container(
        &self,
        pod_uid: &str,
        request: ContainerRequest,
    ) -> Result<ContainerInfo, RuntimeError> {
        let resp = self
            .call(
                pod_uid,
                &Request::Start {
                    request: Box::new(request),
                },
            )
            .await?;
        resp.container
            .ok_or_else(|| RuntimeError::Failed("shim answered without a container".into()))
    }

    async fn containers(&self, pod_uid: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        match self.call(pod_uid, &Request::List).await {
            Ok(r) => Ok(r.containers.unwrap_or_default()),
            Err(RuntimeError::Shim { .. }) => {
                // No shim: what its records say (nothing runs without a shim).
                let Some(dir) = self.pod_dir(pod_uid) else {
                    return Ok(Vec::new());
                };
                let records = tokio::task::spawn_blocking(move || crate::shim::read_records(&dir))
                    .await
                    .unwrap_or_default();
                Ok(records
                    .into_iter()
                    .map(|mut r| {
                        if r.exit.is_none() {
                            // Reported as killed; a new shim kills it for real.
                            r.exit = Some(aos_sandbox::ExitStatus {
                                code: 137,
                                signal: Some(9),
                                oom_killed: false,
                            });
                            r.finished_at = Some(jiff::Timestamp::now());
                        }
                        r
                    })
                    .collect())
            }
            Err(e) => Err(e),
        }
    }

    async fn signal(&self, pod_uid: &str, id: &str, signal: i32) -> Result<(), RuntimeError> {
        self.call(
            pod_uid,
            &Request::Signal {
                id: id.to_owned(),
                signal,
            },
        )
        .await
        .map(|_| ())
    }

    async fn remove_container(&self, pod_uid: &str, id: &str) -> Result<(), RuntimeError> {
        self.call(pod_uid, &Request::Remove { id: id.to_owned() })
            .await
            .map(|_| ())
    }

    async fn exec(
        &self,
        pod_uid: &str,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let req = Request::Exec {
            id: id.to_owned(),
            command: command.to_vec(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        // The shim kills the command at `timeout` and answers then; the margin covers the start
        // of the command and the answer.
        let resp = self
            .call_within(pod_uid, &req, timeout.saturating_add(EXEC_MARGIN))
            .await?;
        let r = resp
            .exec
            .ok_or_else(|| RuntimeError::Failed("shim answered without an exec result".into()))?;
        Ok(ExecOutput {
            exit_code: r.exit_code,
            output: r.output,
            timed_out: r.timed_out,
        })
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        let Some(pod_dir) = self.pod_dir(pod_uid) else {
            return Ok(());
        };
        // A shim does the kernel work; start one if the pod's is gone.
        self.ensure_shim(pod_uid, &pod_dir).await?;
        self.call(pod_uid, &Request::Shutdown).await?;
        // Wait for the shim to let go of its socket.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.alive(pod_uid).await && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = tokio::fs::remove_file(self.socket(pod_uid)).await;
        tokio::fs::remove_dir_all(&pod_dir)
            .await
            .map_err(|e| RuntimeError::Failed(format!("{}: {e}", pod_dir.display())))?;
        self.dirs
            .lock()
            .expect("dirs lock poisoned")
            .remove(pod_uid);
        Ok(())
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxRecord>, RuntimeError> {
        let dir = self.config.pods_dir();
        let mut out = Vec::new();
        let mut rd = match tokio::fs::read_dir(&dir).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(RuntimeError::Failed(format!("{}: {e}", dir.display()))),
        };
        while let Ok(Some(e)) = rd.next_entry().await {
            if let Ok(b) = tokio::fs::read(e.path().join("pod.json")).await
                && let Ok(r) = serde_json::from_slice::<SandboxRecord>(&b)
            {
                self.dirs
                    .lock()
                    .expect("dirs lock poisoned")
                    .insert(r.uid.clone(), e.path());
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn wait_change(&self, pod_uid: &str, seen: u64) -> u64 {
        let work = async {
            let mut s = UnixStream::connect(self.socket(pod_uid)).await.ok()?;
            let mut line = serde_json::to_vec(&Request::Wait { after: seen }).ok()?;
            line.push(b'\n');
            s.write_all(&line).await.ok()?;
            let mut r = BufReader::new(s);
            let mut out = String::new();
            r.read_line(&mut out).await.ok()?;
            serde_json::from_str::<Response>(&out).ok()?.generation
        };
        match work.await {
            Some(g) => g,
            None => {
                // No shim to listen to: the worker's timers drive it.
                std::future::pending::<()>().await;
                seen
            }
        }
    }

    async fn detach(&self, _pod_uid: &str) {}
}
