//! The narrow view of the API that the controllers need, as a trait.
//!
//! Controllers talk to the cluster only through [`Cluster`]. The production
//! implementation wraps `aos_client::Client` (module `client`); the in-memory
//! [`fake::FakeCluster`] backs the unit tests.

use std::fmt;

use aos_types::ResourceType;
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value;

pub mod client;
pub mod fake;

/// What a list or watch selects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    /// `labelSelector` in its string form.
    pub label_selector: Option<String>,
    /// `fieldSelector` in its string form.
    pub field_selector: Option<String>,
}

/// A list answer: the items and the list's resourceVersion.
#[derive(Clone, Debug, Default)]
pub struct ObjectList {
    /// The objects.
    pub items: Vec<Value>,
    /// `metadata.resourceVersion` of the list, to watch from.
    pub resource_version: String,
}

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    /// An object appeared.
    Added,
    /// An object changed.
    Modified,
    /// An object went away.
    Deleted,
    /// Progress marker carrying only a resourceVersion.
    Bookmark,
    /// The server reported an error; the object is a `Status`.
    Error,
}

impl WatchEventType {
    /// Parse the wire form (`ADDED`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADDED" => Self::Added,
            "MODIFIED" => Self::Modified,
            "DELETED" => Self::Deleted,
            "BOOKMARK" => Self::Bookmark,
            "ERROR" => Self::Error,
            _ => return None,
        })
    }
}

/// One watch event.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// What happened.
    pub type_: WatchEventType,
    /// The object (a `Status` for [`WatchEventType::Error`]).
    pub object: Value,
}

/// A patch body.
#[derive(Clone, Debug)]
pub enum Patch {
    /// `application/merge-patch+json`.
    Merge(Value),
    /// `application/strategic-merge-patch+json`.
    Strategic(Value),
    /// `application/json-patch+json`.
    Json(Value),
}

/// Deletion propagation, as `DeleteOptions.propagationPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are deleted by the garbage collector after the owner goes.
    Background,
    /// The owner stays (with the `foregroundDeletion` finalizer) until its blocking dependents are gone.
    Foreground,
    /// Dependents lose their owner reference and stay.
    Orphan,
}

impl Propagation {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Background => "Background",
            Self::Foreground => "Foreground",
            Self::Orphan => "Orphan",
        }
    }
}

/// Options of a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteParams {
    /// Propagation policy; the server's default when `None`.
    pub propagation_policy: Option<Propagation>,
    /// Grace period; the object's default when `None`.
    pub grace_period_seconds: Option<i64>,
    /// Delete only if the object still has this uid.
    pub precondition_uid: Option<String>,
    /// Delete only if the object still has this resourceVersion.
    pub precondition_resource_version: Option<String>,
}

/// A failed cluster call.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClusterError {
    /// The API answered with a `Status` failure.
    #[error("api error {code} {reason}: {message}")]
    Api {
        /// HTTP status code (404, 409, 410, 422, ...).
        code: u16,
        /// `Status.reason` (`NotFound`, `Conflict`, `Expired`, ...).
        reason: String,
        /// `Status.message`.
        message: String,
    },
    /// The request did not get an API answer (connection, TLS, decoding).
    #[error("transport: {0}")]
    Transport(String),
}

impl ClusterError {
    /// The HTTP code of an API error.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Api { code, .. } => Some(*code),
            Self::Transport(_) => None,
        }
    }
    /// 404.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }
    /// 409 (stale update or already exists).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }
    /// 409 with reason `AlreadyExists`.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::Api { code: 409, reason, .. } if reason == "AlreadyExists")
    }
    /// 410: the resourceVersion is too old.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }
    /// Build an error from a `Status` object (as in a watch `ERROR` event).
    pub fn from_status(status: &Value) -> Self {
        Self::Api {
            code: status.get("code").and_then(Value::as_u64).unwrap_or(500) as u16,
            reason: status
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            message: status
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

/// A stream of watch events.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, ClusterError>>;

/// The API calls the controllers make. Implemented for `aos_client::Client`
/// and by [`fake::FakeCluster`].
#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// GET one object.
    async fn get(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ClusterError>;
    /// LIST objects.
    async fn list(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList, ClusterError>;
    /// WATCH from `resource_version`.
    async fn watch(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        params: &ListParams,
        resource_version: &str,
    ) -> Result<WatchStream, ClusterError>;
    /// POST.
    async fn create(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        obj: &Value,
    ) -> Result<Value, ClusterError>;
    /// PUT (optimistic when `metadata.resourceVersion` is set).
    async fn replace(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value, ClusterError>;
    /// PUT to the `status` subresource.
    async fn replace_status(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value, ClusterError>;
    /// PATCH, optionally a subresource.
    async fn patch(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        patch: &Patch,
        subresource: Option<&str>,
    ) -> Result<Value, ClusterError>;
    /// POST to a subresource of one object, e.g. a `v1` `Binding` to `pods/{name}/binding`.
    /// Answers the response body (Kubernetes answers a binding with a `Status`).
    async fn create_subresource(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        subresource: &str,
        obj: &Value,
    ) -> Result<Value, ClusterError>;
    /// DELETE.
    async fn delete(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        params: &DeleteParams,
    ) -> Result<(), ClusterError>;
    /// PUT `/api/v1/namespaces/{name}/finalize` with the namespace object.
    async fn finalize_namespace(&self, name: &str, obj: &Value) -> Result<Value, ClusterError>;
}

/// `namespace/name` (or `name` for cluster-scoped objects): the key of an object in caches and queues.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// A namespaced key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }
    /// A cluster-scoped key.
    pub fn cluster(name: impl Into<String>) -> Self {
        Self {
            namespace: None,
            name: name.into(),
        }
    }
    /// The key of an object, from its metadata.
    pub fn of(obj: &Value) -> Option<Self> {
        let meta = obj.get("metadata")?;
        let name = meta.get("name")?.as_str()?.to_owned();
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Some(Self { namespace, name })
    }
    /// The namespace as the API calls take it.
    pub fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}
