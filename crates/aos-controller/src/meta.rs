//! Small accessors over object metadata held as JSON, and time helpers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;

use jiff::Timestamp;
use serde_json::{Value, json};

/// A source of "now", so tests can drive time by hand.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Arc<Self> {
        Arc::new(Self(Mutex::new(start)))
    }
    /// Move the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let mut t = self.0.lock().expect("clock lock poisoned");
        let span = jiff::SignedDuration::try_from(by).expect("duration in range");
        *t = t.checked_add(span).expect("timestamp in range");
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock poisoned")
    }
}

/// `now` truncated to whole seconds, as Kubernetes serialises `metav1.Time`.
pub fn now_seconds(clock: &dyn Clock) -> Timestamp {
    let now = clock.now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// RFC 3339 with whole seconds (`2024-01-02T03:04:05Z`).
pub fn format_time(t: Timestamp) -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t).unwrap_or_else(|_| t.to_string())
}

/// Parse an RFC 3339 timestamp field.
pub fn parse_time(v: Option<&Value>) -> Option<Timestamp> {
    v.and_then(Value::as_str).and_then(|s| s.parse().ok())
}

/// `metadata.name` (empty when absent).
pub fn name(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata.namespace`, if any.
pub fn namespace(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `metadata.uid` (empty when absent).
pub fn uid(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata.resourceVersion` (empty when absent).
pub fn resource_version(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata.generation` (0 when absent).
pub fn generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// `metadata.creationTimestamp`.
pub fn creation_timestamp(obj: &Value) -> Option<Timestamp> {
    parse_time(obj.pointer("/metadata/creationTimestamp"))
}

/// A string map at `pointer` (labels, annotations, matchLabels).
pub fn string_map(obj: &Value, pointer: &str) -> BTreeMap<String, String> {
    obj.pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.labels`.
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(obj, "/metadata/labels")
}

/// One annotation.
pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// One entry of `metadata.ownerReferences`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    /// `apiVersion` of the owner.
    pub api_version: String,
    /// `kind` of the owner.
    pub kind: String,
    /// `name` of the owner.
    pub name: String,
    /// `uid` of the owner.
    pub uid: String,
    /// Whether this owner is the managing controller.
    pub controller: bool,
    /// Whether the owner's foreground deletion waits for this dependent.
    pub block_owner_deletion: bool,
}

impl OwnerRef {
    /// The JSON form.
    pub fn to_value(&self) -> Value {
        json!({
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": self.controller,
            "blockOwnerDeletion": self.block_owner_deletion,
        })
    }

    /// A controller reference to `owner` (controller and blockOwnerDeletion true).
    pub fn controller_of(owner: &Value) -> Self {
        Self {
            api_version: owner
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            kind: owner
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            name: name(owner).to_owned(),
            uid: uid(owner).to_owned(),
            controller: true,
            block_owner_deletion: true,
        }
    }
}

/// `metadata.ownerReferences`.
pub fn owner_refs(obj: &Value) -> Vec<OwnerRef> {
    let Some(refs) = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    refs.iter()
        .map(|r| {
            let s = |k: &str| {
                r.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            OwnerRef {
                api_version: s("apiVersion"),
                kind: s("kind"),
                name: s("name"),
                uid: s("uid"),
                controller: r
                    .get("controller")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                block_owner_deletion: r
                    .get("blockOwnerDeletion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }
        })
        .collect()
}

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(obj: &Value) -> Option<OwnerRef> {
    owner_refs(obj).into_iter().find(|r| r.controller)
}

/// Set one annotation, creating the map. Returns whether the value changed.
pub fn set_annotation(obj: &mut Value, key: &str, value: &str) -> bool {
    let meta = ensure_object(obj, "metadata");
    let ann = ensure_object(meta, "annotations");
    let map = ann.as_object_mut().expect("ensured object");
    if map.get(key).and_then(Value::as_str) == Some(value) {
        return false;
    }
    map.insert(key.to_owned(), Value::String(value.to_owned()));
    true
}

/// The child object at `key`, made an empty object if absent or not an object.
pub fn ensure_object<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    if !obj.is_object() {
        *obj = Value::Object(Default::default());
    }
    let map = obj.as_object_mut().expect("made an object above");
    let child = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Default::default()));
    if !child.is_object() {
        *child = Value::Object(Default::default());
    }
    child
}

/// Parse a JSON value into a k8s-openapi type, with a readable error.
pub fn typed<T: serde::de::DeserializeOwned>(obj: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_refs_round_trip() {
        let owner = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "a", "uid": "u1"}});
        let r = OwnerRef::controller_of(&owner);
        let child = json!({"metadata": {"ownerReferences": [r.to_value()]}});
        assert_eq!(controller_ref(&child), Some(r));
    }

    #[test]
    fn time_format_is_whole_seconds() {
        let t: Timestamp = "2024-01-02T03:04:05.678Z".parse().unwrap();
        let clock = ManualClock::new(t);
        assert_eq!(format_time(now_seconds(&*clock)), "2024-01-02T03:04:05Z");
    }

    #[test]
    fn set_annotation_reports_change() {
        let mut v = json!({});
        assert!(set_annotation(&mut v, "a", "1"));
        assert!(!set_annotation(&mut v, "a", "1"));
        assert_eq!(annotation(&v, "a"), Some("1"));
    }
}
