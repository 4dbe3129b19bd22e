//! Request bodies in Kubernetes' protobuf encoding, for the few kinds that
//! kubectl's generators send that way (`kubectl create namespace|configmap|secret`).
//!
//! The envelope is the magic `k8s\0` and a `runtime.Unknown` message (type
//! meta, raw bytes of the object). Only `Namespace`, `ConfigMap` and `Secret`
//! are decoded, into the same JSON the API stores; any other kind is refused
//! with 415 so the client sends JSON. Responses are always JSON (kubectl accepts
//! it).

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// Why a protobuf body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ProtobufError {
    /// Not a Kubernetes protobuf envelope, or a malformed message.
    #[error("malformed protobuf body: {0}")]
    Malformed(&'static str),
    /// A kind aos does not decode from protobuf.
    #[error(
        "protobuf request bodies are supported for Namespace, ConfigMap and Secret only, not {0}; send JSON"
    )]
    Unsupported(String),
}

type Result<T> = std::result::Result<T, ProtobufError>;

const MAGIC: &[u8] = b"k8s\0";

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or(ProtobufError::Malformed("truncated varint"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ProtobufError::Malformed("varint too long"))
}

/// The fields of one message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 => {
                pos = pos
                    .checked_add(8)
                    .filter(|p| *p <= buf.len())
                    .ok_or(ProtobufError::Malformed("truncated fixed64"))?;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?)
                    .map_err(|_| ProtobufError::Malformed("length"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or(ProtobufError::Malformed("truncated field"))?;
                let b = &buf[pos..end];
                pos = end;
                Wire::Bytes(b)
            }
            5 => {
                pos = pos
                    .checked_add(4)
                    .filter(|p| *p <= buf.len())
                    .ok_or(ProtobufError::Malformed("truncated fixed32"))?;
                Wire::Fixed
            }
            _ => return Err(ProtobufError::Malformed("unsupported wire type")),
        };
        out.push((field, value));
    }
    Ok(out)
}

fn string(b: &[u8]) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtobufError::Malformed("string is not UTF-8"))
}

/// A `map<string, string>` (or bytes values, base64-encoded) entry.
fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value)> {
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    for (f, w) in fields(b)? {
        match (f, w) {
            (1, Wire::Bytes(x)) => k = string(x)?,
            (2, Wire::Bytes(x)) if bytes_value => {
                v = json!(base64::engine::general_purpose::STANDARD.encode(x))
            }
            (2, Wire::Bytes(x)) => v = json!(string(x)?),
            _ => {}
        }
    }
    Ok((k, v))
}

fn insert_entry(
    obj: &mut Map<String, Value>,
    field: &str,
    b: &[u8],
    bytes_value: bool,
) -> Result<()> {
    let (k, v) = map_entry(b, bytes_value)?;
    let m = obj.entry(field).or_insert_with(|| json!({}));
    if let Some(m) = m.as_object_mut() {
        m.insert(k, v);
    }
    Ok(())
}

fn push(obj: &mut Map<String, Value>, field: &str, v: Value) {
    if let Some(a) = obj.entry(field).or_insert_with(|| json!([])).as_array_mut() {
        a.push(v);
    }
}

fn owner_reference(b: &[u8]) -> Result<Value> {
    let mut o = Map::new();
    for (f, w) in fields(b)? {
        match (f, w) {
            (1, Wire::Bytes(x)) => {
                o.insert("kind".into(), json!(string(x)?));
            }
            (3, Wire::Bytes(x)) => {
                o.insert("name".into(), json!(string(x)?));
            }
            (4, Wire::Bytes(x)) => {
                o.insert("uid".into(), json!(string(x)?));
            }
            (5, Wire::Bytes(x)) => {
                o.insert("apiVersion".into(), json!(string(x)?));
            }
            (6, Wire::Varint(x)) => {
                o.insert("controller".into(), json!(x != 0));
            }
            (7, Wire::Varint(x)) => {
                o.insert("blockOwnerDeletion".into(), json!(x != 0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

/// `ObjectMeta`: the fields a client may set (server-owned ones are reset anyway).
fn object_meta(b: &[u8]) -> Result<Value> {
    let mut m = Map::new();
    for (f, w) in fields(b)? {
        match (f, w) {
            (1, Wire::Bytes(x)) => {
                m.insert("name".into(), json!(string(x)?));
            }
            (2, Wire::Bytes(x)) => {
                m.insert("generateName".into(), json!(string(x)?));
            }
            (3, Wire::Bytes(x)) => {
                m.insert("namespace".into(), json!(string(x)?));
            }
            (5, Wire::Bytes(x)) => {
                m.insert("uid".into(), json!(string(x)?));
            }
            (6, Wire::Bytes(x)) => {
                m.insert("resourceVersion".into(), json!(string(x)?));
            }
            (11, Wire::Bytes(x)) => insert_entry(&mut m, "labels", x, false)?,
            (12, Wire::Bytes(x)) => insert_entry(&mut m, "annotations", x, false)?,
            (13, Wire::Bytes(x)) => push(&mut m, "ownerReferences", owner_reference(x)?),
            (14, Wire::Bytes(x)) => push(&mut m, "finalizers", json!(string(x)?)),
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn object(kind: &str, api_version: &str, raw: &[u8]) -> Result<Value> {
    let mut o = Map::new();
    o.insert("apiVersion".into(), json!(api_version));
    o.insert("kind".into(), json!(kind));
    for (f, w) in fields(raw)? {
        let Wire::Bytes(x) = w else {
            match (kind, f, w) {
                ("ConfigMap", 4, Wire::Varint(v)) | ("Secret", 5, Wire::Varint(v)) => {
                    o.insert("immutable".into(), json!(v != 0));
                }
                _ => {}
            }
            continue;
        };
        match (kind, f) {
            (_, 1) => {
                o.insert("metadata".into(), object_meta(x)?);
            }
            ("Namespace", 2) => {
                let mut spec = Map::new();
                for (sf, sw) in fields(x)? {
                    if let (1, Wire::Bytes(s)) = (sf, sw) {
                        push(&mut spec, "finalizers", json!(string(s)?));
                    }
                }
                o.insert("spec".into(), Value::Object(spec));
            }
            ("ConfigMap", 2) => insert_entry(&mut o, "data", x, false)?,
            ("ConfigMap", 3) => insert_entry(&mut o, "binaryData", x, true)?,
            ("Secret", 2) => insert_entry(&mut o, "data", x, true)?,
            ("Secret", 3) => {
                o.insert("type".into(), json!(string(x)?));
            }
            ("Secret", 4) => insert_entry(&mut o, "stringData", x, false)?,
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

/// Decode a protobuf request body into the JSON object it encodes.
pub(crate) fn decode(body: &[u8]) -> Result<Value> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::Malformed("missing the k8s envelope"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (f, w) in fields(rest)? {
        match (f, w) {
            (1, Wire::Bytes(tm)) => {
                for (tf, tw) in fields(tm)? {
                    match (tf, tw) {
                        (1, Wire::Bytes(x)) => api_version = string(x)?,
                        (2, Wire::Bytes(x)) => kind = string(x)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(x)) => raw = Some(x),
            (3, Wire::Bytes(enc)) if !enc.is_empty() => {
                return Err(ProtobufError::Malformed(
                    "content encodings are not supported",
                ));
            }
            _ => {}
        }
    }
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace" | "ConfigMap" | "Secret") => {
            object(&kind, &api_version, raw.unwrap_or_default())
        }
        _ => Err(ProtobufError::Unsupported(if kind.is_empty() {
            "an unknown kind".into()
        } else {
            format!("{api_version} {kind}")
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, b: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, b.len() as u8];
        out.extend_from_slice(b);
        out
    }

    #[test]
    fn decodes_a_namespace_like_kubectl_sends_it() {
        let meta = [
            field(1, b"team-a"),
            field(11, &[field(1, b"env"), field(2, b"dev")].concat()),
        ]
        .concat();
        let raw = [field(1, &meta), field(2, &field(1, b"kubernetes"))].concat();
        let tm = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let body = [MAGIC.to_vec(), field(1, &tm), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"env": "dev"}}, "spec": {"finalizers": ["kubernetes"]}})
        );
    }

    #[test]
    fn decodes_secret_bytes_as_base64() {
        let raw = [
            field(1, &field(1, b"s")),
            field(2, &[field(1, b"k"), field(2, b"\x00\x01")].concat()),
            field(3, b"Opaque"),
        ]
        .concat();
        let tm = [field(1, b"v1"), field(2, b"Secret")].concat();
        let v = decode(&[MAGIC.to_vec(), field(1, &tm), field(2, &raw)].concat()).unwrap();
        assert_eq!(v["data"]["k"], "AAE=");
        assert_eq!(v["type"], "Opaque");
    }

    #[test]
    fn refuses_other_kinds_and_garbage() {
        let tm = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
        assert!(matches!(
            decode(&[MAGIC.to_vec(), field(1, &tm)].concat()),
            Err(ProtobufError::Unsupported(_))
        ));
        assert!(decode(b"nope").is_err());
        assert!(decode(&[MAGIC, &[0x0a, 0xff]].concat()).is_err());
        assert!(decode(&[MAGIC, &[0xff; 20]].concat()).is_err());
    }
}
