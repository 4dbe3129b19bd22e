//! Router layer: host and route matching on the current table snapshot.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, StatusCode, Uri};
use tower::Service;

use super::{Next, ProxyFuture, Req, Resp, RouteCtx, Served, local_reply};
use crate::body::RespBody;
use crate::matcher::StrMatch;
use crate::plan::{Action, RedirectPlan, RequestMatch};
use crate::server::Shared;
use crate::table::Route;

#[derive(Clone)]
pub(crate) struct RouteLayer {
    shared: Arc<Shared>,
    peer: SocketAddr,
    peer_ip: HeaderValue,
}

impl RouteLayer {
    pub(crate) fn new(shared: Arc<Shared>, peer: SocketAddr) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        RouteLayer {
            shared,
            peer,
            peer_ip,
        }
    }
}

impl<S> tower::Layer<S> for RouteLayer {
    type Service = Router<S>;
    fn layer(&self, inner: S) -> Router<S> {
        Router {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Router<S> {
    inner: S,
    layer: RouteLayer,
}

/// The request's host, lowercase, and the port it names.
fn request_host(req: &Req) -> (Cow<'_, str>, Option<u16>, &str) {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
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
    req: &Req,
    port: Option<u16>,
    authority: &str,
) -> bool {
    let uri = req.uri();
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
        && !me.matches(req.method().as_str())
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
        match header_str(req.headers(), name) {
            Some(v) if sm.matches(v) => {}
            _ => return false,
        }
    }
    for (name, sm) in &m.without_headers {
        if header_str(req.headers(), name).is_some_and(|v| sm.matches(v)) {
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
    req: &Req,
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

fn redirect(plan: &RedirectPlan, req: &Req, raw_host: &str) -> Resp {
    let scheme = plan.scheme.as_deref().unwrap_or("http");
    let (host, old_port) = split_host_port(raw_host);
    let host = plan.authority.as_deref().unwrap_or(host);
    let port = plan.port.or(if plan.authority.is_some() {
        None
    } else {
        old_port
    });
    let path_and_query = match &plan.uri {
        Some(u) => match req.uri().query() {
            Some(q) => format!("{u}?{q}"),
            None => u.clone(),
        },
        None => req
            .uri()
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

const HOP_BY_HOP: [header::HeaderName; 4] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Remove hop-by-hop headers (and those `Connection` names).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(conn) = headers.get(header::CONNECTION).cloned()
        && let Ok(list) = conn.to_str()
    {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            headers.remove(name);
        }
    }
    for h in &HOP_BY_HOP {
        if headers.contains_key(h) {
            headers.remove(h);
        }
    }
    if headers.contains_key("keep-alive") {
        headers.remove("keep-alive");
    }
    if headers.contains_key("proxy-connection") {
        headers.remove("proxy-connection");
    }
}

fn ready(resp: Resp) -> ProxyFuture {
    Box::pin(std::future::ready(Ok(resp)))
}

fn handle<S: Next>(inner: &mut S, layer: &RouteLayer, mut req: Req) -> ProxyFuture {
    let table = layer.shared.table.load();
    let (route, matched, missing_host) = {
        let (host, port, raw) = request_host(&req);
        let Some(vh) = table.vhost(&host) else {
            return ready(local_reply(StatusCode::NOT_FOUND, ""));
        };
        let Some((route, matched)) = find_route(&vh.routes, &req, port, raw) else {
            return ready(local_reply(StatusCode::NOT_FOUND, ""));
        };
        match &route.plan.action {
            Action::Redirect(plan) => return ready(redirect(plan, &req, raw)),
            Action::Direct { status, body } => {
                let mut resp = Resp::new(RespBody::full(body.clone()));
                *resp.status_mut() = *status;
                return ready(resp);
            }
            Action::Route(_) => {}
        }
        let prefix_len = match matched.and_then(|m| m.uri.as_ref()) {
            Some(StrMatch::Prefix(p)) => Some(p.len()),
            _ => None,
        };
        // HTTP/2 clients send :authority, HTTP/1.1 upstreams need Host.
        let missing_host = if req.headers().contains_key(header::HOST) {
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

    // The request to the upstream.
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    if let Some(h) = missing_host {
        headers.insert(header::HOST, h);
    }
    match headers.get(X_FORWARDED_FOR) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + layer.peer_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(layer.peer_ip.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                headers.insert(X_FORWARDED_FOR, v);
            }
        }
        None => {
            headers.insert(X_FORWARDED_FOR, layer.peer_ip.clone());
        }
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(rw) = &route.plan.rewrite {
        if let Some(a) = &rw.authority {
            req.headers_mut().insert(header::HOST, a.clone());
        }
        if let Some(new) = &rw.uri {
            let path = req.uri().path();
            let rest = match matched {
                Some(n) if n <= path.len() => &path[n..],
                _ => "",
            };
            let mut pq = format!("{new}{rest}");
            if pq.is_empty() {
                pq.push('/');
            }
            if let Some(q) = req.uri().query() {
                pq.push('?');
                pq.push_str(q);
            }
            if let Ok(pq) = PathAndQuery::try_from(pq) {
                let mut parts = req.uri().clone().into_parts();
                parts.path_and_query = Some(pq);
                if let Ok(uri) = Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
    }
    route.plan.headers.request.apply(req.headers_mut());
    route.dests[dest].headers.request.apply(req.headers_mut());

    req.extensions_mut().insert(RouteCtx {
        route: route.clone(),
        dest,
        peer: layer.peer,
        endpoint: None,
    });
    let fut = inner.call(req);
    Box::pin(async move {
        let mut resp = fut.await?;
        strip_hop_by_hop(resp.headers_mut());
        route.plan.headers.response.apply(resp.headers_mut());
        route.dests[dest].headers.response.apply(resp.headers_mut());
        if resp.extensions().get::<Served>().is_none() {
            let series = route.dests[dest].cluster.local_series.clone();
            resp.extensions_mut().insert(Served {
                series,
                endpoint: None,
                retried: false,
                failure: None,
            });
        }
        Ok(resp)
    })
}

impl<S: Next> Service<Req> for Router<S> {
    type Response = Resp;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> ProxyFuture {
        handle(&mut self.inner, &self.layer, req)
    }
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
