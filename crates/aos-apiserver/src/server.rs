//! The listener: TCP accept, plain-HTTP detection, TLS, HTTP/1.1 and HTTP/2, drain.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::error::ApiServerError;
use crate::router::{AppState, router};

/// How long a client may take to start TLS.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 keep-alive ping interval.
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);
/// How long requests in flight get after shutdown before connections are dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a plain-HTTP client gets: Go's net/http and Kubernetes answer the same.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> Result<(), ApiServerError> {
    let acceptor = TlsAcceptor::from(tls);
    let app = router(state.clone());
    let graceful = GracefulShutdown::new();
    state.set_ready();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Some(tls) = handshake(stream, &acceptor, &conn_shutdown).await else {
                return;
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // A client gets 30 s to send request headers; idle HTTP/2 peers are pinged.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(HTTP2_KEEPALIVE));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Watches observe this token and end their streams.
    state.shutdown.cancel();
    tracing::info!("API server draining");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("API server drain timed out; closing remaining connections");
    }
    tracing::info!("API server stopped");
    Ok(())
}

/// Detect plain HTTP (answer 400 and close) and run the TLS handshake.
async fn handshake(
    mut stream: TcpStream,
    acceptor: &TlsAcceptor,
    shutdown: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        () = shutdown.cancelled() => return None,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)) => r,
    };
    match peeked {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    // A TLS connection starts with a handshake record (0x16); an HTTP request with a method.
    if first[0] != 0x16 {
        if first[0].is_ascii_uppercase() {
            // Consume the request head first so closing does not reset the connection
            // before the client reads the answer.
            let mut buf = vec![0u8; 16 * 1024];
            let _ = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await;
            let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
            let _ = stream.shutdown().await;
        }
        return None;
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}
