//! The few places where the CLI reads `aos-client`'s answers: error classification and text,
//! warnings, lists and watch events. Kept in one file so the commands read like kubectl's.

use aos_client::{Client, ClientError, ObjectList, Response, WatchEvent};
use aos_types::{FieldError, FieldErrorKind};
use serde_json::Value;

/// The HTTP status of an API error, if the server answered.
fn status_code(e: &ClientError) -> Option<u16> {
    match e {
        ClientError::Api(status) => Some(status.code),
        _ => None,
    }
}

/// 404 Not Found.
pub(crate) fn is_not_found(e: &ClientError) -> bool {
    status_code(e) == Some(404)
}

/// 409 with reason AlreadyExists.
pub(crate) fn is_already_exists(e: &ClientError) -> bool {
    matches!(e, ClientError::Api(status) if status.code == 409 && status.reason == "AlreadyExists")
}

/// 410 Gone (a watch from a compacted resourceVersion).
pub(crate) fn is_gone(e: &ClientError) -> bool {
    status_code(e) == Some(410)
}

/// One line (plus detail lines for further field errors) that says what went wrong.
/// An invalid object reads `PATH: Invalid value: ...`, the server's message otherwise.
pub(crate) fn error_line(e: &ClientError) -> String {
    match e {
        ClientError::Api(status) => {
            let causes: Vec<String> = status
                .causes()
                .iter()
                .filter(|c| !c.field.is_empty())
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect();
            if status.code == 422 && !causes.is_empty() {
                causes.join("\n  ")
            } else if status.message.is_empty() {
                format!("the server answered {} {}", status.code, status.reason)
            } else {
                status.message.clone()
            }
        }
        ClientError::Transport(message) => format!("cannot reach the API server: {message}"),
        other => other.to_string(),
    }
}

/// Local admission errors of `object` as one line, further errors on indented detail lines,
/// each as Kubernetes words it: `spec.replicas: Invalid value: -1: must be greater than or
/// equal to 0`.
pub(crate) fn field_errors_text(errors: &[FieldError], object: &Value) -> String {
    errors
        .iter()
        .map(|e| field_error_text(e, object))
        .collect::<Vec<_>>()
        .join("\n  ")
}

fn field_error_text(e: &FieldError, object: &Value) -> String {
    let (prefix, with_value) = match e.kind {
        FieldErrorKind::Invalid | FieldErrorKind::TypeInvalid => ("Invalid value", true),
        FieldErrorKind::Required => ("Required value", false),
        FieldErrorKind::Duplicate => ("Duplicate value", true),
        FieldErrorKind::NotSupported => ("Unsupported value", true),
        FieldErrorKind::Forbidden => ("Forbidden", false),
        FieldErrorKind::TooLong => ("Too long", false),
    };
    // The message may already carry Kubernetes' wording; never say it twice.
    if e.message.starts_with(prefix) {
        return format!("{}: {}", e.path, e.message);
    }
    let value = with_value.then(|| value_at(object, &e.path)).flatten();
    match (value, e.message.is_empty()) {
        (Some(v), false) => format!("{}: {prefix}: {}: {}", e.path, render_value(v), e.message),
        (Some(v), true) => format!("{}: {prefix}: {}", e.path, render_value(v)),
        (None, false) => format!("{}: {prefix}: {}", e.path, e.message),
        (None, true) => format!("{}: {prefix}", e.path),
    }
}

/// The value at a Kubernetes field path (`spec.containers[0].ports[1].name`,
/// `metadata.labels[app.kubernetes.io/name]`).
fn value_at<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = object;
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let index = &after[..end];
            current = match current {
                Value::Array(items) => items.get(index.parse::<usize>().ok()?)?,
                Value::Object(map) => map.get(index)?,
                _ => return None,
            };
            rest = &after[end + 1..];
        } else {
            let field = rest.strip_prefix('.').unwrap_or(rest);
            let end = field.find(['.', '[']).unwrap_or(field.len());
            current = current.get(&field[..end])?;
            rest = &field[end..];
        }
    }
    Some(current)
}

/// A value as Kubernetes prints it in a field error: strings quoted, numbers bare.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The server's `Warning` headers of a response, as `PATH: MESSAGE` text.
pub(crate) fn warnings<T>(response: &Response<T>) -> &[String] {
    &response.warnings
}

/// The items of a list.
pub(crate) fn list_items(list: ObjectList) -> Vec<Value> {
    list.items
}

/// The resourceVersion a list was read at.
pub(crate) fn list_resource_version(list: &ObjectList) -> String {
    list.resource_version.clone()
}

/// `metadata.name`.
pub(crate) fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `(type, object)` of a watch event: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`.
pub(crate) fn watch_event_parts(event: &WatchEvent) -> (&str, &Value) {
    (event.type_.as_str(), &event.object)
}

/// GET a JSON document by path (`/version`).
pub(crate) async fn get_json(client: &Client, path: &str) -> anyhow::Result<Value> {
    let response = client
        .raw(http::Method::GET, path, None)
        .await
        .map_err(|e| anyhow::anyhow!("{}", error_line(&e)))?;
    serde_json::from_slice(&response)
        .map_err(|e| anyhow::anyhow!("cannot decode the answer to GET {path}: {e}"))
}

/// Whether `/readyz` answers 200.
pub(crate) async fn ready(client: &Client) -> bool {
    client.raw(http::Method::GET, "/readyz", None).await.is_ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn err(path: &str, kind: FieldErrorKind, message: &str) -> FieldError {
        FieldError {
            path: path.into(),
            kind,
            message: message.into(),
        }
    }

    #[test]
    fn field_errors_read_like_kubernetes() {
        let obj = json!({"spec": {"replicas": -1, "template": {"metadata": {"labels": {"app.kubernetes.io/name": "x"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}}}});
        let cases = [
            (
                err(
                    "spec.replicas",
                    FieldErrorKind::Invalid,
                    "must be greater than or equal to 0",
                ),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                err(
                    "spec.replicas",
                    FieldErrorKind::Invalid,
                    "Invalid value: -1: must be greater than or equal to 0",
                ),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                err(
                    "spec.template.spec.containers[0].resources.requests.cpu",
                    FieldErrorKind::Invalid,
                    "must be less than or equal to cpu limit of 500m",
                ),
                "spec.template.spec.containers[0].resources.requests.cpu: Invalid value: \"2\": must be less than or equal to cpu limit of 500m",
            ),
            (
                err(
                    "spec.template.metadata.labels[app.kubernetes.io/name]",
                    FieldErrorKind::Invalid,
                    "bad",
                ),
                "spec.template.metadata.labels[app.kubernetes.io/name]: Invalid value: \"x\": bad",
            ),
            (
                err("spec.selector", FieldErrorKind::Required, ""),
                "spec.selector: Required value",
            ),
            (
                err("spec.x", FieldErrorKind::Forbidden, "may not be set"),
                "spec.x: Forbidden: may not be set",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(field_error_text(&e, &obj), want);
        }
        assert_eq!(
            field_errors_text(
                &[
                    err("a", FieldErrorKind::Required, ""),
                    err("b", FieldErrorKind::Required, "")
                ],
                &obj
            ),
            "a: Required value\n  b: Required value"
        );
    }
}
