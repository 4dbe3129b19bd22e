//! `aos apply -f PATH...`: client-side apply, as `kubectl apply` does it.
//!
//! Each document is checked locally with `aos_types::admit` first (so errors read the same
//! whatever the server says and need no round trip), then created, or patched with the
//! three-way merge of [`crate::merge`]. Namespaces go first; the other documents follow in file
//! order. A failing document does not stop the others; the exit status is 1 if any failed.

use std::collections::BTreeSet;

use aos_client::{Client, Patch};
use aos_types::ResourceType;
use clap::Args;
use serde_json::Value;

use crate::api;
use crate::cmd::{Ctx, NamespaceArgs};
use crate::error::{AlreadyReported, UsageError};
use crate::manifests::{Item, parse_items, read_sources};
use crate::merge::{LAST_APPLIED, three_way_patch};
use crate::output::object_ref;

/// Arguments of `aos apply`.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// Files, directories (recursively: *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    files: Vec<String>,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

/// What apply did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It did not exist.
    Created,
    /// It existed and was patched.
    Configured,
    /// It existed and already matched.
    Unchanged,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

pub(crate) async fn run(args: ApplyArgs, ctx: &Ctx) -> anyhow::Result<()> {
    if args.files.is_empty() {
        return Err(UsageError::new("apply", "must specify one of -f").into());
    }
    let sources = read_sources(&args.files)?;
    let (items, parse_errors) = parse_items(&sources, args.namespace.namespace.as_deref());
    let mut failed = !parse_errors.is_empty();
    for e in &parse_errors {
        eprintln!("error: {e}");
    }
    if items.is_empty() {
        return if failed {
            Err(AlreadyReported.into())
        } else {
            Err(anyhow::anyhow!("no objects passed to apply"))
        };
    }
    let client = ctx.client()?;
    if !apply_items(&client, items).await {
        failed = true;
    }
    if failed {
        Err(AlreadyReported.into())
    } else {
        Ok(())
    }
}

/// Apply items (namespaces first), printing one line per object on stdout and warnings and
/// errors on stderr. Returns whether all succeeded.
pub(crate) async fn apply_items(client: &Client, mut items: Vec<Item>) -> bool {
    // A stable sort keeps file order within each group.
    items.sort_by_key(|item| item.rt.kind != "Namespace" || !item.rt.group.is_empty());
    let mut ok = true;
    for item in items {
        let origin = item.origin.to_string();
        match apply_one(client, &item, &mut |w| eprintln!("Warning: {origin}: {w}")).await {
            Ok(outcome) => outln!("{} {}", object_ref(item.rt, &item.name), outcome.as_str()),
            Err(message) => {
                ok = false;
                eprintln!("error: {}: {message}", item.origin);
            }
        }
    }
    ok
}

/// Apply one item. Warnings go to `warn` as `PATH: MESSAGE` (local admission's, then the
/// server's that admission did not already give); the error is the message that follows
/// `FILE: document N (KIND NS/NAME): `.
pub(crate) async fn apply_one(
    client: &Client,
    item: &Item,
    warn: &mut (dyn FnMut(String) + Send),
) -> Result<Outcome, String> {
    let (local_warnings, admitted) = admit_locally(item)?;
    for w in &local_warnings {
        warn(w.clone());
    }
    let annotation = last_applied_text(&item.object)?;
    let ns = item.namespace.as_deref();
    let live = match client.get(item.rt, ns, &item.name).await {
        Ok(live) => Some(live),
        Err(e) if api::is_not_found(&e) => None,
        Err(e) => return Err(api::error_line(&e)),
    };
    let live = match live {
        Some(live) => live,
        None => match client
            .create(item.rt, ns, &annotated(item.object.clone(), &annotation)?)
            .await
        {
            Ok(response) => {
                server_warnings(api::warnings(&response), &local_warnings, warn);
                return Ok(Outcome::Created);
            }
            // Someone created it between our GET and POST: patch it instead.
            Err(e) if api::is_already_exists(&e) => client
                .get(item.rt, ns, &item.name)
                .await
                .map_err(|e| api::error_line(&e))?,
            Err(e) => return Err(api::error_line(&e)),
        },
    };
    // Compare objects as the server stores them: defaulted, unknown fields dropped, so a
    // default or a pruned field never looks like a difference.
    let original = last_applied(&live).map(|original| {
        let mut admitted = original.clone();
        match aos_types::admit(item.rt, &mut admitted, None) {
            Ok(_) => admitted,
            Err(_) => original,
        }
    });
    // ... and at the version the live object was read at: the server answers in its preferred
    // version whatever served version the manifest names, so a manifest written against
    // another served version (`networking.istio.io/v1beta1` for a `v1` object) must not
    // look like an `apiVersion` change.
    let original = original.map(|o| at_version_of(item.rt, o, &live));
    if original.is_none() {
        warn(format!(
            "{} is missing the {LAST_APPLIED} annotation, which apply needs; it will be patched automatically",
            object_ref(item.rt, &item.name)
        ));
    }
    let modified = at_version_of(item.rt, annotated(admitted, &annotation)?, &live);
    let Some(patch) = three_way_patch(original.as_ref(), &modified, &live) else {
        return Ok(Outcome::Unchanged);
    };
    let response = client
        .patch(item.rt, ns, &item.name, Patch::Merge(patch), None)
        .await
        .map_err(|e| api::error_line(&e))?;
    server_warnings(api::warnings(&response), &local_warnings, warn);
    Ok(Outcome::Configured)
}

/// Run admission on a copy: errors become one line (`PATH: Invalid value: ...`, further
/// errors follow on detail lines); warnings are returned as `PATH: MESSAGE`, next to the
/// admitted (defaulted) copy.
pub(crate) fn admit_locally(item: &Item) -> Result<(Vec<String>, Value), String> {
    let mut copy = item.object.clone();
    match aos_types::admit(item.rt, &mut copy, None) {
        Ok(warnings) => Ok((
            warnings
                .iter()
                .map(|w| format!("{}: {}", w.path, w.message))
                .collect(),
            copy,
        )),
        Err(errors) => Err(api::field_errors_text(&errors, &item.object)),
    }
}

/// The manifest as the last-applied annotation keeps it: compact JSON without the annotation.
fn last_applied_text(object: &Value) -> Result<String, String> {
    let mut manifest = object.clone();
    if let Some(annotations) = manifest
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty()
            && let Some(meta) = manifest.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
    let mut text = serde_json::to_string(&manifest)
        .map_err(|e| format!("cannot serialize the manifest: {e}"))?;
    text.push('\n');
    Ok(text)
}

/// `object` with the last-applied annotation set to `text`.
fn annotated(mut object: Value, text: &str) -> Result<Value, String> {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err("metadata: Required value: metadata must be a mapping".into());
    };
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(annotations) = annotations.as_object_mut() else {
        return Err("metadata.annotations: Invalid value: annotations must be a mapping".into());
    };
    annotations.insert(LAST_APPLIED.into(), Value::String(text.to_string()));
    Ok(object)
}

/// `object` with the `apiVersion` of `live` when both name served versions of `rt` (the
/// versions of one type differ in name only), so that comparing them compares content.
/// Anything else is left as it is and compares, and is patched, as usual.
fn at_version_of(rt: &ResourceType, mut object: Value, live: &Value) -> Value {
    let Some(live_version) = live.get("apiVersion").and_then(Value::as_str) else {
        return object;
    };
    if !rt.serves_api_version(live_version) {
        return object;
    }
    if let Some(map) = object.as_object_mut()
        && map
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v != live_version && rt.serves_api_version(v))
    {
        map.insert("apiVersion".into(), Value::String(live_version.into()));
    }
    object
}

fn last_applied(live: &Value) -> Option<Value> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// Pass on the server's warnings that the local admission did not already give.
pub(crate) fn server_warnings(
    server: &[String],
    local: &[String],
    warn: &mut (dyn FnMut(String) + Send),
) {
    let seen: BTreeSet<&str> = local.iter().map(String::as_str).collect();
    for w in server {
        if !seen.contains(w.as_str()) {
            warn(w.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn last_applied_round_trips_and_excludes_itself() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {LAST_APPLIED: "old"}}, "data": {"a": "1"}});
        let modified = annotated(obj.clone(), &last_applied_text(&obj).unwrap()).unwrap();
        let stored = last_applied(&modified).unwrap();
        assert_eq!(
            stored,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}})
        );
        // Applying the same manifest again produces the same annotation text.
        assert_eq!(
            annotated(obj.clone(), &last_applied_text(&obj).unwrap()).unwrap(),
            modified
        );
    }

    #[test]
    fn manifest_in_another_served_version_is_unchanged() {
        let rt =
            aos_types::resource::by_kind("networking.istio.io/v1beta1", "DestinationRule").unwrap();
        let manifest = json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": "d", "namespace": "ns"},
            "spec": {"host": "d", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
        });
        let modified = annotated(manifest.clone(), &last_applied_text(&manifest).unwrap()).unwrap();
        // What the server answers: the preferred version, plus server-owned fields.
        let mut live = modified.clone();
        live["apiVersion"] = json!("networking.istio.io/v1");
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["generation"] = json!(1);
        let original = last_applied(&live).unwrap();
        assert_eq!(
            three_way_patch(
                Some(&at_version_of(rt, original, &live)),
                &at_version_of(rt, modified.clone(), &live),
                &live
            ),
            None
        );
        // A real change still patches, without touching apiVersion.
        let mut changed = modified;
        changed["spec"]["host"] = json!("e");
        assert_eq!(
            three_way_patch(
                Some(&at_version_of(rt, manifest, &live)),
                &at_version_of(rt, changed, &live),
                &live
            ),
            Some(json!({"spec": {"host": "e"}}))
        );
    }

    #[test]
    fn version_outside_the_type_is_left_alone() {
        let rt = aos_types::resource::by_kind("apps/v1", "Deployment").unwrap();
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment"});
        let odd = json!({"apiVersion": "apps/v2", "kind": "Deployment"});
        assert_eq!(at_version_of(rt, odd.clone(), &live), odd);
        let foreign_live = json!({"apiVersion": "batch/v1", "kind": "Deployment"});
        let manifest = json!({"apiVersion": "apps/v1", "kind": "Deployment"});
        assert_eq!(at_version_of(rt, manifest.clone(), &foreign_live), manifest);
    }
}
