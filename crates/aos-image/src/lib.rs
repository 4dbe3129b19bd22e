//! The OCI image store, the Dockerfile builder, and image import/export.
//!
//! - [`store`]: a content-addressed OCI image layout under `DATA_DIR/images/`, safe to share
//!   between processes, and the node's cache of unpacked layers under `DATA_DIR/layers/`.
//! - [`build`]: reproducible images from a Dockerfile ([`dockerfile`] parses it,
//!   [`dockerignore`] filters the context).
//! - [`archive`]: import and export of OCI and `docker save` archives.
//! - [`transfer`]: the source/sink seam that registry pull and push will plug into.
//! - [`cli`]: `aos image ...` for the binary to mount.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod archive;
pub mod build;
pub mod cli;
pub mod digest;
pub mod dockerfile;
pub mod dockerignore;
pub mod oci;
pub mod reference;
pub mod store;
pub mod transfer;
pub mod unpack;

pub use archive::{
    ArchiveError, ExportFormat, ImportOptions, ImportedImage, export, import, import_file,
};
pub use build::{BuildError, BuildEvent, BuildOptions, BuildOutput, Lint, build};
pub use digest::Digest;
pub use oci::Platform;
pub use store::{ImageInfo, ImageStore, ImageSummary, LayerInfo, PruneReport, StoreError};
