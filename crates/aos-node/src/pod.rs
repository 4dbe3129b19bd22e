//! The pod worker: one task per pod, reconcile-shaped. Each sync reads the pod (from the API)
//! and its containers (from the runtime) and moves the world one step toward the spec: make
//! the sandbox, run the init containers in order (each to completion, a failed one restarted
//! with back-off, or the pod failed under `restartPolicy: Never`), start or restart the app
//! containers by the restart policy with back-off, kill those whose liveness fails, terminate
//! gracefully on deletion (out of the endpoint sets first, see [`gate`]; then preStop hooks,
//! the stop signal, SIGKILL at the end of the grace period), and report status.
//!
//! Init containers never run again once an app container has run (a restarted agent that
//! finds app containers does not initialize the pod twice). Sidecar init containers
//! (`restartPolicy: Always` on an init container) are refused with a
//! `CreateContainerConfigError` that says so.
//!
//! What a restart of the agent must not lose lives outside the worker: which containers run
//! and how earlier attempts ended (the shim), `restartCount` (the attempt numbers), the pod's
//! start time and conditions (the API). Back-off delays and probe results start over, as
//! they do when a kubelet restarts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aos_controller::cluster::{Cluster, DeleteParams, Patch};
use aos_sandbox::security::{
    self, Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};
use aos_sandbox::spec::{CgroupSpec, ProcessSpec, RootfsSpec, SandboxSpec};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::envs::{self, ConfigData};
use crate::image::{self, ImageSource, ResolvedImage};
use crate::kinds::{CONFIGMAPS, PODS, SECRETS};
use crate::probe::{self, ContainerProbeSpecs, ContainerProbes, ProbeTarget, Prober};
use crate::quantity;
use crate::runtime::{ContainerInfo, ContainerRequest, ContainerRuntime, Sandbox, SandboxConfig};
use crate::status::{self, ContainerView};
use crate::volumes;

/// How often a pod is looked at without a reason.
pub const RESYNC: Duration = Duration::from_secs(10);
/// Retry delay after a missing Secret or ConfigMap or another configuration error.
pub const CONFIG_RETRY: Duration = Duration::from_secs(2);
/// Retry delay after a missing image.
pub const IMAGE_RETRY: Duration = Duration::from_secs(5);
/// Grace period for the containers of a pod that disappeared from the API.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(2);
/// The waiting reason of containers while init containers run.
const POD_INITIALIZING: &str = "PodInitializing";
/// How long to wait for a container to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// What the workers share.
pub struct Ctx {
    /// The API.
    pub cluster: Arc<dyn Cluster>,
    /// The container runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// Images.
    pub images: Arc<dyn ImageSource>,
    /// Probes.
    pub prober: Arc<dyn Prober>,
    /// Settings.
    pub config: NodeConfig,
    /// Time.
    pub clock: Clock,
    /// The node's address (`hostIP`).
    pub node_ip: String,
    /// Allocatable CPU in millicores.
    pub node_cpu_millis: u64,
    /// Allocatable memory in bytes.
    pub node_memory_bytes: u64,
    /// The agent's counters.
    pub metrics: Arc<crate::metrics::NodeMetrics>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

/// What to do after a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Look again after at most this long (or at [`RESYNC`]).
    Wait(Option<Duration>),
    /// The pod is gone from the node; the worker ends.
    Finished,
}

/// A container start that did not happen, as a waiting reason.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StartError {
    reason: &'static str,
    message: String,
    retry: Duration,
    /// Counts as a failed run for back-off.
    backoff: bool,
}

impl StartError {
    fn config(message: impl ToString) -> Self {
        Self {
            reason: "CreateContainerConfigError",
            message: message.to_string(),
            retry: CONFIG_RETRY,
            backoff: false,
        }
    }
}

#[derive(Debug)]
struct Kill {
    id: String,
    sigkill_at: jiff::Timestamp,
}

#[derive(Debug, Default)]
struct Track {
    backoff: Backoff,
    waiting: Option<(String, String)>,
    retry_at: Option<jiff::Timestamp>,
    probes: Option<ContainerProbes>,
    kill: Option<Kill>,
    kill_message: Option<(String, String)>,
}

/// One pod's worker.
pub struct PodWorker {
    ctx: Arc<Ctx>,
    uid: String,
    pod: Option<Pod>,
    tracks: BTreeMap<String, Track>,
    sandbox: Option<Sandbox>,
    start_time: Option<jiff::Timestamp>,
    last_status: Option<Value>,
    notify: Arc<Notify>,
    generation: u64,
    /// The termination gate was passed (a retried deletion does not wait again).
    gate_passed: bool,
}

impl std::fmt::Debug for PodWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodWorker")
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

fn min_time(a: Option<jiff::Timestamp>, b: jiff::Timestamp) -> Option<jiff::Timestamp> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn signed(d: Duration) -> jiff::SignedDuration {
    jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX)
}

/// `name_namespace(uid)`, as the kubelet names pods in messages.
fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// Parse a signal name or number (`SIGTERM`, `TERM`, `15`, `SIGRTMIN+3` is not supported).
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok().map(|s| s as i32);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

fn pull_policy(c: &Container) -> String {
    if let Some(p) = &c.image_pull_policy {
        return p.clone();
    }
    let image = c.image.as_deref().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
        "IfNotPresent".into()
    } else {
        "Always".into()
    }
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

fn to_sc_pod(pod: &Pod) -> PodSecurityContext {
    let Some(sc) = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()) else {
        return PodSecurityContext::default();
    };
    PodSecurityContext {
        run_as_user: sc.run_as_user,
        run_as_group: sc.run_as_group,
        run_as_non_root: sc.run_as_non_root,
        fs_group: sc.fs_group,
        supplemental_groups: sc.supplemental_groups.clone().unwrap_or_default(),
        seccomp_profile: sc.seccomp_profile.as_ref().map(|p| SeccompProfile {
            type_: p.type_.clone(),
            localhost_profile: p.localhost_profile.clone(),
        }),
    }
}

fn to_sc_container(c: &Container) -> SecurityContext {
    let Some(sc) = c.security_context.as_ref() else {
        return SecurityContext::default();
    };
    SecurityContext {
        run_as_user: sc.run_as_user,
        run_as_group: sc.run_as_group,
        run_as_non_root: sc.run_as_non_root,
        read_only_root_filesystem: sc.read_only_root_filesystem,
        allow_privilege_escalation: sc.allow_privilege_escalation,
        privileged: sc.privileged,
        capabilities: sc.capabilities.as_ref().map(|c| Capabilities {
            add: c.add.clone().unwrap_or_default(),
            drop: c.drop.clone().unwrap_or_default(),
        }),
        seccomp_profile: sc.seccomp_profile.as_ref().map(|p| SeccompProfile {
            type_: p.type_.clone(),
            localhost_profile: p.localhost_profile.clone(),
        }),
    }
}

/// CPU and memory of a container as cgroup settings (the pod's pids limit is set on the pod
/// cgroup).
pub fn cgroup_spec(c: &Container, parent: &str) -> Result<CgroupSpec, quantity::QuantityError> {
    let r = c.resources.as_ref();
    let get = |limits: bool, name: &str| {
        let m = if limits {
            r.and_then(|r| r.limits.as_ref())
        } else {
            r.and_then(|r| r.requests.as_ref())
        };
        m.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    let cpu_limit = get(true, "cpu")
        .map(|q| quantity::parse_millis(&q))
        .transpose()?;
    // A request defaults to the limit.
    let cpu_request = get(false, "cpu")
        .or_else(|| get(true, "cpu"))
        .map(|q| quantity::parse_millis(&q))
        .transpose()?;
    let memory = get(true, "memory")
        .map(|q| quantity::parse_units(&q))
        .transpose()?;
    Ok(CgroupSpec {
        parent: parent.to_owned(),
        cpu_quota_us: cpu_limit.map(|m| aos_sandbox::cgroup::cpu_quota_us(m, 100_000)),
        cpu_period_us: cpu_limit.map(|_| 100_000),
        cpu_shares: Some(aos_sandbox::cgroup::cpu_shares(cpu_request.unwrap_or(0))),
        memory_limit_bytes: memory.map(|m| m.min(i64::MAX as u64) as i64),
        pids_limit: None,
    })
}

impl PodWorker {
    /// A worker for the pod with `uid`.
    pub fn new(ctx: Arc<Ctx>, uid: String) -> Self {
        Self {
            ctx,
            uid,
            pod: None,
            tracks: BTreeMap::new(),
            sandbox: None,
            start_time: None,
            last_status: None,
            notify: Arc::new(Notify::new()),
            generation: 0,
            gate_passed: false,
        }
    }

    /// Sync on every pod change, runtime change, probe change and timer until the pod is gone
    /// or `cancel` fires. `None` in `pod` means the pod left the API (or this node).
    pub async fn run(mut self, mut pod: watch::Receiver<Option<Value>>, cancel: CancellationToken) {
        loop {
            let current = pod.borrow_and_update().clone();
            let wait = match self.sync(current).await {
                Outcome::Finished => return,
                Outcome::Wait(d) => d.unwrap_or(RESYNC).min(RESYNC),
            };
            let ctx = self.ctx.clone();
            let uid = self.uid.clone();
            let seen = self.generation;
            tokio::select! {
                // Cancellation first: at shutdown the manager also drops the pod's sender, and
                // the shutdown path (stop or detach) must win over "the manager let go".
                biased;
                _ = cancel.cancelled() => {
                    self.shutdown().await;
                    return;
                }
                r = pod.changed() => {
                    if r.is_err() {
                        // The manager let go of this pod without a verdict: stop watching.
                        return;
                    }
                }
                g = ctx.runtime.wait_change(&uid, seen) => self.generation = g,
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn shutdown(&mut self) {
        if self.ctx.config.stop_pods_on_shutdown {
            let grace = self.grace().min(self.ctx.config.shutdown_grace_period);
            self.terminate_all(grace).await;
            self.report_stopped().await;
            if let Err(e) = self.ctx.runtime.remove_sandbox(&self.uid).await {
                tracing::warn!(pod = %self.uid, error = %e, "removing sandbox at shutdown");
            }
        } else {
            self.tracks.clear();
            self.ctx.runtime.detach(&self.uid).await;
        }
    }

    /// Tell the API that the pod's containers no longer run (node shutdown), so that it does not
    /// stay Ready in the Endpoints while the node is down. Best effort: the API may be gone.
    async fn report_stopped(&mut self) {
        let (Some(pod), Some(last)) = (self.pod.as_ref(), self.last_status.as_ref()) else {
            return;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        let st = status::stopped_status(last, self.ctx.clock.now());
        let ns = pod.metadata.namespace.as_deref();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let patch = Patch::Merge(json!({"status": st}));
        let write = self
            .ctx
            .cluster
            .patch(&PODS, ns, name, &patch, Some("status"));
        match tokio::time::timeout(Duration::from_secs(2), write).await {
            Ok(Ok(_)) => self.last_status = Some(st),
            Ok(Err(e)) => {
                tracing::debug!(pod = %pod_ref(pod), error = %e, "reporting stopped containers")
            }
            Err(_) => {
                tracing::debug!(pod = %pod_ref(pod), "reporting stopped containers: no answer")
            }
        }
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .as_ref()
            .and_then(|p| {
                p.metadata.deletion_grace_period_seconds.or_else(|| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                })
            })
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    /// One reconcile step.
    pub async fn sync(&mut self, raw: Option<Value>) -> Outcome {
        let Some(raw) = raw else {
            // Gone from the API: stop what runs and clean up.
            let grace = if self.pod.is_some() {
                self.grace().min(ORPHAN_GRACE.max(Duration::ZERO))
            } else {
                ORPHAN_GRACE
            };
            self.terminate_all(grace).await;
            return match self.ctx.runtime.remove_sandbox(&self.uid).await {
                Ok(()) => {
                    tracing::info!(pod = %self.uid, "pod removed from the node");
                    Outcome::Finished
                }
                Err(e) => {
                    tracing::warn!(pod = %self.uid, error = %e, "removing sandbox; will retry");
                    Outcome::Wait(Some(CONFIG_RETRY))
                }
            };
        };
        let pod: Pod = match serde_json::from_value(raw) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(pod = %self.uid, error = %e, "pod does not parse");
                return Outcome::Wait(None);
            }
        };
        self.pod = Some(pod.clone());
        if pod.metadata.deletion_timestamp.is_some() {
            return self.finish_deletion(&pod).await;
        }
        self.sync_running(&pod).await
    }

    async fn finish_deletion(&mut self, pod: &Pod) -> Outcome {
        let grace = self.grace();
        let clock = self.ctx.clock;
        let start = clock.now();
        if !self.gate_passed {
            // Out of every endpoint set first, then preStop and the stop signal.
            let pod_ip = self
                .sandbox
                .as_ref()
                .and_then(|s| s.ip)
                .map(|ip| ip.to_string())
                .or_else(|| pod.status.as_ref().and_then(|s| s.pod_ip.clone()));
            let outcome = gate::wait_out_of_endpoints(
                self.ctx.cluster.as_ref(),
                clock,
                pod,
                pod_ip.as_deref(),
                grace,
            )
            .await;
            tracing::debug!(pod = %pod_ref(pod), ?outcome, "termination gate");
            self.gate_passed = true;
        }
        self.terminate_all(grace.saturating_sub(clock.since(start)))
            .await;
        if let Err(e) = self.ctx.runtime.remove_sandbox(&self.uid).await {
            tracing::warn!(pod = %self.uid, error = %e, "removing sandbox; will retry");
            return Outcome::Wait(Some(CONFIG_RETRY));
        }
        let ns = pod.metadata.namespace.as_deref();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            precondition_uid: Some(self.uid.clone()),
            ..Default::default()
        };
        match self.ctx.cluster.delete(&PODS, ns, name, &params).await {
            Ok(()) => {
                tracing::info!(pod = %pod_ref(pod), "pod terminated and deleted");
                Outcome::Finished
            }
            Err(e) if e.is_not_found() || e.is_conflict() => Outcome::Finished,
            Err(e) => {
                tracing::warn!(pod = %pod_ref(pod), error = %e, "deleting pod; will retry");
                Outcome::Wait(Some(CONFIG_RETRY))
            }
        }
    }

    /// Stop every running container: preStop hooks, the stop signal, then SIGKILL at the end of
    /// `grace`.
    async fn terminate_all(&mut self, grace: Duration) {
        let rt = self.ctx.runtime.clone();
        let clock = self.ctx.clock;
        let deadline = clock.now() + signed(grace);
        let running: Vec<ContainerInfo> = match rt.containers(&self.uid).await {
            Ok(cs) => cs.into_iter().filter(ContainerInfo::running).collect(),
            Err(e) => {
                tracing::warn!(pod = %self.uid, error = %e, "listing containers to stop");
                Vec::new()
            }
        };
        for t in self.tracks.values_mut() {
            t.probes = None;
        }
        if running.is_empty() {
            return;
        }
        let pod_ip = self
            .sandbox
            .as_ref()
            .and_then(|s| s.ip)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let specs: BTreeMap<String, Container> = self
            .pod
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| (c.name.clone(), c.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let uid = self.uid.clone();
        let stops = running.iter().map(|c| {
            let rt = rt.clone();
            let spec = specs.get(&c.name).cloned();
            let pod_ip = pod_ip.clone();
            let uid = uid.clone();
            async move {
                if let Some(spec) = spec {
                    let hook = run_pre_stop(rt.as_ref(), &uid, c, &spec, &pod_ip);
                    if tokio::time::timeout(clock.until(deadline), hook)
                        .await
                        .is_err()
                    {
                        tracing::info!(container = %c.name, "preStop hook ran out of grace period");
                    }
                }
                if let Err(e) = rt.signal(&uid, &c.id, c.stop_signal).await {
                    tracing::warn!(container = %c.name, error = %e, "stop signal");
                }
            }
        });
        futures::future::join_all(stops).await;
        let mut seen = self.generation;
        let mut killed_at: Option<jiff::Timestamp> = None;
        loop {
            let still: Vec<ContainerInfo> = match rt.containers(&self.uid).await {
                Ok(cs) => cs.into_iter().filter(ContainerInfo::running).collect(),
                Err(_) => Vec::new(),
            };
            if still.is_empty() {
                break;
            }
            let now = clock.now();
            if now >= deadline && killed_at.is_none() {
                for c in &still {
                    tracing::info!(container = %c.name, "grace period over; killing");
                    let _ = rt.signal(&self.uid, &c.id, 9).await;
                }
                killed_at = Some(now);
                continue;
            }
            if let Some(k) = killed_at
                && now >= k + signed(KILL_WAIT)
            {
                tracing::warn!(pod = %self.uid, "containers survive SIGKILL; giving up waiting");
                break;
            }
            let wait = if killed_at.is_some() {
                Duration::from_millis(200)
            } else {
                clock.until(deadline).min(Duration::from_millis(500))
            };
            tokio::select! {
                g = rt.wait_change(&self.uid, seen) => seen = g,
                _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
            }
        }
        self.generation = seen;
    }

    fn sandbox_config(
        &self,
        pod: &Pod,
        pod_dir_hint: Option<&std::path::Path>,
    ) -> Result<SandboxConfig, volumes::VolumeError> {
        let spec = pod.spec.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let hostname = spec.hostname.clone().unwrap_or_else(|| name.clone());
        let memory_volumes = match pod_dir_hint {
            Some(dir) => volumes::memory_volumes(&spec, dir)?,
            None => Vec::new(),
        };
        Ok(SandboxConfig {
            uid: self.uid.clone(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name,
            hostname: hostname.chars().take(63).collect(),
            memory_volumes,
        })
    }

    async fn sync_running(&mut self, pod: &Pod) -> Outcome {
        let ctx = self.ctx.clone();
        let now = ctx.clock.now();
        let spec = pod.spec.clone().unwrap_or_default();
        if self.start_time.is_none() {
            self.start_time = Some(
                pod.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
                    .unwrap_or(now),
            );
        }
        let sandbox = match self.ensure_sandbox(pod).await {
            Ok(s) => s,
            Err(message) => {
                tracing::warn!(pod = %pod_ref(pod), error = %message, "sandbox");
                let init = spec.init_containers.as_ref().map_or(0, Vec::len);
                let init_views = vec![ContainerView::default(); init];
                let views = vec![ContainerView::default(); spec.containers.len()];
                self.write_status(pod, &init_views, &views, Some(message))
                    .await;
                return Outcome::Wait(Some(IMAGE_RETRY));
            }
        };
        let infos = match ctx.runtime.containers(&self.uid).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(pod = %pod_ref(pod), error = %e, "listing containers");
                return Outcome::Wait(Some(CONFIG_RETRY));
            }
        };
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let mut next: Option<jiff::Timestamp> = None;
        let mut config: Option<ConfigData> = None;
        let attempts_of = |name: &str| {
            let mut attempts: Vec<&ContainerInfo> =
                infos.iter().filter(|i| i.name == name).collect();
            attempts.sort_by_key(|i| i.attempt);
            let current = attempts.last().copied().cloned();
            let previous = attempts.iter().rev().nth(1).copied().cloned();
            (current, previous)
        };
        // Init containers, in order, each to completion before the next; none once an app
        // container has run (an agent restarted after initialization never runs them again).
        let init_specs = spec.init_containers.clone().unwrap_or_default();
        let app_started = infos
            .iter()
            .any(|i| spec.containers.iter().any(|c| c.name == i.name));
        // A failed init container is retried unless the pod's policy is Never; one that
        // completed is done whatever the policy.
        let init_policy = if policy == "Never" {
            "Never"
        } else {
            "OnFailure"
        };
        let mut initialized = true;
        let mut init_views = Vec::with_capacity(init_specs.len());
        for c in &init_specs {
            let (current, previous) = attempts_of(&c.name);
            if app_started {
                init_views.push(ContainerView {
                    current,
                    previous,
                    ..Default::default()
                });
                continue;
            }
            if !initialized {
                init_views.push(ContainerView {
                    current,
                    previous,
                    waiting: Some((POD_INITIALIZING.into(), String::new())),
                    ..Default::default()
                });
                continue;
            }
            if c.restart_policy.as_deref() == Some("Always") {
                initialized = false;
                init_views.push(ContainerView {
                    current,
                    previous,
                    waiting: Some((
                        "CreateContainerConfigError".into(),
                        format!(
                            "init container {:?} has restartPolicy Always (a sidecar container); \
                             sidecar containers are not supported by this node",
                            c.name
                        ),
                    )),
                    ..Default::default()
                });
                continue;
            }
            let view = self
                .sync_container(
                    pod,
                    c,
                    init_policy,
                    current,
                    previous,
                    &sandbox,
                    &mut config,
                    &mut next,
                )
                .await;
            let completed = view.waiting.is_none()
                && view
                    .current
                    .as_ref()
                    .and_then(|c| c.exit)
                    .is_some_and(|e| e.code == 0);
            initialized &= completed;
            init_views.push(view);
        }
        let mut views = Vec::with_capacity(spec.containers.len());
        for c in &spec.containers {
            let (current, previous) = attempts_of(&c.name);
            if !initialized {
                views.push(ContainerView {
                    current,
                    previous,
                    waiting: Some((POD_INITIALIZING.into(), String::new())),
                    ..Default::default()
                });
                continue;
            }
            let view = self
                .sync_container(
                    pod,
                    c,
                    &policy,
                    current,
                    previous,
                    &sandbox,
                    &mut config,
                    &mut next,
                )
                .await;
            views.push(view);
        }
        self.collect_garbage(&spec, &infos).await;
        self.write_status(pod, &init_views, &views, None).await;
        Outcome::Wait(next.map(|t| ctx.clock.until(t)))
    }

    async fn ensure_sandbox(&mut self, pod: &Pod) -> Result<Sandbox, String> {
        if let Some(s) = &self.sandbox {
            return Ok(s.clone());
        }
        // The pod directory is the runtime's; memory volumes need it, so ask twice at most.
        let first = self.sandbox_config(pod, None).map_err(|e| e.to_string())?;
        let sandbox = self
            .ctx
            .runtime
            .ensure_sandbox(&first)
            .await
            .map_err(|e| e.to_string())?;
        let spec = pod.spec.clone().unwrap_or_default();
        let memory = volumes::memory_volumes(&spec, &sandbox.pod_dir).map_err(|e| e.to_string())?;
        let sandbox = if memory.is_empty() {
            sandbox
        } else {
            let full = self
                .sandbox_config(pod, Some(&sandbox.pod_dir))
                .map_err(|e| e.to_string())?;
            self.ctx
                .runtime
                .ensure_sandbox(&full)
                .await
                .map_err(|e| e.to_string())?
        };
        self.sandbox = Some(sandbox.clone());
        Ok(sandbox)
    }

    #[allow(clippy::too_many_arguments)]
    async fn sync_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        policy: &str,
        current: Option<ContainerInfo>,
        previous: Option<ContainerInfo>,
        sandbox: &Sandbox,
        config: &mut Option<ConfigData>,
        next: &mut Option<jiff::Timestamp>,
    ) -> ContainerView {
        let ctx = self.ctx.clone();
        let now = ctx.clock.now();
        let grace = self.grace();
        let notify = self.notify.clone();
        let uid = self.uid.clone();
        let track = self.tracks.entry(c.name.clone()).or_default();
        if let Some(cur) = current.as_ref().filter(|c| c.running()) {
            track.waiting = None;
            track.retry_at = None;
            if track
                .probes
                .as_ref()
                .is_none_or(|p| p.container_id != cur.id)
            {
                match ContainerProbeSpecs::of(c) {
                    Ok(specs) => {
                        let target = ProbeTarget {
                            pod_uid: uid.clone(),
                            container_id: cur.id.clone(),
                            container_name: c.name.clone(),
                            pod_ip: sandbox.ip.map(|i| i.to_string()).unwrap_or_default(),
                        };
                        track.probes = Some(ContainerProbes::start(
                            &specs,
                            target,
                            cur.started_at,
                            ctx.clock,
                            ctx.prober.clone(),
                            notify,
                            ctx.metrics.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(container = %c.name, error = %e, "probes not run");
                        track.probes = None;
                    }
                }
            }
            let state = track
                .probes
                .as_ref()
                .map(|p| p.state())
                .unwrap_or(probe::ProbeState {
                    started: true,
                    ready: true,
                    failed: None,
                });
            if let Some(msg) = &state.failed
                && track.kill.as_ref().is_none_or(|k| k.id != cur.id)
            {
                tracing::info!(container = %c.name, pod = %pod_ref(pod), "{msg}");
                if let Err(e) = ctx.runtime.signal(&uid, &cur.id, cur.stop_signal).await {
                    tracing::warn!(container = %c.name, error = %e, "stop signal");
                }
                track.kill = Some(Kill {
                    id: cur.id.clone(),
                    sigkill_at: now + signed(grace),
                });
                track.kill_message = Some((cur.id.clone(), msg.clone()));
            }
            if let Some(k) = track.kill.as_ref().filter(|k| k.id == cur.id) {
                if now >= k.sigkill_at {
                    let _ = ctx.runtime.signal(&uid, &cur.id, 9).await;
                    *next = min_time(*next, now + signed(Duration::from_secs(1)));
                } else {
                    *next = min_time(*next, k.sigkill_at);
                }
            }
            return ContainerView {
                current,
                previous,
                waiting: None,
                ready: state.started && state.ready && state.failed.is_none(),
                started: state.started,
                kill_message: track.kill_message.clone(),
            };
        }
        // Not running: never started, or exited.
        track.probes = None;
        let view =
            |track: &Track, current: Option<ContainerInfo>, previous, waiting| ContainerView {
                current,
                previous,
                waiting,
                ready: false,
                started: false,
                kill_message: track.kill_message.clone(),
            };
        if let Some(cur) = &current {
            if !should_restart(policy, cur.exit.map_or(0, |e| e.code)) {
                return view(track, current, previous, None);
            }
            let finished = cur.finished_at.unwrap_or(now);
            if let Some(until) = track.backoff.waiting_until(now, finished) {
                let delay = track.backoff.delay().unwrap_or_default();
                let msg = format!(
                    "back-off {}s restarting failed container={} pod={}",
                    delay.as_secs(),
                    c.name,
                    pod_ref(pod)
                );
                *next = min_time(*next, until);
                return view(
                    track,
                    current,
                    previous,
                    Some(("CrashLoopBackOff".into(), msg)),
                );
            }
        }
        if let Some(retry) = track.retry_at
            && now < retry
        {
            *next = min_time(*next, retry);
            let waiting = track.waiting.clone();
            return view(track, current, previous, waiting);
        }
        let attempt = current.as_ref().map_or(0, |c| c.attempt + 1);
        match self.start(pod, c, attempt, sandbox, config).await {
            Ok(info) => {
                let track = self.tracks.entry(c.name.clone()).or_default();
                if current.is_some() {
                    track.backoff.next(now);
                }
                track.waiting = None;
                track.retry_at = None;
                tracing::info!(container = %c.name, pod = %pod_ref(pod), attempt, "container started");
                // Probes start at the next sync, which the change of the runtime triggers.
                *next = min_time(*next, now);
                ContainerView {
                    current: Some(info),
                    previous: current,
                    waiting: None,
                    ready: false,
                    started: false,
                    kill_message: track.kill_message.clone(),
                }
            }
            Err(e) => {
                let track = self.tracks.entry(c.name.clone()).or_default();
                tracing::info!(container = %c.name, pod = %pod_ref(pod), reason = e.reason, message = %e.message, "container not started");
                let retry = if e.backoff {
                    track.backoff.next(now);
                    track.backoff.delay().unwrap_or(e.retry)
                } else {
                    e.retry
                };
                let at = now + signed(retry);
                track.retry_at = Some(at);
                track.waiting = Some((e.reason.to_owned(), e.message.clone()));
                *next = min_time(*next, at);
                let waiting = track.waiting.clone();
                // The last run stays visible in lastState while the new one waits.
                let (current, previous) = (current, previous);
                ContainerView {
                    previous: if current.is_some() { previous } else { None },
                    current,
                    waiting,
                    ready: false,
                    started: false,
                    kill_message: track.kill_message.clone(),
                }
            }
        }
    }

    async fn fetch_config(&self, pod: &Pod) -> ConfigData {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut secrets = std::collections::BTreeSet::new();
        let mut configmaps = std::collections::BTreeSet::new();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let (s, m) = envs::referenced(c);
            secrets.extend(s);
            configmaps.extend(m);
        }
        let (vs, vm) = volumes::referenced(&spec);
        secrets.extend(vs.into_iter().map(|(n, _)| n));
        configmaps.extend(vm.into_iter().map(|(n, _)| n));
        let mut data = ConfigData::default();
        for name in secrets {
            let v = match self.ctx.cluster.get(&SECRETS, Some(&ns), &name).await {
                Ok(obj) => Some(envs::secret_data(&obj)),
                Err(e) => {
                    if !e.is_not_found() {
                        tracing::warn!(secret = %name, error = %e, "reading secret");
                    }
                    None
                }
            };
            data.secrets.insert(name, v);
        }
        for name in configmaps {
            let v = match self.ctx.cluster.get(&CONFIGMAPS, Some(&ns), &name).await {
                Ok(obj) => Some(envs::configmap_data(&obj)),
                Err(e) => {
                    if !e.is_not_found() {
                        tracing::warn!(configmap = %name, error = %e, "reading configmap");
                    }
                    None
                }
            };
            data.configmaps.insert(name, v);
        }
        data
    }

    async fn start(
        &self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        sandbox: &Sandbox,
        config: &mut Option<ConfigData>,
    ) -> Result<ContainerInfo, StartError> {
        let ctx = &self.ctx;
        let image_ref = c.image.clone().unwrap_or_default();
        let images = ctx.images.clone();
        let r = image_ref.clone();
        let resolved = tokio::task::spawn_blocking(move || images.resolve(&r))
            .await
            .map_err(|e| StartError {
                reason: "ErrImagePull",
                message: e.to_string(),
                retry: IMAGE_RETRY,
                backoff: false,
            })?;
        let image: ResolvedImage = match resolved {
            Ok(Some(i)) => i,
            Ok(None) => {
                return Err(StartError {
                    reason: "ErrImageNeverPull",
                    message: format!(
                        "Container image \"{image_ref}\" is not present with pull policy of {}",
                        pull_policy(c)
                    ),
                    retry: IMAGE_RETRY,
                    backoff: false,
                });
            }
            Err(e) => {
                return Err(StartError {
                    reason: "ImageInspectError",
                    message: e.to_string(),
                    retry: IMAGE_RETRY,
                    backoff: false,
                });
            }
        };
        if config.is_none() {
            *config = Some(self.fetch_config(pod).await);
        }
        let data = config.as_ref().expect("filled above");
        let facts = envs::PodFacts {
            pod_ip: sandbox.ip.map(|i| i.to_string()).unwrap_or_default(),
            host_ip: ctx.node_ip.clone(),
            node_cpu_millis: ctx.node_cpu_millis,
            node_memory_bytes: ctx.node_memory_bytes,
        };
        let env =
            envs::container_env(pod, c, &image.env, data, &facts).map_err(StartError::config)?;
        let argv = envs::command_line(c, &image, &env).map_err(|e| StartError {
            reason: "CreateContainerError",
            message: e.to_string(),
            retry: CONFIG_RETRY,
            backoff: false,
        })?;
        let spec = pod.spec.clone().unwrap_or_default();
        let fs_group = spec
            .security_context
            .as_ref()
            .and_then(|s| s.fs_group)
            .and_then(|g| u32::try_from(g).ok());
        let pod_dir = sandbox.pod_dir.clone();
        let spec2 = spec.clone();
        let data2 = data.clone();
        tokio::task::spawn_blocking(move || volumes::prepare(&spec2, &pod_dir, &data2, fs_group))
            .await
            .map_err(StartError::config)?
            .map_err(StartError::config)?;
        let mounts =
            volumes::container_mounts(&spec, c, &sandbox.pod_dir).map_err(StartError::config)?;
        let image_user = image::resolve_user(image.user.as_deref(), &image.layers)
            .map_err(StartError::config)?;
        let sec = security::resolve(
            &to_sc_pod(pod),
            &to_sc_container(c),
            image_user,
            &security::NodePolicy {
                allow_privileged: ctx.config.allow_privileged,
                seccomp_root: ctx.config.seccomp_root.clone(),
            },
        )
        .map_err(StartError::config)?;
        let cgroup = cgroup_spec(c, &sandbox.cgroup_parent).map_err(StartError::config)?;
        let id = format!("{}-{}-{attempt}", self.uid, c.name);
        let cdir = sandbox.pod_dir.join("containers").join(&id);
        let lower: Vec<std::path::PathBuf> = if image.layers.is_empty() {
            vec![sandbox.pod_dir.join("containers").join("empty-layer")]
        } else {
            image.layers.iter().rev().cloned().collect()
        };
        let cwd = c
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .or(image.working_dir.clone())
            .unwrap_or_else(|| "/".into());
        let sandbox_spec = SandboxSpec {
            id: id.clone(),
            bundle_dir: cdir.join("bundle"),
            rootfs: RootfsSpec::Overlay {
                lower,
                upper: cdir.join("upper"),
            },
            readonly_root: sec.readonly_root,
            mounts,
            process: ProcessSpec {
                args: argv,
                env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                cwd: cwd.into(),
                uid: sec.uid,
                gid: sec.gid,
                supplemental_groups: sec.supplemental_groups.clone(),
                no_new_privs: sec.no_new_privs,
                capabilities: sec.capabilities.clone(),
                seccomp: sec.seccomp.clone(),
            },
            hostname: None,
            namespaces: sandbox.namespaces.clone(),
            cgroup,
            stdout: None,
            stderr: None,
            privileged: sec.privileged,
        };
        let stop_signal = image
            .stop_signal
            .as_deref()
            .and_then(parse_signal)
            .unwrap_or(15);
        let request = ContainerRequest {
            name: c.name.clone(),
            attempt,
            spec: sandbox_spec,
            log_path: crate::logs::log_path(&sandbox.pod_dir, &c.name, attempt),
            stop_signal,
            image_id: image.id.clone(),
        };
        ctx.runtime
            .start_container(&self.uid, request)
            .await
            .inspect(|_| ctx.metrics.container_started(attempt))
            .map_err(|e| StartError {
                reason: "RunContainerError",
                message: e.to_string(),
                retry: CONFIG_RETRY,
                backoff: true,
            })
    }

    /// Remove exited attempts older than the previous one, and containers the spec no longer
    /// has.
    async fn collect_garbage(
        &mut self,
        spec: &k8s_openapi::api::core::v1::PodSpec,
        infos: &[ContainerInfo],
    ) {
        let mut latest: BTreeMap<&str, u32> = BTreeMap::new();
        for i in infos {
            let e = latest.entry(i.name.as_str()).or_insert(i.attempt);
            *e = (*e).max(i.attempt);
        }
        for i in infos {
            let known = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .any(|c| c.name == i.name);
            if !known && i.running() {
                let _ = self.ctx.runtime.signal(&self.uid, &i.id, 9).await;
                continue;
            }
            let old = latest
                .get(i.name.as_str())
                .is_some_and(|l| i.attempt + 1 < *l);
            if (old || !known)
                && !i.running()
                && let Err(e) = self.ctx.runtime.remove_container(&self.uid, &i.id).await
            {
                tracing::debug!(container = %i.id, error = %e, "removing old container");
            }
        }
    }

    async fn write_status(
        &mut self,
        pod: &Pod,
        init_views: &[ContainerView],
        views: &[ContainerView],
        sandbox_error: Option<String>,
    ) {
        let facts = status::PodFacts {
            pod_ip: self
                .sandbox
                .as_ref()
                .and_then(|s| s.ip)
                .map(|i| i.to_string()),
            host_ip: self.ctx.node_ip.clone(),
            start_time: self.start_time,
            sandbox_error: sandbox_error.clone(),
        };
        let mut st = status::pod_status(pod, init_views, views, &facts, self.ctx.clock.now());
        if sandbox_error.is_none() {
            st["message"] = Value::Null;
            st["reason"] = Value::Null;
        }
        if self.last_status.as_ref() == Some(&st) {
            return;
        }
        let ns = pod.metadata.namespace.as_deref();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match self
            .ctx
            .cluster
            .patch(
                &PODS,
                ns,
                name,
                &Patch::Merge(json!({"status": st})),
                Some("status"),
            )
            .await
        {
            Ok(_) => self.last_status = Some(st),
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(pod = %pod_ref(pod), error = %e, "writing pod status"),
        }
    }
}

async fn run_pre_stop(
    rt: &dyn ContainerRuntime,
    uid: &str,
    c: &ContainerInfo,
    spec: &Container,
    pod_ip: &str,
) {
    let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else {
        return;
    };
    if let Some(h) = &hook.http_get {
        let port = match &h.port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => *p as u16,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => spec
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map_or(0, |p| p.container_port as u16),
        };
        let host = h.host.clone().unwrap_or_else(|| pod_ip.to_owned());
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let r = probe::http_get(&host, port, &path, &[]).await;
        tracing::info!(container = %c.name, result = ?r, "preStop httpGet");
    } else if let Some(e) = &hook.exec {
        let cmd = e.command.clone().unwrap_or_default();
        match rt.exec(uid, &c.id, &cmd, Duration::from_secs(3600)).await {
            Ok(o) => tracing::info!(container = %c.name, exit_code = o.exit_code, "preStop exec"),
            Err(e) => tracing::warn!(container = %c.name, error = %e, "preStop exec"),
        }
    } else if let Some(s) = &hook.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
    }
}

pub mod gate;
#[cfg(test)]
mod tests;
