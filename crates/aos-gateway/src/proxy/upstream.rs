//! The upstream clients: a lean connection pool per endpoint.
//!
//! HTTP/1.1: the gateway's own client ([`super::h1`]): idle connections wait in the endpoint's
//! pool; a request takes the most recently used one (or connects within `connectTimeout`), and
//! the connection goes back to the pool when the response body has been read to its end.
//! HTTP/2 (prior knowledge): hyper's client, one multiplexed connection per endpoint, re-made
//! when closed.
//! Transport errors become Envoy-style answers carrying a [`Failure`].

use std::error::Error as _;
use std::net::SocketAddr;
use std::time::Duration;

use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::{Failure, Resp, h1};
use crate::body::{ReqBody, RespBody};
use crate::table::{Cluster, EndpointState};

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
    mut req: Request<ReqBody>,
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

/// Send a request to endpoint `i` of `cluster`. The head stays with the caller for another try,
/// unless this is the `last` try of an HTTP/2 request (hyper's client consumes the head; earlier
/// tries send a copy).
pub(crate) async fn send(
    cluster: &Cluster,
    i: usize,
    parts: &mut Parts,
    mut body: ReqBody,
    last: bool,
) -> Result<Resp, Failure> {
    let ep = &cluster.endpoints[i];
    let pool = &cluster.policy.pool;
    let result = if pool.http2 {
        let req = if last {
            let head = std::mem::replace(parts, Request::new(()).into_parts().0);
            Request::from_parts(head, body)
        } else {
            copy_request(parts, body)
        };
        // Boxed: the HTTP/2 client's futures would make every request's future larger.
        Box::pin(send_h2(cluster, &ep.state, ep.addr, &ep.authority, req))
            .await
            .map(|r| r.map(RespBody::stream))
    } else {
        let to = h1::ReturnTo {
            pool: ep.state.clone(),
            idle_timeout: pool.idle_timeout,
        };
        h1::send_parts(
            to,
            ep.addr,
            ep.authority.as_str(),
            pool.connect_timeout,
            parts,
            &mut body,
        )
        .await
        .map(|r| r.map(RespBody::h1))
    };
    if let Err(failure) = result {
        tracing::debug!(cluster = %cluster.name, endpoint = %ep.addr, ?failure, "upstream request failed");
    }
    result
}

fn copy_request(parts: &Parts, body: ReqBody) -> Request<ReqBody> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req
}
