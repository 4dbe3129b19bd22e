//! Patches: JSON merge patch (RFC 7386), strategic merge patch (Kubernetes),
//! and JSON patch (RFC 6902).
//!
//! Strategic merge keys are chosen by field name, as the Kubernetes types
//! declare them: `containers`, `initContainers`, `ephemeralContainers`,
//! `volumes`, `imagePullSecrets`, `env`, `hostAliases`(ip) and lists of named
//! objects merge by `name`; `volumeMounts` by `mountPath`; `ports` by
//! `containerPort` (container ports) or `port` (service ports); `conditions` by
//! `type`; `ownerReferences` by `uid`; `metadata.finalizers` is a merged set.
//! Every other list is replaced. Directives: `$patch: replace|delete|merge`,
//! `$setElementOrder/FIELD`, `$retainKeys`, `$deleteFromPrimitiveList/FIELD`.

use serde_json::{Map, Value};

/// What went wrong applying a patch (answered as 422 or 400 by the caller).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PatchError {
    /// The patch document is malformed.
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch `test` failed or a path does not exist.
    #[error("{0}")]
    Failed(String),
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("just made an object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The merge key of a list field, if it merges (`None`: replace the list).
fn merge_key(field: &str, items: &[&Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "env"
        | "resourceClaims"
        | "readinessGates" => {
            if field == "readinessGates" {
                Some("conditionType")
            } else {
                Some("name")
            }
        }
        "volumeMounts" | "volumeDevices" => Some("mountPath"),
        "hostAliases" => Some("ip"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        _ => None,
    }
}

/// Lists of scalars that merge as sets.
fn is_merged_set(field: &str) -> bool {
    matches!(field, "finalizers")
}

fn directive(v: &Value) -> Option<&str> {
    v.get("$patch").and_then(Value::as_str)
}

/// Apply a strategic merge patch to `target`.
pub(crate) fn strategic(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Malformed(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    strategic_map(target, p)
}

fn strategic_map(target: &mut Value, patch: &Map<String, Value>) -> Result<(), PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut m = patch.clone();
            m.remove("$patch");
            *target = Value::Object(m);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(PatchError::Malformed(format!(
                "unknown patch directive {other:?}"
            )));
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("just made an object");
    let mut orders: Vec<(&str, &Vec<Value>)> = Vec::new();
    let mut retain: Option<Vec<String>> = None;
    for (k, v) in patch {
        if k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if let Value::Array(order) = v {
                orders.push((field, order));
            }
            continue;
        }
        if k == "$retainKeys" {
            retain = v.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            });
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (t.get_mut(field), v) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match v {
            Value::Object(pm) => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                strategic_map(slot, pm)?;
                if slot.is_null() {
                    t.remove(k);
                }
            }
            Value::Array(pa) => {
                let cur = t.remove(k);
                let merged = strategic_list(k, cur, pa)?;
                t.insert(k.clone(), merged);
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
    }
    for (field, order) in orders {
        if let Some(Value::Array(list)) = t.get_mut(field) {
            reorder(field, list, order);
        }
    }
    if let Some(keep) = retain {
        t.retain(|k, _| keep.iter().any(|r| r == k));
    }
    Ok(())
}

fn strategic_list(
    field: &str,
    current: Option<Value>,
    patch: &[Value],
) -> Result<Value, PatchError> {
    // `[{"$patch": "replace"}, items...]` replaces the whole list.
    if patch.iter().any(|i| directive(i) == Some("replace")) {
        return Ok(Value::Array(
            patch
                .iter()
                .filter(|i| directive(i) != Some("replace"))
                .cloned()
                .collect(),
        ));
    }
    let mut cur = match current {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    if is_merged_set(field) && patch.iter().all(|v| !v.is_object()) {
        for v in patch {
            if !cur.contains(v) {
                cur.push(v.clone());
            }
        }
        return Ok(Value::Array(cur));
    }
    let all: Vec<&Value> = cur.iter().chain(patch.iter()).collect();
    let Some(key) = merge_key(field, &all).filter(|_| patch.iter().all(Value::is_object)) else {
        return Ok(Value::Array(
            patch
                .iter()
                .filter(|i| directive(i).is_none())
                .cloned()
                .collect(),
        ));
    };
    for p in patch {
        let pm = p.as_object().expect("checked above");
        let Some(kv) = pm.get(key) else {
            return Err(PatchError::Malformed(format!(
                "{field}: an element has no merge key {key:?}"
            )));
        };
        let pos = cur.iter().position(|c| c.get(key) == Some(kv));
        match (directive(p), pos) {
            (Some("delete"), Some(i)) => {
                cur.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => strategic_map(&mut cur[i], pm)?,
            (_, None) => {
                let mut fresh = Value::Object(Map::new());
                strategic_map(&mut fresh, pm)?;
                cur.push(fresh);
            }
        }
    }
    Ok(Value::Array(cur))
}

/// Order `list` as `order` says (elements given by merge key or value); others keep
/// their relative order after those named.
fn reorder(field: &str, list: &mut Vec<Value>, order: &[Value]) {
    let refs: Vec<&Value> = list.iter().collect();
    let key = merge_key(field, &refs);
    let rank = |item: &Value| -> usize {
        order
            .iter()
            .position(|o| match (key, o) {
                (Some(k), Value::Object(_)) => o.get(k).is_some() && o.get(k) == item.get(k),
                _ => o == item,
            })
            .unwrap_or(usize::MAX)
    };
    let mut ranked: Vec<(usize, usize, Value)> = list
        .drain(..)
        .enumerate()
        .map(|(i, v)| (rank(&v), i, v))
        .collect();
    ranked.sort_by_key(|(r, i, _)| (*r, *i));
    list.extend(ranked.into_iter().map(|(_, _, v)| v));
}

/// RFC 6902 JSON patch.
pub(crate) fn json_patch(target: &mut Value, ops: &Value) -> Result<(), PatchError> {
    let Value::Array(ops) = ops else {
        return Err(PatchError::Malformed(
            "a JSON patch must be an array of operations".into(),
        ));
    };
    for (i, op) in ops.iter().enumerate() {
        let s = |f: &str| op.get(f).and_then(Value::as_str);
        let name = s("op")
            .ok_or_else(|| PatchError::Malformed(format!("operation {i}: missing \"op\"")))?;
        let path = s("path")
            .ok_or_else(|| PatchError::Malformed(format!("operation {i}: missing \"path\"")))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| PatchError::Malformed(format!("operation {i}: missing \"value\"")))
        };
        match name {
            "add" => add(target, path, value()?)?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, value()?)?;
            }
            "move" => {
                let from = s("from").ok_or_else(|| {
                    PatchError::Malformed(format!("operation {i}: missing \"from\""))
                })?;
                let v = remove(target, from)?;
                add(target, path, v)?;
            }
            "copy" => {
                let from = s("from").ok_or_else(|| {
                    PatchError::Malformed(format!("operation {i}: missing \"from\""))
                })?;
                let v = target
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| PatchError::Failed(format!("path {from:?} does not exist")))?;
                add(target, path, v)?;
            }
            "test" => {
                let v = value()?;
                if target.pointer(path) != Some(&v) {
                    return Err(PatchError::Failed(format!(
                        "test operation at {path:?} failed"
                    )));
                }
            }
            other => {
                return Err(PatchError::Malformed(format!(
                    "operation {i}: unknown op {other:?}"
                )));
            }
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Result<(String, String), PatchError> {
    if path.is_empty() {
        return Ok((String::new(), String::new()));
    }
    if !path.starts_with('/') {
        return Err(PatchError::Malformed(format!(
            "invalid JSON pointer {path:?}"
        )));
    }
    let idx = path.rfind('/').expect("starts with /");
    let last = path[idx + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..idx].to_string(), last))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let p = target
        .pointer_mut(&parent)
        .ok_or_else(|| PatchError::Failed(format!("path {parent:?} does not exist")))?;
    match p {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| PatchError::Malformed(format!("invalid array index {last:?}")))?;
                if i > a.len() {
                    return Err(PatchError::Failed(format!(
                        "index {i} out of range at {parent:?}"
                    )));
                }
                a.insert(i, value);
            }
        }
        _ => {
            return Err(PatchError::Failed(format!(
                "path {parent:?} is not a container"
            )));
        }
    }
    Ok(())
}

fn remove(target: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parent, last) = split_pointer(path)?;
    if path.is_empty() {
        return Err(PatchError::Malformed(
            "cannot remove the whole document".into(),
        ));
    }
    let p = target
        .pointer_mut(&parent)
        .ok_or_else(|| PatchError::Failed(format!("path {parent:?} does not exist")))?;
    let missing = || PatchError::Failed(format!("path {path:?} does not exist"));
    match p {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i >= a.len() {
                return Err(missing());
            }
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge(&mut t, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut t = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}});
        strategic(
            &mut t,
            &json!({"spec": {"containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
                {"name": "b", "$patch": "delete"},
                {"name": "c", "image": "c:1"}
            ]}}),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "c", "image": "c:1"}
            ]}})
        );
    }

    #[test]
    fn strategic_directives() {
        let mut t = json!({"metadata": {"finalizers": ["a"]}, "spec": {"ports": [{"port": 80}, {"port": 81}], "tolerations": [{"key": "x"}], "m": {"a": 1, "b": 2}}});
        strategic(
            &mut t,
            &json!({
                "metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]},
                "spec": {
                    "$setElementOrder/ports": [{"port": 81}, {"port": 80}],
                    "ports": [{"port": 80, "name": "http"}],
                    "tolerations": [{"key": "y"}],
                    "m": {"$patch": "replace", "c": 3}
                }
            }),
        )
        .unwrap();
        assert_eq!(t["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(
            t["spec"]["ports"],
            json!([{"port": 81}, {"port": 80, "name": "http"}])
        );
        assert_eq!(t["spec"]["tolerations"], json!([{"key": "y"}]));
        assert_eq!(t["spec"]["m"], json!({"c": 3}));
    }

    #[test]
    fn strategic_list_replace_and_retain_keys() {
        let mut t = json!({"spec": {"volumes": [{"name": "a"}], "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        strategic(
            &mut t,
            &json!({"spec": {"volumes": [{"$patch": "replace"}, {"name": "z"}], "strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        )
        .unwrap();
        assert_eq!(t["spec"]["volumes"], json!([{"name": "z"}]));
        assert_eq!(t["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"a": [1, 2], "b": {"c": 1}});
        json_patch(
            &mut t,
            &json!([
                {"op": "add", "path": "/a/-", "value": 3},
                {"op": "replace", "path": "/b/c", "value": 2},
                {"op": "test", "path": "/b/c", "value": 2},
                {"op": "copy", "from": "/b", "path": "/d"},
                {"op": "move", "from": "/d/c", "path": "/e"},
                {"op": "remove", "path": "/a/0"}
            ]),
        )
        .unwrap();
        assert_eq!(t, json!({"a": [2, 3], "b": {"c": 2}, "d": {}, "e": 2}));
        assert!(json_patch(&mut t, &json!([{"op": "test", "path": "/e", "value": 9}])).is_err());
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(&mut t, &json!({"op": "x"})).is_err());
    }
}
