//! Client-side apply's three-way merge, as `kubectl apply` does it.
//!
//! Three objects meet: the manifest applied last time (kept in the live object's
//! `kubectl.kubernetes.io/last-applied-configuration` annotation), the manifest applied now,
//! and the live object. The result is a JSON merge patch (RFC 7386) that sets every field the
//! new manifest sets and that the live object does not already agree with, and deletes every
//! field the last manifest set and the new one no longer does. Fields nobody applied (defaults,
//! fields other writers set, `status`) are left alone.
//!
//! Lists are atomic in a merge patch. A list is sent whole when the user changed it since the
//! last apply, or when the live list no longer agrees with it; "agrees" tolerates fields the
//! server added to list elements (defaults such as `terminationMessagePath`), so re-applying
//! an unchanged file yields no patch.

use serde_json::{Map, Value};

/// The annotation that keeps the last applied manifest.
pub(crate) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The merge patch that brings `live` in line with `modified`, given the `original` last
/// applied manifest. `None` when nothing differs. The top-level `status` is never patched.
pub(crate) fn three_way_patch(
    original: Option<&Value>,
    modified: &Value,
    live: &Value,
) -> Option<Value> {
    let (Value::Object(modified), Value::Object(live)) = (modified, live) else {
        return if subsumes(live, modified) {
            None
        } else {
            Some(modified.clone())
        };
    };
    let original = original.and_then(Value::as_object);
    let mut patch = diff_map(original, modified, live);
    patch.remove("status");
    (!patch.is_empty()).then_some(Value::Object(patch))
}

fn diff_map(
    original: Option<&Map<String, Value>>,
    modified: &Map<String, Value>,
    live: &Map<String, Value>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, new) in modified {
        let old = original.and_then(|o| o.get(key));
        match (new, live.get(key)) {
            // An explicit null in a manifest asks for the field to be absent.
            (Value::Null, Some(_)) => {
                patch.insert(key.clone(), Value::Null);
            }
            (Value::Null, None) => {}
            (_, None) => {
                patch.insert(key.clone(), new.clone());
            }
            (Value::Object(new_map), Some(Value::Object(live_map))) => {
                let sub = diff_map(old.and_then(Value::as_object), new_map, live_map);
                if !sub.is_empty() {
                    patch.insert(key.clone(), Value::Object(sub));
                }
            }
            (Value::Array(_), Some(current)) => {
                let changed_since_last_apply = old.is_some_and(|old| !same(old, new));
                if changed_since_last_apply || !subsumes(current, new) {
                    patch.insert(key.clone(), new.clone());
                }
            }
            (_, Some(current)) => {
                if !subsumes(current, new) {
                    patch.insert(key.clone(), new.clone());
                }
            }
        }
    }
    if let Some(original) = original {
        for key in original.keys() {
            if !modified.contains_key(key) && live.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    patch
}

/// Whether `live` agrees with everything `wanted` says: maps may carry extra keys, lists must
/// have the same length with agreeing elements, numbers compare by value.
pub(crate) fn subsumes(live: &Value, wanted: &Value) -> bool {
    match (live, wanted) {
        (Value::Object(live), Value::Object(wanted)) => {
            wanted.iter().all(|(k, w)| match (live.get(k), w) {
                (None, Value::Null) => true,
                (None, _) => false,
                (Some(l), w) => subsumes(l, w),
            })
        }
        (Value::Array(live), Value::Array(wanted)) => {
            live.len() == wanted.len() && live.iter().zip(wanted).all(|(l, w)| subsumes(l, w))
        }
        _ => same(live, wanted),
    }
}

/// Equality that treats `3` and `3.0` as the same number.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "ns", "labels": {"app": "d"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}
        })
    }

    /// What the server would store: the manifest plus defaults and server-owned fields.
    fn live_of(manifest: &Value) -> Value {
        let mut live = manifest.clone();
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["resourceVersion"] = json!("7");
        live["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
            json!("/dev/termination-log");
        live["status"] = json!({"replicas": 3});
        live
    }

    #[test]
    fn unchanged_manifest_gives_no_patch_despite_defaults() {
        let m = deployment(3, "a:1");
        assert_eq!(three_way_patch(Some(&m), &m, &live_of(&m)), None);
    }

    #[test]
    fn changed_scalar_is_set() {
        let old = deployment(3, "a:1");
        let new = deployment(5, "a:1");
        assert_eq!(
            three_way_patch(Some(&old), &new, &live_of(&old)),
            Some(json!({"spec": {"replicas": 5}}))
        );
    }

    #[test]
    fn changed_list_is_sent_whole() {
        let old = deployment(3, "a:1");
        let new = deployment(3, "a:2");
        assert_eq!(
            three_way_patch(Some(&old), &new, &live_of(&old)),
            Some(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "a:2"}]}}}})
            )
        );
    }

    #[test]
    fn field_removed_from_manifest_is_deleted() {
        let old = deployment(3, "a:1");
        let mut new = old.clone();
        new["metadata"].as_object_mut().unwrap().remove("labels");
        assert_eq!(
            three_way_patch(Some(&old), &new, &live_of(&old)),
            Some(json!({"metadata": {"labels": null}}))
        );
    }

    #[test]
    fn field_removed_from_list_element_resends_the_list() {
        let mut old = deployment(3, "a:1");
        old["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        let new = deployment(3, "a:1");
        let patch = three_way_patch(Some(&old), &new, &live_of(&old)).unwrap();
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c", "image": "a:1"}])
        );
    }

    #[test]
    fn fields_set_by_others_survive() {
        let m = deployment(3, "a:1");
        let mut live = live_of(&m);
        live["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "1"});
        assert_eq!(three_way_patch(Some(&m), &m, &live), None);
    }

    #[test]
    fn drift_of_an_applied_field_is_reverted() {
        let m = deployment(3, "a:1");
        let mut live = live_of(&m);
        live["spec"]["replicas"] = json!(1);
        assert_eq!(
            three_way_patch(Some(&m), &m, &live),
            Some(json!({"spec": {"replicas": 3}}))
        );
    }

    #[test]
    fn without_last_applied_nothing_is_deleted() {
        let m = deployment(3, "a:1");
        let mut live = live_of(&m);
        live["spec"]["paused"] = json!(true);
        assert_eq!(three_way_patch(None, &m, &live), None);
    }

    #[test]
    fn status_is_never_patched_and_numbers_compare_by_value() {
        let mut m = deployment(3, "a:1");
        m["status"] = json!({"replicas": 9});
        let mut live = live_of(&m);
        live["spec"]["replicas"] = json!(3.0);
        assert_eq!(three_way_patch(Some(&m), &m, &live), None);
    }

    #[test]
    fn explicit_null_deletes() {
        let old = deployment(3, "a:1");
        let mut new = old.clone();
        new["spec"]["replicas"] = Value::Null;
        assert_eq!(
            three_way_patch(Some(&old), &new, &live_of(&old)),
            Some(json!({"spec": {"replicas": null}}))
        );
    }
}
