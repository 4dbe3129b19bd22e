//! The agent resource: what clients send, what the service returns, and the validation between.

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Longest accepted agent name, in characters (a DNS name's limit).
pub const MAX_NAME_CHARS: usize = 253;
/// Longest accepted `kind`, in characters.
pub const MAX_KIND_CHARS: usize = 253;
/// Longest accepted `endpoint`, in characters.
pub const MAX_ENDPOINT_CHARS: usize = 2048;
/// Most capabilities per agent.
pub const MAX_CAPABILITIES: usize = 64;
/// Longest capability, in characters.
pub const MAX_CAPABILITY_CHARS: usize = 128;
/// Most metadata keys per agent.
pub const MAX_METADATA_KEYS: usize = 64;
/// Longest metadata key, in characters.
pub const MAX_METADATA_KEY_CHARS: usize = 253;
/// Largest accepted `ttl_seconds`: one week.
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// Whether an agent's heartbeats are current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Its last heartbeat is no older than its TTL.
    Active,
    /// Its last heartbeat is older than its TTL.
    Expired,
}

impl AgentStatus {
    /// Every status, in the order metrics list them.
    pub const ALL: [Self; 2] = [Self::Active, Self::Expired];

    /// The status's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
        }
    }

    /// Parses a status name as the API spells it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// What a client sets on an agent, validated: the body of `POST agents` and `PUT agents/{id}`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    /// Display name; required, 1 to 253 characters.
    pub name: String,
    /// Free-form kind (`llm`, `tool`, ...).
    pub kind: Option<String>,
    /// Where the agent can be reached.
    pub endpoint: Option<String>,
    /// What the agent can do, deduplicated in first-seen order.
    pub capabilities: Vec<String>,
    /// Free-form JSON metadata.
    pub metadata: Map<String, Value>,
    /// Heartbeat TTL; the service default when absent.
    pub ttl_seconds: Option<u64>,
}

/// A registered agent, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agent {
    /// Server-assigned id (a UUID v4).
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Free-form kind.
    pub kind: Option<String>,
    /// Where the agent can be reached.
    pub endpoint: Option<String>,
    /// What the agent can do.
    pub capabilities: Vec<String>,
    /// Free-form JSON metadata.
    pub metadata: Map<String, Value>,
    /// Heartbeat TTL in seconds.
    pub ttl_seconds: u64,
    /// `active` or `expired`, as of the request.
    pub status: AgentStatus,
    /// When the agent was registered.
    pub registered_at: Timestamp,
    /// When the agent was last registered or updated.
    pub updated_at: Timestamp,
    /// When the agent last sent a heartbeat (or registered).
    pub last_heartbeat: Timestamp,
    /// When the agent expires unless it sends a heartbeat.
    pub expires_at: Timestamp,
}

/// Why a request body is not a valid agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The body is not a JSON object at all (HTTP 400).
    #[error("{0}")]
    Malformed(String),
    /// A field has a bad value (HTTP 422).
    #[error("{field}: {message}")]
    Field {
        /// The field's path (`name`, `capabilities[2]`, `metadata.owner`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ValidationError {
    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl AgentSpec {
    /// Parses and validates a JSON request body.
    pub fn from_json(body: &[u8]) -> Result<Self, ValidationError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ValidationError::Malformed(
                "request body is empty: expected a JSON object".into(),
            ));
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ValidationError::Malformed(format!("request body is not valid JSON: {e}"))
        })?;
        let Value::Object(object) = value else {
            return Err(ValidationError::Malformed(
                "request body must be a JSON object".into(),
            ));
        };
        Self::from_object(object)
    }

    fn from_object(object: Map<String, Value>) -> Result<Self, ValidationError> {
        let mut name = None;
        let mut spec = AgentSpec {
            name: String::new(),
            kind: None,
            endpoint: None,
            capabilities: Vec::new(),
            metadata: Map::new(),
            ttl_seconds: None,
        };
        for (key, value) in object {
            match key.as_str() {
                "name" => name = Some(text(&key, value, MAX_NAME_CHARS)?),
                "kind" => spec.kind = optional(value, |v| text("kind", v, MAX_KIND_CHARS))?,
                "endpoint" => spec.endpoint = optional(value, endpoint)?,
                "capabilities" => {
                    spec.capabilities = optional(value, capabilities)?.unwrap_or_default();
                }
                "metadata" => spec.metadata = optional(value, metadata)?.unwrap_or_default(),
                "ttl_seconds" => spec.ttl_seconds = optional(value, ttl)?,
                _ => {
                    return Err(ValidationError::field(
                        key,
                        "unknown field (expected name, kind, endpoint, capabilities, metadata \
                         or ttl_seconds)",
                    ));
                }
            }
        }
        spec.name = name.ok_or_else(|| ValidationError::field("name", "is required"))?;
        Ok(spec)
    }
}

/// `None` for JSON `null`, else `parse(value)`.
fn optional<T>(
    value: Value,
    parse: impl FnOnce(Value) -> Result<T, ValidationError>,
) -> Result<Option<T>, ValidationError> {
    match value {
        Value::Null => Ok(None),
        v => parse(v).map(Some),
    }
}

/// A string of 1 to `max` characters, not blank, without control characters.
fn text(field: &str, value: Value, max: usize) -> Result<String, ValidationError> {
    let Value::String(s) = value else {
        return Err(ValidationError::field(field, "must be a string"));
    };
    if s.trim().is_empty() {
        return Err(ValidationError::field(field, "must not be empty"));
    }
    let chars = s.chars().count();
    if chars > max {
        return Err(ValidationError::field(
            field,
            format!("must be at most {max} characters (got {chars})"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(ValidationError::field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s)
}

fn endpoint(value: Value) -> Result<String, ValidationError> {
    let s = text("endpoint", value, MAX_ENDPOINT_CHARS)?;
    let valid = s.split_once("://").is_some_and(|(scheme, rest)| {
        let mut chars = scheme.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            && !rest.is_empty()
            && !rest.starts_with('/')
    }) && !s.chars().any(char::is_whitespace);
    if valid {
        Ok(s)
    } else {
        Err(ValidationError::field(
            "endpoint",
            "must be a URL such as http://host:port/path",
        ))
    }
}

fn capabilities(value: Value) -> Result<Vec<String>, ValidationError> {
    let Value::Array(items) = value else {
        return Err(ValidationError::field(
            "capabilities",
            "must be an array of strings",
        ));
    };
    if items.len() > MAX_CAPABILITIES {
        return Err(ValidationError::field(
            "capabilities",
            format!(
                "must have at most {MAX_CAPABILITIES} items (got {})",
                items.len()
            ),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let cap = text(&format!("capabilities[{i}]"), item, MAX_CAPABILITY_CHARS)?;
        if !out.contains(&cap) {
            out.push(cap);
        }
    }
    Ok(out)
}

fn metadata(value: Value) -> Result<Map<String, Value>, ValidationError> {
    let Value::Object(map) = value else {
        return Err(ValidationError::field("metadata", "must be a JSON object"));
    };
    if map.len() > MAX_METADATA_KEYS {
        return Err(ValidationError::field(
            "metadata",
            format!(
                "must have at most {MAX_METADATA_KEYS} keys (got {})",
                map.len()
            ),
        ));
    }
    for key in map.keys() {
        let chars = key.chars().count();
        if chars == 0 || chars > MAX_METADATA_KEY_CHARS || key.chars().any(char::is_control) {
            return Err(ValidationError::field(
                format!("metadata.{key}"),
                format!(
                    "keys must be 1 to {MAX_METADATA_KEY_CHARS} characters without control \
                     characters"
                ),
            ));
        }
    }
    Ok(map)
}

fn ttl(value: Value) -> Result<u64, ValidationError> {
    match value.as_u64() {
        Some(n) if (1..=MAX_TTL_SECONDS).contains(&n) => Ok(n),
        _ => Err(ValidationError::field(
            "ttl_seconds",
            format!("must be a whole number of seconds from 1 to {MAX_TTL_SECONDS}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_error(body: &str) -> (String, String) {
        match AgentSpec::from_json(body.as_bytes()) {
            Err(ValidationError::Field { field, message }) => (field, message),
            other => panic!("{body}: expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn full_spec() {
        let spec = AgentSpec::from_json(
            br#"{"name":"planner","kind":"llm","endpoint":"http://planner:8080/rpc",
                "capabilities":["plan","search","plan"],"metadata":{"team":"core","n":1},
                "ttl_seconds":60}"#,
        )
        .unwrap();
        assert_eq!(spec.name, "planner");
        assert_eq!(spec.kind.as_deref(), Some("llm"));
        assert_eq!(spec.endpoint.as_deref(), Some("http://planner:8080/rpc"));
        assert_eq!(spec.capabilities, ["plan", "search"]);
        assert_eq!(spec.metadata["n"], 1);
        assert_eq!(spec.ttl_seconds, Some(60));
    }

    #[test]
    fn minimal_spec_and_nulls() {
        let spec = AgentSpec::from_json(
            br#"{"name":"a","kind":null,"capabilities":null,"metadata":null,"ttl_seconds":null}"#,
        )
        .unwrap();
        assert_eq!(spec.name, "a");
        assert_eq!(spec.kind, None);
        assert!(spec.capabilities.is_empty());
        assert!(spec.metadata.is_empty());
        assert_eq!(spec.ttl_seconds, None);
    }

    #[test]
    fn malformed_bodies() {
        for body in ["", "  ", "{", "[1]", "\"name\"", "null"] {
            assert!(
                matches!(
                    AgentSpec::from_json(body.as_bytes()),
                    Err(ValidationError::Malformed(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn field_errors() {
        let long = "x".repeat(254);
        let cases: Vec<(String, &str)> = vec![
            ("{}".into(), "name"),
            (r#"{"name":""}"#.into(), "name"),
            (r#"{"name":"   "}"#.into(), "name"),
            (r#"{"name":7}"#.into(), "name"),
            (format!(r#"{{"name":"{long}"}}"#), "name"),
            (r#"{"name":"a\u0000b"}"#.into(), "name"),
            (r#"{"name":"a","kind":[]}"#.into(), "kind"),
            (r#"{"name":"a","endpoint":"not a url"}"#.into(), "endpoint"),
            (r#"{"name":"a","endpoint":"http://"}"#.into(), "endpoint"),
            (r#"{"name":"a","capabilities":"x"}"#.into(), "capabilities"),
            (
                r#"{"name":"a","capabilities":["ok",""]}"#.into(),
                "capabilities[1]",
            ),
            (
                r#"{"name":"a","capabilities":[1]}"#.into(),
                "capabilities[0]",
            ),
            (r#"{"name":"a","metadata":[]}"#.into(), "metadata"),
            (r#"{"name":"a","metadata":{"":1}}"#.into(), "metadata."),
            (r#"{"name":"a","ttl_seconds":0}"#.into(), "ttl_seconds"),
            (r#"{"name":"a","ttl_seconds":-5}"#.into(), "ttl_seconds"),
            (r#"{"name":"a","ttl_seconds":1.5}"#.into(), "ttl_seconds"),
            (r#"{"name":"a","ttl_seconds":"30"}"#.into(), "ttl_seconds"),
            (r#"{"name":"a","ttl_seconds":604801}"#.into(), "ttl_seconds"),
            (r#"{"name":"a","nmae":"typo"}"#.into(), "nmae"),
        ];
        for (body, want) in cases {
            assert_eq!(field_error(&body).0, want, "{body}");
        }
        let name_253 = "é".repeat(253);
        assert!(AgentSpec::from_json(format!(r#"{{"name":"{name_253}"}}"#).as_bytes()).is_ok());
    }

    #[test]
    fn too_many_capabilities() {
        let caps: Vec<String> = (0..65).map(|i| format!("\"c{i}\"")).collect();
        let body = format!(r#"{{"name":"a","capabilities":[{}]}}"#, caps.join(","));
        assert_eq!(field_error(&body).0, "capabilities");
    }

    #[test]
    fn status_names() {
        for st in AgentStatus::ALL {
            assert_eq!(AgentStatus::parse(st.as_str()), Some(st));
        }
        assert_eq!(AgentStatus::parse("ACTIVE"), None);
        assert_eq!(
            serde_json::to_value(AgentStatus::Expired).unwrap(),
            "expired"
        );
    }
}
