//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: Kubernetes' `PodLogOptions`, checked
//! here, and the node agent's `/containerLogs/{ns}/{pod}/{container}` streamed through.
//!
//! As in Kubernetes:
//! - `container` defaults to the pod's only container; with several, the request is
//!   refused with the list to choose from; a name that is not one of the pod's
//!   containers (or init containers) is refused;
//! - `follow`, `previous`, `timestamps` are booleans; `tailLines` ≥ 0, `limitBytes` ≥ 1,
//!   `sinceSeconds` ≥ 1, `sinceTime` RFC 3339, and at most one of `sinceSeconds` and
//!   `sinceTime` (422 otherwise);
//! - a pod not yet bound to a node has no logs yet (400, the container "is waiting to start").
//!
//! The answer is the agent's body, streamed chunk by chunk as it arrives (never buffered
//! whole). It ends when the agent ends it, when the API server shuts down, or when the
//! client goes away — then the body is dropped, which closes the connection to the agent.
//! Who may read logs: whoever may GET the pod (the `viewers` groups included).

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt as _;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::nodeproxy::{NodeError, NodeTarget};
use crate::router::AppState;

/// Kubernetes' `PodLogOptions` as query parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogOptions {
    pub(crate) container: Option<String>,
    pub(crate) follow: bool,
    pub(crate) previous: bool,
    pub(crate) timestamps: bool,
    pub(crate) tail_lines: Option<i64>,
    pub(crate) limit_bytes: Option<i64>,
    pub(crate) since_seconds: Option<i64>,
    /// As given (validated RFC 3339).
    pub(crate) since_time: Option<String>,
}

/// Go's `strconv.ParseBool`, which Kubernetes uses for query booleans.
fn parse_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" | "" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "invalid value for {name}: {other:?} is not a boolean"
        ))),
    }
}

fn parse_int(name: &str, v: &str) -> ApiResult<i64> {
    v.parse::<i64>().map_err(|_| {
        ApiError::bad_request(format!("invalid value for {name}: {v:?} is not an integer"))
    })
}

impl LogOptions {
    /// Parse and validate the query string of a log request for pod `pod`.
    pub(crate) fn parse(raw: &str, pod: &str) -> ApiResult<Self> {
        let mut o = LogOptions::default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (crate::query::decode(k), crate::query::decode(v));
            match k.as_str() {
                "container" => o.container = Some(v).filter(|s| !s.is_empty()),
                "follow" => o.follow = parse_bool("follow", &v)?,
                "previous" => o.previous = parse_bool("previous", &v)?,
                "timestamps" => o.timestamps = parse_bool("timestamps", &v)?,
                "tailLines" => o.tail_lines = Some(parse_int("tailLines", &v)?),
                "limitBytes" => o.limit_bytes = Some(parse_int("limitBytes", &v)?),
                "sinceSeconds" => o.since_seconds = Some(parse_int("sinceSeconds", &v)?),
                "sinceTime" => o.since_time = Some(v).filter(|s| !s.is_empty()),
                _ => {}
            }
        }
        let invalid = |field: &str, message: &str| {
            ApiError::invalid_field("PodLogOptions", "", pod, field, message)
        };
        if o.tail_lines.is_some_and(|n| n < 0) {
            return Err(invalid("tailLines", "must be greater than or equal to 0"));
        }
        if o.limit_bytes.is_some_and(|n| n < 1) {
            return Err(invalid("limitBytes", "must be greater than 0"));
        }
        if o.since_seconds.is_some_and(|n| n < 1) {
            return Err(invalid("sinceSeconds", "must be greater than 0"));
        }
        if let Some(t) = &o.since_time
            && t.parse::<jiff::Timestamp>().is_err()
        {
            return Err(ApiError::bad_request(format!(
                "invalid value for sinceTime: {t:?} is not an RFC 3339 time"
            )));
        }
        if o.since_seconds.is_some() && o.since_time.is_some() {
            return Err(invalid(
                "",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            ));
        }
        Ok(o)
    }

    /// The agent's query string (only what was asked for).
    pub(crate) fn agent_query(&self) -> String {
        let mut q: Vec<String> = Vec::new();
        if self.follow {
            q.push("follow=true".into());
        }
        if self.previous {
            q.push("previous=true".into());
        }
        if self.timestamps {
            q.push("timestamps=true".into());
        }
        if let Some(n) = self.tail_lines {
            q.push(format!("tailLines={n}"));
        }
        if let Some(n) = self.limit_bytes {
            q.push(format!("limitBytes={n}"));
        }
        if let Some(n) = self.since_seconds {
            q.push(format!("sinceSeconds={n}"));
        }
        if let Some(t) = &self.since_time {
            q.push(format!("sinceTime={}", encode(t)));
        }
        q.join("&")
    }
}

/// Percent-encode all but RFC 3986 unreserved characters.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn container_names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// The container a log request is for, as Kubernetes chooses it.
pub(crate) fn choose_container(pod: &Value, asked: Option<&str>) -> ApiResult<String> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let main = container_names(pod, "containers");
    let init = container_names(pod, "initContainers");
    let ephemeral = container_names(pod, "ephemeralContainers");
    match asked {
        Some(c) => {
            if main.iter().chain(&init).chain(&ephemeral).any(|n| n == c) {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None if main.len() == 1 => Ok(main[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                main.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// Answer a log request for `pod` (already read from the store) in `ns`.
pub(crate) async fn serve(
    state: &Arc<AppState>,
    ns: &str,
    pod: &Value,
    raw_query: &str,
) -> ApiResult<Response> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let opts = LogOptions::parse(raw_query, &name)?;
    let container = choose_container(pod, opts.container.as_deref())?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: the pod is not scheduled to a node yet"
        )));
    }
    let node = crate::nodeproxy::read_node(state.store.as_ref(), node_name).await?;
    let target = NodeTarget::from_node(&node).map_err(ApiError::from)?;
    let query = opts.agent_query();
    let mut path = format!(
        "/containerLogs/{}/{}/{}",
        encode(ns),
        encode(&name),
        encode(&container)
    );
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query);
    }
    let upstream = state.nodes.get_stream(&target, &path).await?;
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("text/plain; charset=utf-8"));
    let node_for_log = target.name.clone();
    // Chunks as they come; stop at server shutdown. Dropping this stream (the client
    // went away) drops the agent's response and so its connection.
    let chunks = upstream
        .into_body()
        .into_data_stream()
        .map(move |chunk| {
            chunk.map_err(|e| {
                tracing::debug!(node = %node_for_log, error = %e, "log stream from the node ended with an error");
                std::io::Error::other(NodeError::Answer {
                    node: node_for_log.clone(),
                    reason: e.to_string(),
                })
            })
        })
        .take_until(state.shutdown.clone().cancelled_owned());
    let mut resp = Response::new(Body::from_stream(chunks));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_kubernetes_names_and_defaults() {
        let o = LogOptions::parse(
            "container=web&follow=true&tailLines=10&timestamps=1&sinceSeconds=60&limitBytes=500",
            "p",
        )
        .unwrap();
        assert_eq!(o.container.as_deref(), Some("web"));
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(10));
        assert_eq!(
            o.agent_query(),
            "follow=true&timestamps=true&tailLines=10&limitBytes=500&sinceSeconds=60"
        );
        assert_eq!(LogOptions::parse("", "p").unwrap(), LogOptions::default());
        assert_eq!(LogOptions::parse("", "p").unwrap().agent_query(), "");
        let t =
            LogOptions::parse("sinceTime=2026-01-02T03%3A04%3A05Z&previous=false", "p").unwrap();
        assert_eq!(t.agent_query(), "sinceTime=2026-01-02T03%3A04%3A05Z");
    }

    #[test]
    fn refuses_what_kubernetes_refuses() {
        let code = |q: &str| LogOptions::parse(q, "p").unwrap_err().code.as_u16();
        assert_eq!(code("tailLines=-1"), 422);
        assert_eq!(code("limitBytes=0"), 422);
        assert_eq!(code("sinceSeconds=0"), 422);
        assert_eq!(code("sinceSeconds=5&sinceTime=2026-01-02T03:04:05Z"), 422);
        assert_eq!(code("sinceTime=yesterday"), 400);
        assert_eq!(code("follow=maybe"), 400);
        assert_eq!(code("tailLines=x"), 400);
    }

    #[test]
    fn chooses_the_container_as_kubernetes_does() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(choose_container(&one, None).unwrap(), "a");
        let e = choose_container(&one, Some("zz")).unwrap_err();
        assert_eq!(e.message, "container zz is not valid for pod p");
        let two = json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            choose_container(&two, None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [init]"
        );
        assert_eq!(choose_container(&two, Some("init")).unwrap(), "init");
        assert_eq!(choose_container(&two, Some("b")).unwrap(), "b");
    }
}
