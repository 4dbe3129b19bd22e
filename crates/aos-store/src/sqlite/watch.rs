//! Watch streams: catch-up from the `log` table, then live events.
//!
//! A watch subscribes to the live broadcast *before* it reads the current
//! revision `R`. Every write commits, then publishes its revision, then
//! broadcasts its events; so every event with revision `> R` reaches the
//! subscription, and every event `<= R` is in the database. The stream reads
//! `(after, R]` from the database in pages, then forwards live events with
//! revision `> max(after, R)`, dropping the ones it already sent: no gap, no
//! duplicate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt as _;
use rusqlite::params;
use tokio::sync::broadcast;

use super::schema::{KIND_CREATE, KIND_DELETE, KIND_UPDATE, read_meta};
use super::{EventBatch, Shared, backend};
use crate::metrics::StoreMetrics;
use crate::{Event, EventKind, KeyValue, Revision, StoreError, WatchStream, prefix_end};

/// History rows read per catch-up query.
const PAGE_ROWS: i64 = 256;

/// Decrements the watcher gauge when the stream is dropped.
struct WatcherGuard(Arc<StoreMetrics>);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.watcher_ended();
    }
}

struct WatchState {
    shared: Arc<Shared>,
    prefix: String,
    end: Option<String>,
    live: broadcast::Receiver<EventBatch>,
    pending: VecDeque<Event>,
    /// The highest revision already read (from history) or seen (live).
    cursor: Revision,
    /// Catch-up from history runs until `cursor` reaches this revision.
    catch_up_to: Revision,
    done: bool,
    _guard: WatcherGuard,
}

/// Start a watch of `prefix` for changes after `after`.
pub(super) fn watch(
    shared: Arc<Shared>,
    live: broadcast::Receiver<EventBatch>,
    prefix: &str,
    after: Revision,
) -> Result<WatchStream, StoreError> {
    let compacted = shared.compacted.load(Ordering::Acquire);
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    // Read after subscribing (the caller subscribed): see the module comment.
    let current = shared.revision.load(Ordering::Acquire);
    shared.metrics.watcher_started();
    let state = WatchState {
        _guard: WatcherGuard(shared.metrics.clone()),
        shared,
        prefix: prefix.to_string(),
        end: prefix_end(prefix),
        live,
        pending: VecDeque::new(),
        cursor: after,
        catch_up_to: current,
        done: false,
    };
    Ok(futures::stream::unfold(state, next).boxed())
}

async fn next(mut st: WatchState) -> Option<(Result<Event, StoreError>, WatchState)> {
    loop {
        if st.done {
            return None;
        }
        if let Some(event) = st.pending.pop_front() {
            return Some((Ok(event), st));
        }
        if st.cursor < st.catch_up_to {
            match read_page(&st).await {
                Ok((events, cursor)) => {
                    st.pending.extend(events);
                    st.cursor = cursor;
                }
                Err(err) => {
                    st.done = true;
                    return Some((Err(err), st));
                }
            }
            continue;
        }
        match st.live.recv().await {
            Ok(batch) => {
                for event in batch.iter() {
                    let rev = event.kv.mod_revision;
                    if rev > st.cursor && event.kv.key.starts_with(&st.prefix) {
                        st.pending.push_back(event.clone());
                    }
                }
                if let Some(last) = batch.last() {
                    st.cursor = st.cursor.max(last.kv.mod_revision);
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(prefix = %st.prefix, last = st.cursor, missed_batches = missed, "watcher lagged; ending its stream");
                st.done = true;
                return Some((Err(StoreError::WatcherLagged { last: st.cursor }), st));
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// Read the next page of history after `st.cursor`, up to `st.catch_up_to`.
/// Returns the events and the new cursor.
async fn read_page(st: &WatchState) -> Result<(Vec<Event>, Revision), StoreError> {
    let (from, to) = (st.cursor, st.catch_up_to);
    let (prefix, end) = (st.prefix.clone(), st.end.clone());
    st.shared
        .read(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            // Checked in the same snapshot as the rows: if compaction removed
            // any row after the cursor, say so rather than skip it.
            let compacted = read_meta(&tx, "compacted")?;
            if compacted > from {
                return Err(StoreError::Compacted {
                    requested: from,
                    compacted,
                });
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT rev, key, kind, value, create_rev, prev_rev, prev_value FROM log
                     WHERE rev > ?1 AND rev <= ?2 AND key >= ?3 AND (?4 IS NULL OR key < ?4)
                     ORDER BY rev LIMIT ?5",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![from, to, prefix, end, PAGE_ROWS], |r| {
                    Ok(Row {
                        rev: r.get(0)?,
                        key: r.get(1)?,
                        kind: r.get(2)?,
                        value: r.get(3)?,
                        create_rev: r.get(4)?,
                        prev_rev: r.get(5)?,
                        prev_value: r.get(6)?,
                    })
                })
                .map_err(backend)?;
            let mut events = Vec::new();
            for row in rows {
                events.push(row.map_err(backend)?.into_event()?);
            }
            let cursor = if (events.len() as i64) < PAGE_ROWS {
                to
            } else {
                events.last().map_or(to, |e| e.kv.mod_revision)
            };
            Ok((events, cursor))
        })
        .await
}

/// One `log` row.
struct Row {
    rev: Revision,
    key: String,
    kind: i64,
    value: Vec<u8>,
    create_rev: Revision,
    prev_rev: Option<Revision>,
    prev_value: Option<Vec<u8>>,
}

impl Row {
    fn into_event(self) -> Result<Event, StoreError> {
        let Row {
            rev,
            key,
            kind,
            value,
            create_rev,
            prev_rev,
            prev_value,
        } = self;
        let kv = |value| KeyValue {
            key: key.clone(),
            value,
            create_revision: create_rev,
            mod_revision: rev,
        };
        match (kind, prev_rev) {
            (KIND_CREATE, _) => Ok(Event {
                kind: EventKind::Created,
                kv: kv(value),
                prev: None,
            }),
            (KIND_UPDATE, Some(prev_rev)) => {
                let prev = KeyValue {
                    key: key.clone(),
                    value: prev_value.unwrap_or_default(),
                    create_revision: create_rev,
                    mod_revision: prev_rev,
                };
                Ok(Event {
                    kind: EventKind::Updated,
                    kv: kv(value),
                    prev: Some(prev),
                })
            }
            (KIND_DELETE, Some(prev_rev)) => {
                let prev = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: create_rev,
                    mod_revision: prev_rev,
                };
                Ok(Event {
                    kind: EventKind::Deleted,
                    kv: kv(value),
                    prev: Some(prev),
                })
            }
            _ => Err(StoreError::Backend(format!(
                "corrupt history row at revision {rev} (kind {kind})"
            ))),
        }
    }
}
