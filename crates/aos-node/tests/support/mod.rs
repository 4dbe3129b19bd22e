//! What the root end-to-end tests share: a busybox image, a node agent over the in-memory
//! cluster with the real shim, and waiting for pod states.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_controller::cluster::fake::FakeCluster;
use aos_node::clock::Clock;
use aos_node::image::{ImageSource, StoreImages};
use aos_node::kinds::PODS;
use aos_node::node::MachineInfo;
use aos_node::probe::{NetProber, Prober};
use aos_node::runtime::ContainerRuntime;
use aos_node::runtime::shim::ShimRuntime;
use aos_node::{NodeAgent, NodeConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const BUSYBOX: &str = "/bin/busybox";

pub fn ready_to_run() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to create namespaces, mounts, cgroups and veths");
        return false;
    }
    if !Path::new(BUSYBOX).exists() {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "busybox-static"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output();
    }
    if !Path::new(BUSYBOX).exists() {
        eprintln!("skipped: /bin/busybox missing and `apt-get install busybox-static` failed");
        return false;
    }
    true
}

/// Build `busybox:e2e` (FROM scratch, busybox and its applets, a passwd with user 1001).
pub fn build_image(data_dir: &Path) {
    let ctx = data_dir.join("build");
    let root = ctx.join("rootfs");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\napp:x:1001:1001:app:/tmp:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1001:\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nUSER app\nENV PATH=/bin\nWORKDIR /tmp\nCMD [\"/bin/sh\"]\n",
    )
    .unwrap();
    let store = aos_image::ImageStore::open(data_dir).unwrap();
    aos_image::build(
        &store,
        &aos_image::BuildOptions {
            context: ctx.clone(),
            tags: vec!["busybox:e2e".into()],
            ..Default::default()
        },
        &mut |_| {},
    )
    .unwrap();
    std::fs::remove_dir_all(ctx).unwrap();
}

/// A node config in `data_dir` whose bridge, pod CIDR and cgroup root belong to this test
/// process and `tag` (tests of one process running side by side use different tags).
///
/// The pod CIDR is a `/24` that no address or route of the host uses yet: a bridge left by a
/// test run that died (or one running beside this one) with the same subnet would take this
/// test's traffic.
pub fn node_config(data_dir: &Path, tag: u8) -> NodeConfig {
    let id = std::process::id() % 10_000;
    let mut config = NodeConfig::new("e2e-node", data_dir, env!("CARGO_BIN_EXE_aos-node-shim"));
    config.bridge = format!("aosn{id}t{tag}");
    let second = 200 + u32::from(tag);
    let in_use = [
        Command::new("ip").args(["-o", "-4", "addr"]).output(),
        Command::new("ip").args(["-4", "route"]).output(),
    ]
    .into_iter()
    .flatten()
    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    .collect::<String>();
    let third = (0..250)
        .map(|k| (id + k) % 250)
        .find(|t| !in_use.contains(&format!("10.{second}.{t}.")))
        .expect("a free /24 in 10.{second}.0.0/16");
    config.pod_cidr = format!("10.{second}.{third}.0/24");
    config.cgroup_root = format!("/aos-node-e2e-{id}-{tag}");
    config.node_ip = Some("127.0.0.1".parse().unwrap());
    config
}

/// Removes a test node's bridge and cgroup roots when dropped, a failed test included.
pub struct HostCleanup {
    bridge: String,
    cgroup_root: String,
}

impl HostCleanup {
    /// Clean up after `config`.
    pub fn new(config: &NodeConfig) -> Self {
        Self {
            bridge: config.bridge.clone(),
            cgroup_root: config.cgroup_root.clone(),
        }
    }
}

impl Drop for HostCleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", "dev", &self.bridge])
            .output();
        for ctl in [
            "memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio",
        ] {
            let root = Path::new("/sys/fs/cgroup")
                .join(ctl)
                .join(self.cgroup_root.trim_start_matches('/'));
            let _ = std::fs::remove_dir(&root);
        }
        let _ = std::fs::remove_dir(
            Path::new("/sys/fs/cgroup").join(self.cgroup_root.trim_start_matches('/')),
        );
    }
}

/// Shim processes serving pods under `data_dir` (their config file lives there).
pub fn shims_of(data_dir: &Path) -> String {
    let out = Command::new("pgrep")
        .args(["-f", &data_dir.to_string_lossy()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub struct Node {
    pub config: NodeConfig,
    pub cluster: Arc<FakeCluster>,
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub runtime: Arc<dyn ContainerRuntime>,
}

pub fn start_agent(config: &NodeConfig, cluster: &Arc<FakeCluster>) -> Node {
    let runtime: Arc<dyn ContainerRuntime> =
        Arc::new(ShimRuntime::new(config, Arc::default()).unwrap());
    let images: Arc<dyn ImageSource> = Arc::new(StoreImages::open(&config.data_dir).unwrap());
    let prober: Arc<dyn Prober> = Arc::new(NetProber::new(runtime.clone()));
    let agent = NodeAgent::with_parts(
        config.clone(),
        cluster.clone(),
        runtime.clone(),
        images,
        prober,
        Clock::new(),
        MachineInfo::read(),
    );
    let cancel = CancellationToken::new();
    let task = tokio::spawn(agent.run(cancel.clone()));
    Node {
        config: config.clone(),
        cluster: cluster.clone(),
        cancel,
        task,
        runtime,
    }
}

impl Node {
    pub async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }

    pub fn pod(&self, name: &str) -> Option<Value> {
        self.cluster.object(&PODS, Some("default"), name)
    }

    pub async fn wait_for(
        &self,
        what: &str,
        mut f: impl FnMut(&Value) -> bool,
        name: &str,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(p) = self.pod(name) {
                if f(&p) {
                    return p;
                }
                if Instant::now() > deadline {
                    let shim_log = std::fs::read_to_string(self.pod_dir(&p).join("shim.log"))
                        .unwrap_or_default();
                    panic!(
                        "{name}: timed out waiting for {what}: {:#}\nshim log:\n{shim_log}\n{}",
                        p["status"],
                        network_state(&p)
                    );
                }
            } else if Instant::now() > deadline {
                panic!("{name}: gone while waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_ready(&self, name: &str, ready: bool, restarts: u64) -> Value {
        let want = if ready { "True" } else { "False" };
        self.wait_for(
            &format!("Ready={want} restartCount={restarts}"),
            |p| {
                let cond = p["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                    .map(|c| c["status"] == want)
                    .unwrap_or(false);
                cond && p["status"]["containerStatuses"][0]["restartCount"] == restarts
            },
            name,
        )
        .await
    }

    pub fn pod_dir(&self, p: &Value) -> PathBuf {
        self.config.pods_dir().join(format!(
            "default_{}_{}",
            p["metadata"]["name"].as_str().unwrap(),
            p["metadata"]["uid"].as_str().unwrap()
        ))
    }

    pub async fn running_pid(&self, uid: &str) -> i32 {
        let cs = self.runtime.containers(uid).await.unwrap();
        cs.iter()
            .filter(|c| c.running())
            .map(|c| c.pid)
            .next()
            .expect("a running container")
    }
}

pub fn status_field(log: &str, key: &str) -> String {
    log.lines()
        .find_map(|l| {
            l.split_once(&format!("{key}:"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{key} missing in {log}"))
}

pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

/// The host's view of a pod's network: routes, links and a connection attempt.
fn network_state(p: &Value) -> String {
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .map(|o| {
                format!(
                    "$ {cmd} {}\n{}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    };
    let ip = p["status"]["podIP"].as_str().unwrap_or_default();
    [
        run("ip", &["route", "get", ip]),
        run("ip", &["-br", "addr"]),
        run("ip", &["neigh", "show", ip]),
        run("ip", &["-d", "link", "show", "type", "bridge"]),
    ]
    .concat()
}

/// What `/proc` says of a process that should be gone: its state, parent and command line.
pub fn process_state(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let wanted: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("State:") || l.starts_with("PPid:") || l.starts_with("Name:"))
        .collect();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    format!(
        "{} cmdline={:?}",
        wanted.join(" "),
        String::from_utf8_lossy(&cmdline).replace('\0', " ")
    )
}
