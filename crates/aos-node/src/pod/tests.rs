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
    env_with(false)
}

/// With `net_prober`, probes run through the real prober (exec probes go to the fake runtime).
fn env_with(net_prober: bool) -> Env {
    let clock = Clock::new();
    let cluster = FakeCluster::new();
    let runtime = Arc::new(FakeRuntime::new(clock));
    let images = Arc::new(FakeImages::default());
    images.insert("agent-registry:1.0.0", image());
    let prober = Arc::new(FakeProber::default());
    let ctx_prober: Arc<dyn Prober> = if net_prober {
        Arc::new(crate::probe::NetProber::new(runtime.clone()))
    } else {
        prober.clone()
    };
    let mut config = NodeConfig::new("node-1", "/tmp/unused", "/bin/false");
    config.node_ip = Some("192.168.1.2".parse().unwrap());
    let ctx = Arc::new(Ctx {
        cluster: cluster.clone(),
        runtime: runtime.clone(),
        images: images.clone(),
        prober: ctx_prober,
        config,
        clock,
        node_ip: "192.168.1.2".into(),
        node_cpu_millis: 2000,
        node_memory_bytes: 4 << 30,
        metrics: Arc::default(),
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

fn ep_kinds() -> (
    &'static aos_types::ResourceType,
    &'static aos_types::ResourceType,
) {
    (
        aos_types::resource::by_kind("v1", "Service").unwrap(),
        aos_types::resource::by_kind("v1", "Endpoints").unwrap(),
    )
}

fn init_container(name: &str) -> Value {
    json!({"name": name, "image": "agent-registry:1.0.0", "imagePullPolicy": "IfNotPresent",
           "command": ["/bin/setup", name]})
}

impl Env {
    fn init_status(&self, i: usize) -> Value {
        self.pod().unwrap()["status"]["initContainerStatuses"][i].clone()
    }

    fn started_names(&self) -> Vec<String> {
        self.runtime
            .started()
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    async fn delete_pod(&self, grace: i64) {
        self.cluster.modify(&PODS, Some("agent-os"), "web-0", |p| {
            p["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
            p["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        });
    }

    /// A Service selecting the pod (`app: web`) and its Endpoints listing `ip` as ready.
    async fn serve(&self, ip: &str) {
        let (svc, ep) = ep_kinds();
        self.cluster
            .create(
                svc,
                Some("agent-os"),
                &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
            )
            .await
            .unwrap();
        self.cluster
            .create(
                ep,
                Some("agent-os"),
                &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
                        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"port": 80}]}]}),
            )
            .await
            .unwrap();
    }
}

fn labelled(mut pod: Value) -> Value {
    pod["metadata"]["labels"] = json!({"app": "web"});
    pod
}

#[tokio::test(start_paused = true)]
async fn exec_readiness_and_liveness_through_the_runtime() {
    let e = env_with(true);
    let mut w = e
        .create(pod_spec(json!({"container": {
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1, "failureThreshold": 1},
            "livenessProbe": {"exec": {"command": ["check"]}, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2},
        }})))
        .await;
    e.runtime.set_exec_result("app", 1);
    e.settle(&mut w).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    e.settle(&mut w).await;
    assert_eq!(e.condition("Ready"), "False", "cat fails: not ready");
    assert!(
        e.runtime
            .execs()
            .contains(&("app".to_string(), vec!["cat".into(), "/tmp/ready".into()]))
    );
    e.runtime.set_exec_result("app", 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    e.settle(&mut w).await;
    assert_eq!(e.condition("Ready"), "True");
    // Commands that run past timeoutSeconds fail the probe: two liveness failures restart.
    e.runtime.set_exec_delay("app", Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(12)).await;
    e.settle(&mut w).await;
    e.settle(&mut w).await;
    assert_eq!(
        e.runtime.started().len(),
        2,
        "restarted after liveness failed"
    );
    let msg = e.status()["lastState"]["terminated"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("failed liveness probe") && msg.contains("timed out after 2s"),
        "{msg}"
    );
}

#[tokio::test(start_paused = true)]
async fn exec_pre_stop_runs_before_the_stop_signal() {
    let e = env();
    let mut w = e
        .create(pod_spec(json!({
            "container": {"lifecycle": {"preStop": {"exec": {"command": ["/app/drain", "--wait"]}}}},
            "pod": {"terminationGracePeriodSeconds": 10},
        })))
        .await;
    e.settle(&mut w).await;
    e.runtime.set_exec_delay("app", Duration::from_secs(2));
    e.delete_pod(10).await;
    let pod = e.pod();
    let task = tokio::spawn(async move { (w.sync(pod).await, w) });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        e.runtime.execs(),
        vec![(
            "app".to_string(),
            vec!["/app/drain".into(), "--wait".into()]
        )]
    );
    assert!(
        e.runtime.signals().is_empty(),
        "no signal while preStop runs"
    );
    let (out, _w) = task.await.unwrap();
    assert_eq!(out, Outcome::Finished);
    assert_eq!(e.runtime.signals(), vec![("app".to_string(), 3)]);
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_in_order_before_the_app() {
    let e = env();
    let mut w = e
        .create(pod_spec(
            json!({"pod": {"initContainers": [init_container("first"), init_container("second")]}}),
        ))
        .await;
    e.settle(&mut w).await;
    assert_eq!(e.started_names(), vec!["first"]);
    let pod = e.pod().unwrap();
    assert_eq!(pod["status"]["phase"], "Pending");
    assert!(e.init_status(0)["state"]["running"].is_object());
    assert_eq!(e.init_status(0)["ready"], false);
    assert_eq!(
        e.init_status(1)["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    assert_eq!(e.status()["state"]["waiting"]["reason"], "PodInitializing");
    assert_eq!(e.condition("Initialized"), "False");
    let init_cond = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Initialized")
        .unwrap()
        .clone();
    assert_eq!(init_cond["reason"], "ContainersNotInitialized");
    assert_eq!(
        init_cond["message"],
        "containers with incomplete status: [first second]"
    );
    // The first completes: the second starts, the app still waits.
    e.runtime.exit("first", 0, None, false);
    e.settle(&mut w).await;
    assert_eq!(e.started_names(), vec!["first", "second"]);
    assert_eq!(
        e.init_status(0)["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(e.init_status(0)["ready"], true);
    // The second completes: the app starts; the init containers' environment came with them.
    e.runtime.exit("second", 0, None, false);
    e.settle(&mut w).await;
    assert_eq!(e.started_names(), vec!["first", "second", "app"]);
    assert_eq!(
        e.runtime.started()[0].spec.process.args,
        vec!["/bin/setup", "first"]
    );
    let pod = e.pod().unwrap();
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(e.condition("Initialized"), "True");
    assert_eq!(e.condition("Ready"), "True");
    assert_eq!(e.init_status(1)["state"]["terminated"]["exitCode"], 0);

    // A new agent finds the app started: the init containers are not run again, even when
    // the app container exits and restarts.
    let mut again = PodWorker::new(e.ctx.clone(), w.uid.clone());
    drop(w);
    e.runtime.exit("app", 1, None, false);
    e.settle(&mut again).await;
    assert_eq!(
        e.started_names(),
        vec!["first", "second", "app", "app"],
        "no init container again"
    );
    assert_eq!(e.condition("Initialized"), "True");
}

#[tokio::test(start_paused = true)]
async fn failing_init_container_backs_off_or_fails_the_pod() {
    // Always (and OnFailure): restarted with back-off, the app never starts.
    let e = env();
    let mut w = e
        .create(pod_spec(
            json!({"pod": {"initContainers": [init_container("setup")]}}),
        ))
        .await;
    e.settle(&mut w).await;
    e.runtime.exit("setup", 2, None, false);
    e.settle(&mut w).await;
    assert_eq!(
        e.started_names(),
        vec!["setup", "setup"],
        "first restart at once"
    );
    e.runtime.exit("setup", 2, None, false);
    let out = e.settle(&mut w).await;
    assert_eq!(out, Outcome::Wait(Some(Duration::from_secs(10))));
    let s = e.init_status(0);
    assert_eq!(s["state"]["waiting"]["reason"], "CrashLoopBackOff", "{s}");
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 2);
    assert_eq!(s["restartCount"], 1);
    assert_eq!(e.pod().unwrap()["status"]["phase"], "Pending");
    assert_eq!(e.status()["state"]["waiting"]["reason"], "PodInitializing");
    tokio::time::sleep(Duration::from_secs(10)).await;
    e.settle(&mut w).await;
    assert_eq!(e.started_names(), vec!["setup", "setup", "setup"]);
    e.runtime.exit("setup", 0, None, false);
    e.settle(&mut w).await;
    assert_eq!(e.started_names(), vec!["setup", "setup", "setup", "app"]);

    // Never: the pod fails, nothing else starts.
    let e = env();
    let mut w = e
        .create(pod_spec(
            json!({"pod": {"restartPolicy": "Never", "initContainers": [init_container("setup")]}}),
        ))
        .await;
    e.settle(&mut w).await;
    e.runtime.exit("setup", 1, None, false);
    e.settle(&mut w).await;
    e.settle(&mut w).await;
    assert_eq!(e.started_names(), vec!["setup"]);
    let pod = e.pod().unwrap();
    assert_eq!(pod["status"]["phase"], "Failed");
    let s = e.init_status(0);
    assert_eq!(s["state"]["terminated"]["reason"], "Error", "{s}");
    assert_eq!(s["state"]["terminated"]["exitCode"], 1);
    assert_eq!(e.condition("Initialized"), "False");
    assert_eq!(e.status()["state"]["waiting"]["reason"], "PodInitializing");
}

#[tokio::test(start_paused = true)]
async fn sidecar_init_containers_are_refused() {
    let e = env();
    let mut sidecar = init_container("proxy");
    sidecar["restartPolicy"] = json!("Always");
    let mut w = e
        .create(pod_spec(json!({"pod": {"initContainers": [sidecar]}})))
        .await;
    e.settle(&mut w).await;
    assert!(e.runtime.started().is_empty());
    let s = e.init_status(0);
    assert_eq!(
        s["state"]["waiting"]["reason"],
        "CreateContainerConfigError"
    );
    let msg = s["state"]["waiting"]["message"].as_str().unwrap();
    assert!(
        msg.contains("sidecar containers are not supported"),
        "{msg}"
    );
    assert_eq!(e.pod().unwrap()["status"]["phase"], "Pending");
}

#[tokio::test(start_paused = true)]
async fn deletion_waits_until_the_pod_left_its_endpoints() {
    let e = env();
    let mut w = e
        .create(labelled(pod_spec(
            json!({"pod": {"terminationGracePeriodSeconds": 30}}),
        )))
        .await;
    e.settle(&mut w).await;
    let ip = e.pod().unwrap()["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned();
    e.serve(&ip).await;
    e.delete_pod(30).await;
    let pod = e.pod();
    let start = tokio::time::Instant::now();
    let task = tokio::spawn(async move { (w.sync(pod).await, w) });
    // The Endpoints controller moves the pod out after 3 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        e.runtime.signals().is_empty(),
        "still listed: no signal yet"
    );
    let (_, ep) = ep_kinds();
    e.cluster.modify(ep, Some("agent-os"), "web", |ep| {
        ep["subsets"] = json!([{"notReadyAddresses": [{"ip": ip}], "ports": [{"port": 80}]}]);
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(e.runtime.signals().is_empty(), "settling: no signal yet");
    let (out, _w) = task.await.unwrap();
    assert_eq!(out, Outcome::Finished);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(4000) && took < Duration::from_millis(4300),
        "left after 3 s, settled 1 s: {took:?}"
    );
    assert_eq!(e.runtime.signals(), vec![("app".to_string(), 3)]);
}

#[tokio::test(start_paused = true)]
async fn termination_gate_is_bounded_and_skipped_when_unselected() {
    // Still listed after 10 s: SIGTERM anyway, the wait counted in the grace period.
    let e = env();
    e.runtime.set_ignore_term("app");
    let mut w = e
        .create(labelled(pod_spec(
            json!({"pod": {"terminationGracePeriodSeconds": 12}}),
        )))
        .await;
    e.settle(&mut w).await;
    let ip = e.pod().unwrap()["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned();
    e.serve(&ip).await;
    e.delete_pod(12).await;
    let start = tokio::time::Instant::now();
    assert_eq!(w.sync(e.pod()).await, Outcome::Finished);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(12) && took < Duration::from_millis(12_500),
        "10 s at the gate, then 2 s to SIGKILL: {took:?}"
    );
    assert_eq!(
        e.runtime.signals(),
        vec![("app".to_string(), 3), ("app".to_string(), 9)]
    );

    // A short grace period bounds the gate: 2 s in all, then SIGKILL at once.
    let e = env();
    e.runtime.set_ignore_term("app");
    let mut w = e
        .create(labelled(pod_spec(
            json!({"pod": {"terminationGracePeriodSeconds": 2}}),
        )))
        .await;
    e.settle(&mut w).await;
    let ip = e.pod().unwrap()["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned();
    e.serve(&ip).await;
    e.delete_pod(2).await;
    let start = tokio::time::Instant::now();
    assert_eq!(w.sync(e.pod()).await, Outcome::Finished);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(2500),
        "{took:?}"
    );

    // No Service selects the pod (other labels): no wait at all.
    let e = env();
    let mut w = e
        .create(pod_spec(
            json!({"pod": {"terminationGracePeriodSeconds": 30}}),
        ))
        .await;
    e.settle(&mut w).await;
    let ip = e.pod().unwrap()["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned();
    e.serve(&ip).await;
    e.delete_pod(30).await;
    let start = tokio::time::Instant::now();
    assert_eq!(w.sync(e.pod()).await, Outcome::Finished);
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn endpoints_list_only_ready_addresses() {
    let ep = json!({"subsets": [
        {"addresses": [{"ip": "10.88.0.2"}], "notReadyAddresses": [{"ip": "10.88.0.3"}]},
        {"addresses": [{"ip": "10.88.0.4"}]},
    ]});
    assert!(gate::lists_address(&ep, "10.88.0.2"));
    assert!(gate::lists_address(&ep, "10.88.0.4"));
    assert!(
        !gate::lists_address(&ep, "10.88.0.3"),
        "not ready: no traffic"
    );
    assert!(!gate::lists_address(&json!({}), "10.88.0.2"));
}
