//! Route timeout layer: the whole exchange, every retry included, must produce response
//! headers within the route's `timeout` (Istio: disabled unless set), else 504.

use futures::future::Either;

use super::{Failure, LayerFuture, Next, Req, RouteCtx, failure_reply, stateless_layer};

stateless_layer!(
    /// Cuts slow exchanges with 504.
    TimeoutLayer,
    Timeout
);

fn call<S: Next>(inner: &mut S, req: Req) -> LayerFuture<S::Future> {
    let timeout = req
        .extensions()
        .get::<RouteCtx>()
        .and_then(|c| c.route.plan.timeout);
    let fut = inner.call(req);
    match timeout {
        None => Either::Right(fut),
        Some(t) => Either::Left(Box::pin(async move {
            match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Ok(failure_reply(Failure::Timeout)),
            }
        })),
    }
}
