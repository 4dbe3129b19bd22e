//! Fault injection layer: a fixed delay, then an abort, each for a fraction of requests.

use std::convert::Infallible;

use tower::ServiceExt as _;

use super::{Next, Req, Resp, RouteCtx, local_reply, stateless_layer};

stateless_layer!(
    /// Injects delays and aborts.
    FaultLayer,
    Fault
);

async fn handle<S: Next>(inner: S, req: Req) -> Result<Resp, Infallible> {
    let fault = req
        .extensions()
        .get::<RouteCtx>()
        .and_then(|c| c.route.plan.fault.clone());
    let Some(fault) = fault else {
        return inner.oneshot(req).await;
    };
    if let Some((delay, fraction)) = fault.delay
        && (fraction >= 1.0 || rand::random::<f64>() < fraction)
    {
        tokio::time::sleep(delay).await;
    }
    if let Some((status, fraction)) = fault.abort
        && (fraction >= 1.0 || rand::random::<f64>() < fraction)
    {
        return Ok(local_reply(status, "fault filter abort"));
    }
    inner.oneshot(req).await
}
