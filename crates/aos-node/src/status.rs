//! Pod status as the kubelet reports it: container statuses (state, lastState, ready,
//! started, restartCount, image, imageID, containerID), the phase, conditions and QoS class.
//! Pure functions of what the worker knows.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use crate::clock::format_time;
use crate::runtime::ContainerInfo;

/// What the worker knows about one container of the spec.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    /// The latest attempt.
    pub current: Option<ContainerInfo>,
    /// The attempt before it.
    pub previous: Option<ContainerInfo>,
    /// Why the container is not running (`ContainerCreating`, `CrashLoopBackOff`,
    /// `ErrImageNeverPull`, `CreateContainerConfigError`...) and a message.
    pub waiting: Option<(String, String)>,
    /// Ready (readiness passes).
    pub ready: bool,
    /// Started (startup probe passed).
    pub started: bool,
    /// Why the last attempt was killed by the agent (liveness), for `lastState`.
    pub kill_message: Option<(String, String)>,
}

fn terminated(c: &ContainerInfo, kill_message: Option<&str>) -> Value {
    let exit = c.exit.unwrap_or(aos_sandbox::ExitStatus {
        code: 0,
        signal: None,
        oom_killed: false,
    });
    let mut t = json!({
        "exitCode": exit.code,
        "reason": exit.reason(),
        "startedAt": format_time(c.started_at),
        "finishedAt": c.finished_at.map(format_time),
        "containerID": format!("aos://{}", c.id),
    });
    if let Some(sig) = exit.signal {
        t["signal"] = json!(sig);
    }
    if let Some(m) = kill_message {
        t["message"] = json!(m);
    }
    t
}

/// One entry of `status.containerStatuses`.
pub fn container_status(spec: &Container, v: &ContainerView) -> Value {
    let kill = |c: &ContainerInfo| {
        v.kill_message
            .as_ref()
            .filter(|(id, _)| *id == c.id)
            .map(|(_, m)| m.as_str())
    };
    let (state, last) = match (&v.current, &v.waiting) {
        (Some(c), _) if c.running() => (
            json!({"running": {"startedAt": format_time(c.started_at)}}),
            v.previous
                .as_ref()
                .map(|p| json!({"terminated": terminated(p, kill(p))})),
        ),
        (Some(c), Some((reason, message))) => (
            json!({"waiting": {"reason": reason, "message": message}}),
            Some(json!({"terminated": terminated(c, kill(c))})),
        ),
        (Some(c), None) => (
            json!({"terminated": terminated(c, kill(c))}),
            v.previous
                .as_ref()
                .map(|p| json!({"terminated": terminated(p, kill(p))})),
        ),
        (None, w) => {
            let (reason, message) = w
                .clone()
                .unwrap_or_else(|| ("ContainerCreating".to_owned(), String::new()));
            let mut wv = json!({"reason": reason});
            if !message.is_empty() {
                wv["message"] = json!(message);
            }
            (json!({"waiting": wv}), None)
        }
    };
    let running = v.current.as_ref().is_some_and(ContainerInfo::running);
    let mut s = json!({
        "name": spec.name,
        "state": state,
        "lastState": last.unwrap_or_else(|| json!({})),
        "ready": running && v.ready,
        "restartCount": v.current.as_ref().map_or(0, |c| c.attempt),
        "image": spec.image.clone().unwrap_or_default(),
        "imageID": v.current.as_ref().map(|c| c.image_id.clone()).unwrap_or_default(),
        "started": running && v.started,
    });
    if let Some(c) = &v.current {
        s["containerID"] = json!(format!("aos://{}", c.id));
    }
    s
}

/// Whether an init container ran to completion (exit code 0, not about to run again).
fn completed(v: &ContainerView) -> bool {
    v.waiting.is_none()
        && v.current
            .as_ref()
            .and_then(|c| c.exit)
            .is_some_and(|e| e.code == 0)
}

/// One entry of `status.initContainerStatuses`. A completed init container is `ready`;
/// `initialized` says the pod is past its init containers (one whose record is gone is
/// reported as completed).
pub fn init_container_status(spec: &Container, v: &ContainerView, initialized: bool) -> Value {
    if v.current.is_none() && initialized {
        return json!({
            "name": spec.name,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            "lastState": {},
            "ready": true,
            "restartCount": 0,
            "image": spec.image.clone().unwrap_or_default(),
            "imageID": "",
            "started": false,
        });
    }
    let mut s = container_status(spec, v);
    s["ready"] = json!(completed(v));
    s
}

/// Where a pod is with its init containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitState {
    /// All completed (or the app containers started, so they never run again).
    Done,
    /// Some have not completed yet: their names.
    Pending(Vec<String>),
    /// One failed and the restart policy is `Never`: the pod failed.
    Failed(Vec<String>),
}

/// Where a pod with `init` containers (and their views) is; `app_started` when an app
/// container has run.
pub fn init_state(
    restart_policy: &str,
    init: &[Container],
    views: &[ContainerView],
    app_started: bool,
) -> InitState {
    if app_started {
        return InitState::Done;
    }
    let incomplete: Vec<String> = init
        .iter()
        .zip(views)
        .filter(|(_, v)| !completed(v))
        .map(|(c, _)| c.name.clone())
        .collect();
    if incomplete.is_empty() {
        return InitState::Done;
    }
    let failed = views.iter().any(|v| {
        v.waiting.is_none()
            && v.current
                .as_ref()
                .and_then(|c| c.exit)
                .is_some_and(|e| e.code != 0)
    });
    if failed && restart_policy == "Never" {
        InitState::Failed(incomplete)
    } else {
        InitState::Pending(incomplete)
    }
}

/// The pod phase from container statuses, as the kubelet decides it.
pub fn phase(restart_policy: &str, statuses: &[Value]) -> &'static str {
    let mut waiting = 0;
    let mut running = 0;
    let mut stopped = 0;
    let mut succeeded = 0;
    for s in statuses {
        let st = &s["state"];
        if st.get("running").is_some() {
            running += 1;
        } else if let Some(t) = st.get("terminated") {
            stopped += 1;
            if t["exitCode"] == 0 {
                succeeded += 1;
            }
        } else if st.get("waiting").is_some() {
            if s["lastState"].get("terminated").is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        }
    }
    if statuses.is_empty() || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == statuses.len() {
        return match restart_policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            // OnFailure: the failed ones are restarted.
            _ => "Running",
        };
    }
    "Pending"
}

/// `status.qosClass`, over the app and init containers.
pub fn qos_class(containers: &[Container], init: &[Container]) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in containers.iter().chain(init) {
        let r = c.resources.as_ref();
        let limits = r.and_then(|r| r.limits.clone()).unwrap_or_default();
        let requests = r.and_then(|r| r.requests.clone()).unwrap_or_default();
        if !limits.is_empty() || !requests.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            match (limits.get(res), requests.get(res)) {
                (Some(l), Some(q)) if l == q => {}
                (Some(_), None) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The status of a pod whose containers the agent stopped because the node shut down, made
/// from the last status it reported: no container is ready or running any more, so the
/// Endpoints drop the pod at once, and the agent's next start restarts its containers (as a
/// kubelet does after a node reboot). The phase stays: the pod is not finished.
pub fn stopped_status(last: &Value, now: jiff::Timestamp) -> Value {
    let now_s = format_time(now);
    let mut st = last.clone();
    if let Some(conds) = st.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conds.iter_mut() {
            if (c["type"] == "Ready" || c["type"] == "ContainersReady") && c["status"] != "False" {
                c["status"] = json!("False");
                c["reason"] = json!("NodeShutdown");
                c["lastTransitionTime"] = json!(now_s);
            }
        }
    }
    for key in ["containerStatuses", "initContainerStatuses"] {
        let Some(list) = st.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        for cs in list.iter_mut() {
            cs["ready"] = json!(false);
            if let Some(running) = cs.pointer("/state/running").cloned() {
                cs["started"] = json!(false);
                cs["state"] = json!({"terminated": {
                    "exitCode": 143,
                    "reason": "NodeShutdown",
                    "message": "the node agent stopped the container as the node shut down",
                    "startedAt": running.get("startedAt").cloned().unwrap_or(Value::Null),
                    "finishedAt": now_s,
                }});
            }
        }
    }
    st
}

fn condition(old: &[Value], type_: &str, status: bool, reason: Option<&str>, now: &str) -> Value {
    let status_s = if status { "True" } else { "False" };
    let prev = old.iter().find(|c| c["type"] == type_);
    let since = match prev {
        Some(p) if p["status"] == status_s => p["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let mut c = json!({
        "type": type_,
        "status": status_s,
        "lastProbeTime": Value::Null,
        "lastTransitionTime": since,
    });
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// Inputs of [`pod_status`] besides the containers.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    /// The pod IP.
    pub pod_ip: Option<String>,
    /// The node IP.
    pub host_ip: String,
    /// When the agent first handled the pod.
    pub start_time: Option<jiff::Timestamp>,
    /// Why the sandbox cannot be made, if it cannot.
    pub sandbox_error: Option<String>,
}

/// The whole `status` of a pod: `init_views` for `spec.initContainers`, `views` for
/// `spec.containers`, in spec order.
pub fn pod_status(
    pod: &Pod,
    init_views: &[ContainerView],
    views: &[ContainerView],
    facts: &PodFacts,
    now: jiff::Timestamp,
) -> Value {
    let now_s = format_time(now);
    let spec = pod.spec.clone().unwrap_or_default();
    let init = spec.init_containers.clone().unwrap_or_default();
    let statuses: Vec<Value> = spec
        .containers
        .iter()
        .zip(views)
        .map(|(c, v)| container_status(c, v))
        .collect();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let app_started = views.iter().any(|v| v.current.is_some());
    let init_state = init_state(restart_policy, &init, init_views, app_started);
    let initialized = init_state == InitState::Done;
    let init_statuses: Vec<Value> = init
        .iter()
        .zip(init_views)
        .map(|(c, v)| init_container_status(c, v, initialized))
        .collect();
    let phase = match &init_state {
        InitState::Done => phase(restart_policy, &statuses),
        InitState::Pending(_) => "Pending",
        InitState::Failed(_) => "Failed",
    };
    let old: Vec<Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .map(|cs| {
            cs.iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default();
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s["ready"] == true);
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let not_ready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let reason = |ok: bool| (!ok).then_some(not_ready_reason);
    let scheduled = old
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .unwrap_or_else(|| condition(&old, "PodScheduled", true, None, &now_s));
    let conditions = vec![
        condition(
            &old,
            "PodReadyToStartContainers",
            facts.pod_ip.is_some() || facts.sandbox_error.is_none(),
            None,
            &now_s,
        ),
        match &init_state {
            InitState::Done => condition(&old, "Initialized", true, None, &now_s),
            InitState::Pending(names) | InitState::Failed(names) => {
                let mut c = condition(
                    &old,
                    "Initialized",
                    false,
                    Some("ContainersNotInitialized"),
                    &now_s,
                );
                c["message"] = json!(format!(
                    "containers with incomplete status: [{}]",
                    names.join(" ")
                ));
                c
            }
        },
        condition(&old, "Ready", all_ready, reason(all_ready), &now_s),
        condition(
            &old,
            "ContainersReady",
            all_ready,
            reason(all_ready),
            &now_s,
        ),
        scheduled,
    ];
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": facts.host_ip,
        "hostIPs": [{"ip": facts.host_ip}],
        "containerStatuses": statuses,
        "qosClass": qos_class(&spec.containers, &init),
    });
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    if let Some(ip) = &facts.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if let Some(t) = facts.start_time {
        status["startTime"] = json!(format_time(t));
    }
    if let Some(e) = &facts.sandbox_error {
        status["message"] = json!(e);
        status["reason"] = json!("SandboxError");
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_sandbox::ExitStatus;

    /// The pod status's condition of type `t`.
    fn condition(status: &Value, t: &str) -> Value {
        status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == t))
            .unwrap_or_else(|| panic!("no {t} condition in {status}"))
            .clone()
    }

    fn info(attempt: u32, exit: Option<i32>) -> ContainerInfo {
        let t = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        ContainerInfo {
            id: format!("u-app-{attempt}"),
            name: "app".into(),
            attempt,
            pid: 10,
            started_at: t,
            finished_at: exit.map(|_| t),
            exit: exit.map(|code| ExitStatus {
                code,
                signal: (code == 137).then_some(9),
                oom_killed: false,
            }),
            stop_signal: 15,
            image_id: "sha256:abc".into(),
            log_path: "/l".into(),
        }
    }

    fn c(v: Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn container_states() {
        let spec = c(json!({"name": "app", "image": "agent-registry:1.0.0"}));
        let creating = container_status(&spec, &ContainerView::default());
        assert_eq!(creating["state"]["waiting"]["reason"], "ContainerCreating");
        assert_eq!(creating["ready"], false);

        let running = container_status(
            &spec,
            &ContainerView {
                current: Some(info(1, None)),
                previous: Some(info(0, Some(137))),
                ready: true,
                started: true,
                ..Default::default()
            },
        );
        assert!(running["state"]["running"]["startedAt"].is_string());
        assert_eq!(running["lastState"]["terminated"]["exitCode"], 137);
        assert_eq!(running["lastState"]["terminated"]["signal"], 9);
        assert_eq!(running["restartCount"], 1);
        assert_eq!(running["ready"], true);
        assert_eq!(running["imageID"], "sha256:abc");
        assert_eq!(running["containerID"], "aos://u-app-1");

        let crash = container_status(
            &spec,
            &ContainerView {
                current: Some(info(2, Some(1))),
                previous: Some(info(1, Some(1))),
                waiting: Some((
                    "CrashLoopBackOff".into(),
                    "back-off 20s restarting failed container=app pod=p".into(),
                )),
                ..Default::default()
            },
        );
        assert_eq!(crash["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(crash["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(crash["restartCount"], 2);

        let done = container_status(
            &spec,
            &ContainerView {
                current: Some(info(0, Some(0))),
                ..Default::default()
            },
        );
        assert_eq!(done["state"]["terminated"]["reason"], "Completed");
    }

    #[test]
    fn phases() {
        let running = json!({"state": {"running": {}}, "lastState": {}});
        let ok = json!({"state": {"terminated": {"exitCode": 0}}, "lastState": {}});
        let failed = json!({"state": {"terminated": {"exitCode": 1}}, "lastState": {}});
        let creating = json!({"state": {"waiting": {}}, "lastState": {}});
        let backoff =
            json!({"state": {"waiting": {}}, "lastState": {"terminated": {"exitCode": 1}}});
        let cases = [
            ("Always", vec![running.clone()], "Running"),
            ("Always", vec![creating.clone(), running.clone()], "Pending"),
            ("Always", vec![backoff.clone()], "Running"),
            ("Always", vec![ok.clone()], "Running"),
            ("Never", vec![ok.clone(), ok.clone()], "Succeeded"),
            ("Never", vec![ok.clone(), failed.clone()], "Failed"),
            ("OnFailure", vec![failed.clone()], "Running"),
            ("OnFailure", vec![ok.clone()], "Succeeded"),
            ("Never", vec![running.clone(), failed.clone()], "Running"),
        ];
        for (policy, statuses, want) in cases {
            assert_eq!(phase(policy, &statuses), want, "{policy} {statuses:?}");
        }
    }

    #[test]
    fn qos() {
        let g = c(json!({"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}));
        let b = c(
            json!({"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "1Gi"}}}),
        );
        let e = c(json!({"name": "a"}));
        assert_eq!(qos_class(std::slice::from_ref(&g), &[]), "Guaranteed");
        assert_eq!(qos_class(std::slice::from_ref(&b), &[]), "Burstable");
        assert_eq!(qos_class(std::slice::from_ref(&e), &[]), "BestEffort");
        assert_eq!(
            qos_class(&[g], &[e]),
            "Burstable",
            "an init container counts"
        );
    }

    #[test]
    fn stopped_status_is_not_ready_and_terminated() {
        let last = json!({
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            ],
            "containerStatuses": [{"name": "app", "ready": true, "started": true, "restartCount": 2,
                "state": {"running": {"startedAt": "2020-01-01T00:00:01Z"}}}],
        });
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let st = stopped_status(&last, now);
        assert_eq!(st["phase"], "Running");
        let cond = |t: &str| condition(&st, t);
        assert_eq!(cond("Ready")["status"], "False");
        assert_eq!(cond("Ready")["reason"], "NodeShutdown");
        assert_eq!(cond("ContainersReady")["status"], "False");
        assert_eq!(cond("PodScheduled")["status"], "True");
        let cs = &st["containerStatuses"][0];
        assert_eq!(cs["ready"], false);
        assert_eq!(cs["restartCount"], 2);
        assert_eq!(cs["state"]["terminated"]["reason"], "NodeShutdown");
        assert_eq!(
            cs["state"]["terminated"]["startedAt"],
            "2020-01-01T00:00:01Z"
        );
    }

    #[test]
    fn pod_status_conditions_keep_transition_times() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u"},
            "spec": {"containers": [{"name": "app", "image": "i"}]},
            "status": {"conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            ]}
        }))
        .unwrap();
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let v = ContainerView {
            current: Some(info(0, None)),
            ready: false,
            started: true,
            ..Default::default()
        };
        let facts = PodFacts {
            pod_ip: Some("10.88.0.2".into()),
            host_ip: "192.168.1.2".into(),
            start_time: Some(now),
            sandbox_error: None,
        };
        let s = pod_status(&pod, &[], &[v], &facts, now);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.88.0.2");
        assert_eq!(s["podIPs"][0]["ip"], "10.88.0.2");
        let cond = |t: &str| condition(&s, t);
        assert_eq!(cond("Ready")["status"], "False");
        assert_eq!(cond("Ready")["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(cond("Ready")["reason"], "ContainersNotReady");
        assert_eq!(
            cond("PodScheduled")["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(cond("Initialized")["status"], "True");
        assert_eq!(s["qosClass"], "BestEffort");
    }
}
