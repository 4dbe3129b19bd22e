//! Request parameters: list/watch options, delete options, patches.

use serde_json::{Value, json};

/// Options of a list or watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    /// `labelSelector`, e.g. `app=web,tier!=db`.
    pub label_selector: Option<String>,
    /// `fieldSelector`, e.g. `metadata.name=x`.
    pub field_selector: Option<String>,
    /// `limit`: page size.
    pub limit: Option<u32>,
    /// `continue`: the token of the previous page.
    pub continue_token: Option<String>,
    /// `timeoutSeconds` of a watch.
    pub timeout_seconds: Option<u32>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
}

impl ListParams {
    /// Query string pairs (not encoded).
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(s) = self.label_selector.as_ref().filter(|s| !s.is_empty()) {
            q.push(("labelSelector", s.clone()));
        }
        if let Some(s) = self.field_selector.as_ref().filter(|s| !s.is_empty()) {
            q.push(("fieldSelector", s.clone()));
        }
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = &self.continue_token {
            q.push(("continue", c.clone()));
        }
        if let Some(t) = self.timeout_seconds {
            q.push(("timeoutSeconds", t.to_string()));
        }
        if self.bookmarks {
            q.push(("allowWatchBookmarks", "true".to_string()));
        }
        q
    }
}

/// Options of a delete (`DeleteOptions`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteParams {
    /// `Background` (the server's default), `Foreground` or `Orphan`.
    pub propagation_policy: Option<String>,
    /// Grace period; 0 deletes at once.
    pub grace_period_seconds: Option<i64>,
    /// Precondition: the object's uid.
    pub precondition_uid: Option<String>,
    /// Precondition: the object's resourceVersion.
    pub precondition_resource_version: Option<String>,
}

impl DeleteParams {
    /// The `DeleteOptions` body.
    pub(crate) fn body(&self) -> Value {
        let mut body = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(p) = &self.propagation_policy {
            body["propagationPolicy"] = json!(p);
        }
        if let Some(g) = self.grace_period_seconds {
            body["gracePeriodSeconds"] = json!(g);
        }
        if self.precondition_uid.is_some() || self.precondition_resource_version.is_some() {
            let mut pre = json!({});
            if let Some(u) = &self.precondition_uid {
                pre["uid"] = json!(u);
            }
            if let Some(rv) = &self.precondition_resource_version {
                pre["resourceVersion"] = json!(rv);
            }
            body["preconditions"] = pre;
        }
        body
    }
}

/// A patch and its type.
#[derive(Clone, Debug, PartialEq)]
pub enum Patch {
    /// `application/merge-patch+json` (RFC 7386).
    Merge(Value),
    /// `application/strategic-merge-patch+json`.
    Strategic(Value),
    /// `application/json-patch+json` (RFC 6902): an array of operations.
    Json(Value),
}

impl Patch {
    /// The content type of the patch.
    pub fn content_type(&self) -> &'static str {
        match self {
            Patch::Merge(_) => "application/merge-patch+json",
            Patch::Strategic(_) => "application/strategic-merge-patch+json",
            Patch::Json(_) => "application/json-patch+json",
        }
    }

    /// The patch document.
    pub fn value(&self) -> &Value {
        match self {
            Patch::Merge(v) | Patch::Strategic(v) | Patch::Json(v) => v,
        }
    }
}
