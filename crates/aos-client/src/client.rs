//! The HTTPS client: connection pool, requests, errors, warnings.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aos_types::ResourceType;
use bytes::Bytes;
use futures::stream::BoxStream;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::watch::{WatchEvent, event_stream};
use crate::{ClientError, DeleteParams, Kubeconfig, ListParams, Patch, Status};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const JSON: &str = "application/json";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// A successful answer with the server's `Warning` headers.
#[derive(Clone, Debug, PartialEq)]
pub struct Response<T> {
    /// The decoded body.
    pub value: T,
    /// The text of each `Warning: 299 - "..."` header, in order.
    pub warnings: Vec<String>,
}

/// The answer to a list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectList {
    /// The objects.
    pub items: Vec<Value>,
    /// `metadata.resourceVersion` of the list: watch from here to see every later change.
    pub resource_version: String,
    /// `metadata.continue`: pass as [`ListParams::continue_token`] for the next page.
    pub continue_token: Option<String>,
}

/// A client of one API server. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `https://host:port` plus an optional path prefix, without a trailing slash.
    base: String,
    /// `Bearer <token>`, marked sensitive.
    authorization: Option<HeaderValue>,
    /// PEM of the CA the server's certificate chains to.
    ca_pem: Vec<u8>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.inner.base)
            .finish_non_exhaustive()
    }
}

/// The REST path of a resource type: `/api/v1/namespaces/{ns}/pods/{name}/{sub}` or
/// `/apis/{group}/{version}/...`. `ns` is ignored for cluster-scoped types.
pub fn resource_path(
    rt: &ResourceType,
    ns: Option<&str>,
    name: Option<&str>,
    sub: Option<&str>,
) -> String {
    let mut p = if rt.group.is_empty() {
        format!("/api/{}", rt.version)
    } else {
        format!("/apis/{}/{}", rt.group, rt.version)
    };
    if let Some(ns) = ns.filter(|_| rt.namespaced) {
        p.push_str("/namespaces/");
        p.push_str(&encode_segment(ns));
    }
    p.push('/');
    p.push_str(rt.plural);
    if let Some(name) = name {
        p.push('/');
        p.push_str(&encode_segment(name));
        if let Some(sub) = sub {
            p.push('/');
            p.push_str(sub);
        }
    }
    p
}

fn encode_segment(s: &str) -> String {
    percent_encode(s, false)
}

/// Percent-encode everything but RFC 3986 unreserved characters (and `/` when `keep_slash`).
fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_query(path: String, pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return path;
    }
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v, false)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// The text of `Warning` headers (`299 - "text"`), unquoted.
fn warnings(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::WARNING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            let v = v.trim();
            match (v.find('"'), v.rfind('"')) {
                (Some(a), Some(b)) if b > a => {
                    v[a + 1..b].replace("\\\"", "\"").replace("\\\\", "\\")
                }
                _ => v.to_string(),
            }
        })
        .collect()
}

impl Client {
    /// A client for the current context of the kubeconfig at `path`.
    pub fn from_kubeconfig(path: &Path) -> Result<Self, ClientError> {
        Self::from_config(&Kubeconfig::load(path)?)
    }

    /// A client for resolved kubeconfig settings.
    pub fn from_config(config: &Kubeconfig) -> Result<Self, ClientError> {
        if config.insecure_skip_tls_verify {
            return Err(ClientError::Config(
                "insecure-skip-tls-verify is not supported; give the CA".into(),
            ));
        }
        Self::build(
            &config.server,
            config.ca_pem.as_deref(),
            config.token.clone(),
        )
    }

    /// A client for `server` (`https://host:port`), trusting the CA in `ca_pem`,
    /// sending `token` as a bearer token.
    pub fn new(server: impl AsRef<str>, ca_pem: &[u8], token: String) -> Result<Self, ClientError> {
        Self::build(server.as_ref(), Some(ca_pem), Some(token))
    }

    fn build(
        server: &str,
        ca_pem: Option<&[u8]>,
        token: Option<String>,
    ) -> Result<Self, ClientError> {
        let server = server.trim_end_matches('/');
        if !server.starts_with("https://") {
            return Err(ClientError::Config(format!(
                "server {server:?} is not an https:// URL"
            )));
        }
        let mut roots = rustls::RootCertStore::empty();
        let Some(ca_pem) = ca_pem else {
            return Err(ClientError::Config(
                "no certificate authority for the server".into(),
            ));
        };
        let mut reader = ca_pem;
        let mut found = 0;
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert =
                cert.map_err(|e| ClientError::Config(format!("certificate authority: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Config(format!("certificate authority: {e}")))?;
            found += 1;
        }
        if found == 0 {
            return Err(ClientError::Config(
                "certificate authority: no PEM certificate found".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Config(format!("tls: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        let authorization = match token {
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    ClientError::Config("token has characters not allowed in a header".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http: client,
                base: server.to_string(),
                authorization,
                ca_pem: ca_pem.to_vec(),
            }),
        })
    }

    /// The server URL.
    pub fn server(&self) -> &str {
        &self.inner.base
    }

    /// PEM of the CA this client trusts for the server: the cluster CA (the node agent
    /// requires the API server's client certificate to chain to it).
    pub fn ca_pem(&self) -> &[u8] {
        &self.inner.ca_pem
    }

    /// Send a request; returns the response head and the unread body.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(Bytes, &str)>,
        accept: &str,
    ) -> Result<(http::response::Parts, Incoming), ClientError> {
        let uri = format!("{}{}", self.inner.base, path_and_query);
        let mut req = Request::builder()
            .method(method)
            .uri(&uri)
            .header(ACCEPT, accept);
        if let Some(auth) = &self.inner.authorization {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let req = match body {
            Some((bytes, ctype)) => req.header(CONTENT_TYPE, ctype).body(Full::new(bytes)),
            None => req.body(Full::new(Bytes::new())),
        }
        .map_err(|e| ClientError::Config(format!("invalid request {uri}: {e}")))?;
        let resp = self.inner.http.request(req).await.map_err(|e| {
            use std::error::Error as _;
            let mut msg = e.to_string();
            let mut src = e.source();
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            ClientError::Transport(format!("{uri}: {msg}"))
        })?;
        Ok(resp.into_parts())
    }

    /// Send a request and read the whole answer, within the request timeout.
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(Bytes, &str)>,
        accept: &str,
    ) -> Result<Response<Bytes>, ClientError> {
        let work = async {
            let (parts, body) = self.send(method, path_and_query, body, accept).await?;
            let bytes = body
                .collect()
                .await
                .map_err(|e| ClientError::Transport(format!("reading the answer: {e}")))?
                .to_bytes();
            if !parts.status.is_success() {
                return Err(ClientError::api(Status::from_body(
                    parts.status.as_u16(),
                    &bytes,
                )));
            }
            Ok(Response {
                value: bytes,
                warnings: warnings(&parts.headers),
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .map_err(|_| {
                ClientError::Transport(format!(
                    "{path_and_query}: no answer within {REQUEST_TIMEOUT:?}"
                ))
            })?
    }

    async fn call_json(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(Bytes, &str)>,
        accept: &str,
    ) -> Result<Response<Value>, ClientError> {
        let r = self.call(method, path_and_query, body, accept).await?;
        let value = serde_json::from_slice(&r.value)
            .map_err(|e| ClientError::Decode(format!("{path_and_query}: {e}")))?;
        Ok(Response {
            value,
            warnings: r.warnings,
        })
    }

    fn json_body(obj: &Value) -> Result<Bytes, ClientError> {
        serde_json::to_vec(obj)
            .map(Bytes::from)
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// GET one object.
    pub async fn get(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ClientError> {
        let path = resource_path(rt, ns, Some(name), None);
        Ok(self.call_json(Method::GET, &path, None, JSON).await?.value)
    }

    /// GET a subresource (`status`, `scale`) of one object.
    pub async fn get_subresource(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        sub: &str,
    ) -> Result<Value, ClientError> {
        let path = resource_path(rt, ns, Some(name), Some(sub));
        Ok(self.call_json(Method::GET, &path, None, JSON).await?.value)
    }

    /// LIST objects in `ns` (all namespaces with `None`).
    pub async fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList, ClientError> {
        let path = with_query(resource_path(rt, ns, None, None), &params.pairs());
        let mut v = self.call_json(Method::GET, &path, None, JSON).await?.value;
        let items = match v.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(ClientError::Decode(format!(
                    "{path}: items is not an array"
                )));
            }
        };
        let resource_version = v
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let continue_token = v
            .pointer("/metadata/continue")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Ok(ObjectList {
            items,
            resource_version,
            continue_token,
        })
    }

    /// POST a new object.
    pub async fn create(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        obj: &Value,
    ) -> Result<Response<Value>, ClientError> {
        let path = resource_path(rt, ns, None, None);
        self.call_json(
            Method::POST,
            &path,
            Some((Self::json_body(obj)?, JSON)),
            JSON,
        )
        .await
    }

    /// PUT an object; optimistic when `metadata.resourceVersion` is set.
    pub async fn replace(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Response<Value>, ClientError> {
        let path = resource_path(rt, ns, Some(name), None);
        self.call_json(
            Method::PUT,
            &path,
            Some((Self::json_body(obj)?, JSON)),
            JSON,
        )
        .await
    }

    /// PUT the `status` subresource: only `status` of `obj` is taken.
    pub async fn replace_status(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Response<Value>, ClientError> {
        let path = resource_path(rt, ns, Some(name), Some("status"));
        self.call_json(
            Method::PUT,
            &path,
            Some((Self::json_body(obj)?, JSON)),
            JSON,
        )
        .await
    }

    /// PATCH an object or one of its subresources (`status`, `scale`).
    pub async fn patch(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        patch: Patch,
        subresource: Option<&str>,
    ) -> Result<Response<Value>, ClientError> {
        let path = resource_path(rt, ns, Some(name), subresource);
        let body = Self::json_body(patch.value())?;
        self.call_json(
            Method::PATCH,
            &path,
            Some((body, patch.content_type())),
            JSON,
        )
        .await
    }

    /// DELETE an object. The answer is the object (still there when finalizers or a
    /// grace period hold it) or a `Status`.
    pub async fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteParams,
    ) -> Result<Response<Value>, ClientError> {
        let path = resource_path(rt, ns, Some(name), None);
        self.call_json(
            Method::DELETE,
            &path,
            Some((Self::json_body(&opts.body())?, JSON)),
            JSON,
        )
        .await
    }

    /// DELETE every object selected by `params` (`deletecollection`).
    pub async fn delete_collection(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        params: &ListParams,
        opts: &DeleteParams,
    ) -> Result<Response<Value>, ClientError> {
        let path = with_query(resource_path(rt, ns, None, None), &params.pairs());
        self.call_json(
            Method::DELETE,
            &path,
            Some((Self::json_body(&opts.body())?, JSON)),
            JSON,
        )
        .await
    }

    /// PUT `/api/v1/namespaces/{name}/finalize` with the namespace object (its
    /// `spec.finalizers` is what the server keeps).
    pub async fn finalize_namespace(
        &self,
        name: &str,
        obj: &Value,
    ) -> Result<Response<Value>, ClientError> {
        let path = format!("/api/v1/namespaces/{}/finalize", encode_segment(name));
        self.call_json(
            Method::PUT,
            &path,
            Some((Self::json_body(obj)?, JSON)),
            JSON,
        )
        .await
    }

    /// WATCH changes after `resource_version` (`""` or `"0"`: the current objects
    /// as `ADDED` first). The stream ends when the server closes the watch
    /// (timeout, shutdown); a compacted version gives an `ERROR` event with 410.
    pub async fn watch(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        params: &ListParams,
        resource_version: &str,
    ) -> Result<BoxStream<'static, Result<WatchEvent, ClientError>>, ClientError> {
        let mut pairs = params.pairs();
        pairs.push(("watch", "true".into()));
        if !resource_version.is_empty() {
            pairs.push(("resourceVersion", resource_version.to_string()));
        }
        let path = with_query(resource_path(rt, ns, None, None), &pairs);
        let (parts, body) =
            tokio::time::timeout(REQUEST_TIMEOUT, self.send(Method::GET, &path, None, JSON))
                .await
                .map_err(|_| {
                    ClientError::Transport(format!("{path}: no answer within {REQUEST_TIMEOUT:?}"))
                })??;
        if parts.status != StatusCode::OK {
            let bytes = tokio::time::timeout(REQUEST_TIMEOUT, body.collect())
                .await
                .map_err(|_| {
                    ClientError::Transport(format!("{path}: no answer within {REQUEST_TIMEOUT:?}"))
                })?
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            return Err(ClientError::api(Status::from_body(
                parts.status.as_u16(),
                &bytes,
            )));
        }
        Ok(event_stream(body))
    }

    /// GET objects as a `meta.k8s.io/v1` `Table` (one object with `name`, else a list).
    /// The server sends every column; those with `priority > 0` are for `-o wide`,
    /// so `wide` only affects whether the caller shows them.
    pub async fn get_table(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: Option<&str>,
        params: &ListParams,
        wide: bool,
    ) -> Result<Value, ClientError> {
        let _ = wide;
        let pairs = if name.is_some() {
            Vec::new()
        } else {
            params.pairs()
        };
        let path = with_query(resource_path(rt, ns, name, None), &pairs);
        Ok(self.call_json(Method::GET, &path, None, TABLE).await?.value)
    }

    /// GET `path` with `query` and answer the body as it streams (a pod's log with
    /// `follow`, for example): the response head must come within the request timeout,
    /// the body may take as long as the server keeps it open. A non-2xx answer is an
    /// `Api` error. Dropping the stream closes the request.
    pub async fn get_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<BoxStream<'static, Result<Bytes, ClientError>>, ClientError> {
        use futures::StreamExt as _;
        let path = with_query(path.to_string(), query);
        let (parts, body) =
            tokio::time::timeout(REQUEST_TIMEOUT, self.send(Method::GET, &path, None, "*/*"))
                .await
                .map_err(|_| {
                    ClientError::Transport(format!("{path}: no answer within {REQUEST_TIMEOUT:?}"))
                })??;
        if !parts.status.is_success() {
            let bytes = tokio::time::timeout(REQUEST_TIMEOUT, body.collect())
                .await
                .map_err(|_| {
                    ClientError::Transport(format!("{path}: no answer within {REQUEST_TIMEOUT:?}"))
                })?
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            return Err(ClientError::api(Status::from_body(
                parts.status.as_u16(),
                &bytes,
            )));
        }
        Ok(body
            .into_data_stream()
            .map(|chunk| {
                chunk.map_err(|e| ClientError::Transport(format!("reading the answer: {e}")))
            })
            .boxed())
    }

    /// Any request by path (`/version`, `/readyz`, discovery); answers the raw body
    /// of a 2xx response, an `Api` error otherwise. A body is sent as JSON.
    pub async fn raw(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        let body = body.map(|b| (Bytes::from(b), JSON));
        Ok(self.call(method, path_and_query, body, JSON).await?.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_values() {
        assert_eq!(
            percent_encode("a=b,c in (x)", false),
            "a%3Db%2Cc%20in%20%28x%29"
        );
        assert_eq!(with_query("/p".into(), &[("x", "1".into())]), "/p?x=1");
    }

    #[test]
    fn parses_warning_headers() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::WARNING,
            HeaderValue::from_static("299 - \"spec.x: unknown \\\"field\\\"\""),
        );
        assert_eq!(warnings(&h), vec!["spec.x: unknown \"field\"".to_string()]);
    }
}
