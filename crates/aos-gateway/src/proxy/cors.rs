//! CORS, with the semantics of Envoy's CORS filter as Istio configures it: a preflight
//! (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed origin is
//! answered here with the policy's methods, headers and max age; other requests from an allowed
//! origin get `Access-Control-Allow-Origin` (and expose/credentials headers) on the response.
//! Requests from other origins pass through untouched.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use http::request::Parts;

use super::{Resp, local_reply};
use crate::plan::CorsPlan;

/// What the CORS policy makes of a request.
pub(crate) enum Check {
    /// Not a request from an allowed origin: nothing to do.
    Pass,
    /// A preflight from this allowed origin: answer it with [`preflight`].
    Preflight(HeaderValue),
    /// A request from this allowed origin: decorate its response.
    Allowed(HeaderValue),
}

/// Check a request against the route's policy.
pub(crate) fn check(cors: &CorsPlan, req: &Parts) -> Check {
    let origin = match req.headers.get(header::ORIGIN) {
        Some(o) if o.to_str().is_ok_and(|o| cors.allows(o)) => o.clone(),
        _ => return Check::Pass,
    };
    let preflight = req.method == Method::OPTIONS
        && req
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        Check::Preflight(origin)
    } else {
        Check::Allowed(origin)
    }
}

/// The answer to a preflight from an allowed `origin`.
pub(crate) fn preflight(cors: &CorsPlan, origin: HeaderValue) -> Resp {
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
    resp
}

/// The CORS headers on the response to a request from an allowed `origin`.
pub(crate) fn decorate(cors: &CorsPlan, origin: HeaderValue, h: &mut HeaderMap) {
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
}
