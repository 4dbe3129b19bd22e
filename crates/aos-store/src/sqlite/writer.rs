//! The single writer thread and its group commit.
//!
//! Every write goes through one thread that owns the only writing connection.
//! It takes the first waiting request, then every request already queued behind
//! it (up to `max_batch`), applies them in order inside one transaction and
//! commits once: one fsync for the whole batch. Each caller gets its own
//! result, sent only after the commit returned, so a write future resolves
//! `Ok` only once the write is durable. Then the batch's events are published
//! to watchers, in revision order.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, error, info};

use super::schema::{KIND_CREATE, KIND_DELETE, KIND_UPDATE};
use super::{EventBatch, Shared, backend};
use crate::metrics::WriteOp;
use crate::{Event, EventKind, KeyValue, Revision, StoreError};

/// History rows removed per compaction transaction, so a large compaction does
/// not hold the write lock for long in one piece.
const COMPACT_CHUNK_ROWS: i64 = 10_000;

/// One write.
#[derive(Debug)]
pub(super) enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl Op {
    fn kind(&self) -> WriteOp {
        match self {
            Op::Create { .. } => WriteOp::Create,
            Op::Update { .. } => WriteOp::Update,
            Op::Delete { .. } => WriteOp::Delete,
        }
    }
}

/// A request to the writer thread.
#[derive(Debug)]
pub(super) enum Request {
    Write {
        op: Op,
        reply: oneshot::Sender<Result<KeyValue, StoreError>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

type Reply = oneshot::Sender<Result<KeyValue, StoreError>>;

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) shared: Arc<Shared>,
    pub(super) events: broadcast::Sender<EventBatch>,
    pub(super) requests: mpsc::Receiver<Request>,
    /// The last committed revision.
    pub(super) revision: Revision,
    pub(super) max_batch: usize,
}

impl Writer {
    /// Serve requests until every sender is gone (the store was dropped).
    pub(super) fn run(mut self) {
        let mut batch: Vec<(Op, Reply)> = Vec::with_capacity(self.max_batch);
        while let Some(first) = self.requests.blocking_recv() {
            let mut deferred = None;
            match first {
                Request::Write { op, reply } => batch.push((op, reply)),
                Request::Compact { revision, reply } => deferred = Some((revision, reply)),
            }
            // Group commit: take whatever queued up while the last batch committed.
            while deferred.is_none() && batch.len() < self.max_batch {
                match self.requests.try_recv() {
                    Ok(Request::Write { op, reply }) => batch.push((op, reply)),
                    Ok(Request::Compact { revision, reply }) => deferred = Some((revision, reply)),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit_batch(&mut batch);
            }
            if let Some((revision, reply)) = deferred {
                let _ = reply.send(self.compact(revision));
            }
        }
        self.shared.close_readers();
        let Writer { conn, revision, .. } = self;
        if let Err((_, err)) = conn.close() {
            error!(error = %err, "closing the store database failed");
        }
        info!(revision, "store writer stopped");
    }

    fn commit_batch(&mut self, batch: &mut Vec<(Op, Reply)>) {
        let started = Instant::now();
        let size = batch.len();
        match apply_batch(&mut self.conn, self.revision, batch) {
            Ok((results, events, revision)) => {
                let elapsed = started.elapsed();
                let metrics = &self.shared.metrics;
                metrics.batch_committed(size, elapsed);
                if revision != self.revision {
                    self.revision = revision;
                    // Published before the events, so a watcher that reads the
                    // revision after subscribing never misses a later event.
                    self.shared.revision.store(revision, Ordering::Release);
                    metrics.set_revision(revision);
                }
                if !events.is_empty() {
                    // An error only means nobody is watching.
                    let _ = self.events.send(EventBatch::from(events));
                }
                for ((op, reply), result) in batch.drain(..).zip(results) {
                    match &result {
                        Ok(_) => metrics.write_committed(op.kind()),
                        Err(_) => metrics.write_rejected(),
                    }
                    let _ = reply.send(result);
                }
                debug!(
                    size,
                    revision,
                    elapsed_us = elapsed.as_micros() as u64,
                    "store batch committed"
                );
            }
            Err(err) => {
                error!(size, error = %err, "store batch failed; nothing committed");
                self.shared.metrics.writes_failed(size as u64);
                let message = err.to_string();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StoreError::Backend(message.clone())));
                }
            }
        }
    }

    /// Remove history at and below `revision`, then give freed pages back to the
    /// file system.
    fn compact(&mut self, revision: Revision) -> Result<(), StoreError> {
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        if revision <= self.shared.compacted.load(Ordering::Acquire) {
            return Ok(());
        }
        let started = Instant::now();
        let mut removed = 0u64;
        // The compaction point is recorded in the first transaction, before or
        // with the first deleted row, so a watcher reading history in between
        // sees either all of the rows it needs or the new point.
        {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
                [revision],
            )
            .map_err(backend)?;
            removed += delete_chunk(&tx, revision)?;
            tx.commit().map_err(backend)?;
        }
        self.shared.compacted.store(revision, Ordering::Release);
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let n = delete_chunk(&tx, revision)?;
            tx.commit().map_err(backend)?;
            removed += n;
            if n == 0 {
                break;
            }
        }
        // Return the pages the deleted rows used (auto_vacuum=INCREMENTAL).
        let freed: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .map_err(backend)?;
        if freed > 0 {
            // The pragma frees pages as it is stepped: run it to completion.
            let mut stmt = self
                .conn
                .prepare("PRAGMA incremental_vacuum")
                .map_err(backend)?;
            let mut rows = stmt.query([]).map_err(backend)?;
            while rows.next().map_err(backend)?.is_some() {}
        }
        self.shared.metrics.compacted(revision, removed);
        info!(
            revision,
            removed,
            freed_pages = freed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store compacted"
        );
        Ok(())
    }
}

fn delete_chunk(tx: &Transaction<'_>, revision: Revision) -> Result<u64, StoreError> {
    let n = tx
        .prepare_cached("DELETE FROM log WHERE rev IN (SELECT rev FROM log WHERE rev <= ?1 ORDER BY rev LIMIT ?2)")
        .and_then(|mut stmt| stmt.execute(params![revision, COMPACT_CHUNK_ROWS]))
        .map_err(backend)?;
    Ok(n as u64)
}

type BatchOutcome = (Vec<Result<KeyValue, StoreError>>, Vec<Event>, Revision);

/// Apply every write of `batch` in one transaction and commit it. A write
/// refused by its precondition changes nothing and does not take a revision;
/// a backend error rolls the whole batch back.
fn apply_batch(
    conn: &mut Connection,
    mut revision: Revision,
    batch: &mut [(Op, Reply)],
) -> rusqlite::Result<BatchOutcome> {
    let start = revision;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut events = Vec::with_capacity(batch.len());
    for (op, _) in batch.iter_mut() {
        match apply(&tx, revision + 1, op)? {
            Ok((kv, event)) => {
                revision += 1;
                results.push(Ok(kv));
                events.push(event);
            }
            Err(err) => results.push(Err(err)),
        }
    }
    if revision != start {
        tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")?
            .execute([revision])?;
    }
    tx.commit()?;
    Ok((results, events, revision))
}

/// The current row of a key: value, create revision, mod revision.
fn current(
    tx: &Transaction<'_>,
    key: &str,
) -> rusqlite::Result<Option<(Vec<u8>, Revision, Revision)>> {
    tx.prepare_cached("SELECT value, create_rev, mod_rev FROM kv WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
}

fn check_expected(
    key: &str,
    expected: Option<Revision>,
    actual: Revision,
) -> Result<(), StoreError> {
    match expected {
        Some(expected) if expected != actual => Err(StoreError::Conflict {
            key: key.to_string(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}

/// Apply one write at revision `rev`. The outer error is a backend failure;
/// the inner one a refused precondition.
fn apply(
    tx: &Transaction<'_>,
    rev: Revision,
    op: &mut Op,
) -> rusqlite::Result<Result<(KeyValue, Event), StoreError>> {
    match op {
        Op::Create { key, value } => {
            let exists = tx
                .prepare_cached("SELECT 1 FROM kv WHERE key = ?1")?
                .query_row([&*key], |_| Ok(()))
                .optional()?
                .is_some();
            if exists {
                return Ok(Err(StoreError::AlreadyExists(key.clone())));
            }
            tx.prepare_cached(
                "INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?1, ?2, ?3, ?3)",
            )?
            .execute(params![&*key, &*value, rev])?;
            tx.prepare_cached(
                "INSERT INTO log (rev, key, kind, value, create_rev) VALUES (?1, ?2, ?3, ?4, ?1)",
            )?
            .execute(params![rev, &*key, KIND_CREATE, &*value])?;
            let kv = KeyValue {
                key: std::mem::take(key),
                value: std::mem::take(value),
                create_revision: rev,
                mod_revision: rev,
            };
            let event = Event {
                kind: EventKind::Created,
                kv: kv.clone(),
                prev: None,
            };
            Ok(Ok((kv, event)))
        }
        Op::Update {
            key,
            value,
            expected,
        } => {
            let Some((old, create_rev, mod_rev)) = current(tx, key)? else {
                return Ok(Err(StoreError::NotFound(key.clone())));
            };
            if let Err(err) = check_expected(key, *expected, mod_rev) {
                return Ok(Err(err));
            }
            tx.prepare_cached("UPDATE kv SET value = ?2, mod_rev = ?3 WHERE key = ?1")?
                .execute(params![&*key, &*value, rev])?;
            tx.prepare_cached(
                "INSERT INTO log (rev, key, kind, value, create_rev, prev_rev, prev_value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![rev, &*key, KIND_UPDATE, &*value, create_rev, mod_rev, &old])?;
            let key = std::mem::take(key);
            let prev = KeyValue {
                key: key.clone(),
                value: old,
                create_revision: create_rev,
                mod_revision: mod_rev,
            };
            let kv = KeyValue {
                key,
                value: std::mem::take(value),
                create_revision: create_rev,
                mod_revision: rev,
            };
            let event = Event {
                kind: EventKind::Updated,
                kv: kv.clone(),
                prev: Some(prev),
            };
            Ok(Ok((kv, event)))
        }
        Op::Delete { key, expected } => {
            let Some((old, create_rev, mod_rev)) = current(tx, key)? else {
                return Ok(Err(StoreError::NotFound(key.clone())));
            };
            if let Err(err) = check_expected(key, *expected, mod_rev) {
                return Ok(Err(err));
            }
            tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                .execute([&*key])?;
            tx.prepare_cached("INSERT INTO log (rev, key, kind, value, create_rev, prev_rev) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
                .execute(params![rev, &*key, KIND_DELETE, &old, create_rev, mod_rev])?;
            let key = std::mem::take(key);
            let prev = KeyValue {
                key: key.clone(),
                value: old.clone(),
                create_revision: create_rev,
                mod_revision: mod_rev,
            };
            let kv = KeyValue {
                key,
                value: old,
                create_revision: create_rev,
                mod_revision: rev,
            };
            let event = Event {
                kind: EventKind::Deleted,
                kv: kv.clone(),
                prev: Some(prev),
            };
            Ok(Ok((kv, event)))
        }
    }
}
