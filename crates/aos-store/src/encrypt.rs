//! Encryption at rest for values under chosen key prefixes (Secrets), in the
//! spirit of Kubernetes' `EncryptionConfiguration`.
//!
//! [`EncryptingStore`] wraps any [`Store`]. A value written under one of its
//! prefixes is sealed with XChaCha20-Poly1305 and stored as
//!
//! ```text
//! k8s:enc:xchacha20:v1:<key name>:<24-byte random nonce><ciphertext and 16-byte tag>
//! ```
//!
//! The storage key is the associated data, so a sealed value moved to another
//! key does not open. Reads and watch events are opened transparently by the
//! key name in the header, so a new write key can be introduced later while
//! old keys stay readable ([`EncryptingStore::with_read_key`]). Values without
//! the header (written before encryption was enabled) read as they are. A
//! value that does not open (wrong key, tampering) is an error, never garbage.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use futures::StreamExt as _;
use tracing::{info, warn};

use crate::{Event, KeyValue, ListResult, Revision, Store, StoreError, WatchStream};

/// The header of every sealed value, before the key name.
pub const HEADER_PREFIX: &[u8] = b"k8s:enc:xchacha20:v1:";
/// Values starting with this were sealed by some provider.
const ANY_PROVIDER_PREFIX: &[u8] = b"k8s:enc:";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Key length in bytes.
pub const KEY_LEN: usize = 32;

/// Errors loading or creating a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file does not hold a valid key.
    #[error("key file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A key name that cannot appear in the header.
    #[error("invalid key name {0:?}: use 1 to 64 letters, digits, '-' or '_'")]
    InvalidName(String),
}

/// One named 32-byte encryption key. Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct KeyFile {
    name: String,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KeyFile {
    /// The name of a key loaded by [`KeyFile::load_or_create`].
    pub const DEFAULT_NAME: &'static str = "key1";

    /// A key from raw bytes, named `name` in the header of what it seals.
    pub fn from_bytes(name: &str, bytes: [u8; KEY_LEN]) -> Result<Self, KeyFileError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(KeyFileError::InvalidName(name.to_string()));
        }
        Ok(KeyFile {
            name: name.to_string(),
            cipher: XChaCha20Poly1305::new(&bytes.into()),
        })
    }

    /// A fresh random key.
    pub fn generate(name: &str) -> Result<Self, KeyFileError> {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        Self::from_bytes(name, key.into())
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Load the key at `path` (named [`KeyFile::DEFAULT_NAME`]), or create it
    /// with 32 random bytes and mode 0600 if the file does not exist. The file
    /// holds the key in base64 on one line. Creation is atomic: a concurrent
    /// creator's key wins and is loaded.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyFileError> {
        Self::load_or_create_named(path, Self::DEFAULT_NAME)
    }

    /// [`KeyFile::load_or_create`] with a chosen key name.
    pub fn load_or_create_named(path: &Path, name: &str) -> Result<Self, KeyFileError> {
        match fs::symlink_metadata(path) {
            Ok(_) => return Self::load(path, name),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyFileError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut text = BASE64.encode(key);
        text.push('\n');
        let io_err = |source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Write a private temporary file, then link it into place: the key file
        // never exists half-written, and an existing one is never replaced.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp.{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })();
        if let Err(source) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(source));
        }
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(io_err)?;
                }
                info!(path = %path.display(), "created a new encryption key");
                Self::from_bytes(name, key.into())
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Self::load(path, name),
            Err(source) => Err(io_err(source)),
        }
    }

    /// Load an existing key file (base64 of 32 bytes, or the 32 raw bytes).
    pub fn load(path: &Path, name: &str) -> Result<Self, KeyFileError> {
        let io_err = |source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = fs::metadata(path).map_err(io_err)?;
        if meta.permissions().mode() & 0o077 != 0 {
            warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "encryption key file is readable by others; use mode 0600");
        }
        let raw = fs::read(path).map_err(io_err)?;
        let text = String::from_utf8_lossy(&raw);
        let bytes = match BASE64.decode(text.trim()) {
            Ok(bytes) => bytes,
            Err(_) if raw.len() == KEY_LEN => raw,
            Err(err) => {
                return Err(KeyFileError::Invalid {
                    path: path.to_path_buf(),
                    reason: format!("not base64: {err}"),
                });
            }
        };
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| KeyFileError::Invalid {
                path: path.to_path_buf(),
                reason: format!("the key must be {KEY_LEN} bytes, found {}", b.len()),
            })?;
        Self::from_bytes(name, key)
    }

    fn seal(&self, key: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: key.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Backend(format!("cannot encrypt the value of key {key}")))?;
        let mut out = Vec::with_capacity(
            HEADER_PREFIX.len() + self.name.len() + 1 + NONCE_LEN + sealed.len(),
        );
        out.extend_from_slice(HEADER_PREFIX);
        out.extend_from_slice(self.name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

/// The keys of one store: one that seals, all that open.
struct Keyring {
    write: KeyFile,
    read: Vec<KeyFile>,
    prefixes: Vec<String>,
}

impl Keyring {
    fn covers(&self, key: &str) -> bool {
        self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    fn seal(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.write.seal(key, value)
    }

    /// Open a stored value. Values without a header are returned as they are.
    fn open(&self, key: &str, stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let fail = |reason: String| StoreError::Decrypt {
            key: key.to_string(),
            reason,
        };
        let Some(rest) = stored.strip_prefix(HEADER_PREFIX) else {
            if stored.starts_with(ANY_PROVIDER_PREFIX) {
                let end = stored
                    .iter()
                    .skip(ANY_PROVIDER_PREFIX.len())
                    .position(|b| *b == b':')
                    .unwrap_or(0);
                let provider = String::from_utf8_lossy(
                    &stored[ANY_PROVIDER_PREFIX.len()..ANY_PROVIDER_PREFIX.len() + end],
                );
                return Err(fail(format!(
                    "unsupported encryption provider {provider:?}"
                )));
            }
            return Ok(stored);
        };
        let colon = rest
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(|| fail("malformed header".to_string()))?;
        let (name, body) = (&rest[..colon], &rest[colon + 1..]);
        let name = String::from_utf8_lossy(name);
        let Some(keyfile) = self.read.iter().find(|k| k.name == name) else {
            return Err(fail(format!(
                "sealed with key {name:?}, which is not configured"
            )));
        };
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(fail("sealed value is truncated".to_string()));
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        keyfile
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: key.as_bytes(),
                },
            )
            .map_err(|_| {
                fail(format!(
                    "authentication failed with key {name:?} (wrong key or corrupted data)"
                ))
            })
    }

    fn open_kv(&self, mut kv: KeyValue) -> Result<KeyValue, StoreError> {
        kv.value = self.open(&kv.key, std::mem::take(&mut kv.value))?;
        Ok(kv)
    }

    fn open_event(&self, mut event: Event) -> Result<Event, StoreError> {
        event.kv = self.open_kv(event.kv)?;
        event.prev = event.prev.map(|p| self.open_kv(p)).transpose()?;
        Ok(event)
    }
}

/// A [`Store`] that encrypts the values of keys under its prefixes before they
/// reach the inner store, and decrypts them on the way out.
pub struct EncryptingStore<S> {
    inner: S,
    keys: Arc<Keyring>,
}

impl<S> fmt::Debug for EncryptingStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptingStore")
            .field("write_key", &self.keys.write.name)
            .field("prefixes", &self.keys.prefixes)
            .finish_non_exhaustive()
    }
}

impl<S: Store> EncryptingStore<S> {
    /// Seal values under `prefixes` (e.g. `/registry/core/secrets/`) with `key`.
    pub fn new(inner: S, key: KeyFile, prefixes: Vec<String>) -> Self {
        let keys = Keyring {
            read: vec![key.clone()],
            write: key,
            prefixes,
        };
        EncryptingStore {
            inner,
            keys: Arc::new(keys),
        }
    }

    /// Also accept `key` when reading: a key rotated out of writing. A key with
    /// the write key's name is ignored (the write key always opens its own values).
    pub fn with_read_key(mut self, key: KeyFile) -> Self {
        if key.name == self.keys.write.name {
            return self;
        }
        let mut read: Vec<KeyFile> = self
            .keys
            .read
            .iter()
            .filter(|k| k.name != key.name)
            .cloned()
            .collect();
        read.push(key);
        let keys = Keyring {
            write: self.keys.write.clone(),
            read,
            prefixes: self.keys.prefixes.clone(),
        };
        self.keys = Arc::new(keys);
        self
    }

    /// The wrapped store (for its metrics, compactor, ...).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn seal_if_covered(&self, key: &str, value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if self.keys.covers(key) {
            self.keys.seal(key, value).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Report a too-large sealed value in plaintext terms: its size and the
/// largest plaintext that fits once sealed.
fn plaintext_size(err: StoreError, size: usize, overhead: usize) -> StoreError {
    match err {
        StoreError::ValueTooLarge { key, limit, .. } => StoreError::ValueTooLarge {
            key,
            size,
            limit: limit.saturating_sub(overhead),
        },
        other => other,
    }
}

#[async_trait]
impl<S: Store> Store for EncryptingStore<S> {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner
            .get(key)
            .await?
            .map(|kv| self.keys.open_kv(kv))
            .transpose()
    }

    async fn list(&self, prefix: &str) -> Result<ListResult, StoreError> {
        let ListResult { items, revision } = self.inner.list(prefix).await?;
        let items = items
            .into_iter()
            .map(|kv| self.keys.open_kv(kv))
            .collect::<Result<_, _>>()?;
        Ok(ListResult { items, revision })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        match self.seal_if_covered(key, &value)? {
            Some(sealed) => {
                let overhead = sealed.len() - value.len();
                let mut kv = self
                    .inner
                    .create(key, sealed)
                    .await
                    .map_err(|e| plaintext_size(e, value.len(), overhead))?;
                kv.value = value;
                Ok(kv)
            }
            None => self.inner.create(key, value).await,
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        match self.seal_if_covered(key, &value)? {
            Some(sealed) => {
                let overhead = sealed.len() - value.len();
                let mut kv = self
                    .inner
                    .update(key, sealed, expected)
                    .await
                    .map_err(|e| plaintext_size(e, value.len(), overhead))?;
                kv.value = value;
                Ok(kv)
            }
            None => self.inner.update(key, value, expected).await,
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let kv = self.inner.delete(key, expected).await?;
        self.keys.open_kv(kv)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let keys = Arc::clone(&self.keys);
        let stream = self.inner.watch(prefix, after).await?;
        // Open each event; after an error the stream ends at once, as after a lag.
        let opened = futures::stream::unfold(
            (stream, keys, false),
            |(mut stream, keys, failed)| async move {
                if failed {
                    return None;
                }
                let item = stream
                    .next()
                    .await?
                    .and_then(|event| keys.open_event(event));
                let failed = item.is_err();
                Some((item, (stream, keys, failed)))
            },
        );
        Ok(opened.boxed())
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(prefix: &str) -> Keyring {
        let key = KeyFile::generate("key1").unwrap();
        Keyring {
            read: vec![key.clone()],
            write: key,
            prefixes: vec![prefix.to_string()],
        }
    }

    #[test]
    fn seal_and_open_round_trip() {
        let keys = ring("/s/");
        let sealed = keys.seal("/s/a", b"hunter2").unwrap();
        assert!(sealed.starts_with(b"k8s:enc:xchacha20:v1:key1:"));
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(keys.open("/s/a", sealed).unwrap(), b"hunter2");
    }

    #[test]
    fn nonces_differ() {
        let keys = ring("/s/");
        assert_ne!(
            keys.seal("/s/a", b"x").unwrap(),
            keys.seal("/s/a", b"x").unwrap()
        );
    }

    #[test]
    fn wrong_key_moved_value_and_tampering_fail() {
        let keys = ring("/s/");
        let sealed = keys.seal("/s/a", b"secret").unwrap();
        let other = ring("/s/");
        assert!(matches!(
            other.open("/s/a", sealed.clone()),
            Err(StoreError::Decrypt { .. })
        ));
        assert!(matches!(
            keys.open("/s/b", sealed.clone()),
            Err(StoreError::Decrypt { .. })
        ));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(
            keys.open("/s/a", tampered),
            Err(StoreError::Decrypt { .. })
        ));
        let truncated = sealed[..HEADER_PREFIX.len() + 10].to_vec();
        assert!(matches!(
            keys.open("/s/a", truncated),
            Err(StoreError::Decrypt { .. })
        ));
    }

    #[test]
    fn unknown_key_name_and_provider_are_named() {
        let keys = ring("/s/");
        let err = keys.open(
            "/s/a",
            b"k8s:enc:xchacha20:v1:key9:0123456789012345678901234567890123456789".to_vec(),
        );
        assert!(err.unwrap_err().to_string().contains("key9"));
        let err = keys.open("/s/a", b"k8s:enc:aescbc:v1:key1:zzz".to_vec());
        assert!(err.unwrap_err().to_string().contains("aescbc"));
    }

    #[test]
    fn plaintext_passes_through() {
        let keys = ring("/s/");
        assert_eq!(
            keys.open("/s/a", b"{\"a\":1}".to_vec()).unwrap(),
            b"{\"a\":1}"
        );
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let first = KeyFile::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = KeyFile::load_or_create(&path).unwrap();
        let keys = Keyring {
            read: vec![second],
            write: first,
            prefixes: vec![],
        };
        let sealed = keys.seal("/k", b"v").unwrap();
        assert_eq!(keys.open("/k", sealed).unwrap(), b"v");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn bad_key_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(&path, "c2hvcnQ=\n").unwrap();
        let err = KeyFile::load(&path, "key1").unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
        assert!(matches!(
            KeyFile::from_bytes("a:b", [0; 32]),
            Err(KeyFileError::InvalidName(_))
        ));
    }
}
