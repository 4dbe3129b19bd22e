//! `aos-bench pods`: pod start latency and node-agent memory per pod, against a real `aos up`
//! (with its node agent, so as root) in a temporary data dir, images already in its store.
//!
//! Start latency is create → Ready, measured two ways:
//! - by watching: the client-side time from the create call's answer to the watch event in
//!   which the pod's `Ready` condition is `True` (millisecond-exact);
//! - from the pod itself: the `Ready` condition's `lastTransitionTime` minus the pod's
//!   `creationTimestamp` (what `kubectl` users can read; Kubernetes' timestamps have
//!   one-second precision, so this only bounds the first).
//!
//! Each case runs one pod at a time (`--runs`, the pod deleted and gone between runs) and
//! `--batch` pods created at once (`--batch-runs` times). Where the time goes is read from the
//! watch (scheduled, container running in the status) and from the files the node agent and the
//! pod's shim write, whose times the kernel keeps to the nanosecond:
//!
//! | mark | source |
//! |---|---|
//! | created | the create call answered (client) |
//! | scheduled | first watch event with `spec.nodeName` |
//! | agent began | birth of the pod's directory `DATA/pods/NS_NAME_UID` (the agent's worker makes it before anything else) |
//! | shim spawned | birth of `shim.json` (written just before the shim is started) |
//! | sandbox ready | last write of `sandbox.json` (namespaces, veth and address, cgroup done) |
//! | container create | birth of `containers/ID` (the shim got the start request: image resolved, config and volumes ready) |
//! | container running | last write of `containers/ID/info.json` (written once the process runs) |
//! | status running | first watch event with the container `running` |
//! | ready | first watch event with `Ready=True` |
//!
//! Memory: RSS of `aos up` (which runs the agent) plus the RSS and PSS of the pods' shims,
//! with 0, 10 and 20 running `sleep` pods, reported per pod.
//!
//! This is a benchmark, not a test: it asserts nothing, it prints numbers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use aos_client::{Client, DeleteParams, ListParams};
use clap::Parser;
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::{free_port, ms, percentile, rss_kib};

/// Arguments of `aos-bench pods`.
#[derive(Parser)]
pub(crate) struct PodsArgs {
    /// The aos binary to measure (a release build).
    #[arg(long, default_value = "target/release/aos")]
    aos: PathBuf,
    /// Where the temporary data dir goes.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Runs of one pod per case.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Pods created at once in the batch runs.
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Batch runs per case.
    #[arg(long, default_value_t = 5)]
    batch_runs: usize,
    /// The static agent-registry binary; with it the seed's image is built and measured too
    /// (bench/node/run.sh builds it with images/agent-registry/build.sh --binary-only).
    #[arg(long)]
    agent_registry_bin: Option<PathBuf>,
    /// The static busybox the test image is made of (Debian's busybox-static).
    #[arg(long, default_value = "/bin/busybox")]
    busybox: PathBuf,
    /// Pod counts at which memory is measured.
    #[arg(long, value_delimiter = ',', default_value = "0,10,20")]
    memory_at: Vec<usize>,
    /// Pod address range of the measured node (apart from a default `aos up`'s 10.88.0.0/16).
    #[arg(long, default_value = "10.199.0.0/16")]
    pod_cidr: String,
    /// Keep the data dir and the `aos up` log (printed at the end).
    #[arg(long)]
    keep: bool,
}

const NS: &str = "bench";
const BUSYBOX_IMAGE: &str = "busybox:bench";
const AGENT_REGISTRY_IMAGE: &str = "agent-registry:1.0.0";
/// How long one pod may take to become Ready before the run is reported as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One measured case: a pod template.
struct Case {
    name: &'static str,
    describe: &'static str,
    pod: fn(&str) -> Value,
}

fn hardened(container: Value) -> Value {
    let mut c = container;
    c["securityContext"] = json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    });
    c["volumeMounts"] = json!([{"name": "tmp", "mountPath": "/tmp"}]);
    c
}

fn pod_with(name: &str, container: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"bench": "pods"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": 1001, "runAsGroup": 1001, "runAsNonRoot": true},
            "containers": [hardened(container)],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }
    })
}

const HTTPD: &str =
    "mkdir -p /tmp/www && echo ok > /tmp/www/ready && exec httpd -f -p 8080 -h /tmp/www";

fn busybox_probe(name: &str) -> Value {
    pod_with(
        name,
        json!({
            "name": "web",
            "image": BUSYBOX_IMAGE,
            "imagePullPolicy": "Never",
            "command": ["/bin/sh", "-c", HTTPD],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                               "initialDelaySeconds": 0, "periodSeconds": 1},
        }),
    )
}

fn busybox_no_probe(name: &str) -> Value {
    pod_with(
        name,
        json!({
            "name": "web",
            "image": BUSYBOX_IMAGE,
            "imagePullPolicy": "Never",
            "command": ["/bin/sh", "-c", HTTPD],
            "ports": [{"containerPort": 8080}],
        }),
    )
}

fn agent_registry_probe(name: &str) -> Value {
    pod_with(
        name,
        json!({
            "name": "agent-registry",
            "image": AGENT_REGISTRY_IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 3000, "name": "http"}],
            "env": [{"name": "DATABASE_URL", "value": "sqlite:///tmp/agent-registry.db"}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 3000},
                               "initialDelaySeconds": 0, "periodSeconds": 1},
        }),
    )
}

fn sleeper(name: &str) -> Value {
    pod_with(
        name,
        json!({
            "name": "sleep",
            "image": BUSYBOX_IMAGE,
            "imagePullPolicy": "Never",
            "command": ["/bin/sleep", "86400"],
        }),
    )
}

/// What the watch saw of one pod, as wall-clock times.
#[derive(Clone, Debug, Default)]
struct Seen {
    scheduled: Option<SystemTime>,
    running: Option<SystemTime>,
    ready: Option<SystemTime>,
    deleted: bool,
    /// The pod as of the Ready event.
    object: Option<Value>,
}

type Board = Arc<Mutex<HashMap<String, Seen>>>;

/// One pod's measured start.
#[derive(Clone, Debug)]
struct Sample {
    /// create answered → Ready event.
    watch: Duration,
    /// Ready's lastTransitionTime − creationTimestamp, whole seconds.
    condition_s: Option<i64>,
    /// Milliseconds from the create call's answer to each mark of [`MARKS`] (negative when the
    /// node got there before the create's answer reached the client).
    marks: Vec<Option<f64>>,
}

const MARKS: [&str; 8] = [
    "scheduled",
    "agent began",
    "shim spawned",
    "sandbox ready",
    "container create",
    "container running",
    "status running",
    "Ready",
];

/// A running `aos up` with its node agent; stopped with SIGTERM (its pods with it) on drop.
struct Up {
    child: Child,
    client: Client,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Up {
    async fn start(args: &PodsArgs, data_dir: &Path) -> Result<Up> {
        let port = free_port()?;
        let log = data_dir.with_extension("log");
        let child = Command::new(&args.aos)
            .args(["up", "--data-dir"])
            .arg(data_dir)
            .args(["--api-listen", &format!("127.0.0.1:{port}")])
            .args(["--gateway-listen", &format!("127.0.0.1:{}", free_port()?)])
            .args([
                "--gateway-admin-listen",
                &format!("127.0.0.1:{}", free_port()?),
            ])
            .args(["--pod-cidr", &args.pod_cidr])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", args.aos.display()))?;
        let kubeconfig = data_dir.join("kubeconfig.yaml");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            if Instant::now() > deadline {
                bail!("aos up not ready within 30 s; see {}", log.display());
            }
            if kubeconfig.exists()
                && let Ok(client) = Client::from_kubeconfig(&kubeconfig)
                && client.raw(http::Method::GET, "/readyz", None).await.is_ok()
            {
                break client;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        Ok(Up {
            child,
            client,
            data_dir: data_dir.to_path_buf(),
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait (at most a minute): `aos up` stops its pods.
    fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The pids of this data dir's shims (`aos shim DATA/pods/...`).
    fn shims(&self) -> Vec<u32> {
        let pods = self.data_dir.join("pods");
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
                args.get(1) == Some(&&b"shim"[..])
                    && args
                        .get(2)
                        .is_some_and(|a| Path::new(&*String::from_utf8_lossy(a)).starts_with(&pods))
            })
            .collect()
    }

    fn pod_dir(&self, pod: &Value) -> PathBuf {
        let s = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or_default();
        self.data_dir.join("pods").join(format!(
            "{}_{}_{}",
            s("/metadata/namespace"),
            s("/metadata/name"),
            s("/metadata/uid")
        ))
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Watch the bench namespace's pods into `board`, reconnecting when the server ends a watch.
fn spawn_watch(client: Client, board: Board, rv: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods = aos_types::resource::by_kind("v1", "Pod").expect("Pod type");
        let mut rv = rv;
        loop {
            let stream = match client
                .watch(pods, Some(NS), &ListParams::default(), &rv)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("watch: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                let now = SystemTime::now();
                let Ok(ev) = ev else { break };
                if let Some(v) = ev.resource_version() {
                    rv = v.to_string();
                }
                let obj = &ev.object;
                let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) else {
                    continue;
                };
                let mut board = board.lock().expect("board lock");
                let seen = board.entry(name.to_string()).or_default();
                if ev.type_ == "DELETED" {
                    seen.deleted = true;
                    continue;
                }
                if seen.scheduled.is_none()
                    && obj
                        .pointer("/spec/nodeName")
                        .and_then(Value::as_str)
                        .is_some_and(|n| !n.is_empty())
                {
                    seen.scheduled = Some(now);
                }
                if seen.running.is_none()
                    && obj
                        .pointer("/status/containerStatuses/0/state/running")
                        .is_some()
                {
                    seen.running = Some(now);
                }
                if seen.ready.is_none() && ready(obj) {
                    seen.ready = Some(now);
                    seen.object = Some(obj.clone());
                }
            }
        }
    })
}

fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Birth time of a file (statx), else its last change.
fn born(path: &Path) -> Option<SystemTime> {
    let m = std::fs::metadata(path).ok()?;
    m.created().or_else(|_| m.modified()).ok()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}

/// Signed milliseconds from `from` to `to`.
fn offset_ms(from: SystemTime, to: Option<SystemTime>) -> Option<f64> {
    let to = to?;
    Some(match to.duration_since(from) {
        Ok(d) => ms(d),
        Err(e) => -ms(e.duration()),
    })
}

fn rfc3339_seconds(v: Option<&Value>) -> Option<i64> {
    let t: jiff::Timestamp = v?.as_str()?.parse().ok()?;
    Some(t.as_second())
}

/// The node-side marks of a Ready pod, from its directory (read before it is deleted).
fn node_marks(up: &Up, pod: &Value) -> [Option<SystemTime>; 5] {
    let dir = up.pod_dir(pod);
    let container = std::fs::read_dir(dir.join("containers"))
        .ok()
        .and_then(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .find(|p| p.join("info.json").exists())
        });
    [
        born(&dir),
        born(&dir.join("shim.json")),
        modified(&dir.join("sandbox.json")),
        container.as_deref().and_then(born),
        container
            .as_deref()
            .and_then(|c| modified(&c.join("info.json"))),
    ]
}

fn sample(up: &Up, created: SystemTime, seen: &Seen) -> Option<Sample> {
    let ready_at = seen.ready?;
    let pod = seen.object.as_ref()?;
    let [agent, shim, sandbox, create, running] = node_marks(up, pod);
    let condition_s = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| rfc3339_seconds(c.get("lastTransitionTime")))
        .zip(rfc3339_seconds(pod.pointer("/metadata/creationTimestamp")))
        .map(|(r, c)| r - c);
    let marks = [
        seen.scheduled,
        agent,
        shim,
        sandbox,
        create,
        running,
        seen.running,
        Some(ready_at),
    ];
    Some(Sample {
        watch: ready_at.duration_since(created).unwrap_or_default(),
        condition_s,
        marks: marks.iter().map(|m| offset_ms(created, *m)).collect(),
    })
}

/// Create the pods `names` at once; wait for all to be Ready; measure; delete them and wait
/// until they and their shims are gone.
async fn run_pods(
    up: &Up,
    board: &Board,
    make: fn(&str) -> Value,
    names: &[String],
) -> Result<(Vec<Sample>, Duration)> {
    let pods = aos_types::resource::by_kind("v1", "Pod").context("Pod type")?;
    let started = Instant::now();
    let creates = names.iter().map(|name| {
        let client = up.client.clone();
        let pod = make(name);
        async move {
            client.create(pods, Some(NS), &pod).await?;
            anyhow::Ok(SystemTime::now())
        }
    });
    let created: Vec<SystemTime> = futures::future::try_join_all(creates).await?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let done = {
            let board = board.lock().expect("board lock");
            names
                .iter()
                .all(|n| board.get(n).is_some_and(|s| s.ready.is_some()))
        };
        if done {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "pods not Ready within {READY_TIMEOUT:?}; see {}",
                up.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_ready = started.elapsed();
    let seen: Vec<Seen> = {
        let board = board.lock().expect("board lock");
        names.iter().map(|n| board[n].clone()).collect()
    };
    let samples = created
        .iter()
        .zip(&seen)
        .filter_map(|(c, s)| sample(up, *c, s))
        .collect();
    delete_all(up, board, names).await?;
    Ok((samples, all_ready))
}

async fn delete_all(up: &Up, board: &Board, names: &[String]) -> Result<()> {
    let pods = aos_types::resource::by_kind("v1", "Pod").context("Pod type")?;
    let deletes = names.iter().map(|name| {
        let client = up.client.clone();
        async move {
            client
                .delete(pods, Some(NS), name, &DeleteParams::default())
                .await
        }
    });
    futures::future::try_join_all(deletes).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let gone = {
            let board = board.lock().expect("board lock");
            names
                .iter()
                .all(|n| board.get(n).is_some_and(|s| s.deleted))
        };
        if gone && up.shims().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pods not deleted within 60 s; see {}", up.log.display());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The median of mark `i` over `samples`, in milliseconds.
fn median_mark(samples: &[Sample], i: usize) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().filter_map(|s| s.marks[i]).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[(v.len() - 1) / 2])
}

fn report(label: &str, samples: &[Sample], all_ready: &[Duration]) {
    let mut watch: Vec<Duration> = samples.iter().map(|s| s.watch).collect();
    watch.sort();
    let mut cond: Vec<i64> = samples.iter().filter_map(|s| s.condition_s).collect();
    cond.sort_unstable();
    let cond_p = |p: f64| -> String {
        if cond.is_empty() {
            return "-".into();
        }
        let idx = ((cond.len() as f64 - 1.0) * p).round() as usize;
        format!("{} s", cond[idx])
    };
    println!(
        "{label}: {} pods: create→Ready (watch) p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; \
         from the Ready condition (1 s precision) p50 {}, p99 {}",
        watch.len(),
        ms(percentile(&watch, 0.5)),
        ms(percentile(&watch, 0.99)),
        ms(watch.last().copied().unwrap_or_default()),
        cond_p(0.5),
        cond_p(0.99),
    );
    if !all_ready.is_empty() {
        let mut all = all_ready.to_vec();
        all.sort();
        println!(
            "{label}: all pods of a batch Ready after: p50 {:.0} ms, max {:.0} ms",
            ms(percentile(&all, 0.5)),
            ms(all.last().copied().unwrap_or_default())
        );
    }
    let mut previous = 0.0;
    let parts: Vec<String> = MARKS
        .iter()
        .enumerate()
        .map(|(i, name)| match median_mark(samples, i) {
            Some(at) => {
                let step = at - previous;
                previous = at;
                format!("{name} {at:+.1} ({step:+.1})")
            }
            None => format!("{name} -"),
        })
        .collect();
    println!(
        "{label}: median ms after the create's answer (step from the previous mark): {}",
        parts.join(" | ")
    );
}

/// PSS in KiB from `/proc/PID/smaps_rollup`.
fn pss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The processes in `/aos/pod-*` cgroups of the given pod uids.
fn container_pids(uids: &[String]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|cg| uids.iter().any(|u| cg.contains(&format!("/aos/pod-{u}/"))))
        })
        .collect()
}

struct Memory {
    pods: usize,
    aos_rss: u64,
    shims_rss: u64,
    shims_pss: u64,
    containers_rss: u64,
}

async fn memory(up: &Up, board: &Board, counts: &[usize]) -> Result<Vec<Memory>> {
    let pods = aos_types::resource::by_kind("v1", "Pod").context("Pod type")?;
    let mut running: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for &n in counts {
        let new: Vec<String> = (running.len()..n).map(|i| format!("sleep-{i}")).collect();
        if !new.is_empty() {
            let creates = new.iter().map(|name| {
                let client = up.client.clone();
                let pod = sleeper(name);
                async move { client.create(pods, Some(NS), &pod).await }
            });
            futures::future::try_join_all(creates).await?;
            let deadline = Instant::now() + READY_TIMEOUT;
            while !{
                let board = board.lock().expect("board lock");
                new.iter()
                    .all(|n| board.get(n).is_some_and(|s| s.ready.is_some()))
            } {
                if Instant::now() > deadline {
                    bail!("sleep pods not Ready; see {}", up.log.display());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            running.extend(new);
        }
        // Let the agent's periodic work (status, heartbeats) settle.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let uids: Vec<String> = {
            let board = board.lock().expect("board lock");
            running
                .iter()
                .filter_map(|n| {
                    board[n]
                        .object
                        .as_ref()?
                        .pointer("/metadata/uid")?
                        .as_str()
                        .map(str::to_owned)
                })
                .collect()
        };
        let shims = up.shims();
        out.push(Memory {
            pods: running.len(),
            aos_rss: rss_kib(up.pid())?,
            shims_rss: shims.iter().filter_map(|p| rss_kib(*p).ok()).sum(),
            shims_pss: shims.iter().filter_map(|p| pss_kib(*p)).sum(),
            containers_rss: container_pids(&uids)
                .iter()
                .filter_map(|p| rss_kib(*p).ok())
                .sum(),
        });
    }
    delete_all(up, board, &running).await?;
    Ok(out)
}

fn build_image(aos: &Path, data_dir: &Path, tag: &str, context: &Path) -> Result<()> {
    let out = Command::new(aos)
        .arg("image")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["build", "-t", tag])
        .arg(context)
        .stdin(Stdio::null())
        .output()
        .context("running aos image build")?;
    if !out.status.success() {
        bail!(
            "aos image build -t {tag} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn build_busybox(args: &PodsArgs, data_dir: &Path, work: &Path) -> Result<()> {
    let ctx = work.join("busybox");
    let root = ctx.join("rootfs");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(&args.busybox, root.join("bin/busybox"))
        .with_context(|| format!("copy {}", args.busybox.display()))?;
    let list = Command::new(&args.busybox).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\napp:x:1001:1001:app:/tmp:/bin/sh\n",
    )?;
    std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1001:\n")?;
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nUSER 1001:1001\nENV PATH=/bin\nWORKDIR /tmp\n",
    )?;
    build_image(&args.aos, data_dir, BUSYBOX_IMAGE, &ctx)
}

fn build_agent_registry(args: &PodsArgs, bin: &Path, data_dir: &Path, work: &Path) -> Result<()> {
    let src = Path::new("images/agent-registry");
    let ctx = work.join("agent-registry");
    std::fs::create_dir_all(ctx.join("context"))?;
    for name in ["Dockerfile", ".dockerignore"] {
        std::fs::copy(src.join(name), ctx.join(name)).with_context(|| {
            format!("copy images/agent-registry/{name} (run from the repository root)")
        })?;
    }
    std::fs::copy(bin, ctx.join("context/agent-registry"))
        .with_context(|| format!("copy {}", bin.display()))?;
    build_image(&args.aos, data_dir, AGENT_REGISTRY_IMAGE, &ctx)
}

/// Wait until the node reports Ready.
async fn wait_node(client: &Client) -> Result<String> {
    let nodes = aos_types::resource::by_kind("v1", "Node").context("Node type")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = client.list(nodes, None, &ListParams::default()).await?;
        if let Some(n) = list.items.iter().find(|n| {
            n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        }) {
            return Ok(n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string());
        }
        if Instant::now() > deadline {
            bail!("no Ready node within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The benchmark.
pub(crate) async fn run(args: PodsArgs) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("needs root: the node agent creates namespaces, cgroups and veths");
    }
    std::fs::create_dir_all(&args.dir)?;
    let tmp = tempfile::tempdir_in(&args.dir)?;
    let data_dir = tmp.path().join("aos");
    let work = tmp.path().join("build");
    build_busybox(&args, &data_dir, &work)?;
    let mut cases = vec![
        Case {
            name: "busybox-probe",
            describe: "busybox httpd, httpGet readiness probe (initialDelaySeconds 0, periodSeconds 1)",
            pod: busybox_probe,
        },
        Case {
            name: "busybox",
            describe: "busybox httpd, no probe (Ready when the container runs)",
            pod: busybox_no_probe,
        },
    ];
    if let Some(bin) = &args.agent_registry_bin {
        build_agent_registry(&args, bin, &data_dir, &work)?;
        cases.push(Case {
            name: "agent-registry-probe",
            describe: "agent-registry, httpGet /ready readiness probe (initialDelaySeconds 0, periodSeconds 1)",
            pod: agent_registry_probe,
        });
    } else {
        println!("(no --agent-registry-bin: the agent-registry case is skipped)");
    }
    std::fs::remove_dir_all(&work)?;

    let mut up = Up::start(&args, &data_dir).await?;
    let node = wait_node(&up.client).await?;
    let ns_type = aos_types::resource::by_kind("v1", "Namespace").context("Namespace type")?;
    up.client
        .create(
            ns_type,
            None,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        )
        .await?;
    let pods = aos_types::resource::by_kind("v1", "Pod").context("Pod type")?;
    let rv = up
        .client
        .list(pods, Some(NS), &ListParams::default())
        .await?
        .resource_version;
    let board: Board = Arc::new(Mutex::new(HashMap::new()));
    let watch = spawn_watch(up.client.clone(), board.clone(), rv);

    println!("# aos pod start benchmark");
    println!(
        "machine: {} cores, {} (release build), node {node}, images in the store",
        std::thread::available_parallelism()?,
        args.aos.display()
    );
    for case in &cases {
        println!("\n## {}: {}", case.name, case.describe);
        // One warm-up pod: the first start pays for the bridge and the page cache.
        run_pods(&up, &board, case.pod, &[format!("{}-warm", case.name)]).await?;
        let mut single = Vec::new();
        for i in 0..args.runs {
            let (s, _) = run_pods(&up, &board, case.pod, &[format!("{}-1-{i}", case.name)]).await?;
            single.extend(s);
        }
        report("1 pod", &single, &[]);
        let mut batch = Vec::new();
        let mut all_ready = Vec::new();
        for b in 0..args.batch_runs {
            let names: Vec<String> = (0..args.batch)
                .map(|i| format!("{}-{}x-{b}-{i}", case.name, args.batch))
                .collect();
            let (s, all) = run_pods(&up, &board, case.pod, &names).await?;
            batch.extend(s);
            all_ready.push(all);
        }
        report(&format!("{} pods at once", args.batch), &batch, &all_ready);
    }
    println!("\ngoals: pod Ready p50 <= 150 ms (no probe delay); Kubernetes SLO: p99 <= 5 s");

    println!("\n## node-agent memory per running pod (busybox `sleep` pods, no probe)");
    let mem = memory(&up, &board, &args.memory_at).await?;
    println!(
        "| pods | aos up RSS (API, controllers, gateway, agent) | shims RSS | shims PSS | containers RSS |"
    );
    println!("|---|---|---|---|---|");
    for m in &mem {
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            m.pods,
            m.aos_rss as f64 / 1024.0,
            m.shims_rss as f64 / 1024.0,
            m.shims_pss as f64 / 1024.0,
            m.containers_rss as f64 / 1024.0
        );
    }
    if let (Some(first), Some(last)) = (mem.first(), mem.last())
        && last.pods > first.pods
    {
        let n = (last.pods - first.pods) as f64;
        let agent = (last.aos_rss as f64 - first.aos_rss as f64) / 1024.0 / n;
        let shim_rss = (last.shims_rss as f64 - first.shims_rss as f64) / 1024.0 / n;
        let shim_pss = (last.shims_pss as f64 - first.shims_pss as f64) / 1024.0 / n;
        println!(
            "per pod ({} → {} pods): agent {agent:.2} MiB + shim {shim_rss:.2} MiB RSS ({shim_pss:.2} MiB PSS) = {:.2} MiB RSS, {:.2} MiB counting PSS",
            first.pods,
            last.pods,
            agent + shim_rss,
            agent + shim_pss
        );
    }

    watch.abort();
    up.stop();
    if args.keep {
        let kept = tmp.keep();
        println!(
            "\nkept {} (aos up log: {})",
            kept.display(),
            up.log.display()
        );
    }
    Ok(())
}
