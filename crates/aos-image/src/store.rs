//! The content-addressed image store: an OCI image layout under `DATA_DIR/images/`, plus the
//! node's cache of unpacked layers under `DATA_DIR/layers/`.
//!
//! Several processes (the CLI and the node agent) share one store:
//! - a blob is written to a temporary file in `images/tmp/`, fsynced, its digest and size checked,
//!   and then renamed into `blobs/sha256/<hex>`: a blob path, once visible, is complete;
//! - `index.json` changes under an exclusive `flock` on `images/index.lock`, by writing a temporary
//!   file and renaming it over the old one;
//! - writers hold a shared `flock` on `images/gc.lock` from their first blob to their index
//!   update ([`WriteTxn`]); `prune` holds it exclusively, so it never deletes a blob that a writer
//!   is about to reference.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingReader, HashingWriter};
use crate::oci::{
    self, ANNOTATION_REF_NAME, Descriptor, ImageConfigFile, Index, LayerCompression, Manifest,
    Platform,
};
use crate::reference::{Reference, ReferenceError, same_name_tag};
use crate::unpack::{self, UnpackError, Whiteouts};

/// The most bytes a JSON blob (manifest, index, config) may have.
pub const MAX_JSON_BLOB: u64 = 16 << 20;

/// What went wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// No image matches a reference.
    #[error("image not found: {0}")]
    NotFound(String),
    /// A digest prefix matches more than one image.
    #[error("ambiguous image reference {reference}: it matches {candidates}")]
    Ambiguous {
        /// The reference.
        reference: String,
        /// The matching digests.
        candidates: String,
    },
    /// A reference does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Content does not hash to the digest it claims.
    #[error("{what} {expected} does not match its digest (the content hashes to {actual})")]
    DigestMismatch {
        /// What kind of blob (layer, config, manifest, blob).
        what: String,
        /// The digest claimed.
        expected: Digest,
        /// The digest of the bytes.
        actual: Digest,
    },
    /// Content does not have the size its descriptor claims.
    #[error("{what} {digest} has {actual} bytes, but its descriptor says {expected}")]
    SizeMismatch {
        /// What kind of blob.
        what: String,
        /// The digest.
        digest: Digest,
        /// The size claimed.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// A blob an image needs is not in the store.
    #[error("blob {0} is missing from the image store")]
    BlobMissing(Digest),
    /// A JSON blob does not parse.
    #[error("{what} {digest} is not valid JSON of its type: {source}")]
    Json {
        /// What kind of blob.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// The parse error.
        source: serde_json::Error,
    },
    /// An image has no manifest for the wanted platform.
    #[error("image {reference} has no manifest for platform {want} (it has {available})")]
    Platform {
        /// The reference.
        reference: String,
        /// The platform asked for.
        want: Box<Platform>,
        /// The platforms it has.
        available: String,
    },
    /// Content the store does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A layer could not be unpacked.
    #[error("cannot unpack layer {digest}: {source}")]
    Unpack {
        /// The layer's digest.
        digest: Digest,
        /// Why.
        source: UnpackError,
    },
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// One layer of a resolved image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerInfo {
    /// The digest of the blob as stored (compressed or not).
    pub digest: Digest,
    /// The digest of the uncompressed tar (from the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// The size of the blob in bytes.
    pub size: u64,
    /// The blob's media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

/// An image resolved to one platform.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The reference asked for.
    pub reference: String,
    /// The `name:tag` references that point at [`ImageInfo::top`].
    pub names: Vec<String>,
    /// What the reference points at: an index or a manifest.
    pub top: Descriptor,
    /// The digest of the platform's image manifest.
    pub manifest_digest: Digest,
    /// The image manifest.
    pub manifest: Manifest,
    /// The platform of the manifest.
    pub platform: Platform,
    /// The digest of the image configuration blob.
    pub config_digest: Digest,
    /// The parsed image configuration (`config.config` holds Entrypoint, Cmd, Env…).
    pub config: ImageConfigFile,
    /// The layers, base first.
    pub layers: Vec<LayerInfo>,
}

impl ImageInfo {
    /// Sum of the config and layer blob sizes.
    pub fn size(&self) -> u64 {
        self.manifest.config.size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// One entry of `aos image ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The name (`None` for an untagged image).
    pub name: Option<String>,
    /// The tag.
    pub tag: Option<String>,
    /// The index entry.
    pub descriptor: Descriptor,
    /// `created` of the host platform's (or the first) configuration.
    pub created: Option<String>,
    /// The bytes of every blob the image references, counted once.
    pub size: u64,
    /// The platforms it has.
    pub platforms: Vec<Platform>,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs deleted.
    pub blobs_removed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Stale temporary files deleted.
    pub temp_files_removed: u64,
}

/// The image store of one data directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    layers: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `data_dir/images` and `data_dir/layers`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join("images");
        let layers = data_dir.join("layers");
        for dir in [root.join("blobs/sha256"), root.join("tmp"), layers.clone()] {
            fs::create_dir_all(&dir).map_err(io_ctx(format!("cannot create {}", dir.display())))?;
        }
        let store = Self { root, layers };
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !store.root.join("index.json").exists() {
            let _lock = store.lock("index.lock", true)?;
            if !store.root.join("index.json").exists() {
                store.write_index(&Index::default())?;
            }
        }
        Ok(store)
    }

    /// The image layout directory (`DATA_DIR/images`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether a blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        File::open(self.blob_path(digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobMissing(digest.clone()),
            _ => StoreError::Io {
                context: format!("cannot open blob {digest}"),
                source: e,
            },
        })
    }

    /// Reads a small blob whole, verifying its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut buf = Vec::new();
        self.open_blob(digest)?
            .take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut buf)
            .map_err(io_ctx(format!("cannot read blob {digest}")))?;
        if buf.len() as u64 > MAX_JSON_BLOB {
            return Err(StoreError::Unsupported(format!(
                "blob {digest} is larger than {MAX_JSON_BLOB} bytes"
            )));
        }
        let actual = Digest::of(&buf);
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                what: "blob".into(),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(buf)
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        digest: &Digest,
    ) -> Result<T, StoreError> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what,
            digest: digest.clone(),
            source,
        })
    }

    /// Reads an image manifest blob.
    pub fn read_manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        self.read_json("manifest", digest)
    }

    /// Reads an index blob.
    pub fn read_index(&self, digest: &Digest) -> Result<Index, StoreError> {
        self.read_json("index", digest)
    }

    /// Reads an image configuration blob.
    pub fn read_config(&self, digest: &Digest) -> Result<ImageConfigFile, StoreError> {
        self.read_json("config", digest)
    }

    /// The store's `index.json`.
    pub fn index(&self) -> Result<Index, StoreError> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(io_ctx(format!("cannot read {}", path.display())))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Io {
            context: format!("{} is corrupt", path.display()),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }

    fn write_index(&self, index: &Index) -> Result<(), StoreError> {
        let mut bytes = serde_json::to_vec_pretty(index).expect("index serializes");
        bytes.push(b'\n');
        self.write_atomic(&self.root.join("index.json"), &bytes)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = path.parent().expect("store paths have a parent");
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(io_ctx(format!("cannot create a file in {}", dir.display())))?;
        tmp.write_all(bytes)
            .map_err(io_ctx(format!("cannot write {}", path.display())))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_ctx(format!("cannot sync {}", path.display())))?;
        tmp.persist(path).map_err(|e| StoreError::Io {
            context: format!("cannot replace {}", path.display()),
            source: e.error,
        })?;
        sync_dir(dir)
    }

    fn lock(&self, name: &str, exclusive: bool) -> Result<File, StoreError> {
        lock_file(&self.root.join(name), exclusive)
    }

    /// Applies `change` to `index.json` under the exclusive index lock.
    pub fn update_index<T>(
        &self,
        change: impl FnOnce(&mut Index) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = self.lock("index.lock", true)?;
        let mut index = self.index()?;
        let before = index.clone();
        let out = change(&mut index)?;
        if index != before {
            self.write_index(&index)?;
        }
        Ok(out)
    }

    /// Starts a write: holds off `prune` until it is dropped.
    pub fn begin_write(&self) -> Result<WriteTxn<'_>, StoreError> {
        let gc_lock = self.lock("gc.lock", false)?;
        Ok(WriteTxn {
            store: self,
            _gc_lock: gc_lock,
        })
    }

    /// Points `name:tag` at `desc` (replacing where it pointed before).
    pub fn set_ref(&self, name_tag: &str, desc: &Descriptor) -> Result<(), StoreError> {
        self.set_refs(&[(Some(name_tag.to_owned()), desc.clone())])
    }

    /// Records an image without a name (kept until removed by digest).
    pub fn add_untagged(&self, desc: &Descriptor) -> Result<(), StoreError> {
        self.set_refs(&[(None, desc.clone())])
    }

    /// Points several refs (or, for `None`, an untagged entry) at images in one index update.
    pub fn set_refs(&self, refs: &[(Option<String>, Descriptor)]) -> Result<(), StoreError> {
        let mut entries = Vec::new();
        for (name, desc) in refs {
            let name_tag =
                match name {
                    Some(n) => {
                        let reference = Reference::parse(n)?;
                        Some(reference.name_tag().ok_or_else(|| {
                            StoreError::Reference(ReferenceError::Invalid(n.clone()))
                        })?)
                    }
                    None => None,
                };
            let mut entry = desc.clone();
            entry.platform = None;
            entry.annotations = name_tag
                .as_ref()
                .map(|nt| BTreeMap::from([(ANNOTATION_REF_NAME.to_owned(), nt.clone())]));
            entries.push((name_tag, entry));
        }
        self.update_index(|index| {
            for (name_tag, entry) in entries {
                match name_tag {
                    Some(nt) => {
                        index
                            .manifests
                            .retain(|m| match m.annotation(ANNOTATION_REF_NAME) {
                                Some(r) => !same_name_tag(r, &nt),
                                None => m.digest != entry.digest,
                            });
                        index.manifests.push(entry);
                    }
                    None => {
                        if !index.manifests.iter().any(|m| m.digest == entry.digest) {
                            index.manifests.push(entry);
                        }
                    }
                }
            }
            Ok(())
        })
    }

    /// The index entry a reference names (not yet resolved to a platform).
    pub fn lookup(&self, reference: &str) -> Result<Descriptor, StoreError> {
        let index = self.index()?;
        self.lookup_in(&index, reference)
    }

    fn lookup_in(&self, index: &Index, reference: &str) -> Result<Descriptor, StoreError> {
        let parsed = Reference::parse(reference)?;
        match &parsed {
            Reference::Named {
                digest: Some(d), ..
            } => {
                if let Some(m) = index.manifests.iter().find(|m| &m.digest == d) {
                    return Ok(m.clone());
                }
                self.descriptor_of_blob(d)
                    .map_err(|_| StoreError::NotFound(reference.to_owned()))
            }
            Reference::Named {
                name,
                tag: Some(tag),
                digest: None,
            } => {
                let want = format!("{name}:{tag}");
                if let Some(m) = index.manifests.iter().find(|m| {
                    m.annotation(ANNOTATION_REF_NAME)
                        .is_some_and(|r| same_name_tag(r, &want))
                }) {
                    return Ok(m.clone());
                }
                // A bare hex string may be a digest prefix, as `docker rmi 3f2a` is.
                if tag == "latest"
                    && !reference.contains(':')
                    && name.len() >= 4
                    && name.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return self.lookup_prefix(index, name, reference);
                }
                Err(StoreError::NotFound(reference.to_owned()))
            }
            Reference::Named { .. } => Err(StoreError::NotFound(reference.to_owned())),
            Reference::DigestPrefix(prefix) => self.lookup_prefix(index, prefix, reference),
        }
    }

    fn lookup_prefix(
        &self,
        index: &Index,
        prefix: &str,
        reference: &str,
    ) -> Result<Descriptor, StoreError> {
        let mut found: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        for m in &index.manifests {
            if m.digest.hex().starts_with(prefix) {
                found.entry(m.digest.clone()).or_insert_with(|| m.clone());
            }
        }
        match found.len() {
            1 => Ok(found.into_values().next().expect("one entry")),
            0 if prefix.len() == 64 => {
                let d = Digest::from_hex(prefix)
                    .map_err(|_| StoreError::NotFound(reference.to_owned()))?;
                self.descriptor_of_blob(&d)
                    .map_err(|_| StoreError::NotFound(reference.to_owned()))
            }
            0 => Err(StoreError::NotFound(reference.to_owned())),
            _ => Err(StoreError::Ambiguous {
                reference: reference.to_owned(),
                candidates: found
                    .keys()
                    .map(|d| d.short().to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// A descriptor for a manifest or index blob in the store, from its content.
    fn descriptor_of_blob(&self, digest: &Digest) -> Result<Descriptor, StoreError> {
        let bytes = self.read_blob(digest)?;
        let media_type = sniff_media_type(&bytes).ok_or_else(|| {
            StoreError::Unsupported(format!("blob {digest} is neither a manifest nor an index"))
        })?;
        Ok(Descriptor::new(
            &media_type,
            digest.clone(),
            bytes.len() as u64,
        ))
    }

    /// Resolves a reference for the host platform.
    pub fn resolve(&self, reference: &str) -> Result<ImageInfo, StoreError> {
        self.resolve_for(reference, None)
    }

    /// Resolves a reference for `platform` (the host's when `None`). A single-platform image is
    /// returned whatever its platform when none is asked for explicitly.
    pub fn resolve_for(
        &self,
        reference: &str,
        platform: Option<&Platform>,
    ) -> Result<ImageInfo, StoreError> {
        let index = self.index()?;
        let top = self.lookup_in(&index, reference)?;
        let names = index
            .manifests
            .iter()
            .filter(|m| m.digest == top.digest)
            .filter_map(|m| m.annotation(ANNOTATION_REF_NAME).map(str::to_owned))
            .collect();
        let host = Platform::host();
        let want = platform.unwrap_or(&host);
        let (manifest_desc, platform_hint) = if oci::is_index(&top.media_type) {
            let idx = self.read_index(&top.digest)?;
            let chosen = pick_platform(&idx, want).ok_or_else(|| StoreError::Platform {
                reference: reference.to_owned(),
                want: Box::new(want.clone()),
                available: idx
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref().map(ToString::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            (chosen.clone(), chosen.platform.clone())
        } else if oci::is_manifest(&top.media_type) {
            (top.clone(), None)
        } else {
            return Err(StoreError::Unsupported(format!(
                "{reference} has media type {}",
                top.media_type
            )));
        };
        let manifest = self.read_manifest(&manifest_desc.digest)?;
        let config = self.read_config(&manifest.config.digest)?;
        let cfg_platform = config.platform();
        if platform.is_some() && platform_hint.is_none() && !cfg_platform.matches(want) {
            return Err(StoreError::Platform {
                reference: reference.to_owned(),
                want: Box::new(want.clone()),
                available: cfg_platform.to_string(),
            });
        }
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(StoreError::Unsupported(format!(
                "image {reference}: its config lists {} diff_ids for {} layers",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            )));
        }
        let layers = manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(l, diff_id)| LayerInfo {
                digest: l.digest.clone(),
                diff_id: diff_id.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
            })
            .collect();
        Ok(ImageInfo {
            reference: reference.to_owned(),
            names,
            top,
            manifest_digest: manifest_desc.digest.clone(),
            config_digest: manifest.config.digest.clone(),
            platform: platform_hint.unwrap_or(cfg_platform),
            manifest,
            config,
            layers,
        })
    }

    /// Every image in the store, sorted by name and tag (untagged last).
    pub fn list(&self) -> Result<Vec<ImageSummary>, StoreError> {
        let index = self.index()?;
        let host = Platform::host();
        let mut out = Vec::new();
        for entry in &index.manifests {
            let (name, tag) = match entry.annotation(ANNOTATION_REF_NAME).map(Reference::parse) {
                Some(Ok(Reference::Named { name, tag, .. })) => (Some(name), tag),
                _ => (None, None),
            };
            let mut blobs = BTreeMap::new();
            let mut platforms = Vec::new();
            let mut created = None;
            let mut walk =
                |desc: &Descriptor, platform: Option<&Platform>| -> Result<(), StoreError> {
                    blobs.insert(desc.digest.clone(), desc.size);
                    let m = self.read_manifest(&desc.digest)?;
                    blobs.insert(m.config.digest.clone(), m.config.size);
                    for l in &m.layers {
                        blobs.insert(l.digest.clone(), l.size);
                    }
                    let cfg = self.read_config(&m.config.digest)?;
                    let p = platform.cloned().unwrap_or_else(|| cfg.platform());
                    if created.is_none() || p.matches(&host) {
                        created = cfg.created.clone();
                    }
                    platforms.push(p);
                    Ok(())
                };
            let res = if oci::is_index(&entry.media_type) {
                self.read_index(&entry.digest).and_then(|idx| {
                    for m in idx
                        .manifests
                        .iter()
                        .filter(|m| oci::is_manifest(&m.media_type) && !is_attestation(m))
                    {
                        walk(m, m.platform.as_ref())?;
                    }
                    Ok(())
                })
            } else {
                walk(entry, None)
            };
            if let Err(e) = res {
                tracing::warn!(digest = %entry.digest, error = %e, "image in index.json is incomplete");
            }
            if oci::is_index(&entry.media_type) {
                blobs.insert(entry.digest.clone(), entry.size);
            }
            out.push(ImageSummary {
                name,
                tag,
                descriptor: entry.clone(),
                created,
                size: blobs.values().sum(),
                platforms,
            });
        }
        out.sort_by(|a, b| {
            (a.name.is_none(), &a.name, &a.tag, &a.descriptor.digest).cmp(&(
                b.name.is_none(),
                &b.name,
                &b.tag,
                &b.descriptor.digest,
            ))
        });
        Ok(out)
    }

    /// Removes a reference: `name:tag` untags that name; a digest removes every name of that image.
    /// Blobs stay until [`ImageStore::prune`]. Returns what was removed (`name:tag` or the digest).
    pub fn remove(&self, reference: &str) -> Result<Vec<String>, StoreError> {
        let parsed = Reference::parse(reference)?;
        self.update_index(|index| {
            let mut removed = Vec::new();
            match &parsed {
                Reference::Named {
                    name,
                    tag: Some(tag),
                    digest: None,
                } => {
                    let want = format!("{name}:{tag}");
                    let before = index.manifests.len();
                    index.manifests.retain(|m| {
                        let hit = m
                            .annotation(ANNOTATION_REF_NAME)
                            .is_some_and(|r| same_name_tag(r, &want));
                        if hit {
                            removed.push(
                                m.annotation(ANNOTATION_REF_NAME)
                                    .unwrap_or_default()
                                    .to_owned(),
                            );
                        }
                        !hit
                    });
                    if index.manifests.len() == before {
                        let desc = self.lookup_in(index, reference)?;
                        removed.extend(remove_digest(index, &desc.digest));
                    }
                }
                _ => {
                    let desc = self.lookup_in(index, reference)?;
                    removed.extend(remove_digest(index, &desc.digest));
                }
            }
            if removed.is_empty() {
                return Err(StoreError::NotFound(reference.to_owned()));
            }
            Ok(removed)
        })
    }

    /// Tags the image `src` names as `dst` too.
    pub fn tag(&self, src: &str, dst: &str) -> Result<Descriptor, StoreError> {
        let desc = self.lookup(src)?;
        self.set_ref(dst, &desc)?;
        Ok(desc)
    }

    /// Every blob reachable from a descriptor (itself included). Missing children are reported.
    pub fn reachable(
        &self,
        root: &Descriptor,
        out: &mut BTreeSet<Digest>,
    ) -> Result<(), StoreError> {
        if !out.insert(root.digest.clone()) {
            return Ok(());
        }
        if oci::is_index(&root.media_type) {
            for m in self.read_index(&root.digest)?.manifests {
                self.reachable(&m, out)?;
            }
        } else if oci::is_manifest(&root.media_type) {
            let m = self.read_manifest(&root.digest)?;
            out.insert(m.config.digest.clone());
            for l in &m.layers {
                out.insert(l.digest.clone());
            }
        }
        Ok(())
    }

    /// Deletes every blob not reachable from `index.json`, and stale temporary files.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        let _gc = self.lock("gc.lock", true)?;
        let _idx = self.lock("index.lock", true)?;
        let index = self.index()?;
        let mut live = BTreeSet::new();
        for entry in &index.manifests {
            if let Err(e) = self.reachable(entry, &mut live) {
                // Keep what can be reached; an unreadable index entry must not free its blobs.
                return Err(StoreError::Unsupported(format!(
                    "not pruning: image {} is unreadable: {e}",
                    entry.digest
                )));
            }
        }
        let mut report = PruneReport::default();
        let blobs = self.root.join("blobs/sha256");
        for e in fs::read_dir(&blobs).map_err(io_ctx(format!("cannot list {}", blobs.display())))? {
            let e = e.map_err(io_ctx("cannot list blobs"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let keep = Digest::from_hex(&name).is_ok_and(|d| live.contains(&d));
            if !keep {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path())
                    .map_err(io_ctx(format!("cannot remove {}", e.path().display())))?;
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        // No writer holds gc.lock now: whatever is in tmp/ was left by a crash.
        let tmp = self.root.join("tmp");
        for e in fs::read_dir(&tmp)
            .map_err(io_ctx(format!("cannot list {}", tmp.display())))?
            .flatten()
        {
            let path = e.path();
            let res = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            if res.is_ok() {
                report.temp_files_removed += 1;
            }
        }
        sync_dir(&blobs)?;
        Ok(report)
    }

    /// Unpacks every layer of an image into the node's layer cache (once per diff-id) and
    /// returns the directories, lowest layer first: the overlay lowerdirs of a container.
    pub fn unpack_layers(&self, image: &ImageInfo) -> Result<Vec<PathBuf>, StoreError> {
        image.layers.iter().map(|l| self.unpack_layer(l)).collect()
    }

    /// Unpacks one layer into `DATA_DIR/layers/<diff-id hex>/diff` (if not already done) and
    /// returns that directory.
    pub fn unpack_layer(&self, layer: &LayerInfo) -> Result<PathBuf, StoreError> {
        let dir = self.layers.join(layer.diff_id.hex());
        let diff = dir.join("diff");
        let complete = dir.join(".complete");
        if complete.is_file() {
            return Ok(diff);
        }
        let _lock = lock_file(
            &self.layers.join(format!("{}.lock", layer.diff_id.hex())),
            true,
        )?;
        if complete.is_file() {
            return Ok(diff);
        }
        // A directory without the marker is what a crash mid-unpack leaves: start over.
        unpack::remove_tree(&dir).map_err(|source| StoreError::Unpack {
            digest: layer.digest.clone(),
            source,
        })?;
        fs::create_dir_all(&diff).map_err(io_ctx(format!("cannot create {}", diff.display())))?;
        let result = self.extract_verified(layer, &diff, Whiteouts::Overlay);
        if let Err(e) = result {
            let _ = unpack::remove_tree(&dir);
            return Err(e);
        }
        let mut f = File::create(&complete)
            .map_err(io_ctx(format!("cannot create {}", complete.display())))?;
        f.write_all(layer.digest.as_str().as_bytes())
            .map_err(io_ctx("cannot write the .complete marker"))?;
        f.sync_all()
            .map_err(io_ctx("cannot sync the .complete marker"))?;
        sync_dir(&dir)?;
        tracing::debug!(diff_id = %layer.diff_id, dir = %diff.display(), "layer unpacked");
        Ok(diff)
    }

    /// Extracts layers, in order, into one directory with whiteouts applied (an image's
    /// filesystem as a container would see it, without overlayfs).
    pub fn flatten_into(&self, layers: &[LayerInfo], dest: &Path) -> Result<(), StoreError> {
        for layer in layers {
            self.extract_verified(layer, dest, Whiteouts::Apply)?;
        }
        Ok(())
    }

    /// Extracts one layer blob into `dest`, checking the uncompressed stream against its diff-id.
    pub fn extract_verified(
        &self,
        layer: &LayerInfo,
        dest: &Path,
        whiteouts: Whiteouts,
    ) -> Result<(), StoreError> {
        let file = BufReader::with_capacity(1 << 20, self.open_blob(&layer.digest)?);
        let compression = LayerCompression::of_media_type(&layer.media_type).ok_or_else(|| {
            StoreError::Unsupported(format!(
                "layer {} has media type {}",
                layer.digest, layer.media_type
            ))
        })?;
        let mut reader = open_layer_stream(file, compression)
            .map_err(|e| StoreError::Unsupported(format!("layer {}: {e}", layer.digest)))?;
        let mut hashing = HashingReader::new(&mut reader);
        unpack::extract_layer(&mut hashing, dest, whiteouts).map_err(|source| {
            StoreError::Unpack {
                digest: layer.digest.clone(),
                source,
            }
        })?;
        let (actual, _) = hashing
            .drain()
            .map_err(io_ctx(format!("cannot read layer {}", layer.digest)))?;
        if actual != layer.diff_id {
            return Err(StoreError::DigestMismatch {
                what: "layer diff-id".into(),
                expected: layer.diff_id.clone(),
                actual,
            });
        }
        Ok(())
    }
}

fn remove_digest(index: &mut Index, digest: &Digest) -> Vec<String> {
    let mut removed = Vec::new();
    index.manifests.retain(|m| {
        let hit = &m.digest == digest;
        if hit {
            removed.push(
                m.annotation(ANNOTATION_REF_NAME)
                    .map(str::to_owned)
                    .unwrap_or_else(|| m.digest.to_string()),
            );
        }
        !hit
    });
    removed
}

/// Whether an index entry is a BuildKit attestation manifest rather than an image.
fn is_attestation(m: &Descriptor) -> bool {
    m.annotation("vnd.docker.reference.type").is_some()
        || m.platform
            .as_ref()
            .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
}

/// Picks the manifest of an index that best serves `want`.
pub fn pick_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let candidates = index
        .manifests
        .iter()
        .filter(|m| oci::is_manifest(&m.media_type) && !is_attestation(m));
    let mut best: Option<&Descriptor> = None;
    for m in candidates {
        match &m.platform {
            Some(p)
                if p.matches(want)
                // Prefer an exact variant match.
                && (p.variant == want.variant || best.is_none()) =>
            {
                best = Some(m);
            }
            _ => {}
        }
    }
    best
}

/// Guesses the media type of a manifest or index from its JSON.
pub fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    match (p.media_type, p.manifests, p.config) {
        (Some(mt), _, _) if oci::is_index(&mt) || oci::is_manifest(&mt) => Some(mt),
        (_, Some(_), _) => Some(oci::MEDIA_TYPE_OCI_INDEX.to_owned()),
        (_, _, Some(_)) => Some(oci::MEDIA_TYPE_OCI_MANIFEST.to_owned()),
        _ => None,
    }
}

/// A reader of the uncompressed tar of a layer.
pub fn open_layer_stream<'a, R: io::BufRead + 'a>(
    mut reader: R,
    compression: LayerCompression,
) -> io::Result<Box<dyn Read + 'a>> {
    // Trust the bytes over the media type: some tools label gzip layers `.tar`.
    let head = reader.fill_buf()?;
    let gz = head.starts_with(&[0x1f, 0x8b]);
    let zstd = head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    if zstd || (compression == LayerCompression::Zstd && !gz) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "zstd-compressed layers are not supported",
        ));
    }
    if gz {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

/// Opens (creating) a lock file and takes a shared or exclusive `flock` on it.
fn lock_file(path: &Path, exclusive: bool) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_ctx(format!("cannot open {}", path.display())))?;
    let op = if exclusive {
        rustix::fs::FlockOperation::LockExclusive
    } else {
        rustix::fs::FlockOperation::LockShared
    };
    rustix::fs::flock(&file, op).map_err(|e| StoreError::Io {
        context: format!("cannot lock {}", path.display()),
        source: e.into(),
    })?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_ctx(format!("cannot sync {}", dir.display())))
}

/// A write in progress: blobs staged and committed while `prune` is held off.
pub struct WriteTxn<'a> {
    store: &'a ImageStore,
    _gc_lock: File,
}

/// A blob written to a temporary file, hashed, not yet visible in the store.
pub struct StagedBlob {
    tmp: tempfile::NamedTempFile,
    /// The digest of the bytes written.
    pub digest: Digest,
    /// The number of bytes written.
    pub size: u64,
}

impl StagedBlob {
    /// Reopens the staged bytes for reading.
    pub fn reopen(&self) -> io::Result<File> {
        self.tmp.reopen()
    }
}

impl WriteTxn<'_> {
    /// The store.
    pub fn store(&self) -> &ImageStore {
        self.store
    }

    /// Copies a stream into a temporary file in the store, hashing it, and fsyncs it.
    pub fn stage(&self, reader: &mut dyn Read) -> Result<StagedBlob, StoreError> {
        let dir = self.store.root.join("tmp");
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&dir)
            .map_err(io_ctx(format!(
                "cannot create a temporary file in {}",
                dir.display()
            )))?;
        let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp));
        io::copy(reader, &mut w).map_err(io_ctx("cannot write a blob"))?;
        let (buf, digest, size) = w.finish();
        let tmp = buf.into_inner().map_err(|e| StoreError::Io {
            context: "cannot write a blob".into(),
            source: e.into_error(),
        })?;
        tmp.as_file()
            .sync_all()
            .map_err(io_ctx("cannot sync a blob"))?;
        Ok(StagedBlob { tmp, digest, size })
    }

    /// A writer that stages a blob as it is written (for content produced here, such as layers).
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        let dir = self.store.root.join("tmp");
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&dir)
            .map_err(io_ctx(format!(
                "cannot create a temporary file in {}",
                dir.display()
            )))?;
        Ok(BlobWriter {
            inner: HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp)),
        })
    }

    /// Makes a staged blob visible after checking it against `expected` (digest, size).
    /// `what` names the blob in errors (`layer`, `config`…).
    pub fn commit(
        &self,
        staged: StagedBlob,
        what: &str,
        expected: Option<(&Digest, u64)>,
    ) -> Result<Digest, StoreError> {
        check_blob(what, &staged.digest, staged.size, expected)?;
        let dest = self.store.blob_path(&staged.digest);
        if dest.is_file() {
            return Ok(staged.digest);
        }
        staged.tmp.persist(&dest).map_err(|e| StoreError::Io {
            context: format!("cannot store blob {}", staged.digest),
            source: e.error,
        })?;
        Ok(staged.digest)
    }

    /// Stores bytes as a blob (a no-op when it is present).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        if self.store.has_blob(&digest) {
            return Ok(digest);
        }
        let staged = self.stage(&mut &bytes[..])?;
        self.commit(staged, "blob", Some((&digest, bytes.len() as u64)))
    }

    /// Stores a stream as a blob, verifying it against `expected`.
    pub fn put_reader(
        &self,
        reader: &mut dyn Read,
        what: &str,
        expected: Option<(&Digest, u64)>,
    ) -> Result<Digest, StoreError> {
        let staged = self.stage(reader)?;
        self.commit(staged, what, expected)
    }

    /// Makes renamed blobs durable (fsyncs the blob directory). Call before pointing refs at them.
    pub fn sync(&self) -> Result<(), StoreError> {
        sync_dir(&self.store.root.join("blobs/sha256"))
    }
}

/// A blob being written; [`BlobWriter::finish`] fsyncs it and returns it staged.
pub struct BlobWriter {
    inner: HashingWriter<io::BufWriter<tempfile::NamedTempFile>>,
}

impl BlobWriter {
    /// Flushes and fsyncs the blob, returning it staged (not yet visible).
    pub fn finish(self) -> Result<StagedBlob, StoreError> {
        let (buf, digest, size) = self.inner.finish();
        let tmp = buf.into_inner().map_err(|e| StoreError::Io {
            context: "cannot write a blob".into(),
            source: e.into_error(),
        })?;
        tmp.as_file()
            .sync_all()
            .map_err(io_ctx("cannot sync a blob"))?;
        Ok(StagedBlob { tmp, digest, size })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Checks a blob's digest and size against what a descriptor claims.
pub fn check_blob(
    what: &str,
    digest: &Digest,
    size: u64,
    expected: Option<(&Digest, u64)>,
) -> Result<(), StoreError> {
    if let Some((want, want_size)) = expected {
        if want != digest {
            return Err(StoreError::DigestMismatch {
                what: what.to_owned(),
                expected: want.clone(),
                actual: digest.clone(),
            });
        }
        if want_size != size {
            return Err(StoreError::SizeMismatch {
                what: what.to_owned(),
                digest: want.clone(),
                expected: want_size,
                actual: size,
            });
        }
    }
    Ok(())
}
