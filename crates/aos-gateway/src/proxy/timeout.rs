//! Route timeout layer: the whole exchange, every retry included, must produce response
//! headers within the route's `timeout` (Istio: disabled unless set), else 504.

use std::convert::Infallible;

use tower::ServiceExt as _;

use super::{Failure, Next, Req, Resp, RouteCtx, failure_reply, stateless_layer};

stateless_layer!(
    /// Cuts slow exchanges with 504.
    TimeoutLayer,
    Timeout
);

async fn handle<S: Next>(inner: S, req: Req) -> Result<Resp, Infallible> {
    let timeout = req
        .extensions()
        .get::<RouteCtx>()
        .and_then(|c| c.route.plan.timeout);
    match timeout {
        None => inner.oneshot(req).await,
        Some(t) => match tokio::time::timeout(t, inner.oneshot(req)).await {
            Ok(r) => r,
            Err(_) => Ok(failure_reply(Failure::Timeout)),
        },
    }
}
