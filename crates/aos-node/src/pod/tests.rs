//! The pod worker's state machine against the fake runtime, fake images, a fake prober and
//! the in-memory cluster, under paused time.

use super::*;
use crate::image::FakeImages;
use crate::probe::{FakeProber, ProbeResult};
use crate::runtime::fake::FakeRuntime;
use aos_controller::cluster::fake::FakeCluster;

struct Env {
    cluster: Arc<FakeCluster>,
    runtime: Arc<FakeRuntime>,
    images: Arc<FakeImages>,
    prober: Arc<FakeProber>,
    ctx: Arc<Ctx>,
}

fn image() -> ResolvedImage {
    ResolvedImage {
        id: "sha256:0123".into(),
        entrypoint: vec!["/app/server".into()],
        cmd: vec!["--port=3000".into()],
        env: vec!["PATH=/usr/bin:/bin".into(), "LANG=C.UTF-8".into()],
        working_dir: Some("/app".into()),
        user: Some("1001:1001".into()),
        stop_signal: Some("SIGQUIT".into()),
        layers: vec![],
    }
}

fn env() -> Env {
    let clock = Clock::new();
    let cluster = FakeCluster::new();
    let runtime = Arc::new(FakeRuntime::new(clock));
    let images = Arc::new(FakeImages::default());
    images.insert("agent-registry:1.0.0", image());
    let prober = Arc::new(FakeProber::default());
    let mut config = NodeConfig::new("node-1", "/tmp/unused", "/bin/false");
    config.node_ip = Some("192.168.1.2".parse().unwrap());
    let ctx = Arc::new(Ctx {
        cluster: cluster.clone(),
        runtime: runtime.clone(),
        images: images.clone(),
        prober: prober.clone(),
        config,
        clock,
        node_ip: "192.168.1.2".into(),
        node_cpu_millis: 2000,
        node_memory_bytes: 4 << 30,
    });
    Env {
        cluster,
        runtime,
        images,
        prober,
        ctx,
    }
}

fn pod_spec(extra: Value) -> Value {
    let mut container = json!({
        "name": "app",
        "image": "agent-registry:1.0.0",
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "NODE_ENV", "value": "production"}],
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}},
    });
    if let Some(m) = extra.get("container").and_then(Value::as_object) {
        for (k, v) in m {
            container[k] = v.clone();
        }
    }
    let mut spec = json!({
        "nodeName": "node-1",
        "containers": [container],
        "securityContext": {"runAsNonRoot": true},
        "terminationGracePeriodSeconds": 30,
    });
    if let Some(m) = extra.get("pod").and_then(Value::as_object) {
        for (k, v) in m {
            spec[k] = v.clone();
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "agent-os"},
        "spec": spec,
    })
}

impl Env {
    async fn create(&self, pod: Value) -> PodWorker {
        let created = self
            .cluster
            .create(&PODS, Some("agent-os"), &pod)
            .await
            .unwrap();
        let uid = created["metadata"]["uid"].as_str().unwrap().to_owned();
        PodWorker::new(self.ctx.clone(), uid)
    }

    fn pod(&self) -> Option<Value> {
        self.cluster.object(&PODS, Some("agent-os"), "web-0")
    }

    fn status(&self) -> Value {
        self.pod().unwrap()["status"]["containerStatuses"][0].clone()
    }

    fn condition(&self, t: &str) -> String {
        self.pod().unwrap()["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .map(|c| c["status"].as_str().unwrap().to_owned())
            .unwrap()
    }

    /// Sync until nothing is left to do right now (a few rounds, letting tasks run).
    async fn settle(&self, w: &mut PodWorker) -> Outcome {
        let mut out = Outcome::Wait(None);
        for _ in 0..4 {
            out = w.sync(self.pod()).await;
            tokio::task::yield_now().await;
            if out != Outcome::Wait(Some(Duration::ZERO)) {
                break;
            }
        }
        out
    }
}

#[tokio::test(start_paused = true)]
async fn starts_a_pod_with_the_spec_applied() {
    let e = env();
    let mut w = e.create(pod_spec(json!({}))).await;
    e.settle(&mut w).await;
    let started = e.runtime.started();
    assert_eq!(started.len(), 1);
    let r = &started[0];
    assert_eq!(r.attempt, 0);
    assert_eq!(r.stop_signal, 3, "STOPSIGNAL SIGQUIT");
    let p = &r.spec.process;
    assert_eq!(p.args, vec!["/app/server", "--port=3000"]);
    assert_eq!((p.uid, p.gid), (1001, 1001));
    assert_eq!(p.cwd, std::path::PathBuf::from("/app"));
    assert!(p.env.contains(&"NODE_ENV=production".to_string()));
    assert!(p.env.contains(&"LANG=C.UTF-8".to_string()));
    assert_eq!(
        p.seccomp,
        aos_sandbox::seccomp::Profile::RuntimeDefault,
        "secure by default"
    );
    let cg = &r.spec.cgroup;
    assert_eq!(cg.cpu_quota_us, Some(50_000));
    assert_eq!(cg.cpu_period_us, Some(100_000));
    assert_eq!(cg.cpu_shares, Some(256));
    assert_eq!(cg.memory_limit_bytes, Some(1 << 30));
    assert!(cg.parent.starts_with("/aos/pod-"));

    let pod = e.pod().unwrap();
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["podIP"], "10.88.0.2");
    assert_eq!(pod["status"]["hostIP"], "192.168.1.2");
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    let s = e.status();
    assert!(s["state"]["running"].is_object(), "{s}");
    assert_eq!(s["ready"], true);
    assert_eq!(s["started"], true);
    assert_eq!(s["restartCount"], 0);
    assert_eq!(s["imageID"], "sha256:0123");
    assert!(s["containerID"].as_str().unwrap().starts_with("aos://"));
    assert_eq!(e.condition("Ready"), "True");
    assert_eq!(e.condition("ContainersReady"), "True");
    assert_eq!(e.condition("Initialized"), "True");

    // Nothing changes: no new start, no status write.
    let writes = e.cluster.calls("patch", "pods");
    e.settle(&mut w).await;
    assert_eq!(e.runtime.started().len(), 1);
    assert_eq!(e.cluster.calls("patch", "pods"), writes);
}

#[tokio::test(start_paused = true)]
async fn missing_image_then_present() {
    let e = env();
    let mut w = e
        .create(pod_spec(
            json!({"container": {"image": "missing:1.0", "imagePullPolicy": "Never"}}),
        ))
        .await;
    let out = e.settle(&mut w).await;
    assert_eq!(out, Outcome::Wait(Some(IMAGE_RETRY)));
    let s = e.status();
    assert_eq!(s["state"]["waiting"]["reason"], "ErrImageNeverPull");
    assert_eq!(
        s["state"]["waiting"]["message"],
        "Container image \"missing:1.0\" is not present with pull policy of Never"
    );
    assert_eq!(e.pod().unwrap()["status"]["phase"], "Pending");
    e.images.insert("missing:1.0", image());
    tokio::time::sleep(IMAGE_RETRY).await;
    e.settle(&mut w).await;
    assert!(e.status()["state"]["running"].is_object());
}

#[tokio::test(start_paused = true)]
async fn missing_secret_blocks_until_created() {
    let e = env();
    let mut w = e
        .create(pod_spec(json!({"container": {"env": [
            {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "agent-registry-secrets", "key": "database-url"}}}
        ]}})))
        .await;
    e.settle(&mut w).await;
    let s = e.status();
    assert_eq!(
        s["state"]["waiting"]["reason"],
        "CreateContainerConfigError"
    );
    assert_eq!(
        s["state"]["waiting"]["message"],
        "secret \"agent-registry-secrets\" not found"
    );
    assert!(e.runtime.started().is_empty());
    e.cluster
        .create(
            &SECRETS,
            Some("agent-os"),
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "agent-registry-secrets"},
                    "data": {"database-url": "c3FsaXRlOi8vL2RhdGEvZGIuc3FsaXRl"}}),
        )
        .await
        .unwrap();
    tokio::time::sleep(CONFIG_RETRY).await;
    e.settle(&mut w).await;
    assert!(e.status()["state"]["running"].is_object());
    let env = &e.runtime.started()[0].spec.process.env;
    assert!(
        env.contains(&"DATABASE_URL=sqlite:///data/db.sqlite".to_string()),
        "{env:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn run_as_non_root_refuses_a_root_image() {
    let e = env();
    let mut root = image();
    root.user = None;
    e.images.insert("root:1", root);
    let mut w = e
        .create(pod_spec(json!({"container": {"image": "root:1"}})))
        .await;
    e.settle(&mut w).await;
    let s = e.status();
    assert_eq!(
        s["state"]["waiting"]["reason"],
        "CreateContainerConfigError"
    );
    assert_eq!(
        s["state"]["waiting"]["message"],
        "container has runAsNonRoot and image will run as root"
    );
}

#[tokio::test(start_paused = true)]
async fn crash_loop_backs_off_10s_then_20s() {
    let e = env();
    let mut w = e.create(pod_spec(json!({}))).await;
    e.settle(&mut w).await;
    // First crash: restarted at once.
    e.runtime.exit("app", 1, None, false);
    e.settle(&mut w).await;
    assert_eq!(e.runtime.started().len(), 2);
    let s = e.status();
    assert_eq!(s["restartCount"], 1);
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(s["lastState"]["terminated"]["reason"], "Error");
    // Second crash: CrashLoopBackOff for 10 s.
    e.runtime.exit("app", 1, None, false);
    let out = e.settle(&mut w).await;
    assert_eq!(out, Outcome::Wait(Some(Duration::from_secs(10))));
    let s = e.status();
    assert_eq!(s["state"]["waiting"]["reason"], "CrashLoopBackOff");
    let msg = s["state"]["waiting"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("back-off 10s restarting failed container=app pod=web-0_agent-os("),
        "{msg}"
    );
    assert_eq!(e.pod().unwrap()["status"]["phase"], "Running");
    tokio::time::sleep(Duration::from_secs(9)).await;
    e.settle(&mut w).await;
    assert_eq!(e.runtime.started().len(), 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    e.settle(&mut w).await;
    assert_eq!(e.runtime.started().len(), 3);
    assert_eq!(e.status()["restartCount"], 2);
    // Third crash: 20 s.
    e.runtime.exit("app", 2, None, false);
    e.settle(&mut w).await;
    let msg = e.status()["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.starts_with("back-off 20s"), "{msg}");
    tokio::time::sleep(Duration::from_secs(19)).await;
    e.settle(&mut w).await;
    assert_eq!(e.runtime.started().len(), 3);
    tokio::time::sleep(Duration::from_secs(1)).await;
    e.settle(&mut w).await;
    assert_eq!(e.runtime.started().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn restart_policies_and_phases() {
    for (policy, code, phase, starts) in [
        ("Never", 0, "Succeeded", 1),
        ("Never", 3, "Failed", 1),
        ("OnFailure", 0, "Succeeded", 1),
        ("OnFailure", 3, "Running", 2),
        ("Always", 0, "Running", 2),
    ] {
        let e = env();
        let mut w = e
            .create(pod_spec(json!({"pod": {"restartPolicy": policy}})))
            .await;
        e.settle(&mut w).await;
        e.runtime.exit("app", code, None, false);
        e.settle(&mut w).await;
        let pod = e.pod().unwrap();
        assert_eq!(pod["status"]["phase"], phase, "{policy} {code}");
        assert_eq!(e.runtime.started().len(), starts, "{policy} {code}");
        if phase == "Succeeded" {
            assert_eq!(e.status()["state"]["terminated"]["reason"], "Completed");
            assert_eq!(e.condition("Ready"), "False");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn oom_kill_is_reported() {
    let e = env();
    let mut w = e
        .create(pod_spec(json!({"pod": {"restartPolicy": "Never"}})))
        .await;
    e.settle(&mut w).await;
    e.runtime.exit("app", 137, Some(9), true);
    e.settle(&mut w).await;
    let t = &e.status()["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled");
    assert_eq!(t["exitCode"], 137);
}

#[tokio::test(start_paused = true)]
async fn failing_liveness_restarts_and_failing_readiness_unreadies() {
    let e = env();
    let mut w = e
        .create(pod_spec(json!({"container": {
            "livenessProbe": {"httpGet": {"path": "/health", "port": 3000}, "periodSeconds": 10, "failureThreshold": 3},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 3000}, "periodSeconds": 5, "failureThreshold": 1},
        }})))
        .await;
    e.settle(&mut w).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    e.settle(&mut w).await;
    assert_eq!(e.condition("Ready"), "True");

    e.prober.set(
        "app",
        "http:3000/ready",
        ProbeResult::Failure("HTTP probe failed with statuscode: 503".into()),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    e.settle(&mut w).await;
    assert_eq!(e.condition("Ready"), "False");
    assert_eq!(e.status()["ready"], false);
    assert!(
        e.status()["state"]["running"].is_object(),
        "readiness never restarts"
    );
    e.prober.set("app", "http:3000/ready", ProbeResult::Success);

    e.prober.set(
        "app",
        "http:3000/health",
        ProbeResult::Failure("HTTP probe failed with statuscode: 500".into()),
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    e.settle(&mut w).await;
    // The stop signal (the image's SIGQUIT) ended it; the next sync restarts it.
    assert!(e.runtime.signals().contains(&("app".to_string(), 3)));
    e.settle(&mut w).await;
    assert_eq!(e.runtime.started().len(), 2);
    let s = e.status();
    assert_eq!(s["restartCount"], 1);
    let msg = s["lastState"]["terminated"]["message"].as_str().unwrap();
    assert!(msg.contains("failed liveness probe"), "{msg}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    e.settle(&mut w).await;
    assert_eq!(e.condition("Ready"), "True");
}

#[tokio::test(start_paused = true)]
async fn liveness_kill_escalates_to_sigkill_after_grace() {
    let e = env();
    e.runtime.set_ignore_term("app");
    let mut w = e
        .create(pod_spec(json!({
            "container": {"livenessProbe": {"tcpSocket": {"port": 3000}, "periodSeconds": 1, "failureThreshold": 1}},
            "pod": {"terminationGracePeriodSeconds": 5},
        })))
        .await;
    e.prober
        .set("app", "tcp:3000", ProbeResult::Failure("refused".into()));
    e.settle(&mut w).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    e.settle(&mut w).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let out = e.settle(&mut w).await;
    assert_eq!(e.runtime.signals(), vec![("app".to_string(), 3)]);
    assert!(matches!(out, Outcome::Wait(Some(d)) if d <= Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_secs(5)).await;
    e.settle(&mut w).await;
    assert!(e.runtime.signals().contains(&("app".to_string(), 9)));
}

#[tokio::test(start_paused = true)]
async fn deletion_terminates_gracefully_then_deletes_the_pod() {
    let e = env();
    e.runtime.set_ignore_term("app");
    let mut w = e
        .create(pod_spec(
            json!({"pod": {"terminationGracePeriodSeconds": 3}}),
        ))
        .await;
    e.settle(&mut w).await;
    e.cluster.modify(&PODS, Some("agent-os"), "web-0", |p| {
        p["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(3);
    });
    let started = tokio::time::Instant::now();
    let out = w.sync(e.pod()).await;
    assert_eq!(out, Outcome::Finished);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(
        e.runtime.signals(),
        vec![("app".to_string(), 3), ("app".to_string(), 9)]
    );
    assert_eq!(e.runtime.removed_sandboxes().len(), 1);
    assert!(e.pod().is_none(), "deleted with grace 0");
}

#[tokio::test(start_paused = true)]
async fn gone_from_the_api_cleans_up() {
    let e = env();
    let mut w = e.create(pod_spec(json!({}))).await;
    e.settle(&mut w).await;
    let uid = w.uid.clone();
    assert!(e.runtime.has_sandbox(&uid));
    assert_eq!(w.sync(None).await, Outcome::Finished);
    assert!(!e.runtime.has_sandbox(&uid));
    assert_eq!(e.runtime.signals(), vec![("app".to_string(), 3)]);
}

#[tokio::test(start_paused = true)]
async fn adopts_running_containers_without_restarting_them() {
    let e = env();
    let mut w = e.create(pod_spec(json!({}))).await;
    e.settle(&mut w).await;
    e.runtime.exit("app", 1, None, false);
    e.settle(&mut w).await;
    assert_eq!(e.runtime.started().len(), 2);
    // A new agent: a fresh worker over the same runtime state.
    let mut again = PodWorker::new(e.ctx.clone(), w.uid.clone());
    drop(w);
    e.settle(&mut again).await;
    assert_eq!(e.runtime.started().len(), 2, "no duplicate start");
    let s = e.status();
    assert_eq!(s["restartCount"], 1);
    assert!(s["state"]["running"].is_object());
}

#[test]
fn signals_and_pull_policy() {
    assert_eq!(parse_signal("SIGTERM"), Some(15));
    assert_eq!(parse_signal("quit"), Some(3));
    assert_eq!(parse_signal("9"), Some(9));
    assert_eq!(parse_signal("SIGBOGUS"), None);
    let c = |image: &str| -> Container {
        serde_json::from_value(json!({"name": "a", "image": image})).unwrap()
    };
    assert_eq!(pull_policy(&c("busybox")), "Always");
    assert_eq!(pull_policy(&c("busybox:latest")), "Always");
    assert_eq!(pull_policy(&c("localhost:5000/busybox")), "Always");
    assert_eq!(pull_policy(&c("agent-registry:1.0.0")), "IfNotPresent");
}
