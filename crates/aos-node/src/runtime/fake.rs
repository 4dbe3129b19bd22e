//! An in-memory runtime for the pod-worker tests: containers "run" until the test makes them
//! exit or a signal stops them. It records every started spec.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use aos_sandbox::ExitStatus;
use aos_sandbox::spec::NamespacePaths;
use async_trait::async_trait;
use tokio::sync::watch;

use super::{
    ContainerInfo, ContainerRequest, ContainerRuntime, ExecOutput, RuntimeError, Sandbox,
    SandboxConfig, SandboxRecord,
};
use crate::clock::Clock;

#[derive(Debug)]
struct FakePod {
    config: SandboxConfig,
    sandbox: Sandbox,
    containers: Vec<ContainerInfo>,
}

#[derive(Debug, Default)]
struct Inner {
    pods: BTreeMap<String, FakePod>,
    started: Vec<ContainerRequest>,
    /// Container names whose start fails.
    fail_start: BTreeSet<String>,
    /// Container names that ignore their stop signal (only SIGKILL ends them).
    ignore_term: BTreeSet<String>,
    /// Exec results by container name.
    exec: BTreeMap<String, ExecOutput>,
    /// How long an exec takes, by container name.
    exec_delay: BTreeMap<String, Duration>,
    /// Every exec: (container name, command).
    execs: Vec<(String, Vec<String>)>,
    /// Every signal sent: (container name, signal).
    signals: Vec<(String, i32)>,
    removed_sandboxes: Vec<String>,
    next_ip: u8,
    pid: i32,
}

/// The fake runtime.
#[derive(Debug)]
pub struct FakeRuntime {
    inner: Mutex<Inner>,
    clock: Clock,
    generation: watch::Sender<u64>,
}

impl FakeRuntime {
    /// An empty runtime with `clock` for timestamps.
    pub fn new(clock: Clock) -> Self {
        Self {
            inner: Mutex::new(Inner {
                next_ip: 2,
                pid: 1000,
                ..Default::default()
            }),
            clock,
            generation: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake runtime lock poisoned")
    }

    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Make the running attempt of container `name` of every pod exit with `code`.
    pub fn exit(&self, name: &str, code: i32, signal: Option<i32>, oom_killed: bool) {
        let now = self.clock.now();
        {
            let mut inner = self.lock();
            for pod in inner.pods.values_mut() {
                for c in pod
                    .containers
                    .iter_mut()
                    .filter(|c| c.name == name && c.running())
                {
                    c.exit = Some(ExitStatus {
                        code,
                        signal,
                        oom_killed,
                    });
                    c.finished_at = Some(now);
                }
            }
        }
        self.bump();
    }

    /// Make starting `name` fail (or succeed again).
    pub fn set_fail_start(&self, name: &str, fail: bool) {
        let mut inner = self.lock();
        if fail {
            inner.fail_start.insert(name.to_owned());
        } else {
            inner.fail_start.remove(name);
        }
    }

    /// Make `name` ignore its stop signal.
    pub fn set_ignore_term(&self, name: &str) {
        self.lock().ignore_term.insert(name.to_owned());
    }

    /// Exit code of exec in container `name`.
    pub fn set_exec_result(&self, name: &str, code: i32) {
        self.lock().exec.insert(
            name.to_owned(),
            ExecOutput {
                exit_code: code,
                ..Default::default()
            },
        );
    }

    /// How long an exec in container `name` runs (past its timeout: it times out).
    pub fn set_exec_delay(&self, name: &str, delay: Duration) {
        self.lock().exec_delay.insert(name.to_owned(), delay);
    }

    /// Every exec so far: (container name, command).
    pub fn execs(&self) -> Vec<(String, Vec<String>)> {
        self.lock().execs.clone()
    }

    /// Every request started so far.
    pub fn started(&self) -> Vec<ContainerRequest> {
        self.lock().started.clone()
    }

    /// Signals sent so far.
    pub fn signals(&self) -> Vec<(String, i32)> {
        self.lock().signals.clone()
    }

    /// Pods whose sandbox was removed.
    pub fn removed_sandboxes(&self) -> Vec<String> {
        self.lock().removed_sandboxes.clone()
    }

    /// Whether the pod has a sandbox.
    pub fn has_sandbox(&self, uid: &str) -> bool {
        self.lock().pods.contains_key(uid)
    }

    /// Add a sandbox with running containers as a previous agent would have left it.
    pub fn adopt(&self, config: SandboxConfig, containers: Vec<ContainerInfo>) {
        let sandbox = self.make_sandbox(&config);
        self.lock().pods.insert(
            config.uid.clone(),
            FakePod {
                config,
                sandbox,
                containers,
            },
        );
    }

    fn make_sandbox(&self, config: &SandboxConfig) -> Sandbox {
        let mut inner = self.lock();
        let ip = std::net::Ipv4Addr::new(10, 88, 0, inner.next_ip);
        inner.next_ip = inner.next_ip.wrapping_add(1);
        Sandbox {
            ip: Some(ip),
            namespaces: NamespacePaths::default(),
            cgroup_parent: format!("/aos/pod-{}", config.uid),
            pod_dir: std::path::PathBuf::from("/fake/pods").join(&config.uid),
        }
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn ensure_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox, RuntimeError> {
        if let Some(p) = self.lock().pods.get(&config.uid) {
            return Ok(p.sandbox.clone());
        }
        let sandbox = self.make_sandbox(config);
        self.lock().pods.insert(
            config.uid.clone(),
            FakePod {
                config: config.clone(),
                sandbox: sandbox.clone(),
                containers: Vec::new(),
            },
        );
        Ok(sandbox)
    }

    async fn start_container(
        &self,
        pod_uid: &str,
        request: ContainerRequest,
    ) -> Result<ContainerInfo, RuntimeError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        if inner.fail_start.contains(&request.name) {
            return Err(RuntimeError::Failed(format!(
                "starting container {}: exec format error",
                request.name
            )));
        }
        inner.pid += 1;
        let pid = inner.pid;
        inner.started.push(request.clone());
        let pod = inner
            .pods
            .get_mut(pod_uid)
            .ok_or_else(|| RuntimeError::Failed(format!("pod {pod_uid} has no sandbox")))?;
        let info = ContainerInfo {
            id: request.spec.id.clone(),
            name: request.name.clone(),
            attempt: request.attempt,
            pid,
            started_at: now,
            finished_at: None,
            exit: None,
            stop_signal: request.stop_signal,
            image_id: request.image_id.clone(),
            log_path: request.log_path.clone(),
        };
        pod.containers.push(info.clone());
        Ok(info)
    }

    async fn containers(&self, pod_uid: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        Ok(self
            .lock()
            .pods
            .get(pod_uid)
            .map(|p| p.containers.clone())
            .unwrap_or_default())
    }

    async fn signal(&self, pod_uid: &str, id: &str, signal: i32) -> Result<(), RuntimeError> {
        let now = self.clock.now();
        let changed = {
            let mut inner = self.lock();
            let ignore = inner.ignore_term.clone();
            let pod = inner
                .pods
                .get_mut(pod_uid)
                .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))?;
            let c = pod
                .containers
                .iter_mut()
                .find(|c| c.id == id)
                .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))?;
            let name = c.name.clone();
            let stops = signal == 9 || !ignore.contains(&c.name);
            let changed = if c.running() && stops {
                c.exit = Some(ExitStatus {
                    code: 128 + signal,
                    signal: Some(signal),
                    oom_killed: false,
                });
                c.finished_at = Some(now);
                true
            } else {
                false
            };
            inner.signals.push((name, signal));
            changed
        };
        if changed {
            self.bump();
        }
        Ok(())
    }

    async fn remove_container(&self, pod_uid: &str, id: &str) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        if let Some(pod) = inner.pods.get_mut(pod_uid) {
            pod.containers.retain(|c| c.id != id || c.running());
        }
        Ok(())
    }

    async fn exec(
        &self,
        _pod_uid: &str,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let (result, delay) = {
            let mut inner = self.lock();
            let c = inner
                .pods
                .values()
                .flat_map(|p| p.containers.iter())
                .find(|c| c.id == id)
                .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))?;
            if !c.running() {
                return Err(RuntimeError::Failed(format!(
                    "container {id} is not running"
                )));
            }
            let name = c.name.clone();
            inner.execs.push((name.clone(), command.to_vec()));
            (
                inner.exec.get(&name).cloned().unwrap_or_default(),
                inner.exec_delay.get(&name).copied().unwrap_or_default(),
            )
        };
        if delay >= timeout {
            tokio::time::sleep(timeout).await;
            return Ok(ExecOutput {
                exit_code: 137,
                output: String::new(),
                timed_out: true,
            });
        }
        tokio::time::sleep(delay).await;
        Ok(result)
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        inner.pods.remove(pod_uid);
        inner.removed_sandboxes.push(pod_uid.to_owned());
        Ok(())
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxRecord>, RuntimeError> {
        Ok(self
            .lock()
            .pods
            .values()
            .map(|p| SandboxRecord {
                uid: p.config.uid.clone(),
                namespace: p.config.namespace.clone(),
                name: p.config.name.clone(),
            })
            .collect())
    }

    async fn wait_change(&self, _pod_uid: &str, seen: u64) -> u64 {
        let mut rx = self.generation.subscribe();
        let got = rx.wait_for(|g| *g > seen).await.map(|g| *g);
        match got {
            Ok(g) => g,
            Err(_) => std::future::pending().await,
        }
    }

    async fn detach(&self, _pod_uid: &str) {}
}
