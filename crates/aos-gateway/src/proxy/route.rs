//! The router: host and route matching on the current table snapshot, the request's
//! preparation for the upstream, and the response's header operations.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, StatusCode, Uri};

use http::request::Parts;
use tokio::time::Instant;

use super::{ConnCtx, Deadlines, Exchange, Resp, cors, fault, local_reply, retry};
use crate::body::ReqBody;
use crate::body::RespBody;
use crate::matcher::StrMatch;
use crate::plan::{Action, RedirectPlan, RequestMatch};
use crate::table::Route;

/// The request's host, lowercase, and the port it names.
fn request_host(req: &Parts) -> (Cow<'_, str>, Option<u16>, &str) {
    let raw = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let (host, port) = split_host_port(raw);
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    (host, port, raw)
}

/// `host:port` → (`host`, port); `[v6]:port` → (`[v6]`, port).
pub(crate) fn split_host_port(raw: &str) -> (&str, Option<u16>) {
    if raw.starts_with('[') {
        return match raw.find(']') {
            Some(end) => {
                let port = raw[end + 1..]
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok());
                (&raw[..=end], port)
            }
            None => (raw, None),
        };
    }
    match raw.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h, p.parse().ok())
        }
        _ => (raw.trim_end_matches('.'), None),
    }
}

fn query_value<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether one `HTTPMatchRequest` holds for the request.
pub(crate) fn request_matches(
    m: &RequestMatch,
    req: &Parts,
    port: Option<u16>,
    authority: &str,
) -> bool {
    let uri = &req.uri;
    if let Some(u) = &m.uri {
        let path = uri.path();
        let ok = if m.ignore_uri_case {
            u.matches_ignore_case(path)
        } else {
            u.matches(path)
        };
        if !ok {
            return false;
        }
    }
    if let Some(me) = &m.method
        && !me.matches(req.method.as_str())
    {
        return false;
    }
    if let Some(s) = &m.scheme
        && !s.matches(uri.scheme_str().unwrap_or("http"))
    {
        return false;
    }
    if let Some(a) = &m.authority
        && !a.matches(authority)
    {
        return false;
    }
    if let Some(p) = m.port
        && port != Some(p)
    {
        return false;
    }
    for (name, sm) in &m.headers {
        match header_str(&req.headers, name) {
            Some(v) if sm.matches(v) => {}
            _ => return false,
        }
    }
    for (name, sm) in &m.without_headers {
        if header_str(&req.headers, name).is_some_and(|v| sm.matches(v)) {
            return false;
        }
    }
    for (key, sm) in &m.query_params {
        match query_value(uri.query(), key) {
            Some(v) if sm.matches(v) => {}
            _ => return false,
        }
    }
    true
}

/// The first route whose match list holds, and which of its matches held.
fn find_route<'a>(
    routes: &'a [Arc<Route>],
    req: &Parts,
    port: Option<u16>,
    authority: &str,
) -> Option<(&'a Arc<Route>, Option<&'a RequestMatch>)> {
    for r in routes {
        if r.plan.matches.is_empty() {
            return Some((r, None));
        }
        if let Some(m) = r
            .plan
            .matches
            .iter()
            .find(|m| request_matches(m, req, port, authority))
        {
            return Some((r, Some(m)));
        }
    }
    None
}

fn redirect(plan: &RedirectPlan, req: &Parts, raw_host: &str) -> Resp {
    let scheme = plan.scheme.as_deref().unwrap_or("http");
    let (host, old_port) = split_host_port(raw_host);
    let host = plan.authority.as_deref().unwrap_or(host);
    let port = plan.port.or(if plan.authority.is_some() {
        None
    } else {
        old_port
    });
    let path_and_query = match &plan.uri {
        Some(u) => match req.uri.query() {
            Some(q) => format!("{u}?{q}"),
            None => u.clone(),
        },
        None => req
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
    };
    let location = match port {
        Some(p) => format!("{scheme}://{host}:{p}{path_and_query}"),
        None => format!("{scheme}://{host}{path_and_query}"),
    };
    let mut resp = local_reply(plan.status, "");
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

const X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: header::HeaderName = header::HeaderName::from_static("x-forwarded-proto");

const HOP_BY_HOP: [header::HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HeaderName::from_static("keep-alive"),
    header::HeaderName::from_static("proxy-connection"),
];

/// Remove hop-by-hop headers (and those `Connection` names).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass over the names, no hashing.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION).cloned()
        && let Ok(list) = conn.to_str()
    {
        for name in list.split(',').map(str::trim) {
            if !name.is_empty() && !name.eq_ignore_ascii_case("close") {
                headers.remove(name);
            }
        }
    }
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
}

/// What the router made of a request.
enum Selected {
    /// Answered by the router itself (no route, redirect, direct response); boxed, so that
    /// the common outcome is a small value.
    Answer(Box<Resp>),
    /// Forward to destination `dest` of `route`.
    Forward { route: Arc<Route>, dest: usize },
}

/// Route the request, forward it and apply the route's response header operations.
pub(crate) async fn serve(
    cx: &ConnCtx,
    head: &mut Parts,
    body: ReqBody,
    start: Instant,
) -> Exchange {
    let (route, dest) = match select(cx, head) {
        Selected::Answer(resp) => {
            return Exchange {
                resp: *resp,
                series: cx.shared.unknown.clone(),
                endpoint: None,
                retried: false,
                failure: None,
            };
        }
        Selected::Forward { route, dest } => (route, dest),
    };
    let cluster = &route.dests[dest].cluster;
    let cors = route.plan.cors.as_ref();
    // Only small values live across the `.await` below: they are part of the request's future.
    let check = cors.map_or(cors::Check::Pass, |policy| cors::check(policy, head));
    let (mut ex, origin) = match (check, cors) {
        (cors::Check::Preflight(origin), Some(policy)) => (
            Exchange::local(cors::preflight(policy, origin), cluster, None),
            None,
        ),
        (cors::Check::Allowed(origin), _) => (
            forward(cx, &route, dest, head, body, start).await,
            Some(origin),
        ),
        _ => (forward(cx, &route, dest, head, body, start).await, None),
    };
    if let (Some(origin), Some(policy)) = (origin, cors) {
        cors::decorate(policy, origin, ex.resp.headers_mut());
    }
    strip_hop_by_hop(ex.resp.headers_mut());
    route.plan.headers.response.apply(ex.resp.headers_mut());
    route.dests[dest]
        .headers
        .response
        .apply(ex.resp.headers_mut());
    ex
}

/// Fault injection, then every try within the route timeout.
async fn forward(
    cx: &ConnCtx,
    route: &Route,
    dest: usize,
    head: &mut Parts,
    body: ReqBody,
    mut start: Instant,
) -> Exchange {
    let cluster = &route.dests[dest].cluster;
    if let Some(plan) = &route.plan.fault {
        let (delay, abort) = fault::draw(plan);
        if let Some(delay) = delay {
            // Boxed, as every rare wait of the request path: the request's future stays small.
            Box::pin(tokio::time::sleep(delay)).await;
            // The route timeout starts after the fault filter, as in Envoy.
            start = Instant::now();
        }
        if let Some(status) = abort {
            return Exchange::local(local_reply(status, "fault filter abort"), cluster, None);
        }
    }
    let policy = &route.plan.retry;
    let deadlines = Deadlines {
        route: route.plan.timeout.map(|t| start + t),
        per_try: policy.per_try_timeout,
    };
    retry::tries(cx.peer, policy, cluster, head, body, start, deadlines).await
}

/// Match the request to a route and prepare it for the upstream: rewrites, header operations,
/// `Host`, `x-forwarded-for` and `x-forwarded-proto`, hop-by-hop headers removed.
fn select(cx: &ConnCtx, req: &mut Parts) -> Selected {
    let table = cx.shared.table.load();
    let (route, matched, missing_host) = {
        let (host, port, raw) = request_host(req);
        let Some(vh) = table.vhost(&host) else {
            return Selected::Answer(Box::new(local_reply(StatusCode::NOT_FOUND, "")));
        };
        let Some((route, matched)) = find_route(&vh.routes, req, port, raw) else {
            return Selected::Answer(Box::new(local_reply(StatusCode::NOT_FOUND, "")));
        };
        match &route.plan.action {
            Action::Redirect(plan) => {
                return Selected::Answer(Box::new(redirect(plan, req, raw)));
            }
            Action::Direct { status, body } => {
                let mut resp = Resp::new(RespBody::full(body.clone()));
                *resp.status_mut() = *status;
                return Selected::Answer(Box::new(resp));
            }
            Action::Route(_) => {}
        }
        let prefix_len = match matched.and_then(|m| m.uri.as_ref()) {
            Some(StrMatch::Prefix(p)) => Some(p.len()),
            _ => None,
        };
        // HTTP/2 clients send :authority, HTTP/1.1 upstreams need Host.
        let missing_host = if req.headers.contains_key(header::HOST) {
            None
        } else {
            HeaderValue::from_str(raw).ok()
        };
        (route.clone(), prefix_len, missing_host)
    };
    drop(table);
    let dest = if route.dests.len() <= 1 {
        0
    } else {
        let mut r = rand::random_range(0..route.total_weight.max(1));
        route
            .dests
            .iter()
            .position(|d| {
                if r < d.weight {
                    true
                } else {
                    r -= d.weight;
                    false
                }
            })
            .unwrap_or(0)
    };

    // The upstream needs none of hyper's request extensions.
    req.extensions.clear();
    let headers = &mut req.headers;
    strip_hop_by_hop(headers);
    if let Some(h) = missing_host {
        headers.insert(header::HOST, h);
    }
    match headers.get(X_FORWARDED_FOR) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + cx.peer_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(cx.peer_ip.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                headers.insert(X_FORWARDED_FOR, v);
            }
        }
        None => {
            headers.insert(X_FORWARDED_FOR, cx.peer_ip.clone());
        }
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(rw) = &route.plan.rewrite {
        if let Some(a) = &rw.authority {
            req.headers.insert(header::HOST, a.clone());
        }
        if let Some(new) = &rw.uri {
            let path = req.uri.path();
            let rest = match matched {
                Some(n) if n <= path.len() => &path[n..],
                _ => "",
            };
            let mut pq = format!("{new}{rest}");
            if pq.is_empty() {
                pq.push('/');
            }
            if let Some(q) = req.uri.query() {
                pq.push('?');
                pq.push_str(q);
            }
            if let Ok(pq) = PathAndQuery::try_from(pq) {
                let mut parts = req.uri.clone().into_parts();
                parts.path_and_query = Some(pq);
                if let Ok(uri) = Uri::from_parts(parts) {
                    req.uri = uri;
                }
            }
        }
    }
    route.plan.headers.request.apply(&mut req.headers);
    route.dests[dest].headers.request.apply(&mut req.headers);
    Selected::Forward { route, dest }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_and_port() {
        assert_eq!(
            split_host_port("a.example.com:8080"),
            ("a.example.com", Some(8080))
        );
        assert_eq!(split_host_port("a.example.com"), ("a.example.com", None));
        assert_eq!(split_host_port("a.example.com."), ("a.example.com", None));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
    }
}
