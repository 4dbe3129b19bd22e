//! The request path: one future per request that runs each concern in turn.
//!
//! [`Proxy`] is the hyper `Service` called for every request of a client connection. Its
//! future ([`handle`]) is the whole exchange, one step per module, in Envoy's filter order:
//!
//! 1. metrics: active requests, then count and duration per served endpoint, code and
//!    `retried` ([`handle`]);
//! 2. router: Host → virtual host → first matching route of the current table snapshot (404
//!    when none), redirects and direct responses, weighted destination, rewrites, header
//!    operations, `x-forwarded-for` ([`route`]);
//! 3. CORS: preflights from allowed origins answered, CORS headers on responses ([`cors`]);
//! 4. fault injection: delays and aborts for a percentage of requests ([`fault`]);
//! 5. retries per `retryOn` with jittered exponential back-off ([`retry`]), all within the
//!    route timeout (504);
//! 6. per try: load balancing (skipping ejected endpoints), connection-pool limits (503 with
//!    `x-envoy-overloaded`), the upstream client, outlier-detection bookkeeping ([`balance`],
//!    [`pool`], [`upstream`]), within the try's deadline: the per-try timeout or the route
//!    timeout's end, whichever comes first (one timer per try, [`Deadlines`]).
//!
//! The steps hand each other plain values (the matched route, the chosen endpoint, who answered
//! and why) rather than boxed futures and request extensions: a request costs one allocation
//! for its future, and the state every step needs is a field of that future. Every failure is
//! an HTTP answer (as Envoy gives one), never a dropped connection: the error type is
//! `Infallible`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::{ReqBody, RespBody};
use crate::conns::ConnState;
use crate::metrics::{Metrics, RequestSeries};
use crate::server::Shared;
use crate::table::Cluster;

mod balance;
mod cors;
mod fault;
pub(crate) mod h1;
mod pool;
mod retry;
mod route;
mod upstream;

pub(crate) use h1::{Body as H1Body, BodyError as H1BodyError, Pool as H1Pool};

#[cfg(test)]
pub(crate) type Req = Request<ReqBody>;
pub(crate) type Resp = Response<RespBody>;
pub(crate) type ProxyFuture = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

/// Why the gateway answered instead of the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection to the upstream could not be made.
    Connect,
    /// The upstream reset or closed the connection before answering.
    Reset,
    /// An HTTP/2 stream was refused (`REFUSED_STREAM`).
    RefusedStream,
    /// The per-try timeout elapsed.
    PerTryTimeout,
    /// The route timeout elapsed.
    Timeout,
    /// A connection-pool limit shed the request.
    Overflow,
    /// Every endpoint is ejected, or there is none.
    NoHealthyUpstream,
}

/// The answer to a request, with who gave it (for the metrics and the retry policy).
pub(crate) struct Exchange {
    pub resp: Resp,
    /// The series the request is counted in: the endpoint's, or the cluster's local one.
    pub series: Arc<RequestSeries>,
    /// The endpoint that answered (or was picked when the gateway answered for it).
    pub endpoint: Option<usize>,
    pub retried: bool,
    /// Why the gateway answered instead of the upstream.
    pub failure: Option<Failure>,
}

impl Exchange {
    /// An answer the gateway gave for `cluster` without reaching an endpoint.
    pub(crate) fn local(resp: Resp, cluster: &Cluster, failure: Option<Failure>) -> Self {
        Exchange {
            resp,
            series: cluster.local_series.clone(),
            endpoint: None,
            retried: false,
            failure,
        }
    }
}

/// The request's time limits: the route timeout's end, over every try and the back-off between
/// them (Istio: none unless set), and the per-try timeout. One timer per try serves both.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadlines {
    pub route: Option<Instant>,
    pub per_try: Option<Duration>,
}

impl Deadlines {
    /// When a try that starts at `now` must have its answer's head, and what its expiry means.
    pub(crate) fn for_try(&self, now: Instant) -> Option<(Instant, Failure)> {
        match (self.per_try.map(|t| now + t), self.route) {
            (Some(p), Some(r)) if r <= p => Some((r, Failure::Timeout)),
            (Some(p), _) => Some((p, Failure::PerTryTimeout)),
            (None, Some(r)) => Some((r, Failure::Timeout)),
            (None, None) => None,
        }
    }
}

/// A local answer, as Envoy words them.
pub(crate) fn local_reply(status: StatusCode, body: &'static str) -> Resp {
    let mut resp = Response::new(RespBody::full(body));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    resp
}

/// A local answer caused by `failure`.
pub(crate) fn failure_reply(failure: Failure) -> Resp {
    let (status, body) = match failure {
        Failure::Connect => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        ),
        Failure::Reset => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
        ),
        Failure::RefusedStream => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset",
        ),
        Failure::PerTryTimeout | Failure::Timeout => {
            (StatusCode::GATEWAY_TIMEOUT, "upstream request timeout")
        }
        Failure::Overflow => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        ),
        Failure::NoHealthyUpstream => (StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream"),
    };
    let mut resp = local_reply(status, body);
    if failure == Failure::Overflow {
        resp.headers_mut()
            .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
    }
    resp
}

thread_local! {
    /// The proxy worker this thread runs (0 outside workers).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Mark this thread as proxy worker `i`: it keeps its own idle upstream connections.
pub(crate) fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// The proxy worker this thread runs.
pub(crate) fn worker() -> usize {
    WORKER.with(std::cell::Cell::get)
}

/// What every request of one client connection shares.
pub(crate) struct ConnCtx {
    shared: Arc<Shared>,
    /// Busy (no idle timeout) from a request's head to its response's end.
    conn: Arc<ConnState>,
    peer: SocketAddr,
    /// The peer's address as an `x-forwarded-for` value.
    peer_ip: HeaderValue,
}

/// The proxy's service for one client connection.
#[derive(Clone)]
pub(crate) struct Proxy(Arc<ConnCtx>);

impl Proxy {
    /// The service for a connection from `peer`.
    pub(crate) fn new(shared: Arc<Shared>, peer: SocketAddr, conn: Arc<ConnState>) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        Proxy(Arc::new(ConnCtx {
            shared,
            conn,
            peer,
            peer_ip,
        }))
    }

    /// The future of one request.
    fn serve(&self, req: Request<Incoming>) -> ProxyFuture {
        let (head, body) = req.into_parts();
        Box::pin(handle(self.0.clone(), head, body))
    }
}

/// hyper's `Service`, not tower's: hyper-util's `TowerToHyperService` adapter clones the service
/// for every request and drives its future through a `Oneshot` (in the profile: a clone, a drop
/// and a copy of the request per call).
impl hyper::service::Service<Request<Incoming>> for Proxy {
    type Response = Resp;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn call(&self, req: Request<Incoming>) -> ProxyFuture {
        self.serve(req)
    }
}

/// Decrements the active-request gauge when the request ends, however it ends.
struct Active<'a>(&'a Metrics);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request, from its head to its answer's head.
///
/// A plain function returning an `async move` block rather than an `async fn`: an `async fn`
/// keeps a copy of its arguments for its whole life besides the locals it moves them into, and
/// the head is the largest of them.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would hold the arguments twice"
)]
fn handle(
    cx: Arc<ConnCtx>,
    mut head: http::request::Parts,
    body: Incoming,
) -> impl Future<Output = Result<Resp, Infallible>> + Send {
    async move {
        let start = Instant::now();
        let metrics = &*cx.shared.metrics;
        metrics.active.fetch_add(1, Ordering::Relaxed);
        let active = Active(metrics);
        let busy = cx.conn.begin();
        // Each step borrows the head. The client's body is passed on as a stream (buffered
        // only for retries).
        let ex = route::serve(&cx, &mut head, ReqBody::from_incoming(body), start).await;
        let now = Instant::now();
        let mut resp = ex.resp;
        ex.series
            .record(resp.status().as_u16(), ex.retried, now - start, now);
        drop(active);
        resp.body_mut().hold(busy);
        Ok(resp)
    }
}
