//! `aos logs [pod/]NAME [CONTAINER] [-c CONTAINER] [-f] [-p] [--tail N] [--timestamps]
//! [--since DUR | --since-time TIME] [--limit-bytes N] [-n NS]`: a container's log, read
//! through the API's `pods/{name}/log` (which streams it from the pod's node), as
//! `kubectl logs` reads it.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use aos_types::ResourceType;
use clap::Args;
use futures::StreamExt as _;
use serde_json::Value;

use crate::api;
use crate::cmd::wait::parse_duration;
use crate::cmd::{Ctx, NamespaceArgs, resource_type};
use crate::error::UsageError;

/// The annotation naming the container `kubectl logs` and `kubectl exec` default to.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Arguments of `aos logs`.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The pod: `NAME` or `pod/NAME`.
    #[arg(value_name = "POD")]
    pod: String,
    /// The container (same as `-c`).
    #[arg(value_name = "CONTAINER", conflicts_with = "container")]
    container_arg: Option<String>,
    /// The container (default: the pod's `kubectl.kubernetes.io/default-container`, else its
    /// first container).
    #[arg(short = 'c', long, value_name = "CONTAINER")]
    container: Option<String>,
    /// Keep streaming new lines until the container stops.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The log of the previous (terminated) run of the container.
    #[arg(short = 'p', long)]
    previous: bool,
    /// Lines from the end to show (-1: all).
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    tail: i64,
    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(long)]
    timestamps: bool,
    /// Only lines newer than this, e.g. `5s`, `2m`, `3h`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "since_time")]
    since: Option<Duration>,
    /// Only lines after this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    since_time: Option<String>,
    /// At most this many bytes of log.
    #[arg(long, value_name = "N")]
    limit_bytes: Option<i64>,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

fn pods() -> &'static ResourceType {
    aos_types::resource::by_plural("", "v1", "pods").expect("pods are in the resource table")
}

/// The pod name from `NAME` or `TYPE/NAME` (a pod type only).
fn pod_name(arg: &str) -> anyhow::Result<String> {
    let Some((kind, name)) = arg.split_once('/') else {
        return Ok(arg.to_string());
    };
    let rt = resource_type("logs", kind)?;
    if !std::ptr::eq(rt, pods()) {
        return Err(UsageError::new(
            "logs",
            format!(
                "aos logs reads the logs of pods, not {}: give a pod name",
                rt.plural
            ),
        )
        .into());
    }
    if name.is_empty() {
        return Err(UsageError::new("logs", format!("a pod name is required: {arg}")).into());
    }
    Ok(name.to_string())
}

/// The container to read when none was given, and the note kubectl prints when it chose
/// among several.
fn default_container(pod: &Value) -> Option<(String, Option<String>)> {
    let names: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    if let Some(annotated) = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|c| names.contains(c))
    {
        return Some((annotated.to_string(), None));
    }
    let first = names.first()?.to_string();
    let note = (names.len() > 1).then(|| {
        format!(
            "Defaulted container \"{first}\" out of: {}",
            names.join(", ")
        )
    });
    Some((first, note))
}

/// The query of `pods/{name}/log`.
fn query(args: &LogsArgs, container: Option<&str>) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut q = Vec::new();
    if let Some(c) = container {
        q.push(("container", c.to_string()));
    }
    if args.follow {
        q.push(("follow", "true".into()));
    }
    if args.previous {
        q.push(("previous", "true".into()));
    }
    if args.timestamps {
        q.push(("timestamps", "true".into()));
    }
    if args.tail >= 0 {
        q.push(("tailLines", args.tail.to_string()));
    } else if args.tail < -1 {
        return Err(UsageError::new("logs", "--tail must be -1 (all) or a line count").into());
    }
    if let Some(since) = args.since {
        // Whole seconds, rounded up, at least one (as kubectl sends them).
        let seconds = since.as_secs() + u64::from(since.subsec_nanos() > 0);
        q.push(("sinceSeconds", seconds.max(1).to_string()));
    }
    if let Some(t) = &args.since_time {
        let ts: jiff::Timestamp = t.parse().map_err(|e| {
            UsageError::new(
                "logs",
                format!("--since-time {t:?} is not an RFC 3339 time: {e}"),
            )
        })?;
        q.push(("sinceTime", ts.to_string()));
    }
    if let Some(n) = args.limit_bytes {
        if n < 1 {
            return Err(UsageError::new("logs", "--limit-bytes must be greater than 0").into());
        }
        q.push(("limitBytes", n.to_string()));
    }
    Ok(q)
}

/// Write raw bytes to stdout; a closed pipe ends the process quietly (as `out!` does).
fn write_raw(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

pub(crate) async fn run(args: LogsArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let name = pod_name(&args.pod)?;
    let ns = args.namespace.or_default().to_string();
    let asked = args
        .container
        .clone()
        .or_else(|| args.container_arg.clone());
    // Validate the flags before any request.
    query(&args, asked.as_deref())?;
    let client = ctx.client()?;
    let container = match asked {
        Some(c) => Some(c),
        None => {
            let pod = client
                .get(pods(), Some(&ns), &name)
                .await
                .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?;
            default_container(&pod).map(|(c, note)| {
                if let Some(note) = note {
                    eprintln!("{note}");
                }
                c
            })
        }
    };
    let q = query(&args, container.as_deref())?;
    let path = aos_client::resource_path(pods(), Some(&ns), Some(&name), Some("log"));
    let mut stream = client
        .get_stream(&path, &q)
        .await
        .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            anyhow::anyhow!(
                "the log stream of pod {name} broke: {}",
                api::error_line(&e)
            )
        })?;
        write_raw(&chunk)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use serde_json::json;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: LogsArgs,
    }

    fn parse(argv: &[&str]) -> LogsArgs {
        let mut full = vec!["logs"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().args
    }

    #[test]
    fn flags_become_kubernetes_query_names() {
        let a = parse(&[
            "p",
            "-c",
            "web",
            "-f",
            "-p",
            "--tail",
            "10",
            "--timestamps",
            "--since",
            "90s",
            "--limit-bytes",
            "100",
        ]);
        assert_eq!(
            query(&a, a.container.as_deref()).unwrap(),
            vec![
                ("container", "web".to_string()),
                ("follow", "true".into()),
                ("previous", "true".into()),
                ("timestamps", "true".into()),
                ("tailLines", "10".into()),
                ("sinceSeconds", "90".into()),
                ("limitBytes", "100".into()),
            ]
        );
        let a = parse(&["p"]);
        assert!(query(&a, None).unwrap().is_empty());
        let a = parse(&["p", "--since", "1500ms"]);
        assert_eq!(
            query(&a, None).unwrap(),
            vec![("sinceSeconds", "2".to_string())]
        );
        let a = parse(&["p", "--since-time", "2026-01-02T03:04:05+01:00"]);
        assert_eq!(
            query(&a, None).unwrap(),
            vec![("sinceTime", "2026-01-02T02:04:05Z".to_string())]
        );
        assert!(query(&parse(&["p", "--tail", "-2"]), None).is_err());
        assert!(query(&parse(&["p", "--since-time", "noon"]), None).is_err());
        let a = parse(&["p", "second"]);
        assert_eq!(a.container_arg.as_deref(), Some("second"));
    }

    #[test]
    fn pod_arguments() {
        assert_eq!(pod_name("web-1").unwrap(), "web-1");
        assert_eq!(pod_name("pod/web-1").unwrap(), "web-1");
        assert_eq!(pod_name("po/web-1").unwrap(), "web-1");
        assert!(pod_name("deployment/web").is_err());
    }

    #[test]
    fn defaults_the_container_as_kubectl_does() {
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(default_container(&one), Some(("a".into(), None)));
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            default_container(&two),
            Some((
                "a".into(),
                Some("Defaulted container \"a\" out of: a, b".into())
            ))
        );
        let annotated = json!({
            "metadata": {"annotations": {DEFAULT_CONTAINER_ANNOTATION: "b"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}
        });
        assert_eq!(default_container(&annotated), Some(("b".into(), None)));
    }
}
