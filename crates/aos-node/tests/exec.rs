//! End to end, as root: commands run inside running containers through the real shim (exec
//! probes, exec `preStop` hooks, `ContainerRuntime::exec`), and init containers.
//!
//! Needs root (namespaces, mounts, cgroups, veths) and Debian's `busybox-static`; each test
//! says why when it skips.

use std::time::{Duration, Instant};

use aos_controller::cluster::Cluster;
use aos_controller::cluster::fake::FakeCluster;
use aos_node::kinds::PODS;
use serde_json::{Value, json};

mod support;
use support::{
    HostCleanup, build_image, node_config, ready_to_run, shims_of, start_agent, status_field,
};

/// A hardened pod whose container waits for SIGTERM (the trap leaves a mark in `/tmp/term`),
/// with an exec readiness probe, an exec liveness probe and an exec preStop hook.
fn probed_pod() -> Value {
    // The liveness probe fails while /tmp/die exists; a restarted container removes it.
    let script = "rm -f /tmp/die; trap 'echo term > /tmp/term; exit 0' TERM; \
        while true; do sleep 0.1; done";
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probed", "namespace": "default"},
        "spec": {
            "nodeName": "e2e-node",
            "terminationGracePeriodSeconds": 5,
            "securityContext": {"runAsUser": 1001, "runAsGroup": 1001, "fsGroup": 1001, "runAsNonRoot": true},
            "containers": [{
                "name": "app",
                "image": "busybox:e2e",
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", script],
                "env": [{"name": "GREETING", "value": "hello from the spec"}],
                "workingDir": "/tmp",
                "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1, "failureThreshold": 1},
                "livenessProbe": {"exec": {"command": ["sh", "-c", "test ! -e /tmp/die"]}, "periodSeconds": 1, "failureThreshold": 1},
                "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo bye > /tmp/prestop; sleep 1"]}}},
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

/// A pod whose init container writes a file into an emptyDir that its app container prints.
fn init_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "initialized", "namespace": "default"},
        "spec": {
            "nodeName": "e2e-node",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": 1001, "runAsGroup": 1001, "runAsNonRoot": true},
            "initContainers": [{
                "name": "setup",
                "image": "busybox:e2e",
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", "echo written-by-init > /shared/msg"],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            }],
            "containers": [{
                "name": "app",
                "image": "busybox:e2e",
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", "cat /shared/msg; trap 'exit 0' TERM; while true; do sleep 0.1; done"],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            }],
            "volumes": [{"name": "shared", "emptyDir": {}}],
        }
    })
}

fn condition(p: &Value, t: &str) -> String {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_probes_hooks_and_init_containers() {
    if !ready_to_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    build_image(&data_dir);
    let mut config = node_config(&data_dir, 4);
    config.stop_pods_on_shutdown = true;
    let _cleanup = HostCleanup::new(&config);
    let cluster = FakeCluster::new();
    let node = start_agent(&config, &cluster);
    cluster
        .create(&PODS, Some("default"), &probed_pod())
        .await
        .unwrap();
    cluster
        .create(&PODS, Some("default"), &init_pod())
        .await
        .unwrap();

    // Init container: ran first, completed; the app container read what it wrote.
    let p = node
        .wait_for(
            "the app container running after its init container",
            |p| p["status"]["containerStatuses"][0]["state"]["running"].is_object(),
            "initialized",
        )
        .await;
    let init = &p["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["reason"], "Completed", "{init}");
    assert_eq!(init["ready"], true, "{init}");
    assert_eq!(condition(&p, "Initialized"), "True");
    let init_dir = node.pod_dir(&p);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(init_dir.join("app/0.log")).unwrap_or_default();
        if log.contains("written-by-init") {
            break;
        }
        assert!(Instant::now() < deadline, "app log: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Exec readiness probe: not Ready until /tmp/ready exists.
    let p = node
        .wait_for(
            "the container running",
            |p| p["status"]["containerStatuses"][0]["state"]["running"].is_object(),
            "probed",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(condition(&node.pod("probed").unwrap(), "Ready"), "False");
    let pod_dir = node.pod_dir(&p);
    let tmp = pod_dir.join("volumes/empty-dir/tmp");
    std::fs::write(tmp.join("ready"), "ok").unwrap();
    let started = Instant::now();
    node.wait_ready("probed", true, 0).await;
    eprintln!("Ready {:?} after /tmp/ready appeared", started.elapsed());

    // An exec runs as the container's process: uid, no capabilities, no_new_privs, seccomp,
    // the spec's environment and working directory, the container's cgroup.
    let uid = p["metadata"]["uid"].as_str().unwrap().to_owned();
    let cs = node.runtime.containers(&uid).await.unwrap();
    let app = cs
        .iter()
        .find(|c| c.running())
        .expect("a running container");
    let cmd = |s: &str| vec!["/bin/sh".to_owned(), "-c".to_owned(), s.to_owned()];
    let out = node
        .runtime
        .exec(
            &uid,
            &app.id,
            &cmd(
                "grep -E '^(Uid|Gid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
                  echo \"cwd=$(pwd)\"; echo \"greeting=$GREETING\"; cat /proc/self/cgroup; \
                  touch /evil 2>/dev/null || echo root=readonly; exit 3",
            ),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 3, "{out:?}");
    assert!(!out.timed_out);
    let o = &out.output;
    assert_eq!(status_field(o, "Uid"), "1001\t1001\t1001\t1001", "{o}");
    assert_eq!(status_field(o, "Gid"), "1001\t1001\t1001\t1001", "{o}");
    assert_eq!(status_field(o, "CapEff"), "0000000000000000", "{o}");
    assert_eq!(status_field(o, "CapBnd"), "0000000000000000", "{o}");
    assert_eq!(status_field(o, "NoNewPrivs"), "1", "{o}");
    assert_eq!(status_field(o, "Seccomp"), "2", "{o}");
    assert!(o.contains("cwd=/tmp\n"), "{o}");
    assert!(o.contains("greeting=hello from the spec\n"), "{o}");
    assert!(o.contains(&format!("pod-{uid}/{}", app.id)), "{o}");
    assert!(o.contains("root=readonly"), "{o}");

    // Output is capped; a command past its timeout is killed and says so; the shim answers
    // other requests while a command runs.
    let big = node
        .runtime
        .exec(
            &uid,
            &app.id,
            &cmd("yes 0123456789 | head -c 100000"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        big.exit_code,
        0,
        "timed out: {}, {} bytes",
        big.timed_out,
        big.output.len()
    );
    assert_eq!(big.output.len(), 10 * 1024);
    let rt = node.runtime.clone();
    let (uid2, id2) = (uid.clone(), app.id.clone());
    let slow = tokio::spawn(async move {
        let t = Instant::now();
        let r = rt
            .exec(&uid2, &id2, &cmd("sleep 30"), Duration::from_millis(700))
            .await;
        (r, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    node.runtime.containers(&uid).await.unwrap();
    // The shim answers while the exec runs: before the exec's 700 ms timeout ends it. (Not a
    // fixed latency: starting the exec may hold the shim for a moment on a loaded machine.)
    assert!(
        !slow.is_finished(),
        "list answered only after the exec ended ({:?})",
        t.elapsed()
    );
    let (r, took) = slow.await.unwrap();
    let r = r.unwrap();
    assert!(r.timed_out, "{r:?}");
    assert_eq!(r.exit_code, 137, "{r:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let state_dir = config.run_dir().join("containers").join(&app.id);
    let leftovers: Vec<_> = std::fs::read_dir(&state_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("tenant-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Exec liveness probe failing: the container is restarted (and Ready again).
    std::fs::write(tmp.join("die"), "").unwrap();
    let p = node.wait_ready("probed", true, 1).await;
    let msg = p["status"]["containerStatuses"][0]["lastState"]["terminated"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.contains("failed liveness probe"), "{:#}", p["status"]);

    // Deletion: the exec preStop hook runs before the stop signal.
    let _ = std::fs::remove_file(tmp.join("term"));
    cluster.modify(&PODS, Some("default"), "probed", |p| {
        p["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(5);
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut prestop_first = None;
    while node.pod("probed").is_some() {
        if prestop_first.is_none() && tmp.join("prestop").exists() {
            prestop_first = Some(!tmp.join("term").exists());
        }
        assert!(Instant::now() < deadline, "probed was not deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(prestop_first, Some(true), "preStop ran, before SIGTERM");
    assert!(!pod_dir.exists());

    node.stop().await;
    assert!(!init_dir.exists(), "pod directory removed at shutdown");
    let shims = shims_of(&data_dir);
    assert!(shims.is_empty(), "shims left: {shims}");
}
