//! Import and export of image archives: OCI image-layout tars and `docker save` tars (legacy
//! and Docker 25+ layouts), gzipped or not.
//!
//! Import streams: every file of the archive is hashed while it is copied into a temporary file
//! in the store (small JSON files stay in memory), so a 200 MB archive is never held in memory.
//! Only once every blob of every image has been checked against the digest the archive claims
//! are blobs renamed into place and `index.json` updated, in one locked step: a bad or
//! truncated archive leaves the store as it was.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingReader};
use crate::oci::{
    self, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Descriptor, ImageConfigFile, Index,
    LayerCompression, Manifest, Platform,
};
use crate::reference::Reference;
use crate::store::{ImageStore, StagedBlob, StoreError, WriteTxn};
use crate::transfer::{BlobSink, BlobSource, copy_image, kind_of};

/// Why an archive could not be imported or exported.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive ends in the middle of a file (or a blob it needs is absent).
    #[error("archive is truncated at blob {0}")]
    Truncated(String),
    /// The tar or gzip stream is malformed.
    #[error("archive is not a valid tar stream near {at}: {source}")]
    Malformed {
        /// The last entry read.
        at: String,
        /// The error.
        source: io::Error,
    },
    /// A blob does not match the digest the archive claims for it.
    #[error("import: {what} {expected} does not match its digest (the content hashes to {actual})")]
    DigestMismatch {
        /// `layer`, `config`, `manifest`, `index`.
        what: &'static str,
        /// The digest claimed.
        expected: Digest,
        /// The digest of the bytes.
        actual: Digest,
    },
    /// A blob does not have the size its descriptor claims.
    #[error("import: {what} {digest} has {actual} bytes, but the archive says {expected}")]
    SizeMismatch {
        /// What kind of blob.
        what: &'static str,
        /// The digest.
        digest: Digest,
        /// The size claimed.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// The archive's metadata is invalid.
    #[error("import: {0}")]
    Invalid(String),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let context = context.into();
    move |source| ArchiveError::Io { context, source }
}

/// Options of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Tag the (single) imported image with this `name:tag`, in addition to the archive's names.
    pub tag: Option<String>,
}

/// One image an import added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    /// The `name:tag` refs it got (empty: untagged).
    pub names: Vec<String>,
    /// The index entry (manifest or index).
    pub descriptor: Descriptor,
}

/// Files at or under this size are kept in memory while the archive is read.
const SMALL_FILE: u64 = 1 << 20;
/// At most this many bytes of small files are kept in memory; the rest go to disk.
const SMALL_FILES_BUDGET: u64 = 64 << 20;

enum Blob {
    Mem { bytes: Vec<u8>, digest: Digest },
    Disk(StagedBlob),
}

impl Blob {
    fn digest(&self) -> &Digest {
        match self {
            Blob::Mem { digest, .. } => digest,
            Blob::Disk(s) => &s.digest,
        }
    }

    fn size(&self) -> u64 {
        match self {
            Blob::Mem { bytes, .. } => bytes.len() as u64,
            Blob::Disk(s) => s.size,
        }
    }

    fn reader(&self) -> Result<Box<dyn BufRead + '_>, ArchiveError> {
        Ok(match self {
            Blob::Mem { bytes, .. } => Box::new(&bytes[..]),
            Blob::Disk(s) => Box::new(BufReader::with_capacity(
                1 << 20,
                s.reopen().map_err(io_ctx("cannot reopen a staged blob"))?,
            )),
        })
    }

    fn small_bytes(&self, path: &str) -> Result<Vec<u8>, ArchiveError> {
        if self.size() > crate::store::MAX_JSON_BLOB {
            return Err(ArchiveError::Invalid(format!(
                "{path} is too large for a JSON document"
            )));
        }
        let mut out = Vec::new();
        self.reader()?
            .read_to_end(&mut out)
            .map_err(io_ctx(format!("cannot read {path}")))?;
        Ok(out)
    }
}

/// Reads, counting bytes and remembering whether the source failed (as opposed to the writer).
struct Tracking<R> {
    inner: R,
    read_error: Option<io::ErrorKind>,
}

impl<R: Read> Read for Tracking<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|e| self.read_error = Some(e.kind()))
    }
}

struct Contents {
    files: HashMap<String, Blob>,
    symlinks: HashMap<String, String>,
}

impl Contents {
    fn get(&self, path: &str) -> Option<&Blob> {
        let mut p = clean(path);
        for _ in 0..16 {
            if let Some(b) = self.files.get(&p) {
                return Some(b);
            }
            let target = self.symlinks.get(&p)?;
            p = resolve_link(&p, target);
        }
        None
    }
}

fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn resolve_link(from: &str, target: &str) -> String {
    if target.starts_with('/') {
        return clean(target);
    }
    let dir = from.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    clean(&format!("{dir}/{target}"))
}

/// Opens a possibly gzipped stream (sniffing the magic bytes, not the file name).
fn decompressing<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(1 << 20, reader);
    let head = buf.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buf)))
    } else {
        Ok(Box::new(buf))
    }
}

/// Imports an archive file.
pub fn import_file(
    store: &ImageStore,
    path: &Path,
    opts: &ImportOptions,
) -> Result<Vec<ImportedImage>, ArchiveError> {
    let file = File::open(path).map_err(io_ctx(format!("cannot open {}", path.display())))?;
    import(store, file, opts)
}

/// Imports an OCI image-layout or `docker save` archive from a stream.
pub fn import<R: Read>(
    store: &ImageStore,
    reader: R,
    opts: &ImportOptions,
) -> Result<Vec<ImportedImage>, ArchiveError> {
    let txn = store.begin_write()?;
    let contents = read_archive(&txn, reader)?;
    let mut plan = Plan::default();
    if contents.files.contains_key("index.json") {
        plan_oci(&contents, &mut plan)?;
    } else if contents.files.contains_key("manifest.json") {
        plan_docker(&contents, &mut plan)?;
    } else {
        return Err(ArchiveError::Invalid(
            "not an image archive: it has neither index.json nor manifest.json".into(),
        ));
    }
    if plan.images.is_empty() {
        return Err(ArchiveError::Invalid("the archive holds no image".into()));
    }
    if let Some(tag) = &opts.tag {
        if plan.images.len() != 1 {
            return Err(ArchiveError::Invalid(format!(
                "--tag needs an archive with one image; this one has {}",
                plan.images.len()
            )));
        }
        Reference::parse(tag).map_err(StoreError::from)?;
        plan.images[0].0.push(tag.clone());
    }
    // Everything is verified: make blobs visible, then point refs at them.
    let Contents {
        mut files,
        symlinks: _,
    } = contents;
    for (path, new_bytes) in plan.commit {
        match (new_bytes, files.remove(&path)) {
            (Some(bytes), _) => {
                txn.put_bytes(&bytes)?;
            }
            (None, Some(Blob::Disk(staged))) => {
                let what = "blob";
                txn.commit(staged, what, None)?;
            }
            (None, Some(Blob::Mem { bytes, .. })) => {
                txn.put_bytes(&bytes)?;
            }
            (None, None) => {}
        }
    }
    txn.sync()?;
    let mut refs = Vec::new();
    let mut out = Vec::new();
    for (names, desc) in plan.images {
        if names.is_empty() {
            refs.push((None, desc.clone()));
        }
        for n in &names {
            refs.push((Some(n.clone()), desc.clone()));
        }
        out.push(ImportedImage {
            names,
            descriptor: desc,
        });
    }
    store.set_refs(&refs)?;
    drop(txn);
    Ok(out)
}

fn read_archive<R: Read>(txn: &WriteTxn<'_>, reader: R) -> Result<Contents, ArchiveError> {
    let stream = decompressing(reader).map_err(|source| ArchiveError::Malformed {
        at: "the start".into(),
        source,
    })?;
    let mut archive = tar::Archive::new(stream);
    let mut files = HashMap::new();
    let mut symlinks = HashMap::new();
    let mut in_memory = 0u64;
    let mut last = String::from("the start");
    let entries = archive
        .entries()
        .map_err(|source| ArchiveError::Malformed {
            at: last.clone(),
            source,
        })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| match source.kind() {
            io::ErrorKind::UnexpectedEof => ArchiveError::Truncated(format!("after {last}")),
            _ => ArchiveError::Malformed {
                at: last.clone(),
                source,
            },
        })?;
        let path = clean(&String::from_utf8_lossy(&entry.path_bytes()));
        last.clone_from(&path);
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                let target = String::from_utf8_lossy(&target).into_owned();
                let resolved = if kind.is_hard_link() {
                    clean(&target)
                } else {
                    resolve_link(&path, &target)
                };
                symlinks.insert(path, resolved);
            }
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            continue;
        }
        let size = entry.size();
        let shown = blob_name(&path);
        let mut tracking = Tracking {
            inner: &mut entry,
            read_error: None,
        };
        let blob = if size <= SMALL_FILE && in_memory + size <= SMALL_FILES_BUDGET {
            let mut bytes = Vec::with_capacity(size as usize);
            tracking
                .read_to_end(&mut bytes)
                .map_err(|source| read_failure(&shown, source))?;
            if bytes.len() as u64 != size {
                return Err(ArchiveError::Truncated(shown));
            }
            in_memory += size;
            let digest = Digest::of(&bytes);
            Blob::Mem { bytes, digest }
        } else {
            let staged = match txn.stage(&mut tracking) {
                Ok(s) => s,
                Err(e) => {
                    return Err(match tracking.read_error {
                        Some(kind) => read_failure(&shown, io::Error::from(kind)),
                        None => e.into(),
                    });
                }
            };
            if staged.size != size {
                return Err(ArchiveError::Truncated(shown));
            }
            Blob::Disk(staged)
        };
        files.insert(path, blob);
    }
    Ok(Contents { files, symlinks })
}

fn read_failure(shown: &str, source: io::Error) -> ArchiveError {
    match source.kind() {
        io::ErrorKind::UnexpectedEof => ArchiveError::Truncated(shown.to_owned()),
        _ => ArchiveError::Malformed {
            at: shown.to_owned(),
            source,
        },
    }
}

/// `blobs/sha256/<hex>` → `sha256:<hex>`; other paths as they are.
fn blob_name(path: &str) -> String {
    match path.strip_prefix("blobs/sha256/") {
        Some(hex) => format!("sha256:{hex}"),
        None => path.to_owned(),
    }
}

#[derive(Default)]
struct Plan {
    /// Archive paths to commit as blobs, or synthesized bytes (path is then a label).
    commit: Vec<(String, Option<Vec<u8>>)>,
    /// Names and the index entry of every image.
    images: Vec<(Vec<String>, Descriptor)>,
    /// Layers already checked for unsafe paths.
    checked: std::collections::HashSet<Digest>,
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn verify(what: &'static str, blob: &Blob, desc: &Descriptor) -> Result<(), ArchiveError> {
    if blob.digest() != &desc.digest {
        return Err(ArchiveError::DigestMismatch {
            what,
            expected: desc.digest.clone(),
            actual: blob.digest().clone(),
        });
    }
    if blob.size() != desc.size {
        return Err(ArchiveError::SizeMismatch {
            what,
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: blob.size(),
        });
    }
    Ok(())
}

fn find<'a>(contents: &'a Contents, desc: &Descriptor) -> Result<&'a Blob, ArchiveError> {
    contents
        .get(&blob_path(&desc.digest))
        .ok_or_else(|| ArchiveError::Truncated(desc.digest.to_string()))
}

/// Refuses a layer whose entries would escape the root when unpacked, before anything is stored.
fn check_layer_blob(
    blob: &Blob,
    digest: &Digest,
    checked: &mut std::collections::HashSet<Digest>,
) -> Result<(), ArchiveError> {
    if !checked.insert(digest.clone()) {
        return Ok(());
    }
    let bad = |e: crate::unpack::UnpackError| {
        ArchiveError::Invalid(format!("layer {digest} is unsafe: {e}"))
    };
    let mut reader = blob.reader()?;
    let head = reader
        .fill_buf()
        .map_err(io_ctx(format!("cannot read layer {digest}")))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut ar = tar::Archive::new(flate2::bufread::MultiGzDecoder::new(reader));
        crate::unpack::check_layer(
            ar.entries()
                .map_err(|e| bad(crate::unpack::UnpackError::Tar(e)))?,
        )
        .map_err(bad)?;
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(ArchiveError::Invalid(format!(
            "layer {digest} is zstd-compressed, which is not supported"
        )));
    } else {
        match blob {
            Blob::Disk(staged) => {
                let file = staged
                    .reopen()
                    .map_err(io_ctx("cannot reopen a staged blob"))?;
                let mut ar = tar::Archive::new(file);
                crate::unpack::check_layer(
                    ar.entries_with_seek()
                        .map_err(|e| bad(crate::unpack::UnpackError::Tar(e)))?,
                )
                .map_err(bad)?;
            }
            Blob::Mem { bytes, .. } => {
                let mut ar = tar::Archive::new(io::Cursor::new(&bytes[..]));
                crate::unpack::check_layer(
                    ar.entries_with_seek()
                        .map_err(|e| bad(crate::unpack::UnpackError::Tar(e)))?,
                )
                .map_err(bad)?;
            }
        }
    }
    Ok(())
}

fn what_of(media_type: &str) -> &'static str {
    kind_of(media_type)
}

fn plan_oci(contents: &Contents, plan: &mut Plan) -> Result<(), ArchiveError> {
    let index_bytes = contents
        .get("index.json")
        .expect("checked by the caller")
        .small_bytes("index.json")?;
    let index: Index = serde_json::from_slice(&index_bytes)
        .map_err(|e| ArchiveError::Invalid(format!("index.json: {e}")))?;
    for top in &index.manifests {
        let mut desc = top.clone();
        if desc.media_type.is_empty() {
            let blob = find(contents, &desc)?;
            desc.media_type =
                crate::store::sniff_media_type(&blob.small_bytes(desc.digest.as_str())?)
                    .ok_or_else(|| {
                        ArchiveError::Invalid(format!(
                            "blob {} is neither a manifest nor an index",
                            desc.digest
                        ))
                    })?;
        }
        plan_oci_desc(contents, &desc, plan, 0)?;
        let names = oci_names(top);
        let mut entry = desc.clone();
        entry.annotations = None;
        entry.platform = None;
        plan.images.push((names, entry));
    }
    Ok(())
}

/// The names an OCI index entry carries: containerd's full name, else a ref.name that is a full
/// reference (a bare tag such as `latest` names no repository).
fn oci_names(desc: &Descriptor) -> Vec<String> {
    let full = desc.annotation(ANNOTATION_CONTAINERD_NAME).or_else(|| {
        desc.annotation(ANNOTATION_REF_NAME)
            .filter(|r| r.contains(':') || r.contains('/'))
    });
    full.and_then(crate::reference::familiar_name_tag)
        .into_iter()
        .collect()
}

fn plan_oci_desc(
    contents: &Contents,
    desc: &Descriptor,
    plan: &mut Plan,
    depth: u32,
) -> Result<(), ArchiveError> {
    if depth > 4 {
        return Err(ArchiveError::Invalid("indexes nest too deeply".into()));
    }
    let what = what_of(&desc.media_type);
    let blob = find(contents, desc)?;
    verify(what, blob, desc)?;
    if oci::is_index(&desc.media_type) {
        let bytes = blob.small_bytes(desc.digest.as_str())?;
        let idx: Index = serde_json::from_slice(&bytes)
            .map_err(|e| ArchiveError::Invalid(format!("index {}: {e}", desc.digest)))?;
        for m in &idx.manifests {
            plan_oci_desc(contents, m, plan, depth + 1)?;
        }
    } else if oci::is_manifest(&desc.media_type) {
        let bytes = blob.small_bytes(desc.digest.as_str())?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| ArchiveError::Invalid(format!("manifest {}: {e}", desc.digest)))?;
        let cfg_blob = find(contents, &m.config)?;
        verify("config", cfg_blob, &m.config)?;
        let cfg: ImageConfigFile =
            serde_json::from_slice(&cfg_blob.small_bytes(m.config.digest.as_str())?)
                .map_err(|e| ArchiveError::Invalid(format!("config {}: {e}", m.config.digest)))?;
        plan.commit.push((blob_path(&m.config.digest), None));
        if cfg.rootfs.diff_ids.len() != m.layers.len() && !is_non_image_config(&m.config.media_type)
        {
            return Err(ArchiveError::Invalid(format!(
                "manifest {} has {} layers but its config lists {} diff_ids",
                desc.digest,
                m.layers.len(),
                cfg.rootfs.diff_ids.len()
            )));
        }
        for (i, l) in m.layers.iter().enumerate() {
            let lb = find(contents, l)?;
            verify("layer", lb, l)?;
            check_layer_blob(lb, &l.digest, &mut plan.checked)?;
            if LayerCompression::of_media_type(&l.media_type) == Some(LayerCompression::None)
                && let Some(diff_id) = cfg.rootfs.diff_ids.get(i)
                && diff_id != &l.digest
            {
                return Err(ArchiveError::DigestMismatch {
                    what: "layer",
                    expected: diff_id.clone(),
                    actual: l.digest.clone(),
                });
            }
            plan.commit.push((blob_path(&l.digest), None));
        }
    }
    plan.commit.push((blob_path(&desc.digest), None));
    Ok(())
}

/// Attestation and artifact manifests carry configs that are not image configs.
fn is_non_image_config(media_type: &str) -> bool {
    media_type != oci::MEDIA_TYPE_OCI_CONFIG && media_type != oci::MEDIA_TYPE_DOCKER_CONFIG
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// The digest a path names, when it is `blobs/sha256/<hex>` or `<hex>.json`.
fn digest_in_path(path: &str) -> Option<Digest> {
    let p = clean(path);
    if let Some(hex) = p.strip_prefix("blobs/sha256/") {
        return Digest::from_hex(hex).ok();
    }
    p.strip_suffix(".json")
        .and_then(|hex| Digest::from_hex(hex).ok())
}

fn plan_docker(contents: &Contents, plan: &mut Plan) -> Result<(), ArchiveError> {
    let bytes = contents
        .get("manifest.json")
        .expect("checked by the caller")
        .small_bytes("manifest.json")?;
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&bytes)
        .map_err(|e| ArchiveError::Invalid(format!("manifest.json: {e}")))?;
    for entry in entries {
        let cfg_blob = contents
            .get(&entry.config)
            .ok_or_else(|| ArchiveError::Truncated(entry.config.clone()))?;
        if let Some(claimed) = digest_in_path(&entry.config)
            && &claimed != cfg_blob.digest()
        {
            return Err(ArchiveError::DigestMismatch {
                what: "config",
                expected: claimed,
                actual: cfg_blob.digest().clone(),
            });
        }
        let cfg_bytes = cfg_blob.small_bytes(&entry.config)?;
        let cfg: ImageConfigFile = serde_json::from_slice(&cfg_bytes)
            .map_err(|e| ArchiveError::Invalid(format!("config {}: {e}", entry.config)))?;
        if cfg.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(ArchiveError::Invalid(format!(
                "{} lists {} layers but its config has {} diff_ids",
                entry.config,
                entry.layers.len(),
                cfg.rootfs.diff_ids.len()
            )));
        }
        let config_desc = Descriptor::new(
            oci::MEDIA_TYPE_OCI_CONFIG,
            cfg_blob.digest().clone(),
            cfg_blob.size(),
        );
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(&cfg.rootfs.diff_ids) {
            let blob = contents
                .get(path)
                .ok_or_else(|| ArchiveError::Truncated(path.clone()))?;
            if let Some(claimed) = digest_in_path(path)
                && &claimed != blob.digest()
            {
                return Err(ArchiveError::DigestMismatch {
                    what: "layer",
                    expected: claimed,
                    actual: blob.digest().clone(),
                });
            }
            let mut reader = blob.reader()?;
            let gz = reader
                .fill_buf()
                .map_err(io_ctx(format!("cannot read {path}")))?
                .starts_with(&[0x1f, 0x8b]);
            let (media_type, actual_diff) = if gz {
                let mut hashing = HashingReader::new(flate2::bufread::MultiGzDecoder::new(reader));
                io::copy(&mut hashing, &mut io::sink()).map_err(|e| {
                    ArchiveError::Invalid(format!("layer {path}: bad gzip data: {e}"))
                })?;
                (
                    oci::MEDIA_TYPE_OCI_LAYER_GZIP,
                    hashing
                        .drain()
                        .map_err(io_ctx(format!("cannot read {path}")))?
                        .0,
                )
            } else {
                (oci::MEDIA_TYPE_OCI_LAYER_TAR, blob.digest().clone())
            };
            if &actual_diff != diff_id {
                return Err(ArchiveError::DigestMismatch {
                    what: "layer",
                    expected: diff_id.clone(),
                    actual: actual_diff,
                });
            }
            check_layer_blob(blob, blob.digest(), &mut plan.checked)?;
            layers.push(Descriptor::new(
                media_type,
                blob.digest().clone(),
                blob.size(),
            ));
            plan.commit.push((clean(path), None));
        }
        plan.commit.push((clean(&entry.config), None));
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_OCI_MANIFEST.to_owned()),
            config: config_desc,
            layers,
            annotations: None,
        };
        let manifest_bytes = oci::to_canonical_json(&manifest);
        let desc = Descriptor::new(
            oci::MEDIA_TYPE_OCI_MANIFEST,
            Digest::of(&manifest_bytes),
            manifest_bytes.len() as u64,
        );
        plan.commit.push((
            format!("synthesized manifest {}", desc.digest),
            Some(manifest_bytes),
        ));
        let mut names = Vec::new();
        for tag in entry.repo_tags.unwrap_or_default() {
            match crate::reference::familiar_name_tag(&tag) {
                Some(nt) => names.push(nt),
                None => {
                    return Err(ArchiveError::Invalid(format!(
                        "RepoTags entry {tag:?} is not a valid name:tag"
                    )));
                }
            }
        }
        plan.images.push((names, desc));
    }
    Ok(())
}

/// The archive formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExportFormat {
    /// An OCI image-layout tar (`oci-layout`, `index.json`, `blobs/sha256/…`).
    #[default]
    Oci,
    /// A `docker save` tar (`manifest.json`, `<config>.json`, `<diff-id>/layer.tar`).
    Docker,
}

fn tar_header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_bytes<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
) -> Result<(), ArchiveError> {
    let mut h = tar_header(bytes.len() as u64, 0o644, tar::EntryType::Regular);
    b.append_data(&mut h, path, bytes)
        .map_err(io_ctx(format!("cannot write {path} to the archive")))
}

fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str) -> Result<(), ArchiveError> {
    let mut h = tar_header(0, 0o755, tar::EntryType::Directory);
    b.append_data(&mut h, path, io::empty())
        .map_err(io_ctx(format!("cannot write {path} to the archive")))
}

struct OciArchiveSink<'a, W: Write> {
    builder: &'a mut tar::Builder<W>,
    written: std::collections::HashSet<Digest>,
}

impl<W: Write> BlobSink for OciArchiveSink<'_, W> {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.written.contains(digest)
    }

    fn put_blob(&mut self, desc: &Descriptor, reader: &mut dyn Read) -> Result<(), StoreError> {
        let path = blob_path(&desc.digest);
        let mut h = tar_header(desc.size, 0o644, tar::EntryType::Regular);
        let mut hashing = HashingReader::new(reader.take(desc.size));
        self.builder
            .append_data(&mut h, &path, &mut hashing)
            .map_err(|source| StoreError::Io {
                context: format!("cannot write {path} to the archive"),
                source,
            })?;
        let (digest, n) = hashing.drain().map_err(|source| StoreError::Io {
            context: format!("cannot read {path}"),
            source,
        })?;
        crate::store::check_blob(
            kind_of(&desc.media_type),
            &digest,
            n,
            Some((&desc.digest, desc.size)),
        )?;
        self.written.insert(desc.digest.clone());
        Ok(())
    }
}

/// Writes the image `reference` names to `w` as an archive. `platform` picks one manifest of a
/// multi-platform image for the Docker format (the host's by default); the OCI format keeps all.
pub fn export<W: Write>(
    store: &ImageStore,
    reference: &str,
    format: ExportFormat,
    platform: Option<&Platform>,
    w: W,
) -> Result<W, ArchiveError> {
    let mut builder = tar::Builder::new(w);
    builder.mode(tar::HeaderMode::Deterministic);
    let name_tag = match Reference::parse(reference).map_err(StoreError::from)? {
        r @ Reference::Named { digest: None, .. } => r.name_tag(),
        _ => None,
    };
    match format {
        ExportFormat::Oci => {
            let top = store.lookup(reference)?;
            append_bytes(
                &mut builder,
                "oci-layout",
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
            append_dir(&mut builder, "blobs/")?;
            append_dir(&mut builder, "blobs/sha256/")?;
            let mut entry = Descriptor::new(&top.media_type, top.digest.clone(), top.size);
            {
                let mut sink = OciArchiveSink {
                    builder: &mut builder,
                    written: Default::default(),
                };
                copy_image(store as &dyn BlobSource, &entry, &mut sink)?;
            }
            if let Some(nt) = &name_tag {
                let tag = nt.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
                entry.annotations = Some(BTreeMap::from([
                    (ANNOTATION_CONTAINERD_NAME.to_owned(), nt.clone()),
                    (ANNOTATION_REF_NAME.to_owned(), tag.to_owned()),
                ]));
            }
            let index = Index {
                manifests: vec![entry],
                ..Index::default()
            };
            append_bytes(&mut builder, "index.json", &oci::to_canonical_json(&index))?;
        }
        ExportFormat::Docker => {
            let info = store.resolve_for(reference, platform)?;
            let config_bytes = store.read_blob(&info.config_digest)?;
            let config_path = format!("{}.json", info.config_digest.hex());
            append_bytes(&mut builder, &config_path, &config_bytes)?;
            let mut layer_paths = Vec::new();
            for layer in &info.layers {
                let dir = format!("{}/", layer.diff_id.hex());
                let path = format!("{}layer.tar", dir);
                if layer_paths.contains(&path) {
                    layer_paths.push(path);
                    continue;
                }
                append_dir(&mut builder, &dir)?;
                append_plain_layer(store, &mut builder, layer, &path)?;
                layer_paths.push(path);
            }
            let manifest = vec![DockerManifestEntry {
                config: config_path,
                repo_tags: Some(name_tag.into_iter().collect()),
                layers: layer_paths,
            }];
            let bytes = serde_json::to_vec(&manifest).expect("manifest.json serializes");
            append_bytes(&mut builder, "manifest.json", &bytes)?;
        }
    }
    builder
        .into_inner()
        .map_err(io_ctx("cannot finish the archive"))
}

/// Docker archives hold uncompressed layer tars; decompress to a temporary file when needed (the
/// tar header needs the size first).
fn append_plain_layer<W: Write>(
    store: &ImageStore,
    builder: &mut tar::Builder<W>,
    layer: &crate::store::LayerInfo,
    path: &str,
) -> Result<(), ArchiveError> {
    let compression = LayerCompression::of_media_type(&layer.media_type).ok_or_else(|| {
        ArchiveError::Invalid(format!(
            "layer {} has media type {}",
            layer.digest, layer.media_type
        ))
    })?;
    let mut file = BufReader::with_capacity(1 << 20, store.open_blob(&layer.digest)?);
    let head = file
        .fill_buf()
        .map_err(io_ctx(format!("cannot read layer {}", layer.digest)))?;
    if compression == LayerCompression::None && !head.starts_with(&[0x1f, 0x8b]) {
        // Already a plain tar: stream it, checking it against its diff-id on the way.
        let mut h = tar_header(layer.size, 0o644, tar::EntryType::Regular);
        let mut hashing = HashingReader::new(file.take(layer.size));
        builder
            .append_data(&mut h, path, &mut hashing)
            .map_err(io_ctx(format!("cannot write {path} to the archive")))?;
        let (diff, n) = hashing
            .drain()
            .map_err(io_ctx(format!("cannot read layer {}", layer.digest)))?;
        if diff != layer.diff_id || n != layer.size {
            return Err(ArchiveError::DigestMismatch {
                what: "layer",
                expected: layer.diff_id.clone(),
                actual: diff,
            });
        }
        return Ok(());
    }
    let mut plain = crate::store::open_layer_stream(file, compression)
        .map_err(|e| ArchiveError::Invalid(format!("layer {}: {e}", layer.digest)))?;
    let mut tmp = tempfile::tempfile_in(store.root().join("tmp"))
        .map_err(io_ctx("cannot create a temporary file"))?;
    let mut hashing = HashingReader::new(&mut plain);
    let size = io::copy(&mut hashing, &mut tmp)
        .map_err(io_ctx(format!("cannot decompress layer {}", layer.digest)))?;
    let (diff, _) = hashing
        .drain()
        .map_err(io_ctx(format!("cannot read layer {}", layer.digest)))?;
    if diff != layer.diff_id {
        return Err(ArchiveError::DigestMismatch {
            what: "layer",
            expected: layer.diff_id.clone(),
            actual: diff,
        });
    }
    io::Seek::seek(&mut tmp, io::SeekFrom::Start(0))
        .map_err(io_ctx("cannot rewind a temporary file"))?;
    let mut h = tar_header(size, 0o644, tar::EntryType::Regular);
    builder
        .append_data(&mut h, path, BufReader::with_capacity(1 << 20, tmp))
        .map_err(io_ctx(format!("cannot write {path} to the archive")))
}
