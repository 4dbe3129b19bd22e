//! Admission of one object: unknown and misplaced field warnings, defaults, validation.

use serde_json::Value;

use crate::ResourceType;

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

/// A non-fatal finding: an unknown, unimplemented or misplaced field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Field path, e.g. `spec.template.spec.securityContext.readOnlyRootFilesystem`.
    pub path: String,
    /// The message, e.g. `unknown field; did you mean spec.template.spec.containers[*].securityContext.readOnlyRootFilesystem?`.
    pub message: String,
}

/// Admit `obj` (a whole object with apiVersion, kind, metadata, spec, status)
/// of type `rt`: collect warnings for unknown/unimplemented/misplaced fields,
/// apply Kubernetes' defaults in place, and validate. `old` is the stored
/// object on update (immutable fields are checked against it).
///
/// Does not touch server-owned metadata (uid, resourceVersion, generation,
/// creationTimestamp): the API server sets those.
pub fn admit(rt: &ResourceType, obj: &mut Value, old: Option<&Value>) -> Result<Vec<Warning>, Vec<FieldError>> {
    let _ = (rt, obj, old);
    unimplemented!()
}
