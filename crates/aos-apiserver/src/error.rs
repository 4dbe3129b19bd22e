//! Errors: `ApiError` (one request failed; answered as a `Status` object) and
//! `ApiServerError` (the server could not start or serve).

use std::io;

use aos_store::StoreError;
use aos_types::{FieldError, FieldErrorKind};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

/// The server could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// Reading or writing the data dir (PKI, tokens, kubeconfig) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Certificates could not be generated or loaded.
    #[error("pki: {0}")]
    Pki(String),
    /// The token file is malformed.
    #[error("tokens: {0}")]
    Tokens(String),
    /// The store failed while creating the built-in namespaces.
    #[error("store: {0}")]
    Store(#[source] StoreError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
}

/// One field cause of an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cause {
    pub(crate) reason: &'static str,
    pub(crate) field: String,
    pub(crate) message: String,
}

/// A failed request, answered as a `meta.k8s.io/v1` `Status` (boxed: results stay small).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError(Box<ApiErrorBody>);

impl std::ops::Deref for ApiError {
    type Target = ApiErrorBody;
    fn deref(&self) -> &ApiErrorBody {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorBody {
        &mut self.0
    }
}

/// The fields of an [`ApiError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiErrorBody {
    pub(crate) code: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// `details.name`, `details.group`, `details.kind`.
    pub(crate) details: Option<(String, String, String)>,
    pub(crate) causes: Vec<Cause>,
    /// `details.retryAfterSeconds`.
    pub(crate) retry_after: Option<u32>,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError(Box::new(ApiErrorBody {
            code,
            reason,
            message: message.into(),
            details: None,
            causes: Vec::new(),
            retry_after: None,
        }))
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        self.details = Some((name.to_string(), group.to_string(), kind.to_string()));
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// `pods "x" not found` (resource is `pods` or `deployments.apps`).
    pub(crate) fn not_found(resource: &str, name: &str, group: &str) -> Self {
        let kind = resource.split('.').next().unwrap_or(resource).to_string();
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{resource} \"{name}\" not found"),
        )
        .with_details(name, group, &kind)
    }

    /// 404 for a path that names nothing the server serves.
    pub(crate) fn no_route(path: &str) -> Self {
        let _ = path;
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub(crate) fn already_exists(resource: &str, name: &str, group: &str) -> Self {
        let kind = resource.split('.').next().unwrap_or(resource).to_string();
        Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
        .with_details(name, group, &kind)
    }

    pub(crate) fn conflict(resource: &str, name: &str, group: &str) -> Self {
        let kind = resource.split('.').next().unwrap_or(resource).to_string();
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(name, group, &kind)
    }

    pub(crate) fn conflict_message(resource: &str, name: &str, group: &str, why: &str) -> Self {
        let kind = resource.split('.').next().unwrap_or(resource).to_string();
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
        )
        .with_details(name, group, &kind)
    }

    pub(crate) fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }

    pub(crate) fn gone(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    pub(crate) fn unsupported_media_type(ctype: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json (got {ctype:?})"
            ),
        )
    }

    pub(crate) fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "the request body is larger than 3 MiB",
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        );
        e.retry_after = Some(1);
        e
    }

    /// 422 Invalid: `Deployment.apps "x" is invalid: spec.replicas: Invalid value: -1: must be ...`.
    /// `obj` lets the message quote the invalid value when aos-types did not.
    pub(crate) fn invalid(
        kind: &str,
        group: &str,
        name: &str,
        errors: &[FieldError],
        obj: Option<&Value>,
    ) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let causes: Vec<Cause> = errors
            .iter()
            .map(|e| Cause {
                reason: cause_reason(e.kind),
                field: e.path.clone(),
                message: cause_message(e, obj),
            })
            .collect();
        let joined: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let summary = if joined.len() == 1 {
            joined[0].clone()
        } else {
            format!("[{}]", joined.join(", "))
        };
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {summary}"),
        )
        .with_details(name, group, kind);
        e.causes = causes;
        e
    }

    /// 422 for one field, built here (path/body mismatches and the like).
    pub(crate) fn invalid_field(
        kind: &str,
        group: &str,
        name: &str,
        field: &str,
        message: &str,
    ) -> Self {
        Self::invalid(
            kind,
            group,
            name,
            &[FieldError {
                path: field.to_string(),
                kind: FieldErrorKind::Invalid,
                message: message.to_string(),
            }],
            None,
        )
    }

    /// The `Status` object.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if self.details.is_some() || !self.causes.is_empty() || self.retry_after.is_some() {
            let mut details = json!({});
            if let Some((name, group, kind)) = &self.details {
                details["name"] = json!(name);
                if !group.is_empty() {
                    details["group"] = json!(group);
                }
                details["kind"] = json!(kind);
            }
            if !self.causes.is_empty() {
                details["causes"] = self
                    .causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
            }
            if let Some(r) = self.retry_after {
                details["retryAfterSeconds"] = json!(r);
            }
            status["details"] = details;
        }
        status
    }
}

fn cause_reason(kind: FieldErrorKind) -> &'static str {
    match kind {
        FieldErrorKind::Invalid => "FieldValueInvalid",
        FieldErrorKind::Required => "FieldValueRequired",
        FieldErrorKind::Duplicate => "FieldValueDuplicate",
        FieldErrorKind::NotSupported => "FieldValueNotSupported",
        FieldErrorKind::Forbidden => "FieldValueForbidden",
        FieldErrorKind::TooLong => "FieldValueTooLong",
        FieldErrorKind::TypeInvalid => "FieldValueTypeInvalid",
    }
}

/// aos-types gives `Invalid value: -1: must be ...` already formed for invalid
/// values; other kinds get Kubernetes' prefix when the message lacks it.
fn cause_message(e: &FieldError, obj: Option<&Value>) -> String {
    if matches!(
        e.kind,
        FieldErrorKind::Invalid | FieldErrorKind::TypeInvalid | FieldErrorKind::NotSupported
    ) && !e.message.starts_with("Invalid value")
        && !e.message.starts_with("Unsupported value")
        && let Some(v) = obj.and_then(|o| lookup_field(o, &e.path))
    {
        let prefix = if e.kind == FieldErrorKind::NotSupported {
            "Unsupported value"
        } else {
            "Invalid value"
        };
        let shown = match v {
            Value::String(s) => format!("\"{s}\""),
            other => other.to_string(),
        };
        return format!("{prefix}: {shown}: {}", e.message);
    }
    let prefix = match e.kind {
        FieldErrorKind::Invalid => "Invalid value",
        FieldErrorKind::Required => "Required value",
        FieldErrorKind::Duplicate => "Duplicate value",
        FieldErrorKind::NotSupported => "Unsupported value",
        FieldErrorKind::Forbidden => "Forbidden",
        FieldErrorKind::TooLong => "Too long",
        FieldErrorKind::TypeInvalid => "Invalid value",
    };
    if e.message.starts_with(prefix) {
        e.message.clone()
    } else {
        format!("{prefix}: {}", e.message)
    }
}

/// The value at a Kubernetes field path (`spec.containers[0].image`, `metadata.labels[app]`).
pub(crate) fn lookup_field<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']')?;
            let idx = &stripped[..end];
            cur = match idx.parse::<usize>() {
                Ok(i) if cur.is_array() => cur.get(i)?,
                _ => cur.get(idx)?,
            };
            rest = &stripped[end + 1..];
        }
    }
    Some(cur)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = (self.code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(r) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(r));
        }
        if self.code == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Map a store error on an object (`resource` like `pods`, `deployments.apps`).
pub(crate) fn store_error(e: StoreError, resource: &str, name: &str, group: &str) -> ApiError {
    match e {
        StoreError::AlreadyExists(_) => ApiError::already_exists(resource, name, group),
        StoreError::NotFound(_) => ApiError::not_found(resource, name, group),
        StoreError::Conflict { .. } => ApiError::conflict(resource, name, group),
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::gone(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StoreError::WatcherLagged { last } => {
            ApiError::gone(format!("too old resource version: {last}"))
        }
        StoreError::ValueTooLarge { size, limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the object is {size} bytes, over the limit of {limit} bytes"),
        ),
        StoreError::Backend(msg) => {
            tracing::error!(error = %msg, "store backend failed");
            ApiError::internal(format!("storage error: {msg}"))
        }
        e @ (StoreError::FutureRevision { .. } | StoreError::Decrypt { .. }) => {
            tracing::error!(error = %e, "store failed");
            ApiError::internal(format!("storage error: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_message_matches_kubectl() {
        let e = ApiError::invalid(
            "Deployment",
            "apps",
            "x",
            &[FieldError {
                path: "spec.replicas".into(),
                kind: FieldErrorKind::Invalid,
                message: "Invalid value: -1: must be greater than or equal to 0".into(),
            }],
            None,
        );
        assert_eq!(
            e.message,
            "Deployment.apps \"x\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        let s = e.to_status();
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueInvalid");
        assert_eq!(s["code"], 422);
    }

    #[test]
    fn invalid_value_is_quoted_from_the_object() {
        let obj = json!({"spec": {"replicas": -1, "template": {"spec": {"containers": [{"image": ""}]}}}});
        let e = ApiError::invalid(
            "Deployment",
            "apps",
            "x",
            &[FieldError {
                path: "spec.replicas".into(),
                kind: FieldErrorKind::Invalid,
                message: "must be greater than or equal to 0".into(),
            }],
            Some(&obj),
        );
        assert!(
            e.message
                .ends_with("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
            "{}",
            e.message
        );
        assert_eq!(
            lookup_field(&obj, "spec.template.spec.containers[0].image"),
            Some(&json!(""))
        );
    }

    #[test]
    fn required_gets_prefix() {
        let e = ApiError::invalid(
            "Pod",
            "",
            "p",
            &[FieldError {
                path: "spec.containers".into(),
                kind: FieldErrorKind::Required,
                message: "at least one container".into(),
            }],
            None,
        );
        assert_eq!(
            e.message,
            "Pod \"p\" is invalid: spec.containers: Required value: at least one container"
        );
    }
}
