//! Client errors and the API's `Status` object.

use serde::Deserialize;
use serde_json::Value;

/// A `meta.k8s.io/v1` `Status` returned by the server for a failed request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Status {
    /// HTTP status code, e.g. 404.
    pub code: u16,
    /// Machine-readable reason, e.g. `NotFound`, `Conflict`, `Invalid`.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// Details, when the server gave any.
    pub details: Option<StatusDetails>,
}

/// `Status.details`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct StatusDetails {
    /// Name of the object concerned.
    pub name: String,
    /// Group of the object concerned.
    pub group: String,
    /// Kind of the object concerned.
    pub kind: String,
    /// Field-level causes (422 Invalid).
    pub causes: Vec<StatusCause>,
}

/// One cause of an error, usually one invalid field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct StatusCause {
    /// e.g. `FieldValueInvalid`.
    pub reason: String,
    /// Human-readable message for this field.
    pub message: String,
    /// Field path, e.g. `spec.replicas`.
    pub field: String,
}

impl Status {
    /// The field causes (empty when the server gave none).
    pub fn causes(&self) -> &[StatusCause] {
        self.details
            .as_ref()
            .map(|d| d.causes.as_slice())
            .unwrap_or_default()
    }

    /// Decode a `Status` from a response body; falls back to the raw text when the
    /// body is not a `Status` (a proxy's error page, for example).
    pub fn from_body(code: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) if v.get("kind").and_then(Value::as_str) == Some("Status") => {
                let mut status: Status = serde_json::from_value(v).unwrap_or_default();
                if status.code == 0 {
                    status.code = code;
                }
                status
            }
            _ => Status {
                code,
                reason: reason_for(code).to_string(),
                message: String::from_utf8_lossy(body)
                    .trim()
                    .chars()
                    .take(512)
                    .collect(),
                details: None,
            },
        }
    }

    /// Decode the `Status` carried by a watch `ERROR` event.
    pub fn from_value(v: &Value) -> Self {
        let mut status: Status = serde_json::from_value(v.clone()).unwrap_or_default();
        if status.code == 0 {
            status.code = 500;
        }
        status
    }
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

/// What can go wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error `Status` (boxed: it is large).
    #[error("{} ({} {})", .0.message, .0.code, .0.reason)]
    Api(Box<Status>),
    /// The request did not get an answer: connection refused, TLS failure, timeout.
    #[error("transport: {0}")]
    Transport(String),
    /// The answer could not be decoded.
    #[error("decode: {0}")]
    Decode(String),
    /// The kubeconfig or the client settings are unusable.
    #[error("config: {0}")]
    Config(String),
}

impl ClientError {
    /// An API error from a `Status`.
    pub fn api(status: Status) -> Self {
        ClientError::Api(Box::new(status))
    }

    /// The `Status` of an API error.
    pub fn status(&self) -> Option<&Status> {
        match self {
            ClientError::Api(s) => Some(s),
            _ => None,
        }
    }

    /// The HTTP status code of an API error.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api(s) => Some(s.code),
            _ => None,
        }
    }

    /// Whether this is a 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// Whether this is a 409 Conflict (stale resourceVersion) or AlreadyExists.
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }
}
