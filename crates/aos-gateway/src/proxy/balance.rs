//! One try: pick the endpoint of the route's cluster (skipping ejected endpoints and, when
//! possible, those this request already tried), take a connection-pool slot, send within the
//! per-try timeout, and feed the outcome to outlier detection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::request::Parts;

use super::{Exchange, Failure, failure_reply, pool, upstream};
use crate::body::{InflightGuard, ReqBody};
use crate::table::{Cluster, Outcome, PickCtx};

/// Send one try of the request whose head is `parts` to an endpoint of `cluster`. `tried`: the
/// endpoints earlier tries went to (bit per index); `last`: no try follows (the head may be
/// consumed).
pub(crate) async fn try_once(
    peer: SocketAddr,
    cluster: &Arc<Cluster>,
    per_try_timeout: Option<Duration>,
    parts: &mut Parts,
    body: ReqBody,
    tried: u64,
    last: bool,
) -> Exchange {
    let pick = cluster.pick(&PickCtx {
        headers: &parts.headers,
        query: parts.uri.query(),
        peer,
        tried,
    });
    let Some(i) = pick else {
        let failure = Failure::NoHealthyUpstream;
        return Exchange::local(failure_reply(failure), cluster, Some(failure));
    };
    let ep = &cluster.endpoints[i];
    ep.state.active.fetch_add(1, Ordering::Relaxed);
    let mut guard = InflightGuard::default();
    guard.endpoint = Some(ep.state.clone());
    let result = match pool::admit(cluster, &mut guard) {
        pool::Admission::Go => Ok(()),
        pool::Admission::Overflow => Err(Failure::Overflow),
        // The rare path, boxed: the request's future stays small.
        pool::Admission::Wait(wait) => Box::pin(wait.acquire(&mut guard)).await,
    };
    let result = match (result, per_try_timeout) {
        (Err(f), _) => Err(f),
        (Ok(()), None) => upstream::send(cluster, i, parts, body, last).await,
        (Ok(()), Some(t)) => tokio::time::timeout(t, upstream::send(cluster, i, parts, body, last))
            .await
            .unwrap_or(Err(Failure::PerTryTimeout)),
    };
    let (mut resp, failure) = match result {
        Ok(resp) => {
            cluster.report(i, Outcome::Status(resp.status().as_u16()));
            (resp, None)
        }
        Err(f) => {
            if f != Failure::Overflow {
                cluster.report(i, Outcome::LocalFailure);
            }
            (failure_reply(f), Some(f))
        }
    };
    resp.body_mut().attach(guard);
    Exchange {
        resp,
        series: ep.series.clone(),
        endpoint: Some(i),
        retried: false,
        failure,
    }
}
