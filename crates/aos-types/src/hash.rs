//! The `pod-template-hash` label value of a pod template.
//!
//! FNV-1a (32-bit) over a canonical serialisation of the template (object keys
//! sorted, nulls and the `pod-template-hash` label itself left out), then the
//! collision count (little-endian `u32`) when there is one; the hash is printed
//! in decimal and each digit mapped through Kubernetes' `SafeEncodeString`
//! alphabet, so the value never spells a word. Stable across runs, processes
//! and key order.

use serde_json::Value;

/// The label that carries the hash on ReplicaSets and pods.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Kubernetes' `rand.SafeEncodeString` alphabet: no vowels, no look-alike characters.
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

/// Map every byte of `s` through [`SAFE_ALPHABET`].
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// Append the canonical form of `v` (sorted keys, no nulls in objects; the
/// hash label is dropped from `metadata.labels` at the top level).
fn write_canonical(v: &Value, top: bool, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().filter(|k| !m[*k].is_null()).collect();
            keys.sort();
            out.push('{');
            let mut first = true;
            for k in keys {
                let child = &m[k];
                if top && k == "metadata" {
                    let Some(meta) = normalized_metadata(child) else {
                        continue;
                    };
                    push_key(k, &mut first, out);
                    write_canonical(&meta, false, out);
                    continue;
                }
                push_key(k, &mut first, out);
                write_canonical(child, false, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, false, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn push_key(k: &str, first: &mut bool, out: &mut String) {
    if !*first {
        out.push(',');
    }
    *first = false;
    out.push_str(&Value::String(k.to_string()).to_string());
    out.push(':');
}

/// `metadata` without the hash label (and without `labels`/itself when that leaves them empty).
fn normalized_metadata(meta: &Value) -> Option<Value> {
    let mut meta = meta.clone();
    if let Some(m) = meta.as_object_mut() {
        m.retain(|_, v| !v.is_null());
        if let Some(labels) = m.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
            if labels.is_empty() {
                m.remove("labels");
            }
        }
        if m.is_empty() {
            return None;
        }
    }
    Some(meta)
}

/// The `pod-template-hash` of `template` (a `PodTemplateSpec` as JSON) with
/// the Deployment's `collisionCount`.
pub fn pod_template_hash(template: &Value, collision_count: Option<i32>) -> String {
    let mut canonical = String::new();
    write_canonical(template, true, &mut canonical);
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
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0x811c_9dc5);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn stable_and_independent_of_key_order_nulls_and_the_hash_label() {
        let a = json!({"metadata": {"labels": {"app": "x", "tier": "web"}},
                       "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        let b = json!({"spec": {"containers": [{"image": "i:1", "name": "c", "args": null}]},
                       "metadata": {"labels": {"tier": "web", "pod-template-hash": "abc", "app": "x"}}});
        let h = pod_template_hash(&a, None);
        assert_eq!(h, pod_template_hash(&b, None));
        assert!(h.bytes().all(|c| SAFE_ALPHABET.contains(&c)));
        assert_ne!(h, pod_template_hash(&a, Some(1)));
        assert_ne!(
            pod_template_hash(&a, Some(1)),
            pod_template_hash(&a, Some(2))
        );
        let other = json!({"metadata": {"labels": {"app": "x", "tier": "web"}},
                           "spec": {"containers": [{"name": "c", "image": "i:2"}]}});
        assert_ne!(h, pod_template_hash(&other, None));
        // Only the hash label: the same as no metadata at all.
        let bare = json!({"spec": {}});
        let labelled = json!({"metadata": {"labels": {"pod-template-hash": "x"}}, "spec": {}});
        assert_eq!(
            pod_template_hash(&bare, None),
            pod_template_hash(&labelled, None)
        );
    }

    #[test]
    fn known_value_is_stable_across_builds() {
        // Computed once from the definition above; a change here changes every
        // ReplicaSet name, so it must be deliberate.
        let t = json!({"metadata": {"labels": {"app": "web"}},
                       "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}});
        let canonical = r#"{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"image":"nginx:1.25","name":"web"}]}}"#;
        let want = safe_encode(&fnv1a(FNV_OFFSET, canonical.as_bytes()).to_string());
        assert_eq!(pod_template_hash(&t, None), want);
    }
}
