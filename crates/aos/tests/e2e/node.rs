//! Issue 4 as a user sees it: `aos up` with its node agent (root) runs the seed's Deployment as
//! hardened containers, restarts what dies, isolates what misbehaves, and leaves nothing behind
//! when it stops or restarts.
//!
//! The crate-level versions of these checks (with a fake API) are in `aos-node`'s e2e test;
//! these are the whole-system versions and stay lean. Every test needs root; the seed's test
//! also needs the static agent-registry binary (`AOS_TEST_AGENT_REGISTRY_BIN`, which
//! scripts/test.sh builds), the battery needs Debian's busybox-static. Each says why it skips.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aos_client::{Client, DeleteParams, Patch};
use serde_json::{Value, json};

use super::support::{
    AGENT_REGISTRY_IMAGE, Aos, BUSYBOX_IMAGE, agent_registry_bin_or_skip,
    build_agent_registry_image, build_busybox_image, busybox_or_skip, condition, eventually,
    host_veth_name, http_get, is_ready, link_exists, list_pods, mounts_under, pod_cgroups,
    pod_processes, proc_status, root_or_skip, rt, str_at, wait_pods_ready,
};

const SEED_NS: &str = "agent-os";
const SEED_SELECTOR: &str = "app=agent-registry";

/// The project's copy of a seed manifest.
fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/seed")
        .join(name)
}

/// Create the Secret the seed's Deployment reads, as `aos up --demo` does.
async fn create_seed_secret(client: &Client) {
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "agent-registry-secrets", "namespace": SEED_NS},
        "type": "Opaque",
        "stringData": {
            "database-url": "sqlite:///tmp/agent-registry.db",
            "redis-url": "redis://localhost:6379/0",
        },
    });
    client
        .create(rt("v1", "Secret"), Some(SEED_NS), &secret)
        .await
        .expect("create the seed's secret");
}

/// Run one pod of `image` until its container has started (agent-registry's `healthcheck`
/// finds no server and exits), then delete it.
async fn warm_image(client: &Client, image: &str) {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "warm-image", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsUser": 1001, "runAsGroup": 1001, "runAsNonRoot": true},
            "containers": [{
                "name": "warm",
                "image": image,
                "imagePullPolicy": "Never",
                "args": ["healthcheck"],
            }],
        }
    });
    client
        .create(rt("v1", "Pod"), Some("default"), &pod)
        .await
        .expect("create the warm-up pod");
    eventually(
        "the warm-up container ran",
        Duration::from_secs(60),
        || async {
            let p = client
                .get(rt("v1", "Pod"), Some("default"), "warm-image")
                .await
                .ok()?;
            let state = p.pointer("/status/containerStatuses/0/state")?;
            (state.get("running").is_some() || state.get("terminated").is_some()).then_some(())
        },
    )
    .await;
    client
        .delete(
            rt("v1", "Pod"),
            Some("default"),
            "warm-image",
            &DeleteParams::default(),
        )
        .await
        .expect("delete the warm-up pod");
}

/// The single process of the pod's only container (agent-registry does not fork).
async fn container_pid(pod_uid: &str) -> i32 {
    eventually(
        "the container's process",
        Duration::from_secs(10),
        || async {
            match pod_processes(pod_uid).as_slice() {
                [pid] => Some(*pid),
                _ => None,
            }
        },
    )
    .await
}

/// The cgroup file `file` of `controller` for the process `pid` (v1: the controller's
/// hierarchy; v2: the unified one).
fn cgroup_file(pid: i32, controller: &str, file: &str) -> PathBuf {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read cgroup");
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        if controllers.split(',').any(|c| c == controller) {
            return Path::new("/sys/fs/cgroup")
                .join(controllers)
                .join(path.trim_start_matches('/'))
                .join(file);
        }
        if controllers.is_empty() && !Path::new("/sys/fs/cgroup/memory").exists() {
            return Path::new("/sys/fs/cgroup")
                .join(path.trim_start_matches('/'))
                .join(file);
        }
    }
    panic!("no {controller} cgroup for pid {pid}:\n{cgroups}");
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// `(mount point, options)` of each mount of `pid`'s mount namespace.
fn mounts_of(pid: i32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some((f.get(4)?.to_string(), f.get(5)?.to_string()))
        })
        .collect()
}

/// What a container process of the seed's Deployment must look like from the host.
fn assert_hardened(pid: i32) {
    assert_eq!(
        proc_status(pid, "Uid"),
        "1001\t1001\t1001\t1001",
        "pid {pid}"
    );
    assert_eq!(
        proc_status(pid, "Gid"),
        "1001\t1001\t1001\t1001",
        "pid {pid}"
    );
    assert_eq!(proc_status(pid, "CapEff"), "0000000000000000", "pid {pid}");
    assert_eq!(proc_status(pid, "CapPrm"), "0000000000000000", "pid {pid}");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1", "pid {pid}");
    assert_eq!(proc_status(pid, "Seccomp"), "2", "pid {pid}");
    let mounts = mounts_of(pid);
    let opts = |point: &str| -> Vec<String> {
        mounts
            .iter()
            .rev() // the last mount on a point is the visible one
            .find(|(p, _)| p == point)
            .map(|(_, o)| o.split(',').map(str::to_owned).collect())
            .unwrap_or_else(|| panic!("pid {pid}: nothing mounted on {point}: {mounts:?}"))
    };
    assert!(opts("/").iter().any(|o| o == "ro"), "root not read-only");
    for writable in ["/tmp", "/app/.cache"] {
        assert!(
            opts(writable).iter().any(|o| o == "rw"),
            "{writable} not writable"
        );
    }
    // Limits: 1 GiB of memory, 500m of CPU (50 ms per 100 ms period).
    let memory = if Path::new("/sys/fs/cgroup/memory").exists() {
        read_trimmed(&cgroup_file(pid, "memory", "memory.limit_in_bytes"))
    } else {
        read_trimmed(&cgroup_file(pid, "memory", "memory.max"))
    };
    assert_eq!(memory, "1073741824", "memory limit of pid {pid}");
    if Path::new("/sys/fs/cgroup/cpu").exists() {
        assert_eq!(
            read_trimmed(&cgroup_file(pid, "cpu", "cpu.cfs_quota_us")),
            "50000"
        );
        assert_eq!(
            read_trimmed(&cgroup_file(pid, "cpu", "cpu.cfs_period_us")),
            "100000"
        );
    } else {
        assert_eq!(
            read_trimmed(&cgroup_file(pid, "cpu", "cpu.max")),
            "50000 100000"
        );
    }
}

/// Nothing of the pod `uid` is left on the host: processes, cgroups, mounts, veth.
fn assert_pod_gone(aos: &Aos, uid: &str) {
    assert_eq!(pod_processes(uid), Vec::<i32>::new(), "processes of {uid}");
    assert_eq!(pod_cgroups(uid), Vec::<PathBuf>::new(), "cgroups of {uid}");
    let pods = aos.data_dir.join("pods");
    let left: Vec<String> = mounts_under(&pods)
        .into_iter()
        .filter(|m| m.contains(uid))
        .collect();
    assert!(left.is_empty(), "mounts of {uid} left: {left:?}");
    let veth = host_veth_name(uid);
    assert!(!link_exists(&veth), "veth {veth} of {uid} left");
}

fn uids(pods: &[Value]) -> Vec<String> {
    pods.iter()
        .map(|p| str_at(p, "/metadata/uid").to_string())
        .collect()
}

/// The seed's Deployment, applied unchanged: 3 hardened Ready pods within 10 s; `kill -9`
/// restarts a container; restarting `aos up` leaves exactly 3 containers and leaks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_deployment_runs_hardened_restarts_and_survives_aos_restart() {
    if !root_or_skip() {
        return;
    }
    let Some(bin) = agent_registry_bin_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    build_agent_registry_image(&data_dir, &bin);
    let mut aos = Aos::start_node(&data_dir, &["--node-label", "agent.os=linux"]).await;
    let client = aos.client();

    // "Image present" as a node that pulled it has it: unpacked. aos unpacks an image's layers
    // at its first container start, so one short-lived pod of the image goes first.
    let warm = Instant::now();
    warm_image(&client, AGENT_REGISTRY_IMAGE).await;
    eprintln!(
        "first container of the image (layers unpacked) after {:?}",
        warm.elapsed()
    );

    // The namespace, the Secret (as `aos up --demo` creates it), the Deployment unchanged.
    aos.aos(&["apply", "-f", seed("namespace.yaml").to_str().unwrap()])
        .ok();
    create_seed_secret(&client).await;
    let applied = Instant::now();
    aos.aos(&["apply", "-f", seed("deployment.yaml").to_str().unwrap()])
        .ok();
    let pods = wait_pods_ready(&client, SEED_NS, SEED_SELECTOR, 3, Duration::from_secs(30)).await;
    let took = applied.elapsed();
    eprintln!(
        "seed deployment: 3 pods Ready {took:?} after apply (readiness initialDelaySeconds 5); \
         the agent's log of it:"
    );
    for line in aos.log().lines().filter(|l| {
        l.contains("agent-registry")
            && ["pod scheduled", "container started", "probe", "not started"]
                .iter()
                .any(|k| l.contains(k))
    }) {
        eprintln!("  {line}");
    }
    assert!(
        took <= Duration::from_secs(10),
        "3 Ready pods took {took:?} (more than 10 s); aos log:\n{}",
        aos.log()
    );

    // Hardening, limits and /health of every replica, read from the host.
    for pod in &pods {
        let uid = str_at(pod, "/metadata/uid");
        let pid = container_pid(uid).await;
        assert_hardened(pid);
        // The name the leak checks look for is the one the agent uses.
        let veth = host_veth_name(uid);
        assert!(
            link_exists(&veth),
            "veth {veth} of running pod {uid} not found"
        );
        let ip = str_at(pod, "/status/podIP");
        let addr = format!("{ip}:3000").parse().expect("pod IP");
        let health = http_get(addr, ip, "/health").await.expect("GET /health");
        assert_eq!(health.status, 200, "GET http://{ip}:3000/health");
    }

    // kill -9 of a container process: restarted, restartCount 1, Ready again.
    let victim = &pods[0];
    let (name, uid) = (
        str_at(victim, "/metadata/name").to_string(),
        str_at(victim, "/metadata/uid").to_string(),
    );
    let pid = container_pid(&uid).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let pod = eventually(
        "restartCount 1 and Ready",
        Duration::from_secs(20),
        || async {
            let p = client
                .get(rt("v1", "Pod"), Some(SEED_NS), &name)
                .await
                .ok()?;
            (p.pointer("/status/containerStatuses/0/restartCount") == Some(&json!(1))
                && is_ready(&p))
            .then_some(p)
        },
    )
    .await;
    let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{last}");
    assert_ne!(container_pid(&uid).await, pid);

    // Restart aos up with 3 pods running. `aos up` stops its pods on SIGTERM: afterwards
    // nothing of them is left; after the restart exactly 3 containers run again.
    let before = uids(&pods);
    let status = aos.terminate(Duration::from_secs(60));
    assert!(status.success(), "aos up exited with {status}");
    assert_eq!(aos.shim_pids(), Vec::<i32>::new(), "shims left after stop");
    for uid in &before {
        assert_pod_gone(&aos, uid);
    }
    assert_eq!(mounts_under(&data_dir), Vec::<String>::new());
    // The same data dir, the same pod range (it comes from this test's pid).
    let mut aos = Aos::start_node(&data_dir, &["--node-label", "agent.os=linux"]).await;
    let client = aos.client();
    let pods = wait_pods_ready(&client, SEED_NS, SEED_SELECTOR, 3, Duration::from_secs(20)).await;
    assert_eq!(uids(&pods), before, "the same pods run again");
    // The pods' status may still say Ready from before the stop: wait for the containers.
    let running = || {
        let shims = aos.shim_pids();
        let containers: Vec<i32> = before.iter().flat_map(|u| pod_processes(u)).collect();
        (shims, containers)
    };
    eventually(
        "3 shims and 3 containers",
        Duration::from_secs(20),
        || async {
            let (shims, containers) = running();
            (shims.len() >= 3 && containers.len() >= 3).then_some(())
        },
    )
    .await;
    wait_pods_ready(&client, SEED_NS, SEED_SELECTOR, 3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (shims, containers) = running();
    assert_eq!(shims.len(), 3, "shims after restart: {shims:?}");
    assert_eq!(containers.len(), 3, "container processes: {containers:?}");

    // A deleted pod leaves nothing behind; its replacement starts.
    let gone = &pods[1];
    let gone_uid = str_at(gone, "/metadata/uid").to_string();
    client
        .delete(
            rt("v1", "Pod"),
            Some(SEED_NS),
            str_at(gone, "/metadata/name"),
            &DeleteParams::default(),
        )
        .await
        .expect("delete a pod");
    let pods = wait_pods_ready(&client, SEED_NS, SEED_SELECTOR, 3, Duration::from_secs(40)).await;
    assert!(!uids(&pods).contains(&gone_uid));
    assert_pod_gone(&aos, &gone_uid);
    assert_eq!(aos.shim_pids().len(), 3);

    let last_uids = uids(&pods);
    let status = aos.terminate(Duration::from_secs(60));
    assert!(status.success(), "aos up exited with {status}");
    assert_eq!(aos.shim_pids(), Vec::<i32>::new(), "shims left after stop");
    for uid in &last_uids {
        assert_pod_gone(&aos, uid);
    }
    assert_eq!(mounts_under(&data_dir), Vec::<String>::new());
}

/// A pod of the busybox image running `script` once (restartPolicy Never), hardened as the
/// seed's pods are, as uid `uid`, with a writable emptyDir `/tmp` and `limits`.
fn busybox_pod(name: &str, uid: i64, script: &str, limits: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"test": "battery"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": uid, "runAsGroup": uid, "runAsNonRoot": uid != 0},
            "containers": [{
                "name": "main",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", script],
                "resources": {"limits": limits},
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }
    })
}

/// The text a container wrote (its CRI-format log on the node), stdout and stderr together.
fn container_output(aos: &Aos, pod: &Value, container: &str) -> String {
    let path = aos.pod_dir(pod).join(container).join("0.log");
    let raw =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    raw.lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `name=VALUE` from a battery's output.
fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{name}= missing in:\n{out}"))
}

/// Wait until the pod's only container has terminated; returns the pod.
async fn wait_terminated(client: &Client, name: &str, timeout: Duration) -> Value {
    eventually(&format!("{name} terminated"), timeout, || async {
        let p = client
            .get(rt("v1", "Pod"), Some("default"), name)
            .await
            .ok()?;
        p.pointer("/status/containerStatuses/0/state/terminated")
            .is_some()
            .then_some(p)
    })
    .await
}

const PIDS_LIMIT: i64 = 128;

/// An isolation battery as pods: every escape attempt fails, a fork bomb is stopped by the
/// pod's pids limit, a memory hog is OOMKilled, and the node stays Ready. Then a failing
/// readiness probe takes a pod out of its Deployment's available replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_battery_fork_bomb_oom_and_readiness() {
    if !root_or_skip() || !busybox_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    build_busybox_image(&data_dir);
    let aos = Aos::start_node(&data_dir, &["--pod-pids-limit", &PIDS_LIMIT.to_string()]).await;
    let client = aos.client();
    let host_pid = aos.pid();

    // Root in the container, with every capability dropped, no_new_privs and RuntimeDefault
    // seccomp: each attempt must fail. Each line reports `name=<exit code>`.
    let battery = format!(
        r#"
        try() {{ name=$1; shift; "$@" >/dev/null 2>&1; echo "$name=$?"; }}
        try write_root touch /pwned
        try write_bin sh -c 'echo x > /bin/pwned'
        try mount mount -t tmpfs none /mnt
        try remount_root mount -o remount,rw /
        try unshare_net unshare -n true
        try unshare_mount unshare -m true
        try unshare_user unshare -U -r true
        try ptrace_agent sh -c 'exec 3</proc/{host_pid}/mem'
        try signal_agent kill -0 {host_pid}
        try kernel_module insmod /bin/busybox
        try raw_socket ping -c 1 -W 1 127.0.0.1
        try change_uid setpriv --reuid=4242 --regid=4242 --clear-groups true
        try chroot chroot / true
        try set_hostname hostname evil
        try mknod mknod /tmp/sda b 8 0
        echo procs=$(ls -d /proc/[0-9]* | wc -l)
        echo pid1=$(cat /proc/1/comm)
        echo agent_visible=$(test -e /proc/{host_pid} && echo yes || echo no)
        "#
    );
    let nonroot = "su -c true root </dev/null >/dev/null 2>&1; echo su=$?; \
        setpriv --reuid=0 true >/dev/null 2>&1; echo setuid0=$?; echo uid=$(id -u)";
    let bomb = "i=0; while [ $i -lt 1000 ]; do sleep 60 & i=$((i+1)); done; echo survived=$i";
    let pods = [
        busybox_pod("battery", 0, &battery, json!({"memory": "64Mi"})),
        busybox_pod("nonroot", 1001, nonroot, json!({"memory": "64Mi"})),
        busybox_pod("fork-bomb", 1001, bomb, json!({"memory": "256Mi"})),
        {
            let mut p = busybox_pod("memory-hog", 1001, "", json!({"memory": "32Mi"}));
            p["spec"]["containers"][0]["command"] = json!(["/bin/tail", "/dev/zero"]);
            p
        },
    ];
    for pod in &pods {
        client
            .create(rt("v1", "Pod"), Some("default"), pod)
            .await
            .expect("create pod");
    }

    let battery = wait_terminated(&client, "battery", Duration::from_secs(30)).await;
    let out = container_output(&aos, &battery, "main");
    eprintln!("battery output:\n{out}");
    for name in [
        "write_root",
        "write_bin",
        "mount",
        "remount_root",
        "unshare_net",
        "unshare_mount",
        "unshare_user",
        "ptrace_agent",
        "signal_agent",
        "kernel_module",
        "raw_socket",
        "change_uid",
        "chroot",
        "set_hostname",
        "mknod",
    ] {
        assert_ne!(
            field(&out, name),
            "0",
            "{name} succeeded in the pod:\n{out}"
        );
    }
    let procs: u32 = field(&out, "procs").parse().expect("procs count");
    assert!(procs <= 4, "the pod sees {procs} processes:\n{out}");
    assert_eq!(field(&out, "pid1"), "sh", "{out}");
    assert_eq!(field(&out, "agent_visible"), "no", "{out}");
    let code = &battery["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"];
    assert_eq!(*code, 0, "{:#}", battery["status"]);

    let nonroot = wait_terminated(&client, "nonroot", Duration::from_secs(30)).await;
    let out = container_output(&aos, &nonroot, "main");
    assert_ne!(field(&out, "su"), "0", "{out}");
    assert_ne!(field(&out, "setuid0"), "0", "{out}");
    assert_eq!(field(&out, "uid"), "1001", "{out}");

    // The fork bomb runs into the pids limit: busybox sh gives up at the first failed fork.
    let bomb = wait_terminated(&client, "fork-bomb", Duration::from_secs(60)).await;
    let out = container_output(&aos, &bomb, "main");
    assert!(out.contains("can't fork"), "{out}");
    assert!(!out.contains("survived="), "{out}");
    let term = &bomb["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_ne!(term["exitCode"], 0, "{term}");

    // The memory hog is OOMKilled.
    let hog = wait_terminated(&client, "memory-hog", Duration::from_secs(60)).await;
    let term = &hog["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["exitCode"], 137, "{term}");
    assert_eq!(term["reason"], "OOMKilled", "{term}");

    // The node stays healthy.
    let nodes = client
        .list(rt("v1", "Node"), None, &Default::default())
        .await
        .expect("list nodes")
        .items;
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        condition(&nodes[0], "Ready"),
        Some("True"),
        "{:#}",
        nodes[0]["status"]
    );
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
    for name in ["battery", "nonroot", "fork-bomb", "memory-hog"] {
        client
            .delete(
                rt("v1", "Pod"),
                Some("default"),
                name,
                &DeleteParams::default(),
            )
            .await
            .expect("delete pod");
    }

    // A failing readiness probe: the pod is not Ready (and not restarted), and its
    // Deployment's availableReplicas drops.
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "web",
                        "image": BUSYBOX_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["/bin/sh", "-c",
                            "mkdir -p /tmp/www && echo ok > /tmp/www/ready && exec httpd -f -p 8080 -h /tmp/www"],
                        "ports": [{"containerPort": 8080, "name": "http"}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"},
                                           "periodSeconds": 1, "failureThreshold": 1},
                        "securityContext": {"allowPrivilegeEscalation": false,
                                            "readOnlyRootFilesystem": true,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                }
            }
        }
    });
    client
        .create(rt("apps/v1", "Deployment"), Some("default"), &deployment)
        .await
        .expect("create deployment");
    let available = |n: i64| {
        let client = client.clone();
        async move {
            let d = client
                .get(rt("apps/v1", "Deployment"), Some("default"), "web")
                .await
                .ok()?;
            (d.pointer("/status/availableReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                == n)
                .then_some(d)
        }
    };
    eventually("2 available replicas", Duration::from_secs(20), || {
        available(2)
    })
    .await;
    let pods = wait_pods_ready(&client, "default", "app=web", 2, Duration::from_secs(10)).await;
    let sick = &pods[0];
    let ready_file = aos.pod_dir(sick).join("volumes/empty-dir/tmp/www/ready");
    std::fs::remove_file(&ready_file)
        .unwrap_or_else(|e| panic!("remove {}: {e}", ready_file.display()));
    eventually("1 available replica", Duration::from_secs(20), || {
        available(1)
    })
    .await;
    let p = client
        .get(
            rt("v1", "Pod"),
            Some("default"),
            str_at(sick, "/metadata/name"),
        )
        .await
        .expect("get pod");
    assert!(!is_ready(&p), "{:#}", p["status"]);
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    std::fs::write(&ready_file, "ok").expect("restore the ready file");
    eventually(
        "2 available replicas again",
        Duration::from_secs(20),
        || available(2),
    )
    .await;
    let _ = client
        .patch(
            rt("apps/v1", "Deployment"),
            Some("default"),
            "web",
            Patch::Merge(json!({"spec": {"replicas": 0}})),
            None,
        )
        .await;
    eventually("web scaled to 0", Duration::from_secs(20), || async {
        list_pods(&client, "default", "app=web")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}
