//! Retries with Envoy's semantics: `attempts` retries after the first try, on the
//! conditions of `retryOn`, each retry preferring endpoints not tried yet (Istio's
//! `previous_hosts` predicate), separated by a fully jittered exponential back-off
//! (25 ms base, 250 ms cap). Overflow and "no healthy upstream" answers are not retried.
//!
//! A request body is buffered (up to 64 KiB, Envoy's default buffer limit) so that it can be
//! sent again; a larger or unknown-length body is streamed and the request is not retried.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body as _;
use http_body_util::{BodyExt as _, Limited};

use http::request::Parts;

use tokio::time::Instant;

use super::{Deadlines, Exchange, Failure, Resp, balance, failure_reply};
use crate::body::ReqBody;
use crate::plan::{RetryOn, RetryPolicy};
use crate::table::Cluster;

/// Largest body buffered for retries.
const MAX_BUFFERED_BODY: u64 = 64 * 1024;
/// Envoy's default retry back-off base interval.
const BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Envoy's default maximum back-off (10 × base).
const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// The back-off before retry `n` (1-based): uniformly random in `[0, base × (2^n − 1))`, capped.
pub(crate) fn backoff(n: u32) -> Duration {
    let factor = (1u64 << n.min(16)) - 1;
    let upper = BACKOFF_BASE
        .saturating_mul(u32::try_from(factor).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX);
    let nanos = upper.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::random_range(0..nanos))
}

fn grpc_status(resp: &Resp) -> Option<u32> {
    resp.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Whether `resp` (the answer to one try, given by the gateway when `failure` says why) calls
/// for a retry under `policy`.
pub(crate) fn should_retry(policy: &RetryPolicy, resp: &Resp, failure: Option<Failure>) -> bool {
    let on = policy.on;
    if let Some(f) = failure {
        let reset_like =
            on.has(RetryOn::FIVE_XX) || on.has(RetryOn::GATEWAY_ERROR) || on.has(RetryOn::RESET);
        return match f {
            Failure::Connect => reset_like || on.has(RetryOn::CONNECT_FAILURE),
            Failure::RefusedStream => reset_like || on.has(RetryOn::REFUSED_STREAM),
            Failure::Reset | Failure::PerTryTimeout => reset_like,
            Failure::Overflow | Failure::NoHealthyUpstream | Failure::Timeout => false,
        };
    }
    let code = resp.status().as_u16();
    if on.has(RetryOn::FIVE_XX) && code >= 500 {
        return true;
    }
    if on.has(RetryOn::GATEWAY_ERROR) && matches!(code, 502..=504) {
        return true;
    }
    if on.has(RetryOn::RETRIABLE_4XX) && code == 409 {
        return true;
    }
    if on.has(RetryOn::STATUS_CODES) && policy.status_codes.contains(&code) {
        return true;
    }
    if let Some(g) = grpc_status(resp) {
        let bit = match g {
            1 => RetryOn::CANCELLED,
            4 => RetryOn::DEADLINE_EXCEEDED,
            8 => RetryOn::RESOURCE_EXHAUSTED,
            13 => RetryOn::INTERNAL,
            14 => RetryOn::UNAVAILABLE,
            _ => 0,
        };
        if on.has(bit) {
            return true;
        }
    }
    false
}

/// Every try of a request: one when the policy has no retries, else up to `attempts` more
/// while [`should_retry`] says so, all within the route timeout (`deadlines`; `start`: when
/// it began). The body is buffered (up to 64 KiB) so that it can be sent again; each try
/// borrows the head.
pub(crate) async fn tries(
    peer: SocketAddr,
    policy: &RetryPolicy,
    cluster: &Arc<Cluster>,
    parts: &mut Parts,
    body: ReqBody,
    start: Instant,
    deadlines: Deadlines,
) -> Exchange {
    let timed_out = || {
        let failure = Failure::Timeout;
        Exchange::local(failure_reply(failure), cluster, Some(failure))
    };
    // The body of the first try, when it cannot be sent twice; else the bytes every try sends.
    // (One call of `try_once` below: each call site would take its own room in this future.)
    let mut once = None;
    let mut replay: Option<Bytes> = None;
    let mut attempts = policy.attempts;
    match body {
        body if attempts == 0 => once = Some(body),
        ReqBody::Empty => {}
        ReqBody::Full(b) => replay = b,
        ReqBody::Stream(s) => {
            let small = s
                .size_hint()
                .upper()
                .is_some_and(|u| u <= MAX_BUFFERED_BODY);
            if small {
                let collect = Limited::new(s, MAX_BUFFERED_BODY as usize).collect();
                let collected = match deadlines.route {
                    Some(end) => match Box::pin(tokio::time::timeout_at(end, collect)).await {
                        Ok(r) => r,
                        Err(_) => return timed_out(),
                    },
                    None => Box::pin(collect).await,
                };
                match collected {
                    Ok(c) => replay = Some(c.to_bytes()),
                    Err(_) => {
                        let resp = super::local_reply(
                            http::StatusCode::BAD_REQUEST,
                            "error reading the request body",
                        );
                        return Exchange::local(resp, cluster, None);
                    }
                }
            } else {
                // Too big (or unknown) to replay: one try, streamed.
                once = Some(ReqBody::Stream(s));
                attempts = 0;
            }
        }
    }
    let mut tried = 0u64;
    let mut try_start = start;
    for attempt in 0..=attempts {
        let last = attempt == attempts;
        let b = match (once.take(), replay.as_ref()) {
            (Some(b), _) => b,
            (None, Some(b)) if !b.is_empty() => ReqBody::Full(Some(b.clone())),
            (None, _) => ReqBody::Empty,
        };
        // The answer lives in this block only: kept past the back-off's `.await`, it would take
        // room in this future's state.
        {
            let deadline = deadlines.for_try(try_start);
            let mut ex = balance::try_once(peer, cluster, deadline, parts, b, tried, last).await;
            if let Some(i) = ex.endpoint
                && i < 64
            {
                tried |= 1 << i;
            }
            if last || !should_retry(policy, &ex.resp, ex.failure) {
                ex.retried = attempt > 0;
                return ex;
            }
            cluster.service.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                cluster = %cluster.name,
                status = ex.resp.status().as_u16(),
                attempt,
                "retrying"
            );
        }
        let wake = Instant::now() + backoff(attempt + 1);
        match deadlines.route {
            Some(end) if end <= wake => {
                Box::pin(tokio::time::sleep_until(end)).await;
                return timed_out();
            }
            _ => Box::pin(tokio::time::sleep_until(wake)).await,
        }
        try_start = Instant::now();
    }
    unreachable!("the last try always returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_exponential_and_capped() {
        for _ in 0..200 {
            assert!(backoff(1) < Duration::from_millis(25));
            assert!(backoff(2) < Duration::from_millis(75));
            assert!(backoff(3) < Duration::from_millis(175));
            assert!(backoff(10) < Duration::from_millis(250));
        }
    }

    fn resp(code: u16, failure: Option<Failure>) -> (Resp, Option<Failure>) {
        let r = super::super::local_reply(http::StatusCode::from_u16(code).unwrap(), "");
        (r, failure)
    }

    #[test]
    fn retry_conditions() {
        let policy = |on: &str| {
            let (on, codes) = crate::plan::parse_retry_on(on, "t", &mut Vec::new());
            RetryPolicy {
                attempts: 2,
                per_try_timeout: None,
                on,
                status_codes: codes,
            }
        };
        let cases = [
            ("5xx", resp(500, None), true),
            ("5xx", resp(404, None), false),
            ("5xx", resp(503, Some(Failure::Connect)), true),
            ("gateway-error", resp(500, None), false),
            ("gateway-error", resp(502, None), true),
            (
                "gateway-error",
                resp(504, Some(Failure::PerTryTimeout)),
                true,
            ),
            ("connect-failure", resp(503, Some(Failure::Connect)), true),
            ("connect-failure", resp(503, None), false),
            ("connect-failure", resp(503, Some(Failure::Reset)), false),
            ("reset", resp(503, Some(Failure::Reset)), true),
            (
                "refused-stream",
                resp(503, Some(Failure::RefusedStream)),
                true,
            ),
            ("retriable-4xx", resp(409, None), true),
            ("retriable-4xx", resp(400, None), false),
            ("503", resp(503, None), true),
            ("5xx", resp(503, Some(Failure::Overflow)), false),
            ("5xx", resp(503, Some(Failure::NoHealthyUpstream)), false),
        ];
        for (on, r, want) in cases {
            assert_eq!(
                should_retry(&policy(on), &r.0, r.1),
                want,
                "{on} {}",
                r.0.status()
            );
        }
        // Istio's default policy retries 503s and connect failures, not 500s.
        let d = RetryPolicy::istio_default();
        for (r, want) in [
            (resp(503, None), true),
            (resp(503, Some(Failure::Connect)), true),
            (resp(500, None), false),
        ] {
            assert_eq!(should_retry(&d, &r.0, r.1), want);
        }
    }
}
