//! Connection-pool layer: Envoy's circuit breakers as Istio's `connectionPool` sets them.
//! `http2MaxRequests` caps requests in flight to the cluster; for HTTP/1.1 upstreams
//! `tcp.maxConnections` caps connections (one request each) and `http1MaxPendingRequests` caps
//! the requests waiting for one. Beyond the limits the request is shed at once with 503 and
//! `x-envoy-overloaded: true`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::Either;

use super::{
    Failure, LayerFuture, Next, Req, Resp, RouteCtx, answer, failure_reply, stateless_layer,
};
use crate::body::InflightGuard;
use crate::table::ClusterState;

stateless_layer!(
    /// Enforces connection-pool limits.
    PoolLayer,
    Pool
);

/// Counts a request waiting for a connection slot.
struct Pending(Arc<ClusterState>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

fn overflow(ctx: &RouteCtx) -> Resp {
    ctx.cluster()
        .service
        .overflows
        .fetch_add(1, Ordering::Relaxed);
    failure_reply(Failure::Overflow)
}

fn call<S: Next>(inner: &mut S, req: Req) -> LayerFuture<S::Future> {
    let Some(ctx) = req.extensions().get::<RouteCtx>() else {
        return Either::Right(inner.call(req));
    };
    let cluster = ctx.cluster();
    let limits = &cluster.policy.pool;
    let state = &cluster.state;
    let mut guard = InflightGuard::default();
    let n = state.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
    guard.cluster = Some(state.clone());
    if n > limits.max_requests {
        return answer(overflow(ctx));
    }
    if let Some(sem) = &state.connections {
        match sem.clone().try_acquire_owned() {
            Ok(p) => guard.permit = Some(p),
            Err(_) => {
                // Wait for a connection slot, if the queue has room (the rare path).
                let waiting = state.pending.fetch_add(1, Ordering::AcqRel) + 1;
                let pending = Pending(state.clone());
                if waiting > limits.max_pending_requests {
                    return answer(overflow(ctx));
                }
                let (sem, ctx) = (sem.clone(), ctx.clone());
                let mut inner = inner.clone();
                return Either::Left(Box::pin(async move {
                    match sem.acquire_owned().await {
                        Ok(p) => guard.permit = Some(p),
                        Err(_) => return Ok(overflow(&ctx)),
                    }
                    drop(pending);
                    let mut resp = inner.call(req).await?;
                    resp.body_mut().attach(guard);
                    Ok(resp)
                }));
            }
        }
    }
    let fut = inner.call(req);
    Either::Left(Box::pin(async move {
        let mut resp = fut.await?;
        resp.body_mut().attach(guard);
        Ok(resp)
    }))
}
