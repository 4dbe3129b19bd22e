//! Objects in the store: keys, the stored JSON form, and `resourceVersion`.
//!
//! Keys: `/registry/{group or "core"}/{plural}/{namespace}/{name}` for
//! namespaced kinds, `/registry/{group or "core"}/{plural}/{name}` for
//! cluster-scoped ones; list prefixes always end with `/`.
//!
//! Stored form: JSON with `apiVersion`, `kind` and `metadata` first and no
//! `metadata.resourceVersion` (it is the key's store revision, set on every
//! read). Because `metadata` is the first object-valued member, a reader can
//! inject the version by splicing bytes instead of parsing the object.

use std::collections::BTreeMap;

use aos_store::{KeyValue, Revision};
use aos_types::ResourceType;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

fn group_dir(rt: &ResourceType) -> &'static str {
    if rt.group.is_empty() {
        "core"
    } else {
        rt.group
    }
}

/// The key of one object.
pub(crate) fn key(rt: &ResourceType, ns: Option<&str>, name: &str) -> String {
    match (rt.namespaced, ns) {
        (true, Some(ns)) => format!("/registry/{}/{}/{ns}/{name}", group_dir(rt), rt.plural),
        _ => format!("/registry/{}/{}/{name}", group_dir(rt), rt.plural),
    }
}

/// The prefix of a list: one namespace, or every object of the type.
pub(crate) fn prefix(rt: &ResourceType, ns: Option<&str>) -> String {
    match (rt.namespaced, ns) {
        (true, Some(ns)) => format!("/registry/{}/{}/{ns}/", group_dir(rt), rt.plural),
        _ => format!("/registry/{}/{}/", group_dir(rt), rt.plural),
    }
}

/// `pods`, or `deployments.apps`: how Kubernetes names a resource in messages.
pub(crate) fn qualified_resource(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.to_string()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

/// `v1` or `apps/v1` for a served version.
pub(crate) fn api_version(rt: &ResourceType, version: &str) -> String {
    if rt.group.is_empty() {
        version.to_string()
    } else {
        format!("{}/{version}", rt.group)
    }
}

/// The stored bytes of an object: ordered, without `resourceVersion`.
pub(crate) fn encode(obj: &Value) -> Vec<u8> {
    let Value::Object(map) = obj else {
        return serde_json::to_vec(obj).unwrap_or_default();
    };
    let mut out = Map::with_capacity(map.len());
    for k in ["apiVersion", "kind", "metadata"] {
        if let Some(v) = map.get(k) {
            out.insert(k.to_string(), v.clone());
        }
    }
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.remove("resourceVersion");
        meta.remove("selfLink");
        meta.remove("managedFields");
    }
    for (k, v) in map {
        if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            out.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec(&Value::Object(out)).unwrap_or_default()
}

/// Parse stored bytes and set `metadata.resourceVersion` to `rev`.
pub(crate) fn decode(bytes: &[u8], rev: Revision) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("stored object is not JSON: {e}")))?;
    set_rv(&mut v, rev);
    Ok(v)
}

/// Decode a key-value at its modification revision.
pub(crate) fn decode_kv(kv: &KeyValue) -> ApiResult<Value> {
    decode(&kv.value, kv.mod_revision)
}

pub(crate) fn set_rv(v: &mut Value, rev: Revision) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// Append `bytes` (stored form) to `out` with `"resourceVersion":"rev"` injected
/// into `metadata`, without parsing. Returns false (appending nothing) when the
/// bytes are not in the stored form.
pub(crate) fn splice_rv(bytes: &[u8], rev: Revision, out: &mut Vec<u8>) -> bool {
    const NEEDLE: &[u8] = b"\"metadata\":{";
    // `metadata` is among the first members; strings never hold an unescaped `"`,
    // so the first occurrence of the needle is the top-level member.
    let window = &bytes[..bytes.len().min(4096)];
    let Some(pos) = window.windows(NEEDLE.len()).position(|w| w == NEEDLE) else {
        return false;
    };
    let at = pos + NEEDLE.len();
    out.extend_from_slice(&bytes[..at]);
    out.extend_from_slice(b"\"resourceVersion\":\"");
    out.extend_from_slice(rev.to_string().as_bytes());
    out.push(b'"');
    if bytes.get(at) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(&bytes[at..]);
    true
}

/// Append the JSON of a stored object at `rev` to `out` (splicing when possible).
pub(crate) fn write_with_rv(bytes: &[u8], rev: Revision, out: &mut Vec<u8>) -> ApiResult<()> {
    if splice_rv(bytes, rev, out) {
        return Ok(());
    }
    let v = decode(bytes, rev)?;
    serde_json::to_writer(out, &v).map_err(|e| ApiError::internal(e.to_string()))
}

/// `metadata` as a mutable map, created when absent.
pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    // Just ensured to be an object.
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub(crate) fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or_default()
}

/// `metadata.labels` as a map (non-string values ignored).
pub(crate) fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// RFC 3339 UTC with seconds, as Kubernetes writes timestamps.
pub(crate) fn timestamp(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

pub(crate) fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Parse a `resourceVersion` a client sent.
pub(crate) fn parse_rv(s: &str) -> ApiResult<Revision> {
    s.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid resourceVersion {s:?}: must be a non-negative integer"
            ))
        })
}

/// Random suffix for `generateName`, from Kubernetes' alphabet without vowels and
/// look-alike characters.
pub(crate) fn random_suffix() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn splices_resource_version() {
        let obj = json!({"spec": {"template": {"metadata": {"x": 1}}}, "kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a", "resourceVersion": "9"}});
        let bytes = encode(&obj);
        assert!(
            String::from_utf8_lossy(&bytes)
                .starts_with("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\"")
        );
        let mut out = Vec::new();
        assert!(splice_rv(&bytes, 42, &mut out));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert_eq!(v["metadata"]["name"], "a");
        assert_eq!(v["spec"]["template"]["metadata"], json!({"x": 1}));
        let mut out = Vec::new();
        assert!(splice_rv(&encode(&json!({"metadata": {}})), 1, &mut out));
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"metadata": {"resourceVersion": "1"}})
        );
    }

    #[test]
    fn keys_and_prefixes() {
        let rt = ResourceType {
            group: "apps",
            version: "v1",
            versions: &["v1"],
            kind: "Deployment",
            plural: "deployments",
            singular: "deployment",
            short_names: &[],
            namespaced: true,
            status_subresource: true,
            scale_subresource: true,
            categories: &[],
        };
        assert_eq!(key(&rt, Some("ns"), "x"), "/registry/apps/deployments/ns/x");
        assert_eq!(prefix(&rt, None), "/registry/apps/deployments/");
        assert_eq!(prefix(&rt, Some("ns")), "/registry/apps/deployments/ns/");
    }

    #[test]
    fn timestamps_are_rfc3339_seconds() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(random_suffix().len(), 5);
    }
}
