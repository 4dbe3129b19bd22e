//! A snapshot of the objects the gateway routes by: the input of the route compiler.

use serde_json::Value;

/// Every object the gateway reads, as the API serves them (JSON), at one moment.
///
/// The [`ConfigSource`](crate::ConfigSource)s fill it from the API's watches or from a file;
/// [`compile`](crate::plan::compile) turns it into a routing plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// `v1` Services.
    pub services: Vec<Value>,
    /// `v1` Endpoints.
    pub endpoints: Vec<Value>,
    /// `v1` Pods (only `metadata` is read: labels for subsets, owners for metric labels).
    pub pods: Vec<Value>,
    /// `networking.istio.io` VirtualServices.
    pub virtual_services: Vec<Value>,
    /// `networking.istio.io` DestinationRules.
    pub destination_rules: Vec<Value>,
    /// `networking.istio.io` Gateways.
    pub gateways: Vec<Value>,
}

/// A static configuration file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is invalid.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The kinds of object a [`Snapshot`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `v1` Service.
    Service,
    /// `v1` Endpoints.
    Endpoints,
    /// `v1` Pod.
    Pod,
    /// `networking.istio.io` VirtualService.
    VirtualService,
    /// `networking.istio.io` DestinationRule.
    DestinationRule,
    /// `networking.istio.io` Gateway.
    Gateway,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 6] = [
        Kind::Service,
        Kind::Endpoints,
        Kind::Pod,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::Gateway,
    ];

    /// The object's `kind`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::Pod => "Pod",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::Gateway => "Gateway",
        }
    }

    /// The `apiVersion`s the kind is served under, preferred first.
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::Service | Kind::Endpoints | Kind::Pod => &["v1"],
            _ => &[
                "networking.istio.io/v1",
                "networking.istio.io/v1beta1",
                "networking.istio.io/v1alpha3",
            ],
        }
    }

    /// The kind of an object by its `apiVersion` and `kind`.
    pub fn of(obj: &Value) -> Option<Kind> {
        let kind = obj.get("kind")?.as_str()?;
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == kind && k.api_versions().contains(&api_version))
    }
}

impl Snapshot {
    /// The objects of one kind.
    pub fn objects(&self, kind: Kind) -> &Vec<Value> {
        match kind {
            Kind::Service => &self.services,
            Kind::Endpoints => &self.endpoints,
            Kind::Pod => &self.pods,
            Kind::VirtualService => &self.virtual_services,
            Kind::DestinationRule => &self.destination_rules,
            Kind::Gateway => &self.gateways,
        }
    }

    /// The objects of one kind, to change.
    pub fn objects_mut(&mut self, kind: Kind) -> &mut Vec<Value> {
        match kind {
            Kind::Service => &mut self.services,
            Kind::Endpoints => &mut self.endpoints,
            Kind::Pod => &mut self.pods,
            Kind::VirtualService => &mut self.virtual_services,
            Kind::DestinationRule => &mut self.destination_rules,
            Kind::Gateway => &mut self.gateways,
        }
    }

    /// Sort objects into a snapshot by `apiVersion` and `kind`; `kind: List` is expanded.
    /// Returns the snapshot and the objects that are not of a kind the gateway reads.
    pub fn from_objects(objects: impl IntoIterator<Item = Value>) -> (Snapshot, Vec<Value>) {
        let mut snap = Snapshot::default();
        let mut other = Vec::new();
        let mut stack: Vec<Value> = objects.into_iter().collect();
        stack.reverse();
        while let Some(obj) = stack.pop() {
            if obj.get("kind").and_then(Value::as_str) == Some("List") {
                if let Some(Value::Array(items)) = obj.get("items") {
                    stack.extend(items.iter().rev().cloned());
                }
                continue;
            }
            match Kind::of(&obj) {
                Some(kind) => snap.objects_mut(kind).push(obj),
                None => other.push(obj),
            }
        }
        (snap, other)
    }

    /// Read a multi-document YAML (or JSON) text of Services, Endpoints, Pods, VirtualServices,
    /// DestinationRules and Gateways. Other kinds are ignored with a warning in the log.
    pub fn from_yaml(name: &str, text: &str) -> Result<Snapshot, SnapshotError> {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(text).map_err(|e| SnapshotError::Parse {
                path: name.to_string(),
                message: e.to_string(),
            })?;
        let (snap, other) = Snapshot::from_objects(docs.into_iter().filter(|d| !d.is_null()));
        for obj in other {
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
            tracing::warn!(
                file = name,
                kind,
                "ignoring an object the gateway does not read"
            );
        }
        Ok(snap)
    }

    /// Read a static configuration file (see [`Snapshot::from_yaml`]).
    pub fn from_file(path: &std::path::Path) -> Result<Snapshot, SnapshotError> {
        let text = std::fs::read_to_string(path).map_err(|source| SnapshotError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Snapshot::from_yaml(&path.display().to_string(), &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_yaml_documents_by_kind() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Endpoints\n  metadata: {name: a}\n---\n\
                    apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: a}\n---\n\
                    apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n";
        let snap = Snapshot::from_yaml("t.yaml", text).unwrap();
        assert_eq!(snap.services.len(), 1);
        assert_eq!(snap.endpoints.len(), 1);
        assert_eq!(snap.virtual_services.len(), 1);
        assert!(Snapshot::from_yaml("bad.yaml", "a: [").is_err());
    }
}
