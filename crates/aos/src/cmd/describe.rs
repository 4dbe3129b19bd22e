//! `aos describe KIND NAME...`: a human description, as kubectl prints it, then the object's
//! Events. Deployment, ReplicaSet, Pod, Service, Namespace and Node have their own layout;
//! every other kind prints its YAML.

use std::fmt::Write as _;

use aos_client::{Client, ListParams};
use aos_types::ResourceType;
use clap::Args;
use serde_json::Value;

use crate::api;
use crate::cmd::{Ctx, NamespaceArgs, targets};
use crate::error::AlreadyReported;
use crate::output::{TextTable, age, to_yaml};

/// Arguments of `aos describe`.
#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    /// `TYPE NAME...` or `TYPE/NAME...`.
    #[arg(required = true, value_name = "RESOURCE")]
    resources: Vec<String>,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

pub(crate) async fn run(args: DescribeArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let targets = targets("describe", &args.resources)?;
    let client = ctx.client()?;
    let mut failed = false;
    let mut first = true;
    for (rt, name) in targets {
        let ns = rt.namespaced.then(|| args.namespace.or_default());
        let object = match client.get(rt, ns, &name).await {
            Ok(object) => object,
            Err(e) => {
                eprintln!("error: {}", api::error_line(&e));
                failed = true;
                continue;
            }
        };
        let text = describe(&client, rt, &object).await?;
        if !first {
            outln!();
        }
        first = false;
        out!("{text}");
    }
    if failed {
        Err(AlreadyReported.into())
    } else {
        Ok(())
    }
}

async fn describe(
    client: &Client,
    rt: &'static ResourceType,
    obj: &Value,
) -> anyhow::Result<String> {
    let mut out = Out::default();
    match (rt.group, rt.kind) {
        ("apps", "Deployment") => deployment(client, obj, &mut out).await,
        ("apps", "ReplicaSet") => replica_set(client, obj, &mut out).await,
        ("", "Pod") => pod(obj, &mut out),
        ("", "Service") => service(client, obj, &mut out).await,
        ("", "Namespace") => namespace(obj, &mut out),
        ("", "Node") => node(obj, &mut out),
        _ => {
            out.fields(
                0,
                &[
                    ("Name", name(obj).into()),
                    ("Namespace", namespace_of(obj).into()),
                ],
            );
            out.line(0, "");
            out.text.push_str(&to_yaml(obj)?);
        }
    }
    events(client, obj, &mut out).await;
    Ok(out.text)
}

/// Lines of aligned `Key:  value` fields.
#[derive(Default)]
struct Out {
    text: String,
}

/// A field value: one or more lines, or a nested block of aligned `key: value` pairs
/// (Limits, Environment) or lines (Mounts) below the key.
enum V {
    One(String),
    Many(Vec<String>),
    Pairs(Vec<(String, String)>),
    Lines(Vec<String>),
}

impl From<String> for V {
    fn from(s: String) -> Self {
        V::One(s)
    }
}

impl From<&str> for V {
    fn from(s: &str) -> Self {
        V::One(s.to_string())
    }
}

impl From<Vec<String>> for V {
    fn from(v: Vec<String>) -> Self {
        V::Many(v)
    }
}

impl Out {
    fn line(&mut self, indent: usize, s: &str) {
        let _ = writeln!(self.text, "{:indent$}{s}", "");
    }

    /// `Key:` then the value aligned at the longest key of the group plus two spaces.
    fn fields(&mut self, indent: usize, fields: &[(&str, V)]) {
        let width = fields.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0) + 2;
        for (key, value) in fields {
            let label = format!("{key}:");
            let lines: Vec<String> = match value {
                V::One(s) => vec![s.clone()],
                V::Many(v) | V::Lines(v) if v.is_empty() => vec!["<none>".into()],
                V::Pairs(v) if v.is_empty() => vec!["<none>".into()],
                V::Many(v) => v.clone(),
                V::Pairs(pairs) => {
                    self.line(indent, &label);
                    let inner = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0) + 2;
                    for (k, v) in pairs {
                        let line = format!(
                            "{:pad$}{:<inner$}{v}",
                            "",
                            format!("{k}:"),
                            pad = indent + 2
                        );
                        let _ = writeln!(self.text, "{}", line.trim_end());
                    }
                    continue;
                }
                V::Lines(lines) => {
                    self.line(indent, &label);
                    for l in lines {
                        self.line(indent + 2, l);
                    }
                    continue;
                }
            };
            for (i, value) in lines.iter().enumerate() {
                let head = if i == 0 { label.as_str() } else { "" };
                let line = format!("{:indent$}{head:<width$}{value}", "");
                let _ = writeln!(self.text, "{}", line.trim_end());
            }
        }
    }

    /// A heading line and an aligned table below it, as kubectl's Conditions and Events.
    fn table(&mut self, indent: usize, headers: &[&str], rows: Vec<Vec<String>>) {
        let headers: Vec<String> = headers.iter().map(|h| (*h).to_string()).collect();
        let rules: Vec<String> = headers.iter().map(|h| "-".repeat(h.len())).collect();
        let mut all = vec![rules];
        all.extend(rows);
        let table = TextTable { headers, rows: all };
        for line in table.render(true).lines() {
            self.line(indent, line);
        }
    }
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn i(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn name(obj: &Value) -> &str {
    s(obj, "/metadata/name")
}

fn namespace_of(obj: &Value) -> &str {
    s(obj, "/metadata/namespace")
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

fn map_lines(v: Option<&Value>, sep: &str) -> Vec<String> {
    let mut lines: Vec<String> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    format!(
                        "{k}{sep}{}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_string)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    lines.sort();
    lines
}

fn map_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs
}

fn labels(obj: &Value) -> Vec<String> {
    map_lines(obj.pointer("/metadata/labels"), "=")
}

fn annotations(obj: &Value) -> Vec<String> {
    map_lines(obj.pointer("/metadata/annotations"), ": ")
        .into_iter()
        .filter(|l| !l.starts_with(crate::merge::LAST_APPLIED))
        .collect()
}

/// `Thu, 27 Nov 2025 05:36:00 +0000`, kubectl's timestamp form.
fn timestamp(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%a, %d %b %Y %H:%M:%S %z").to_string(),
        Err(_) => or_none(ts),
    }
}

fn selector_text(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return "<none>".into();
    };
    let mut parts = map_lines(selector.get("matchLabels"), "=");
    for expr in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = s(expr, "/key");
        let values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match s(expr, "/operator") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            op => parts.push(format!("{key} {op} ({})", values.join(","))),
        }
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn controlled_by(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| format!("{}/{}", s(r, "/kind"), s(r, "/name")))
}

fn owned_by(obj: &Value, owner_uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| s(r, "/uid") == owner_uid))
}

fn conditions_table(out: &mut Out, obj: &Value, with_reason: bool) {
    let conditions = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if conditions.is_empty() {
        return;
    }
    out.line(0, "Conditions:");
    let rows = conditions
        .iter()
        .map(|c| {
            let mut row = vec![s(c, "/type").to_string(), s(c, "/status").to_string()];
            if with_reason {
                row.push(s(c, "/reason").to_string());
            }
            row
        })
        .collect();
    let headers: &[&str] = if with_reason {
        &["Type", "Status", "Reason"]
    } else {
        &["Type", "Status"]
    };
    out.table(2, headers, rows);
}

async fn deployment(client: &Client, d: &Value, out: &mut Out) {
    let desired = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let strategy = d
        .pointer("/spec/strategy/type")
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    let mut fields: Vec<(&str, V)> = vec![
        ("Name", name(d).into()),
        ("Namespace", namespace_of(d).into()),
        (
            "CreationTimestamp",
            timestamp(s(d, "/metadata/creationTimestamp")).into(),
        ),
        ("Labels", labels(d).into()),
        ("Annotations", annotations(d).into()),
        (
            "Selector",
            selector_text(d.pointer("/spec/selector")).into(),
        ),
        (
            "Replicas",
            format!(
                "{desired} desired | {} updated | {} total | {} available | {} unavailable",
                i(d, "/status/updatedReplicas"),
                i(d, "/status/replicas"),
                i(d, "/status/availableReplicas"),
                i(d, "/status/unavailableReplicas")
            )
            .into(),
        ),
        ("StrategyType", strategy.into()),
        (
            "MinReadySeconds",
            i(d, "/spec/minReadySeconds").to_string().into(),
        ),
    ];
    if strategy == "RollingUpdate" {
        let text = |p: &str| {
            d.pointer(p).map_or_else(
                || "25%".to_string(),
                |v| v.as_str().map_or_else(|| v.to_string(), str::to_string),
            )
        };
        fields.push((
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                text("/spec/strategy/rollingUpdate/maxUnavailable"),
                text("/spec/strategy/rollingUpdate/maxSurge")
            )
            .into(),
        ));
    }
    if d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        fields.push(("Paused", "true".into()));
    }
    out.fields(0, &fields);
    out.line(0, "Pod Template:");
    pod_template(out, d.pointer("/spec/template").unwrap_or(&Value::Null));
    conditions_table(out, d, true);
    let uid = s(d, "/metadata/uid");
    let rt = aos_types::resource::by_kind("apps/v1", "ReplicaSet");
    let sets = match rt {
        Some(rt) => client
            .list(rt, Some(namespace_of(d)), &ListParams::default())
            .await
            .map(|l| {
                api::list_items(l)
                    .into_iter()
                    .filter(|rs| owned_by(rs, uid))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let revision = s(
        d,
        "/metadata/annotations/deployment.kubernetes.io~1revision",
    );
    let describe_rs = |rs: &Value| {
        format!(
            "{} ({}/{} replicas created)",
            name(rs),
            i(rs, "/status/replicas"),
            i(rs, "/spec/replicas")
        )
    };
    let new: Vec<String> = sets
        .iter()
        .filter(|rs| {
            !revision.is_empty()
                && s(
                    rs,
                    "/metadata/annotations/deployment.kubernetes.io~1revision",
                ) == revision
        })
        .map(describe_rs)
        .collect();
    let old: Vec<String> = sets
        .iter()
        .filter(|rs| {
            revision.is_empty()
                || s(
                    rs,
                    "/metadata/annotations/deployment.kubernetes.io~1revision",
                ) != revision
        })
        .filter(|rs| i(rs, "/spec/replicas") > 0 || i(rs, "/status/replicas") > 0)
        .map(describe_rs)
        .collect();
    out.fields(
        0,
        &[
            ("OldReplicaSets", old.into()),
            (
                "NewReplicaSet",
                new.first()
                    .cloned()
                    .unwrap_or_else(|| "<none>".into())
                    .into(),
            ),
        ],
    );
}

async fn replica_set(client: &Client, rs: &Value, out: &mut Out) {
    let uid = s(rs, "/metadata/uid");
    let pods = match aos_types::resource::by_kind("v1", "Pod") {
        Some(rt) => client
            .list(rt, Some(namespace_of(rs)), &ListParams::default())
            .await
            .map(|l| {
                api::list_items(l)
                    .into_iter()
                    .filter(|p| owned_by(p, uid))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let count = |phase: &str| {
        pods.iter()
            .filter(|p| s(p, "/status/phase") == phase)
            .count()
    };
    let mut fields: Vec<(&str, V)> = vec![
        ("Name", name(rs).into()),
        ("Namespace", namespace_of(rs).into()),
        (
            "Selector",
            selector_text(rs.pointer("/spec/selector")).into(),
        ),
        ("Labels", labels(rs).into()),
        ("Annotations", annotations(rs).into()),
    ];
    if let Some(owner) = controlled_by(rs) {
        fields.push(("Controlled By", owner.into()));
    }
    fields.push((
        "Replicas",
        format!(
            "{} current / {} desired",
            i(rs, "/status/replicas"),
            rs.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        )
        .into(),
    ));
    fields.push((
        "Pods Status",
        format!(
            "{} Running / {} Waiting / {} Succeeded / {} Failed",
            count("Running"),
            count("Pending"),
            count("Succeeded"),
            count("Failed")
        )
        .into(),
    ));
    out.fields(0, &fields);
    out.line(0, "Pod Template:");
    pod_template(out, rs.pointer("/spec/template").unwrap_or(&Value::Null));
    conditions_table(out, rs, true);
}

/// The template section shared by Deployment and ReplicaSet.
fn pod_template(out: &mut Out, template: &Value) {
    let spec = template.get("spec").unwrap_or(&Value::Null);
    let mut fields: Vec<(&str, V)> = vec![("Labels", labels(template).into())];
    let ann = annotations(template);
    fields.push(("Annotations", ann.into()));
    let sa = s(spec, "/serviceAccountName");
    if !sa.is_empty() {
        fields.push(("Service Account", sa.into()));
    }
    out.fields(2, &fields);
    containers(out, spec, None, 2);
    volumes(out, spec, 2);
    scheduling(out, spec, 2);
}

fn containers(out: &mut Out, spec: &Value, statuses: Option<&Value>, indent: usize) {
    for (section, key, status_key) in [
        ("Init Containers", "initContainers", "initContainerStatuses"),
        ("Containers", "containers", "containerStatuses"),
    ] {
        let Some(list) = spec
            .get(key)
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
        else {
            continue;
        };
        out.line(indent, &format!("{section}:"));
        for c in list {
            let cname = s(c, "/name");
            let status = statuses
                .and_then(|st| st.get(status_key))
                .and_then(Value::as_array)
                .and_then(|all| all.iter().find(|cs| s(cs, "/name") == cname));
            out.line(indent + 1, &format!("{cname}:"));
            let mut fields: Vec<(&str, V)> = Vec::new();
            if let Some(st) = status {
                fields.push(("Container ID", or_none(s(st, "/containerID")).into()));
            }
            fields.push(("Image", s(c, "/image").into()));
            if let Some(st) = status {
                fields.push(("Image ID", or_none(s(st, "/imageID")).into()));
            }
            fields.push(("Port", port_list(c, "/containerPort").into()));
            fields.push(("Host Port", port_list(c, "/hostPort").into()));
            if let Some(cmd) = c.get("command").and_then(Value::as_array) {
                fields.push((
                    "Command",
                    cmd.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect::<Vec<_>>()
                        .into(),
                ));
            }
            if let Some(a) = c.get("args").and_then(Value::as_array) {
                fields.push((
                    "Args",
                    a.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect::<Vec<_>>()
                        .into(),
                ));
            }
            if let Some(st) = status {
                fields.push(("State", state_lines(st.get("state")).into()));
                if let Some(last) = st
                    .get("lastState")
                    .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
                {
                    fields.push(("Last State", state_lines(Some(last)).into()));
                }
                fields.push((
                    "Ready",
                    st.get("ready")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                        .into(),
                ));
                fields.push(("Restart Count", i(st, "/restartCount").to_string().into()));
            }
            for (label, key) in [("Limits", "limits"), ("Requests", "requests")] {
                let pairs = map_pairs(c.pointer(&format!("/resources/{key}")));
                if !pairs.is_empty() {
                    fields.push((label, V::Pairs(pairs)));
                }
            }
            for (label, key) in [
                ("Liveness", "livenessProbe"),
                ("Readiness", "readinessProbe"),
                ("Startup", "startupProbe"),
            ] {
                if let Some(p) = c.get(key) {
                    fields.push((label, probe(p).into()));
                }
            }
            fields.push(("Environment", V::Pairs(env_pairs(c))));
            let mounts: Vec<String> = c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|m| {
                    let mode = if m.get("readOnly").and_then(Value::as_bool) == Some(true) {
                        "ro"
                    } else {
                        "rw"
                    };
                    format!("{} from {} ({mode})", s(m, "/mountPath"), s(m, "/name"))
                })
                .collect();
            fields.push(("Mounts", V::Lines(mounts)));
            out.fields(indent + 2, &fields);
        }
    }
}

fn state_lines(state: Option<&Value>) -> Vec<String> {
    let Some((kind, detail)) = state
        .and_then(Value::as_object)
        .and_then(|m| m.iter().next())
    else {
        return vec!["Waiting".into()];
    };
    let mut lines = vec![match kind.as_str() {
        "running" => "Running".to_string(),
        "waiting" => "Waiting".to_string(),
        "terminated" => "Terminated".to_string(),
        other => other.to_string(),
    }];
    for (label, key) in [
        ("Reason", "reason"),
        ("Message", "message"),
        ("Exit Code", "exitCode"),
        ("Started", "startedAt"),
        ("Finished", "finishedAt"),
    ] {
        if let Some(v) = detail.get(key) {
            let text = match v {
                Value::String(t) if key.ends_with("At") => timestamp(t),
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            lines.push(format!("  {label}:  {text}"));
        }
    }
    lines
}

fn probe(p: &Value) -> String {
    let action = if let Some(h) = p.get("httpGet") {
        let port = h
            .get("port")
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default();
        let scheme = h
            .get("scheme")
            .and_then(Value::as_str)
            .unwrap_or("HTTP")
            .to_lowercase();
        format!(
            "http-get {scheme}://{}:{port}{}",
            s(h, "/host"),
            s(h, "/path")
        )
    } else if let Some(t) = p.get("tcpSocket") {
        let port = t
            .get("port")
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default();
        format!("tcp-socket {}:{port}", s(t, "/host"))
    } else if let Some(e) = p.get("exec") {
        let cmd: Vec<&str> = e
            .get("command")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        format!("exec [{}]", cmd.join(" "))
    } else if let Some(g) = p.get("grpc") {
        format!("grpc <pod>:{} {}", i(g, "/port"), s(g, "/service"))
    } else {
        "unknown".to_string()
    };
    let get = |k: &str, d: i64| p.get(k).and_then(Value::as_i64).unwrap_or(d);
    format!(
        "{action} delay={}s timeout={}s period={}s #success={} #failure={}",
        get("initialDelaySeconds", 0),
        get("timeoutSeconds", 1),
        get("periodSeconds", 10),
        get("successThreshold", 1),
        get("failureThreshold", 3)
    )
}

fn env_pairs(c: &Value) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
        let n = s(e, "/name").to_string();
        if let Some(v) = e.get("value").and_then(Value::as_str) {
            pairs.push((n, v.to_string()));
        } else if let Some(from) = e.get("valueFrom") {
            let text = if let Some(r) = from.get("secretKeyRef") {
                format!(
                    "<set to the key '{}' in secret '{}'>",
                    s(r, "/key"),
                    s(r, "/name")
                )
            } else if let Some(r) = from.get("configMapKeyRef") {
                format!(
                    "<set to the key '{}' of config map '{}'>",
                    s(r, "/key"),
                    s(r, "/name")
                )
            } else if let Some(r) = from.get("fieldRef") {
                format!(
                    "({}:{})",
                    r.get("apiVersion").and_then(Value::as_str).unwrap_or("v1"),
                    s(r, "/fieldPath")
                )
            } else if let Some(r) = from.get("resourceFieldRef") {
                format!("{} ({})", s(r, "/resource"), s(r, "/containerName"))
            } else {
                "<unknown source>".to_string()
            };
            let optional = from
                .as_object()
                .and_then(|m| m.values().next())
                .and_then(|r| r.get("optional"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            pairs.push((n, format!("{text}  Optional: {optional}")));
        } else {
            pairs.push((n, String::new()));
        }
    }
    pairs
}

fn volumes(out: &mut Out, spec: &Value, indent: usize) {
    let list = spec
        .get("volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        out.fields(indent, &[("Volumes", "<none>".into())]);
        return;
    }
    out.line(indent, "Volumes:");
    for v in &list {
        out.line(indent + 1, &format!("{}:", s(v, "/name")));
        let fields: Vec<(&str, V)> = if let Some(e) = v.get("emptyDir") {
            vec![
                (
                    "Type",
                    "EmptyDir (a temporary directory that shares a pod's lifetime)".into(),
                ),
                ("Medium", s(e, "/medium").into()),
                (
                    "SizeLimit",
                    e.get("sizeLimit")
                        .and_then(Value::as_str)
                        .unwrap_or("<unset>")
                        .into(),
                ),
            ]
        } else if let Some(sec) = v.get("secret") {
            vec![
                ("Type", "Secret (a volume populated by a Secret)".into()),
                ("SecretName", s(sec, "/secretName").into()),
                (
                    "Optional",
                    sec.get("optional")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                        .into(),
                ),
            ]
        } else if let Some(cm) = v.get("configMap") {
            vec![
                (
                    "Type",
                    "ConfigMap (a volume populated by a ConfigMap)".into(),
                ),
                ("Name", s(cm, "/name").into()),
                (
                    "Optional",
                    cm.get("optional")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                        .into(),
                ),
            ]
        } else if let Some(h) = v.get("hostPath") {
            vec![
                ("Type", "HostPath (bare host directory volume)".into()),
                ("Path", s(h, "/path").into()),
            ]
        } else {
            let kind = v
                .as_object()
                .and_then(|m| m.keys().find(|k| *k != "name"))
                .cloned()
                .unwrap_or_default();
            vec![("Type", kind.into())]
        };
        out.fields(indent + 2, &fields);
    }
}

fn scheduling(out: &mut Out, spec: &Value, indent: usize) {
    let selectors = map_lines(spec.get("nodeSelector"), "=");
    let tolerations: Vec<String> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            let mut text = s(t, "/key").to_string();
            if let Some(v) = t.get("value").and_then(Value::as_str) {
                let _ = write!(text, "={v}");
            }
            if let Some(e) = t.get("effect").and_then(Value::as_str) {
                let _ = write!(text, ":{e}");
            }
            if t.get("operator").and_then(Value::as_str) == Some("Exists") {
                text.push_str(" op=Exists");
            }
            if let Some(secs) = t.get("tolerationSeconds").and_then(Value::as_i64) {
                let _ = write!(text, " for {secs}s");
            }
            text
        })
        .collect();
    out.fields(
        indent,
        &[
            (
                "Node-Selectors",
                if selectors.is_empty() {
                    "<none>".to_string()
                } else {
                    selectors.join(",")
                }
                .into(),
            ),
            ("Tolerations", tolerations.into()),
        ],
    );
}

fn qos_class(pod: &Value) -> String {
    if let Some(q) = pod.pointer("/status/qosClass").and_then(Value::as_str) {
        return q.to_string();
    }
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        if limits.is_some_and(|m| !m.is_empty()) || requests.is_some_and(|m| !m.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|m| m.get(res));
            let request = requests.and_then(|m| m.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
    .to_string()
}

fn pod(p: &Value, out: &mut Out) {
    let status = p.get("status").unwrap_or(&Value::Null);
    let mut fields: Vec<(&str, V)> = vec![
        ("Name", name(p).into()),
        ("Namespace", namespace_of(p).into()),
        ("Priority", i(p, "/spec/priority").to_string().into()),
        (
            "Service Account",
            p.pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .into(),
        ),
        (
            "Node",
            {
                let node = s(p, "/spec/nodeName");
                if node.is_empty() {
                    "<none>".to_string()
                } else {
                    format!("{node}/{}", s(p, "/status/hostIP"))
                        .trim_end_matches('/')
                        .to_string()
                }
            }
            .into(),
        ),
    ];
    if let Some(start) = status.get("startTime").and_then(Value::as_str) {
        fields.push(("Start Time", timestamp(start).into()));
    }
    fields.push(("Labels", labels(p).into()));
    fields.push(("Annotations", annotations(p).into()));
    if let Some(deleted) = p
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
    {
        fields.push((
            "Status",
            format!("Terminating (lasts {})", age(Some(deleted))).into(),
        ));
        fields.push((
            "Termination Grace Period",
            format!("{}s", i(p, "/metadata/deletionGracePeriodSeconds")).into(),
        ));
    } else {
        fields.push(("Status", or_none(s(status, "/phase")).into()));
    }
    for (label, key) in [("Reason", "/reason"), ("Message", "/message")] {
        let v = s(status, key);
        if !v.is_empty() {
            fields.push((label, v.into()));
        }
    }
    fields.push(("IP", s(status, "/podIP").into()));
    let ips: Vec<String> = status
        .get("podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|ip| format!("IP:  {}", s(ip, "/ip")))
        .collect();
    fields.push(("IPs", ips.into()));
    if let Some(owner) = controlled_by(p) {
        fields.push(("Controlled By", owner.into()));
    }
    out.fields(0, &fields);
    let spec = p.get("spec").unwrap_or(&Value::Null);
    containers(out, spec, Some(status), 0);
    conditions_table(out, p, false);
    volumes(out, spec, 0);
    out.fields(0, &[("QoS Class", qos_class(p).into())]);
    scheduling(out, spec, 0);
}

async fn service(client: &Client, svc: &Value, out: &mut Out) {
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let endpoints = match aos_types::resource::by_kind("v1", "Endpoints") {
        Some(rt) => client
            .get(rt, Some(namespace_of(svc)), name(svc))
            .await
            .ok(),
        None => None,
    };
    let addresses: Vec<String> = endpoints
        .as_ref()
        .and_then(|e| e.get("subsets"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|subset| {
            let ports: Vec<i64> = subset
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| i(p, "/port"))
                .collect();
            let ips: Vec<String> = subset
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|a| s(a, "/ip").to_string())
                .collect();
            ips.into_iter().flat_map(move |ip| {
                ports
                    .clone()
                    .into_iter()
                    .map(move |port| format!("{ip}:{port}"))
            })
        })
        .collect();
    let ips: Vec<&str> = svc
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut fields: Vec<(&str, V)> = vec![
        ("Name", name(svc).into()),
        ("Namespace", namespace_of(svc).into()),
        ("Labels", labels(svc).into()),
        ("Annotations", annotations(svc).into()),
        (
            "Selector",
            {
                let sel = map_lines(svc.pointer("/spec/selector"), "=");
                if sel.is_empty() {
                    "<none>".to_string()
                } else {
                    sel.join(",")
                }
            }
            .into(),
        ),
        (
            "Type",
            svc.pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .into(),
        ),
        (
            "IP Family Policy",
            svc.pointer("/spec/ipFamilyPolicy")
                .and_then(Value::as_str)
                .unwrap_or("SingleStack")
                .into(),
        ),
        ("IP", or_none(s(svc, "/spec/clusterIP")).into()),
        (
            "IPs",
            if ips.is_empty() {
                "<none>".to_string()
            } else {
                ips.join(",")
            }
            .into(),
        ),
    ];
    for p in &ports {
        let pname = p.get("name").and_then(Value::as_str).unwrap_or("<unset>");
        let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        fields.push((
            "Port",
            format!("{pname}  {}/{protocol}", i(p, "/port")).into(),
        ));
        let target = p.get("targetPort").map_or_else(
            || i(p, "/port").to_string(),
            |t| t.as_str().map_or_else(|| t.to_string(), str::to_string),
        );
        fields.push(("TargetPort", format!("{target}/{protocol}").into()));
        if let Some(node_port) = p.get("nodePort").and_then(Value::as_i64) {
            fields.push((
                "NodePort",
                format!("{pname}  {node_port}/{protocol}").into(),
            ));
        }
    }
    fields.push((
        "Endpoints",
        if addresses.is_empty() {
            String::new()
        } else {
            addresses.join(",")
        }
        .into(),
    ));
    fields.push((
        "Session Affinity",
        svc.pointer("/spec/sessionAffinity")
            .and_then(Value::as_str)
            .unwrap_or("None")
            .into(),
    ));
    out.fields(0, &fields);
}

fn namespace(ns: &Value, out: &mut Out) {
    out.fields(
        0,
        &[
            ("Name", name(ns).into()),
            ("Labels", labels(ns).into()),
            ("Annotations", annotations(ns).into()),
            ("Status", or_none(s(ns, "/status/phase")).into()),
        ],
    );
    out.line(0, "");
    out.line(0, "No resource quota.");
    out.line(0, "");
    out.line(0, "No LimitRange resource.");
}

fn node(n: &Value, out: &mut Out) {
    let roles: Vec<String> = n
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let taints: Vec<String> = n
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            let value = t
                .get("value")
                .and_then(Value::as_str)
                .map(|v| format!("={v}"))
                .unwrap_or_default();
            format!("{}{value}:{}", s(t, "/key"), s(t, "/effect"))
        })
        .collect();
    out.fields(
        0,
        &[
            ("Name", name(n).into()),
            (
                "Roles",
                if roles.is_empty() {
                    "<none>".to_string()
                } else {
                    roles.join(",")
                }
                .into(),
            ),
            ("Labels", labels(n).into()),
            ("Annotations", annotations(n).into()),
            (
                "CreationTimestamp",
                timestamp(s(n, "/metadata/creationTimestamp")).into(),
            ),
            ("Taints", taints.into()),
            (
                "Unschedulable",
                n.pointer("/spec/unschedulable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string()
                    .into(),
            ),
        ],
    );
    conditions_table(out, n, true);
    let addresses: Vec<String> = n
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| format!("  {}:  {}", s(a, "/type"), s(a, "/address")))
        .collect();
    out.fields(
        0,
        &[(
            "Addresses",
            V::Many(std::iter::once(String::new()).chain(addresses).collect()),
        )],
    );
    for (label, key) in [
        ("Capacity", "/status/capacity"),
        ("Allocatable", "/status/allocatable"),
    ] {
        let lines = map_lines(n.pointer(key), ":  ");
        if !lines.is_empty() {
            out.line(0, &format!("{label}:"));
            for l in lines {
                out.line(2, &l);
            }
        }
    }
    if let Some(info) = n.pointer("/status/nodeInfo").and_then(Value::as_object) {
        out.line(0, "System Info:");
        for (k, v) in info {
            out.line(2, &format!("{k}:  {}", v.as_str().unwrap_or_default()));
        }
    }
}

/// The `Events:` table of the object, oldest first.
async fn events(client: &Client, obj: &Value, out: &mut Out) {
    let Some(rt) = aos_types::resource::by_kind("v1", "Event") else {
        return;
    };
    let ns = namespace_of(obj);
    let selector = format!(
        "involvedObject.name={},involvedObject.namespace={ns},involvedObject.uid={}",
        name(obj),
        s(obj, "/metadata/uid")
    );
    let params = ListParams {
        field_selector: Some(selector),
        ..Default::default()
    };
    let list_ns = (!ns.is_empty()).then_some(ns);
    let mut items = match client.list(rt, list_ns, &params).await {
        Ok(list) => api::list_items(list),
        Err(e) => {
            out.line(
                0,
                &format!("Events:  <unavailable: {}>", api::error_line(&e)),
            );
            return;
        }
    };
    if items.is_empty() {
        out.line(0, "Events:  <none>");
        return;
    }
    let last_seen = |e: &Value| -> String {
        [
            "/lastTimestamp",
            "/eventTime",
            "/firstTimestamp",
            "/metadata/creationTimestamp",
        ]
        .iter()
        .map(|p| s(e, p))
        .find(|t| !t.is_empty())
        .unwrap_or_default()
        .to_string()
    };
    items.sort_by_key(|e| last_seen(e).parse::<jiff::Timestamp>().ok());
    let rows = items
        .iter()
        .map(|e| {
            let count = i(e, "/count");
            let last = last_seen(e);
            let first = s(e, "/firstTimestamp");
            let when = if count > 1 && !first.is_empty() {
                format!("{} (x{count} over {})", age(Some(&last)), age(Some(first)))
            } else {
                age(Some(&last))
            };
            let from = [s(e, "/source/component"), s(e, "/reportingComponent")]
                .into_iter()
                .find(|f| !f.is_empty())
                .unwrap_or_default();
            vec![
                s(e, "/type").to_string(),
                s(e, "/reason").to_string(),
                when,
                from.to_string(),
                s(e, "/message").to_string(),
            ]
        })
        .collect();
    out.line(0, "Events:");
    out.table(2, &["Type", "Reason", "Age", "From", "Message"], rows);
}

/// A container's ports as `NUMBER/PROTOCOL, ...` for the field at `pointer` of each port
/// (`/containerPort` or `/hostPort`), or `<none>`.
fn port_list(container: &Value, pointer: &str) -> String {
    let ports: Vec<String> = container
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                i(p, pointer),
                p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
            )
        })
        .collect();
    if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_align_and_continue_lines() {
        let mut out = Out::default();
        out.fields(
            0,
            &[
                ("Name", "x".into()),
                ("Labels", vec!["a=b".to_string(), "c=d".to_string()].into()),
                ("Annotations", V::Many(vec![])),
            ],
        );
        assert_eq!(
            out.text,
            "Name:         x\nLabels:       a=b\n              c=d\nAnnotations:  <none>\n"
        );
    }

    #[test]
    fn qos() {
        let pod = |res: Value| json!({"spec": {"containers": [{"name": "c", "resources": res}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(
                json!({"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "1Gi"}})
            )),
            "Burstable"
        );
    }

    #[test]
    fn probes_and_selectors() {
        let p = json!({"httpGet": {"path": "/health", "port": 3000}, "initialDelaySeconds": 30, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3});
        assert_eq!(
            probe(&p),
            "http-get http://:3000/health delay=30s timeout=5s period=10s #success=1 #failure=3"
        );
        let sel = json!({"matchLabels": {"app": "x"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        assert_eq!(selector_text(Some(&sel)), "app=x,tier in (a,b)");
    }
}
