//! HTTPS client for the aos API.
//!
//! [`Client`] speaks Kubernetes-shaped REST to `aos-apiserver` (or to a real
//! Kubernetes API server): typed requests over the resource table of
//! `aos-types`, `Status` errors with their field causes, `Warning` headers, and
//! watch streams parsed line by line as they arrive. [`Kubeconfig`] reads the
//! standard kubeconfig file that `aos up` writes and `kubectl` reads.
//!
//! The node agent, the gateway, the controllers and the CLI all use this
//! client, exactly as a component on another machine would.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod error;
mod kubeconfig;
mod params;
mod watch;

pub use client::{Client, ObjectList, Response, resource_path};
pub use error::{ClientError, Status, StatusCause};
pub use kubeconfig::Kubeconfig;
pub use params::{DeleteParams, ListParams, Patch};
pub use watch::WatchEvent;
