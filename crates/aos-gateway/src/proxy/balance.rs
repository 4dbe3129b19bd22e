//! Load-balancing layer: picks the endpoint of the route's cluster for one try (skipping
//! ejected endpoints and, when possible, those this request already tried), applies the
//! per-try timeout, and feeds the outcome to outlier detection.

use std::sync::atomic::Ordering;

use futures::future::Either;

use super::{
    Failure, LayerFuture, Next, Req, RouteCtx, Served, Tried, answer, failure_reply,
    stateless_layer,
};
use crate::body::InflightGuard;
use crate::table::{Outcome, PickCtx};

stateless_layer!(
    /// Picks an endpoint per try.
    BalanceLayer,
    Balance
);

fn call<S: Next>(inner: &mut S, mut req: Req) -> LayerFuture<S::Future> {
    let Some(ctx) = req.extensions().get::<RouteCtx>() else {
        return Either::Right(inner.call(req));
    };
    let cluster = ctx.cluster().clone();
    let per_try_timeout = ctx.route.plan.retry.per_try_timeout;
    let tried = req.extensions().get::<Tried>().map_or(0, |t| t.0);
    let pick = cluster.pick(&PickCtx {
        headers: req.headers(),
        query: req.uri().query(),
        peer: ctx.peer,
        tried,
    });
    let Some(i) = pick else {
        let mut resp = failure_reply(Failure::NoHealthyUpstream);
        resp.extensions_mut().insert(Served {
            series: cluster.local_series.clone(),
            endpoint: None,
            retried: false,
            failure: Some(Failure::NoHealthyUpstream),
        });
        return answer(resp);
    };
    if let Some(c) = req.extensions_mut().get_mut::<RouteCtx>() {
        c.endpoint = Some(i);
    }
    let ep = &cluster.endpoints[i];
    ep.state.active.fetch_add(1, Ordering::Relaxed);
    let mut guard = InflightGuard::default();
    guard.endpoint = Some(ep.state.clone());
    let call = inner.call(req);
    Either::Left(Box::pin(async move {
        let mut resp = match per_try_timeout {
            Some(t) => match tokio::time::timeout(t, call).await {
                Ok(r) => r?,
                Err(_) => failure_reply(Failure::PerTryTimeout),
            },
            None => call.await?,
        };
        let failure = resp.extensions().get::<Failure>().copied();
        match failure {
            None => cluster.report(i, Outcome::Status(resp.status().as_u16())),
            Some(Failure::Overflow) => {}
            Some(_) => cluster.report(i, Outcome::LocalFailure),
        }
        resp.body_mut().attach(guard);
        resp.extensions_mut().insert(Served {
            series: cluster.endpoints[i].series.clone(),
            endpoint: Some(i),
            retried: false,
            failure,
        });
        Ok(resp)
    }))
}
