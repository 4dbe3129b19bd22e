//! Resource usage of the node and its pods, from cgroups and `/proc`, as the kubelet's
//! `/stats/resource` reports it for metrics-server (and so `kubectl top`).
//!
//! A [`Sampler`] reads cumulative CPU time and memory of every running container's cgroup
//! (`<cgroup_root>/pod-<uid>/<uid>-<container>-<attempt>`, the cgroup libcontainer makes below
//! the pod's) and of the node (`/proc/stat`, `/proc/meminfo`). CPU usage is the rate between
//! the last two samples, in nanocores; memory is the working set as cAdvisor defines it:
//! usage minus inactive file pages (v1: `memory.usage_in_bytes - total_inactive_file`,
//! v2: `memory.current - inactive_file`). Something with a single sample (just started) has
//! no window yet and is left out, as metrics-server does.
//!
//! Every path is rooted at an injectable directory, so the parsing and the rate maths are
//! tested against fixture directories, and the sample time is passed in, so no test sleeps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aos_sandbox::cgroup::{self, CgroupVersion};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// How often the agent samples by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The first window is short, so numbers exist soon after start.
pub const FIRST_WINDOW: Duration = Duration::from_secs(1);

/// A statistics file that could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file did not hold what was expected.
    #[error("{path}: no {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The missing or malformed value.
        what: &'static str,
    },
}

impl StatsError {
    /// Whether the file (or its cgroup) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

fn read(path: &Path) -> Result<String, StatsError> {
    std::fs::read_to_string(path).map_err(|source| StatsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `cpuacct.usage` (cgroup v1): cumulative CPU time in nanoseconds.
pub fn parse_cpuacct_usage(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The value of `key` in a flat keyed file (`cpu.stat`, `memory.stat`: `key value` lines).
pub fn parse_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `cpu.stat` (cgroup v2): `usage_usec` as nanoseconds.
pub fn parse_cpu_stat_usage_ns(text: &str) -> Option<u64> {
    parse_keyed(text, "usage_usec").map(|us| us.saturating_mul(1000))
}

/// The working set: usage less inactive file pages (never negative).
pub fn working_set(usage_bytes: u64, inactive_file_bytes: u64) -> u64 {
    usage_bytes.saturating_sub(inactive_file_bytes)
}

/// Node CPU time (nanoseconds) from the `cpu` line of `/proc/stat`: user, nice, system, irq,
/// softirq and steal (idle and iowait are not use; guest time is already inside user).
pub fn parse_proc_stat_cpu_ns(text: &str, ticks_per_second: u64) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    if f.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal guest guest_nice
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    let ticks = ticks_per_second.max(1);
    Some((u128::from(busy) * 1_000_000_000 / u128::from(ticks)) as u64)
}

/// Node memory in use (bytes) from `/proc/meminfo`: `MemTotal - MemAvailable`.
pub fn parse_meminfo_working_set(text: &str) -> Option<u64> {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let total = kib("MemTotal:")?;
    let available = kib("MemAvailable:")?;
    Some(total.saturating_sub(available) * 1024)
}

/// One reading of a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupUsage {
    /// Cumulative CPU time, nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory working set, bytes.
    pub memory_working_set_bytes: u64,
}

/// The cgroup file systems, v1 (a directory per controller) or v2 (one tree).
#[derive(Debug, Clone)]
pub struct CgroupFs {
    root: PathBuf,
    version: CgroupVersion,
}

impl CgroupFs {
    /// The host's cgroups at `/sys/fs/cgroup`, in the version the host uses.
    pub fn host() -> Self {
        Self::new(cgroup::CGROUP_ROOT, cgroup::detect_version())
    }

    /// Cgroups under another root (tests use a fixture directory).
    pub fn new(root: impl Into<PathBuf>, version: CgroupVersion) -> Self {
        Self {
            root: root.into(),
            version,
        }
    }

    fn dir(&self, controller: &str, path: &str) -> PathBuf {
        let rel = path.trim_start_matches('/');
        match self.version {
            CgroupVersion::V1 => self.root.join(controller).join(rel),
            CgroupVersion::V2 => self.root.join(rel),
        }
    }

    /// CPU and memory of the cgroup at `path` (such as `/aos/pod-<uid>/<id>`).
    pub fn read(&self, path: &str) -> Result<CgroupUsage, StatsError> {
        match self.version {
            CgroupVersion::V1 => {
                let cpu_file = self.dir("cpuacct", path).join("cpuacct.usage");
                let cpu = parse_cpuacct_usage(&read(&cpu_file)?).ok_or(StatsError::Parse {
                    path: cpu_file,
                    what: "cpu usage",
                })?;
                let mem = self.dir("memory", path);
                let usage_file = mem.join("memory.usage_in_bytes");
                let usage =
                    read(&usage_file)?
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| StatsError::Parse {
                            path: usage_file,
                            what: "memory usage",
                        })?;
                let stat = read(&mem.join("memory.stat"))?;
                // `total_` counts the hierarchy below too; a leaf has the same either way.
                let inactive = parse_keyed(&stat, "total_inactive_file")
                    .or_else(|| parse_keyed(&stat, "inactive_file"))
                    .unwrap_or(0);
                Ok(CgroupUsage {
                    cpu_usage_ns: cpu,
                    memory_working_set_bytes: working_set(usage, inactive),
                })
            }
            CgroupVersion::V2 => {
                let dir = self.dir("", path);
                let cpu_file = dir.join("cpu.stat");
                let cpu = parse_cpu_stat_usage_ns(&read(&cpu_file)?).ok_or(StatsError::Parse {
                    path: cpu_file,
                    what: "usage_usec",
                })?;
                let usage_file = dir.join("memory.current");
                let usage =
                    read(&usage_file)?
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| StatsError::Parse {
                            path: usage_file,
                            what: "memory usage",
                        })?;
                let stat = read(&dir.join("memory.stat"))?;
                let inactive = parse_keyed(&stat, "inactive_file").unwrap_or(0);
                Ok(CgroupUsage {
                    cpu_usage_ns: cpu,
                    memory_working_set_bytes: working_set(usage, inactive),
                })
            }
        }
    }

    /// The names of the child cgroups of `path`.
    pub fn children(&self, path: &str) -> Vec<String> {
        std::fs::read_dir(self.dir("cpuacct", path))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    /// Whether the cgroup at `path` has no process left (`cgroup.procs` empty). A cgroup
    /// without that file (a fixture) counts as populated.
    pub fn is_empty(&self, path: &str) -> bool {
        std::fs::read_to_string(self.dir("cpuacct", path).join("cgroup.procs"))
            .is_ok_and(|s| s.trim().is_empty())
    }
}

/// `/proc` (or a fixture standing in for it).
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
    ticks_per_second: u64,
}

impl ProcFs {
    /// The host's `/proc`, with the kernel's clock tick rate.
    pub fn host() -> Self {
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(100);
        Self::new("/proc", ticks)
    }

    /// Another directory laid out as `/proc`, with `ticks_per_second` (`USER_HZ`).
    pub fn new(root: impl Into<PathBuf>, ticks_per_second: u64) -> Self {
        Self {
            root: root.into(),
            ticks_per_second,
        }
    }

    /// Node CPU time and memory working set.
    pub fn read(&self) -> Result<CgroupUsage, StatsError> {
        let stat_file = self.root.join("stat");
        let cpu = parse_proc_stat_cpu_ns(&read(&stat_file)?, self.ticks_per_second).ok_or(
            StatsError::Parse {
                path: stat_file,
                what: "cpu line",
            },
        )?;
        let mem_file = self.root.join("meminfo");
        let mem = parse_meminfo_working_set(&read(&mem_file)?).ok_or(StatsError::Parse {
            path: mem_file,
            what: "MemTotal and MemAvailable",
        })?;
        Ok(CgroupUsage {
            cpu_usage_ns: cpu,
            memory_working_set_bytes: mem,
        })
    }
}

/// A pod to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid (names its cgroup).
    pub uid: String,
    /// The names of its containers in the spec.
    pub containers: Vec<String>,
}

/// `/stats/resource`: the node's and its pods' usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStats {
    /// The node.
    pub node: NodeStats,
    /// Pods with a window (at least two samples).
    pub pods: Vec<PodStats>,
}

/// The node's usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// The Node's name.
    pub name: String,
    /// When the last sample was taken (RFC 3339).
    pub timestamp: String,
    /// The time between the last two samples.
    pub window_seconds: f64,
    /// CPU in nanocores over the window.
    pub cpu_nano_cores: u64,
    /// Memory in use (`MemTotal - MemAvailable`).
    pub memory_working_set_bytes: u64,
}

/// One pod's usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// When the last sample was taken.
    pub timestamp: String,
    /// The time between the last two samples.
    pub window_seconds: f64,
    /// Its running containers with a window.
    pub containers: Vec<ContainerStats>,
}

/// One container's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// The container's name in the pod spec.
    pub name: String,
    /// CPU in nanocores over the window.
    pub cpu_nano_cores: u64,
    /// Memory working set, bytes.
    pub memory_working_set_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Point {
    at: Instant,
    cpu_ns: u64,
}

/// CPU nanocores between two points and the window in seconds; `None` without a usable
/// window (no time passed, or the counter went back: a new cgroup under the same name).
pub fn cpu_rate(prev_at: Instant, prev_ns: u64, at: Instant, ns: u64) -> Option<(u64, f64)> {
    let window = at.checked_duration_since(prev_at)?;
    if window.is_zero() || ns < prev_ns {
        return None;
    }
    let rate = u128::from(ns - prev_ns) * 1_000_000_000 / window.as_nanos();
    Some((
        u64::try_from(rate).unwrap_or(u64::MAX),
        window.as_secs_f64(),
    ))
}

/// The container name and attempt of a container cgroup `<uid>-<name>-<attempt>`.
pub fn parse_container_cgroup<'a>(uid: &str, dir_name: &'a str) -> Option<(&'a str, u32)> {
    let rest = dir_name.strip_prefix(uid)?.strip_prefix('-')?;
    let (name, attempt) = rest.rsplit_once('-')?;
    (!name.is_empty()).then_some(())?;
    Some((name, attempt.parse().ok()?))
}

/// Takes samples and keeps the previous one of everything to compute rates.
#[derive(Debug)]
pub struct Sampler {
    node_name: String,
    cgroups: CgroupFs,
    proc: ProcFs,
    /// The parent of the pods' cgroups (`/aos`).
    pod_parent: String,
    /// Previous CPU reading by cgroup path (`node` for the node).
    prev: HashMap<String, Point>,
}

const NODE_KEY: &str = "node";

impl Sampler {
    /// A sampler of `node_name`, reading pod cgroups below `pod_parent` (`/aos`).
    pub fn new(
        node_name: impl Into<String>,
        cgroups: CgroupFs,
        proc: ProcFs,
        pod_parent: impl Into<String>,
    ) -> Self {
        Self {
            node_name: node_name.into(),
            cgroups,
            proc,
            pod_parent: pod_parent.into().trim_end_matches('/').to_owned(),
            prev: HashMap::new(),
        }
    }

    /// Take a sample of the node and `pods` at `at` (`wall` is its time of day). Returns the
    /// usage over the window since the previous sample, or `None` when the node itself has no
    /// window yet (the first sample).
    pub fn sample(
        &mut self,
        pods: &[PodRef],
        at: Instant,
        wall: jiff::Timestamp,
    ) -> Option<ResourceStats> {
        let timestamp = crate::clock::format_time(wall);
        let mut next: HashMap<String, Point> = HashMap::new();
        let mut track = |key: String, usage: CgroupUsage| -> Option<(u64, f64)> {
            let point = Point {
                at,
                cpu_ns: usage.cpu_usage_ns,
            };
            let rate = self
                .prev
                .get(&key)
                .and_then(|p| cpu_rate(p.at, p.cpu_ns, at, usage.cpu_usage_ns));
            next.insert(key, point);
            rate
        };

        let node = match self.proc.read() {
            Ok(usage) => track(NODE_KEY.to_owned(), usage).map(|(cpu, window)| NodeStats {
                name: self.node_name.clone(),
                timestamp: timestamp.clone(),
                window_seconds: window,
                cpu_nano_cores: cpu,
                memory_working_set_bytes: usage.memory_working_set_bytes,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "reading node statistics");
                None
            }
        };

        let mut out_pods = Vec::new();
        for pod in pods {
            let pod_path = format!("{}/pod-{}", self.pod_parent, pod.uid);
            // The newest attempt of each container with a cgroup of its own.
            let mut latest: HashMap<String, u32> = HashMap::new();
            for child in self.cgroups.children(&pod_path) {
                if let Some((name, attempt)) = parse_container_cgroup(&pod.uid, &child) {
                    let e = latest.entry(name.to_owned()).or_insert(attempt);
                    *e = (*e).max(attempt);
                }
            }
            let mut targets: Vec<(String, String)> = latest
                .into_iter()
                .map(|(name, attempt)| {
                    let path = format!("{pod_path}/{}-{name}-{attempt}", pod.uid);
                    (name, path)
                })
                .collect();
            if targets.is_empty() && pod.containers.len() == 1 {
                // No per-container cgroups: the pod's figure is its only container's.
                targets.push((pod.containers[0].clone(), pod_path.clone()));
            }
            targets.sort();
            let mut window = None;
            let mut containers = Vec::new();
            for (name, path) in targets {
                if self.cgroups.is_empty(&path) {
                    // Exited, not yet removed.
                    continue;
                }
                let usage = match self.cgroups.read(&path) {
                    Ok(u) => u,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, pod = %format!("{}/{}", pod.namespace, pod.name), "reading container statistics");
                        continue;
                    }
                };
                if let Some((cpu, w)) = track(path, usage) {
                    window = Some(window.map_or(w, |x: f64| x.max(w)));
                    containers.push(ContainerStats {
                        name,
                        cpu_nano_cores: cpu,
                        memory_working_set_bytes: usage.memory_working_set_bytes,
                    });
                }
            }
            if let Some(window_seconds) = window {
                out_pods.push(PodStats {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                    timestamp: timestamp.clone(),
                    window_seconds,
                    containers,
                });
            }
        }
        // Readings of what is gone are dropped with the old map.
        self.prev = next;
        out_pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        node.map(|node| ResourceStats {
            node,
            pods: out_pods,
        })
    }
}

/// The latest statistics, shared between the sampling task and the server.
#[derive(Debug)]
pub struct StatsCollector {
    sampler: Mutex<Sampler>,
    latest: RwLock<Option<Arc<ResourceStats>>>,
}

impl StatsCollector {
    /// A collector around `sampler`.
    pub fn new(sampler: Sampler) -> Self {
        Self {
            sampler: Mutex::new(sampler),
            latest: RwLock::new(None),
        }
    }

    /// Sample now (blocking file reads; cheap) and keep the result when it has a window.
    pub fn sample_at(&self, pods: &[PodRef], at: Instant, wall: jiff::Timestamp) {
        let stats = self
            .sampler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .sample(pods, at, wall);
        if let Some(stats) = stats {
            *self
                .latest
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(stats));
        }
    }

    /// The statistics of the last window, if there was one.
    pub fn latest(&self) -> Option<Arc<ResourceStats>> {
        self.latest
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sample at once, again after [`FIRST_WINDOW`], then every `interval` until `cancel`;
    /// `pods` lists the pods to measure at each sample.
    pub async fn run<F>(self: Arc<Self>, pods: F, interval: Duration, cancel: CancellationToken)
    where
        F: Fn() -> Vec<PodRef> + Send + Sync + 'static,
    {
        let pods = Arc::new(pods);
        let mut delay = Duration::ZERO;
        let mut first = true;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            let this = self.clone();
            let pods = pods.clone();
            let took = tokio::task::spawn_blocking(move || {
                let list = pods();
                let started = Instant::now();
                this.sample_at(&list, started, jiff::Timestamp::now());
                started.elapsed()
            })
            .await;
            if let Ok(took) = took {
                tracing::trace!(
                    took_us = took.as_micros() as u64,
                    "resource statistics sampled"
                );
            }
            delay = if first {
                first = false;
                FIRST_WINDOW.min(interval)
            } else {
                interval
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn proc_fixture(root: &Path, user: u64, idle: u64, total_kib: u64, avail_kib: u64) {
        write(
            root,
            "stat",
            &format!("cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"),
        );
        write(
            root,
            "meminfo",
            &format!("MemTotal: {total_kib} kB\nMemFree: 1 kB\nMemAvailable: {avail_kib} kB\n"),
        );
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_cpuacct_usage("123456\n"), Some(123456));
        assert_eq!(parse_cpuacct_usage("x"), None);
        assert_eq!(
            parse_cpu_stat_usage_ns("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"),
            Some(1_500_000)
        );
        assert_eq!(
            parse_keyed(
                "cache 5\ninactive_file 7\ntotal_inactive_file 9\n",
                "inactive_file"
            ),
            Some(7)
        );
        assert_eq!(parse_keyed("inactive_file_x 7\n", "inactive_file"), None);
        assert_eq!(working_set(100, 30), 70);
        assert_eq!(working_set(10, 30), 0);
        // user 100 + nice 10 + system 20 + irq 1 + softirq 2 + steal 3 ticks, at 100 Hz.
        assert_eq!(
            parse_proc_stat_cpu_ns("cpu  100 10 20 5000 7 1 2 3 50 0\n", 100),
            Some(1_360_000_000)
        );
        assert_eq!(parse_proc_stat_cpu_ns("intr 1 2\n", 100), None);
        assert_eq!(
            parse_meminfo_working_set("MemTotal: 1000 kB\nMemAvailable: 400 kB\n"),
            Some(600 * 1024)
        );
        assert_eq!(parse_meminfo_working_set("MemTotal: 1000 kB\n"), None);
        assert_eq!(
            parse_container_cgroup("u1", "u1-agent-registry-3"),
            Some(("agent-registry", 3))
        );
        assert_eq!(parse_container_cgroup("u1", "u2-app-0"), None);
        assert_eq!(parse_container_cgroup("u1", "u1-app"), None);
        assert_eq!(parse_container_cgroup("u1", "u1--0"), None);
    }

    #[test]
    fn rate_maths() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        // 2.5 s of CPU in 5 s: half a core.
        assert_eq!(
            cpu_rate(t0, 1_000_000_000, t1, 3_500_000_000),
            Some((500_000_000, 5.0))
        );
        assert_eq!(cpu_rate(t0, 10, t1, 5), None, "counter went back");
        assert_eq!(cpu_rate(t0, 0, t0, 5), None, "no time passed");
        assert_eq!(cpu_rate(t1, 0, t0, 5), None, "time went back");
    }

    fn pod(uid: &str, containers: &[&str]) -> PodRef {
        PodRef {
            namespace: "agent-os".into(),
            name: format!("pod-{uid}"),
            uid: uid.into(),
            containers: containers.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn v1_container(root: &Path, path: &str, cpu_ns: u64, usage: u64, inactive: u64) {
        write(
            root,
            &format!("cpuacct/{path}/cpuacct.usage"),
            &format!("{cpu_ns}\n"),
        );
        write(
            root,
            &format!("memory/{path}/memory.usage_in_bytes"),
            &format!("{usage}\n"),
        );
        write(
            root,
            &format!("memory/{path}/memory.stat"),
            &format!("cache 1\ninactive_file {inactive}\ntotal_inactive_file {inactive}\n"),
        );
    }

    #[test]
    fn v1_samples_per_container_with_rates() {
        let cg = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        proc_fixture(proc.path(), 1000, 5000, 4_000_000, 3_000_000);
        // Pod a: attempt 0 exited (empty cgroup), attempt 1 runs; a sidecar.
        v1_container(cg.path(), "aos/pod-a/a-app-0", 9_000_000_000, 50, 0);
        write(cg.path(), "cpuacct/aos/pod-a/a-app-0/cgroup.procs", "");
        v1_container(
            cg.path(),
            "aos/pod-a/a-app-1",
            1_000_000_000,
            30 << 20,
            10 << 20,
        );
        write(cg.path(), "cpuacct/aos/pod-a/a-app-1/cgroup.procs", "42\n");
        v1_container(cg.path(), "aos/pod-a/a-side-car-0", 0, 1 << 20, 0);
        // Pod b: no cgroup at all (not started yet).
        let mut s = Sampler::new(
            "n1",
            CgroupFs::new(cg.path(), CgroupVersion::V1),
            ProcFs::new(proc.path(), 100),
            "/aos/",
        );
        let pods = [pod("a", &["app", "side-car"]), pod("b", &["web"])];
        let t0 = Instant::now();
        let wall = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(
            s.sample(&pods, t0, wall),
            None,
            "first sample has no window"
        );

        proc_fixture(proc.path(), 1200, 5300, 4_000_000, 2_500_000);
        v1_container(
            cg.path(),
            "aos/pod-a/a-app-1",
            1_250_000_000,
            40 << 20,
            10 << 20,
        );
        v1_container(cg.path(), "aos/pod-a/a-side-car-0", 5_000_000, 2 << 20, 0);
        let t1 = t0 + Duration::from_secs(5);
        let stats = s
            .sample(&pods, t1, wall + jiff::SignedDuration::from_secs(5))
            .unwrap();
        // 200 ticks at 100 Hz in 5 s: 0.4 cores.
        assert_eq!(stats.node.cpu_nano_cores, 400_000_000);
        assert_eq!(stats.node.memory_working_set_bytes, 1_500_000 * 1024);
        assert_eq!(stats.node.window_seconds, 5.0);
        assert_eq!(stats.node.timestamp, "2027-01-15T08:00:05Z");
        assert_eq!(stats.pods.len(), 1, "pod b has no cgroup");
        let p = &stats.pods[0];
        assert_eq!(p.uid, "a");
        assert_eq!(p.window_seconds, 5.0);
        assert_eq!(
            p.containers,
            vec![
                ContainerStats {
                    name: "app".into(),
                    cpu_nano_cores: 50_000_000,
                    memory_working_set_bytes: 30 << 20,
                },
                ContainerStats {
                    name: "side-car".into(),
                    cpu_nano_cores: 1_000_000,
                    memory_working_set_bytes: 2 << 20,
                },
            ]
        );

        // A restart: attempt 2 appears; it has no window until its second sample.
        v1_container(cg.path(), "aos/pod-a/a-app-2", 10, 1 << 20, 0);
        let stats = s.sample(&pods, t1 + Duration::from_secs(5), wall).unwrap();
        let names: Vec<&str> = stats.pods[0]
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, vec!["side-car"]);
    }

    #[test]
    fn v2_samples_and_pod_level_fallback() {
        let cg = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        proc_fixture(proc.path(), 0, 0, 100, 50);
        let set = |cpu_us: u64, current: u64| {
            write(
                cg.path(),
                "aos/pod-p/p-web-0/cpu.stat",
                &format!("usage_usec {cpu_us}\nuser_usec 1\nsystem_usec 1\n"),
            );
            write(
                cg.path(),
                "aos/pod-p/p-web-0/memory.current",
                &format!("{current}\n"),
            );
            write(
                cg.path(),
                "aos/pod-p/p-web-0/memory.stat",
                "anon 1\nfile 9\ninactive_file 1000\nactive_file 5\n",
            );
            // A single-container pod without its own cgroup: the pod's figure.
            write(
                cg.path(),
                "aos/pod-q/cpu.stat",
                &format!("usage_usec {}\n", cpu_us * 2),
            );
            write(cg.path(), "aos/pod-q/memory.current", "5000\n");
            write(cg.path(), "aos/pod-q/memory.stat", "inactive_file 0\n");
        };
        set(1_000, 11_000);
        let mut s = Sampler::new(
            "n1",
            CgroupFs::new(cg.path(), CgroupVersion::V2),
            ProcFs::new(proc.path(), 100),
            "/aos",
        );
        let pods = [pod("p", &["web"]), pod("q", &["only"])];
        let t0 = Instant::now();
        let wall = jiff::Timestamp::now();
        assert!(s.sample(&pods, t0, wall).is_none());
        set(2_001_000, 21_000);
        let stats = s.sample(&pods, t0 + Duration::from_secs(2), wall).unwrap();
        assert_eq!(stats.node.cpu_nano_cores, 0);
        assert_eq!(stats.pods.len(), 2);
        assert_eq!(stats.pods[0].name, "pod-p");
        // 2 s of CPU in 2 s: one core.
        assert_eq!(stats.pods[0].containers[0].cpu_nano_cores, 1_000_000_000);
        assert_eq!(stats.pods[0].containers[0].memory_working_set_bytes, 20_000);
        assert_eq!(stats.pods[1].containers[0].name, "only");
        assert_eq!(stats.pods[1].containers[0].cpu_nano_cores, 2_000_000_000);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["node"]["windowSeconds"], 2.0);
        assert!(json["pods"][0]["containers"][0]["memoryWorkingSetBytes"].is_u64());
    }

    #[test]
    fn host_readers_work_here() {
        let usage = ProcFs::host().read().unwrap();
        assert!(usage.cpu_usage_ns > 0);
        assert!(usage.memory_working_set_bytes > 0);
    }

    #[tokio::test(start_paused = true)]
    async fn collector_task_samples_on_schedule() {
        let cg = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        proc_fixture(proc.path(), 10, 10, 100, 50);
        let c = Arc::new(StatsCollector::new(Sampler::new(
            "n1",
            CgroupFs::new(cg.path(), CgroupVersion::V2),
            ProcFs::new(proc.path(), 100),
            "/aos",
        )));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(c.clone().run(Vec::new, DEFAULT_INTERVAL, cancel.clone()));
        // The blocking reads finish on real threads; paused time only moves the schedule.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while c.latest().is_none() {
            assert!(std::time::Instant::now() < deadline, "no second sample");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(c.latest().unwrap().node.name, "n1");
        cancel.cancel();
        task.await.unwrap();
    }
}
