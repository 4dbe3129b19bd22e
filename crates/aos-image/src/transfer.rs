//! The seam for moving images between places: a [`BlobSource`] gives blobs by descriptor, a
//! [`BlobSink`] takes them, and [`copy_image`] walks an image (index → manifests → config and
//! layers) and copies what the sink lacks, children before parents, so a sink never holds a
//! manifest whose blobs it lacks. The store is both a source and (through [`WriteTxn`]) a sink;
//! an OCI archive writer is a sink; a remote registry client (pull, push) will be another pair.

use std::io::Read;

use crate::digest::{Digest, HashingReader};
use crate::oci::{self, Descriptor, Index, Manifest};
use crate::store::{ImageStore, StoreError, WriteTxn, check_blob};

/// Somewhere blobs can be read from.
pub trait BlobSource {
    /// Opens a blob's bytes. The caller verifies them against the descriptor.
    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + '_>, StoreError>;

    /// Reads a small JSON blob whole and verifies it.
    fn read_verified(&self, desc: &Descriptor) -> Result<Vec<u8>, StoreError> {
        let mut buf = Vec::new();
        self.open_blob(desc)?
            .take(crate::store::MAX_JSON_BLOB + 1)
            .read_to_end(&mut buf)
            .map_err(|source| StoreError::Io {
                context: format!("cannot read blob {}", desc.digest),
                source,
            })?;
        check_blob(
            kind_of(&desc.media_type),
            &Digest::of(&buf),
            buf.len() as u64,
            Some((&desc.digest, desc.size)),
        )?;
        Ok(buf)
    }
}

/// Somewhere blobs can be written to.
pub trait BlobSink {
    /// Whether the sink already has a blob (so it need not be copied).
    fn has_blob(&self, digest: &Digest) -> bool;
    /// Writes a blob; the sink must verify digest and size and refuse a mismatch.
    fn put_blob(&mut self, desc: &Descriptor, reader: &mut dyn Read) -> Result<(), StoreError>;
}

/// A name for the kind of blob a media type denotes, for messages.
pub fn kind_of(media_type: &str) -> &'static str {
    if oci::is_index(media_type) {
        "index"
    } else if oci::is_manifest(media_type) {
        "manifest"
    } else if oci::LayerCompression::of_media_type(media_type).is_some() {
        "layer"
    } else if media_type.contains("config") {
        "config"
    } else {
        "blob"
    }
}

/// Copies the image rooted at `root` from `source` to `sink`; returns every descriptor copied or
/// already present, children first.
pub fn copy_image(
    source: &dyn BlobSource,
    root: &Descriptor,
    sink: &mut dyn BlobSink,
) -> Result<Vec<Descriptor>, StoreError> {
    let mut done = Vec::new();
    copy_rec(source, root, sink, &mut done)?;
    Ok(done)
}

fn copy_rec(
    source: &dyn BlobSource,
    desc: &Descriptor,
    sink: &mut dyn BlobSink,
    done: &mut Vec<Descriptor>,
) -> Result<(), StoreError> {
    if done.iter().any(|d| d.digest == desc.digest) {
        return Ok(());
    }
    if oci::is_index(&desc.media_type) {
        let bytes = source.read_verified(desc)?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: "index",
            digest: desc.digest.clone(),
            source,
        })?;
        for m in &index.manifests {
            copy_rec(source, m, sink, done)?;
        }
        put(sink, desc, &mut &bytes[..])?;
    } else if oci::is_manifest(&desc.media_type) {
        let bytes = source.read_verified(desc)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                what: "manifest",
                digest: desc.digest.clone(),
                source,
            })?;
        copy_rec(source, &manifest.config, sink, done)?;
        for l in &manifest.layers {
            copy_rec(source, l, sink, done)?;
        }
        put(sink, desc, &mut &bytes[..])?;
    } else if !sink.has_blob(&desc.digest) {
        let mut r = source.open_blob(desc)?;
        sink.put_blob(desc, &mut r)?;
    }
    done.push(desc.clone());
    Ok(())
}

fn put(sink: &mut dyn BlobSink, desc: &Descriptor, bytes: &mut &[u8]) -> Result<(), StoreError> {
    if !sink.has_blob(&desc.digest) {
        sink.put_blob(desc, bytes)?;
    }
    Ok(())
}

impl BlobSource for ImageStore {
    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + '_>, StoreError> {
        Ok(Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            ImageStore::open_blob(self, &desc.digest)?,
        )))
    }
}

impl BlobSink for WriteTxn<'_> {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.store().has_blob(digest)
    }

    fn put_blob(&mut self, desc: &Descriptor, reader: &mut dyn Read) -> Result<(), StoreError> {
        self.put_reader(
            reader,
            kind_of(&desc.media_type),
            Some((&desc.digest, desc.size)),
        )?;
        Ok(())
    }
}

/// Reads a whole stream, checking it against a descriptor, and passes it through to `w`.
pub fn copy_verified(
    desc: &Descriptor,
    reader: &mut dyn Read,
    w: &mut dyn std::io::Write,
) -> Result<(), StoreError> {
    let mut hashing = HashingReader::new(reader);
    let n = std::io::copy(&mut hashing, w).map_err(|source| StoreError::Io {
        context: format!("cannot copy blob {}", desc.digest),
        source,
    })?;
    let (digest, _) = hashing.drain().map_err(|source| StoreError::Io {
        context: format!("cannot read blob {}", desc.digest),
        source,
    })?;
    check_blob(
        kind_of(&desc.media_type),
        &digest,
        n,
        Some((&desc.digest, desc.size)),
    )
}
