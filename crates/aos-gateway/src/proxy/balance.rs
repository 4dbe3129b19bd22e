//! One try: pick the endpoint of the route's cluster (skipping ejected endpoints and, when
//! possible, those this request already tried), take a connection-pool slot, send within the
//! per-try timeout, and feed the outcome to outlier detection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::request::Parts;
use tokio::time::Instant;

use super::{Exchange, Failure, failure_reply, pool, upstream};
use crate::body::{InflightGuard, ReqBody};
use crate::table::{Cluster, Outcome, PickCtx};

/// Send one try of the request whose head is `parts` to an endpoint of `cluster`. `deadline`:
/// when the try must have its answer's head (waiting for a connection slot included), and
/// the failure its expiry means; `tried`: the endpoints earlier tries went to (bit per index);
/// `last`: no try follows (the head may be consumed).
pub(crate) async fn try_once(
    peer: SocketAddr,
    cluster: &Arc<Cluster>,
    deadline: Option<(Instant, Failure)>,
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
        pool::Admission::Wait(wait) => match deadline {
            Some((at, expired)) => Box::pin(tokio::time::timeout_at(at, wait.acquire(&mut guard)))
                .await
                .unwrap_or(Err(expired)),
            None => Box::pin(wait.acquire(&mut guard)).await,
        },
    };
    let result = match (result, deadline) {
        (Err(f), _) => Err(f),
        (Ok(()), None) => upstream::send(cluster, i, parts, body, last).await,
        (Ok(()), Some((at, expired))) => {
            tokio::time::timeout_at(at, upstream::send(cluster, i, parts, body, last))
                .await
                .unwrap_or(Err(expired))
        }
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
