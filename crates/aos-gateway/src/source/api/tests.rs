//! The informers against a fake API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_client::{ClientError, ObjectList, Status, WatchEvent};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;

type Events = mpsc::UnboundedSender<Result<WatchEvent, ClientError>>;

#[derive(Default)]
struct FakeApi {
    lists: Mutex<HashMap<Kind, Vec<Value>>>,
    list_calls: Mutex<HashMap<Kind, usize>>,
    watchers: Mutex<HashMap<Kind, Events>>,
    watch_calls: AtomicUsize,
}

impl FakeApi {
    fn set(&self, kind: Kind, items: Vec<Value>) {
        self.lists.lock().unwrap().insert(kind, items);
    }
    fn lists_of(&self, kind: Kind) -> usize {
        self.list_calls
            .lock()
            .unwrap()
            .get(&kind)
            .copied()
            .unwrap_or(0)
    }
    async fn watcher(&self, kind: Kind) -> Events {
        loop {
            if let Some(tx) = self.watchers.lock().unwrap().get(&kind).cloned()
                && !tx.is_closed()
            {
                return tx;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl ListWatch for FakeApi {
    fn list(&self, kind: Kind) -> BoxFuture<'_, Result<ObjectList, ClientError>> {
        Box::pin(async move {
            *self.list_calls.lock().unwrap().entry(kind).or_default() += 1;
            if kind == Kind::Gateway {
                return Err(ClientError::Config("the API does not serve Gateway".into()));
            }
            Ok(ObjectList {
                items: self
                    .lists
                    .lock()
                    .unwrap()
                    .get(&kind)
                    .cloned()
                    .unwrap_or_default(),
                resource_version: "10".into(),
                continue_token: None,
            })
        })
    }

    fn watch(
        &self,
        kind: Kind,
        _rv: String,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<WatchEvent, ClientError>>, ClientError>>
    {
        Box::pin(async move {
            self.watch_calls.fetch_add(1, Ordering::SeqCst);
            let (tx, rx) = mpsc::unbounded_channel();
            self.watchers.lock().unwrap().insert(kind, tx);
            let s: BoxStream<'static, _> =
                Box::pin(futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|e| (e, rx))
                }));
            Ok(s)
        })
    }
}

fn svc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ns", "resourceVersion": "11"},
           "spec": {"ports": [{"port": 80}]}})
}

fn event(type_: &str, object: Value) -> Result<WatchEvent, ClientError> {
    Ok(WatchEvent {
        type_: type_.into(),
        object,
    })
}

async fn next_snapshot(
    rx: &mut SnapshotReceiver,
    pred: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(s) = rx.borrow_and_update().clone()
                && pred(&s)
            {
                return s;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("a matching snapshot")
}

#[tokio::test]
async fn lists_watches_and_relists_on_410() {
    let api = Arc::new(FakeApi::default());
    api.set(Kind::Service, vec![svc("a")]);
    api.set(
        Kind::Pod,
        vec![json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "a"}, "annotations": {"big": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}})],
    );
    let shutdown = CancellationToken::new();
    let source = ApiSource::with_list_watch(api.clone(), Duration::from_millis(10));
    let mut rx = source.start(shutdown.clone());

    // The first snapshot comes once every kind is synced (Gateway is not served: empty).
    let s = next_snapshot(&mut rx, |s| s.services.len() == 1).await;
    assert_eq!(s.pods.len(), 1);
    assert_eq!(s.pods[0]["metadata"]["labels"]["app"], "a");
    assert!(s.pods[0].get("spec").is_none(), "pods are kept slim");
    assert!(s.gateways.is_empty());

    let w = api.watcher(Kind::Service).await;
    w.send(event("ADDED", svc("b"))).unwrap();
    next_snapshot(&mut rx, |s| s.services.len() == 2).await;
    w.send(event("DELETED", svc("a"))).unwrap();
    let s = next_snapshot(&mut rx, |s| s.services.len() == 1).await;
    assert_eq!(s.services[0]["metadata"]["name"], "b");

    // 410 Gone: list again (the list has only "a" now).
    let lists = api.lists_of(Kind::Service);
    w.send(Ok(WatchEvent {
        type_: "ERROR".into(),
        object: json!({"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}),
    }))
    .unwrap();
    let s = next_snapshot(&mut rx, |s| {
        s.services.len() == 1 && s.services[0]["metadata"]["name"] == "a"
    })
    .await;
    assert_eq!(s.services.len(), 1);
    assert_eq!(api.lists_of(Kind::Service), lists + 1);

    // A broken stream: list again too.
    let w = api.watcher(Kind::Service).await;
    api.set(Kind::Service, vec![svc("a"), svc("c")]);
    w.send(Err(ClientError::Transport("reset".into()))).unwrap();
    next_snapshot(&mut rx, |s| s.services.len() == 2).await;
    let _ = Status::default();
    shutdown.cancel();
}
