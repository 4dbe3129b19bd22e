//! End to end, as root: real pods from a busybox image built into an `aos-image` store, run by
//! the node agent through the real shim (`aos-node-shim`), with the in-memory cluster as the
//! API. Checks hardening (uid 1001, CapEff 0, NoNewPrivs 1, Seccomp 2, read-only root,
//! writable emptyDir /tmp), restart after `kill -9`, liveness restarts, readiness, adoption by
//! a restarted agent, graceful deletion, and that nothing leaks afterwards.
//!
//! Needs root (namespaces, mounts, cgroups, veths) and Debian's `busybox-static`; each test
//! says why when it skips.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aos_controller::cluster::Cluster;
use aos_controller::cluster::fake::FakeCluster;
use aos_node::kinds::PODS;
use serde_json::{Value, json};

mod support;
use support::{
    HostCleanup, build_image, mounts_under, node_config, process_state, ready_to_run, shims_of,
    start_agent, status_field,
};

/// A pod serving `/tmp/www` with busybox httpd on 8080, hardened as the seed's Deployment.
fn pod(name: &str, liveness_threshold: u32) -> Value {
    let script = "grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
        touch /evil 2>/dev/null || echo root=readonly; \
        mkdir -p /tmp/www && echo ok > /tmp/www/health && echo ok > /tmp/www/ready && echo tmp=writable; \
        exec httpd -f -p 8080 -h /tmp/www";
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": "e2e-node",
            "terminationGracePeriodSeconds": 2,
            "securityContext": {"runAsUser": 1001, "runAsGroup": 1001, "fsGroup": 1001, "runAsNonRoot": true},
            "containers": [{
                "name": "web",
                "image": "busybox:e2e",
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", script],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 1, "failureThreshold": liveness_threshold},
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_hardened_restart_and_leave_nothing_behind() {
    if !ready_to_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    build_image(&data_dir);
    let config = node_config(&data_dir, 3);
    let _cleanup = HostCleanup::new(&config);
    let cluster = FakeCluster::new();
    let node = start_agent(&config, &cluster);

    cluster
        .create(&PODS, Some("default"), &pod("web-a", 30))
        .await
        .unwrap();
    cluster
        .create(&PODS, Some("default"), &pod("web-b", 2))
        .await
        .unwrap();
    let started = Instant::now();
    let a = node.wait_ready("web-a", true, 0).await;
    let b = node.wait_ready("web-b", true, 0).await;
    eprintln!("two pods Ready in {:?}", started.elapsed());
    let uid_a = a["metadata"]["uid"].as_str().unwrap().to_owned();
    let uid_b = b["metadata"]["uid"].as_str().unwrap().to_owned();
    let ip_a = a["status"]["podIP"].as_str().unwrap().to_owned();
    assert!(ip_a.starts_with("10.203."), "{ip_a}");
    assert_ne!(a["status"]["podIP"], b["status"]["podIP"]);
    let cs = &a["status"]["containerStatuses"][0];
    assert!(
        cs["imageID"].as_str().unwrap().starts_with("sha256:"),
        "{cs}"
    );
    assert!(cs["containerID"].as_str().unwrap().starts_with("aos://"));

    // Hardening, read from the container's own log (CRI format).
    let dir_a = node.pod_dir(&a);
    let log = std::fs::read_to_string(dir_a.join("web/0.log")).unwrap();
    assert!(
        log.lines()
            .all(|l| l.contains(" stdout F ") || l.contains(" stderr F ")),
        "{log}"
    );
    assert_eq!(status_field(&log, "Uid"), "1001\t1001\t1001\t1001");
    assert_eq!(status_field(&log, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&log, "NoNewPrivs"), "1");
    assert_eq!(status_field(&log, "Seccomp"), "2");
    assert!(log.contains("root=readonly"), "{log}");
    assert!(log.contains("tmp=writable"), "{log}");
    let logs: Vec<String> = futures::StreamExt::collect::<Vec<_>>(
        aos_node::read_logs(&dir_a, "web", &aos_node::LogOptions::default()).unwrap(),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    assert!(logs.concat().contains("NoNewPrivs:\t1\n"));
    // The memory limit is on the container's cgroup.
    let pid_a = node.running_pid(&uid_a).await;
    let cg = std::fs::read_to_string(format!("/proc/{pid_a}/cgroup")).unwrap();
    assert!(
        cg.contains(&format!("{}/pod-{uid_a}/", config.cgroup_root)),
        "{cg}"
    );

    // kill -9 of the container process: restarted, restartCount 1, Ready again.
    assert!(
        Command::new("kill")
            .args(["-9", &pid_a.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let a = node.wait_ready("web-a", true, 1).await;
    let last = &a["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{last}");
    assert_eq!(last["signal"], 9);

    // A failing readiness probe: Ready false, no restart.
    let www_a = dir_a.join("volumes/empty-dir/tmp/www");
    std::fs::remove_file(www_a.join("ready")).unwrap();
    node.wait_ready("web-a", false, 1).await;
    std::fs::write(www_a.join("ready"), "ok").unwrap();
    node.wait_ready("web-a", true, 1).await;

    // A failing liveness probe: restarted (the script writes the file again).
    let dir_b = node.pod_dir(&b);
    std::fs::remove_file(dir_b.join("volumes/empty-dir/tmp/www/health")).unwrap();
    let b = node.wait_ready("web-b", true, 1).await;
    let msg = b["status"]["containerStatuses"][0]["lastState"]["terminated"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.contains("failed liveness probe"), "{:#}", b["status"]);

    // Restart the agent: the running containers are adopted, not started again.
    let pid_a = node.running_pid(&uid_a).await;
    let pid_b = node.running_pid(&uid_b).await;
    node.stop().await;
    assert!(
        Path::new(&format!("/proc/{pid_a}")).exists(),
        "pods outlive the agent"
    );
    let mut config2 = config.clone();
    config2.stop_pods_on_shutdown = true;
    let node = start_agent(&config2, &cluster);
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.wait_ready("web-a", true, 1).await;
    assert_eq!(node.running_pid(&uid_a).await, pid_a);
    assert_eq!(node.running_pid(&uid_b).await, pid_b);
    let all = node.runtime.containers(&uid_a).await.unwrap();
    assert_eq!(all.iter().filter(|c| c.running()).count(), 1, "{all:?}");

    // Graceful deletion of web-a: terminated, cleaned up, deleted from the API with grace 0.
    cluster.modify(&PODS, Some("default"), "web-a", |p| {
        p["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(2);
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while node.pod("web-a").is_some() {
        assert!(Instant::now() < deadline, "web-a was not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!dir_a.exists(), "pod directory removed");
    assert!(
        !Path::new(&format!("/proc/{pid_a}")).exists(),
        "container process {pid_a} not gone: {}",
        process_state(pid_a)
    );

    // Shutdown with stop_pods_on_shutdown: web-b goes too, and nothing is left.
    node.stop().await;
    assert!(
        !Path::new(&format!("/proc/{pid_b}")).exists(),
        "container process {pid_b} not gone: {}",
        process_state(pid_b)
    );
    assert!(!dir_b.exists(), "pod directory removed");
    assert!(
        mounts_under(&data_dir).is_empty(),
        "{:?}",
        mounts_under(&data_dir)
    );
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    for uid in [&uid_a, &uid_b] {
        let veth = aos_sandbox::network::host_veth_name(&config.bridge, uid);
        assert!(!links.contains(&veth), "veth {veth} left behind");
    }
    let ipam = std::fs::read_to_string(config.ipam_file()).unwrap_or_default();
    assert!(!ipam.contains(&uid_a) && !ipam.contains(&uid_b), "{ipam}");
    for ctl in ["memory", "pids", "cpu"] {
        let root = Path::new("/sys/fs/cgroup")
            .join(ctl)
            .join(config.cgroup_root.trim_start_matches('/'));
        let left: Vec<_> = std::fs::read_dir(&root)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "cgroups left: {left:?}");
        let _ = std::fs::remove_dir(&root);
    }
    // The shims of this test are the processes with its data directory on their command line.
    let shims = shims_of(&data_dir);
    assert!(shims.is_empty(), "shims left: {shims}");
    let _ = Command::new("ip")
        .args(["link", "del", "dev", &config.bridge])
        .status();
}
