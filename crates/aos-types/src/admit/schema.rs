//! Unknown fields, found by decoding an object into its typed schema and
//! encoding it back: what the round trip loses, the schema does not know.

use std::fmt;

use k8s_openapi::api::{apps, autoscaling, coordination, core};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{FieldError, FieldErrorKind, render};
use crate::{ResourceType, istio};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    /// An object field.
    Key(String),
    /// A list item.
    Index(usize),
}

/// A field path as segments; prints as `spec.containers[0].image`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(pub(crate) Vec<Seg>);

impl FieldPath {
    /// The value at this path in `v`.
    pub(crate) fn lookup<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        let mut cur = v;
        for seg in &self.0 {
            cur = match seg {
                Seg::Key(k) => cur.get(k.as_str())?,
                Seg::Index(i) => cur.get(*i)?,
            };
        }
        Some(cur)
    }

    /// Remove the field this path names from `v` (a no-op when absent or when
    /// the path ends in a list index).
    pub(crate) fn remove_from(&self, v: &mut Value) {
        let Some((Seg::Key(last), parent)) = self.0.split_last() else {
            return;
        };
        let mut cur = v;
        for seg in parent {
            let next = match seg {
                Seg::Key(k) => cur.get_mut(k.as_str()),
                Seg::Index(i) => cur.get_mut(*i),
            };
            match next {
                Some(n) => cur = n,
                None => return,
            }
        }
        if let Some(map) = cur.as_object_mut() {
            map.remove(last);
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The paths of `obj` that the schema of `rt` does not know, outermost only
/// (an unknown object's own fields are not listed again). A value of the wrong
/// type is an error.
pub(crate) fn unknown_fields(rt: &ResourceType, obj: &Value) -> Result<Vec<FieldPath>, FieldError> {
    match (rt.group, rt.kind) {
        ("", "Namespace") => round_trip::<core::v1::Namespace>(obj),
        ("", "Node") => round_trip::<core::v1::Node>(obj),
        ("", "Pod") => round_trip::<core::v1::Pod>(obj),
        ("", "Service") => round_trip::<core::v1::Service>(obj),
        ("", "Endpoints") => round_trip::<core::v1::Endpoints>(obj),
        ("", "ConfigMap") => round_trip::<core::v1::ConfigMap>(obj),
        ("", "Secret") => round_trip::<core::v1::Secret>(obj),
        ("", "Event") => round_trip::<core::v1::Event>(obj),
        ("apps", "Deployment") => round_trip::<apps::v1::Deployment>(obj),
        ("apps", "ReplicaSet") => round_trip::<apps::v1::ReplicaSet>(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            round_trip::<autoscaling::v2::HorizontalPodAutoscaler>(obj)
        }
        ("coordination.k8s.io", "Lease") => round_trip::<coordination::v1::Lease>(obj),
        ("networking.istio.io", "VirtualService") => round_trip::<istio::VirtualService>(obj),
        ("networking.istio.io", "DestinationRule") => round_trip::<istio::DestinationRule>(obj),
        ("networking.istio.io", "Gateway") => round_trip::<istio::Gateway>(obj),
        _ => Ok(Vec::new()),
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Vec<FieldPath>, FieldError> {
    let typed: T = serde_path_to_error::deserialize(obj).map_err(|e| type_error(obj, &e))?;
    let back = serde_json::to_value(&typed).map_err(|e| FieldError {
        path: String::new(),
        kind: FieldErrorKind::Invalid,
        message: format!("Invalid value: the object cannot be encoded: {e}"),
    })?;
    let mut out = Vec::new();
    diff(obj, &back, &mut FieldPath::default(), &mut out);
    Ok(out)
}

fn type_error(obj: &Value, e: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let mut path = FieldPath::default();
    for seg in e.path().iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => path.0.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => path.0.push(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => {
                path.0.push(Seg::Key(variant.clone()))
            }
            serde_path_to_error::Segment::Unknown => break,
        }
    }
    let value = path
        .lookup(obj)
        .map(render)
        .unwrap_or_else(|| "null".to_string());
    FieldError {
        path: path.to_string(),
        kind: FieldErrorKind::TypeInvalid,
        message: format!("Invalid value: {value}: {}", e.inner()),
    }
}

fn diff(input: &Value, back: &Value, path: &mut FieldPath, out: &mut Vec<FieldPath>) {
    match (input, back) {
        (Value::Object(inp), Value::Object(bk)) => {
            for (k, v) in inp {
                if v.is_null() {
                    continue;
                }
                path.0.push(Seg::Key(k.clone()));
                match bk.get(k) {
                    Some(b) => diff(v, b, path, out),
                    None => out.push(path.clone()),
                }
                path.0.pop();
            }
        }
        (Value::Array(inp), Value::Array(bk)) => {
            for (i, (v, b)) in inp.iter().zip(bk).enumerate() {
                path.0.push(Seg::Index(i));
                diff(v, b, path, out);
                path.0.pop();
            }
        }
        _ => {}
    }
}
