//! The embedded SQLite backend.
//!
//! - One database file in WAL mode with `synchronous=FULL`: a write is
//!   acknowledged only after its commit reached the disk.
//! - One writer thread owns the only writing connection and batches
//!   concurrent writes into one transaction (group commit, see `writer`).
//! - Reads run on tokio's blocking pool over a small pool of read
//!   connections; WAL lets them proceed while the writer commits.
//! - Watches read history from the `log` table, then follow an in-memory
//!   broadcast of committed events (see `watch`).
//! - `compact` drops history; `spawn_compactor` does it periodically and
//!   returns the freed pages to the file system (`auto_vacuum=INCREMENTAL`).

mod schema;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::StoreMetrics;
use crate::{
    Event, KeyValue, ListResult, MAX_VALUE_BYTES, Revision, Store, StoreError, WatchStream,
    prefix_end,
};
use writer::{Op, Request, Writer};

/// The events of one committed batch, in revision order, shared by every watcher.
type EventBatch = Arc<[Event]>;

/// Tuning of a [`SqliteStore`]. The defaults suit one machine's control plane.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How long a connection waits for a lock held by another process before
    /// failing (only another process can hold one; this process has one writer).
    pub busy_timeout: Duration,
    /// The largest value accepted, in bytes (default [`MAX_VALUE_BYTES`]).
    pub max_value_bytes: usize,
    /// The most write requests committed in one transaction.
    pub max_batch: usize,
    /// Write requests that may wait for the writer before callers wait to enqueue.
    pub queue_capacity: usize,
    /// Committed batches buffered for watchers; a watcher further behind than
    /// this gets [`StoreError::WatcherLagged`] and must re-list.
    pub watch_buffer_batches: usize,
    /// Idle read connections kept open.
    pub read_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            max_value_bytes: MAX_VALUE_BYTES,
            max_batch: 512,
            queue_capacity: 4096,
            watch_buffer_batches: 4096,
            read_connections: 4,
        }
    }
}

/// State shared by the store handle, the writer thread, readers and watchers.
/// Holds no event sender, so watch streams end when the store is dropped.
struct Shared {
    path: PathBuf,
    options: SqliteOptions,
    readers: Mutex<Vec<Connection>>,
    /// The last committed revision (published after commit, before broadcast).
    revision: AtomicI64,
    /// The compaction point.
    compacted: AtomicI64,
    metrics: Arc<StoreMetrics>,
}

impl Shared {
    /// Run `f` with a read connection on the blocking pool.
    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let pooled = this.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => schema::open_reader(&this.path, this.options.busy_timeout)?,
            };
            let out = f(&mut conn);
            if conn.is_autocommit() {
                let mut readers = this.readers.lock().unwrap_or_else(|e| e.into_inner());
                if readers.len() < this.options.read_connections {
                    readers.push(conn);
                }
            }
            out
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }
}

impl Shared {
    /// Close the idle read connections (so the writer's connection, closed
    /// last, checkpoints the WAL into the database file).
    fn close_readers(&self) {
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

fn backend(err: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {err}"))
}

/// The SQLite-backed [`Store`]. Dropping it stops the writer thread (after
/// the writes already queued) and ends every watch stream.
///
/// A write whose future is dropped before it resolves may still commit (it
/// was already queued): as with any remote store, a cancelled write has an
/// unknown outcome, and the caller re-reads to learn it.
pub struct SqliteStore {
    shared: Arc<Shared>,
    writes: mpsc::Sender<Request>,
    events: broadcast::Sender<EventBatch>,
    writer: std::thread::JoinHandle<()>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.shared.path)
            .field("revision", &self.shared.revision.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (or create) the database at `path` and start its writer thread.
    /// Reads two rows of metadata: fast at any database size. Callable from
    /// inside or outside a tokio runtime.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        let started = std::time::Instant::now();
        let (conn, state) = schema::open_writer(path, options.busy_timeout)?;
        let reader = schema::open_reader(path, options.busy_timeout)?;
        let metrics = Arc::new(StoreMetrics::new(Some(path.to_path_buf())));
        metrics.set_revision(state.revision);
        metrics.compacted(state.compacted, 0);
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            readers: Mutex::new(vec![reader]),
            revision: AtomicI64::new(state.revision),
            compacted: AtomicI64::new(state.compacted),
            metrics,
            options: options.clone(),
        });
        let (writes, requests) = mpsc::channel(options.queue_capacity.max(1));
        let (events, _) = broadcast::channel(options.watch_buffer_batches.max(1));
        let writer = Writer {
            conn,
            shared: Arc::clone(&shared),
            events: events.clone(),
            requests,
            revision: state.revision,
            max_batch: options.max_batch.max(1),
        };
        let writer = std::thread::Builder::new()
            .name("aos-store-writer".to_string())
            .spawn(move || writer.run())
            .map_err(|e| {
                StoreError::Backend(format!("cannot start the store writer thread: {e}"))
            })?;
        info!(
            path = %path.display(),
            revision = state.revision,
            compacted = state.compacted,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store opened"
        );
        Ok(SqliteStore {
            shared,
            writes,
            events,
            writer,
        })
    }

    /// Finish the queued writes, close the database and wait until it is closed
    /// (its WAL checkpointed). Dropping the store does the same without waiting.
    pub async fn close(self) -> Result<(), StoreError> {
        let SqliteStore {
            shared,
            writes,
            events,
            writer,
        } = self;
        drop((writes, events));
        shared.close_readers();
        drop(shared);
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|e| StoreError::Backend(format!("close task failed: {e}")))?
            .map_err(|_| StoreError::Backend("the store writer thread panicked".to_string()))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The store's counters (shared; they keep counting).
    pub fn metrics(&self) -> Arc<StoreMetrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Prometheus text for `/metrics` (see [`StoreMetrics::render`]).
    pub fn render_metrics(&self) -> String {
        self.shared.metrics.render()
    }

    /// The last compaction point: watches from below it fail with `Compacted`.
    pub fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }

    /// Compact every `interval` until `cancel` fires or the store is dropped.
    /// Each run keeps at least the last `retain_revisions` revisions *and* every
    /// revision written since the previous run (like the Kubernetes API
    /// server, which compacts to the revision it saw one interval earlier), so
    /// a watcher that reconnects within one interval can always resume. The
    /// first run is one `interval` after the call. Must be called inside a
    /// tokio runtime.
    pub fn spawn_compactor(
        &self,
        interval: Duration,
        retain_revisions: i64,
        cancel: CancellationToken,
    ) -> JoinHandle<()> {
        let writes = self.writes.downgrade();
        let shared = Arc::clone(&self.shared);
        let retain = retain_revisions.max(0);
        let start = tokio::time::Instant::now() + interval;
        // The revision at the previous run (at the call, for the first run).
        let mut previous = shared.revision.load(Ordering::Acquire);
        tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval_at(start, interval.max(Duration::from_millis(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let current = shared.revision.load(Ordering::Acquire);
                let target = compaction_target(current, retain, previous);
                previous = current;
                if target <= shared.compacted.load(Ordering::Acquire) {
                    continue;
                }
                // A weak handle: the compactor does not keep a dropped store alive.
                let Some(writes) = writes.upgrade() else {
                    break;
                };
                let (reply, answer) = oneshot::channel();
                if writes
                    .send(Request::Compact {
                        revision: target,
                        reply,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
                drop(writes);
                match answer.await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        warn!(revision = target, error = %err, "store compaction failed")
                    }
                    Err(_) => break,
                }
            }
        })
    }

    async fn write(&self, op: Op) -> Result<KeyValue, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Request::Write { op, reply })
            .await
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    fn check_size(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let limit = self.shared.options.max_value_bytes;
        if value.len() > limit {
            self.shared.metrics.write_rejected();
            return Err(StoreError::ValueTooLarge {
                key: key.to_string(),
                size: value.len(),
                limit,
            });
        }
        Ok(())
    }
}

/// Where a periodic compaction cuts: keep the last `retain` revisions and
/// every revision after `previous` (the revision at the previous run).
fn compaction_target(current: Revision, retain: i64, previous: Revision) -> Revision {
    (current - retain).min(previous)
}

fn writer_gone() -> StoreError {
    StoreError::Backend("the store writer has stopped".to_string())
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_string();
        self.shared
            .read(move |conn| {
                conn.prepare_cached("SELECT value, create_rev, mod_rev FROM kv WHERE key = ?1")
                    .and_then(|mut stmt| {
                        stmt.query_row([&key], |r| {
                            Ok(KeyValue {
                                key: key.clone(),
                                value: r.get(0)?,
                                create_revision: r.get(1)?,
                                mod_revision: r.get(2)?,
                            })
                        })
                        .optional()
                    })
                    .map_err(backend)
            })
            .await
    }

    async fn list(&self, prefix: &str) -> Result<ListResult, StoreError> {
        let prefix = prefix.to_string();
        self.shared
            .read(move |conn| {
                // One read transaction: the items and the revision are one snapshot.
                let tx = conn.transaction().map_err(backend)?;
                let revision = schema::read_meta(&tx, "revision")?;
                let end = prefix_end(&prefix);
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT key, value, create_rev, mod_rev FROM kv
                         WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) ORDER BY key",
                    )
                    .map_err(backend)?;
                let items = stmt
                    .query_map(params![prefix, end], |r| {
                        Ok(KeyValue {
                            key: r.get(0)?,
                            value: r.get(1)?,
                            create_revision: r.get(2)?,
                            mod_revision: r.get(3)?,
                        })
                    })
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(backend)?;
                Ok(ListResult { items, revision })
            })
            .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        self.check_size(key, &value)?;
        self.write(Op::Create {
            key: key.to_string(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        self.check_size(key, &value)?;
        self.write(Op::Update {
            key: key.to_string(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.write(Op::Delete {
            key: key.to_string(),
            expected,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        // Subscribe first, then read the revision (inside `watch::watch`).
        let live = self.events.subscribe();
        watch::watch(Arc::clone(&self.shared), live, prefix, after)
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Request::Compact { revision, reply })
            .await
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

#[cfg(test)]
mod tests {
    use super::compaction_target;

    #[test]
    fn compaction_keeps_retained_revisions_and_the_last_interval() {
        // (current, retain, previous) -> target
        let cases = [
            ((641, 100, 641), 541), // quiet since the last run: retain decides
            ((961, 100, 641), 641), // busy: keep what was written since the last run
            ((50, 100, 10), -50),   // young store: nothing to compact (target <= 0)
            ((10_000, 0, 9_000), 9_000),
        ];
        for ((current, retain, previous), want) in cases {
            assert_eq!(
                compaction_target(current, retain, previous),
                want,
                "{current} {retain} {previous}"
            );
        }
    }
}
