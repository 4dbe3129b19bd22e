//! Connection setup and the on-disk schema.
//!
//! Tables:
//! - `kv`: current state, one row per live key.
//! - `log`: history, one row per committed write, keyed by its revision. A
//!   delete row holds the key's last value in `value`; an update row holds the
//!   value it replaced in `prev_value`. Rows at and below the compaction point
//!   are removed by `compact`.
//! - `meta`: the schema version, the current revision (so a revision is never
//!   reused, even after the newest history is compacted or its key deleted) and
//!   the compaction point.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::backend;
use crate::StoreError;

/// The schema this code reads and writes.
pub(super) const SCHEMA_VERSION: i64 = 1;

/// History rows of these kinds.
pub(super) const KIND_CREATE: i64 = 1;
pub(super) const KIND_UPDATE: i64 = 2;
pub(super) const KIND_DELETE: i64 = 3;

/// The write-ahead log is truncated to this size after a checkpoint.
const JOURNAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

const CREATE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    key        TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    rev        INTEGER PRIMARY KEY,
    key        TEXT NOT NULL,
    kind       INTEGER NOT NULL,
    value      BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev   INTEGER,
    prev_value BLOB
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
";

/// What the writer learns when it opens the database.
#[derive(Debug)]
pub(super) struct State {
    pub(super) revision: i64,
    pub(super) compacted: i64,
}

/// Pragmas every connection needs.
fn configure(conn: &Connection, busy_timeout: Duration) -> Result<(), StoreError> {
    conn.busy_timeout(busy_timeout).map_err(backend)?;
    // FULL: the WAL is fsynced on every commit, so an acknowledged write survives
    // power loss, not only a process crash.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

/// Open the writer connection, creating and migrating the database as needed.
/// Reads two `meta` rows; never scans a table, so opening is fast at any size.
pub(super) fn open_writer(
    path: &Path,
    busy_timeout: Duration,
) -> Result<(Connection, State), StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(backend)?;
    conn.busy_timeout(busy_timeout).map_err(backend)?;
    // auto_vacuum takes effect only before the first table exists: set it for new
    // databases so `incremental_vacuum` can return the pages compaction frees.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(backend)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "cannot switch {} to WAL mode (got {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES)
        .map_err(backend)?;
    configure(&conn, busy_timeout)?;

    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    tx.execute_batch(CREATE_TABLES).map_err(backend)?;
    let version: Option<i64> = tx
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    match version {
        None => {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('schema_version', ?1)",
                params![SCHEMA_VERSION],
            )
            .map_err(backend)?;
        }
        Some(v) if v == SCHEMA_VERSION => {}
        Some(v) => {
            return Err(StoreError::Backend(format!(
                "database {} has schema version {v}; this binary supports version {SCHEMA_VERSION}",
                path.display()
            )));
        }
    }
    let state = read_state(&tx)?;
    tx.commit().map_err(backend)?;
    Ok((conn, state))
}

/// Open a reader connection (the database must exist).
pub(super) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(backend)?;
    configure(&conn, busy_timeout)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(backend)?;
    Ok(conn)
}

/// The current revision and compaction point.
pub(super) fn read_state(conn: &Connection) -> Result<State, StoreError> {
    Ok(State {
        revision: read_meta(conn, "revision")?,
        compacted: read_meta(conn, "compacted")?,
    })
}

/// One `meta` value.
pub(super) fn read_meta(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |r| r.get(0)))
        .map_err(backend)
}
