//! The `healthcheck` subcommand: a minimal HTTP client for the image's `HEALTHCHECK`, since a
//! `FROM scratch` image has no curl.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Why the health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// No connection could be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("request to {addr} failed: {source}")]
    Http {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        source: hyper::Error,
    },
    /// The request could not be built.
    #[error("cannot build request: {0}")]
    Request(#[from] http::Error),
    /// The service answered, not with 200.
    #[error("{addr} answered {status}")]
    Status {
        /// The address tried.
        addr: SocketAddr,
        /// The status it answered with.
        status: http::StatusCode,
    },
    /// The service did not answer in time.
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout {
        /// The address tried.
        addr: SocketAddr,
        /// The time allowed.
        timeout: Duration,
    },
    /// The configured port is 0, so there is no fixed port to check.
    #[error("PORT is 0: no fixed port to check")]
    NoPort,
}

/// The address a local health check should connect to, for a service listening on `listen`:
/// loopback when it listens on every address.
pub fn target(listen: SocketAddr) -> Result<SocketAddr, HealthcheckError> {
    if listen.port() == 0 {
        return Err(HealthcheckError::NoPort);
    }
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, listen.port()))
}

/// `GET http://addr/health`; `Ok` on 200 within `timeout`.
pub async fn check(addr: SocketAddr, timeout: Duration) -> Result<(), HealthcheckError> {
    tokio::time::timeout(timeout, get_health(addr))
        .await
        .map_err(|_| HealthcheckError::Timeout { addr, timeout })?
}

async fn get_health(addr: SocketAddr) -> Result<(), HealthcheckError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| HealthcheckError::Connect { addr, source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| HealthcheckError::Http { addr, source })?;
    let conn = tokio::spawn(conn);
    let request = http::Request::get("/health")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, "agent-registry-healthcheck")
        .body(Empty::<Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|source| HealthcheckError::Http { addr, source })?;
    let status = response.status();
    // Read the body so the exchange completes cleanly; its content does not matter.
    let _ = response.into_body().collect().await;
    drop(sender);
    conn.abort();
    if status == http::StatusCode::OK {
        Ok(())
    } else {
        Err(HealthcheckError::Status { addr, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |s: &str| target(s.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(t("0.0.0.0:3000").unwrap(), "127.0.0.1:3000");
        assert_eq!(t("[::]:3000").unwrap(), "[::1]:3000");
        assert_eq!(t("10.1.2.3:8080").unwrap(), "10.1.2.3:8080");
        assert!(matches!(t("0.0.0.0:0"), Err(HealthcheckError::NoPort)));
    }

    #[tokio::test]
    async fn refused_connection_fails() {
        // Bind then drop a listener so the port is (very likely) closed.
        let addr = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        assert!(matches!(
            check(addr, Duration::from_secs(5)).await,
            Err(HealthcheckError::Connect { .. })
        ));
    }
}
