//! Discovery (`/version`, `/api`, `/apis`, resource lists, aggregated
//! discovery v2 and v2beta1) and a minimal OpenAPI v3.
//!
//! Besides the stored types of the resource table, `/apis` lists `metrics.k8s.io`
//! (served live by [`crate::metrics_api`], as an aggregated API is in Kubernetes).
//!
//! OpenAPI: `/openapi/v3` lists one document per group-version; each document
//! holds, for every kind, the PATCH operation with its
//! `x-kubernetes-group-version-kind` and the `fieldValidation` query parameter.
//! That is what kubectl (`apply`, `create` with `--validate=strict`) reads to
//! learn that the server validates fields itself. It carries no schemas, so
//! kubectl falls back to its compiled-in types for strategic merge patches.
//! `/openapi/v2` is not served (404), which kubectl tolerates.

use std::sync::Arc;

use aos_types::ResourceType;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::router::AppState;

/// The Kubernetes version aos answers like.
pub(crate) const KUBE_MAJOR: &str = "1";
pub(crate) const KUBE_MINOR: &str = "33";

const MAIN_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const SUB_VERBS: [&str; 3] = ["get", "patch", "update"];

pub(crate) fn json_response(code: StatusCode, v: &Value, content_type: &str) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = (code, body).into_response();
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

pub(crate) async fn version() -> Response {
    let v = json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0-aos.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": platform(),
    });
    json_response(StatusCode::OK, &v, "application/json")
}

/// A group's versions, preferred first, each with its types.
pub(crate) type GroupVersions = Vec<(&'static str, Vec<&'static ResourceType>)>;

/// Groups in a stable order: the core group first, then by first appearance.
/// Each group lists its versions (preferred first) and, per version, its types.
pub(crate) fn groups() -> Vec<(&'static str, GroupVersions)> {
    let mut out: Vec<(&'static str, GroupVersions)> = Vec::new();
    let mut all: Vec<&'static ResourceType> = aos_types::resource::all().iter().collect();
    all.sort_by_key(|rt| !rt.group.is_empty());
    for rt in all {
        let gi = match out.iter().position(|(g, _)| *g == rt.group) {
            Some(i) => i,
            None => {
                out.push((rt.group, Vec::new()));
                out.len() - 1
            }
        };
        let versions = &mut out[gi].1;
        // The preferred version of the group is the first type's preferred version.
        for v in rt.versions {
            match versions.iter_mut().find(|(ver, _)| ver == v) {
                Some((_, rts)) => rts.push(rt),
                None => versions.push((v, vec![rt])),
            }
        }
    }
    out
}

fn short_names(rt: &ResourceType) -> Vec<&'static str> {
    rt.short_names.to_vec()
}

fn scope(rt: &ResourceType) -> &'static str {
    if rt.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    }
}

/// Subresources of a type: `(name, responseKind group, version, kind, verbs)`.
fn subresources(rt: &ResourceType, version: &str) -> Vec<(&'static str, Value, Vec<&'static str>)> {
    let own = json!({"group": rt.group, "version": version, "kind": rt.kind});
    let mut subs = Vec::new();
    if rt.status_subresource {
        subs.push(("status", own.clone(), SUB_VERBS.to_vec()));
    }
    if rt.scale_subresource {
        subs.push((
            "scale",
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            SUB_VERBS.to_vec(),
        ));
    }
    if rt.group.is_empty() && rt.plural == "namespaces" {
        subs.push(("finalize", own.clone(), vec!["update"]));
    }
    if rt.group.is_empty() && rt.plural == "pods" {
        subs.push((
            "log",
            json!({"group": "", "version": "v1", "kind": "Pod"}),
            vec!["get"],
        ));
    }
    subs
}

fn resource_list(group: &str, version: &str, rts: &[&'static ResourceType]) -> Value {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut resources = Vec::new();
    for rt in rts {
        let mut r = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": MAIN_VERBS,
        });
        if !rt.short_names.is_empty() {
            r["shortNames"] = json!(short_names(rt));
        }
        if !rt.categories.is_empty() {
            r["categories"] = json!(rt.categories);
        }
        resources.push(r);
        for (sub, kind, verbs) in subresources(rt, version) {
            let mut s = json!({
                "name": format!("{}/{sub}", rt.plural),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": kind["kind"],
                "verbs": verbs,
            });
            if kind["group"] != json!(rt.group) {
                s["group"] = kind["group"].clone();
                s["version"] = kind["version"].clone();
            }
            resources.push(s);
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

fn aggregated_item(group: &str, versions: &[(&'static str, Vec<&'static ResourceType>)]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|(v, rts)| {
            let resources: Vec<Value> = rts
                .iter()
                .map(|rt| {
                    let mut r = json!({
                        "resource": rt.plural,
                        "responseKind": {"group": rt.group, "version": v, "kind": rt.kind},
                        "scope": scope(rt),
                        "singularResource": rt.singular,
                        "verbs": MAIN_VERBS,
                    });
                    if !rt.short_names.is_empty() {
                        r["shortNames"] = json!(short_names(rt));
                    }
                    if !rt.categories.is_empty() {
                        r["categories"] = json!(rt.categories);
                    }
                    let subs: Vec<Value> = subresources(rt, v)
                        .into_iter()
                        .map(|(sub, kind, verbs)| json!({"subresource": sub, "responseKind": kind, "verbs": verbs}))
                        .collect();
                    if !subs.is_empty() {
                        r["subresources"] = json!(subs);
                    }
                    r
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// The aggregated discovery version the client asked for, if any.
fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let params: Vec<String> = part.split(';').map(|s| s.trim().replace(' ', "")).collect();
        let has = |p: &str| params.iter().any(|x| x == p);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

fn aggregated(items: Vec<Value>, version: &str) -> Response {
    let v = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    let mut r = json_response(
        StatusCode::OK,
        &v,
        &format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"),
    );
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

fn accept_of(req: &Request) -> String {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// `/api`, `/apis`, `/apis/{g}`, `/api/v1`, `/apis/{g}/{v}`; `None` if the path is none of them.
pub(crate) fn serve(state: &Arc<AppState>, req: &Request, segs: &[&str]) -> Option<Response> {
    let accept = accept_of(req);
    let groups = groups();
    match segs {
        ["api"] => {
            if let Some(v) = wants_aggregated(&accept) {
                let items = groups
                    .iter()
                    .filter(|(g, _)| g.is_empty())
                    .map(|(g, vs)| aggregated_item(g, vs))
                    .collect();
                return Some(aggregated(items, v));
            }
            let versions: Vec<&str> = groups
                .iter()
                .filter(|(g, _)| g.is_empty())
                .flat_map(|(_, vs)| vs.iter().map(|(v, _)| *v))
                .collect();
            let v = json!({
                "kind": "APIVersions",
                "versions": versions,
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": state.local_addr.to_string()}],
            });
            Some(json_response(StatusCode::OK, &v, "application/json"))
        }
        ["apis"] => {
            if let Some(v) = wants_aggregated(&accept) {
                let mut items: Vec<Value> = groups
                    .iter()
                    .filter(|(g, _)| !g.is_empty())
                    .map(|(g, vs)| aggregated_item(g, vs))
                    .collect();
                items.push(crate::metrics_api::aggregated_item());
                return Some(aggregated(items, v));
            }
            let mut list: Vec<Value> = groups
                .iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, vs)| api_group(g, vs))
                .collect();
            list.push(crate::metrics_api::api_group());
            Some(json_response(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
                "application/json",
            ))
        }
        ["apis", g] if *g == crate::metrics_api::GROUP => Some(json_response(
            StatusCode::OK,
            &crate::metrics_api::api_group(),
            "application/json",
        )),
        ["apis", g, v] if *g == crate::metrics_api::GROUP && *v == crate::metrics_api::VERSION => {
            Some(json_response(
                StatusCode::OK,
                &crate::metrics_api::resource_list(),
                "application/json",
            ))
        }
        ["apis", g] => {
            let (g, vs) = groups
                .iter()
                .find(|(name, _)| !name.is_empty() && name == g)?;
            Some(json_response(
                StatusCode::OK,
                &api_group(g, vs),
                "application/json",
            ))
        }
        ["api", v] => {
            let (_, vs) = groups.iter().find(|(g, _)| g.is_empty())?;
            let (_, rts) = vs.iter().find(|(ver, _)| ver == v)?;
            Some(json_response(
                StatusCode::OK,
                &resource_list("", v, rts),
                "application/json",
            ))
        }
        ["apis", g, v] => {
            let (g, vs) = groups
                .iter()
                .find(|(name, _)| !name.is_empty() && name == g)?;
            let (_, rts) = vs.iter().find(|(ver, _)| ver == v)?;
            Some(json_response(
                StatusCode::OK,
                &resource_list(g, v, rts),
                "application/json",
            ))
        }
        _ => None,
    }
}

fn api_group(g: &str, vs: &[(&'static str, Vec<&'static ResourceType>)]) -> Value {
    let versions: Vec<Value> = vs
        .iter()
        .map(|(v, _)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": versions, "preferredVersion": preferred})
}

pub(crate) async fn openapi_v2() -> Response {
    ApiError::no_route("/openapi/v2").into_response()
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

pub(crate) async fn openapi_v3_root() -> Response {
    let mut paths = serde_json::Map::new();
    for (g, vs) in groups() {
        for (v, _) in vs {
            let p = gv_path(g, v);
            let hash = format!("aos-{}", env!("CARGO_PKG_VERSION"));
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            );
        }
    }
    json_response(StatusCode::OK, &json!({"paths": paths}), "application/json")
}

pub(crate) async fn openapi_v3_doc(req: Request) -> Response {
    let path = req
        .uri()
        .path()
        .trim_start_matches("/openapi/v3/")
        .to_string();
    for (g, vs) in groups() {
        for (v, rts) in vs {
            if gv_path(g, v) != path {
                continue;
            }
            let mut paths = serde_json::Map::new();
            for rt in rts {
                let base = if rt.namespaced {
                    format!(
                        "/{}/namespaces/{{namespace}}/{}/{{name}}",
                        gv_path(g, v),
                        rt.plural
                    )
                } else {
                    format!("/{}/{}/{{name}}", gv_path(g, v), rt.plural)
                };
                let gvk = json!({"group": rt.group, "version": v, "kind": rt.kind});
                let params = json!([
                    {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}
                ]);
                let op = |verb: &str| {
                    json!({
                        "operationId": format!("{verb}{}", rt.kind),
                        "parameters": params,
                        "responses": {"200": {"description": "OK"}},
                        "x-kubernetes-action": verb,
                        "x-kubernetes-group-version-kind": gvk,
                    })
                };
                paths.insert(base, json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
            }
            let doc = json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0")},
                "paths": paths,
                "components": {"schemas": {}},
            });
            return json_response(StatusCode::OK, &doc, "application/json");
        }
    }
    ApiError::no_route(&path).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_aggregated_accept() {
        let a = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(wants_aggregated(a), Some("v2"));
        assert_eq!(
            wants_aggregated(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            ),
            Some("v2beta1")
        );
        assert_eq!(wants_aggregated("application/json"), None);
    }
}
