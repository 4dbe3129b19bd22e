//! `aos top pod[s] [NAME] [-n NS | -A] [-l SELECTOR] [--containers]` and
//! `aos top node[s] [NAME] [-l SELECTOR]`: CPU and memory use from the API's
//! `metrics.k8s.io/v1beta1`, printed with `kubectl top`'s columns and arithmetic (CPU in
//! millicores rounded up, memory in MiB rounded down, node percentages against the
//! Node's allocatable, truncated).

use std::collections::BTreeMap;

use aos_client::{Client, ClientError, ListParams};
use aos_types::ResourceType;
use aos_types::quantity::Quantity;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::api;
use crate::cmd::{Ctx, NamespaceArgs};
use crate::output::TextTable;

const METRICS: &str = "/apis/metrics.k8s.io/v1beta1";

/// Arguments of `aos top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    #[command(subcommand)]
    what: TopCommand,
}

#[derive(Debug, Subcommand)]
enum TopCommand {
    /// CPU and memory of pods (the sum of their containers).
    #[command(visible_alias = "pods", alias = "po")]
    Pod(TopPodArgs),
    /// CPU and memory of nodes, and their share of the node's allocatable.
    #[command(visible_alias = "nodes", alias = "no")]
    Node(TopNodeArgs),
}

/// How to order rows (default: by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SortBy {
    /// Highest CPU first.
    Cpu,
    /// Highest memory first.
    Memory,
}

/// Arguments of `aos top pod`.
#[derive(Debug, Args)]
struct TopPodArgs {
    /// One pod.
    #[arg(value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// Pods of every namespace.
    #[arg(short = 'A', long, conflicts_with_all = ["namespace", "name"])]
    all_namespaces: bool,
    /// Label selector, e.g. `app=web`.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,
    /// One line per container.
    #[arg(long)]
    containers: bool,
    /// Leave out the header line.
    #[arg(long)]
    no_headers: bool,
    /// Order by usage instead of name.
    #[arg(long, value_enum)]
    sort_by: Option<SortBy>,
}

/// Arguments of `aos top node`.
#[derive(Debug, Args)]
struct TopNodeArgs {
    /// One node.
    #[arg(value_name = "NAME")]
    name: Option<String>,
    /// Label selector, e.g. `kubernetes.io/os=linux`.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,
    /// Leave out the header line.
    #[arg(long)]
    no_headers: bool,
    /// Order by usage instead of name.
    #[arg(long, value_enum)]
    sort_by: Option<SortBy>,
}

pub(crate) async fn run(args: TopArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match args.what {
        TopCommand::Pod(a) => top_pods(&client, a).await,
        TopCommand::Node(a) => top_nodes(&client, a).await,
    }
}

/// Usage in nano-units: CPU in nanocores, memory in nano-bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Usage {
    cpu: i128,
    memory: i128,
}

impl Usage {
    fn of(usage: &Value) -> Self {
        let q = |k: &str| {
            usage
                .get(k)
                .and_then(Value::as_str)
                .and_then(|s| Quantity::parse(s).ok())
                .map_or(0, |q| q.nanos())
        };
        Usage {
            cpu: q("cpu"),
            memory: q("memory"),
        }
    }

    fn add(self, other: Usage) -> Usage {
        Usage {
            cpu: self.cpu + other.cpu,
            memory: self.memory + other.memory,
        }
    }

    /// Millicores, rounded up (Kubernetes' `MilliValue`).
    fn cpu_milli(self) -> i128 {
        ceil_div(self.cpu, 1_000_000)
    }

    /// Memory in thousandths of a byte, rounded up (`MilliValue` of a memory quantity).
    fn memory_milli(self) -> i128 {
        ceil_div(self.memory, 1_000_000)
    }

    /// `250m`, as kubectl prints CPU.
    fn cpu_text(self) -> String {
        format!("{}m", self.cpu_milli())
    }

    /// `22Mi`: whole bytes (rounded up), then MiB rounded down, as kubectl prints memory.
    fn memory_text(self) -> String {
        format!("{}Mi", ceil_div(self.memory, 1_000_000_000) / (1024 * 1024))
    }
}

fn ceil_div(n: i128, d: i128) -> i128 {
    if n <= 0 { n / d } else { (n + d - 1) / d }
}

/// `12%`: the truncated share of `available` (both as millis), as kubectl prints it.
fn percent(used_milli: i128, available_milli: i128) -> String {
    if available_milli <= 0 {
        return "<unknown>".into();
    }
    let fraction = used_milli as f64 / available_milli as f64 * 100.0;
    format!("{}%", fraction as i64)
}

fn items(list: &Value) -> Vec<Value> {
    list.get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// GET a metrics path; a server without the metrics API says so.
async fn get_metrics(client: &Client, path: &str) -> Result<Value, anyhow::Error> {
    match client.raw(http::Method::GET, path, None).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("the metrics API sent invalid JSON: {e}")),
        Err(e @ ClientError::Api(_)) if api::is_not_found(&e) && is_missing_api(&e) => {
            Err(anyhow::anyhow!("Metrics API not available"))
        }
        Err(e) => Err(anyhow::anyhow!(api::error_line(&e))),
    }
}

/// A 404 for the path itself (no such API), not for a named object.
fn is_missing_api(e: &ClientError) -> bool {
    matches!(e, ClientError::Api(s) if s.details.as_ref().is_none_or(|d| d.name.is_empty()))
}

fn with_selector(path: String, selector: Option<&str>) -> String {
    match selector {
        Some(s) => {
            let encoded: String = s
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{path}?labelSelector={encoded}")
        }
        None => path,
    }
}

fn rt(plural: &str) -> &'static ResourceType {
    aos_types::resource::by_plural("", "v1", plural).expect("core types are in the resource table")
}

/// Rows sorted as kubectl sorts them: by usage (highest first) or by name.
fn sort_rows<T>(rows: &mut [(String, Usage, T)], by: Option<SortBy>) {
    match by {
        Some(SortBy::Cpu) => rows.sort_by(|a, b| b.1.cpu.cmp(&a.1.cpu).then(a.0.cmp(&b.0))),
        Some(SortBy::Memory) => {
            rows.sort_by(|a, b| b.1.memory.cmp(&a.1.memory).then(a.0.cmp(&b.0)));
        }
        None => rows.sort_by(|a, b| a.0.cmp(&b.0)),
    }
}

/// The table of `aos top pod` from PodMetrics objects.
fn pod_table(
    metrics: &[Value],
    with_namespace: bool,
    containers: bool,
    sort_by: Option<SortBy>,
) -> TextTable {
    let mut table = TextTable::default();
    if with_namespace {
        table.headers.push("NAMESPACE".into());
    }
    if containers {
        table.headers.push("POD".into());
    }
    table
        .headers
        .extend(["NAME", "CPU(cores)", "MEMORY(bytes)"].map(String::from));
    let mut pods: Vec<(String, Usage, &Value)> = metrics
        .iter()
        .map(|m| {
            let total = m
                .get("containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .fold(Usage::default(), |acc, c| {
                    acc.add(Usage::of(c.get("usage").unwrap_or(&Value::Null)))
                });
            let key = if with_namespace {
                format!("{}/{}", meta(m, "namespace"), meta(m, "name"))
            } else {
                meta(m, "name").to_string()
            };
            (key, total, m)
        })
        .collect();
    sort_rows(&mut pods, sort_by);
    for (_, total, m) in pods {
        let mut prefix = Vec::new();
        if with_namespace {
            prefix.push(meta(m, "namespace").to_string());
        }
        if containers {
            let mut cs: Vec<(String, Usage, ())> = m
                .get("containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        c.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        Usage::of(c.get("usage").unwrap_or(&Value::Null)),
                        (),
                    )
                })
                .collect();
            sort_rows(&mut cs, sort_by);
            for (name, usage, ()) in cs {
                let mut row = prefix.clone();
                row.push(meta(m, "name").to_string());
                row.extend([name, usage.cpu_text(), usage.memory_text()]);
                table.rows.push(row);
            }
        } else {
            let mut row = prefix;
            row.extend([
                meta(m, "name").to_string(),
                total.cpu_text(),
                total.memory_text(),
            ]);
            table.rows.push(row);
        }
    }
    table
}

async fn top_pods(client: &Client, a: TopPodArgs) -> anyhow::Result<()> {
    let ns = a.namespace.or_default().to_string();
    let metrics = match &a.name {
        Some(name) => {
            let path = format!("{METRICS}/namespaces/{ns}/pods/{name}");
            match client.raw(http::Method::GET, &path, None).await {
                Ok(bytes) => vec![serde_json::from_slice::<Value>(&bytes)?],
                Err(e) if api::is_not_found(&e) && !is_missing_api(&e) => {
                    // Say whether the pod is missing or only its sample.
                    if let Err(e) = client.get(rt("pods"), Some(&ns), name).await {
                        anyhow::bail!(api::error_line(&e));
                    }
                    anyhow::bail!("metrics not available yet");
                }
                Err(e) if api::is_not_found(&e) => anyhow::bail!("Metrics API not available"),
                Err(e) => anyhow::bail!(api::error_line(&e)),
            }
        }
        None => {
            let path = if a.all_namespaces {
                format!("{METRICS}/pods")
            } else {
                format!("{METRICS}/namespaces/{ns}/pods")
            };
            items(&get_metrics(client, &with_selector(path, a.selector.as_deref())).await?)
        }
    };
    if metrics.is_empty() {
        // As kubectl: pods without samples yet are an error; no pods at all is not.
        let params = ListParams {
            label_selector: a.selector.clone(),
            ..Default::default()
        };
        let list_ns = (!a.all_namespaces).then_some(ns.as_str());
        let pods = client
            .list(rt("pods"), list_ns, &params)
            .await
            .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?;
        if !pods.items.is_empty() {
            anyhow::bail!("metrics not available yet");
        }
        if a.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {ns} namespace.");
        }
        return Ok(());
    }
    let table = pod_table(&metrics, a.all_namespaces, a.containers, a.sort_by);
    out!("{}", table.render(!a.no_headers));
    Ok(())
}

/// The table of `aos top node` from NodeMetrics and the Nodes' allocatable.
fn node_table(metrics: &[Value], nodes: &[Value], sort_by: Option<SortBy>) -> TextTable {
    let mut table = TextTable {
        headers: ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
            .map(String::from)
            .to_vec(),
        rows: Vec::new(),
    };
    let mut allocatable: BTreeMap<String, Usage> = nodes
        .iter()
        .map(|n| {
            (
                meta(n, "name").to_string(),
                Usage::of(n.pointer("/status/allocatable").unwrap_or(&Value::Null)),
            )
        })
        .collect();
    let mut rows: Vec<(String, Usage, ())> = metrics
        .iter()
        .map(|m| {
            (
                meta(m, "name").to_string(),
                Usage::of(m.get("usage").unwrap_or(&Value::Null)),
                (),
            )
        })
        .collect();
    sort_rows(&mut rows, sort_by);
    for (name, usage, ()) in rows {
        let available = allocatable.remove(&name).unwrap_or_default();
        table.rows.push(vec![
            name,
            usage.cpu_text(),
            percent(usage.cpu_milli(), available.cpu_milli()),
            usage.memory_text(),
            percent(usage.memory_milli(), available.memory_milli()),
        ]);
    }
    // Nodes without a sample, as kubectl lists them.
    for name in allocatable.into_keys() {
        let mut row = vec![name];
        row.extend(std::iter::repeat_n("<unknown>".to_string(), 4));
        table.rows.push(row);
    }
    table
}

async fn top_nodes(client: &Client, a: TopNodeArgs) -> anyhow::Result<()> {
    let (metrics, nodes) = match &a.name {
        Some(name) => {
            let path = format!("{METRICS}/nodes/{name}");
            let metrics = match client.raw(http::Method::GET, &path, None).await {
                Ok(bytes) => vec![serde_json::from_slice::<Value>(&bytes)?],
                Err(e) if api::is_not_found(&e) && !is_missing_api(&e) => {
                    if let Err(e) = client.get(rt("nodes"), None, name).await {
                        anyhow::bail!(api::error_line(&e));
                    }
                    anyhow::bail!("metrics not available yet");
                }
                Err(e) if api::is_not_found(&e) => anyhow::bail!("Metrics API not available"),
                Err(e) => anyhow::bail!(api::error_line(&e)),
            };
            let node = client
                .get(rt("nodes"), None, name)
                .await
                .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?;
            (metrics, vec![node])
        }
        None => {
            let path = with_selector(format!("{METRICS}/nodes"), a.selector.as_deref());
            let metrics = items(&get_metrics(client, &path).await?);
            let params = ListParams {
                label_selector: a.selector.clone(),
                ..Default::default()
            };
            let nodes = client
                .list(rt("nodes"), None, &params)
                .await
                .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?
                .items;
            (metrics, nodes)
        }
    };
    if metrics.is_empty() {
        anyhow::bail!("metrics not available yet");
    }
    let table = node_table(&metrics, &nodes, a.sort_by);
    out!("{}", table.render(!a.no_headers));
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(ns: &str, name: &str, containers: &[(&str, &str, &str)]) -> Value {
        let cs: Vec<Value> = containers
            .iter()
            .map(|(n, cpu, mem)| json!({"name": n, "usage": {"cpu": cpu, "memory": mem}}))
            .collect();
        json!({"kind": "PodMetrics", "metadata": {"name": name, "namespace": ns}, "containers": cs})
    }

    #[test]
    fn pods_print_as_kubectl_top_pod() {
        let metrics = [
            pod(
                "default",
                "web",
                &[("a", "1234567n", "22904Ki"), ("b", "5m", "1Mi")],
            ),
            pod("default", "api", &[("c", "250m", "1Gi")]),
        ];
        let t = pod_table(&metrics, false, false, None);
        assert_eq!(
            t.render(true),
            "NAME   CPU(cores)   MEMORY(bytes)\napi    250m         1024Mi\nweb    7m           23Mi\n"
        );
        let t = pod_table(&metrics, true, true, Some(SortBy::Cpu));
        assert_eq!(
            t.rows,
            vec![
                vec!["default", "api", "c", "250m", "1024Mi"],
                vec!["default", "web", "b", "5m", "1Mi"],
                vec!["default", "web", "a", "2m", "22Mi"],
            ]
        );
        assert_eq!(
            t.headers,
            ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
        );
    }

    #[test]
    fn nodes_print_as_kubectl_top_node() {
        let metrics =
            [json!({"metadata": {"name": "n1"}, "usage": {"cpu": "250m", "memory": "1Gi"}})];
        let nodes = [
            json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}}),
            json!({"metadata": {"name": "n2"}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}}),
        ];
        let t = node_table(&metrics, &nodes, None);
        assert_eq!(
            t.render(true),
            "NAME   CPU(cores)   CPU(%)      MEMORY(bytes)   MEMORY(%)\n\
             n1     250m         12%         1024Mi          25%\n\
             n2     <unknown>    <unknown>   <unknown>       <unknown>\n"
        );
    }

    #[test]
    fn quantities_round_as_kubectl() {
        let u = Usage::of(&json!({"cpu": "1n", "memory": "1048575"}));
        assert_eq!(u.cpu_text(), "1m");
        assert_eq!(u.memory_text(), "0Mi");
        assert_eq!(percent(125, 1000), "12%");
        assert_eq!(percent(1, 0), "<unknown>");
    }
}
