//! Label selectors and field selectors, as in `?labelSelector=` and `?fieldSelector=`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ResourceType;

/// A parsed label selector (`a=b,c!=d,e in (x,y),f notin (z),g,!h`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    // private; the types helper fills this in
    _priv: (),
}

/// A selector that could not be parsed or uses an unsupported field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl LabelSelector {
    /// Parse the string form.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let _ = s;
        unimplemented!()
    }
    /// Build from a Kubernetes `LabelSelector` object (`matchLabels`, `matchExpressions`) as JSON.
    pub fn from_object(v: &Value) -> Result<Self, SelectorError> {
        let _ = v;
        unimplemented!()
    }
    /// Whether `labels` satisfy the selector. The empty selector matches everything.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let _ = labels;
        unimplemented!()
    }
}

/// A parsed field selector (`metadata.name=x,spec.nodeName!=`), checked against
/// the fields Kubernetes supports for the resource type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    _priv: (),
}

impl FieldSelector {
    /// Parse, rejecting fields that `rt` does not support (Kubernetes answers 400 then).
    pub fn parse(rt: &ResourceType, s: &str) -> Result<Self, SelectorError> {
        let _ = (rt, s);
        unimplemented!()
    }
    /// Whether the object matches.
    pub fn matches(&self, obj: &Value) -> bool {
        let _ = obj;
        unimplemented!()
    }
}
