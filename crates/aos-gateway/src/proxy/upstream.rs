//! The upstream client: a lean connection pool per endpoint.
//!
//! HTTP/1.1: the gateway's own client ([`super::h1`]): idle connections wait in the endpoint's
//! pool; a request takes the most recently used one (or connects within `connectTimeout`), and
//! the connection goes back to the pool when the response body has been read to its end.
//! HTTP/2 (prior knowledge): hyper's client, one multiplexed connection per endpoint, re-made
//! when closed.
//! Transport errors become Envoy-style answers carrying a [`Failure`].

use std::convert::Infallible;
use std::error::Error as _;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tower::Service;

use super::{
    Failure, ProxyFuture, Req, Resp, ReturnHead, ReturnedHead, RouteCtx, failure_reply, h1,
    local_reply,
};
use crate::body::RespBody;
use crate::table::{Cluster, EndpointState};

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
            let io = TokioIo::new(h1::connect_tcp(addr, pool.connect_timeout).await?);
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
        let return_head = req.extensions().get::<ReturnHead>().is_some();
        // The upstream needs none of the gateway's bookkeeping.
        req.extensions_mut().clear();
        Box::pin(async move {
            let cluster = ctx.cluster();
            let ep = &cluster.endpoints[i];
            let pool = &cluster.policy.pool;
            let mut head = None;
            let result = if pool.http2 {
                Box::pin(send_h2(cluster, &ep.state, ep.addr, &ep.authority, req))
                    .await
                    .map(|r| r.map(RespBody::stream))
            } else {
                let to = h1::ReturnTo {
                    pool: ep.state.clone(),
                    idle_timeout: pool.idle_timeout,
                };
                let (result, parts) = h1::send(
                    to,
                    ep.addr,
                    ep.authority.as_str(),
                    pool.connect_timeout,
                    req,
                )
                .await;
                if return_head {
                    head = Some(ReturnedHead(Box::new(parts)));
                }
                result.map(|r| r.map(RespBody::h1))
            };
            let mut resp = match result {
                Ok(resp) => resp,
                Err(failure) => {
                    tracing::debug!(cluster = %cluster.name, endpoint = %ep.addr, ?failure, "upstream request failed");
                    failure_reply(failure)
                }
            };
            if let Some(head) = head {
                resp.extensions_mut().insert(head);
            }
            Ok(resp)
        })
    }
}
