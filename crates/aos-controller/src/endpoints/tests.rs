//! The Endpoints controller against the fake cluster.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::kinds::tests::{ENDPOINTS, SERVICES};
use crate::testing::Harness;

fn service(name: &str, target_port: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name, "tier": "api"}},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target_port}]
        }
    })
}

fn web_pod(name: &str, ip: Option<&str>, ready: bool, port: (&str, i64)) -> Value {
    let mut status = json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
    });
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": "app", "image": "web:1",
                            "ports": [{"name": port.0, "containerPort": port.1, "protocol": "TCP"}]}]
        },
        "status": status
    })
}

fn set_ready(h: &Harness, pod: &str, ready: bool) {
    h.update_pod(pod, |p| {
        p["status"]["conditions"] =
            json!([{"type": "Ready", "status": if ready { "True" } else { "False" }}]);
    });
}

/// `(ready pod names, not-ready pod names)` over every subset.
fn names(ep: &Value) -> (Vec<String>, Vec<String>) {
    let collect = |field: &str| {
        let mut v: Vec<String> = ep["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
            .map(|a| a["targetRef"]["name"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    (collect("addresses"), collect("notReadyAddresses"))
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn readiness_moves_addresses() {
    let h = Harness::start().await;
    h.create(&web_pod("w1", Some("10.0.0.1"), false, ("http", 3000)))
        .await;
    h.create(&web_pod("w2", Some("10.0.0.2"), false, ("http", 3000)))
        .await;
    h.create(&web_pod("no-ip", None, true, ("http", 3000)))
        .await;
    let mut other = web_pod("other", Some("10.0.0.9"), true, ("http", 3000));
    other["metadata"]["labels"]["app"] = json!("other");
    h.create(&other).await;
    h.create(&service("web", json!(3000))).await;

    h.eventually("both not ready", |h| {
        h.endpoints("web")
            .is_some_and(|ep| names(&ep) == (vec![], strs(&["w1", "w2"])))
    })
    .await;
    let ep = h.endpoints("web").unwrap();
    assert_eq!(
        ep["metadata"]["labels"],
        json!({"app": "web", "tier": "api"})
    );
    assert!(ep["metadata"].get("ownerReferences").is_none());
    assert_eq!(
        ep["subsets"],
        json!([{
            "notReadyAddresses": [
                {"ip": "10.0.0.1", "nodeName": "node-1",
                 "targetRef": {"kind": "Pod", "namespace": "default", "name": "w1",
                               "uid": meta::uid(&h.pod("w1").unwrap())}},
                {"ip": "10.0.0.2", "nodeName": "node-1",
                 "targetRef": {"kind": "Pod", "namespace": "default", "name": "w2",
                               "uid": meta::uid(&h.pod("w2").unwrap())}}
            ],
            "ports": [{"name": "http", "port": 3000, "protocol": "TCP"}]
        }])
    );

    set_ready(&h, "w1", true);
    h.eventually("w1 ready", |h| {
        h.endpoints("web")
            .is_some_and(|ep| names(&ep) == (strs(&["w1"]), strs(&["w2"])))
    })
    .await;
    set_ready(&h, "w2", true);
    set_ready(&h, "w1", false);
    h.eventually("w2 ready, w1 not", |h| {
        h.endpoints("web")
            .is_some_and(|ep| names(&ep) == (strs(&["w2"]), strs(&["w1"])))
    })
    .await;

    // The pod gets an IP: it joins.
    h.update_pod("no-ip", |p| p["status"]["podIP"] = json!("10.0.0.3"));
    h.eventually("no-ip joins", |h| {
        h.endpoints("web")
            .is_some_and(|ep| names(&ep) == (strs(&["no-ip", "w2"]), strs(&["w1"])))
    })
    .await;

    // A change that does not alter the endpoint set writes nothing.
    let writes = h.fake.calls("replace", "endpoints") + h.fake.calls("create", "endpoints");
    h.update_pod("w2", |p| {
        p["metadata"]["annotations"] = json!({"touched": "yes"})
    });
    h.update_pod("other", |p| {
        p["metadata"]["annotations"] = json!({"touched": "yes"})
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        h.fake.calls("replace", "endpoints") + h.fake.calls("create", "endpoints"),
        writes
    );
    h.stop().await;
}

#[tokio::test]
async fn named_target_port_splits_subsets() {
    let h = Harness::start().await;
    h.create(&web_pod("a", Some("10.0.0.1"), true, ("http", 3000)))
        .await;
    h.create(&web_pod("b", Some("10.0.0.2"), true, ("http", 8080)))
        .await;
    h.create(&web_pod("c", Some("10.0.0.3"), true, ("metrics", 9090)))
        .await;
    h.create(&service("web", json!("http"))).await;
    h.eventually("two subsets", |h| {
        h.endpoints("web")
            .is_some_and(|ep| ep["subsets"].as_array().is_some_and(|s| s.len() == 2))
    })
    .await;
    let ep = h.endpoints("web").unwrap();
    let by_port: Vec<(i64, Vec<&str>)> = ep["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["ports"][0]["port"].as_i64().unwrap(),
                s["addresses"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["targetRef"]["name"].as_str().unwrap())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(by_port, vec![(3000, vec!["a"]), (8080, vec!["b"])]);
    assert_eq!(ep["subsets"][0]["ports"][0]["name"], "http");
    h.stop().await;
}

#[tokio::test]
async fn terminating_pods_leave_at_once() {
    let h = Harness::start().await;
    h.create(&web_pod("a", Some("10.0.0.1"), true, ("http", 3000)))
        .await;
    h.create(&web_pod("b", Some("10.0.0.2"), true, ("http", 3000)))
        .await;
    h.create(&service("web", json!(3000))).await;
    h.eventually("both ready", |h| {
        h.endpoints("web")
            .is_some_and(|ep| names(&ep).0 == strs(&["a", "b"]))
    })
    .await;
    // Deleting a bound pod is graceful: it stays (still Ready) with a deletionTimestamp.
    h.update_pod("a", |p| {
        p["metadata"]["deletionTimestamp"] = json!("2024-06-01T12:00:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    });
    h.eventually("a gone from every list", |h| {
        h.endpoints("web")
            .is_some_and(|ep| names(&ep) == (strs(&["b"]), vec![]))
    })
    .await;
    // The last one goes: the subsets go too.
    h.update_pod("b", |p| p["status"]["phase"] = json!("Succeeded"));
    h.eventually("empty", |h| {
        h.endpoints("web")
            .is_some_and(|ep| ep.get("subsets").is_none())
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn selectorless_service_endpoints_are_the_users() {
    let h = Harness::start().await;
    let mut external = service("external", json!(5432));
    external["spec"].as_object_mut().unwrap().remove("selector");
    h.create(&external).await;
    let user_ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "external", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"name": "http", "port": 5432}]}]
    });
    let stored = h.create(&user_ep).await;
    h.create(&web_pod("a", Some("10.0.0.1"), true, ("http", 3000)))
        .await;
    // A managed service alongside, to know the controller has run.
    h.create(&service("web", json!(3000))).await;
    h.eventually("managed endpoints written", |h| {
        h.endpoints("web").is_some()
    })
    .await;
    // The user edits theirs: still left alone.
    h.fake
        .modify(&ENDPOINTS, Some("default"), "external", |e| {
            e["subsets"][0]["addresses"][0]["ip"] = json!("192.0.2.11")
        })
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let now = h.endpoints("external").unwrap();
    assert_eq!(now["subsets"][0]["addresses"][0]["ip"], "192.0.2.11");
    assert_eq!(now["subsets"][0]["ports"], stored["subsets"][0]["ports"]);
    assert_eq!(h.fake.calls("replace", "endpoints"), 0);
    h.stop().await;
}

#[tokio::test]
async fn service_deletion_removes_endpoints_and_edits_are_reverted() {
    let h = Harness::start().await;
    h.create(&web_pod("a", Some("10.0.0.1"), true, ("http", 3000)))
        .await;
    h.create(&service("web", json!(3000))).await;
    h.eventually("written", |h| h.endpoints("web").is_some())
        .await;
    let good = h.endpoints("web").unwrap()["subsets"].clone();

    // Someone edits the managed Endpoints: the controller puts them back.
    h.fake
        .modify(&ENDPOINTS, Some("default"), "web", |e| {
            e["subsets"] = json!([])
        })
        .unwrap();
    h.eventually("restored", |h| {
        h.endpoints("web").is_some_and(|e| e["subsets"] == good)
    })
    .await;
    // Or deletes them: they come back.
    h.fake
        .delete(&ENDPOINTS, Some("default"), "web", &Default::default())
        .await
        .unwrap();
    h.eventually("re-created", |h| {
        h.endpoints("web").is_some_and(|e| e["subsets"] == good)
    })
    .await;

    h.fake
        .delete(&SERVICES, Some("default"), "web", &Default::default())
        .await
        .unwrap();
    h.eventually("endpoints deleted", |h| h.endpoints("web").is_none())
        .await;
    assert!(h.pod("a").is_some());
    h.stop().await;
}

#[tokio::test]
async fn leftover_endpoints_of_deleted_services_go_at_start() {
    let fake = crate::cluster::fake::FakeCluster::new();
    fake.create(
        &ENDPOINTS,
        Some("default"),
        &json!({"metadata": {"name": "orphan"}, "subsets": []}),
    )
    .await
    .unwrap();
    let manager = crate::ControllerManager::new(
        fake.clone(),
        crate::kinds::tests::kinds(),
        crate::ControllerOptions::default(),
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(manager.run(cancel.clone()));
    for _ in 0..2000 {
        if fake.object(&ENDPOINTS, Some("default"), "orphan").is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(fake.object(&ENDPOINTS, Some("default"), "orphan").is_none());
    cancel.cancel();
    task.await.unwrap().unwrap();
}

#[test]
fn subsets_are_deterministic_and_complete() {
    let svc = json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [
                {"name": "metrics", "port": 9090, "targetPort": 9090},
                {"name": "http", "port": 80, "targetPort": "http", "appProtocol": "http"},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]
        }
    });
    let mut p1 = web_pod("p1", Some("10.0.0.2"), true, ("http", 3000));
    p1["spec"]["hostname"] = json!("p1");
    p1["spec"]["subdomain"] = json!("web");
    let p2 = web_pod("p2", Some("10.0.0.1"), true, ("http", 3000));
    let mut p3 = web_pod("p3", Some("10.0.0.3"), true, ("http", 3000));
    p3["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    let pods: Vec<Arc<Value>> = [p1, p2, p3].into_iter().map(Arc::new).collect();
    let mut reversed = pods.clone();
    reversed.reverse();
    let subsets = compute_subsets(&svc, &pods);
    assert_eq!(subsets, compute_subsets(&svc, &reversed));
    assert_eq!(subsets.len(), 1);
    let ips: Vec<&str> = subsets[0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(subsets[0]["addresses"][1]["hostname"], "p1");
    assert_eq!(
        subsets[0]["ports"],
        json!([
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "http", "port": 3000, "protocol": "TCP", "appProtocol": "http"},
            {"name": "metrics", "port": 9090, "protocol": "TCP"}
        ])
    );
    assert_eq!(
        compute_subsets(&json!({"spec": {"ports": []}}), &pods),
        Vec::<Value>::new()
    );
}
