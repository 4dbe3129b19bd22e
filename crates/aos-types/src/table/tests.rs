use serde_json::json;

use super::*;
use crate::resource::{all, by_kind};
use crate::time::parse_rfc3339;

const NOW: &str = "2024-05-01T12:00:00Z";

fn now() -> i64 {
    parse_rfc3339(NOW).unwrap()
}

fn headers(api_version: &str, kind: &str, priority: u8) -> Vec<String> {
    columns(by_kind(api_version, kind).unwrap())
        .into_iter()
        .filter(|c| c.priority <= priority)
        .map(|c| c.name.to_ascii_uppercase())
        .collect()
}

#[test]
fn columns_match_kubectl() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("v1", "Namespace", "NAME STATUS AGE", "NAME STATUS AGE"),
        (
            "v1",
            "Node",
            "NAME STATUS ROLES AGE VERSION",
            "NAME STATUS ROLES AGE VERSION INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME",
        ),
        (
            "v1",
            "Pod",
            "NAME READY STATUS RESTARTS AGE",
            "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES",
        ),
        (
            "apps/v1",
            "Deployment",
            "NAME READY UP-TO-DATE AVAILABLE AGE",
            "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR",
        ),
        (
            "apps/v1",
            "ReplicaSet",
            "NAME DESIRED CURRENT READY AGE",
            "NAME DESIRED CURRENT READY AGE CONTAINERS IMAGES SELECTOR",
        ),
        (
            "v1",
            "Service",
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE",
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR",
        ),
        (
            "v1",
            "Endpoints",
            "NAME ENDPOINTS AGE",
            "NAME ENDPOINTS AGE",
        ),
        ("v1", "ConfigMap", "NAME DATA AGE", "NAME DATA AGE"),
        ("v1", "Secret", "NAME TYPE DATA AGE", "NAME TYPE DATA AGE"),
        (
            "v1",
            "Event",
            "LAST SEEN TYPE REASON OBJECT MESSAGE",
            "LAST SEEN TYPE REASON OBJECT SUBOBJECT SOURCE MESSAGE FIRST SEEN COUNT NAME",
        ),
        (
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE",
            "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE",
        ),
        (
            "networking.istio.io/v1",
            "VirtualService",
            "NAME GATEWAYS HOSTS AGE",
            "NAME GATEWAYS HOSTS AGE",
        ),
        (
            "networking.istio.io/v1",
            "DestinationRule",
            "NAME HOST AGE",
            "NAME HOST AGE",
        ),
        ("networking.istio.io/v1", "Gateway", "NAME AGE", "NAME AGE"),
        (
            "coordination.k8s.io/v1",
            "Lease",
            "NAME HOLDER AGE",
            "NAME HOLDER AGE",
        ),
    ];
    for (av, kind, normal, wide) in cases {
        assert_eq!(headers(av, kind, 0).join(" "), *normal, "{kind}");
        assert_eq!(headers(av, kind, 1).join(" "), *wide, "{kind} wide");
    }
}

#[test]
fn rows_have_one_cell_per_column_for_every_kind() {
    for rt in all() {
        for obj in [
            json!({}),
            json!({"metadata": {"name": "x", "creationTimestamp": NOW}}),
            json!(null),
        ] {
            assert_eq!(row(rt, &obj, now()).len(), columns(rt).len(), "{}", rt.kind);
        }
    }
}

fn pod_row(status: serde_json::Value, extra_meta: serde_json::Value) -> Vec<Value> {
    let mut meta = json!({"name": "web-1", "creationTimestamp": "2024-05-01T11:55:00Z"});
    if let (Some(m), Some(e)) = (meta.as_object_mut(), extra_meta.as_object()) {
        m.extend(e.clone());
    }
    let pod = json!({"metadata": meta,
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "init"}], "nodeName": "node-1"},
        "status": status});
    row(by_kind("v1", "Pod").unwrap(), &pod, now())
}

#[test]
fn pod_status_like_kubectl() {
    let running = json!({"state": {"running": {}}, "ready": true, "restartCount": 0});
    let cases = vec![
        (json!({}), json!({}), "0/2", "Pending", "0"),
        (
            json!({"phase": "Pending", "initContainerStatuses": [{"state": {"waiting": {"reason": "PodInitializing"}}}]}),
            json!({}),
            "0/2",
            "Init:0/1",
            "0",
        ),
        (
            json!({"phase": "Pending", "initContainerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
            json!({}),
            "0/2",
            "Init:ImagePullBackOff",
            "0",
        ),
        (
            json!({"phase": "Pending", "initContainerStatuses": [{"state": {"terminated": {"exitCode": 2}}, "restartCount": 1}]}),
            json!({}),
            "0/2",
            "Init:ExitCode:2",
            "1",
        ),
        (
            json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
                "containerStatuses": [running.clone(), running.clone()]}),
            json!({}),
            "2/2",
            "Running",
            "0",
        ),
        (
            json!({"phase": "Running",
                "containerStatuses": [running.clone(),
                    {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 4,
                     "lastState": {"terminated": {"finishedAt": "2024-05-01T11:58:00Z"}}}]}),
            json!({}),
            "1/2",
            "CrashLoopBackOff",
            "4 (2m ago)",
        ),
        (
            json!({"phase": "Running",
                "containerStatuses": [running.clone(), {"state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
            json!({}),
            "1/2",
            "Signal:9",
            "0",
        ),
        (
            json!({"phase": "Failed", "reason": "Evicted"}),
            json!({}),
            "0/2",
            "Evicted",
            "0",
        ),
        (
            json!({"phase": "Running", "containerStatuses": [running.clone(), running.clone()]}),
            json!({"deletionTimestamp": "2024-05-01T11:59:00Z"}),
            "2/2",
            "Terminating",
            "0",
        ),
        (
            json!({"phase": "Succeeded",
                "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                                      {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
            json!({}),
            "0/2",
            "Completed",
            "0",
        ),
    ];
    for (status, meta, ready, want, restarts) in cases {
        let r = pod_row(status.clone(), meta);
        assert_eq!(r[1], json!(ready), "{status}");
        assert_eq!(r[2], json!(want), "{status}");
        assert_eq!(r[3], json!(restarts), "{status}");
        assert_eq!(r[4], json!("5m"));
        assert_eq!(r[6], json!("node-1"));
        assert_eq!(r[5], json!("<none>"));
    }
}

#[test]
fn workload_rows() {
    let d = json!({"metadata": {"name": "agent-registry", "creationTimestamp": "2024-04-29T09:00:00Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "agent-registry"}},
                 "template": {"spec": {"containers": [{"name": "a", "image": "agent-registry:1.0.0"}, {"name": "b", "image": "envoy:1"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
    assert_eq!(
        row(by_kind("apps/v1", "Deployment").unwrap(), &d, now()),
        vec![
            json!("agent-registry"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("2d3h"),
            json!("a,b"),
            json!("agent-registry:1.0.0,envoy:1"),
            json!("app=agent-registry")
        ]
    );
    let rs_row = row(by_kind("apps/v1", "ReplicaSet").unwrap(), &d, now());
    assert_eq!(
        &rs_row[..4],
        &[json!("agent-registry"), json!(3), json!(0), json!(2)]
    );
}

#[test]
fn service_and_endpoints_rows() {
    let svc = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:59:15Z"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                 "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
    assert_eq!(
        row(by_kind("v1", "Service").unwrap(), &svc, now()),
        vec![
            json!("web"),
            json!("NodePort"),
            json!("10.96.0.10"),
            json!("<none>"),
            json!("80:30080/TCP,53/UDP"),
            json!("45s"),
            json!("app=web")
        ]
    );
    let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]}});
    assert_eq!(
        row(by_kind("v1", "Service").unwrap(), &lb, now())[3],
        json!("<pending>")
    );

    let ep = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}],
        "ports": [{"port": 3000}]}]});
    assert_eq!(
        row(by_kind("v1", "Endpoints").unwrap(), &ep, now())[1],
        json!("10.0.0.1:3000,10.0.0.2:3000,10.0.0.3:3000 + 1 more...")
    );
    assert_eq!(
        row(by_kind("v1", "Endpoints").unwrap(), &json!({}), now())[1],
        json!("<none>")
    );
}

#[test]
fn other_rows() {
    let ns = json!({"metadata": {"name": "agent-os", "creationTimestamp": "2024-05-01T09:00:00Z"}, "status": {"phase": "Active"}});
    assert_eq!(
        row(by_kind("v1", "Namespace").unwrap(), &ns, now()),
        vec![json!("agent-os"), json!("Active"), json!("3h")]
    );

    let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "aos-0.1.0"},
                   "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}]}});
    let r = row(by_kind("v1", "Node").unwrap(), &node, now());
    assert_eq!(
        &r[..3],
        &[
            json!("n1"),
            json!("Ready,SchedulingDisabled"),
            json!("control-plane")
        ]
    );
    assert_eq!(r[4], json!("aos-0.1.0"));
    assert_eq!(r[5], json!("192.168.1.5"));
    assert_eq!(r[7], json!("<unknown>"));

    let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "", "b": ""}});
    assert_eq!(
        &row(by_kind("v1", "Secret").unwrap(), &secret, now())[1..3],
        &[json!("Opaque"), json!(2)]
    );
    let cm = json!({"metadata": {"name": "c"}, "data": {"a": ""}, "binaryData": {"b": ""}});
    assert_eq!(
        row(by_kind("v1", "ConfigMap").unwrap(), &cm, now())[1],
        json!(2)
    );

    let ev = json!({"metadata": {"name": "p.1"}, "type": "Warning", "reason": "BackOff", "message": "Back-off restarting\n",
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
        "source": {"component": "aos-node", "host": "n1"}, "count": 5,
        "firstTimestamp": "2024-05-01T11:00:00Z", "lastTimestamp": "2024-05-01T11:59:30Z"});
    assert_eq!(
        row(by_kind("v1", "Event").unwrap(), &ev, now()),
        vec![
            json!("30s (x5 over 60m)"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web-1"),
            json!("spec.containers{web}"),
            json!("aos-node, n1"),
            json!("Back-off restarting"),
            json!("60m"),
            json!("5"),
            json!("p.1")
        ]
    );

    let hpa = crate::parse_manifests(
        "hpa.yaml",
        include_str!("../../testdata/seed/corrected/hpa.yaml"),
    )
    .unwrap()
    .remove(0)
    .value;
    let mut hpa = hpa;
    hpa["status"] = json!({"currentReplicas": 3, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12, "averageValue": "60m"}}}]});
    assert_eq!(
        row(
            by_kind("autoscaling/v2", "HorizontalPodAutoscaler").unwrap(),
            &hpa,
            now()
        )[1..6],
        [
            json!("Deployment/agent-registry"),
            json!("cpu: 12%/70%, memory: <unknown>/80% + 1 more..."),
            json!("3"),
            json!(10),
            json!(3)
        ]
    );

    let vs = crate::parse_manifests(
        "vs.yaml",
        include_str!("../../testdata/seed/corrected/virtualservice.yaml"),
    )
    .unwrap()
    .remove(0)
    .value;
    assert_eq!(
        row(
            by_kind("networking.istio.io/v1", "VirtualService").unwrap(),
            &vs,
            now()
        )[1..3],
        [
            json!("[\"agent-os-gateway\"]"),
            json!("[\"agent-registry.agent-os.svc.cluster.local\",\"agent-registry.example.com\"]")
        ]
    );
    let dr = json!({"metadata": {"name": "d"}, "spec": {"host": "agent-registry"}});
    assert_eq!(
        row(
            by_kind("networking.istio.io/v1", "DestinationRule").unwrap(),
            &dr,
            now()
        )[1],
        json!("agent-registry")
    );
    assert_eq!(
        row(
            by_kind("networking.istio.io/v1", "Gateway").unwrap(),
            &dr,
            now()
        )[1],
        json!("<unknown>")
    );
}
