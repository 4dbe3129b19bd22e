//! Fault injection layer: a fixed delay, then an abort, each for a fraction of requests.

use futures::future::Either;

use super::{LayerFuture, Next, Req, RouteCtx, answer, local_reply, stateless_layer};

stateless_layer!(
    /// Injects delays and aborts.
    FaultLayer,
    Fault
);

fn call<S: Next>(inner: &mut S, req: Req) -> LayerFuture<S::Future> {
    let Some(fault) = req
        .extensions()
        .get::<RouteCtx>()
        .and_then(|c| c.route.plan.fault.as_ref())
    else {
        return Either::Right(inner.call(req));
    };
    // Both draws are made now: they are independent, as in Envoy's fault filter.
    let delay = fault
        .delay
        .filter(|(_, fraction)| *fraction >= 1.0 || rand::random::<f64>() < *fraction)
        .map(|(d, _)| d);
    let abort = fault
        .abort
        .filter(|(_, fraction)| *fraction >= 1.0 || rand::random::<f64>() < *fraction)
        .map(|(status, _)| status);
    match (delay, abort) {
        (None, None) => Either::Right(inner.call(req)),
        (None, Some(status)) => answer(local_reply(status, "fault filter abort")),
        (Some(delay), abort) => {
            let mut inner = inner.clone();
            Either::Left(Box::pin(async move {
                tokio::time::sleep(delay).await;
                match abort {
                    Some(status) => Ok(local_reply(status, "fault filter abort")),
                    None => inner.call(req).await,
                }
            }))
        }
    }
}
