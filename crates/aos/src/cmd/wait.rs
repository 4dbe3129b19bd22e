//! `aos wait --for=condition=C[=VALUE] KIND/NAME --timeout=DUR`, and `--for=delete`.
//!
//! Watch-based: one GET, then a watch on the object's name from its resourceVersion; no polling.

use std::time::Duration;

use aos_client::{Client, ListParams};
use aos_types::ResourceType;
use clap::Args;
use futures::StreamExt as _;
use serde_json::Value;
use tokio::time::Instant;

use crate::api;
use crate::cmd::{Ctx, NamespaceArgs, targets};
use crate::output::object_ref;

/// Arguments of `aos wait`.
#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    /// `TYPE/NAME...` or `TYPE NAME...`.
    #[arg(required = true, value_name = "RESOURCE")]
    resources: Vec<String>,
    /// What to wait for: `condition=NAME[=VALUE]` (VALUE defaults to True) or `delete`.
    #[arg(long = "for", value_name = "CONDITION", required = true, value_parser = parse_for)]
    for_: Wanted,
    /// How long to wait (`30s`, `2m`, `1h30m`, `500ms`; a bare number is seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

/// What `--for` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// The object is gone (or replaced by one with another uid).
    Delete,
    /// `status.conditions[type=NAME].status == VALUE`.
    Condition {
        /// Condition type.
        name: String,
        /// Wanted status.
        value: String,
    },
}

fn parse_for(s: &str) -> Result<Wanted, String> {
    if s == "delete" {
        return Ok(Wanted::Delete);
    }
    if let Some(rest) = s.strip_prefix("condition=") {
        let (name, value) = match rest.split_once('=') {
            Some((name, value)) => (name, value),
            None => (rest, "True"),
        };
        if name.is_empty() || value.is_empty() {
            return Err(format!(
                "invalid condition in --for={s}: expected condition=NAME[=VALUE]"
            ));
        }
        return Ok(Wanted::Condition {
            name: name.to_string(),
            value: value.to_string(),
        });
    }
    Err(format!(
        "unrecognized condition: \"{s}\" (supported: delete, condition=NAME[=VALUE])"
    ))
}

/// Parse `500ms`, `30s`, `2m`, `1h30m`, `90` (seconds).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(seconds) = s.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration \"{s}\""));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration \"{s}\""))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            unit => return Err(format!("invalid duration \"{s}\": unknown unit \"{unit}\"")),
        };
        total += Duration::from_secs_f64(seconds);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

pub(crate) async fn run(args: WaitArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let targets = targets("wait", &args.resources)?;
    let client = ctx.client()?;
    let deadline = Instant::now() + args.timeout;
    for (rt, name) in targets {
        let ns = rt.namespaced.then(|| args.namespace.or_default());
        match tokio::time::timeout_at(deadline, wait_for(&client, rt, ns, &name, &args.for_)).await
        {
            Ok(Ok(())) => outln!("{} condition met", object_ref(rt, &name)),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(timeout_error(rt, &name)),
        }
    }
    Ok(())
}

/// Wait (without a deadline: the caller wraps it in one) until `wanted` holds for the object.
pub(crate) async fn wait_for(
    client: &Client,
    rt: &'static ResourceType,
    ns: Option<&str>,
    name: &str,
    wanted: &Wanted,
) -> anyhow::Result<()> {
    let mut first_uid: Option<String> = None;
    loop {
        let object = match client.get(rt, ns, name).await {
            Ok(object) => object,
            Err(e) if api::is_not_found(&e) => {
                if *wanted == Wanted::Delete {
                    return Ok(());
                }
                anyhow::bail!("{} \"{name}\" not found", crate::output::resource_ref(rt));
            }
            Err(e) => anyhow::bail!(api::error_line(&e)),
        };
        let uid = object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let first = first_uid.get_or_insert_with(|| uid.clone()).clone();
        if satisfied(wanted, &object, &first) {
            return Ok(());
        }
        let resource_version = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("0")
            .to_string();
        let params = ListParams {
            field_selector: Some(format!("metadata.name={name}")),
            ..Default::default()
        };
        let mut stream = client
            .watch(rt, ns, &params, &resource_version)
            .await
            .map_err(|e| anyhow::anyhow!(api::error_line(&e)))?;
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { break };
            let (kind, object) = api::watch_event_parts(&event);
            match kind {
                "DELETED" if *wanted == Wanted::Delete => return Ok(()),
                "ADDED" | "MODIFIED" if satisfied(wanted, object, &first) => return Ok(()),
                "ERROR" => break,
                _ => {}
            }
        }
        // The watch ended (server timeout, compaction, restart): look again and re-watch.
    }
}

fn satisfied(wanted: &Wanted, object: &Value, first_uid: &str) -> bool {
    match wanted {
        Wanted::Delete => {
            object
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                != first_uid
        }
        Wanted::Condition { name, value } => condition_met(object, name, value),
    }
}

/// Whether `status.conditions` has `type == name` with `status == value` (both compared
/// case-insensitively, as kubectl does), and the status is not older than the spec.
pub(crate) fn condition_met(object: &Value, name: &str, value: &str) -> bool {
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let stale =
        |observed: Option<i64>| matches!((observed, generation), (Some(o), Some(g)) if o < g);
    if stale(
        object
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64),
    ) {
        return false;
    }
    let Some(conditions) = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
    else {
        return false;
    };
    conditions.iter().any(|c| {
        c.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case(name))
            && c.get("status")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(value))
            && !stale(c.get("observedGeneration").and_then(Value::as_i64))
    })
}

/// The error `aos wait` (and `delete --wait`) prints on timeout.
pub(crate) fn timeout_error(rt: &ResourceType, name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "timed out waiting for the condition on {}/{name}",
        rt.plural
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn for_forms() {
        assert_eq!(parse_for("delete").unwrap(), Wanted::Delete);
        assert_eq!(
            parse_for("condition=Available").unwrap(),
            Wanted::Condition {
                name: "Available".into(),
                value: "True".into()
            }
        );
        assert_eq!(
            parse_for("condition=Ready=false").unwrap(),
            Wanted::Condition {
                name: "Ready".into(),
                value: "false".into()
            }
        );
        assert!(parse_for("jsonpath={.x}").is_err());
    }

    #[test]
    fn conditions_respect_generation() {
        let mut d = json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "conditions": [{"type": "Available", "status": "True"}]}});
        assert!(condition_met(&d, "available", "true"));
        assert!(!condition_met(&d, "Available", "False"));
        d["status"]["observedGeneration"] = json!(1);
        assert!(!condition_met(&d, "Available", "True"));
    }
}
