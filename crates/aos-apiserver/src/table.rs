//! `meta.k8s.io/v1` `Table` answers (what `kubectl get` asks for).

use aos_types::ResourceType;
use serde_json::{Map, Value, json};

/// What each row's `object` holds (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Include {
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
    /// Nothing.
    None,
}

impl Include {
    pub(crate) fn parse(v: Option<&str>) -> Self {
        match v {
            Some("Object") => Include::Object,
            Some("None") => Include::None,
            _ => Include::Metadata,
        }
    }
}

/// Whether an `Accept` header asks for a Table; gives the meta.k8s.io version.
pub(crate) fn wants_table(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        let has = |p: &str| params.iter().any(|x| x.replace(' ', "") == p);
        if has("as=Table") && has("g=meta.k8s.io") {
            if has("v=v1") {
                return Some("v1");
            }
            if has("v=v1beta1") {
                return Some("v1beta1");
            }
        }
    }
    None
}

fn row_object(obj: &Value, include: Include, meta_version: &str) -> Option<Value> {
    match include {
        Include::None => None,
        Include::Object => Some(obj.clone()),
        Include::Metadata => {
            let mut meta = obj
                .get("metadata")
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new()));
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            Some(json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": format!("meta.k8s.io/{meta_version}"),
                "metadata": meta,
            }))
        }
    }
}

/// One row for `obj`.
pub(crate) fn row(
    rt: &ResourceType,
    obj: &Value,
    include: Include,
    meta_version: &str,
    now: i64,
) -> Value {
    let mut r = json!({"cells": aos_types::table::row(rt, obj, now)});
    if let Some(o) = row_object(obj, include, meta_version) {
        r["object"] = o;
    }
    r
}

/// A Table of `items`.
pub(crate) fn table(
    rt: &ResourceType,
    items: &[Value],
    include: Include,
    meta_version: &str,
    resource_version: &str,
    continue_token: Option<&str>,
    now: i64,
) -> Value {
    let columns: Vec<Value> = aos_types::table::columns(rt)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| row(rt, o, include, meta_version, now))
        .collect();
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{meta_version}"),
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_table_accept() {
        assert_eq!(
            wants_table(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ),
            Some("v1")
        );
        assert_eq!(
            wants_table("application/json;as=Table;v=v1beta1;g=meta.k8s.io"),
            Some("v1beta1")
        );
        assert_eq!(wants_table("application/json"), None);
    }
}
