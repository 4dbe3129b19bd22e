//! The upstream client: a lean connection pool per endpoint on hyper's connection-level API.
//!
//! HTTP/1.1: idle connections wait in the endpoint's pool; a request takes the most recently
//! used one (or connects within `connectTimeout`), and the connection goes back to the pool
//! when the response body has been read to its end. A request that a pooled connection closed
//! before sending is sent again on a fresh connection (it never reached the upstream).
//! HTTP/2 (prior knowledge): one multiplexed connection per endpoint, re-made when closed.
//! Transport errors become Envoy-style answers carrying a [`Failure`].

use std::convert::Infallible;
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tower::Service;

use super::{Failure, ProxyFuture, Req, Resp, RouteCtx, failure_reply, local_reply};
use crate::body::{InflightGuard, ReqBody, RespBody};
use crate::table::{Cluster, EndpointState, PooledConn};

/// The last service of the stack.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Upstream;

fn classify(e: &hyper::Error) -> Failure {
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(h2) = s.downcast_ref::<h2::Error>()
            && h2.reason() == Some(h2::Reason::REFUSED_STREAM)
        {
            return Failure::RefusedStream;
        }
        src = s.source();
    }
    Failure::Reset
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TokioIo<TcpStream>, Failure> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(TokioIo::new(stream))
        }
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "upstream connect failed");
            Err(Failure::Connect)
        }
        Err(_) => {
            tracing::debug!(%addr, "upstream connect timed out");
            Err(Failure::Connect)
        }
    }
}

/// An idle, usable HTTP/1.1 connection of the endpoint, if any.
async fn checkout(
    state: &EndpointState,
    idle_timeout: Duration,
) -> Option<http1::SendRequest<ReqBody>> {
    loop {
        let conn = state.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        if conn.sender.is_closed() || conn.since.elapsed() > idle_timeout {
            continue;
        }
        let mut sender = conn.sender;
        if sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
}

async fn new_h1(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<http1::SendRequest<ReqBody>, Failure> {
    let io = connect(addr, timeout).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|_| Failure::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

async fn send_h1(
    cluster: &Cluster,
    state: &Arc<EndpointState>,
    addr: SocketAddr,
    mut req: Req,
) -> Result<(hyper::Response<Incoming>, PooledConn), Failure> {
    let pool = &cluster.policy.pool;
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(pq);
    *req.version_mut() = Version::HTTP_11;
    loop {
        let (mut sender, pooled) = match checkout(state, pool.idle_timeout).await {
            Some(s) => (s, true),
            // Connecting is the rare path: boxed, so its large future does not make every
            // request's future (moved into a box per request) larger.
            None => (Box::pin(new_h1(addr, pool.connect_timeout)).await?, false),
        };
        match sender.try_send_request(req).await {
            Ok(resp) => {
                return Ok((
                    resp,
                    PooledConn {
                        state: state.clone(),
                        sender,
                    },
                ));
            }
            Err(mut e) => match e.take_message() {
                // A pooled connection closed under us before the request went out: try anew.
                Some(r) if pooled => req = r,
                _ => return Err(classify(e.error())),
            },
        }
    }
}

async fn send_h2(
    cluster: &Cluster,
    state: &EndpointState,
    addr: SocketAddr,
    authority: &http::uri::Authority,
    mut req: Req,
) -> Result<hyper::Response<Incoming>, Failure> {
    let pool = &cluster.policy.pool;
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority.clone());
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path make a valid URI");
    *req.version_mut() = Version::HTTP_2;
    req.headers_mut().remove(http::header::HOST);
    let existing = state
        .h2
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .filter(|s| !s.is_closed());
    let mut sender = match existing {
        Some(s) => s,
        None => {
            let io = connect(addr, pool.connect_timeout).await?;
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .handshake(io)
                .await
                .map_err(|_| Failure::Connect)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%addr, error = %e, "upstream HTTP/2 connection ended with an error");
                }
            });
            *state.h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender.clone());
            sender
        }
    };
    if sender.ready().await.is_err() {
        return Err(Failure::Reset);
    }
    sender.send_request(req).await.map_err(|e| classify(&e))
}

impl Service<Req> for Upstream {
    type Response = Resp;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Req) -> ProxyFuture {
        let Some(ctx) = req.extensions_mut().remove::<RouteCtx>() else {
            return Box::pin(async {
                Ok(local_reply(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "no route context",
                ))
            });
        };
        let Some(i) = ctx.endpoint else {
            return Box::pin(async {
                Ok(local_reply(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "no endpoint picked",
                ))
            });
        };
        // The upstream needs none of the gateway's bookkeeping.
        req.extensions_mut().clear();
        Box::pin(async move {
            let cluster = ctx.cluster();
            let ep = &cluster.endpoints[i];
            let result = if cluster.policy.pool.http2 {
                Box::pin(send_h2(cluster, &ep.state, ep.addr, &ep.authority, req))
                    .await
                    .map(|r| (r, None))
            } else {
                send_h1(cluster, &ep.state, ep.addr, req)
                    .await
                    .map(|(r, c)| (r, Some(c)))
            };
            match result {
                Ok((resp, conn)) => {
                    let mut resp = resp.map(RespBody::stream);
                    if conn.is_some() {
                        let mut guard = InflightGuard::default();
                        guard.conn = conn;
                        resp.body_mut().attach(guard);
                    }
                    Ok(resp)
                }
                Err(failure) => {
                    tracing::debug!(cluster = %cluster.name, endpoint = %ep.addr, ?failure, "upstream request failed");
                    Ok(failure_reply(failure))
                }
            }
        })
    }
}
