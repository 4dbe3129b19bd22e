//! `metrics.k8s.io/v1beta1`: `NodeMetrics` and `PodMetrics` in metrics-server's shape,
//! read live from the node agents' `/stats/resource` (nothing is stored).
//!
//! Served paths (GET only; `kubectl top` and the autoscaler read them):
//! - `/apis/metrics.k8s.io/v1beta1/nodes[/{name}]`
//! - `/apis/metrics.k8s.io/v1beta1/pods` (every namespace)
//! - `/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods[/{name}]`
//!
//! Lists take `labelSelector` and `fieldSelector` (matched against the Node or Pod, as
//! metrics-server matches against its informers). A list asks every Ready node in
//! parallel, each within a few seconds; a node that fails is left out and logged, as
//! metrics-server leaves out what it could not scrape. A get asks only the node
//! concerned. `metadata.labels` come from the Node or Pod; `creationTimestamp` is the
//! time of the answer; `timestamp` and `window` are the agent's sample. A pod the agent
//! reports but the store no longer has (or has under another uid) is left out.
//!
//! Quantities are canonical Kubernetes quantities: CPU in nanocores scaled to the
//! largest exact suffix (`1234567n`, `5m`), memory working set in binary SI (`22904Ki`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aos_types::ResourceType;
use aos_types::quantity::Quantity;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::nodeproxy::{NodeError, NodeTarget, read_node};
use crate::objects::{self, decode_kv};
use crate::query::Query;
use crate::rest::Selectors;
use crate::router::{AppState, Labels};

/// The API group.
pub(crate) const GROUP: &str = "metrics.k8s.io";
/// Its only version.
pub(crate) const VERSION: &str = "v1beta1";
const API_VERSION: &str = "metrics.k8s.io/v1beta1";
/// How long one node may take to answer `/stats/resource`.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);
const VERBS: [&str; 2] = ["get", "list"];

/// `(plural, singular, kind, namespaced)` of the served resources.
const RESOURCES: [(&str, &str, &str, bool); 2] = [
    ("nodes", "", "NodeMetrics", false),
    ("pods", "", "PodMetrics", true),
];

fn nodes_rt() -> &'static ResourceType {
    aos_types::resource::by_plural("", "v1", "nodes").expect("nodes are in the resource table")
}

fn pods_rt() -> &'static ResourceType {
    aos_types::resource::by_plural("", "v1", "pods").expect("pods are in the resource table")
}

// ---------------------------------------------------------------- discovery

/// The `APIGroup` object (`/apis/metrics.k8s.io`, and an item of `/apis`).
pub(crate) fn api_group() -> Value {
    let gv = json!({"groupVersion": API_VERSION, "version": VERSION});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv], "preferredVersion": gv})
}

/// The `APIResourceList` of `/apis/metrics.k8s.io/v1beta1`.
pub(crate) fn resource_list() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|(plural, singular, kind, namespaced)| {
            json!({"name": plural, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": VERBS})
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION, "resources": resources})
}

/// The group's item in aggregated discovery (`/apis` as `APIGroupDiscoveryList`).
pub(crate) fn aggregated_item() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|(plural, singular, kind, namespaced)| {
            json!({
                "resource": plural,
                "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
                "scope": if *namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": singular,
                "verbs": VERBS,
            })
        })
        .collect();
    json!({
        "metadata": {"name": GROUP, "creationTimestamp": null},
        "versions": [{"version": VERSION, "resources": resources, "freshness": "Current"}],
    })
}

// ---------------------------------------------------------------- the agent's stats

/// `/stats/resource` of one node agent.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Summary {
    pub(crate) node: NodeStats,
    pub(crate) pods: Vec<PodStats>,
}

/// The node's own usage.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct NodeStats {
    pub(crate) name: String,
    pub(crate) timestamp: String,
    pub(crate) window_seconds: f64,
    pub(crate) cpu_nano_cores: u64,
    pub(crate) memory_working_set_bytes: u64,
}

/// One pod's usage, per container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct PodStats {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) timestamp: String,
    pub(crate) window_seconds: f64,
    pub(crate) containers: Vec<ContainerStats>,
}

/// One container's usage.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ContainerStats {
    pub(crate) name: String,
    pub(crate) cpu_nano_cores: u64,
    pub(crate) memory_working_set_bytes: u64,
}

/// CPU nanocores as a canonical quantity (`1234567n`, `5m`, `2`).
pub(crate) fn cpu_quantity(nano_cores: u64) -> String {
    Quantity::parse(&format!("{nano_cores}n"))
        .map(|q| q.to_string())
        .unwrap_or_else(|_| format!("{nano_cores}n"))
}

/// Bytes as a canonical binary quantity (`22904Ki`, `1000`).
pub(crate) fn memory_quantity(bytes: u64) -> String {
    Quantity::from_bytes(u128::from(bytes)).to_string()
}

/// A window in seconds as Go's `time.Duration` prints it (`5s`, `20.064s`, `500ms`, `1m30s`).
pub(crate) fn go_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds <= 0.0 {
        return "0s".into();
    }
    let nanos = (seconds * 1e9).round() as u128;
    fn frac(mut value: u128, digits: u32) -> String {
        // `value` holds `digits` decimal places; drop trailing zeros.
        let unit = 10u128.pow(digits);
        let whole = value / unit;
        value %= unit;
        if value == 0 {
            return whole.to_string();
        }
        let mut f = format!("{value:0width$}", width = digits as usize);
        while f.ends_with('0') {
            f.pop();
        }
        format!("{whole}.{f}")
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", frac(nanos, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", frac(nanos, 6));
    }
    let total_secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let (h, m, s) = (total_secs / 3600, (total_secs / 60) % 60, total_secs % 60);
    let secs = frac(s * 1_000_000_000 + sub, 9);
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

fn metrics_meta(obj: &Value, name: &str, ns: Option<&str>, now: &str) -> Value {
    let mut meta = json!({"name": name});
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns);
    }
    meta["creationTimestamp"] = json!(now);
    if let Some(labels) = obj
        .pointer("/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
    {
        meta["labels"] = labels.clone();
    }
    meta
}

/// A `NodeMetrics` object.
pub(crate) fn node_metrics(node: &Value, stats: &NodeStats, now: &str) -> Value {
    let name = objects::name_of(node);
    json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": metrics_meta(node, name, None, now),
        "timestamp": stats.timestamp,
        "window": go_duration(stats.window_seconds),
        "usage": {
            "cpu": cpu_quantity(stats.cpu_nano_cores),
            "memory": memory_quantity(stats.memory_working_set_bytes),
        },
    })
}

/// A `PodMetrics` object.
pub(crate) fn pod_metrics(pod: &Value, stats: &PodStats, now: &str) -> Value {
    let containers: Vec<Value> = stats
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "usage": {
                    "cpu": cpu_quantity(c.cpu_nano_cores),
                    "memory": memory_quantity(c.memory_working_set_bytes),
                },
            })
        })
        .collect();
    json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": metrics_meta(pod, &stats.name, Some(&stats.namespace), now),
        "timestamp": stats.timestamp,
        "window": go_duration(stats.window_seconds),
        "containers": containers,
    })
}

fn list_of(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": API_VERSION, "metadata": {}, "items": items})
}

// ---------------------------------------------------------------- the store

async fn list_objects(
    state: &AppState,
    rt: &ResourceType,
    ns: Option<&str>,
) -> ApiResult<Vec<Value>> {
    let list = state
        .store
        .list(&objects::prefix(rt, ns))
        .await
        .map_err(|e| ApiError::internal(format!("listing {}: {e}", rt.plural)))?;
    list.items.iter().map(decode_kv).collect()
}

/// Ask one node for its stats.
async fn scrape(state: &AppState, node: &Value) -> Result<Summary, NodeError> {
    let target = NodeTarget::from_node(node)?;
    let v = state
        .nodes
        .get_json(&target, "/stats/resource", STATS_TIMEOUT)
        .await?;
    serde_json::from_value(v).map_err(|e| NodeError::Answer {
        node: target.name.clone(),
        reason: format!("/stats/resource: {e}"),
    })
}

/// Ask every Ready node in `nodes`, in parallel; failures are logged and left out.
async fn scrape_all(state: &AppState, nodes: &[Value]) -> HashMap<String, Summary> {
    let ready: Vec<&Value> = nodes
        .iter()
        .filter(|n| crate::nodeproxy::readiness(n).is_ok())
        .collect();
    let answers = futures::future::join_all(ready.iter().map(|n| scrape(state, n))).await;
    let mut out = HashMap::new();
    for (node, answer) in ready.into_iter().zip(answers) {
        let name = objects::name_of(node).to_string();
        match answer {
            Ok(summary) => {
                out.insert(name, summary);
            }
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "cannot read the node's resource usage")
            }
        }
    }
    out
}

// ---------------------------------------------------------------- requests

fn json_ok(v: &Value) -> Response {
    crate::discovery::json_response(StatusCode::OK, v, "application/json")
}

fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError::not_found(&format!("{resource}.{GROUP}"), name, GROUP)
}

/// What a metrics path names.
#[derive(Debug, PartialEq, Eq)]
enum Path<'a> {
    Nodes(Option<&'a str>),
    Pods {
        ns: Option<&'a str>,
        name: Option<&'a str>,
    },
}

fn parse_path<'a>(rest: &[&'a str]) -> Option<Path<'a>> {
    match rest {
        ["nodes"] => Some(Path::Nodes(None)),
        ["nodes", name] => Some(Path::Nodes(Some(name))),
        ["pods"] => Some(Path::Pods {
            ns: None,
            name: None,
        }),
        ["namespaces", ns, "pods"] => Some(Path::Pods {
            ns: Some(ns),
            name: None,
        }),
        ["namespaces", ns, "pods", name] => Some(Path::Pods {
            ns: Some(ns),
            name: Some(name),
        }),
        _ => None,
    }
}

/// Serve `/apis/metrics.k8s.io/v1beta1/...` below the group-version (`rest` is the
/// path after it); `None` when the path names nothing here.
pub(crate) async fn serve(state: Arc<AppState>, req: Request, rest: &[&str]) -> Option<Response> {
    let path = parse_path(rest)?;
    let (verb, resource) = match &path {
        Path::Nodes(None) => ("list", "nodemetrics"),
        Path::Nodes(Some(_)) => ("get", "nodemetrics"),
        Path::Pods { name: None, .. } => ("list", "podmetrics"),
        Path::Pods { name: Some(_), .. } => ("get", "podmetrics"),
    };
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let result = if req.method() != Method::GET {
        Err(ApiError::method_not_allowed(format!(
            "{} is not supported on {resource}.{GROUP}: it is read-only",
            req.method()
        )))
    } else {
        answer(&state, &raw_query, path).await.and_then(|v| {
            match crate::table::wants_table(&accept) {
                Some(mv) => {
                    let q = Query::parse(&raw_query)?;
                    let include = crate::table::Include::parse(q.include_object.as_deref());
                    Ok(crate::discovery::json_response(
                        StatusCode::OK,
                        &table_of(&v, include, mv),
                        &crate::rest::table_content_type(mv),
                    ))
                }
                None => Ok(json_ok(&v)),
            }
        })
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(Labels { verb, resource });
    Some(resp)
}

async fn answer(state: &AppState, raw_query: &str, path: Path<'_>) -> ApiResult<Value> {
    let q = Query::parse(raw_query)?;
    if q.watch {
        return Err(ApiError::method_not_allowed(
            "watch is not supported on metrics.k8s.io resources",
        ));
    }
    let now = objects::timestamp(objects::now_unix());
    match path {
        Path::Nodes(Some(name)) => {
            let node = match read_node(state.store.as_ref(), name).await {
                Ok(n) => n,
                Err(_) => return Err(not_found("nodes", name)),
            };
            let summary = scrape(state, &node).await.map_err(|e| {
                tracing::warn!(node = %name, error = %e, "cannot read the node's resource usage");
                not_found("nodes", name)
            })?;
            Ok(node_metrics(&node, &summary.node, &now))
        }
        Path::Nodes(None) => {
            let selectors = Selectors::parse(nodes_rt(), &q)?;
            let nodes: Vec<Value> = list_objects(state, nodes_rt(), None)
                .await?
                .into_iter()
                .filter(|n| selectors.matches(n))
                .collect();
            let stats = scrape_all(state, &nodes).await;
            let items = nodes
                .iter()
                .filter_map(|n| {
                    stats
                        .get(objects::name_of(n))
                        .map(|s| node_metrics(n, &s.node, &now))
                })
                .collect();
            Ok(list_of("NodeMetricsList", items))
        }
        Path::Pods {
            ns: Some(ns),
            name: Some(name),
        } => {
            let key = objects::key(pods_rt(), Some(ns), name);
            let pod = state
                .store
                .get(&key)
                .await
                .map_err(|e| ApiError::internal(format!("reading pod {ns}/{name}: {e}")))?
                .map(|kv| decode_kv(&kv))
                .transpose()?
                .ok_or_else(|| not_found("pods", name))?;
            let node_name = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| not_found("pods", name))?;
            let node = read_node(state.store.as_ref(), node_name)
                .await
                .map_err(|_| not_found("pods", name))?;
            let summary = scrape(state, &node).await.map_err(|e| {
                tracing::warn!(node = %node_name, error = %e, "cannot read the node's resource usage");
                not_found("pods", name)
            })?;
            let uid = objects::meta_str(&pod, "uid").unwrap_or_default();
            summary
                .pods
                .iter()
                .find(|p| p.namespace == ns && p.name == name && same_uid(&p.uid, uid))
                .map(|p| pod_metrics(&pod, p, &now))
                .ok_or_else(|| not_found("pods", name))
        }
        Path::Pods { ns, name: _ } => {
            let selectors = Selectors::parse(pods_rt(), &q)?;
            let pods: HashMap<(String, String), Value> = list_objects(state, pods_rt(), ns)
                .await?
                .into_iter()
                .filter(|p| selectors.matches(p))
                .map(|p| {
                    let key = (
                        objects::meta_str(&p, "namespace")
                            .unwrap_or_default()
                            .to_string(),
                        objects::name_of(&p).to_string(),
                    );
                    (key, p)
                })
                .collect();
            let nodes = list_objects(state, nodes_rt(), None).await?;
            // Only nodes that run one of the selected pods need to be asked.
            let wanted: std::collections::HashSet<&str> = pods
                .values()
                .filter_map(|p| p.pointer("/spec/nodeName").and_then(Value::as_str))
                .collect();
            let nodes: Vec<Value> = nodes
                .into_iter()
                .filter(|n| wanted.contains(objects::name_of(n)))
                .collect();
            let stats = scrape_all(state, &nodes).await;
            let mut items: Vec<(String, String, Value)> = Vec::new();
            for summary in stats.values() {
                for p in &summary.pods {
                    let Some(pod) = pods.get(&(p.namespace.clone(), p.name.clone())) else {
                        continue;
                    };
                    let uid = objects::meta_str(pod, "uid").unwrap_or_default();
                    if !same_uid(&p.uid, uid) {
                        continue;
                    }
                    items.push((
                        p.namespace.clone(),
                        p.name.clone(),
                        pod_metrics(pod, p, &now),
                    ));
                }
            }
            items.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            let items = items.into_iter().map(|(_, _, v)| v).collect();
            Ok(list_of("PodMetricsList", items))
        }
    }
}

/// CPU and memory of a NodeMetrics (`usage`) or PodMetrics (sum of `containers`), as
/// canonical quantities.
fn usage_cells(obj: &Value) -> (String, String) {
    let nanos = |usage: &Value, k: &str| {
        usage
            .get(k)
            .and_then(Value::as_str)
            .and_then(|q| Quantity::parse(q).ok())
            .map_or(0, |q| q.nanos())
    };
    let (cpu, memory) = match obj.get("containers").and_then(Value::as_array) {
        Some(cs) => cs.iter().fold((0i128, 0i128), |(c, m), x| {
            let u = x.get("usage").unwrap_or(&Value::Null);
            (c + nanos(u, "cpu"), m + nanos(u, "memory"))
        }),
        None => {
            let u = obj.get("usage").unwrap_or(&Value::Null);
            (nanos(u, "cpu"), nanos(u, "memory"))
        }
    };
    let cpu = u64::try_from(cpu).unwrap_or(0);
    let bytes = u64::try_from(memory / 1_000_000_000).unwrap_or(0);
    (cpu_quantity(cpu), memory_quantity(bytes))
}

/// A `Table` of metrics objects, with metrics-server's columns (Name, CPU, Memory, Window).
fn table_of(v: &Value, include: crate::table::Include, meta_version: &str) -> Value {
    let items: Vec<&Value> = match v.get("items").and_then(Value::as_array) {
        Some(items) => items.iter().collect(),
        None => vec![v],
    };
    let column = |name: &str, format: &str, description: &str| json!({"name": name, "type": "string", "format": format, "description": description, "priority": 0});
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let (cpu, memory) = usage_cells(o);
            let mut row = json!({"cells": [
                objects::name_of(o),
                cpu,
                memory,
                o.get("window").cloned().unwrap_or(Value::Null),
            ]});
            match include {
                crate::table::Include::None => {}
                crate::table::Include::Object => row["object"] = (*o).clone(),
                crate::table::Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": format!("meta.k8s.io/{meta_version}"),
                        "metadata": o.get("metadata").cloned().unwrap_or(Value::Null),
                    });
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{meta_version}"),
        "metadata": {},
        "columnDefinitions": [
            column("Name", "name", "Name of the resource"),
            column("CPU", "", "CPU usage"),
            column("Memory", "", "Memory usage (working set)"),
            column("Window", "", "The window the usage was measured over"),
        ],
        "rows": rows,
    })
}

/// Whether the agent's pod uid is the stored pod's (an empty one on either side matches).
fn same_uid(reported: &str, stored: &str) -> bool {
    reported.is_empty() || stored.is_empty() || reported == stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        for (secs, want) in [
            (5.0, "5s"),
            (20.064, "20.064s"),
            (0.5, "500ms"),
            (1.5, "1.5s"),
            (60.0, "1m0s"),
            (90.25, "1m30.25s"),
            (3600.0, "1h0m0s"),
            (0.0, "0s"),
        ] {
            assert_eq!(go_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn quantities_are_canonical() {
        assert_eq!(cpu_quantity(1_234_567), "1234567n");
        assert_eq!(cpu_quantity(5_000_000), "5m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(memory_quantity(23_453_696), "22904Ki");
        assert_eq!(memory_quantity(1000), "1000");
    }

    #[test]
    fn shapes_match_metrics_server() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}}});
        let stats = PodStats {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
            timestamp: "2026-11-27T08:00:00Z".into(),
            window_seconds: 5.0,
            containers: vec![ContainerStats {
                name: "c".into(),
                cpu_nano_cores: 1_234_567,
                memory_working_set_bytes: 23_453_696,
            }],
        };
        assert_eq!(
            pod_metrics(&pod, &stats, "2026-11-27T08:00:01Z"),
            json!({
                "kind": "PodMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": "p", "namespace": "ns", "creationTimestamp": "2026-11-27T08:00:01Z", "labels": {"app": "web"}},
                "timestamp": "2026-11-27T08:00:00Z",
                "window": "5s",
                "containers": [{"name": "c", "usage": {"cpu": "1234567n", "memory": "22904Ki"}}],
            })
        );
        let node = json!({"metadata": {"name": "n1"}});
        let ns = NodeStats {
            name: "n1".into(),
            timestamp: "t".into(),
            window_seconds: 10.0,
            cpu_nano_cores: 250_000_000,
            memory_working_set_bytes: 1 << 30,
        };
        let v = node_metrics(&node, &ns, "now");
        assert_eq!(v["usage"], json!({"cpu": "250m", "memory": "1Gi"}));
        assert!(v["metadata"].get("labels").is_none());
    }

    #[test]
    fn tables_sum_containers() {
        let list = json!({"items": [{
            "metadata": {"name": "p"},
            "window": "5s",
            "containers": [
                {"name": "a", "usage": {"cpu": "5m", "memory": "1Mi"}},
                {"name": "b", "usage": {"cpu": "1234567n", "memory": "1Mi"}},
            ],
        }]});
        let t = table_of(&list, crate::table::Include::None, "v1");
        assert_eq!(t["rows"][0]["cells"], json!(["p", "6234567n", "2Mi", "5s"]));
        assert_eq!(t["columnDefinitions"][1]["name"], "CPU");
    }

    #[test]
    fn paths() {
        assert_eq!(parse_path(&["nodes"]), Some(Path::Nodes(None)));
        assert_eq!(
            parse_path(&["namespaces", "a", "pods", "b"]),
            Some(Path::Pods {
                ns: Some("a"),
                name: Some("b")
            })
        );
        assert_eq!(parse_path(&["namespaces", "a"]), None);
        assert_eq!(parse_path(&["services"]), None);
    }
}
