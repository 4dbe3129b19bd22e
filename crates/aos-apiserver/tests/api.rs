//! End-to-end tests of the API server through aos-client.

mod support;

use std::time::{Duration, Instant};

use aos_client::{ClientError, DeleteParams, ListParams, Patch};
use aos_store::Store as _;
use futures::StreamExt as _;
use http::Method;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn api_err(e: ClientError) -> aos_client::Status {
    match e {
        ClientError::Api(s) => *s,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn crud_and_conflicts() {
    let h = start().await;
    let cm = rt("v1", "ConfigMap");
    let created = h
        .client
        .create(cm, Some("default"), &configmap("a", json!({"x": "1"})))
        .await
        .unwrap()
        .value;
    assert_eq!(created["metadata"]["namespace"], "default");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(
        created["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let got = h.client.get(cm, Some("default"), "a").await.unwrap();
    assert_eq!(got, created);

    // Create again: 409 AlreadyExists.
    let e = api_err(
        h.client
            .create(cm, Some("default"), &configmap("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));

    // Replace with the current resourceVersion works; a stale one is a 409 Conflict.
    let mut next = got.clone();
    next["data"]["k"] = json!("v2");
    let replaced = h
        .client
        .replace(cm, Some("default"), "a", &next)
        .await
        .unwrap()
        .value;
    assert_eq!(replaced["data"]["k"], "v2");
    assert_ne!(rv(&replaced), rv(&got));
    let e = api_err(
        h.client
            .replace(cm, Some("default"), "a", &next)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    assert_eq!(e.reason, "Conflict");
    assert!(e.message.contains("the object has been modified; please apply your changes to the latest version and try again"), "{}", e.message);

    // PUT without resourceVersion is unconditional.
    let mut blind = next.clone();
    blind["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    blind["data"]["k"] = json!("v3");
    let r = h
        .client
        .replace(cm, Some("default"), "a", &blind)
        .await
        .unwrap()
        .value;
    assert_eq!(r["data"]["k"], "v3");
    // Server-owned metadata survives.
    assert_eq!(r["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        r["metadata"]["creationTimestamp"],
        created["metadata"]["creationTimestamp"]
    );

    // A no-op write keeps the resourceVersion.
    let same = h
        .client
        .replace(cm, Some("default"), "a", &blind)
        .await
        .unwrap()
        .value;
    assert_eq!(rv(&same), rv(&r));

    // Name in the path and the body must agree.
    let e = api_err(
        h.client
            .replace(cm, Some("default"), "b", &blind)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);

    // Patches: merge, strategic, JSON.
    let p = h
        .client
        .patch(
            cm,
            Some("default"),
            "a",
            Patch::Merge(json!({"data": {"m": "1"}})),
            None,
        )
        .await
        .unwrap()
        .value;
    assert_eq!(p["data"], json!({"k": "v3", "m": "1"}));
    let p = h
        .client
        .patch(
            cm,
            Some("default"),
            "a",
            Patch::Strategic(json!({"metadata": {"labels": {"s": "2"}}})),
            None,
        )
        .await
        .unwrap()
        .value;
    assert_eq!(p["metadata"]["labels"]["s"], "2");
    let p = h
        .client
        .patch(
            cm,
            Some("default"),
            "a",
            Patch::Json(json!([{"op": "remove", "path": "/data/m"}])),
            None,
        )
        .await
        .unwrap()
        .value;
    assert_eq!(p["data"], json!({"k": "v3"}));
    // A patch carrying a stale resourceVersion is a conflict.
    let e = api_err(
        h.client
            .patch(
                cm,
                Some("default"),
                "a",
                Patch::Merge(json!({"metadata": {"resourceVersion": rv(&created)}})),
                None,
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);

    // List, then delete.
    let list = h
        .client
        .list(cm, Some("default"), &ListParams::default())
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(list.resource_version.parse::<i64>().unwrap() >= rv(&p).parse::<i64>().unwrap());
    h.client
        .delete(cm, Some("default"), "a", &DeleteParams::default())
        .await
        .unwrap();
    let e = api_err(h.client.get(cm, Some("default"), "a").await.unwrap_err());
    assert_eq!(e.code, 404);
    assert_eq!(e.message, "configmaps \"a\" not found");
    h.stop().await;
}

#[tokio::test]
async fn generate_name_and_namespace_checks() {
    let h = start().await;
    let cm = rt("v1", "ConfigMap");
    let obj =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}});
    let a = h
        .client
        .create(cm, Some("default"), &obj)
        .await
        .unwrap()
        .value;
    let name = a["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // Missing namespace: 404 on the namespace.
    let e = api_err(
        h.client
            .create(cm, Some("nope"), &configmap("x", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );

    // Body namespace must match the path.
    let mut other = configmap("x", json!({}));
    other["metadata"]["namespace"] = json!("kube-system");
    let e = api_err(
        h.client
            .create(cm, Some("default"), &other)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);

    // Kind must match the path.
    let e = api_err(
        h.client
            .create(cm, Some("default"), &pod("p"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    h.stop().await;
}

#[tokio::test]
async fn invalid_objects_get_422_with_causes() {
    let h = start().await;
    let d = rt("apps/v1", "Deployment");
    let e = api_err(
        h.client
            .create(d, Some("default"), &deployment("bad", -1))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert_eq!(e.reason, "Invalid");
    assert!(
        e.message
            .starts_with("Deployment.apps \"bad\" is invalid: spec.replicas: Invalid value: -1"),
        "{}",
        e.message
    );
    let cause = &e.causes()[0];
    assert_eq!(cause.field, "spec.replicas");
    assert_eq!(cause.reason, "FieldValueInvalid");
    h.stop().await;
}

#[tokio::test]
async fn authentication_and_authorization() {
    let h = start_with_tokens("viewertoken,alice,2,\"viewers\"\nnobodytoken,bob,3,\"\"\n").await;
    let cm = rt("v1", "ConfigMap");
    // No token and a wrong token: 401.
    let anon = aos_client::Client::new(h.client.server(), &h.ca_pem(), String::new());
    if let Ok(anon) = anon {
        let e = api_err(anon.get(cm, Some("default"), "x").await.unwrap_err());
        assert_eq!((e.code, e.reason.as_str()), (401, "Unauthorized"));
    }
    let wrong = h.client_with_token("admintoken0123456788");
    let e = api_err(
        wrong
            .list(cm, None, &ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (401, "Unauthorized"));
    // Health needs no token; metrics does.
    assert_eq!(
        &wrong.raw(Method::GET, "/livez", None).await.unwrap()[..],
        b"ok"
    );
    assert_eq!(
        &wrong.raw(Method::GET, "/readyz", None).await.unwrap()[..],
        b"ok"
    );
    assert!(wrong.raw(Method::GET, "/version", None).await.is_ok());
    assert_eq!(
        api_err(wrong.raw(Method::GET, "/metrics", None).await.unwrap_err()).code,
        401
    );
    // A viewer reads but cannot write; a user without groups can do nothing.
    let viewer = h.client_with_token("viewertoken");
    viewer
        .list(cm, Some("default"), &ListParams::default())
        .await
        .unwrap();
    let e = api_err(
        viewer
            .create(cm, Some("default"), &configmap("v", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    let nobody = h.client_with_token("nobodytoken");
    assert_eq!(
        api_err(
            nobody
                .list(cm, Some("default"), &ListParams::default())
                .await
                .unwrap_err()
        )
        .code,
        403
    );
    h.stop().await;
}

#[tokio::test]
async fn plain_http_is_refused() {
    let h = start().await;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.0 400"), "{text}");
    assert!(
        text.contains("Client sent an HTTP request to an HTTPS server"),
        "{text}"
    );
    // The server still serves TLS.
    h.client.raw(Method::GET, "/version", None).await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn watch_from_resource_version() {
    let h = start().await;
    let cm = rt("v1", "ConfigMap");
    h.client
        .create(cm, Some("default"), &configmap("before", json!({})))
        .await
        .unwrap();
    let list = h
        .client
        .list(cm, Some("default"), &ListParams::default())
        .await
        .unwrap();
    let mut w = h
        .client
        .watch(
            cm,
            Some("default"),
            &ListParams::default(),
            &list.resource_version,
        )
        .await
        .unwrap();
    let a = h
        .client
        .create(cm, Some("default"), &configmap("w", json!({})))
        .await
        .unwrap()
        .value;
    h.client
        .patch(
            cm,
            Some("default"),
            "w",
            Patch::Merge(json!({"data": {"z": "1"}})),
            None,
        )
        .await
        .unwrap();
    h.client
        .delete(cm, Some("default"), "w", &DeleteParams::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push((
            ev.type_.clone(),
            ev.object["metadata"]["name"].as_str().unwrap().to_string(),
        ));
        if ev.type_ == "ADDED" {
            assert_eq!(rv(&ev.object), rv(&a));
        }
    }
    assert_eq!(
        seen,
        vec![
            ("ADDED".into(), "w".into()),
            ("MODIFIED".into(), "w".into()),
            ("DELETED".into(), "w".to_string())
        ]
    );

    // resourceVersion absent: synthetic ADDED for what exists.
    let mut w0 = h
        .client
        .watch(cm, Some("default"), &ListParams::default(), "")
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w0.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (ev.type_.as_str(), ev.object["metadata"]["name"].as_str()),
        ("ADDED", Some("before"))
    );
    h.stop().await;
}

#[tokio::test]
async fn watch_selector_transitions() {
    let h = start().await;
    let cm = rt("v1", "ConfigMap");
    let params = ListParams {
        label_selector: Some("app=a".into()),
        ..Default::default()
    };
    let list = h.client.list(cm, Some("default"), &params).await.unwrap();
    let mut w = h
        .client
        .watch(cm, Some("default"), &params, &list.resource_version)
        .await
        .unwrap();
    h.client
        .create(
            cm,
            Some("default"),
            &configmap("other", json!({"app": "b"})),
        )
        .await
        .unwrap();
    h.client
        .create(cm, Some("default"), &configmap("s", json!({"app": "b"})))
        .await
        .unwrap();
    h.client
        .patch(
            cm,
            Some("default"),
            "s",
            Patch::Merge(json!({"metadata": {"labels": {"app": "a"}}})),
            None,
        )
        .await
        .unwrap();
    h.client
        .patch(
            cm,
            Some("default"),
            "s",
            Patch::Merge(json!({"data": {"q": "1"}})),
            None,
        )
        .await
        .unwrap();
    h.client
        .patch(
            cm,
            Some("default"),
            "s",
            Patch::Merge(json!({"metadata": {"labels": {"app": "c"}}})),
            None,
        )
        .await
        .unwrap();
    let mut types = Vec::new();
    for _ in 0..3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(ev.object["metadata"]["name"], "s");
        types.push(ev.type_);
    }
    assert_eq!(types, vec!["ADDED", "MODIFIED", "DELETED"]);

    // A field selector on a watch.
    let params = ListParams {
        field_selector: Some("metadata.name=other".into()),
        ..Default::default()
    };
    let mut w = h
        .client
        .watch(cm, Some("default"), &params, "0")
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.object["metadata"]["name"], "other");
    h.stop().await;
}

#[tokio::test]
async fn watch_compacted_bookmarks_timeout_and_shutdown() {
    let h = start().await;
    let cm = rt("v1", "ConfigMap");
    let first = h
        .client
        .create(cm, Some("default"), &configmap("c1", json!({})))
        .await
        .unwrap()
        .value;
    h.client
        .create(cm, Some("default"), &configmap("c2", json!({})))
        .await
        .unwrap();
    let current = h.store.current_revision().await.unwrap();
    h.store.compact(current).await.unwrap();
    let old = (rv(&first).parse::<i64>().unwrap() - 1).to_string();
    let mut w = h
        .client
        .watch(cm, Some("default"), &ListParams::default(), &old)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.type_, "ERROR");
    let status = ev.error_status().unwrap();
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert!(status.message.contains("too old resource version"));
    assert!(w.next().await.is_none());

    // timeoutSeconds ends the watch, after a bookmark when asked for.
    let params = ListParams {
        timeout_seconds: Some(1),
        bookmarks: true,
        ..Default::default()
    };
    let start = Instant::now();
    let mut w = h
        .client
        .watch(cm, Some("default"), &params, &current.to_string())
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.type_, "BOOKMARK");
    assert_eq!(ev.resource_version(), Some(current.to_string().as_str()));
    assert!(w.next().await.is_none());
    assert!(start.elapsed() < Duration::from_secs(4));

    // Shutdown ends open watches and serve() returns.
    let mut w = h
        .client
        .watch(
            cm,
            Some("default"),
            &ListParams::default(),
            &current.to_string(),
        )
        .await
        .unwrap();
    let metrics = String::from_utf8(
        h.client
            .raw(Method::GET, "/metrics", None)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(metrics.contains("aos_apiserver_watchers 1"), "{metrics}");
    let stop = tokio::spawn(h.stop());
    let end = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap();
    assert!(end.is_none() || end.unwrap().is_err());
    tokio::time::timeout(Duration::from_secs(10), stop)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn table_output() {
    let h = start().await;
    let cm = rt("v1", "ConfigMap");
    h.client
        .create(cm, Some("default"), &configmap("t1", json!({})))
        .await
        .unwrap();
    let table = h
        .client
        .get_table(cm, Some("default"), None, &ListParams::default(), false)
        .await
        .unwrap();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert!(!table["columnDefinitions"].as_array().unwrap().is_empty());
    let row = &table["rows"][0];
    assert_eq!(row["cells"][0], "t1");
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["name"], "t1");
    let one = h
        .client
        .get_table(
            cm,
            Some("default"),
            Some("t1"),
            &ListParams::default(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(one["rows"].as_array().unwrap().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn discovery_documents() {
    let h = start().await;
    let get = |p: &'static str| {
        let c = h.client.clone();
        async move {
            serde_json::from_slice::<Value>(&c.raw(Method::GET, p, None).await.unwrap()).unwrap()
        }
    };
    let version = get("/version").await;
    assert!(
        version["gitVersion"]
            .as_str()
            .unwrap()
            .starts_with("v1.33.0-aos.")
    );
    let api = get("/api").await;
    assert_eq!(api["versions"], json!(["v1"]));
    let apis = get("/apis").await;
    assert!(
        apis["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "apps")
    );
    let v1 = get("/api/v1").await;
    let names: Vec<&str> = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for n in [
        "pods",
        "namespaces",
        "namespaces/finalize",
        "configmaps",
        "secrets",
        "services",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let apps = get("/apis/apps/v1").await;
    let scale = apps["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "deployments/scale")
        .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["group"], "autoscaling");
    let deploy = apps["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "deployments")
        .unwrap();
    assert_eq!(deploy["shortNames"], json!(["deploy"]));
    assert_eq!(
        get("/openapi/v3").await["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .map(|s| s.starts_with("/openapi/v3/apis/apps/v1")),
        Some(true)
    );
    h.stop().await;
}

#[tokio::test]
async fn namespace_lifecycle() {
    let h = start().await;
    let ns = rt("v1", "Namespace");
    let cm = rt("v1", "ConfigMap");
    h.create_namespace("life").await;
    let got = h.client.get(ns, None, "life").await.unwrap();
    assert_eq!(got["status"]["phase"], "Active");
    assert_eq!(got["spec"]["finalizers"], json!(["kubernetes"]));
    h.client
        .create(cm, Some("life"), &configmap("in", json!({})))
        .await
        .unwrap();
    let deleted = h
        .client
        .delete(ns, None, "life", &DeleteParams::default())
        .await
        .unwrap()
        .value;
    assert_eq!(deleted["status"]["phase"], "Terminating");
    assert!(deleted["metadata"]["deletionTimestamp"].is_string());
    let e = api_err(
        h.client
            .create(cm, Some("life"), &configmap("late", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert!(
        e.message.contains(
            "unable to create new content in namespace life because it is being terminated"
        ),
        "{}",
        e.message
    );
    // The namespace controller empties it, then finalizes.
    h.client
        .delete(cm, Some("life"), "in", &DeleteParams::default())
        .await
        .unwrap();
    let mut fin = h.client.get(ns, None, "life").await.unwrap();
    fin["spec"]["finalizers"] = json!([]);
    h.client.finalize_namespace("life", &fin).await.unwrap();
    assert!(
        h.client
            .get(ns, None, "life")
            .await
            .unwrap_err()
            .is_not_found()
    );
    h.stop().await;
}

#[tokio::test]
async fn finalizers_hold_deletion() {
    let h = start().await;
    let cm = rt("v1", "ConfigMap");
    let mut obj = configmap("f", json!({}));
    obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
    h.client.create(cm, Some("default"), &obj).await.unwrap();
    let d = h
        .client
        .delete(cm, Some("default"), "f", &DeleteParams::default())
        .await
        .unwrap()
        .value;
    assert!(d["metadata"]["deletionTimestamp"].is_string());
    let still = h.client.get(cm, Some("default"), "f").await.unwrap();
    assert!(still["metadata"]["deletionTimestamp"].is_string());
    // Deleting again is harmless.
    h.client
        .delete(cm, Some("default"), "f", &DeleteParams::default())
        .await
        .unwrap();
    h.client
        .patch(
            cm,
            Some("default"),
            "f",
            Patch::Merge(json!({"metadata": {"finalizers": null}})),
            None,
        )
        .await
        .unwrap();
    assert!(
        h.client
            .get(cm, Some("default"), "f")
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Foreground adds the foregroundDeletion finalizer.
    h.client
        .create(cm, Some("default"), &configmap("fg", json!({})))
        .await
        .unwrap();
    let params = DeleteParams {
        propagation_policy: Some("Foreground".into()),
        ..Default::default()
    };
    let d = h
        .client
        .delete(cm, Some("default"), "fg", &params)
        .await
        .unwrap()
        .value;
    assert_eq!(d["metadata"]["finalizers"], json!(["foregroundDeletion"]));

    // Preconditions.
    h.client
        .create(cm, Some("default"), &configmap("pre", json!({})))
        .await
        .unwrap();
    let params = DeleteParams {
        precondition_uid: Some("wrong".into()),
        ..Default::default()
    };
    assert_eq!(
        api_err(
            h.client
                .delete(cm, Some("default"), "pre", &params)
                .await
                .unwrap_err()
        )
        .code,
        409
    );
    h.stop().await;
}

#[tokio::test]
async fn orphan_delete_and_graceful_pods() {
    let h = start().await;
    let rs = rt("apps/v1", "ReplicaSet");
    let pods = rt("v1", "Pod");
    let owner = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "p"}},
                 "template": {"metadata": {"labels": {"app": "p"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    });
    let owner = h
        .client
        .create(rs, Some("default"), &owner)
        .await
        .unwrap()
        .value;
    let mut p = pod("child");
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": owner["metadata"]["uid"], "controller": true}]);
    h.client.create(pods, Some("default"), &p).await.unwrap();
    let params = DeleteParams {
        propagation_policy: Some("Orphan".into()),
        ..Default::default()
    };
    h.client
        .delete(rs, Some("default"), "rs", &params)
        .await
        .unwrap();
    assert!(
        h.client
            .get(rs, Some("default"), "rs")
            .await
            .unwrap_err()
            .is_not_found()
    );
    let child = h.client.get(pods, Some("default"), "child").await.unwrap();
    assert!(
        child["metadata"].get("ownerReferences").is_none(),
        "{child}"
    );

    // An unbound pod goes at once; a bound one waits for its node agent.
    h.client
        .delete(pods, Some("default"), "child", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        h.client
            .get(pods, Some("default"), "child")
            .await
            .unwrap_err()
            .is_not_found()
    );
    let mut bound = pod("bound");
    bound["spec"]["nodeName"] = json!("node-1");
    h.client
        .create(pods, Some("default"), &bound)
        .await
        .unwrap();
    let d = h
        .client
        .delete(pods, Some("default"), "bound", &DeleteParams::default())
        .await
        .unwrap()
        .value;
    assert_eq!(d["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(h.client.get(pods, Some("default"), "bound").await.is_ok());
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    h.client
        .delete(pods, Some("default"), "bound", &now)
        .await
        .unwrap();
    assert!(
        h.client
            .get(pods, Some("default"), "bound")
            .await
            .unwrap_err()
            .is_not_found()
    );
    h.stop().await;
}

#[tokio::test]
async fn status_scale_and_generation() {
    let h = start().await;
    let d = rt("apps/v1", "Deployment");
    let mut obj = deployment("web", 2);
    obj["status"] = json!({"replicas": 99});
    let created = h
        .client
        .create(d, Some("default"), &obj)
        .await
        .unwrap()
        .value;
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(
        created
            .get("status")
            .is_none_or(|s| s.get("replicas").is_none()),
        "status is reset on create"
    );

    // Status writes change only status and not the generation.
    let mut st = created.clone();
    st["status"] = json!({"replicas": 2, "readyReplicas": 1});
    st["spec"]["replicas"] = json!(7);
    let after = h
        .client
        .replace_status(d, Some("default"), "web", &st)
        .await
        .unwrap()
        .value;
    assert_eq!(after["status"]["replicas"], 2);
    assert_eq!(after["spec"]["replicas"], 2);
    assert_eq!(after["metadata"]["generation"], 1);

    // Main writes keep status and bump the generation when spec changes.
    let mut main = after.clone();
    main["status"] = json!({"replicas": 50});
    main["spec"]["replicas"] = json!(3);
    let after = h
        .client
        .replace(d, Some("default"), "web", &main)
        .await
        .unwrap()
        .value;
    assert_eq!(after["status"]["replicas"], 2);
    assert_eq!(after["metadata"]["generation"], 2);
    let labels_only = h
        .client
        .patch(
            d,
            Some("default"),
            "web",
            Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
            None,
        )
        .await
        .unwrap()
        .value;
    assert_eq!(labels_only["metadata"]["generation"], 2);

    // Scale subresource.
    let scale = h
        .client
        .get_subresource(d, Some("default"), "web", "scale")
        .await
        .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
    let scaled = h
        .client
        .patch(
            d,
            Some("default"),
            "web",
            Patch::Merge(json!({"spec": {"replicas": 5}})),
            Some("scale"),
        )
        .await
        .unwrap()
        .value;
    assert_eq!(scaled["spec"]["replicas"], 5);
    let got = h.client.get(d, Some("default"), "web").await.unwrap();
    assert_eq!(got["spec"]["replicas"], 5);
    assert_eq!(got["metadata"]["generation"], 3);

    // Strategic merge of containers by name.
    let p = h.client
        .patch(d, Some("default"), "web", Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.28"}]}}}})), None)
        .await
        .unwrap()
        .value;
    assert_eq!(
        p["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        p["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    h.stop().await;
}

#[tokio::test]
async fn list_pagination_and_selectors() {
    let h = start().await;
    let cm = rt("v1", "ConfigMap");
    for i in 0..7 {
        h.client
            .create(
                cm,
                Some("default"),
                &configmap(&format!("p{i}"), json!({"even": (i % 2 == 0).to_string()})),
            )
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut params = ListParams {
        limit: Some(3),
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = h.client.list(cm, Some("default"), &params).await.unwrap();
        pages += 1;
        names.extend(
            page.items
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match page.continue_token {
            Some(c) => params.continue_token = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
    let even = ListParams {
        label_selector: Some("even=true".into()),
        ..Default::default()
    };
    assert_eq!(
        h.client
            .list(cm, Some("default"), &even)
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    let all = h
        .client
        .list(cm, None, &ListParams::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 7);
    let bad = ListParams {
        label_selector: Some("a in (".into()),
        ..Default::default()
    };
    assert_eq!(
        api_err(h.client.list(cm, None, &bad).await.unwrap_err()).code,
        400
    );
    // deletecollection with a selector.
    h.client
        .delete_collection(cm, Some("default"), &even, &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        h.client
            .list(cm, Some("default"), &ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    h.stop().await;
}

#[tokio::test]
async fn garbage_never_crashes_the_server() {
    let h = start().await;
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"[1,2,3]".to_vec(),
        b"null".to_vec(),
        b"{\"metadata\": 5}".to_vec(),
        b"{\"metadata\": {\"name\": 5}}".to_vec(),
        b"{\"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"\\u0000\"}}".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x01],
        "{\"a\":".repeat(10_000).into_bytes(),
        vec![b'x'; 4 * 1024 * 1024],
    ];
    let paths = [
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/configmaps/x",
        "/apis/apps/v1/namespaces/default/deployments/x/scale",
        "/api/v1/namespaces/x/finalize",
        "/api/v1/nodes",
        "/apis/nope/v1/x",
        "/api/v1/namespaces/default/pods/x/log",
    ];
    for (i, body) in bodies.iter().enumerate() {
        for (j, path) in paths.iter().enumerate() {
            let method =
                [Method::POST, Method::PUT, Method::PATCH, Method::DELETE][(i + j) % 4].clone();
            match h.client.raw(method, path, Some(body.clone())).await {
                Ok(_) => {}
                Err(ClientError::Api(s)) => assert!(
                    (400..500).contains(&s.code) || s.code == 503,
                    "{path}: {s:?}"
                ),
                Err(e) => panic!("{path}: {e}"),
            }
        }
    }
    h.client.raw(Method::GET, "/readyz", None).await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn metrics_and_kubeconfig() {
    let h = start().await;
    h.client
        .list(rt("v1", "Pod"), None, &ListParams::default())
        .await
        .unwrap();
    let text = String::from_utf8(
        h.client
            .raw(Method::GET, "/metrics", None)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains(
            "aos_apiserver_requests_total{verb=\"list\",resource=\"pods\",code=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("aos_apiserver_request_duration_seconds_bucket"));
    let kc = std::fs::read_to_string(&h.kubeconfig).unwrap();
    assert!(kc.contains("current-context: aos") && kc.contains("certificate-authority-data:"));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&h.kubeconfig)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(h.dir.path().join("tokens.csv"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    h.stop().await;
}

/// Not a benchmark harness, but it checks the targets with room to spare in debug builds:
/// prints create latency percentiles and the time to list 10,000 pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn performance_smoke() {
    let h = start().await;
    let cm = rt("v1", "ConfigMap");
    let mut lat = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        h.client
            .create(
                cm,
                Some("default"),
                &configmap(&format!("perf{i}"), json!({})),
            )
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let p99 = lat[lat.len() * 99 / 100];
    eprintln!("create p50 {:?} p99 {:?}", lat[lat.len() / 2], p99);

    // 10,000 pods written straight to the store in the server's stored form.
    let template = pod("x");
    let writes = (0..10_000).map(|i| {
        let store = h.store.clone();
        let mut p = template.clone();
        p["metadata"]["name"] = json!(format!("pod-{i:05}"));
        p["metadata"]["namespace"] = json!("default");
        p["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
        p["status"] = json!({"phase": "Running"});
        async move {
            store
                .create(
                    &format!("/registry/core/pods/default/pod-{i:05}"),
                    serde_json::to_vec(&p).unwrap(),
                )
                .await
                .unwrap()
        }
    });
    futures::future::join_all(writes).await;
    let pods = rt("v1", "Pod");
    let t = Instant::now();
    let list = h
        .client
        .list(pods, Some("default"), &ListParams::default())
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(list.items.len(), 10_000);
    eprintln!("list of 10000 pods: {took:?}");

    // The same through a watch: initial events arrive in large chunks that split
    // events across frames; every one is parsed.
    let t = Instant::now();
    let mut w = h
        .client
        .watch(pods, Some("default"), &ListParams::default(), "0")
        .await
        .unwrap();
    let mut added = 0;
    while added < 10_000 {
        let ev = tokio::time::timeout(Duration::from_secs(30), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(ev.type_, "ADDED");
        added += 1;
    }
    eprintln!("watch of 10000 pods: {:?}", t.elapsed());
    h.stop().await;
}
