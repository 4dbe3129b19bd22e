//! The reflector and informer: list, then watch from the list's
//! resourceVersion; keep an in-memory cache by namespace and name; call
//! event handlers on every change. A 410 (or a failed watch) re-lists with
//! backoff; a watch that ends cleanly resumes from the last resourceVersion.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aos_types::ResourceType;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterError, ListParams, ObjectKey, WatchEventType};
use crate::meta;

/// A change seen by an informer.
#[derive(Clone, Debug)]
pub enum InformerEvent {
    /// A new object.
    Added(Arc<Value>),
    /// A changed object.
    Modified {
        /// Before.
        old: Arc<Value>,
        /// After.
        new: Arc<Value>,
    },
    /// A removed object (its last known state).
    Deleted(Arc<Value>),
}

impl InformerEvent {
    /// The object the event is about (the new state for modifications).
    pub fn object(&self) -> &Arc<Value> {
        match self {
            Self::Added(o) | Self::Deleted(o) | Self::Modified { new: o, .. } => o,
        }
    }
    /// The previous state for modifications.
    pub fn old(&self) -> Option<&Arc<Value>> {
        match self {
            Self::Modified { old, .. } => Some(old),
            _ => None,
        }
    }
}

type Handler = Arc<dyn Fn(&InformerEvent) + Send + Sync>;

/// Objects by namespace (`None` for cluster-scoped) and name.
type ByNamespace = HashMap<Option<String>, BTreeMap<String, Arc<Value>>>;

/// The informer's cache: objects by namespace and name.
#[derive(Clone, Default)]
pub struct Cache {
    inner: Arc<RwLock<ByNamespace>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("len", &self.len()).finish()
    }
}

impl Cache {
    /// One object.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        let inner = self.inner.read().expect("cache lock poisoned");
        inner.get(&key.namespace)?.get(&key.name).cloned()
    }
    /// Every object in `ns` (`None`: cluster-scoped objects).
    pub fn list_namespace(&self, ns: Option<&str>) -> Vec<Arc<Value>> {
        let inner = self.inner.read().expect("cache lock poisoned");
        inner
            .get(&ns.map(str::to_owned))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
    /// Every object.
    pub fn list_all(&self) -> Vec<Arc<Value>> {
        let inner = self.inner.read().expect("cache lock poisoned");
        inner.values().flat_map(|m| m.values().cloned()).collect()
    }
    /// Number of objects.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .expect("cache lock poisoned")
            .values()
            .map(BTreeMap::len)
            .sum()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, key: ObjectKey, obj: Arc<Value>) -> Option<Arc<Value>> {
        let mut inner = self.inner.write().expect("cache lock poisoned");
        inner
            .entry(key.namespace)
            .or_default()
            .insert(key.name, obj)
    }

    fn remove(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        let mut inner = self.inner.write().expect("cache lock poisoned");
        let m = inner.get_mut(&key.namespace)?;
        let old = m.remove(&key.name);
        if m.is_empty() {
            inner.remove(&key.namespace);
        }
        old
    }

    fn snapshot(&self) -> HashMap<ObjectKey, Arc<Value>> {
        let inner = self.inner.read().expect("cache lock poisoned");
        inner
            .iter()
            .flat_map(|(ns, m)| {
                m.iter().map(|(n, v)| {
                    (
                        ObjectKey {
                            namespace: ns.clone(),
                            name: n.clone(),
                        },
                        v.clone(),
                    )
                })
            })
            .collect()
    }
}

/// Exponential backoff with jitter for list and watch retries.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    base: Duration,
    max: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: Duration::from_millis(100),
            base: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
    fn reset(&mut self) {
        self.next = self.base;
    }
    fn next_delay(&mut self) -> Duration {
        use rand::Rng;
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::rng().random_range(0.0..0.2);
        d.mul_f64(1.0 + jitter)
    }
}

struct Shared {
    cluster: Arc<dyn Cluster>,
    rt: &'static ResourceType,
    namespace: Option<String>,
    params: ListParams,
    cache: Cache,
    handlers: RwLock<Vec<Handler>>,
    ready: watch::Sender<bool>,
}

/// A shared informer for one resource type; cheap to clone.
#[derive(Clone)]
pub struct Informer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Informer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer")
            .field("resource", &self.shared.rt.plural)
            .finish_non_exhaustive()
    }
}

enum WatchEnd {
    /// Resume the watch from the last resourceVersion.
    Resume,
    /// List again (410, or a broken stream).
    Relist,
    /// Shutting down.
    Cancelled,
}

impl Informer {
    /// An informer of `rt` in `namespace` (all namespaces when `None`).
    pub fn new(
        cluster: Arc<dyn Cluster>,
        rt: &'static ResourceType,
        namespace: Option<String>,
        params: ListParams,
    ) -> Self {
        let (ready, _) = watch::channel(false);
        Self {
            shared: Arc::new(Shared {
                cluster,
                rt,
                namespace,
                params,
                cache: Cache::default(),
                handlers: RwLock::new(Vec::new()),
                ready,
            }),
        }
    }

    /// The resource type.
    pub fn resource(&self) -> &'static ResourceType {
        self.shared.rt
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.shared.cache
    }

    /// Call `handler` on every change. Objects already cached are replayed as `Added`.
    pub fn add_handler(&self, handler: impl Fn(&InformerEvent) + Send + Sync + 'static) {
        let handler: Handler = Arc::new(handler);
        let mut handlers = self
            .shared
            .handlers
            .write()
            .expect("handlers lock poisoned");
        for obj in self.shared.cache.list_all() {
            handler(&InformerEvent::Added(obj));
        }
        handlers.push(handler);
    }

    /// Whether the first list has completed.
    pub fn is_ready(&self) -> bool {
        *self.shared.ready.borrow()
    }

    /// Wait until the first list has completed.
    pub async fn wait_ready(&self) {
        let mut rx = self.shared.ready.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|r| *r).await;
    }

    fn dispatch(&self, ev: &InformerEvent) {
        let handlers = self.shared.handlers.read().expect("handlers lock poisoned");
        for h in handlers.iter() {
            h(ev);
        }
    }

    fn apply(&self, type_: WatchEventType, obj: Value) {
        let Some(key) = ObjectKey::of(&obj) else {
            tracing::warn!(
                resource = self.shared.rt.plural,
                "watch event without a name"
            );
            return;
        };
        let obj = Arc::new(obj);
        match type_ {
            WatchEventType::Added | WatchEventType::Modified => {
                match self.shared.cache.insert(key, obj.clone()) {
                    Some(old) => self.dispatch(&InformerEvent::Modified { old, new: obj }),
                    None => self.dispatch(&InformerEvent::Added(obj)),
                }
            }
            WatchEventType::Deleted => {
                let last = self.shared.cache.remove(&key).unwrap_or(obj);
                self.dispatch(&InformerEvent::Deleted(last));
            }
            WatchEventType::Bookmark | WatchEventType::Error => {}
        }
    }

    /// Replace the cache with a fresh list, dispatching the differences.
    fn replace(&self, items: Vec<Value>) {
        let mut old = self.shared.cache.snapshot();
        for obj in items {
            let Some(key) = ObjectKey::of(&obj) else {
                continue;
            };
            match old.remove(&key) {
                Some(prev) if meta::resource_version(&prev) == meta::resource_version(&obj) => {}
                _ => self.apply(WatchEventType::Modified, obj),
            }
        }
        for (_, gone) in old {
            self.apply(WatchEventType::Deleted, (*gone).clone());
        }
    }

    async fn sleep(cancel: &CancellationToken, d: Duration) -> bool {
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// List and watch until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let s = &self.shared;
        let ns = s.namespace.as_deref();
        let mut backoff = Backoff::new();
        'relist: loop {
            if cancel.is_cancelled() {
                return;
            }
            let list = tokio::select! {
                _ = cancel.cancelled() => return,
                r = s.cluster.list(s.rt, ns, &s.params) => r,
            };
            let list = match list {
                Ok(l) => l,
                Err(e) if matches!(e.code(), Some(404 | 405)) => {
                    // The server does not serve this type: an empty cache is the truth for now,
                    // and readiness must not wait for it. Look again later.
                    tracing::warn!(resource = s.rt.plural, error = %e, "resource not served; retrying later");
                    self.replace(Vec::new());
                    s.ready.send_replace(true);
                    if !Self::sleep(&cancel, Duration::from_secs(30)).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(resource = s.rt.plural, error = %e, "list failed; retrying");
                    if !Self::sleep(&cancel, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            };
            let mut rv = list.resource_version;
            self.replace(list.items);
            s.ready.send_replace(true);
            tracing::debug!(resource = s.rt.plural, resource_version = %rv, objects = s.cache.len(), "listed");
            loop {
                match self.watch_once(&cancel, &mut rv, &mut backoff).await {
                    WatchEnd::Cancelled => return,
                    WatchEnd::Resume => continue,
                    WatchEnd::Relist => {
                        if !Self::sleep(&cancel, backoff.next_delay()).await {
                            return;
                        }
                        continue 'relist;
                    }
                }
            }
        }
    }

    async fn watch_once(
        &self,
        cancel: &CancellationToken,
        rv: &mut String,
        backoff: &mut Backoff,
    ) -> WatchEnd {
        let s = &self.shared;
        let started = tokio::select! {
            _ = cancel.cancelled() => return WatchEnd::Cancelled,
            r = s.cluster.watch(s.rt, s.namespace.as_deref(), &s.params, rv) => r,
        };
        let mut stream = match started {
            Ok(st) => st,
            Err(e) if e.is_gone() => return WatchEnd::Relist,
            Err(e) => {
                tracing::warn!(resource = s.rt.plural, error = %e, "watch failed; re-listing");
                return WatchEnd::Relist;
            }
        };
        let started_at = tokio::time::Instant::now();
        let mut seen_event = false;
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return WatchEnd::Cancelled,
                n = stream.next() => n,
            };
            match next {
                None => {
                    // A watch that ends at once without an event should not spin; one that
                    // ran its course (the server's timeout) resumes right away.
                    if !seen_event && started_at.elapsed() < Duration::from_secs(1) {
                        if !Self::sleep(cancel, backoff.next_delay()).await {
                            return WatchEnd::Cancelled;
                        }
                    } else {
                        backoff.reset();
                    }
                    return WatchEnd::Resume;
                }
                Some(Err(e)) => {
                    tracing::warn!(resource = s.rt.plural, error = %e, "watch stream broke; re-listing");
                    return WatchEnd::Relist;
                }
                Some(Ok(ev)) => {
                    seen_event = true;
                    backoff.reset();
                    if ev.type_ == WatchEventType::Error {
                        let err = ClusterError::from_status(&ev.object);
                        if !err.is_gone() {
                            tracing::warn!(resource = s.rt.plural, error = %err, "watch error event; re-listing");
                        }
                        return WatchEnd::Relist;
                    }
                    let new_rv = meta::resource_version(&ev.object);
                    if !new_rv.is_empty() {
                        *rv = new_rv.to_owned();
                    }
                    self.apply(ev.type_, ev.object);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::cluster::fake::FakeCluster;
    use crate::kinds::tests::CONFIGMAPS;

    #[tokio::test]
    async fn lists_then_watches_and_dispatches() {
        let fake = FakeCluster::new();
        fake.create(&CONFIGMAPS, Some("ns"), &json!({"metadata": {"name": "a"}}))
            .await
            .unwrap();
        let inf = Informer::new(fake.clone(), &CONFIGMAPS, None, ListParams::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        inf.add_handler(move |ev| {
            let tag = match ev {
                InformerEvent::Added(_) => "add",
                InformerEvent::Modified { .. } => "mod",
                InformerEvent::Deleted(_) => "del",
            };
            seen2
                .lock()
                .unwrap()
                .push(format!("{tag} {}", meta::name(ev.object())));
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(inf.clone().run(cancel.clone()));
        inf.wait_ready().await;
        assert_eq!(inf.cache().len(), 1);
        fake.create(&CONFIGMAPS, Some("ns"), &json!({"metadata": {"name": "b"}}))
            .await
            .unwrap();
        fake.delete(&CONFIGMAPS, Some("ns"), "a", &Default::default())
            .await
            .unwrap();
        for _ in 0..100 {
            if seen.lock().unwrap().len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["add a", "add b", "del a"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        );
        assert!(inf.cache().get(&ObjectKey::new("ns", "b")).is_some());
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn relists_after_gone() {
        let fake = FakeCluster::new();
        let inf = Informer::new(fake.clone(), &CONFIGMAPS, None, ListParams::default());
        fake.fail_next(
            "watch",
            &CONFIGMAPS,
            ClusterError::Api {
                code: 410,
                reason: "Expired".into(),
                message: "too old resource version".into(),
            },
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn(inf.clone().run(cancel.clone()));
        inf.wait_ready().await;
        fake.create(
            &CONFIGMAPS,
            Some("ns"),
            &json!({"metadata": {"name": "late"}}),
        )
        .await
        .unwrap();
        for _ in 0..400 {
            if inf.cache().len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(inf.cache().len(), 1);
        assert!(fake.calls("list", "configmaps") >= 2);
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn unserved_type_is_ready_and_empty() {
        let fake = FakeCluster::new();
        fake.fail_next(
            "list",
            &CONFIGMAPS,
            ClusterError::Api {
                code: 404,
                reason: "NotFound".into(),
                message: "the server could not find the requested resource".into(),
            },
        );
        let inf = Informer::new(fake.clone(), &CONFIGMAPS, None, ListParams::default());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(inf.clone().run(cancel.clone()));
        inf.wait_ready().await;
        assert!(inf.cache().is_empty());
        fake.create(&CONFIGMAPS, Some("ns"), &json!({"metadata": {"name": "a"}}))
            .await
            .unwrap();
        // The retry after 30 s lists the type again.
        tokio::time::sleep(Duration::from_secs(31)).await;
        for _ in 0..100 {
            if inf.cache().len() == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(inf.cache().len(), 1);
        cancel.cancel();
        task.await.unwrap();
    }
}
