//! An in-memory cluster with the API server's semantics that matter to
//! controllers: resourceVersions and optimistic concurrency, generation,
//! status subresource, watches from a revision, finalizers and graceful
//! deletion, propagation policies, namespace finalization.
//!
//! It is for tests: everything lives in one mutex, and nothing is validated.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use aos_types::ResourceType;
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::{
    Cluster, ClusterError, DeleteParams, ListParams, ObjectList, Patch, Propagation, WatchEvent,
    WatchEventType, WatchStream,
};
use crate::meta;
use crate::selector::Selector;

type Key = (String, String, String);

#[derive(Clone, Debug)]
struct Change {
    rev: u64,
    resource: String,
    namespace: String,
    type_: WatchEventType,
    object: Value,
}

#[derive(Default)]
struct Inner {
    rev: u64,
    objects: BTreeMap<Key, Value>,
    /// Every change, for watches that start in the past.
    log: Vec<Change>,
    /// `(verb, resource)` pairs that fail once with the given error.
    failures: Vec<(String, String, ClusterError)>,
}

/// The in-memory cluster.
pub struct FakeCluster {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Change>,
    calls: Mutex<BTreeMap<String, u64>>,
    uid_seq: AtomicU64,
    serve_binding: AtomicBool,
}

impl std::fmt::Debug for FakeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCluster").finish_non_exhaustive()
    }
}

fn resource_key(rt: &ResourceType) -> String {
    format!("{}/{}", rt.group, rt.plural)
}

fn api_err(code: u16, reason: &str, message: String) -> ClusterError {
    ClusterError::Api {
        code,
        reason: reason.to_owned(),
        message,
    }
}

fn not_found(rt: &ResourceType, name: &str) -> ClusterError {
    api_err(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", rt.plural),
    )
}

/// Apply an RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let t = target.as_object_mut().expect("made an object above");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

impl Default for FakeCluster {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            inner: Mutex::default(),
            tx,
            calls: Mutex::default(),
            uid_seq: AtomicU64::new(1),
            serve_binding: AtomicBool::new(false),
        }
    }
}

impl FakeCluster {
    /// An empty cluster.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake cluster lock poisoned")
    }

    fn count(&self, verb: &str, rt: &ResourceType) {
        let mut calls = self.calls.lock().expect("calls lock poisoned");
        *calls.entry(format!("{verb} {}", rt.plural)).or_default() += 1;
    }

    /// How many calls of `verb` (`create`, `replace`, `replace_status`, `patch`, `delete`, `list`, `watch`, `get`)
    /// were made on `plural`.
    pub fn calls(&self, verb: &str, plural: &str) -> u64 {
        self.calls
            .lock()
            .expect("calls lock poisoned")
            .get(&format!("{verb} {plural}"))
            .copied()
            .unwrap_or(0)
    }

    /// Serve `POST pods/{name}/binding` as Kubernetes does (off by default, as in aos's API
    /// server today: the answer is then 404 "the server could not find the requested resource").
    pub fn serve_binding(&self, on: bool) {
        self.serve_binding.store(on, Ordering::Relaxed);
    }

    /// Make the next `verb` on `rt` fail with `err`.
    pub fn fail_next(&self, verb: &str, rt: &ResourceType, err: ClusterError) {
        self.lock()
            .failures
            .push((verb.to_owned(), resource_key(rt), err));
    }

    fn injected(
        &self,
        inner: &mut Inner,
        verb: &str,
        rt: &ResourceType,
    ) -> Result<(), ClusterError> {
        let res = resource_key(rt);
        if let Some(i) = inner
            .failures
            .iter()
            .position(|(v, r, _)| v == verb && *r == res)
        {
            return Err(inner.failures.remove(i).2);
        }
        Ok(())
    }

    /// A snapshot of every object of `rt` (all namespaces), sorted by namespace and name.
    pub fn objects(&self, rt: &ResourceType) -> Vec<Value> {
        let res = resource_key(rt);
        self.lock()
            .objects
            .iter()
            .filter(|((r, _, _), _)| *r == res)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// One object, if present.
    pub fn object(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(
                resource_key(rt),
                ns.unwrap_or_default().to_owned(),
                name.to_owned(),
            ))
            .cloned()
    }

    /// Change an object in place as if another actor (a node agent, a user) wrote it.
    /// Returns the new object, or `None` when it does not exist.
    pub fn modify(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let mut inner = self.lock();
        let key = (
            resource_key(rt),
            ns.unwrap_or_default().to_owned(),
            name.to_owned(),
        );
        let mut obj = inner.objects.get(&key)?.clone();
        let old_spec = obj.get("spec").cloned();
        f(&mut obj);
        if obj.get("spec").cloned() != old_spec {
            let g = meta::generation(&obj) + 1;
            obj["metadata"]["generation"] = json!(g);
        }
        Some(self.commit(&mut inner, key, obj, WatchEventType::Modified))
    }

    /// Mark a pod Running and Ready (or not ready) on a node, as a node agent would report it.
    /// `ready_since` is the Ready condition's lastTransitionTime.
    pub fn set_pod_ready(
        &self,
        pods: &ResourceType,
        ns: &str,
        name: &str,
        ready: bool,
        ready_since: &str,
    ) -> bool {
        self.modify(pods, Some(ns), name, |p| {
            p["spec"]["nodeName"] = json!("node-1");
            p["status"] = json!({
                "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": if ready { "True" } else { "False" },
                     "lastTransitionTime": ready_since}
                ]
            });
        })
        .is_some()
    }

    fn commit(&self, inner: &mut Inner, key: Key, mut obj: Value, type_: WatchEventType) -> Value {
        inner.rev += 1;
        let rev = inner.rev;
        meta::ensure_object(&mut obj, "metadata")["resourceVersion"] = json!(rev.to_string());
        let change = Change {
            rev,
            resource: key.0.clone(),
            namespace: key.1.clone(),
            type_,
            object: obj.clone(),
        };
        if type_ == WatchEventType::Deleted {
            inner.objects.remove(&key);
        } else {
            inner.objects.insert(key, obj.clone());
        }
        inner.log.push(change.clone());
        // No receivers is fine: nobody watches yet.
        let _ = self.tx.send(change);
        obj
    }

    /// Store `obj` after an update, or remove it when it is deleting and has no finalizers left.
    fn commit_update(&self, inner: &mut Inner, key: Key, obj: Value) -> Value {
        let ns_blocked = obj.get("kind").and_then(Value::as_str) == Some("Namespace")
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        if meta::is_deleting(&obj) && meta::finalizers(&obj).is_empty() && !ns_blocked {
            self.commit(inner, key, obj, WatchEventType::Deleted)
        } else {
            self.commit(inner, key, obj, WatchEventType::Modified)
        }
    }

    fn key(rt: &ResourceType, ns: Option<&str>, name: &str) -> Key {
        (
            resource_key(rt),
            if rt.namespaced {
                ns.unwrap_or_default().to_owned()
            } else {
                String::new()
            },
            name.to_owned(),
        )
    }

    fn check_rv(
        rt: &ResourceType,
        current: &Value,
        new: &Value,
        name: &str,
    ) -> Result<(), ClusterError> {
        let want = meta::resource_version(new);
        if !want.is_empty() && want != meta::resource_version(current) {
            return Err(api_err(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    rt.plural
                ),
            ));
        }
        Ok(())
    }

    fn random_suffix() -> String {
        use rand::Rng;
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut rng = rand::rng();
        (0..5)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    }

    fn remove_owner_refs_to(&self, inner: &mut Inner, owner_uid: &str) {
        let dependents: Vec<(Key, Value)> = inner
            .objects
            .iter()
            .filter(|(_, v)| meta::owner_refs(v).iter().any(|r| r.uid == owner_uid))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, mut obj) in dependents {
            if let Some(refs) = obj
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
            }
            self.commit(inner, key, obj, WatchEventType::Modified);
        }
    }
}

#[async_trait]
impl Cluster for FakeCluster {
    async fn get(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ClusterError> {
        self.count("get", rt);
        let mut inner = self.lock();
        self.injected(&mut inner, "get", rt)?;
        inner
            .objects
            .get(&Self::key(rt, ns, name))
            .cloned()
            .ok_or_else(|| not_found(rt, name))
    }

    async fn list(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList, ClusterError> {
        self.count("list", rt);
        let mut inner = self.lock();
        self.injected(&mut inner, "list", rt)?;
        let sel = Selector::parse(params.label_selector.as_deref().unwrap_or_default())
            .map_err(|e| api_err(400, "BadRequest", e.to_string()))?;
        let res = resource_key(rt);
        let items = inner
            .objects
            .iter()
            .filter(|((r, n, _), v)| {
                *r == res && ns.is_none_or(|ns| ns == n) && sel.matches(&meta::labels(v))
            })
            .map(|(_, v)| v.clone())
            .collect();
        Ok(ObjectList {
            items,
            resource_version: inner.rev.to_string(),
        })
    }

    async fn watch(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        params: &ListParams,
        resource_version: &str,
    ) -> Result<WatchStream, ClusterError> {
        self.count("watch", rt);
        let mut inner = self.lock();
        self.injected(&mut inner, "watch", rt)?;
        let sel = Selector::parse(params.label_selector.as_deref().unwrap_or_default())
            .map_err(|e| api_err(400, "BadRequest", e.to_string()))?;
        let res = resource_key(rt);
        let ns = ns.map(str::to_owned);
        let matches = move |c: &Change| -> bool {
            c.resource == res
                && ns.as_ref().is_none_or(|ns| *ns == c.namespace)
                && sel.matches(&meta::labels(&c.object))
        };
        let mut backlog = Vec::new();
        let from: u64 = match resource_version {
            "" | "0" => {
                for ((r, n, _), v) in &inner.objects {
                    let c = Change {
                        rev: inner.rev,
                        resource: r.clone(),
                        namespace: n.clone(),
                        type_: WatchEventType::Added,
                        object: v.clone(),
                    };
                    if matches(&c) {
                        backlog.push(WatchEvent {
                            type_: WatchEventType::Added,
                            object: v.clone(),
                        });
                    }
                }
                inner.rev
            }
            rv => {
                let from: u64 = rv.parse().map_err(|_| {
                    api_err(400, "BadRequest", format!("invalid resourceVersion {rv:?}"))
                })?;
                for c in inner.log.iter().filter(|c| c.rev > from && matches(c)) {
                    backlog.push(WatchEvent {
                        type_: c.type_,
                        object: c.object.clone(),
                    });
                }
                from
            }
        };
        let last = inner.log.last().map_or(from, |c| c.rev.max(from));
        // Subscribing under the lock: no change can fall between the backlog and the live stream.
        let rx = self.tx.subscribe();
        drop(inner);
        let live = BroadcastStream::new(rx).filter_map(move |item| {
            let out = match item {
                Ok(c) if c.rev > last && matches(&c) => Some(Ok(WatchEvent {
                    type_: c.type_,
                    object: c.object,
                })),
                Ok(_) => None,
                Err(_) => Some(Err(ClusterError::Transport("watch lagged".to_owned()))),
            };
            futures::future::ready(out)
        });
        Ok(futures::stream::iter(backlog.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }

    async fn create(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        obj: &Value,
    ) -> Result<Value, ClusterError> {
        self.count("create", rt);
        let mut inner = self.lock();
        self.injected(&mut inner, "create", rt)?;
        let mut obj = obj.clone();
        let meta_obj = meta::ensure_object(&mut obj, "metadata");
        if meta_obj
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let prefix = meta_obj
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if prefix.is_empty() {
                return Err(api_err(
                    422,
                    "Invalid",
                    "metadata.name: Required value".to_owned(),
                ));
            }
            meta_obj["name"] = json!(format!("{prefix}{}", Self::random_suffix()));
        }
        if rt.namespaced {
            let ns =
                ns.ok_or_else(|| api_err(400, "BadRequest", "namespace required".to_owned()))?;
            meta_obj["namespace"] = json!(ns);
            let ns_key = ("/namespaces".to_owned(), String::new(), ns.to_owned());
            if inner.objects.get(&ns_key).is_some_and(meta::is_deleting) {
                return Err(api_err(
                    403,
                    "Forbidden",
                    format!(
                        "unable to create new content in namespace {ns} because it is being terminated"
                    ),
                ));
            }
        }
        let name = meta::name(&obj).to_owned();
        let key = Self::key(rt, ns, &name);
        if inner.objects.contains_key(&key) {
            return Err(api_err(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", rt.plural),
            ));
        }
        let seq = self.uid_seq.fetch_add(1, Ordering::Relaxed);
        let m = meta::ensure_object(&mut obj, "metadata");
        m["uid"] = json!(format!("uid-{seq:08}"));
        if m.get("creationTimestamp").is_none_or(Value::is_null) {
            m["creationTimestamp"] = json!(meta::format_time(jiff::Timestamp::now()));
        }
        m["generation"] = json!(1);
        if let Some(m) = m.as_object_mut() {
            m.remove("deletionTimestamp");
        }
        if rt.kind == "Namespace" {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        Ok(self.commit(&mut inner, key, obj, WatchEventType::Added))
    }

    async fn replace(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value, ClusterError> {
        self.count("replace", rt);
        let mut inner = self.lock();
        self.injected(&mut inner, "replace", rt)?;
        let key = Self::key(rt, ns, name);
        let current = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(rt, name))?;
        Self::check_rv(rt, &current, obj, name)?;
        let mut new = obj.clone();
        for field in [
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "namespace",
        ] {
            match current["metadata"].get(field) {
                Some(v) => meta::ensure_object(&mut new, "metadata")[field] = v.clone(),
                None => {
                    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove(field);
                    }
                }
            }
        }
        if rt.status_subresource {
            match current.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        if new.get("spec") != current.get("spec") {
            new["metadata"]["generation"] = json!(meta::generation(&current) + 1);
        }
        Ok(self.commit_update(&mut inner, key, new))
    }

    async fn replace_status(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value, ClusterError> {
        self.count("replace_status", rt);
        let mut inner = self.lock();
        self.injected(&mut inner, "replace_status", rt)?;
        let key = Self::key(rt, ns, name);
        let mut current = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(rt, name))?;
        Self::check_rv(rt, &current, obj, name)?;
        current["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
        Ok(self.commit(&mut inner, key, current, WatchEventType::Modified))
    }

    async fn patch(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        patch: &Patch,
        subresource: Option<&str>,
    ) -> Result<Value, ClusterError> {
        self.count("patch", rt);
        let mut inner = self.lock();
        self.injected(&mut inner, "patch", rt)?;
        let key = Self::key(rt, ns, name);
        let current = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(rt, name))?;
        let body = match patch {
            Patch::Merge(v) | Patch::Strategic(v) => v,
            Patch::Json(_) => {
                return Err(api_err(
                    415,
                    "UnsupportedMediaType",
                    "json patch not supported by the fake".to_owned(),
                ));
            }
        };
        Self::check_rv(rt, &current, body, name)?;
        let mut new = current.clone();
        if subresource == Some("status") {
            let mut status = current.get("status").cloned().unwrap_or(Value::Null);
            merge_patch(&mut status, body.get("status").unwrap_or(&Value::Null));
            new["status"] = status;
        } else {
            merge_patch(&mut new, body);
            new["metadata"]["uid"] = current["metadata"]["uid"].clone();
            if new.get("spec") != current.get("spec") {
                new["metadata"]["generation"] = json!(meta::generation(&current) + 1);
            }
        }
        Ok(self.commit_update(&mut inner, key, new))
    }

    async fn create_subresource(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        subresource: &str,
        obj: &Value,
    ) -> Result<Value, ClusterError> {
        self.count("create_subresource", rt);
        let mut inner = self.lock();
        self.injected(&mut inner, "create_subresource", rt)?;
        if !(rt.kind == "Pod"
            && subresource == "binding"
            && self.serve_binding.load(Ordering::Relaxed))
        {
            return Err(api_err(
                404,
                "NotFound",
                "the server could not find the requested resource".to_owned(),
            ));
        }
        let key = Self::key(rt, ns, name);
        let mut pod = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(rt, name))?;
        let want_uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !want_uid.is_empty() && want_uid != meta::uid(&pod) {
            return Err(api_err(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": precondition failed: uid"
                ),
            ));
        }
        let node = obj
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if node.is_empty() {
            return Err(api_err(
                422,
                "Invalid",
                "target.name: Required value".to_owned(),
            ));
        }
        if let Some(bound) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(api_err(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{bound}\""
                ),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        let mut conditions: Vec<Value> = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
        conditions.push(json!({"type": "PodScheduled", "status": "True",
            "lastTransitionTime": meta::format_time(jiff::Timestamp::now())}));
        meta::ensure_object(&mut pod, "status")["conditions"] = Value::Array(conditions);
        self.commit(&mut inner, key, pod, WatchEventType::Modified);
        Ok(json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 201}))
    }

    async fn delete(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        params: &DeleteParams,
    ) -> Result<(), ClusterError> {
        self.count("delete", rt);
        let mut inner = self.lock();
        self.injected(&mut inner, "delete", rt)?;
        let key = Self::key(rt, ns, name);
        let mut current = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(rt, name))?;
        if let Some(uid) = &params.precondition_uid
            && uid != meta::uid(&current)
        {
            return Err(api_err(
                409,
                "Conflict",
                format!("precondition failed: uid in precondition: {uid}"),
            ));
        }
        if let Some(rv) = &params.precondition_resource_version
            && rv != meta::resource_version(&current)
        {
            return Err(api_err(
                409,
                "Conflict",
                "precondition failed: resourceVersion".to_owned(),
            ));
        }
        if rt.kind == "Namespace" {
            if !meta::is_deleting(&current) {
                current["metadata"]["deletionTimestamp"] =
                    json!(meta::format_time(jiff::Timestamp::now()));
                current["status"]["phase"] = json!("Terminating");
                self.commit(&mut inner, key, current, WatchEventType::Modified);
            }
            return Ok(());
        }
        let uid = meta::uid(&current).to_owned();
        match params.propagation_policy {
            Some(Propagation::Orphan) => self.remove_owner_refs_to(&mut inner, &uid),
            Some(Propagation::Foreground) => {
                let mut f = meta::finalizers(&current);
                if !f.iter().any(|x| x == "foregroundDeletion") {
                    f.push("foregroundDeletion".to_owned());
                    current["metadata"]["finalizers"] = json!(f);
                }
            }
            _ => {}
        }
        if meta::finalizers(&current).is_empty() {
            self.commit(&mut inner, key, current, WatchEventType::Deleted);
        } else {
            if !meta::is_deleting(&current) {
                current["metadata"]["deletionTimestamp"] =
                    json!(meta::format_time(jiff::Timestamp::now()));
            }
            self.commit(&mut inner, key, current, WatchEventType::Modified);
        }
        Ok(())
    }

    async fn finalize_namespace(&self, name: &str, obj: &Value) -> Result<Value, ClusterError> {
        let mut inner = self.lock();
        let key = ("/namespaces".to_owned(), String::new(), name.to_owned());
        let mut current =
            inner.objects.get(&key).cloned().ok_or_else(|| {
                api_err(404, "NotFound", format!("namespaces \"{name}\" not found"))
            })?;
        current["spec"]["finalizers"] = obj
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or(json!([]));
        Ok(self.commit_update(&mut inner, key, current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    }
}
