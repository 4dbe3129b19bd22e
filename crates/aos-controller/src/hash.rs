//! The `pod-template-hash` of a pod template: FNV-1a (32-bit) over a
//! canonical serialisation of the template (object keys sorted, nulls and the
//! hash label itself left out), then the collision count (little-endian
//! u32) when there is one, printed in decimal and mapped through Kubernetes'
//! `SafeEncodeString` alphabet.

use serde_json::Value;

/// The label that carries the hash on ReplicaSets and pods.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Kubernetes' `rand.SafeEncodeString` alphabet: no vowels (no words), no
/// look-alike characters.
pub const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv1a(mut h: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Map every character through [`SAFE_ALPHABET`] (`SafeEncodeString`).
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// The template with nulls and the hash label removed, for hashing and for
/// comparing templates (`EqualIgnoreHash`).
pub fn normalize_template(template: &Value) -> Value {
    fn strip_nulls(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => Some(Value::Object(
                m.iter()
                    .filter_map(|(k, v)| strip_nulls(v).map(|v| (k.clone(), v)))
                    .collect(),
            )),
            Value::Array(a) => Some(Value::Array(
                a.iter()
                    .map(|v| strip_nulls(v).unwrap_or(Value::Null))
                    .collect(),
            )),
            other => Some(other.clone()),
        }
    }
    let mut t = strip_nulls(template).unwrap_or(Value::Null);
    if let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
            if labels.is_empty() {
                meta.remove("labels");
            }
        }
        if meta.is_empty() {
            t.as_object_mut()
                .expect("template is an object")
                .remove("metadata");
        }
    }
    t
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The hash of `template` with `collision_count`.
pub fn pod_template_hash(template: &Value, collision_count: Option<i32>) -> String {
    let mut canonical = String::new();
    write_canonical(&normalize_template(template), &mut canonical);
    let mut h = fnv1a(FNV_OFFSET, canonical.as_bytes());
    if let Some(c) = collision_count {
        h = fnv1a(h, &(c as u32).to_le_bytes());
    }
    safe_encode(&h.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fnv1a_reference_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0x811c9dc5);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xe40c292c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn hash_is_stable_and_ignores_key_order_and_hash_label() {
        let a = json!({"metadata": {"labels": {"app": "x", "tier": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let b = json!({"spec": {"containers": [{"image": "i", "name": "c"}]},
                       "metadata": {"labels": {"tier": "y", "app": "x", "pod-template-hash": "zzz"}, "creationTimestamp": null}});
        assert_eq!(pod_template_hash(&a, None), pod_template_hash(&b, None));
        assert_ne!(pod_template_hash(&a, None), pod_template_hash(&a, Some(1)));
        let h = pod_template_hash(&a, None);
        assert!(h.bytes().all(|c| SAFE_ALPHABET.contains(&c)), "{h}");
        let other = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "j"}]}});
        assert_ne!(h, pod_template_hash(&other, None));
    }

    #[test]
    fn safe_encode_maps_digits() {
        // '0' is 48: 48 % 27 = 21 -> '4'
        assert_eq!(safe_encode("0"), "4");
    }
}
