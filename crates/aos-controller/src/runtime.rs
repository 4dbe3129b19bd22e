//! The controller runtime: informers with caches, a work queue, and the
//! reconcile loop, in kube-runtime's shape.

pub mod controller;
pub mod informer;
pub mod queue;

pub use controller::{Action, Controller};
pub use informer::{Cache, Informer, InformerEvent};
pub use queue::{RateLimit, WorkQueue};
