//! Errors of the gateway.

use std::net::SocketAddr;

/// What can stop the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A listener could not be bound (port in use, permission).
    #[error("binding {what} listener on {addr}: {source}")]
    Bind {
        /// `proxy` or `admin`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Another I/O failure of a listener.
    #[error("{what} listener: {source}")]
    Io {
        /// `proxy` or `admin`.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A proxy worker thread panicked.
    #[error("a proxy worker thread panicked")]
    WorkerPanicked,
}
