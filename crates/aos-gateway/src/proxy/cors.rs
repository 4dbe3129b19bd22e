//! CORS layer, with the semantics of Envoy's CORS filter as Istio configures it: a preflight
//! (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed origin is
//! answered here with the policy's methods, headers and max age; other requests from an allowed
//! origin get `Access-Control-Allow-Origin` (and expose/credentials headers) on the response.
//! Requests from other origins pass through untouched.

use futures::future::Either;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};

use super::{LayerFuture, Next, Req, RouteCtx, answer, local_reply, stateless_layer};

stateless_layer!(
    /// Answers CORS preflights and decorates responses.
    CorsLayer,
    Cors
);

fn call<S: Next>(inner: &mut S, req: Req) -> LayerFuture<S::Future> {
    let Some(route) = req
        .extensions()
        .get::<RouteCtx>()
        .filter(|c| c.route.plan.cors.is_some())
        .map(|c| c.route.clone())
    else {
        return Either::Right(inner.call(req));
    };
    let cors = route.plan.cors.as_ref().expect("checked above");
    let origin = match req.headers().get(header::ORIGIN) {
        Some(o) if o.to_str().is_ok_and(|o| cors.allows(o)) => o.clone(),
        _ => return Either::Right(inner.call(req)),
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut resp = local_reply(StatusCode::OK, "");
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if let Some(m) = &cors.allow_methods {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m.clone());
        }
        if let Some(a) = &cors.allow_headers {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, a.clone());
        }
        if let Some(m) = &cors.max_age {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, m.clone());
        }
        if cors.allow_credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        return answer(resp);
    }
    let fut = inner.call(req);
    Either::Left(Box::pin(async move {
        let mut resp = fut.await?;
        let cors = route.plan.cors.as_ref().expect("checked above");
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if let Some(e) = &cors.expose_headers {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
        if cors.allow_credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        Ok(resp)
    }))
}
