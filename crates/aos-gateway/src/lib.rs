//! The aos gateway: the L7 data plane.
//!
//! An HTTP/1.1 and HTTP/2 (h2c) reverse proxy on hyper 1 that routes by Istio's
//! VirtualServices and DestinationRules over Kubernetes Services and Endpoints, with Istio's
//! semantics and defaults for retries, timeouts, fault injection, CORS, connection-pool limits,
//! load balancing and outlier detection, and Istio-style request metrics.
//!
//! The pieces, from configuration to bytes:
//! - a [`ConfigSource`] publishes [`Snapshot`]s of the objects (from the API's watches with
//!   [`ApiSource`], from a file with [`StaticSource`], or by hand with [`channel`]);
//! - [`plan::compile`] turns a snapshot into a [`plan::Plan`] — a pure function with table tests;
//! - the plan gets its runtime state (endpoint load, ejections, pool limits, metric handles) and
//!   is swapped in atomically: in-flight requests finish on the table they started with;
//! - each request is one future that runs metrics → route → CORS → fault → timeout → retry →
//!   (per try) load balance → connection pool → upstream client, handing plain values from one
//!   step to the next (see the `proxy` module).
//!
//! Entry points: [`run`], or [`Gateway::bind`] + [`Gateway::serve`] to learn the bound
//! addresses first, and [`GatewayHandle`] for readiness and the per-pod request rates the
//! autoscaler reads.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
mod conns;
mod duration;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod matcher;
mod metrics;
mod model;
pub mod plan;
mod proxy;
mod server;
mod snapshot;
mod source;
mod table;

pub use error::GatewayError;
pub use server::{Gateway, GatewayConfig, GatewayHandle, PodRequestRate, run};
pub use snapshot::{Kind, Snapshot, SnapshotError};
pub use source::{
    ApiSource, ChannelSource, ConfigSource, ListWatch, SnapshotReceiver, SnapshotSender,
    StaticSource, channel,
};
