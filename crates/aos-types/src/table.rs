//! Columns for `Table` output (`kubectl get`, `aos get`), per resource type.
//!
//! The columns and cell contents follow kubectl's printers for the built-in
//! kinds (and Istio's CRD printer columns): the Pod STATUS logic, READY
//! counts, `PORT(S)`, the HPA `TARGETS` summary, and `AGE` as kubectl's
//! human duration.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::ResourceType;
use crate::time::{human_duration, parse_rfc3339};

/// A column definition, as `meta.k8s.io/v1` `TableColumnDefinition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Header, e.g. `"READY"` is shown for name `"Ready"`.
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `date`.
    pub type_: &'static str,
    /// OpenAPI format: `name` for the NAME column, else `""`.
    pub format: &'static str,
    /// Description.
    pub description: &'static str,
    /// 0 = always shown; 1 = only with `-o wide`.
    pub priority: u8,
}

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name must be unique within a namespace.",
    priority: 0,
};
const AGE: Column = col(
    "Age",
    "string",
    "Time since the object was created (metadata.creationTimestamp).",
);

/// The columns for `rt`, the same as kubectl shows for the built-in kinds.
pub fn columns(rt: &ResourceType) -> Vec<Column> {
    match (rt.group, rt.kind) {
        ("", "Namespace") => vec![
            NAME,
            col("Status", "string", "The phase of the namespace."),
            AGE,
        ],
        ("", "Node") => vec![
            NAME,
            col(
                "Status",
                "string",
                "Whether the node is ready and schedulable.",
            ),
            col(
                "Roles",
                "string",
                "Roles from node-role.kubernetes.io labels.",
            ),
            AGE,
            col("Version", "string", "Kubelet version the node reports."),
            wide("Internal-IP", "string", "The node's internal address."),
            wide("External-IP", "string", "The node's external address."),
            wide("OS-Image", "string", "Operating system image."),
            wide("Kernel-Version", "string", "Kernel version."),
            wide(
                "Container-Runtime",
                "string",
                "Container runtime and version.",
            ),
        ],
        ("", "Pod") => vec![
            NAME,
            col("Ready", "string", "Ready containers out of all containers."),
            col(
                "Status",
                "string",
                "Aggregate status of the pod and its containers.",
            ),
            col(
                "Restarts",
                "string",
                "Container restarts, with the time of the last one.",
            ),
            AGE,
            wide("IP", "string", "The pod's IP address."),
            wide("Node", "string", "The node the pod is bound to."),
            wide(
                "Nominated Node",
                "string",
                "The node nominated by preemption.",
            ),
            wide(
                "Readiness Gates",
                "string",
                "Readiness gates met out of all.",
            ),
        ],
        ("", "Service") => vec![
            NAME,
            col("Type", "string", "How the service is exposed."),
            col("Cluster-IP", "string", "The virtual IP of the service."),
            col(
                "External-IP",
                "string",
                "External addresses of the service.",
            ),
            col("Port(s)", "string", "Ports the service exposes."),
            AGE,
            wide("Selector", "string", "Pods the service routes to."),
        ],
        ("", "Endpoints") => vec![
            NAME,
            col("Endpoints", "string", "Ready addresses and ports."),
            AGE,
        ],
        ("", "ConfigMap") => vec![NAME, col("Data", "integer", "Number of keys."), AGE],
        ("", "Secret") => vec![
            NAME,
            col("Type", "string", "The secret type."),
            col("Data", "integer", "Number of keys."),
            AGE,
        ],
        ("", "Event") => vec![
            col("Last Seen", "string", "When the event was last observed."),
            col("Type", "string", "Normal or Warning."),
            col("Reason", "string", "Why the event happened, in CamelCase."),
            col("Object", "string", "The object the event is about."),
            wide(
                "Subobject",
                "string",
                "The part of the object (a container).",
            ),
            wide("Source", "string", "The component that reported the event."),
            col("Message", "string", "What happened."),
            wide("First Seen", "string", "When the event was first observed."),
            wide("Count", "string", "How often the event happened."),
            Column {
                priority: 1,
                ..NAME
            },
        ],
        ("apps", "Deployment") => vec![
            NAME,
            col("Ready", "string", "Ready replicas out of desired."),
            col(
                "Up-to-date",
                "integer",
                "Replicas with the current template.",
            ),
            col("Available", "integer", "Replicas available to users."),
            AGE,
            wide("Containers", "string", "Container names in the template."),
            wide("Images", "string", "Container images in the template."),
            wide("Selector", "string", "The label selector."),
        ],
        ("apps", "ReplicaSet") => vec![
            NAME,
            col("Desired", "integer", "Desired replicas."),
            col("Current", "integer", "Replicas that exist."),
            col("Ready", "integer", "Ready replicas."),
            AGE,
            wide("Containers", "string", "Container names in the template."),
            wide("Images", "string", "Container images in the template."),
            wide("Selector", "string", "The label selector."),
        ],
        ("autoscaling", "HorizontalPodAutoscaler") => vec![
            NAME,
            col("Reference", "string", "The scaled object."),
            col("Targets", "string", "Current and target metric values."),
            col("MinPods", "string", "Lower replica limit."),
            col("MaxPods", "integer", "Upper replica limit."),
            col("Replicas", "integer", "Current replicas."),
            AGE,
        ],
        ("coordination.k8s.io", "Lease") => vec![
            NAME,
            col("Holder", "string", "The current holder of the lease."),
            AGE,
        ],
        ("networking.istio.io", "VirtualService") => vec![
            NAME,
            col(
                "Gateways",
                "string",
                "The names of gateways and sidecars that should apply these routes.",
            ),
            col(
                "Hosts",
                "string",
                "The destination hosts to which traffic is being sent.",
            ),
            AGE,
        ],
        ("networking.istio.io", "DestinationRule") => vec![
            NAME,
            col(
                "Host",
                "string",
                "The name of a service from the service registry.",
            ),
            AGE,
        ],
        _ => vec![NAME, AGE],
    }
}

/// One row of cells for `obj`, matching `columns(rt)`. `now_unix` is the current
/// time in seconds, used for the AGE column (`"5m"`, `"2d3h"`).
pub fn row(rt: &ResourceType, obj: &Value, now_unix: i64) -> Vec<Value> {
    let name = json!(s(obj, "/metadata/name"));
    let age = json!(age(obj, "/metadata/creationTimestamp", now_unix));
    match (rt.group, rt.kind) {
        ("", "Namespace") => vec![name, json!(s(obj, "/status/phase")), age],
        ("", "Node") => node(obj, name, age),
        ("", "Pod") => pod(obj, name, age, now_unix),
        ("", "Service") => service(obj, name, age),
        ("", "Endpoints") => vec![name, json!(endpoints(obj)), age],
        ("", "ConfigMap") => vec![
            name,
            json!(count(obj, "/data") + count(obj, "/binaryData")),
            age,
        ],
        ("", "Secret") => vec![
            name,
            json!(s(obj, "/type")),
            json!(count(obj, "/data")),
            age,
        ],
        ("", "Event") => event(obj, name, now_unix),
        ("apps", "Deployment") => {
            let desired = int(obj, "/spec/replicas").unwrap_or(0);
            let mut cells = vec![
                name,
                json!(format!(
                    "{}/{desired}",
                    int(obj, "/status/readyReplicas").unwrap_or(0)
                )),
                json!(int(obj, "/status/updatedReplicas").unwrap_or(0)),
                json!(int(obj, "/status/availableReplicas").unwrap_or(0)),
                age,
            ];
            cells.extend(template_cells(obj));
            cells
        }
        ("apps", "ReplicaSet") => {
            let mut cells = vec![
                name,
                json!(int(obj, "/spec/replicas").unwrap_or(0)),
                json!(int(obj, "/status/replicas").unwrap_or(0)),
                json!(int(obj, "/status/readyReplicas").unwrap_or(0)),
                age,
            ];
            cells.extend(template_cells(obj));
            cells
        }
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(obj, name, age),
        ("coordination.k8s.io", "Lease") => vec![name, json!(s(obj, "/spec/holderIdentity")), age],
        ("networking.istio.io", "VirtualService") => vec![
            name,
            json!(compact(obj.pointer("/spec/gateways"))),
            json!(compact(obj.pointer("/spec/hosts"))),
            age,
        ],
        ("networking.istio.io", "DestinationRule") => vec![name, json!(s(obj, "/spec/host")), age],
        _ => vec![name, age],
    }
}

fn s<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn int(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

fn arr<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn count(obj: &Value, pointer: &str) -> usize {
    obj.pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

/// A list as a CRD printer column shows it (`["a","b"]`), or empty.
fn compact(v: Option<&Value>) -> String {
    v.map(Value::to_string).unwrap_or_default()
}

fn age(obj: &Value, pointer: &str, now: i64) -> String {
    match obj
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
    {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

/// CONTAINERS, IMAGES, SELECTOR of a workload.
fn template_cells(obj: &Value) -> Vec<Value> {
    let containers = arr(obj, "/spec/template/spec/containers");
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c.get("name").and_then(Value::as_str).unwrap_or_default())
        .collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.get("image").and_then(Value::as_str).unwrap_or_default())
        .collect();
    vec![
        json!(names.join(",")),
        json!(images.join(",")),
        json!(selector_string(obj.pointer("/spec/selector"))),
    ]
}

/// A `LabelSelector` object as a string (`app=web,tier in (a,b)`), `<none>` when empty.
fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".to_string();
    };
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|vs| vs.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        parts.push(
            match e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                other => format!("{key} {other}"),
            },
        );
    }
    parts.sort();
    if parts.is_empty() {
        "<none>".to_string()
    } else {
        parts.join(",")
    }
}

/// A plain label map (a Service selector) as `k=v,k=v`, `<none>` when empty.
fn map_string(m: Option<&Value>) -> String {
    let parts: Vec<String> = m
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    or_none(&parts.join(","))
}

fn node(obj: &Value, name: Value, age: Value) -> Vec<Value> {
    let ready = arr(obj, "/status/conditions")
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .and_then(|c| c.get("status").and_then(Value::as_str));
    let mut status = match ready {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str()
                && !v.is_empty()
            {
                roles.insert(v.to_string());
            }
        }
    }
    let roles = or_none(&roles.into_iter().collect::<Vec<_>>().join(","));
    let address = |ty: &str| {
        arr(obj, "/status/addresses")
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(ty))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .map_or_else(|| "<none>".to_string(), str::to_string)
    };
    let info = |field: &str| {
        let v = s(obj, &format!("/status/nodeInfo/{field}"));
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        name,
        json!(status),
        json!(roles),
        age,
        json!(s(obj, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn has_condition(obj: &Value, ty: &str) -> bool {
    arr(obj, "/status/conditions").iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(ty)
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

/// The Pod STATUS, READY and RESTARTS cells, with kubectl's logic.
fn pod(obj: &Value, name: Value, age: Value, now: i64) -> Vec<Value> {
    let total = arr(obj, "/spec/containers").len();
    let init_total = arr(obj, "/spec/initContainers").len();
    let mut reason = s(obj, "/status/phase").to_string();
    if !s(obj, "/status/reason").is_empty() {
        reason = s(obj, "/status/reason").to_string();
    }
    if reason.is_empty() {
        reason = "Pending".to_string();
    }
    let gated = arr(obj, "/status/conditions").iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("PodScheduled")
            && c.get("reason").and_then(Value::as_str) == Some("SchedulingGated")
    });
    if gated {
        reason = "SchedulingGated".to_string();
    }
    let mut restarts = 0i64;
    let mut last_restart: Option<i64> = None;
    let mut note_restart = |status: &Value, restarts: &mut i64| {
        *restarts += status
            .get("restartCount")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if let Some(t) = status
            .pointer("/lastState/terminated/finishedAt")
            .and_then(Value::as_str)
            .and_then(parse_rfc3339)
        {
            last_restart = Some(last_restart.map_or(t, |l| l.max(t)));
        }
    };
    let mut initializing = false;
    let init_specs = arr(obj, "/spec/initContainers");
    for (i, cs) in arr(obj, "/status/initContainerStatuses").iter().enumerate() {
        note_restart(cs, &mut restarts);
        let terminated = cs.pointer("/state/terminated");
        let waiting = cs.pointer("/state/waiting");
        if terminated
            .and_then(|t| t.get("exitCode"))
            .and_then(Value::as_i64)
            == Some(0)
        {
            continue;
        }
        let sidecar = init_specs
            .get(i)
            .and_then(|c| c.get("restartPolicy"))
            .and_then(Value::as_str)
            == Some("Always");
        if sidecar && cs.get("started").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = terminated {
            let r = t.get("reason").and_then(Value::as_str).unwrap_or_default();
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if let Some(sig) = t.get("signal").and_then(Value::as_i64).filter(|s| *s != 0) {
                format!("Init:Signal:{sig}")
            } else {
                format!(
                    "Init:ExitCode:{}",
                    t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                )
            };
        } else if let Some(r) = waiting
            .and_then(|w| w.get("reason"))
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{init_total}");
        }
        initializing = true;
        break;
    }
    let mut ready = 0;
    if !initializing || has_condition(obj, "Initialized") {
        restarts = 0;
        last_restart = None;
        let mut running = false;
        let statuses = arr(obj, "/status/containerStatuses");
        for cs in statuses.iter().rev() {
            restarts += cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            if let Some(t) = cs
                .pointer("/lastState/terminated/finishedAt")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339)
            {
                last_restart = Some(last_restart.map_or(t, |l| l.max(t)));
            }
            let waiting = cs
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty());
            let terminated = cs.pointer("/state/terminated");
            if let Some(r) = waiting {
                reason = r.to_string();
            } else if let Some(t) = terminated {
                let r = t.get("reason").and_then(Value::as_str).unwrap_or_default();
                reason = if !r.is_empty() {
                    r.to_string()
                } else if let Some(sig) =
                    t.get("signal").and_then(Value::as_i64).filter(|s| *s != 0)
                {
                    format!("Signal:{sig}")
                } else {
                    format!(
                        "ExitCode:{}",
                        t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                    )
                };
            } else if cs.get("ready").and_then(Value::as_bool) == Some(true)
                && cs.pointer("/state/running").is_some()
            {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            reason = if has_condition(obj, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if s(obj, "/status/reason") == "NodeLost" {
            "Unknown".to_string()
        } else {
            "Terminating".to_string()
        };
    }
    let restarts_cell = match last_restart {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };
    let gates = arr(obj, "/spec/readinessGates");
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let met = gates
            .iter()
            .filter(|g| {
                g.get("conditionType")
                    .and_then(Value::as_str)
                    .is_some_and(|t| has_condition(obj, t))
            })
            .count();
        format!("{met}/{}", gates.len())
    };
    vec![
        name,
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        age,
        json!(or_none(s(obj, "/status/podIP"))),
        json!(or_none(s(obj, "/spec/nodeName"))),
        json!(or_none(s(obj, "/status/nominatedNodeName"))),
        json!(gates_cell),
    ]
}

fn service(obj: &Value, name: Value, age: Value) -> Vec<Value> {
    let ty = s(obj, "/spec/type");
    let ty = if ty.is_empty() { "ClusterIP" } else { ty };
    let external_ips: Vec<&str> = arr(obj, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match ty {
        "ExternalName" => s(obj, "/spec/externalName").to_string(),
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| {
                    i.get("ip")
                        .or_else(|| i.get("hostname"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            ips.extend(external_ips.iter().map(|s| s.to_string()));
            if ips.is_empty() {
                "<pending>".to_string()
            } else {
                ips.join(",")
            }
        }
        _ => or_none(&external_ips.join(",")),
    };
    let ports: Vec<String> = arr(obj, "/spec/ports")
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p
                .get("nodePort")
                .and_then(Value::as_i64)
                .filter(|n| *n != 0)
            {
                Some(np) => format!("{port}:{np}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    vec![
        name,
        json!(ty),
        json!(or_none(s(obj, "/spec/clusterIP"))),
        json!(external),
        json!(or_none(&ports.join(","))),
        age,
        json!(map_string(obj.pointer("/spec/selector"))),
    ]
}

/// `10.0.0.1:80,10.0.0.2:80 + 3 more...`, as kubectl shows at most three.
fn endpoints(obj: &Value) -> String {
    let mut list = Vec::new();
    let mut total = 0usize;
    for subset in arr(obj, "/subsets") {
        let addresses = subset
            .get("addresses")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let ports = subset
            .get("ports")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for a in addresses {
            let ip = a.get("ip").and_then(Value::as_str).unwrap_or_default();
            if ports.is_empty() {
                total += 1;
                if list.len() < 3 {
                    list.push(ip.to_string());
                }
            }
            for p in ports {
                total += 1;
                if list.len() < 3 {
                    let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                    list.push(format!("{ip}:{port}"));
                }
            }
        }
    }
    if list.is_empty() {
        return "<none>".to_string();
    }
    let mut out = list.join(",");
    if total > list.len() {
        out.push_str(&format!(" + {} more...", total - list.len()));
    }
    out
}

fn event(obj: &Value, name: Value, now: i64) -> Vec<Value> {
    let since = |pointer: &str| {
        obj.pointer(pointer)
            .and_then(Value::as_str)
            .and_then(parse_rfc3339)
            .map(|t| human_duration(now - t))
    };
    let first = since("/firstTimestamp")
        .or_else(|| since("/eventTime"))
        .unwrap_or_else(|| "<unknown>".to_string());
    let mut last = since("/lastTimestamp").unwrap_or_else(|| first.clone());
    let mut count = int(obj, "/count").unwrap_or(0);
    if obj.get("series").is_some() {
        if let Some(t) = since("/series/lastObservedTime") {
            last = t;
        }
        count = int(obj, "/series/count").unwrap_or(count);
    } else if count == 0 {
        count = 1;
    }
    let last_seen = if count > 1 {
        format!("{last} (x{count} over {first})")
    } else {
        last
    };
    let kind = s(obj, "/involvedObject/kind").to_ascii_lowercase();
    let object = format!("{kind}/{}", s(obj, "/involvedObject/name"));
    let component = s(obj, "/source/component");
    let host = s(obj, "/source/host");
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last_seen),
        json!(s(obj, "/type")),
        json!(s(obj, "/reason")),
        json!(object),
        json!(s(obj, "/involvedObject/fieldPath")),
        json!(source),
        json!(s(obj, "/message").trim()),
        json!(first),
        json!(count.to_string()),
        name,
    ]
}

/// A metric target as kubectl shows it: `70%`, `100`, `500m`.
fn target_string(target: Option<&Value>) -> String {
    let Some(t) = target else {
        return "<unknown>".to_string();
    };
    if let Some(u) = t.get("averageUtilization").and_then(Value::as_i64) {
        return format!("{u}%");
    }
    for key in ["averageValue", "value"] {
        if let Some(v) = t.get(key) {
            return match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    "<unknown>".to_string()
}

fn hpa(obj: &Value, name: Value, age: Value) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        s(obj, "/spec/scaleTargetRef/kind"),
        s(obj, "/spec/scaleTargetRef/name")
    );
    let metrics = arr(obj, "/spec/metrics");
    let current = arr(obj, "/status/currentMetrics");
    let mut parts = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        let ty = m.get("type").and_then(Value::as_str).unwrap_or_default();
        let source = match ty {
            "Resource" => "resource",
            "ContainerResource" => "containerResource",
            "Pods" => "pods",
            "Object" => "object",
            "External" => "external",
            _ => "",
        };
        let spec = m.get(source);
        let target = target_string(spec.and_then(|s| s.get("target")));
        let cur = current
            .get(i)
            .filter(|c| c.get("type").and_then(Value::as_str) == Some(ty))
            .and_then(|c| c.get(source))
            .and_then(|c| c.get("current"))
            .map(|c| {
                if spec
                    .and_then(|s| s.pointer("/target/averageUtilization"))
                    .is_some()
                    && let Some(u) = c.get("averageUtilization").and_then(Value::as_i64)
                {
                    return format!("{u}%");
                }
                target_string(Some(c))
            })
            .unwrap_or_else(|| "<unknown>".to_string());
        let label = match source {
            "resource" | "containerResource" => spec
                .and_then(|s| s.get("name"))
                .and_then(Value::as_str)
                .map(|n| format!("{n}: "))
                .unwrap_or_default(),
            _ => String::new(),
        };
        parts.push(format!("{label}{cur}/{target}"));
    }
    let targets = match parts.len() {
        0 => "<none>".to_string(),
        1 | 2 => parts.join(", "),
        n => format!("{} + {} more...", parts[..2].join(", "), n - 2),
    };
    let min =
        int(obj, "/spec/minReplicas").map_or_else(|| "<unset>".to_string(), |m| m.to_string());
    vec![
        name,
        json!(reference),
        json!(targets),
        json!(min),
        json!(int(obj, "/spec/maxReplicas").unwrap_or(0)),
        json!(int(obj, "/status/currentReplicas").unwrap_or(0)),
        age,
    ]
}

#[cfg(test)]
mod tests;
