//! The API source: an informer per kind (list, then watch from the list's resourceVersion;
//! re-list on 410 Gone or a broken stream), a shared cache, and a debounced publisher that turns
//! the cache into a snapshot at most once per debounce interval.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_client::{Client, ClientError, ListParams, ObjectList, WatchEvent};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{ConfigSource, SnapshotReceiver};
use crate::snapshot::{Kind, Snapshot};

/// List and watch, per kind, across all namespaces. [`Client`] implements it; tests fake it.
pub trait ListWatch: Send + Sync + 'static {
    /// List every object of `kind`.
    fn list(&self, kind: Kind) -> BoxFuture<'_, Result<ObjectList, ClientError>>;
    /// Watch `kind` from `resource_version`.
    fn watch(
        &self,
        kind: Kind,
        resource_version: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<WatchEvent, ClientError>>, ClientError>>;
}

fn resource_type(kind: Kind) -> Option<&'static aos_types::ResourceType> {
    kind.api_versions()
        .iter()
        .find_map(|v| aos_types::resource::by_kind(v, kind.name()))
}

fn not_served(kind: Kind) -> ClientError {
    ClientError::Config(format!("the API does not serve {}", kind.name()))
}

impl ListWatch for Client {
    fn list(&self, kind: Kind) -> BoxFuture<'_, Result<ObjectList, ClientError>> {
        Box::pin(async move {
            let rt = resource_type(kind).ok_or_else(|| not_served(kind))?;
            let mut all = ObjectList::default();
            let mut params = ListParams {
                limit: Some(500),
                ..Default::default()
            };
            loop {
                let page = Client::list(self, rt, None, &params).await?;
                all.items.extend(page.items);
                all.resource_version = page.resource_version;
                match page.continue_token {
                    Some(c) => params.continue_token = Some(c),
                    None => return Ok(all),
                }
            }
        })
    }

    fn watch(
        &self,
        kind: Kind,
        resource_version: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<WatchEvent, ClientError>>, ClientError>>
    {
        Box::pin(async move {
            let rt = resource_type(kind).ok_or_else(|| not_served(kind))?;
            let params = ListParams {
                timeout_seconds: Some(300),
                bookmarks: true,
                ..Default::default()
            };
            Client::watch(self, rt, None, &params, &resource_version).await
        })
    }
}

/// The gateway's source in production: the API's Services, Endpoints, Pods, VirtualServices,
/// DestinationRules and Gateways.
pub struct ApiSource {
    lw: Arc<dyn ListWatch>,
    debounce: Duration,
}

impl std::fmt::Debug for ApiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSource")
            .field("debounce", &self.debounce)
            .finish_non_exhaustive()
    }
}

impl ApiSource {
    /// Watch through `client`, rebuilding at most every 50 ms.
    pub fn new(client: Client) -> Self {
        Self::with_list_watch(Arc::new(client), Duration::from_millis(50))
    }

    /// Watch through any [`ListWatch`], rebuilding at most once per `debounce`.
    pub fn with_list_watch(lw: Arc<dyn ListWatch>, debounce: Duration) -> Self {
        ApiSource { lw, debounce }
    }
}

#[derive(Default)]
struct Cache {
    objects: HashMap<Kind, BTreeMap<(String, String), Value>>,
    synced: HashSet<Kind>,
}

fn key_of(obj: &Value) -> (String, String) {
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    (ns, name)
}

/// Keep only what the gateway reads of a Pod: its labels and owners.
fn slim(kind: Kind, obj: Value) -> Value {
    if kind != Kind::Pod {
        return obj;
    }
    let meta = obj.get("metadata");
    let pick = |k: &str| meta.and_then(|m| m.get(k)).cloned().unwrap_or(Value::Null);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "labels": pick("labels"),
            "ownerReferences": pick("ownerReferences"),
        }
    })
}

fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sleep, unless shutdown comes first; returns false on shutdown.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often to look again for a kind the API does not serve.
const UNSERVED_RETRY: Duration = Duration::from_secs(30);

async fn reflect(
    lw: Arc<dyn ListWatch>,
    kind: Kind,
    cache: Arc<Mutex<Cache>>,
    changed: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    'list: loop {
        let listed = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = lw.list(kind) => r,
        };
        let list = match listed {
            Ok(l) => l,
            Err(e) if matches!(e, ClientError::Config(_)) || e.is_not_found() => {
                // The kind is not served (e.g. no Gateway type): an empty set, looked for again later.
                tracing::warn!(kind = kind.name(), error = %e, "not watching this kind");
                {
                    let mut c = lock(&cache);
                    c.objects.remove(&kind);
                    c.synced.insert(kind);
                }
                changed.notify_one();
                if !pause(UNSERVED_RETRY, &shutdown).await {
                    return;
                }
                continue 'list;
            }
            Err(e) => {
                tracing::warn!(kind = kind.name(), error = %e, retry_ms = backoff.as_millis() as u64, "listing failed");
                if !pause(backoff, &shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue 'list;
            }
        };
        {
            let mut c = lock(&cache);
            let map = list
                .items
                .into_iter()
                .map(|o| (key_of(&o), slim(kind, o)))
                .collect();
            c.objects.insert(kind, map);
            c.synced.insert(kind);
        }
        changed.notify_one();
        let mut rv = list.resource_version;
        loop {
            let watched = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = lw.watch(kind, rv.clone()) => r,
            };
            let mut stream = match watched {
                Ok(s) => s,
                Err(e) => {
                    if e.code() != Some(410) {
                        tracing::warn!(kind = kind.name(), error = %e, "watch failed; listing again");
                        if !pause(backoff, &shutdown).await {
                            return;
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                    continue 'list;
                }
            };
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = stream.next() => n,
                };
                let event = match next {
                    // The server closed the watch (its timeout): watch again from `rv`.
                    None => break,
                    Some(Ok(ev)) => ev,
                    Some(Err(e)) => {
                        tracing::warn!(kind = kind.name(), error = %e, "watch stream broke; listing again");
                        if !pause(backoff, &shutdown).await {
                            return;
                        }
                        continue 'list;
                    }
                };
                backoff = BACKOFF_MIN;
                if let Some(status) = event.error_status() {
                    if status.code == 410 {
                        tracing::debug!(kind = kind.name(), "watch expired; listing again");
                    } else {
                        tracing::warn!(kind = kind.name(), message = %status.message, "watch error; listing again");
                    }
                    continue 'list;
                }
                if let Some(v) = event.resource_version() {
                    rv = v.to_string();
                }
                let mut c = lock(&cache);
                let map = c.objects.entry(kind).or_default();
                match event.type_.as_str() {
                    "ADDED" | "MODIFIED" => {
                        map.insert(key_of(&event.object), slim(kind, event.object));
                    }
                    "DELETED" => {
                        map.remove(&key_of(&event.object));
                    }
                    _ => continue, // BOOKMARK
                }
                drop(c);
                changed.notify_one();
            }
        }
    }
}

async fn publish(
    cache: Arc<Mutex<Cache>>,
    changed: Arc<Notify>,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    debounce: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = changed.notified() => {}
        }
        // Let a burst of events settle into one rebuild.
        if !pause(debounce, &shutdown).await {
            return;
        }
        let snap = {
            let c = lock(&cache);
            if !Kind::ALL.iter().all(|k| c.synced.contains(k)) {
                continue;
            }
            let mut snap = Snapshot::default();
            for kind in Kind::ALL {
                if let Some(map) = c.objects.get(&kind) {
                    snap.objects_mut(kind).extend(map.values().cloned());
                }
            }
            snap
        };
        tx.send_replace(Some(Arc::new(snap)));
    }
}

impl ConfigSource for ApiSource {
    fn start(self, shutdown: CancellationToken) -> SnapshotReceiver {
        let (tx, rx) = watch::channel(None);
        let cache = Arc::new(Mutex::new(Cache::default()));
        let changed = Arc::new(Notify::new());
        for kind in Kind::ALL {
            tokio::spawn(reflect(
                self.lw.clone(),
                kind,
                cache.clone(),
                changed.clone(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(publish(cache, changed, tx, self.debounce, shutdown));
        rx
    }
}

#[cfg(test)]
mod tests;
