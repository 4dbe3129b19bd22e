//! Kubernetes-shaped resource types, manifest parsing, defaulting and validation.
//!
//! **Architecture invariant:** this crate does no I/O: no tokio, no files, no
//! network. Everything here is a function of its inputs, so the API server,
//! the CLI and the fuzzers share one definition of what a valid object is.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admit;
pub mod duration;
pub mod hash;
pub mod istio;
pub mod manifest;
pub mod quantity;
pub mod resource;
pub mod selector;
pub mod table;
pub mod time;

pub use admit::{FieldError, FieldErrorKind, Warning, admit};
pub use hash::pod_template_hash;
pub use manifest::{Document, ParseError, parse_manifests};
pub use resource::ResourceType;
