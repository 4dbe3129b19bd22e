//! Tests of the SQLite backend and the encryption wrapper beyond the trait:
//! bounded size under compaction, fast open, encryption at rest on disk,
//! metrics, the background compactor.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_store::encrypt::{EncryptingStore, KeyFile};
use aos_store::sqlite::{SqliteOptions, SqliteStore};
use aos_store::{Store, StoreError};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

const SECRETS: &str = "/registry/core/secrets/";

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default()).unwrap()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

/// Update one key `n` times from 64 concurrent tasks (so the test is fast
/// thanks to group commit).
async fn update_many(store: &Arc<SqliteStore>, key: &str, n: usize, value: &[u8]) {
    let per = n / 64;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let store = Arc::clone(store);
        let (key, value) = (key.to_string(), value.to_vec());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                store.update(&key, value.clone(), None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_stays_bounded_when_one_key_is_updated_forever() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Arc::new(open(&path));
    let value = vec![b'v'; 1024];
    store.create("/hot", value.clone()).await.unwrap();
    let mut sizes = Vec::new();
    // 20 rounds of 1,024 updates (20,480 in all), compacting to the last 100
    // revisions after each round, as the background compactor would.
    for _ in 0..20 {
        update_many(&store, "/hot", 1024, &value).await;
        let current = store.current_revision().await.unwrap();
        store.compact(current - 100).await.unwrap();
        sizes.push(file_len(&path));
    }
    assert_eq!(store.current_revision().await.unwrap(), 1 + 20 * 1024);
    let wal = file_len(&wal_path(&path));
    eprintln!("db sizes after each round: {sizes:?}; wal {wal}");
    // Without compaction the history alone would be ~40 MiB (value + previous value per row).
    let max = *sizes.iter().max().unwrap();
    // The file holds about one round of history (1,024 rows of 2 KiB) at its peak.
    assert!(max < 8 * 1024 * 1024, "db file grew to {max} bytes");
    // The size swings with checkpoint timing but does not trend upward.
    let early = *sizes[..10].iter().max().unwrap();
    let late = *sizes[10..].iter().max().unwrap();
    assert!(late <= early + 512 * 1024, "db keeps growing: {sizes:?}");
    assert!(wal < 16 * 1024 * 1024, "wal grew to {wal} bytes");
    let metrics = store.render_metrics();
    assert!(
        metrics.contains("aos_store_compacted_revision 20381"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_returns_pages_to_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Arc::new(open(&path));
    store.create("/k", vec![0; 16]).await.unwrap();
    update_many(&store, "/k", 2048, &[7u8; 2048]).await;
    // Closing checkpoints the WAL into the main file.
    Arc::into_inner(store).unwrap().close().await.unwrap();
    let grown = file_len(&path);
    let store = open(&path);
    let rev = store.current_revision().await.unwrap();
    store.compact(rev).await.unwrap();
    store.close().await.unwrap();
    let shrunk = file_len(&path);
    eprintln!("db file: {grown} bytes with history, {shrunk} after compaction");
    assert!(
        grown > 4 * 1024 * 1024,
        "history should take space: {grown}"
    );
    assert!(
        shrunk < grown / 4,
        "incremental vacuum should shrink the file: {grown} -> {shrunk}"
    );
    assert_eq!(
        file_len(&wal_path(&path)),
        0,
        "a clean close removes the WAL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_large_database_is_fast() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let store = Arc::new(open(&path));
        let mut tasks = Vec::new();
        for w in 0..64 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for i in 0..157 {
                    store
                        .create(&format!("/registry/x/{w:02}-{i:03}"), vec![b'x'; 512])
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        Arc::into_inner(store).unwrap().close().await.unwrap();
    }
    let start = Instant::now();
    let store = open(&path);
    let elapsed = start.elapsed();
    assert_eq!(store.current_revision().await.unwrap(), 64 * 157);
    assert!(elapsed < Duration::from_millis(50), "open took {elapsed:?}");
    assert_eq!(
        store.list("/registry/x/").await.unwrap().items.len(),
        10_048
    );
}

/// Every file of the database (main file, WAL, shared memory).
fn raw_files(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("store.db")
        {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_not_plaintext_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let key = KeyFile::load_or_create(&dir.path().join("secrets.key")).unwrap();
    let store = EncryptingStore::new(open(&path), key, vec![SECRETS.to_string()]);
    let secret = br#"{"kind":"Secret","data":{"password":"c3VwZXItc2VjcmV0LXBhc3N3b3JkLTQyMQ=="}}"#;
    let visible = br#"{"kind":"ConfigMap","data":{"note":"plainly-visible-config-value"}}"#;
    store
        .create(&format!("{SECRETS}default/db"), secret.to_vec())
        .await
        .unwrap();
    store
        .update(&format!("{SECRETS}default/db"), secret.to_vec(), None)
        .await
        .unwrap();
    store
        .create("/registry/core/configmaps/default/c", visible.to_vec())
        .await
        .unwrap();

    let raw = raw_files(dir.path());
    assert!(
        contains(&raw, b"plainly-visible-config-value"),
        "the scan must see unencrypted values"
    );
    assert!(
        !contains(&raw, b"c3VwZXItc2VjcmV0LXBhc3N3b3JkLTQyMQ"),
        "secret plaintext found on disk"
    );
    assert!(contains(&raw, b"k8s:enc:xchacha20:v1:key1:"));

    // Reads, lists, watches and deletes see the plaintext.
    let got = store
        .get(&format!("{SECRETS}default/db"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.value, secret);
    assert_eq!(store.list(SECRETS).await.unwrap().items[0].value, secret);
    let mut w = store.watch(SECRETS, 0).await.unwrap();
    assert_eq!(w.next().await.unwrap().unwrap().kv.value, secret);
    let update = w.next().await.unwrap().unwrap();
    assert_eq!(
        (
            update.kv.value.as_slice(),
            update.prev.unwrap().value.as_slice()
        ),
        (&secret[..], &secret[..])
    );
    let deleted = store
        .delete(&format!("{SECRETS}default/db"), None)
        .await
        .unwrap();
    assert_eq!(deleted.value, secret);
    let event = w.next().await.unwrap().unwrap();
    assert_eq!(event.kv.value, secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_written_before_encryption_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let key_path = dir.path().join("secrets.key");
    let plain = open(&path);
    plain
        .create(&format!("{SECRETS}a"), b"old plaintext".to_vec())
        .await
        .unwrap();
    plain.close().await.unwrap();
    let store = EncryptingStore::new(
        open(&path),
        KeyFile::load_or_create(&key_path).unwrap(),
        vec![SECRETS.to_string()],
    );
    assert_eq!(
        store
            .get(&format!("{SECRETS}a"))
            .await
            .unwrap()
            .unwrap()
            .value,
        b"old plaintext"
    );
    // Rewriting it seals it.
    store
        .update(&format!("{SECRETS}a"), b"new".to_vec(), None)
        .await
        .unwrap();
    assert!(
        store
            .inner()
            .get(&format!("{SECRETS}a"))
            .await
            .unwrap()
            .unwrap()
            .value
            .starts_with(b"k8s:enc:")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_a_clear_error_and_rotation_keeps_old_values_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let key1 = KeyFile::generate("key1").unwrap();
    let store = EncryptingStore::new(open(&path), key1.clone(), vec![SECRETS.to_string()]);
    store
        .create(&format!("{SECRETS}a"), b"top".to_vec())
        .await
        .unwrap();
    drop(store);

    let wrong = EncryptingStore::new(
        open(&path),
        KeyFile::generate("key1").unwrap(),
        vec![SECRETS.to_string()],
    );
    let err = wrong.get(&format!("{SECRETS}a")).await.unwrap_err();
    assert!(matches!(&err, StoreError::Decrypt { .. }), "{err:?}");
    assert!(err.to_string().contains("wrong key"), "{err}");
    assert!(matches!(
        wrong.list(SECRETS).await,
        Err(StoreError::Decrypt { .. })
    ));
    let mut w = wrong.watch(SECRETS, 0).await.unwrap();
    assert!(matches!(
        w.next().await,
        Some(Err(StoreError::Decrypt { .. }))
    ));
    assert!(
        w.next().await.is_none(),
        "the watch ends after a decrypt error"
    );
    drop((w, wrong));

    // Rotate: key2 writes, key1 still reads.
    let rotated = EncryptingStore::new(
        open(&path),
        KeyFile::generate("key2").unwrap(),
        vec![SECRETS.to_string()],
    )
    .with_read_key(key1);
    rotated
        .create(&format!("{SECRETS}b"), b"new".to_vec())
        .await
        .unwrap();
    let items = rotated.list(SECRETS).await.unwrap().items;
    assert_eq!(
        items
            .iter()
            .map(|kv| kv.value.as_slice())
            .collect::<Vec<_>>(),
        [&b"top"[..], &b"new"[..]]
    );
    assert!(
        rotated
            .inner()
            .get(&format!("{SECRETS}b"))
            .await
            .unwrap()
            .unwrap()
            .value
            .starts_with(b"k8s:enc:xchacha20:v1:key2:")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_writes_and_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.db"));
    store.create("/m/a", b"1".to_vec()).await.unwrap();
    store.update("/m/a", b"2".to_vec(), None).await.unwrap();
    let _ = store.create("/m/a", b"3".to_vec()).await;
    let w = store.watch("/m/", 0).await.unwrap();
    let text = store.render_metrics();
    for needle in [
        "aos_store_writes_total{op=\"create\"} 1",
        "aos_store_writes_total{op=\"update\"} 1",
        "aos_store_writes_rejected_total 1",
        "aos_store_commit_duration_seconds_count 3",
        "aos_store_watchers 1",
        "aos_store_revision 2",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(
        !text.contains("aos_store_db_size_bytes 0\n"),
        "db size is measured"
    );
    drop(w);
    assert!(store.render_metrics().contains("aos_store_watchers 0"));
}

#[tokio::test]
async fn background_compactor_keeps_recent_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join("store.db")));
    store.create("/c", vec![0]).await.unwrap();
    update_many(&store, "/c", 640, &[1]).await;
    tokio::time::pause();
    let cancel = CancellationToken::new();
    let task = store.spawn_compactor(Duration::from_secs(60), 100, cancel.clone());
    assert_eq!(store.compacted_revision(), 0);
    tokio::time::advance(Duration::from_secs(61)).await;
    // The compaction itself runs on the writer thread: wait for it (real time).
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.compacted_revision() == 0 {
        assert!(Instant::now() < deadline, "compactor did not run");
        tokio::task::yield_now().await;
    }
    assert_eq!(store.compacted_revision(), 641 - 100);
    assert!(matches!(
        store.watch("/", 500).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(store.watch("/", 541).await.is_ok());
    cancel.cancel();
    task.await.unwrap();
}
