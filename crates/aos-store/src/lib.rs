//! The durable object store: a trait, and its embedded SQLite backend.
//!
//! Keys are opaque UTF-8 strings chosen by the API server
//! (`/registry/{group}/{resource}/{namespace}/{name}`); values are opaque bytes
//! (JSON objects, encrypted for Secrets). Every successful write gets the next
//! value of one global, strictly increasing revision, which the API server
//! exposes as `metadata.resourceVersion`.
//!
//! **Architecture invariant:** nothing outside this crate knows that the
//! backend is SQLite. Callers hold a `Arc<dyn Store>`; an etcd backend can be
//! added later behind the same trait without changing any caller.
//!
//! **Architecture invariant:** a write future resolves `Ok` only after the
//! write is durable (committed with `synchronous=FULL` in WAL mode).
//!
//! Modules:
//! - [`sqlite`]: [`sqlite::SqliteStore`], the embedded backend (group commit on
//!   one writer thread, watch with history catch-up, compaction, metrics).
//! - [`encrypt`]: [`encrypt::EncryptingStore`], a wrapper that seals values
//!   under chosen prefixes (Secrets) with XChaCha20-Poly1305, and
//!   [`encrypt::KeyFile`].
//! - [`metrics`]: [`metrics::StoreMetrics`], Prometheus text for `/metrics`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use aos_store::Store;
//! use aos_store::encrypt::{EncryptingStore, KeyFile};
//! use aos_store::sqlite::{SqliteOptions, SqliteStore};
//!
//! let sqlite = SqliteStore::open("data/store.db".as_ref(), SqliteOptions::default())?;
//! let metrics = sqlite.metrics(); // metrics.render() for /metrics
//! let key = KeyFile::load_or_create("data/secrets.key".as_ref())?;
//! let prefixes = vec!["/registry/core/secrets/".to_string()];
//! let store: Arc<dyn Store> = Arc::new(EncryptingStore::new(sqlite, key, prefixes));
//! store.create("/registry/core/configmaps/default/a", b"{}".to_vec()).await?;
//! # let _ = metrics;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub mod encrypt;
mod keyrange;
pub mod metrics;
pub mod sqlite;

pub use keyrange::prefix_end;

/// The largest value the store accepts, in bytes (3 MiB).
///
/// etcd's default request limit is 1.5 MiB and Kubernetes caps a Secret or
/// ConfigMap at 1 MiB; 3 MiB leaves room for large objects (CRDs, big
/// ConfigMaps with managed fields) while keeping one write, its history row and
/// a watch event comfortably in memory. Larger values fail with
/// [`StoreError::ValueTooLarge`] (the API server answers 413).
pub const MAX_VALUE_BYTES: usize = 3 * 1024 * 1024;

/// A store revision. Starts at 1 for the first write; 0 means "no revision".
pub type Revision = i64;

/// One key with its current value and revisions.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value as last written.
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    // Values may hold secrets: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What happened to a key, as seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created.
    Created,
    /// The key was updated.
    Updated,
    /// The key was deleted; `kv.value` is the last value before deletion and
    /// `kv.mod_revision` is the revision of the deletion.
    Deleted,
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The key after the change (for `Deleted`: its last value, at the delete revision).
    pub kv: KeyValue,
    /// The value before the change, if any.
    pub prev: Option<KeyValue>,
}

/// A list answer: the items under a prefix, sorted by key, and the store
/// revision at which the list was taken (a watch from `revision + 1` sees
/// every later change exactly once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    /// Items, sorted by key.
    pub items: Vec<KeyValue>,
    /// The store's revision when the list was read.
    pub revision: Revision,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` of a key that exists.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// `update`/`delete` of a key that does not exist.
    #[error("key {0} not found")]
    NotFound(String),
    /// The key's `mod_revision` did not match the expected one.
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's actual revision.
        actual: Revision,
    },
    /// A watch asked for history older than the last compaction
    /// (the API server answers 410 Gone, as Kubernetes does).
    #[error("revision {requested} has been compacted; oldest available is {compacted}")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compaction point.
        compacted: Revision,
    },
    /// The backend failed (I/O, corruption, ...).
    #[error("store backend: {0}")]
    Backend(String),
    /// The value is larger than the store accepts (see [`MAX_VALUE_BYTES`]);
    /// the API server answers 413.
    #[error("value of key {key} is {size} bytes, over the limit of {limit} bytes")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// The value's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// `compact` was asked for a revision the store has not reached yet.
    #[error("cannot compact at revision {requested}: the current revision is {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// A watcher fell behind the store's event buffer and missed events; the
    /// watch ends and the caller must re-list (the API server treats it like
    /// `Compacted`: the client gets 410 Gone or a closed watch).
    #[error("watcher fell behind after revision {last}; re-list and watch again")]
    WatcherLagged {
        /// The last revision the watcher saw.
        last: Revision,
    },
    /// A stored value could not be decrypted (wrong or missing key, or
    /// corrupted data). Never returned as garbage plaintext.
    #[error("cannot decrypt the value of key {key}: {reason}")]
    Decrypt {
        /// The key.
        key: String,
        /// Why decryption failed.
        reason: String,
    },
}

/// A stream of watch events. The stream ends only when the store shuts down
/// or the watcher falls too far behind (then it yields one `Err` and ends; the
/// caller re-lists).
pub type WatchStream = BoxStream<'static, Result<Event, StoreError>>;

/// A durable, revisioned key-value store with watch.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// All keys starting with `prefix`, sorted, and the revision they were read at.
    async fn list(&self, prefix: &str) -> Result<ListResult, StoreError>;

    /// Create `key`; fails with `AlreadyExists` if present. Returns the new key-value.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError>;

    /// Replace the value of an existing `key`. With `expected = Some(rev)`, fails
    /// with `Conflict` unless the key's `mod_revision == rev`.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError>;

    /// Delete `key`, with the same precondition as `update`. Returns the deleted
    /// key-value with `mod_revision` set to the revision of the deletion.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// Every change under `prefix` with revision `> after`, in revision order,
    /// then live changes. `after` older than the compaction point gives
    /// `Compacted`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// The latest revision.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// Drop history at and below `revision` (current values are kept).
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
}
