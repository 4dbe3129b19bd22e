//! End-to-end: real containers from a busybox root file system, started by the single-threaded
//! `aos-sandbox-run` binary (container start forks, which a multi-threaded test harness must not
//! do itself).
//!
//! Needs root, cgroups and Debian's `busybox-static` (installed with apt-get when missing);
//! each test prints why it skips otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aos_sandbox::cgroup::{self, CgroupVersion, PodCgroup};
use aos_sandbox::host::LinuxHost;
use aos_sandbox::network::{Network, NetworkConfig};
use aos_sandbox::seccomp::Profile;
use aos_sandbox::spec::{
    CgroupSpec, MountKind, MountSpec, NamespacePaths, ProcessSpec, RootfsSpec, SandboxSpec,
};
use aos_sandbox::{ExitStatus, caps};

const BUSYBOX: &str = "/bin/busybox";

fn busybox() -> Option<&'static str> {
    if !Path::new(BUSYBOX).exists() {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "busybox-static"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output();
    }
    Path::new(BUSYBOX).exists().then_some(BUSYBOX)
}

/// Skip (with the reason) unless root with busybox available.
macro_rules! require_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to create namespaces, mounts and cgroups");
            return;
        }
        if busybox().is_none() {
            eprintln!("skipped: /bin/busybox missing and `apt-get install busybox-static` failed");
            return;
        }
    };
}

static SEQ: AtomicU32 = AtomicU32::new(0);

struct Fixture {
    dir: tempfile::TempDir,
    id: String,
    pod_cgroup: PodCgroup,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "root", "mnt"] {
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
            "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1001:app:/tmp:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1001:\n").unwrap();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("t{}-{n}-{name}", std::process::id());
        let pod_cgroup =
            PodCgroup::new(&format!("/aos-test/{id}"), cgroup::detect_version()).unwrap();
        Self {
            dir,
            id,
            pod_cgroup,
        }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// A hardened spec: uid 1001, drop ALL, no_new_privs, RuntimeDefault, read-only root,
    /// tmpfs /tmp.
    fn spec(&self, script: &str) -> SandboxSpec {
        SandboxSpec {
            id: self.id.clone(),
            bundle_dir: self.dir.path().join("bundle"),
            rootfs: RootfsSpec::Dir(self.rootfs()),
            readonly_root: true,
            mounts: vec![MountSpec {
                destination: "/tmp".into(),
                kind: MountKind::Tmpfs {
                    size_bytes: Some(16 << 20),
                },
                readonly: false,
            }],
            process: ProcessSpec {
                args: vec!["/bin/sh".into(), "-c".into(), script.into()],
                env: vec![],
                cwd: "/".into(),
                uid: 1001,
                gid: 1001,
                supplemental_groups: vec![],
                no_new_privs: true,
                capabilities: vec![],
                seccomp: Profile::RuntimeDefault,
            },
            hostname: None,
            namespaces: NamespacePaths::default(),
            cgroup: CgroupSpec {
                parent: self.pod_cgroup.path.clone(),
                ..Default::default()
            },
            stdout: Some(self.dir.path().join("stdout")),
            stderr: Some(self.dir.path().join("stderr")),
            privileged: false,
        }
    }

    fn spawn(&self, spec: &SandboxSpec) -> std::process::Child {
        self.pod_cgroup
            .create(&LinuxHost, cgroup::DEFAULT_POD_PIDS_LIMIT)
            .unwrap();
        let path = self.dir.path().join("spec.json");
        std::fs::write(&path, serde_json::to_vec(spec).unwrap()).unwrap();
        Command::new(env!("CARGO_BIN_EXE_aos-sandbox-run"))
            .arg(&path)
            .arg(self.dir.path().join("state"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn finish(&self, child: std::process::Child) -> (ExitStatus, String) {
        let out = child.wait_with_output().unwrap();
        let stdout = std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default();
        let stderr = std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default();
        assert!(
            out.status.success(),
            "runner failed: {}\ncontainer stdout: {stdout}\ncontainer stderr: {stderr}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status: ExitStatus = serde_json::from_slice(&out.stdout).unwrap();
        (status, format!("{stdout}{stderr}"))
    }

    fn run(&self, spec: &SandboxSpec) -> (ExitStatus, String) {
        let child = self.spawn(spec);
        self.finish(child)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Err(e) = self.pod_cgroup.remove(&LinuxHost) {
            eprintln!("leaving pod cgroup {}: {e}", self.pod_cgroup.path);
        }
    }
}

fn status_field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim_start_matches(':').trim())
        })
        .unwrap_or_else(|| panic!("{key} missing in {out}"))
}

#[test]
fn hardened_process_has_no_privileges() {
    require_root!();
    let f = Fixture::new("hardened");
    let spec = f.spec(
        "grep -E '^(Uid|Gid|CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
         touch /tmp/ok && echo tmp=writable; touch /evil 2>/dev/null || echo root=readonly",
    );
    let (status, out) = f.run(&spec);
    assert_eq!(status.code, 0, "{out}");
    assert_eq!(status_field(&out, "Uid"), "1001\t1001\t1001\t1001");
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&out, "CapPrm"), "0000000000000000");
    assert_eq!(status_field(&out, "CapBnd"), "0000000000000000");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
    assert_eq!(status_field(&out, "Seccomp"), "2");
    assert!(out.contains("tmp=writable"), "{out}");
    assert!(out.contains("root=readonly"), "{out}");
}

#[test]
fn seccomp_without_no_new_privs_keeps_escalation_allowed() {
    require_root!();
    let f = Fixture::new("escalation");
    let mut spec =
        f.spec("grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status");
    spec.process.no_new_privs = false;
    let (status, out) = f.run(&spec);
    assert_eq!(status.code, 0, "{out}");
    // The filter is installed with a temporary CAP_SYS_ADMIN that is gone before execve.
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");
    assert_eq!(status_field(&out, "Seccomp"), "2");
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&out, "CapPrm"), "0000000000000000");
    assert_eq!(status_field(&out, "CapBnd"), "0000000000000000");
}

#[test]
fn isolation_battery_all_fail() {
    require_root!();
    let f = Fixture::new("battery");
    // Root inside the container, but with every capability dropped and RuntimeDefault seccomp:
    // each attempt must fail. Each line reports `name=<exit code>`.
    let script = r#"
        try() { name=$1; shift; "$@" >/dev/null 2>&1; echo "$name=$?"; }
        try write_root touch /pwned
        try mount mount -t tmpfs none /mnt
        try unshare unshare -n true
        try unshare_mount unshare -m true
        try raw_socket ping -c 1 -W 1 127.0.0.1
        try change_uid setpriv --reuid=4242 --regid=4242 --clear-groups true
        try kernel_module insmod /bin/busybox
        try set_hostname hostname evil
        try mknod mknod /tmp/sda b 8 0
        echo procs=$(ls -d /proc/[0-9]* | wc -l)
        echo pid1=$(cat /proc/1/comm)
    "#;
    let mut spec = f.spec(script);
    spec.process.uid = 0;
    spec.process.gid = 0;
    let (status, out) = f.run(&spec);
    assert_eq!(status.code, 0, "{out}");
    for name in [
        "write_root",
        "mount",
        "unshare",
        "unshare_mount",
        "raw_socket",
        "change_uid",
        "kernel_module",
        "set_hostname",
        "mknod",
    ] {
        let rc = status_field(&out, &format!("{name}="));
        assert_ne!(rc, "0", "{name} succeeded inside the container:\n{out}");
    }
    // Host processes are invisible: only the shell and its pipeline live in the pid namespace.
    let procs: u32 = status_field(&out, "procs=").parse().unwrap();
    assert!(procs <= 4, "container sees {procs} processes:\n{out}");
    assert_eq!(status_field(&out, "pid1="), "sh");
}

#[test]
fn non_root_cannot_become_root() {
    require_root!();
    let f = Fixture::new("su");
    let (status, out) = f.run(&f.spec(
        "su -c true root </dev/null >/dev/null 2>&1; echo su=$?; \
         setpriv --reuid=0 true >/dev/null 2>&1; echo setpriv=$?; id -u",
    ));
    assert_eq!(status.code, 0, "{out}");
    assert_ne!(status_field(&out, "su="), "0", "{out}");
    assert_ne!(status_field(&out, "setpriv="), "0", "{out}");
    assert!(out.trim_end().ends_with("1001"), "{out}");
}

#[test]
fn fork_bomb_is_stopped_by_the_pids_limit() {
    require_root!();
    let f = Fixture::new("forkbomb");
    // busybox sh gives up at the first failed fork; without a limit all 300 would start.
    let mut spec =
        f.spec("i=0; while [ $i -lt 300 ]; do sleep 30 & i=$((i+1)); done; echo survived=$i");
    spec.cgroup.pids_limit = Some(64);
    let started = Instant::now();
    let (status, out) = f.run(&spec);
    assert!(out.contains("can't fork"), "{out}");
    assert!(!out.contains("survived="), "{out}");
    assert_ne!(status.code, 0, "{out}");
    // The container's end killed the sleepers (pid namespace init exit): no 30s wait.
    assert!(started.elapsed() < Duration::from_secs(20));
    // The node is healthy: it can still start processes.
    assert!(Command::new("true").status().unwrap().success());
}

#[test]
fn memory_hog_is_oom_killed_with_137() {
    require_root!();
    let f = Fixture::new("oom");
    let mut spec = f.spec("");
    spec.process.args = vec!["/bin/tail".into(), "/dev/zero".into()];
    spec.cgroup.memory_limit_bytes = Some(32 << 20);
    let (status, out) = f.run(&spec);
    assert!(status.oom_killed, "{status:?} {out}");
    assert_eq!(status.code, 137);
    assert_eq!(status.signal, Some(9));
    assert_eq!(status.reason(), "OOMKilled");
}

#[test]
fn cgroup_limits_are_applied() {
    require_root!();
    let f = Fixture::new("limits");
    let mut spec = f.spec("echo ready; exec sleep 30");
    spec.cgroup.memory_limit_bytes = Some(1 << 30);
    spec.cgroup.cpu_quota_us = Some(cgroup::cpu_quota_us(500, 100_000));
    spec.cgroup.cpu_period_us = Some(100_000);
    spec.cgroup.cpu_shares = Some(cgroup::cpu_shares(250));
    let child = f.spawn(&spec);
    let rel = format!("{}/{}", f.pod_cgroup.path, f.id);
    let rel = rel.trim_start_matches('/');
    let root = Path::new(cgroup::CGROUP_ROOT);
    let (mem, quota, period, shares, procs) = match cgroup::detect_version() {
        CgroupVersion::V1 => (
            root.join("memory").join(rel).join("memory.limit_in_bytes"),
            root.join("cpu").join(rel).join("cpu.cfs_quota_us"),
            Some(root.join("cpu").join(rel).join("cpu.cfs_period_us")),
            Some(root.join("cpu").join(rel).join("cpu.shares")),
            root.join("pids").join(rel).join("cgroup.procs"),
        ),
        CgroupVersion::V2 => (
            root.join(rel).join("memory.max"),
            root.join(rel).join("cpu.max"),
            None,
            None,
            root.join(rel).join("cgroup.procs"),
        ),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    // Wait until the workload runs: during creation libcontainer's helper processes are in the
    // cgroup too. Then the cgroup holds only the container's init.
    let pids = loop {
        let ready = std::fs::read_to_string(f.dir.path().join("stdout")).unwrap_or_default();
        let pids: Vec<String> = std::fs::read_to_string(&procs)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if ready.contains("ready") && !pids.is_empty() {
            break pids;
        }
        assert!(
            Instant::now() < deadline,
            "container never became ready in {}",
            procs.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_string();
    let mem = read(&mem);
    let quota = read(&quota);
    let period = period.map(|p| read(&p));
    let shares = shares.map(|p| read(&p));
    let pids_max = read(
        &root
            .join(if cgroup::detect_version() == CgroupVersion::V1 {
                "pids"
            } else {
                ""
            })
            .join(f.pod_cgroup.path.trim_start_matches('/'))
            .join("pids.max"),
    );
    Command::new("kill").arg("-9").args(&pids).status().unwrap();
    let (status, _) = f.finish(child);
    assert_eq!(status.signal, Some(9));
    assert!(!status.oom_killed);
    assert_eq!(mem, "1073741824");
    match period {
        Some(period) => {
            assert_eq!(quota, "50000");
            assert_eq!(period, "100000");
            assert_eq!(shares.as_deref(), Some("256"));
        }
        None => assert_eq!(quota, "50000 100000"),
    }
    assert_eq!(pids_max, cgroup::DEFAULT_POD_PIDS_LIMIT.to_string());
}

#[test]
fn localhost_profile_is_enforced() {
    require_root!();
    let f = Fixture::new("localhost");
    let profile = f.dir.path().join("deny-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let mut spec = f.spec("mkdir /tmp/d; echo mkdir=$?; touch /tmp/f; echo touch=$?");
    spec.process.seccomp = Profile::Localhost(profile);
    let (status, out) = f.run(&spec);
    assert_eq!(status.code, 0, "{out}");
    assert_eq!(status_field(&out, "mkdir="), "1", "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    assert_eq!(status_field(&out, "touch="), "0", "{out}");
}

#[test]
fn pod_network_namespace_bridge_and_veth() {
    require_root!();
    let f = Fixture::new("net");
    let host = Arc::new(LinuxHost);
    let ns_root = f.dir.path().join("ns");
    let pod = format!("pod{}", std::process::id());
    let ns = aos_sandbox::netns::create_pod_netns(host.as_ref(), &ns_root, &pod, "web-0").unwrap();
    // A bridge and range of our own so as not to disturb a running node agent's `aos0`.
    let bridge = format!("aost{}", std::process::id() % 100_000);
    let cfg = NetworkConfig {
        bridge: bridge.clone(),
        cidr: format!("10.201.{}.0/24", std::process::id() % 250)
            .parse()
            .unwrap(),
        allocations_file: f.dir.path().join("ipam.json"),
    };
    let net = Network::new(cfg.clone(), host.clone()).unwrap();
    let addr = net
        .attach(&pod, &ns.path(aos_sandbox::host::NsKind::Net))
        .unwrap();
    let mut spec = f.spec(&format!(
        "hostname; ip -o -4 addr show dev eth0; ip -o link show dev lo; \
         ping -c 1 -W 2 {gw} >/dev/null 2>&1; echo gw=$?",
        gw = addr.gateway
    ));
    spec.namespaces = ns.paths();
    // ping needs a raw socket; the traffic stays on the pod's bridge.
    spec.process.capabilities = vec![caps::canonical("NET_RAW").unwrap()];
    spec.process.uid = 0;
    let result = std::panic::catch_unwind(|| f.run(&spec));
    net.detach(&pod).unwrap();
    let _ = Command::new("ip")
        .args(["link", "del", "dev", &bridge])
        .status();
    ns.remove(host.as_ref()).unwrap();
    let (status, out) = result.unwrap();
    assert_eq!(status.code, 0, "{out}");
    assert!(out.starts_with("web-0\n"), "{out}");
    assert!(
        out.contains(&format!("inet {}/{}", addr.ip, addr.prefix)),
        "{out}"
    );
    assert!(out.contains("LOOPBACK,UP"), "{out}");
    assert_eq!(status_field(&out, "gw="), "0", "{out}");
    assert!(!ns.dir.join("net").exists());
}
