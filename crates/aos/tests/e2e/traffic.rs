//! Issue 5 as a user sees it: `aos up --demo` serves the seed's agent-registry through the
//! gateway (the demo's Service plus the seed's corrected VirtualService and DestinationRule),
//! spreads requests over the three pods, and loses no request while a pod is deleted and while
//! the Deployment is rolled.
//!
//! Needs root (the node agent) and the static agent-registry binary
//! (`AOS_TEST_AGENT_REGISTRY_BIN`, built by scripts/test.sh); says why when it skips.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aos_client::{Client, DeleteParams, Patch};
use serde_json::{Value, json};

use super::support::{
    Aos, HttpConn, agent_registry_bin_or_skip, build_agent_registry_image, eventually,
    root_or_skip, rt, str_at, wait_pods_ready,
};

const NS: &str = "agent-os";
const SELECTOR: &str = "app=agent-registry";
/// The host the seed's VirtualService serves.
const HOST: &str = "agent-registry.example.com";
/// Served by every replica, with the serving pod's hostname.
const PATH: &str = "/api/v1/agent-registry/instance";
/// Concurrent keep-alive clients.
const CLIENTS: usize = 8;
/// The body of a 503 that the VirtualService's fault policy injects (the seed's corrected
/// VirtualService aborts 0.01% of requests on purpose; Envoy answers with the same body).
const FAULT_ABORT_BODY: &[u8] = b"fault filter abort";

/// The load's phases, for the report.
const PHASES: [&str; 4] = ["steady", "pod deleted", "rollout", "after"];

#[derive(Default)]
struct Tally {
    /// Responses per phase.
    requests: [usize; 4],
    /// 200s per pod (hostname) per phase.
    served_by: [BTreeMap<String, usize>; 4],
    /// Failed requests: phase and what happened.
    failures: Vec<(usize, String)>,
    /// 503s injected by the route's fault policy, per phase.
    injected: [usize; 4],
}

struct Load {
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `CLIENTS` clients, each on its own keep-alive connection (a new one only after the
    /// gateway closes it or a request fails), as fast as they can go.
    fn start(gateway: SocketAddr) -> Load {
        let phase = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let tasks = (0..CLIENTS)
            .map(|_| {
                let (phase, stop, tally) = (phase.clone(), stop.clone(), tally.clone());
                tokio::spawn(async move {
                    let mut conn: Option<HttpConn> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let at = phase.load(Ordering::Relaxed);
                        let result = match conn.as_mut() {
                            Some(c) => c.get(HOST, PATH).await,
                            None => match HttpConn::connect(gateway).await {
                                Ok(c) => conn.insert(c).get(HOST, PATH).await,
                                Err(e) => Err(e),
                            },
                        };
                        let mut t = tally.lock().expect("tally lock");
                        t.requests[at] += 1;
                        match result {
                            Ok(answer) if answer.status == 200 => {
                                let v: Value =
                                    serde_json::from_slice(&answer.body).unwrap_or_default();
                                let pod = str_at(&v, "/hostname").to_string();
                                *t.served_by[at].entry(pod).or_default() += 1;
                                if !answer.keep_alive {
                                    conn = None;
                                }
                            }
                            Ok(answer) if answer.body == FAULT_ABORT_BODY => {
                                t.injected[at] += 1;
                                if !answer.keep_alive {
                                    conn = None;
                                }
                            }
                            Ok(answer) => {
                                let body = String::from_utf8_lossy(&answer.body);
                                t.failures.push((
                                    at,
                                    format!("status {}: {}", answer.status, body.trim()),
                                ));
                                if !answer.keep_alive {
                                    conn = None;
                                }
                            }
                            Err(e) => {
                                t.failures.push((at, format!("error: {e}")));
                                conn = None;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            phase,
            stop,
            tally,
            tasks,
        }
    }

    fn enter(&self, phase: usize) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    fn served_by(&self, phase: usize) -> BTreeMap<String, usize> {
        self.tally.lock().expect("tally lock").served_by[phase].clone()
    }

    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("load task");
        }
        Arc::try_unwrap(self.tally)
            .ok()
            .expect("load tasks finished")
            .into_inner()
            .expect("tally lock")
    }
}

fn pod_names(pods: &[Value]) -> BTreeSet<String> {
    pods.iter()
        .map(|p| str_at(p, "/metadata/name").to_string())
        .collect()
}

/// Wait until the agent-registry pods are exactly 3 Ready ones, none of `old`.
async fn wait_replaced(client: &Client, old: &BTreeSet<String>, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let pods = wait_pods_ready(client, NS, SELECTOR, 3, left).await;
        if pod_names(&pods).is_disjoint(old) {
            return pods;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failed_requests_while_a_pod_is_deleted_and_the_deployment_rolls() {
    if !root_or_skip() {
        return;
    }
    let Some(bin) = agent_registry_bin_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    build_agent_registry_image(&data_dir, &bin);
    let aos = Aos::start_node(&data_dir, &["--demo", "--demo-skip-image-build"]).await;
    let client = aos.client();
    let gateway: SocketAddr = format!("127.0.0.1:{}", aos.gateway_port)
        .parse()
        .expect("gateway address");
    let pods = wait_pods_ready(&client, NS, SELECTOR, 3, Duration::from_secs(30)).await;
    let first = pod_names(&pods);
    // The gateway has the demo's routes and the pods' endpoints.
    eventually(
        "the gateway routes to all 3 pods",
        Duration::from_secs(10),
        || async {
            let mut seen = BTreeSet::new();
            let mut conn = HttpConn::connect(gateway).await.ok()?;
            for _ in 0..30 {
                let a = conn.get(HOST, PATH).await.ok()?;
                if a.status == 200 {
                    let v: Value = serde_json::from_slice(&a.body).ok()?;
                    seen.insert(str_at(&v, "/hostname").to_string());
                }
            }
            (seen == first).then_some(())
        },
    )
    .await;

    let load = Load::start(gateway);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spread = load.served_by(0);
    assert_eq!(
        spread.keys().cloned().collect::<BTreeSet<_>>(),
        first,
        "requests before any change reach all 3 pods: {spread:?}"
    );

    // (a) Delete a pod under load; its replacement becomes Ready.
    load.enter(1);
    let victim: BTreeSet<String> = first.iter().take(1).cloned().collect();
    let name = victim.iter().next().expect("a pod").clone();
    client
        .delete(rt("v1", "Pod"), Some(NS), &name, &DeleteParams::default())
        .await
        .expect("delete a pod");
    let pods = wait_replaced(&client, &victim, Duration::from_secs(40)).await;
    eventually(&format!("{name} gone"), Duration::from_secs(40), || async {
        client
            .get(rt("v1", "Pod"), Some(NS), &name)
            .await
            .err()
            .filter(aos_client::ClientError::is_not_found)
            .map(|_| ())
    })
    .await;

    // (b) Roll the Deployment: a template change replaces every pod.
    load.enter(2);
    let before = pod_names(&pods);
    client
        .patch(
            rt("apps/v1", "Deployment"),
            Some(NS),
            "agent-registry",
            Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                "aos.test/restartedAt": jiff::Timestamp::now().to_string()
            }}}}})),
            None,
        )
        .await
        .expect("patch the deployment's template");
    let rolled = wait_replaced(&client, &before, Duration::from_secs(90)).await;
    eventually("the old pods gone", Duration::from_secs(40), || async {
        let all = super::support::list_pods(&client, NS, SELECTOR).await;
        (all.len() == 3).then_some(())
    })
    .await;
    load.enter(3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tally = load.finish().await;

    let total: usize = tally.requests.iter().sum();
    eprintln!("requests through the gateway: {total} with {CLIENTS} keep-alive clients");
    for (i, phase) in PHASES.iter().enumerate() {
        eprintln!(
            "  {phase}: {} requests, served by {:?}, {} injected 503s (the VirtualService's fault policy)",
            tally.requests[i], tally.served_by[i], tally.injected[i]
        );
    }
    for (phase, what) in &tally.failures {
        eprintln!("  FAILED during {}: {what}", PHASES[*phase]);
    }
    assert!(
        tally.failures.is_empty(),
        "{} of {total} requests failed (see above); aos log:\n{}",
        tally.failures.len(),
        aos.log()
    );
    let after: BTreeSet<String> = tally.served_by[3].keys().cloned().collect();
    assert_eq!(
        after,
        pod_names(&rolled),
        "after the rollout requests reach the new pods"
    );
}
