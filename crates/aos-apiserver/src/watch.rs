//! Watch streams: newline-delimited JSON events over a chunked response.
//!
//! - `resourceVersion` absent or `"0"`: the current objects as synthetic
//!   `ADDED` events, then live changes after the list's revision.
//!   `resourceVersion=N`: every change after N (a compacted N gives one
//!   `ERROR` event with a 410 Expired `Status`, then the stream ends).
//! - Label and field selectors are applied to each change with the object's
//!   previous value: an object that stops matching is sent as `DELETED`, one
//!   that starts matching as `ADDED`.
//! - `allowWatchBookmarks=true`: a `BOOKMARK` (only `metadata.resourceVersion`)
//!   every bookmark interval and just before the watch times out;
//!   `sendInitialEvents=true` ends the initial events with a bookmark annotated
//!   `k8s.io/initial-events-end: "true"`.
//! - `timeoutSeconds` ends the stream (default 30 minutes); so does the
//!   server's shutdown and the client going away.
//! - With `Accept: ...as=Table...`, each event's object is a one-row `Table`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aos_store::{EventKind, KeyValue, Revision, StoreError};
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult, store_error};
use crate::objects::{self, decode};
use crate::query::Query;
use crate::rest::{Selectors, Target, Wants, table_content_type};
use crate::router::AppState;
use crate::table;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Initial events are batched into chunks of about this size.
const CHUNK_BYTES: usize = 64 * 1024;

/// Keeps the watcher gauge up while the stream task runs.
struct Open(Arc<AppState>);

impl Open {
    fn new(state: Arc<AppState>) -> Self {
        state.metrics.watcher_started();
        Open(state)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.metrics.watcher_ended();
    }
}

struct Encoder {
    t: Target,
    wants: Wants,
}

impl Encoder {
    fn event(&self, kind: &str, mut obj: Value, out: &mut Vec<u8>) {
        let object = match self.wants.table {
            Some(mv) => {
                let rv = objects::meta_str(&obj, "resourceVersion")
                    .unwrap_or("")
                    .to_string();
                self.present(&mut obj);
                table::table(
                    self.t.rt,
                    std::slice::from_ref(&obj),
                    self.wants.include,
                    mv,
                    &rv,
                    None,
                    objects::now_unix(),
                )
            }
            None => {
                self.present(&mut obj);
                obj
            }
        };
        let ev = json!({"type": kind, "object": object});
        let _ = serde_json::to_writer(&mut *out, &ev);
        out.push(b'\n');
    }

    fn present(&self, obj: &mut Value) {
        if self.t.version != self.t.rt.version {
            obj["apiVersion"] = json!(objects::api_version(self.t.rt, &self.t.version));
        }
    }

    /// An event from stored bytes, splicing the version in when nothing else changes.
    fn stored(
        &self,
        kind: &str,
        kv: &KeyValue,
        rev: Revision,
        parsed: Option<Value>,
        out: &mut Vec<u8>,
    ) -> ApiResult<()> {
        if parsed.is_none() && self.wants.table.is_none() && self.t.version == self.t.rt.version {
            out.extend_from_slice(b"{\"type\":\"");
            out.extend_from_slice(kind.as_bytes());
            out.extend_from_slice(b"\",\"object\":");
            objects::write_with_rv(&kv.value, rev, out)?;
            out.extend_from_slice(b"}\n");
            return Ok(());
        }
        let mut obj = match parsed {
            Some(p) => p,
            None => decode(&kv.value, rev)?,
        };
        objects::set_rv(&mut obj, rev);
        self.event(kind, obj, out);
        Ok(())
    }

    fn bookmark(&self, rev: Revision, initial_end: bool, out: &mut Vec<u8>) {
        let mut metadata = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({
            "kind": self.t.rt.kind,
            "apiVersion": objects::api_version(self.t.rt, &self.t.version),
            "metadata": metadata,
        });
        let ev = json!({"type": "BOOKMARK", "object": obj});
        let _ = serde_json::to_writer(&mut *out, &ev);
        out.push(b'\n');
    }

    fn error(&self, e: &ApiError, out: &mut Vec<u8>) {
        let ev = json!({"type": "ERROR", "object": e.to_status()});
        let _ = serde_json::to_writer(&mut *out, &ev);
        out.push(b'\n');
    }
}

fn gone(requested: Revision, compacted: Revision) -> ApiError {
    ApiError::gone(format!(
        "too old resource version: {requested} ({compacted})"
    ))
}

/// Start a watch; the response streams until timeout, shutdown or disconnect.
pub(crate) async fn serve(
    state: Arc<AppState>,
    t: Target,
    q: Query,
    wants: Wants,
) -> ApiResult<Response> {
    let sel = Selectors::parse(t.rt, &q)?;
    let prefix = objects::prefix(t.rt, t.ns.as_deref());
    let from = match q.resource_version.as_deref() {
        None | Some("0") => None,
        Some(s) => Some(objects::parse_rv(s)?),
    };
    let send_initial = q.send_initial_events.unwrap_or(from.is_none());
    let (initial, after) = if send_initial {
        let res = state
            .store
            .list(&prefix)
            .await
            .map_err(|e| store_error(e, &t.resource(), "", t.rt.group))?;
        let rev = res.revision.max(from.unwrap_or(0));
        (res.items, rev)
    } else {
        (Vec::new(), from.unwrap_or(0))
    };
    let enc = Encoder {
        t: t.clone(),
        wants,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let stream = match state.store.watch(&prefix, after).await {
        Ok(s) => Some(s),
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let mut out = Vec::new();
            enc.error(&gone(requested, compacted), &mut out);
            let _ = tx.try_send(Bytes::from(out));
            None
        }
        Err(e) => return Err(store_error(e, &t.resource(), "", t.rt.group)),
    };
    if let Some(mut stream) = stream {
        let timeout = q
            .timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        let bookmarks = q.allow_bookmarks;
        let initial_end_bookmark = bookmarks && q.send_initial_events == Some(true);
        let state2 = state.clone();
        tokio::spawn(async move {
            let _open = Open::new(state2.clone());
            let deadline = tokio::time::Instant::now() + timeout;
            let mut out = Vec::with_capacity(CHUNK_BYTES);
            for kv in &initial {
                let parsed = if sel.is_empty() {
                    None
                } else {
                    decode(&kv.value, kv.mod_revision).ok()
                };
                if parsed.as_ref().is_some_and(|p| !sel.matches(p)) {
                    continue;
                }
                if enc
                    .stored("ADDED", kv, kv.mod_revision, parsed, &mut out)
                    .is_err()
                {
                    continue;
                }
                if out.len() >= CHUNK_BYTES
                    && tx
                        .send(Bytes::from(std::mem::take(&mut out)))
                        .await
                        .is_err()
                {
                    return;
                }
            }
            if initial_end_bookmark {
                enc.bookmark(after, true, &mut out);
            }
            if !out.is_empty()
                && tx
                    .send(Bytes::from(std::mem::take(&mut out)))
                    .await
                    .is_err()
            {
                return;
            }
            let mut last = after;
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + state2.bookmark_interval,
                state2.bookmark_interval,
            );
            loop {
                let mut out = Vec::new();
                tokio::select! {
                    () = state2.shutdown.cancelled() => break,
                    () = tx.closed() => break,
                    () = tokio::time::sleep_until(deadline) => {
                        if bookmarks {
                            enc.bookmark(last, false, &mut out);
                            let _ = tx.send(Bytes::from(out)).await;
                        }
                        break;
                    }
                    _ = tick.tick() => {
                        if !bookmarks {
                            continue;
                        }
                        enc.bookmark(last, false, &mut out);
                    }
                    ev = stream.next() => match ev {
                        None => break,
                        Some(Err(e)) => {
                            let err = match e {
                                StoreError::Compacted { requested, compacted } => gone(requested, compacted),
                                StoreError::WatcherLagged { last } => gone(last, last),
                                other => {
                                    tracing::warn!(error = %other, "watch stream failed");
                                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "the watch fell behind or the store failed; list and watch again")
                                }
                            };
                            enc.error(&err, &mut out);
                            let _ = tx.send(Bytes::from(out)).await;
                            break;
                        }
                        Some(Ok(ev)) => {
                            last = ev.kv.mod_revision;
                            if let Err(e) = convert(&enc, &sel, ev, &mut out) {
                                tracing::warn!(error = %e.message, "cannot encode a watch event");
                                continue;
                            }
                        }
                    },
                }
                if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                    break;
                }
            }
        });
    }
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    }));
    let mut resp = Response::new(body);
    let ct = match wants.table {
        Some(mv) => table_content_type(mv),
        None => "application/json".to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

/// One store event to zero or one watch event, honouring selector transitions.
fn convert(
    enc: &Encoder,
    sel: &Selectors,
    ev: aos_store::Event,
    out: &mut Vec<u8>,
) -> ApiResult<()> {
    let rev = ev.kv.mod_revision;
    if sel.is_empty() {
        let kind = match ev.kind {
            EventKind::Created => "ADDED",
            EventKind::Updated => "MODIFIED",
            EventKind::Deleted => "DELETED",
        };
        return enc.stored(kind, &ev.kv, rev, None, out);
    }
    let cur = decode(&ev.kv.value, rev)?;
    let cur_matches = sel.matches(&cur);
    match ev.kind {
        EventKind::Created if cur_matches => enc.stored("ADDED", &ev.kv, rev, Some(cur), out),
        EventKind::Deleted if cur_matches => enc.stored("DELETED", &ev.kv, rev, Some(cur), out),
        EventKind::Created | EventKind::Deleted => Ok(()),
        EventKind::Updated => {
            let prev_matches = match &ev.prev {
                Some(p) => decode(&p.value, p.mod_revision)
                    .map(|v| sel.matches(&v))
                    .unwrap_or(false),
                None => cur_matches,
            };
            match (prev_matches, cur_matches) {
                (true, true) => enc.stored("MODIFIED", &ev.kv, rev, Some(cur), out),
                (false, true) => enc.stored("ADDED", &ev.kv, rev, Some(cur), out),
                (true, false) => enc.stored("DELETED", &ev.kv, rev, Some(cur), out),
                (false, false) => Ok(()),
            }
        }
    }
}
