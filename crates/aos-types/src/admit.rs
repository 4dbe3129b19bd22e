//! Admission of one object: unknown and misplaced field warnings, defaults, validation.
//!
//! The steps, in Kubernetes' order:
//! 1. `apiVersion` and `kind` must name the resource type being written.
//! 2. The object is decoded into its typed schema (k8s-openapi for the
//!    Kubernetes kinds, [`crate::istio`] for Istio's) and encoded back; every
//!    field of the input missing from the round trip is unknown. Unknown fields
//!    are dropped (as Kubernetes drops them) with a warning, which says where the
//!    field belongs when it is a known misplacement ([`fields::MISPLACED`]).
//! 3. Fields aos parses but does not implement get a warning ([`fields::UNIMPLEMENTED`]).
//! 4. Defaults are applied as Kubernetes applies them.
//! 5. The object is validated; every problem is reported with its field path.

use std::fmt;

use serde_json::Value;

use crate::ResourceType;

mod defaults;
pub use defaults::{hpa_default_behavior, hpa_default_scale_down, hpa_default_scale_up};
pub mod fields;
pub(crate) mod names;
mod schema;
mod validate;

/// The kind of a field error, as Kubernetes' `StatusCause.reason` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `FieldValueInvalid`
    Invalid,
    /// `FieldValueRequired`
    Required,
    /// `FieldValueDuplicate`
    Duplicate,
    /// `FieldValueNotSupported`
    NotSupported,
    /// `FieldValueForbidden`
    Forbidden,
    /// `FieldValueTooLong`
    TooLong,
    /// `FieldValueTypeInvalid`: the value has the wrong JSON type.
    TypeInvalid,
}

/// One invalid field: `spec.replicas: Invalid value: -1: must be greater than or equal to 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Field path in Kubernetes' form, e.g. `spec.template.spec.containers[0].image`.
    pub path: String,
    /// What kind of error.
    pub kind: FieldErrorKind,
    /// The human reason, lowercase, no final period.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A non-fatal finding: an unknown, unimplemented or misplaced field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Field path, e.g. `spec.template.spec.securityContext.readOnlyRootFilesystem`.
    pub path: String,
    /// The message, e.g. `unknown field; did you mean spec.template.spec.containers[*].securityContext.readOnlyRootFilesystem?`.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Admit `obj` (a whole object with apiVersion, kind, metadata, spec, status)
/// of type `rt`: collect warnings for unknown/unimplemented/misplaced fields,
/// apply Kubernetes' defaults in place, and validate. `old` is the stored
/// object on update (immutable fields are checked against it).
///
/// Does not touch server-owned metadata (uid, resourceVersion, generation,
/// creationTimestamp): the API server sets those.
pub fn admit(
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Vec<Warning>, Vec<FieldError>> {
    let mut errs = Errors::default();
    check_type(rt, obj, &mut errs);
    if !errs.is_empty() {
        return Err(errs.into_vec());
    }
    strip_nulls(obj);
    let unknown = match schema::unknown_fields(rt, obj) {
        Ok(unknown) => unknown,
        Err(e) => return Err(vec![e]),
    };
    let mut warnings = Vec::new();
    for path in &unknown {
        warnings.push(fields::unknown_field_warning(rt, obj, path));
    }
    for path in &unknown {
        path.remove_from(obj);
    }
    warnings.extend(fields::unimplemented_warnings(rt, obj));
    defaults::apply(rt, obj);
    validate::validate(rt, obj, old, &mut errs);
    if errs.is_empty() {
        Ok(warnings)
    } else {
        Err(errs.into_vec())
    }
}

/// `apiVersion` and `kind` must be those of `rt` (any served version).
fn check_type(rt: &ResourceType, obj: &Value, errs: &mut Errors) {
    let Some(map) = obj.as_object() else {
        errs.push(
            "",
            FieldErrorKind::TypeInvalid,
            format!(
                "Invalid value: {}: the object must be a mapping with apiVersion, kind and metadata",
                render(obj)
            ),
        );
        return;
    };
    match map.get("apiVersion") {
        None => errs.required("apiVersion", "apiVersion must be set"),
        Some(Value::String(av)) if rt.serves_api_version(av) => {}
        Some(v) => errs.invalid(
            "apiVersion",
            v,
            &format!(
                "must be {} for kind {}",
                rt.versions
                    .iter()
                    .map(|version| format!("\"{}\"", rt.api_version_for(version)))
                    .collect::<Vec<_>>()
                    .join(" or "),
                rt.kind
            ),
        ),
    }
    match map.get("kind") {
        None => errs.required("kind", "kind must be set"),
        Some(Value::String(k)) if k == rt.kind => {}
        Some(v) => errs.invalid("kind", v, &format!("must be \"{}\"", rt.kind)),
    }
}

/// Remove null-valued object fields at every depth: Kubernetes decodes `null`
/// as "not set". Nulls inside lists stay (they are type errors later).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for v in map.values_mut() {
                strip_nulls(v);
            }
        }
        Value::Array(items) => {
            for v in items {
                strip_nulls(v);
            }
        }
        _ => {}
    }
}

/// A value as Kubernetes shows it in `Invalid value: ...`.
pub(crate) fn render(v: &Value) -> String {
    v.to_string()
}

/// Field errors being collected, with Kubernetes' message forms.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    pub(crate) fn push(&mut self, path: &str, kind: FieldErrorKind, message: String) {
        self.0.push(FieldError {
            path: path.to_string(),
            kind,
            message,
        });
    }

    /// `PATH: Invalid value: VALUE: DETAIL`.
    pub(crate) fn invalid(&mut self, path: &str, value: &Value, detail: &str) {
        self.push(
            path,
            FieldErrorKind::Invalid,
            format!("Invalid value: {}: {detail}", render(value)),
        );
    }

    /// Each of `details` as an `Invalid value` error.
    pub(crate) fn invalid_all(&mut self, path: &str, value: &Value, details: Vec<String>) {
        for d in details {
            self.invalid(path, value, &d);
        }
    }

    /// `PATH: Required value[: DETAIL]`.
    pub(crate) fn required(&mut self, path: &str, detail: &str) {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        self.push(path, FieldErrorKind::Required, message);
    }

    /// `PATH: Duplicate value: VALUE`.
    pub(crate) fn duplicate(&mut self, path: &str, value: &Value) {
        self.push(
            path,
            FieldErrorKind::Duplicate,
            format!("Duplicate value: {}", render(value)),
        );
    }

    /// `PATH: Unsupported value: VALUE: supported values: "a", "b"`.
    pub(crate) fn not_supported(&mut self, path: &str, value: &Value, supported: &[&str]) {
        let list = supported
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ");
        self.push(
            path,
            FieldErrorKind::NotSupported,
            format!(
                "Unsupported value: {}: supported values: {list}",
                render(value)
            ),
        );
    }

    /// `PATH: Forbidden: DETAIL`.
    pub(crate) fn forbidden(&mut self, path: &str, detail: &str) {
        self.push(
            path,
            FieldErrorKind::Forbidden,
            format!("Forbidden: {detail}"),
        );
    }

    /// `PATH: Too long: may not be more than N bytes`.
    pub(crate) fn too_long(&mut self, path: &str, max: usize) {
        self.push(
            path,
            FieldErrorKind::TooLong,
            format!("Too long: may not be more than {max} bytes"),
        );
    }

    /// `PATH: Invalid value: VALUE: must be of type T`.
    pub(crate) fn type_invalid(&mut self, path: &str, value: &Value, want: &str) {
        self.push(
            path,
            FieldErrorKind::TypeInvalid,
            format!("Invalid value: {}: must be of type {want}", render(value)),
        );
    }
}

#[cfg(test)]
mod tests;
