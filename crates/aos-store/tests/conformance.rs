//! Conformance tests of the `Store` trait, written once against `&dyn Store`
//! and run for every backend: `SqliteStore`, and `EncryptingStore<SqliteStore>`
//! sealing every key (so every path goes through encryption).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aos_store::encrypt::{EncryptingStore, KeyFile};
use aos_store::metrics::StoreMetrics;
use aos_store::sqlite::{SqliteOptions, SqliteStore};
use aos_store::{EventKind, KeyValue, MAX_VALUE_BYTES, Revision, Store, StoreError, WatchStream};
use futures::StreamExt as _;
use tempfile::TempDir;

/// How a test gets (and re-gets, after a "restart") its store.
struct Backend {
    dir: TempDir,
    key: Option<KeyFile>,
    options: SqliteOptions,
}

impl Backend {
    fn sqlite() -> Self {
        Backend {
            dir: tempfile::tempdir().unwrap(),
            key: None,
            options: SqliteOptions::default(),
        }
    }

    fn encrypted() -> Self {
        Backend {
            key: Some(KeyFile::generate("key1").unwrap()),
            ..Backend::sqlite()
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("store.db")
    }

    fn open_with_metrics(&self) -> (Arc<dyn Store>, Arc<StoreMetrics>) {
        let sqlite = SqliteStore::open(&self.path(), self.options.clone()).unwrap();
        let metrics = sqlite.metrics();
        let store: Arc<dyn Store> = match &self.key {
            None => Arc::new(sqlite),
            Some(key) => Arc::new(EncryptingStore::new(
                sqlite,
                key.clone(),
                vec!["/".to_string()],
            )),
        };
        (store, metrics)
    }

    fn open(&self) -> Arc<dyn Store> {
        self.open_with_metrics().0
    }
}

const WAIT: Duration = Duration::from_secs(20);

/// The next item of a watch, failing the test if none comes in time.
async fn next_event(w: &mut WatchStream) -> Result<aos_store::Event, StoreError> {
    tokio::time::timeout(WAIT, w.next())
        .await
        .expect("watch event in time")
        .expect("watch stream still open")
}

/// Collect events until one has revision `last`; check the revisions run
/// `first..=last` without gap or duplicate.
async fn expect_consecutive(w: &mut WatchStream, first: Revision, last: Revision) {
    let mut want = first;
    while want <= last {
        let event = next_event(w).await.unwrap();
        assert_eq!(
            event.kv.mod_revision, want,
            "watch revisions must be consecutive"
        );
        want += 1;
    }
}

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

async fn crud(b: &Backend) {
    let s = b.open();
    assert_eq!(s.current_revision().await.unwrap(), 0);
    assert!(s.get("/a").await.unwrap().is_none());

    let a = s.create("/a", bytes("one")).await.unwrap();
    assert_eq!(
        (a.create_revision, a.mod_revision, a.value.as_slice()),
        (1, 1, b"one".as_slice())
    );
    assert!(
        matches!(s.create("/a", bytes("again")).await, Err(StoreError::AlreadyExists(k)) if k == "/a")
    );
    assert_eq!(s.get("/a").await.unwrap(), Some(a.clone()));

    let a2 = s.update("/a", bytes("two"), None).await.unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision), (1, 2));
    let a3 = s.update("/a", bytes("three"), Some(2)).await.unwrap();
    assert_eq!(a3.mod_revision, 3);
    match s.update("/a", bytes("stale"), Some(2)).await {
        Err(StoreError::Conflict {
            key,
            expected: 2,
            actual: 3,
        }) => assert_eq!(key, "/a"),
        other => panic!("want conflict, got {other:?}"),
    }
    assert!(matches!(
        s.delete("/a", Some(1)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        s.update("/none", bytes("x"), None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete("/none", None).await,
        Err(StoreError::NotFound(_))
    ));
    // Refused writes take no revision.
    assert_eq!(s.current_revision().await.unwrap(), 3);

    let gone = s.delete("/a", Some(3)).await.unwrap();
    assert_eq!(
        (
            gone.value.as_slice(),
            gone.create_revision,
            gone.mod_revision
        ),
        (b"three".as_slice(), 1, 4)
    );
    assert!(s.get("/a").await.unwrap().is_none());
    let again = s.create("/a", bytes("new life")).await.unwrap();
    assert_eq!((again.create_revision, again.mod_revision), (5, 5));
    assert_eq!(s.current_revision().await.unwrap(), 5);

    let empty = s.create("/empty", Vec::new()).await.unwrap();
    assert_eq!(s.get("/empty").await.unwrap().unwrap().value, empty.value);
}

async fn value_size_limit(b: &Backend) {
    let s = b.open();
    let big = vec![b'x'; MAX_VALUE_BYTES + 1];
    match s.create("/big", big.clone()).await {
        Err(StoreError::ValueTooLarge { key, size, limit }) => {
            assert_eq!((key.as_str(), size), ("/big", MAX_VALUE_BYTES + 1));
            // Encryption's envelope (header, nonce, tag) counts against the limit.
            let overhead = MAX_VALUE_BYTES - limit;
            assert!(
                overhead == 0 || (b.key.is_some() && overhead < 100),
                "limit {limit}"
            );
        }
        other => panic!("want ValueTooLarge, got {other:?}"),
    }
    s.create("/big", vec![b'x'; 1024 * 1024]).await.unwrap();
    assert!(matches!(
        s.update("/big", big, None).await,
        Err(StoreError::ValueTooLarge { .. })
    ));
    assert_eq!(
        s.get("/big").await.unwrap().unwrap().value.len(),
        1024 * 1024
    );
}

async fn revision_survives_reopen(b: &Backend) {
    {
        let s = b.open();
        s.create("/x/1", bytes("a")).await.unwrap();
        s.create("/x/2", bytes("b")).await.unwrap();
        // Delete the newest key and compact all history: nothing on disk names
        // revision 3 but the metadata.
        s.delete("/x/2", None).await.unwrap();
        s.compact(3).await.unwrap();
        assert_eq!(s.current_revision().await.unwrap(), 3);
    }
    let s = b.open();
    assert_eq!(s.current_revision().await.unwrap(), 3);
    let kv = s.create("/x/3", bytes("c")).await.unwrap();
    assert_eq!(kv.mod_revision, 4, "a revision is never reused");
    assert_eq!(s.list("/x/").await.unwrap().revision, 4);
    assert!(matches!(
        s.watch("/", 2).await,
        Err(StoreError::Compacted {
            requested: 2,
            compacted: 3
        })
    ));
}

async fn list_order_and_prefix_isolation(b: &Backend) {
    let s = b.open();
    for key in [
        "/a/bb/1",
        "/a/b/2",
        "/a/b/10",
        "/a/b/1",
        "/a/b",
        "/a/c/1",
        "/a/b0",
        "/a/b/\u{e9}",
    ] {
        s.create(key, bytes(key)).await.unwrap();
    }
    let list = s.list("/a/b/").await.unwrap();
    let keys: Vec<&str> = list.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/a/b/1", "/a/b/10", "/a/b/2", "/a/b/\u{e9}"]);
    assert!(list.items.iter().all(|kv| kv.value == kv.key.as_bytes()));
    assert_eq!(list.revision, 8);
    let bb: Vec<String> = s
        .list("/a/bb/")
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(bb, ["/a/bb/1"]);
    assert_eq!(s.list("/").await.unwrap().items.len(), 8);
    assert!(s.list("/zzz/").await.unwrap().items.is_empty());
    // The list revision moves with writes outside the prefix too.
    s.create("/other", bytes("o")).await.unwrap();
    assert_eq!(s.list("/a/bb/").await.unwrap().revision, 9);
}

async fn watch_from_zero_mid_and_live(b: &Backend) {
    let s = b.open();
    s.create("/w/a", bytes("1")).await.unwrap();
    s.update("/w/a", bytes("2"), None).await.unwrap();
    s.create("/other/x", bytes("x")).await.unwrap();
    s.delete("/w/a", None).await.unwrap();

    let mut all = s.watch("/w/", 0).await.unwrap();
    let e = next_event(&mut all).await.unwrap();
    assert_eq!(
        (e.kind, e.kv.mod_revision, e.kv.value.as_slice(), e.prev),
        (EventKind::Created, 1, b"1".as_slice(), None)
    );
    let e = next_event(&mut all).await.unwrap();
    assert_eq!(
        (e.kind, e.kv.mod_revision, e.kv.value.as_slice()),
        (EventKind::Updated, 2, b"2".as_slice())
    );
    let prev = e.prev.unwrap();
    assert_eq!(
        (
            prev.value.as_slice(),
            prev.mod_revision,
            prev.create_revision
        ),
        (b"1".as_slice(), 1, 1)
    );
    let e = next_event(&mut all).await.unwrap();
    assert_eq!(e.kind, EventKind::Deleted);
    assert_eq!(
        e.kv,
        KeyValue {
            key: "/w/a".to_string(),
            value: bytes("2"),
            create_revision: 1,
            mod_revision: 4
        },
        "a delete carries the last value at the delete revision"
    );
    assert_eq!(e.prev.unwrap().mod_revision, 2);

    let mut mid = s.watch("/", 2).await.unwrap();
    assert_eq!(next_event(&mut mid).await.unwrap().kv.key, "/other/x");
    assert_eq!(next_event(&mut mid).await.unwrap().kv.mod_revision, 4);

    let mut live = s
        .watch("/w/", s.current_revision().await.unwrap())
        .await
        .unwrap();
    s.create("/other/y", bytes("y")).await.unwrap();
    s.create("/w/b", bytes("b")).await.unwrap();
    for w in [&mut all, &mut live] {
        let e = next_event(w).await.unwrap();
        assert_eq!(
            (e.kind, e.kv.key.as_str(), e.kv.mod_revision),
            (EventKind::Created, "/w/b", 6)
        );
    }
    assert_eq!(next_event(&mut mid).await.unwrap().kv.key, "/other/y");
    assert_eq!(next_event(&mut mid).await.unwrap().kv.key, "/w/b");

    // A watch from the future sees only what comes after its revision.
    let mut future = s.watch("/", 7).await.unwrap();
    s.create("/f/1", bytes("1")).await.unwrap();
    s.create("/f/2", bytes("2")).await.unwrap();
    assert_eq!(next_event(&mut future).await.unwrap().kv.mod_revision, 8);
}

async fn watch_no_gap_under_concurrent_writers(b: &Backend) {
    let s = b.open();
    let early = s.watch("/", 0).await.unwrap();
    let mut writers = Vec::new();
    for w in 0..8 {
        let s = Arc::clone(&s);
        writers.push(tokio::spawn(async move {
            for i in 0..40 {
                let key = format!("/g/{w}/{}", i % 5);
                match s.create(&key, bytes("v")).await {
                    Ok(_) => {}
                    Err(StoreError::AlreadyExists(_)) => {
                        s.update(&key, format!("{i}").into_bytes(), None)
                            .await
                            .unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    // Watches started while the writers run, from history and from now.
    let mut watches = vec![(early, 0)];
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(3)).await;
        let now = s.current_revision().await.unwrap();
        let from = now / 2;
        watches.push((s.watch("/", from).await.unwrap(), from));
        watches.push((s.watch("/", now).await.unwrap(), now));
    }
    let mut prefixed = s.watch("/g/3/", 0).await.unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let last = s.current_revision().await.unwrap();
    assert_eq!(last, 320);
    for (mut w, from) in watches {
        expect_consecutive(&mut w, from + 1, last).await;
    }
    for _ in 0..40 {
        let e = next_event(&mut prefixed).await.unwrap();
        assert!(e.kv.key.starts_with("/g/3/"));
    }
}

async fn watch_compacted(b: &Backend) {
    let s = b.open();
    for i in 0..10 {
        s.create(&format!("/c/{i}"), bytes("v")).await.unwrap();
    }
    s.compact(6).await.unwrap();
    assert!(matches!(
        s.watch("/c/", 5).await,
        Err(StoreError::Compacted {
            requested: 5,
            compacted: 6
        })
    ));
    assert!(matches!(
        s.watch("/c/", 0).await,
        Err(StoreError::Compacted { .. })
    ));
    let mut w = s.watch("/c/", 6).await.unwrap();
    expect_consecutive(&mut w, 7, 10).await;
    // Current values survive compaction; compacting again lower is a no-op.
    assert_eq!(s.list("/c/").await.unwrap().items.len(), 10);
    s.compact(3).await.unwrap();
    assert!(matches!(
        s.compact(11).await,
        Err(StoreError::FutureRevision {
            requested: 11,
            current: 10
        })
    ));
}

async fn group_commit_64_writers(b: &Backend) {
    let writes_per_writer = 10;
    {
        let (s, metrics) = b.open_with_metrics();
        let mut tasks = Vec::new();
        for w in 0..64 {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..writes_per_writer {
                    let key = format!("/gc/{w:02}/{i:02}");
                    let kv = s.create(&key, key.clone().into_bytes()).await.unwrap();
                    acked.push((key, kv.mod_revision));
                }
                acked
            }));
        }
        let mut revisions = Vec::new();
        for t in tasks {
            revisions.extend(t.await.unwrap().into_iter().map(|(_, rev)| rev));
        }
        revisions.sort_unstable();
        let expected: Vec<Revision> = (1..=64 * writes_per_writer).collect();
        assert_eq!(revisions, expected, "each write got its own revision");
        let batches = metrics.batch_sizes().count();
        assert!(
            batches < 640,
            "concurrent writes share commits: {batches} batches for 640 writes"
        );
    }
    let s = b.open();
    let list = s.list("/gc/").await.unwrap();
    assert_eq!(
        list.items.len(),
        640,
        "every acknowledged write is present after reopen"
    );
    assert!(list.items.iter().all(|kv| kv.value == kv.key.as_bytes()));
}

async fn lagging_watcher_gets_one_error(b: &Backend) {
    let b = Backend {
        options: SqliteOptions {
            watch_buffer_batches: 4,
            ..SqliteOptions::default()
        },
        ..clone_backend(b)
    };
    let s = b.open();
    let mut w = s.watch("/", 0).await.unwrap();
    for i in 0..20 {
        // Sequential: one batch each.
        s.create(&format!("/l/{i}"), bytes("v")).await.unwrap();
    }
    let mut oks = 0;
    let err = loop {
        match next_event(&mut w).await {
            Ok(_) => oks += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, StoreError::WatcherLagged { .. }), "{err:?}");
    assert!(oks < 20);
    assert!(
        tokio::time::timeout(WAIT, w.next())
            .await
            .unwrap()
            .is_none(),
        "the stream ends after the error"
    );
}

async fn watch_ends_when_store_dropped(b: &Backend) {
    let s = b.open();
    s.create("/d", bytes("v")).await.unwrap();
    let mut w = s.watch("/", 0).await.unwrap();
    assert_eq!(next_event(&mut w).await.unwrap().kv.key, "/d");
    drop(s);
    assert!(
        tokio::time::timeout(WAIT, w.next())
            .await
            .unwrap()
            .is_none()
    );
}

/// A fresh backend of the same kind (used to vary options).
fn clone_backend(b: &Backend) -> Backend {
    Backend {
        dir: tempfile::tempdir().unwrap(),
        key: b.key.clone(),
        options: b.options.clone(),
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Backend::sqlite()).await;
                }
            )*
        }
        mod encrypted {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Backend::encrypted()).await;
                }
            )*
        }
    };
}

conformance!(
    crud,
    value_size_limit,
    revision_survives_reopen,
    list_order_and_prefix_isolation,
    watch_from_zero_mid_and_live,
    watch_no_gap_under_concurrent_writers,
    watch_compacted,
    group_commit_64_writers,
    lagging_watcher_gets_one_error,
    watch_ends_when_store_dropped,
);
