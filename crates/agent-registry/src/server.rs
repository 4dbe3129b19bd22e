//! Serving: binding, the reaper, signals and the one shutdown path.
//!
//! [`run`] binds the listener, starts the reaper and serves until its cancellation token fires;
//! it then stops accepting connections, lets in-flight requests finish (for at most the
//! configured shutdown timeout), stops the reaper and closes the database.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::db::DbError;

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Accepting or serving failed.
    #[error("serving failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Binds `config.listen`.
pub async fn bind(config: &Config) -> Result<TcpListener, ServeError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })
}

/// Serves `state` on `listener` until `shutdown` fires, then drains as described in the module
/// docs. Returns once the database is closed.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    config: &Config,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(%addr, "listening");

    match state.store().ping().await {
        Ok(()) => tracing::info!(database = %state.store().location(), "database ready"),
        Err(e) => tracing::warn!(
            database = %state.store().location(),
            error = %e,
            "database not ready; serving /health and reporting the reason on /ready until it is"
        ),
    }

    let reaper = spawn_reaper(
        state.clone(),
        config.reaper_interval,
        config.expired_retention,
        shutdown.clone(),
    );

    let draining = {
        let state = state.clone();
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            state.start_draining();
            tracing::info!("no longer accepting connections; draining in-flight requests");
        }
    };
    let server = axum::serve(listener, api::router(state.clone())).with_graceful_shutdown(draining);
    let drain_deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(config.shutdown_timeout).await;
    };
    let result = tokio::select! {
        result = server => result.map_err(ServeError::Serve),
        () = drain_deadline => {
            tracing::warn!(
                timeout_seconds = config.shutdown_timeout.as_secs(),
                "shutdown timeout reached with requests still in flight; abandoning them"
            );
            Ok(())
        }
    };

    // The reaper watches the same token; this only waits for its current pass.
    shutdown.cancel();
    if let Err(e) = reaper.await {
        tracing::error!(error = %e, "reaper task failed");
    }
    match state.store().close().await {
        Ok(()) => tracing::info!("database closed"),
        Err(e) => tracing::warn!(error = %e, "closing the database failed"),
    }
    result
}

/// Binds and serves with `config` until `shutdown` fires: the whole service.
pub async fn run(
    config: Config,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let listener = bind(&config).await?;
    serve(listener, state, &config, shutdown).await
}

/// Starts the reaper: every `interval`, marks agents that have passed their TTL and deletes
/// those expired for longer than `retention`. Stops when `shutdown` fires.
pub fn spawn_reaper(
    state: AppState,
    interval: Duration,
    retention: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            match state.store().reap(state.clock().now(), retention).await {
                Ok(outcome) => {
                    for (id, name) in &outcome.newly_expired {
                        tracing::info!(agent_id = %id, agent_name = %name, "agent expired");
                    }
                    for (id, name) in &outcome.deleted {
                        tracing::info!(agent_id = %id, agent_name = %name, "expired agent removed");
                    }
                    state.metrics().observe_reap(&outcome);
                }
                // /ready reports it; the next pass retries.
                Err(DbError::Unavailable(reason)) => {
                    tracing::debug!(%reason, "reaper skipped: database unavailable");
                }
                Err(e) => tracing::warn!(error = %e, "reaper pass failed"),
            }
        }
    })
}

/// SIGTERM and SIGINT handlers. Install them before announcing readiness: until then either
/// signal kills the process outright.
#[derive(Debug)]
pub struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers (needs a tokio runtime).
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
