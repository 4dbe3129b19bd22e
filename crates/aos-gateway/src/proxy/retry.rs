//! Retry layer with Envoy's semantics: `attempts` retries after the first try, on the
//! conditions of `retryOn`, each retry preferring endpoints not tried yet (Istio's
//! `previous_hosts` predicate), separated by a fully jittered exponential back-off
//! (25 ms base, 250 ms cap). Overflow and "no healthy upstream" answers are not retried.
//!
//! A request body is buffered (up to 64 KiB, Envoy's default buffer limit) so that it can be
//! sent again; a larger or unknown-length body is streamed and the request is not retried.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::future::Either;
use http::Request;
use http_body::Body as _;
use http_body_util::{BodyExt as _, Limited};

use super::{
    Failure, LayerFuture, Next, Req, Resp, ReturnHead, ReturnedHead, RouteCtx, Served, Tried,
    stateless_layer,
};
use crate::body::ReqBody;
use crate::plan::{RetryOn, RetryPolicy};

stateless_layer!(
    /// Retries failed tries.
    RetryLayer,
    Retry
);

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

/// Whether `resp` (the answer to one try) calls for a retry under `policy`.
pub(crate) fn should_retry(policy: &RetryPolicy, resp: &Resp) -> bool {
    let on = policy.on;
    let failure = resp
        .extensions()
        .get::<Served>()
        .and_then(|s| s.failure)
        .or_else(|| resp.extensions().get::<Failure>().copied());
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

fn copy_request(parts: &http::request::Parts, body: &Option<Bytes>) -> Req {
    let body = match body {
        Some(b) if !b.is_empty() => ReqBody::Full(Some(b.clone())),
        _ => ReqBody::Empty,
    };
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req
}

fn call<S: Next>(inner: &mut S, req: Req) -> LayerFuture<S::Future> {
    let retries = req
        .extensions()
        .get::<RouteCtx>()
        .is_some_and(|c| c.route.plan.retry.attempts > 0);
    if !retries {
        return Either::Right(inner.call(req));
    }
    Either::Left(Box::pin(handle(inner.clone(), req)))
}

async fn handle<S: Next>(mut inner: S, req: Req) -> Result<Resp, Infallible> {
    let ctx = req
        .extensions()
        .get::<RouteCtx>()
        .cloned()
        .expect("checked by call");
    let policy = &ctx.route.plan.retry;
    let (parts, body) = req.into_parts();
    let body: Option<Bytes> = match body {
        ReqBody::Empty => None,
        ReqBody::Full(b) => b,
        ReqBody::Stream(s) => {
            let small = s
                .size_hint()
                .upper()
                .is_some_and(|u| u <= MAX_BUFFERED_BODY);
            if !small {
                // Too big (or unknown) to replay: one try, streamed.
                return inner
                    .call(Request::from_parts(parts, ReqBody::Stream(s)))
                    .await;
            }
            match Limited::new(s, MAX_BUFFERED_BODY as usize).collect().await {
                Ok(c) => Some(c.to_bytes()),
                Err(_) => {
                    return Ok(super::local_reply(
                        http::StatusCode::BAD_REQUEST,
                        "error reading the request body",
                    ));
                }
            }
        }
    };
    let cluster = ctx.cluster().clone();
    // The HTTP/1.1 client hands the request's head back with its answer, so a retry needs no
    // copy made in advance. A per-try timeout drops the try (and the head with it), and hyper's
    // HTTP/2 client consumes the head: then each try gets a copy.
    let reclaim = policy.per_try_timeout.is_none() && !cluster.policy.pool.http2;
    let mut tried = 0u64;
    let mut parts = Some(parts);
    for attempt in 0..=policy.attempts {
        let last = attempt == policy.attempts;
        let mut req = if last || reclaim {
            let mut p = parts.take().expect("the parts are here for each try");
            if attempt > 0 {
                // Reclaimed heads come back without the gateway's bookkeeping.
                p.extensions.insert(ctx.clone());
            }
            let b = match body.as_ref() {
                Some(b) if !b.is_empty() => ReqBody::Full(Some(b.clone())),
                _ => ReqBody::Empty,
            };
            Request::from_parts(p, b)
        } else {
            copy_request(
                parts
                    .as_ref()
                    .expect("the parts are kept until the last try"),
                &body,
            )
        };
        if tried != 0 {
            req.extensions_mut().insert(Tried(tried));
        }
        if reclaim && !last {
            req.extensions_mut().insert(ReturnHead);
        }
        let mut resp = inner.call(req).await?;
        if reclaim && !last {
            parts = resp.extensions_mut().remove::<ReturnedHead>().map(|h| *h.0);
        }
        if let Some(i) = resp.extensions().get::<Served>().and_then(|s| s.endpoint)
            && i < 64
        {
            tried |= 1 << i;
        }
        if !last && parts.is_some() && should_retry(policy, &resp) {
            cluster.service.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                cluster = %cluster.name,
                status = resp.status().as_u16(),
                attempt,
                "retrying"
            );
            drop(resp);
            tokio::time::sleep(backoff(attempt + 1)).await;
            continue;
        }
        if attempt > 0
            && let Some(s) = resp.extensions_mut().get_mut::<Served>()
        {
            s.retried = true;
        }
        return Ok(resp);
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

    fn resp(code: u16, failure: Option<Failure>) -> Resp {
        let mut r = super::super::local_reply(http::StatusCode::from_u16(code).unwrap(), "");
        if let Some(f) = failure {
            r.extensions_mut().insert(f);
        }
        r
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
            assert_eq!(should_retry(&policy(on), &r), want, "{on} {}", r.status());
        }
        // Istio's default policy retries 503s and connect failures, not 500s.
        let d = RetryPolicy::istio_default();
        assert!(should_retry(&d, &resp(503, None)));
        assert!(should_retry(&d, &resp(503, Some(Failure::Connect))));
        assert!(!should_retry(&d, &resp(500, None)));
    }
}
