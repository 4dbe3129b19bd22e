//! Metrics layer: counts every request with the labels of the endpoint that served it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower::Service;

use super::{Next, ProxyFuture, Req, Resp, Served};
use crate::conns::ConnState;
use crate::server::Shared;

#[derive(Clone)]
pub(crate) struct ObserveLayer {
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
}

impl ObserveLayer {
    pub(crate) fn new(shared: Arc<Shared>, conn: Arc<ConnState>) -> Self {
        ObserveLayer { shared, conn }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            shared: self.shared.clone(),
            conn: self.conn.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The client connection: busy (no idle timeout) until the response body ends.
    conn: Arc<ConnState>,
}

/// Decrements the active-request gauge when the request ends, however it ends.
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.metrics.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S: Next> Service<Req> for Observe<S> {
    type Response = Resp;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> ProxyFuture {
        let start = Instant::now();
        self.shared.metrics.active.fetch_add(1, Ordering::Relaxed);
        let active = Active(self.shared.clone());
        let busy = self.conn.begin();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            let now = Instant::now();
            let code = resp.status().as_u16();
            match resp.extensions().get::<Served>() {
                Some(s) => s.series.record(code, s.retried, now - start, now),
                None => active.0.unknown.record(code, false, now - start, now),
            }
            drop(active);
            resp.body_mut().hold(busy);
            Ok(resp)
        })
    }
}
