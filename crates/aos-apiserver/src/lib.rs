//! The Kubernetes-style HTTPS API server over the store.
//!
//! [`ApiServer::bind`] prepares the data dir (CA, serving certificate and the
//! client certificate for node agents under `pki/`, the token table
//! `tokens.csv`, the admin `kubeconfig.yaml`) and binds
//! the listener; [`ApiServer::serve`] answers Kubernetes REST over TLS until
//! its cancellation token fires, then ends open watches and drains.
//!
//! What is served, and how it maps to the store, is described below.
//!
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod discovery;
mod error;
mod metrics;
mod metrics_api;
mod nodeproxy;
mod objects;
mod patch;
mod pki;
mod podlogs;
mod protobuf;
mod query;
mod rest;
mod router;
mod server;
mod table;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aos_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiServerError;
pub use nodeproxy::PinVerifier;

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address, e.g. `127.0.0.1:6443` (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Data dir: `pki/`, `tokens.csv` and `kubeconfig.yaml` live here.
    pub data_dir: PathBuf,
    /// Extra names (DNS names or IP addresses) for the serving certificate.
    pub external_hosts: Vec<String>,
}

/// A bound, not yet serving, API server.
pub struct ApiServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    kubeconfig: PathBuf,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<router::AppState>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Load (or, at first start, generate) the CA, the serving certificate and the
    /// admin token; bind the listener; write `DATA_DIR/kubeconfig.yaml` for it.
    pub async fn bind(config: Config, store: Arc<dyn Store>) -> Result<Self, ApiServerError> {
        let data_dir = config.data_dir.clone();
        let hosts = config.external_hosts.clone();
        // File and crypto work off the async threads.
        let (pki, tokens) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&data_dir).map_err(|source| ApiServerError::Io {
                path: data_dir.display().to_string(),
                source,
            })?;
            let pki = pki::ensure(&data_dir, &hosts)?;
            let tokens = auth::Tokens::load_or_create(&data_dir)?;
            Ok::<_, ApiServerError>((pki, tokens))
        })
        .await
        .map_err(|e| ApiServerError::Pki(format!("setup task failed: {e}")))??;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ApiServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ApiServerError::Bind {
                addr: config.listen,
                source,
            })?;
        let kubeconfig = pki::kubeconfig_path(&config.data_dir);
        pki::write_kubeconfig(
            &kubeconfig,
            &pki::server_url(local_addr),
            &pki.ca_pem,
            tokens.admin_token(),
        )?;
        let state = Arc::new(router::AppState::new(
            store,
            tokens,
            local_addr,
            nodeproxy::NodeClient::new(pki.node_client),
        ));
        rest::ensure_builtin_namespaces(&state)
            .await
            .map_err(ApiServerError::Store)?;
        tracing::info!(addr = %local_addr, kubeconfig = %kubeconfig.display(), "API server bound");
        Ok(ApiServer {
            listener,
            local_addr,
            kubeconfig,
            tls: pki.server_config,
            state,
        })
    }

    /// The bound address (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin kubeconfig written at bind.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Append the Prometheus text that `render` returns to `/metrics` (e.g. the
    /// store's: `move || sqlite.render_metrics()`).
    pub fn with_metrics_source(self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        if let Ok(mut sources) = self.state.extra_metrics.lock() {
            sources.push(Box::new(render));
        }
        self
    }

    /// Serve until `shutdown` is cancelled; then end open watches, let requests in
    /// flight finish (at most a few seconds) and return.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ApiServerError> {
        server::serve(self.listener, self.tls, self.state, shutdown).await
    }
}
