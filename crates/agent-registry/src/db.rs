//! The agent table in SQLite.
//!
//! One connection, opened lazily and reopened after I/O-level failures, used from tokio's
//! blocking pool behind a mutex: SQLite serialises writers anyway, and one connection keeps
//! `sqlite::memory:` databases coherent. The database is opened in WAL mode with temporary
//! tables in memory, so the only files written are the database and its `-wal` and `-shm`
//! companions, next to each other.
//!
//! The database may be missing when the process starts (its directory not mounted yet, or not
//! writable): the service still serves `/health`, reports the reason on `/ready`, and opens the
//! database as soon as a request finds it there.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, named_params};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::clock::{from_millis, to_millis};
use crate::config::DatabaseLocation;
use crate::model::{Agent, AgentSpec, AgentStatus};

/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agents (
    id                TEXT    NOT NULL PRIMARY KEY,
    name              TEXT    NOT NULL,
    kind              TEXT,
    endpoint          TEXT,
    capabilities      TEXT    NOT NULL,  -- JSON array of strings
    metadata          TEXT    NOT NULL,  -- JSON object
    ttl_seconds       INTEGER NOT NULL,
    registered_at_ms  INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL,
    last_heartbeat_ms INTEGER NOT NULL,
    expired_at_ms     INTEGER             -- set by the reaper when it first sees the agent expired
) STRICT;
CREATE INDEX IF NOT EXISTS agents_by_registration ON agents (registered_at_ms, id);
";

const COLUMNS: &str = "id, name, kind, endpoint, capabilities, metadata, ttl_seconds, \
                       registered_at_ms, updated_at_ms, last_heartbeat_ms";

/// SQL for "this row's agent is expired at `:now`": its last heartbeat is older than its TTL.
/// Must agree with [`status_at`].
const EXPIRED_SQL: &str = "(last_heartbeat_ms + ttl_seconds * 1000 < :now)";

/// What went wrong with the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be opened or used right now (missing directory, read-only file
    /// system, I/O error); the service is not ready.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A query failed for another reason.
    #[error("database query failed: {0}")]
    Query(#[source] rusqlite::Error),
    /// A stored row does not decode.
    #[error("database row for agent {id} is corrupt: {reason}")]
    CorruptRow {
        /// The agent's id.
        id: String,
        /// What does not decode.
        reason: String,
    },
    /// The blocking task running the query panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        if is_unavailable(&e) {
            Self::Unavailable(e.to_string())
        } else {
            Self::Query(e)
        }
    }
}

/// Whether `e` means the database file itself is unusable, so the connection is dropped and the
/// next request reopens it.
fn is_unavailable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        e.sqlite_error_code(),
        Some(
            C::CannotOpen
                | C::ReadOnly
                | C::SystemIoFailure
                | C::DatabaseCorrupt
                | C::NotADatabase
                | C::DiskFull
                | C::PermissionDenied
        )
    )
}

/// Filters and paging of a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only agents with this status.
    pub status: Option<AgentStatus>,
    /// Only agents with this capability.
    pub capability: Option<String>,
    /// Only agents with exactly this name.
    pub name: Option<String>,
    /// At most this many agents.
    pub limit: u32,
    /// Skip this many agents first.
    pub offset: u64,
}

/// A page of agents.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentPage {
    /// The agents on this page, oldest registration first.
    pub agents: Vec<Agent>,
    /// How many agents match the filters in all.
    pub total: u64,
}

/// What one reaper pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapOutcome {
    /// Agents seen expired for the first time: `(id, name)`.
    pub newly_expired: Vec<(String, String)>,
    /// Agents deleted because they stayed expired longer than the retention: `(id, name)`.
    pub deleted: Vec<(String, String)>,
}

/// How many agents have each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Agents whose heartbeats are current.
    pub active: u64,
    /// Agents past their TTL, not yet reaped.
    pub expired: u64,
}

/// The agent table: cheap to clone, shared by handlers and the reaper.
#[derive(Clone)]
pub struct AgentStore {
    inner: Arc<Inner>,
}

struct Inner {
    location: DatabaseLocation,
    conn: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for AgentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStore")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

impl AgentStore {
    /// A store for the database at `location`; nothing is opened until first use.
    pub fn new(location: DatabaseLocation) -> Self {
        Self {
            inner: Arc::new(Inner {
                location,
                conn: Mutex::new(None),
            }),
        }
    }

    /// Where the database lives.
    pub fn location(&self) -> &DatabaseLocation {
        &self.inner.location
    }

    /// Runs `f` on the connection (opening it first if needed) on tokio's blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.with_conn(f))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// Checks that the database answers a query: the readiness signal.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|conn| {
            conn.query_row("SELECT count(*) FROM agents", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// Registers a new agent with id `id` at `now`.
    pub async fn create(
        &self,
        id: Uuid,
        spec: AgentSpec,
        default_ttl: Duration,
        now: Timestamp,
    ) -> Result<Agent, DbError> {
        self.run(move |conn| {
            let now_ms = to_millis(now);
            let sql = format!(
                "INSERT INTO agents ({COLUMNS}) VALUES (:id, :name, :kind, :endpoint, \
                 :capabilities, :metadata, :ttl, :now, :now, :now) RETURNING {COLUMNS}"
            );
            let row = conn.query_row(
                &sql,
                named_params! {
                    ":id": id.to_string(),
                    ":name": spec.name,
                    ":kind": spec.kind,
                    ":endpoint": spec.endpoint,
                    ":capabilities": json_text(&spec.capabilities),
                    ":metadata": json_text(&spec.metadata),
                    ":ttl": ttl_of(&spec, default_ttl),
                    ":now": now_ms,
                },
                RawAgent::from_row,
            )?;
            row.into_agent(now)
        })
        .await
    }

    /// The agent with id `id`, if registered.
    pub async fn get(&self, id: Uuid, now: Timestamp) -> Result<Option<Agent>, DbError> {
        self.run(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM agents WHERE id = ?1");
            conn.query_row(&sql, [id.to_string()], RawAgent::from_row)
                .optional()?
                .map(|row| row.into_agent(now))
                .transpose()
        })
        .await
    }

    /// A page of the agents matching `query`, with their status as of `now`.
    pub async fn list(&self, query: ListQuery, now: Timestamp) -> Result<AgentPage, DbError> {
        self.run(move |conn| {
            let filter = format!(
                "WHERE (:status IS NULL OR (CASE WHEN {EXPIRED_SQL} THEN 'expired' ELSE 'active' END) = :status)
                   AND (:capability IS NULL OR EXISTS (
                        SELECT 1 FROM json_each(agents.capabilities) AS c WHERE c.value = :capability))
                   AND (:name IS NULL OR name = :name)"
            );
            let now_ms = to_millis(now);
            let status = query.status.map(AgentStatus::as_str);
            let tx = conn.transaction()?;
            let total: i64 = tx.query_row(
                &format!("SELECT count(*) FROM agents {filter}"),
                named_params! {
                    ":now": now_ms,
                    ":status": status,
                    ":capability": query.capability,
                    ":name": query.name,
                },
                |row| row.get(0),
            )?;
            let mut stmt = tx.prepare(&format!(
                "SELECT {COLUMNS} FROM agents {filter}
                 ORDER BY registered_at_ms, id LIMIT :limit OFFSET :offset"
            ))?;
            let rows = stmt.query_map(
                named_params! {
                    ":now": now_ms,
                    ":status": status,
                    ":capability": query.capability,
                    ":name": query.name,
                    ":limit": i64::from(query.limit),
                    ":offset": i64::try_from(query.offset).unwrap_or(i64::MAX),
                },
                RawAgent::from_row,
            )?;
            let mut agents = Vec::new();
            for row in rows {
                agents.push(row?.into_agent(now)?);
            }
            drop(stmt);
            tx.commit()?;
            Ok(AgentPage {
                agents,
                total: u64::try_from(total).unwrap_or(0),
            })
        })
        .await
    }

    /// Replaces what the client set on agent `id`; `None` if it is not registered.
    pub async fn update(
        &self,
        id: Uuid,
        spec: AgentSpec,
        default_ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Agent>, DbError> {
        self.run(move |conn| {
            let sql = format!(
                "UPDATE agents SET name = :name, kind = :kind, endpoint = :endpoint, \
                 capabilities = :capabilities, metadata = :metadata, ttl_seconds = :ttl, \
                 updated_at_ms = :now WHERE id = :id RETURNING {COLUMNS}"
            );
            conn.query_row(
                &sql,
                named_params! {
                    ":id": id.to_string(),
                    ":name": spec.name,
                    ":kind": spec.kind,
                    ":endpoint": spec.endpoint,
                    ":capabilities": json_text(&spec.capabilities),
                    ":metadata": json_text(&spec.metadata),
                    ":ttl": ttl_of(&spec, default_ttl),
                    ":now": to_millis(now),
                },
                RawAgent::from_row,
            )
            .optional()?
            .map(|row| row.into_agent(now))
            .transpose()
        })
        .await
    }

    /// Records a heartbeat of agent `id` at `now`; `None` if it is not registered.
    pub async fn heartbeat(&self, id: Uuid, now: Timestamp) -> Result<Option<Agent>, DbError> {
        self.run(move |conn| {
            let sql = format!(
                "UPDATE agents SET last_heartbeat_ms = :now, expired_at_ms = NULL \
                 WHERE id = :id RETURNING {COLUMNS}"
            );
            conn.query_row(
                &sql,
                named_params! { ":id": id.to_string(), ":now": to_millis(now) },
                RawAgent::from_row,
            )
            .optional()?
            .map(|row| row.into_agent(now))
            .transpose()
        })
        .await
    }

    /// Deregisters agent `id`; `false` if it was not registered.
    pub async fn delete(&self, id: Uuid) -> Result<bool, DbError> {
        self.run(move |conn| {
            Ok(conn.execute("DELETE FROM agents WHERE id = ?1", [id.to_string()])? > 0)
        })
        .await
    }

    /// How many agents are active and expired at `now`.
    pub async fn count_by_status(&self, now: Timestamp) -> Result<StatusCounts, DbError> {
        self.run(move |conn| {
            let sql = format!(
                "SELECT coalesce(sum(NOT {EXPIRED_SQL}), 0), coalesce(sum({EXPIRED_SQL}), 0) \
                 FROM agents"
            );
            let (active, expired): (i64, i64) =
                conn.query_row(&sql, named_params! { ":now": to_millis(now) }, |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            Ok(StatusCounts {
                active: u64::try_from(active).unwrap_or(0),
                expired: u64::try_from(expired).unwrap_or(0),
            })
        })
        .await
    }

    /// One reaper pass at `now`: marks agents that have newly expired and deletes those that
    /// have been expired for longer than `retention`.
    pub async fn reap(&self, now: Timestamp, retention: Duration) -> Result<ReapOutcome, DbError> {
        self.run(move |conn| {
            let now_ms = to_millis(now);
            let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            let tx = conn.transaction()?;
            let collect = |sql: &str, params: &[(&str, &dyn rusqlite::ToSql)]| {
                let mut stmt = tx.prepare(sql)?;
                let rows = stmt.query_map(params, |row| Ok((row.get(0)?, row.get(1)?)))?;
                rows.collect::<Result<Vec<(String, String)>, _>>()
            };
            let newly_expired = collect(
                &format!(
                    "UPDATE agents SET expired_at_ms = :now \
                     WHERE expired_at_ms IS NULL AND {EXPIRED_SQL} RETURNING id, name"
                ),
                named_params! { ":now": now_ms },
            )?;
            let deleted = collect(
                "DELETE FROM agents \
                 WHERE last_heartbeat_ms + ttl_seconds * 1000 + :retention < :now \
                 RETURNING id, name",
                named_params! { ":now": now_ms, ":retention": retention_ms },
            )?;
            tx.commit()?;
            Ok(ReapOutcome {
                newly_expired,
                deleted,
            })
        })
        .await
    }

    /// Closes the connection (checkpointing the WAL); a later call reopens it.
    pub async fn close(&self) -> Result<(), DbError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            if let Some(conn) = inner.lock().take() {
                conn.close().map_err(|(_, e)| DbError::from(e))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        // A panic while holding the lock leaves at worst a connection mid-statement, which
        // SQLite rolls back; the guard is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut guard = self.lock();
        if let DatabaseLocation::File(path) = &self.location
            && guard.is_some()
            && !path.exists()
        {
            // The file was removed under us: what the connection still sees is gone for good.
            tracing::warn!(path = %path.display(), "database file disappeared; reopening");
            *guard = None;
        }
        let conn = match &mut *guard {
            Some(conn) => conn,
            slot => slot.insert(open(&self.location)?),
        };
        let result = f(conn);
        if matches!(result, Err(DbError::Unavailable(_)))
            && matches!(self.location, DatabaseLocation::File(_))
        {
            *guard = None;
        }
        result
    }
}

/// Opens and prepares the database.
fn open(location: &DatabaseLocation) -> Result<Connection, DbError> {
    let conn = match location {
        DatabaseLocation::Memory => Connection::open_in_memory()?,
        DatabaseLocation::File(path) => open_file(path)?,
    };
    let unwritable = |e: rusqlite::Error| match location {
        DatabaseLocation::File(path) => {
            DbError::Unavailable(format!("cannot write database {}: {e}", path.display()))
        }
        DatabaseLocation::Memory => DbError::from(e),
    };
    conn.busy_timeout(Duration::from_secs(5))?;
    // Temporary tables and sort spills stay in memory: no temp files, wherever TMPDIR points.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if matches!(location, DatabaseLocation::File(_)) {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(unwritable)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "database did not switch to WAL mode");
        }
        // In WAL mode NORMAL is durable across process crashes; a power loss may lose the last
        // transactions, which heartbeats renew anyway.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    migrate(&conn).map_err(|e| match e {
        DbError::Query(e) => unwritable(e),
        other => other,
    })?;
    Ok(conn)
}

fn open_file(path: &Path) -> Result<Connection, DbError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(DbError::Unavailable(format!(
                "database directory {} is not a directory",
                dir.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DbError::Unavailable(format!(
                "database directory {} does not exist",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(DbError::Unavailable(format!(
                "database directory {}: {e}",
                dir.display()
            )));
        }
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags)
        .map_err(|e| DbError::Unavailable(format!("cannot open database {}: {e}", path.display())))
}

fn migrate(conn: &Connection) -> Result<(), DbError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(DbError::Unavailable(format!(
            "database schema version {version} is newer than this build supports \
             ({SCHEMA_VERSION})"
        )));
    }
    if version < SCHEMA_VERSION {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .inspect_err(|_| {
            // Leave no transaction open on the connection we are about to drop.
            let _ = conn.execute_batch("ROLLBACK");
        })?;
    }
    Ok(())
}

/// The status of an agent at `now`. Must agree with [`EXPIRED_SQL`].
fn status_at(last_heartbeat_ms: i64, ttl_seconds: i64, now_ms: i64) -> AgentStatus {
    if last_heartbeat_ms.saturating_add(ttl_seconds.saturating_mul(1000)) < now_ms {
        AgentStatus::Expired
    } else {
        AgentStatus::Active
    }
}

fn ttl_of(spec: &AgentSpec, default_ttl: Duration) -> i64 {
    let secs = spec.ttl_seconds.unwrap_or(default_ttl.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    // Serialising a Vec<String> or a JSON map cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// A row as stored, before decoding.
struct RawAgent {
    id: String,
    name: String,
    kind: Option<String>,
    endpoint: Option<String>,
    capabilities: String,
    metadata: String,
    ttl_seconds: i64,
    registered_at_ms: i64,
    updated_at_ms: i64,
    last_heartbeat_ms: i64,
}

impl RawAgent {
    /// Reads the columns in [`COLUMNS`] order.
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            name: row.get(1)?,
            kind: row.get(2)?,
            endpoint: row.get(3)?,
            capabilities: row.get(4)?,
            metadata: row.get(5)?,
            ttl_seconds: row.get(6)?,
            registered_at_ms: row.get(7)?,
            updated_at_ms: row.get(8)?,
            last_heartbeat_ms: row.get(9)?,
        })
    }

    fn into_agent(self, now: Timestamp) -> Result<Agent, DbError> {
        let corrupt = |reason: String| DbError::CorruptRow {
            id: self.id.clone(),
            reason,
        };
        let id = Uuid::parse_str(&self.id).map_err(|e| corrupt(format!("id: {e}")))?;
        let capabilities: Vec<String> = serde_json::from_str(&self.capabilities)
            .map_err(|e| corrupt(format!("capabilities: {e}")))?;
        let metadata: Map<String, Value> =
            serde_json::from_str(&self.metadata).map_err(|e| corrupt(format!("metadata: {e}")))?;
        let ttl_seconds =
            u64::try_from(self.ttl_seconds).map_err(|e| corrupt(format!("ttl_seconds: {e}")))?;
        Ok(Agent {
            id,
            status: status_at(self.last_heartbeat_ms, self.ttl_seconds, to_millis(now)),
            expires_at: from_millis(
                self.last_heartbeat_ms
                    .saturating_add(self.ttl_seconds.saturating_mul(1000)),
            ),
            name: self.name,
            kind: self.kind,
            endpoint: self.endpoint,
            capabilities,
            metadata,
            ttl_seconds,
            registered_at: from_millis(self.registered_at_ms),
            updated_at: from_millis(self.updated_at_ms),
            last_heartbeat: from_millis(self.last_heartbeat_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(name: &str, caps: &[&str], ttl: Option<u64>) -> AgentSpec {
        AgentSpec {
            name: name.into(),
            kind: None,
            endpoint: None,
            capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
            metadata: Map::new(),
            ttl_seconds: ttl,
        }
    }

    #[test]
    fn status_boundary() {
        // Expired only once the heartbeat is strictly older than the TTL.
        assert_eq!(status_at(0, 30, 30_000), AgentStatus::Active);
        assert_eq!(status_at(0, 30, 30_001), AgentStatus::Expired);
        assert_eq!(status_at(i64::MAX, i64::MAX, 0), AgentStatus::Active);
    }

    #[tokio::test]
    async fn file_database_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agents.db");
        let store = AgentStore::new(DatabaseLocation::File(path.clone()));
        let now = t("2025-01-01T00:00:00Z");
        let id = Uuid::new_v4();
        let created = store
            .create(id, spec("a", &["x"], None), Duration::from_secs(30), now)
            .await
            .unwrap();
        assert_eq!(created.ttl_seconds, 30);
        assert_eq!(created.expires_at, t("2025-01-01T00:00:30Z"));
        store.close().await.unwrap();
        // The WAL was checkpointed and removed on close: only the database file remains.
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["agents.db"]);

        let reopened = AgentStore::new(DatabaseLocation::File(path));
        assert_eq!(reopened.get(id, now).await.unwrap(), Some(created));
    }

    #[tokio::test]
    async fn missing_directory_is_unavailable_until_created() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("not-yet");
        let store = AgentStore::new(DatabaseLocation::File(sub.join("agents.db")));
        match store.ping().await {
            Err(DbError::Unavailable(reason)) => {
                assert!(reason.contains("does not exist"), "{reason}");
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
        std::fs::create_dir(&sub).unwrap();
        store.ping().await.unwrap();
        // The file disappearing (its volume unmounted, say) is noticed too.
        std::fs::remove_dir_all(&sub).unwrap();
        assert!(matches!(store.ping().await, Err(DbError::Unavailable(_))));
    }

    #[tokio::test]
    async fn directory_path_that_is_a_file_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let store = AgentStore::new(DatabaseLocation::File(file.join("agents.db")));
        match store.ping().await {
            Err(DbError::Unavailable(reason)) => {
                assert!(reason.contains("is not a directory"), "{reason}");
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn not_a_database_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agents.db");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let store = AgentStore::new(DatabaseLocation::File(path));
        assert!(matches!(store.ping().await, Err(DbError::Unavailable(_))));
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agents.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let store = AgentStore::new(DatabaseLocation::File(path));
        match store.ping().await {
            Err(DbError::Unavailable(reason)) => assert!(reason.contains("newer"), "{reason}"),
            other => panic!("expected unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn list_filters_and_pages() {
        let store = AgentStore::new(DatabaseLocation::Memory);
        let t0 = t("2025-01-01T00:00:00Z");
        let ttl = Duration::from_secs(30);
        let mut ids = Vec::new();
        for (i, (name, caps, ttl_s)) in [
            ("a", vec!["search", "plan"], Some(10)),
            ("b", vec!["search"], None),
            ("c", vec!["code"], Some(100)),
        ]
        .into_iter()
        .enumerate()
        {
            let now = t0 + jiff::SignedDuration::from_secs(i64::try_from(i).unwrap());
            let id = Uuid::new_v4();
            store
                .create(id, spec(name, &caps, ttl_s), ttl, now)
                .await
                .unwrap();
            ids.push(id);
        }
        let now = t("2025-01-01T00:00:20Z");
        let list = |q: ListQuery| {
            let store = store.clone();
            async move {
                let page = store.list(q, now).await.unwrap();
                let names: Vec<String> = page.agents.iter().map(|a| a.name.clone()).collect();
                (names, page.total)
            }
        };
        let all = ListQuery {
            limit: 100,
            ..ListQuery::default()
        };
        assert_eq!(
            list(all.clone()).await,
            (vec!["a".into(), "b".into(), "c".into()], 3)
        );
        assert_eq!(
            list(ListQuery {
                status: Some(AgentStatus::Expired),
                ..all.clone()
            })
            .await,
            (vec!["a".into()], 1)
        );
        assert_eq!(
            list(ListQuery {
                status: Some(AgentStatus::Active),
                capability: Some("search".into()),
                ..all.clone()
            })
            .await,
            (vec!["b".into()], 1)
        );
        assert_eq!(
            list(ListQuery {
                capability: Some("sea".into()),
                ..all.clone()
            })
            .await,
            (vec![], 0)
        );
        assert_eq!(
            list(ListQuery {
                name: Some("c".into()),
                ..all.clone()
            })
            .await,
            (vec!["c".into()], 1)
        );
        assert_eq!(
            list(ListQuery {
                limit: 1,
                offset: 1,
                ..all.clone()
            })
            .await,
            (vec!["b".into()], 3)
        );
        assert_eq!(
            store.count_by_status(now).await.unwrap(),
            StatusCounts {
                active: 2,
                expired: 1
            }
        );
    }

    #[tokio::test]
    async fn reap_marks_then_deletes() {
        let store = AgentStore::new(DatabaseLocation::Memory);
        let t0 = t("2025-01-01T00:00:00Z");
        let ttl = Duration::from_secs(30);
        let retention = Duration::from_secs(60);
        let id = Uuid::new_v4();
        store
            .create(id, spec("a", &[], None), ttl, t0)
            .await
            .unwrap();

        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        assert_eq!(
            store.reap(at(30), retention).await.unwrap(),
            ReapOutcome::default()
        );
        let out = store.reap(at(31), retention).await.unwrap();
        assert_eq!(out.newly_expired, vec![(id.to_string(), "a".to_owned())]);
        assert!(out.deleted.is_empty());
        // Marked once only.
        assert_eq!(
            store.reap(at(40), retention).await.unwrap(),
            ReapOutcome::default()
        );
        // A heartbeat revives it and clears the mark.
        let agent = store.heartbeat(id, at(45)).await.unwrap().unwrap();
        assert_eq!(agent.status, AgentStatus::Active);
        assert_eq!(agent.last_heartbeat, at(45));
        let out = store.reap(at(76), retention).await.unwrap();
        assert_eq!(out.newly_expired.len(), 1);
        assert_eq!(
            store.reap(at(135), retention).await.unwrap(),
            ReapOutcome::default()
        );
        let out = store.reap(at(136), retention).await.unwrap();
        assert_eq!(out.deleted, vec![(id.to_string(), "a".to_owned())]);
        assert_eq!(store.get(id, at(136)).await.unwrap(), None);
    }
}
