//! The request path: a tower stack, one layer per concern (see [`stack`]).
//!
//! Layers pass the matched route down in the request's extensions ([`RouteCtx`]) and report
//! back up in the response's extensions ([`Served`]: which endpoint answered, whether the
//! request was retried, which local failure produced the answer). Every layer's error type is
//! `Infallible`: a failure is an HTTP answer (as Envoy gives one), never a dropped connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use tower::{Service, ServiceBuilder};

use crate::body::{ReqBody, RespBody};
use crate::conns::ConnState;
use crate::metrics::RequestSeries;
use crate::server::Shared;
use crate::table::{Cluster, Route};

mod balance;
mod cors;
mod fault;
mod h1;
mod observe;
mod pool;
mod retry;
mod route;
mod timeout;
mod upstream;

pub(crate) use h1::{Body as H1Body, BodyError as H1BodyError, Pool as H1Pool};

pub(crate) type Req = Request<ReqBody>;
pub(crate) type Resp = Response<RespBody>;
pub(crate) type ProxyFuture = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

/// What a layer's `call` returns: its own boxed future, or the inner service's future as it is
/// when the layer has nothing to do for this request (no allocation, no copy of the request).
///
/// Layers do their per-request work in `call`, before they call the inner service, so that
/// the futures they box hold the inner future and a few words of state, never the request:
/// the profile of the benchmark showed the copies of request-holding futures into their boxes
/// as the largest user-space cost after the kernel.
pub(crate) type LayerFuture<F> = futures::future::Either<ProxyFuture, F>;

/// The inner service every layer wraps. Every service of the stack is always ready (its
/// `poll_ready` returns `Ready` at once), so layers call their inner service directly.
pub(crate) trait Next:
    Service<Req, Response = Resp, Error = Infallible, Future: Send + 'static> + Clone + Send + 'static
{
}

impl<T> Next for T where
    T: Service<Req, Response = Resp, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// A boxed future that answers at once.
pub(crate) fn answer<F>(resp: Resp) -> LayerFuture<F> {
    futures::future::Either::Left(Box::pin(std::future::ready(Ok(resp))))
}

/// The matched route and chosen destination, for the layers below the router.
#[derive(Clone)]
pub(crate) struct RouteCtx {
    pub route: Arc<Route>,
    pub dest: usize,
    pub peer: SocketAddr,
    /// The endpoint the load balancer picked for this try.
    pub endpoint: Option<usize>,
}

impl RouteCtx {
    pub(crate) fn cluster(&self) -> &Arc<Cluster> {
        &self.route.dests[self.dest].cluster
    }
}

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

/// Who answered a request.
#[derive(Clone)]
pub(crate) struct Served {
    pub series: Arc<RequestSeries>,
    pub endpoint: Option<usize>,
    pub retried: bool,
    pub failure: Option<Failure>,
}

/// Asks the upstream client to hand the request's head back with the answer (for a retry).
#[derive(Clone, Copy)]
pub(crate) struct ReturnHead;

/// The request's head, handed back with the answer; its extensions are empty.
#[derive(Clone)]
pub(crate) struct ReturnedHead(pub Box<http::request::Parts>);

/// Endpoints already tried by this request (bit per endpoint index).
#[derive(Clone, Copy)]
pub(crate) struct Tried(pub u64);

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
    resp.extensions_mut().insert(failure);
    resp
}

/// The proxy's service for one client connection from `peer`.
pub(crate) fn stack(
    shared: Arc<Shared>,
    peer: SocketAddr,
    conn: Arc<ConnState>,
) -> impl Service<Request<Incoming>, Response = Resp, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ 'static {
    ServiceBuilder::new()
        // The client's body is passed on as a stream (buffered only by the retry layer).
        .map_request(|r: Request<Incoming>| r.map(ReqBody::from_incoming))
        // Metrics: active requests; count and duration per served endpoint, code and `retried`.
        // The connection's idle timeout stops from the request's head to its response's end.
        .layer(observe::ObserveLayer::new(shared.clone(), conn))
        // Router: Host → virtual host → first matching route of the current table snapshot
        // (404 when none); redirects and direct responses; weighted destination; rewrites and
        // header operations; x-forwarded-for.
        .layer(route::RouteLayer::new(shared, peer))
        // CORS: preflights from allowed origins answered here; CORS headers on responses.
        .layer(cors::CorsLayer)
        // Fault injection: fixed delays and aborts for a percentage of requests.
        .layer(fault::FaultLayer)
        // Route timeout, covering every try: 504.
        .layer(timeout::TimeoutLayer)
        // Retries per `retryOn`, with jittered exponential back-off (25 ms base, 250 ms max).
        .layer(retry::RetryLayer)
        // Load balancing: pick an endpoint (skipping ejected ones), per-try timeout, outlier
        // detection bookkeeping.
        .layer(balance::BalanceLayer)
        // Connection pool limits (Envoy's circuit breakers): 503 + x-envoy-overloaded on overflow.
        .layer(pool::PoolLayer)
        // The upstream HTTP client: keep-alive pool per upstream, HTTP/1.1 or HTTP/2.
        .service(upstream::Upstream)
}

/// Define a stateless layer and its service type.
macro_rules! stateless_layer {
    ($(#[$m:meta])* $layer:ident, $svc:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default)]
        pub(crate) struct $layer;

        impl<S> tower::Layer<S> for $layer {
            type Service = $svc<S>;
            fn layer(&self, inner: S) -> $svc<S> {
                $svc { inner }
            }
        }

        #[derive(Clone)]
        pub(crate) struct $svc<S> {
            inner: S,
        }

        impl<S: crate::proxy::Next> tower::Service<crate::proxy::Req> for $svc<S> {
            type Response = crate::proxy::Resp;
            type Error = std::convert::Infallible;
            type Future = crate::proxy::LayerFuture<S::Future>;

            fn poll_ready(
                &mut self,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Self::Error>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, req: crate::proxy::Req) -> Self::Future {
                call(&mut self.inner, req)
            }
        }
    };
}
pub(crate) use stateless_layer;
