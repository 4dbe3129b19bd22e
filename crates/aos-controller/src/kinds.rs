//! The resource types the controllers use, resolved once from the table in `aos-types`.

use aos_types::ResourceType;

/// Resolved resource types.
#[derive(Clone, Debug)]
pub struct Kinds {
    /// `apps/v1` Deployments.
    pub deployments: &'static ResourceType,
    /// `apps/v1` ReplicaSets.
    pub replicasets: &'static ResourceType,
    /// `v1` Pods.
    pub pods: &'static ResourceType,
    /// `v1` Namespaces.
    pub namespaces: &'static ResourceType,
    /// `v1` Events.
    pub events: &'static ResourceType,
    /// `v1` Nodes.
    pub nodes: &'static ResourceType,
    /// `v1` Services.
    pub services: &'static ResourceType,
    /// `v1` Endpoints.
    pub endpoints: &'static ResourceType,
    /// Every served type (the garbage collector and the namespace controller walk them).
    pub all: Vec<&'static ResourceType>,
}

/// A kind the controllers need is missing from the resource table.
#[derive(Debug, thiserror::Error)]
#[error("resource table has no {api_version} {kind}")]
pub struct MissingKind {
    api_version: &'static str,
    kind: &'static str,
}

impl Kinds {
    /// Resolve from `aos_types::resource`.
    pub fn from_table() -> Result<Self, MissingKind> {
        let find = |api_version: &'static str, kind: &'static str| {
            aos_types::resource::by_kind(api_version, kind).ok_or(MissingKind { api_version, kind })
        };
        Ok(Self {
            deployments: find("apps/v1", "Deployment")?,
            replicasets: find("apps/v1", "ReplicaSet")?,
            pods: find("v1", "Pod")?,
            namespaces: find("v1", "Namespace")?,
            events: find("v1", "Event")?,
            nodes: find("v1", "Node")?,
            services: find("v1", "Service")?,
            endpoints: find("v1", "Endpoints")?,
            all: aos_types::resource::all().iter().collect(),
        })
    }

    /// Look up a type by `apiVersion` and `kind` among [`Kinds::all`] (any served version).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&'static ResourceType> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.all
            .iter()
            .copied()
            .find(|rt| rt.kind == kind && rt.group == group && rt.versions.contains(&version))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const fn rt(
        group: &'static str,
        kind: &'static str,
        plural: &'static str,
        namespaced: bool,
        status: bool,
    ) -> ResourceType {
        ResourceType {
            group,
            version: "v1",
            versions: &["v1"],
            kind,
            plural,
            singular: "",
            short_names: &[],
            namespaced,
            status_subresource: status,
            scale_subresource: false,
            categories: &[],
        }
    }

    pub(crate) static DEPLOYMENTS: ResourceType =
        rt("apps", "Deployment", "deployments", true, true);
    pub(crate) static REPLICASETS: ResourceType =
        rt("apps", "ReplicaSet", "replicasets", true, true);
    pub(crate) static PODS: ResourceType = rt("", "Pod", "pods", true, true);
    pub(crate) static NAMESPACES: ResourceType = rt("", "Namespace", "namespaces", false, true);
    pub(crate) static EVENTS: ResourceType = rt("", "Event", "events", true, false);
    pub(crate) static CONFIGMAPS: ResourceType = rt("", "ConfigMap", "configmaps", true, false);
    pub(crate) static NODES: ResourceType = rt("", "Node", "nodes", false, true);
    pub(crate) static SERVICES: ResourceType = rt("", "Service", "services", true, true);
    pub(crate) static ENDPOINTS: ResourceType = rt("", "Endpoints", "endpoints", true, false);

    /// The kinds of the tests' fake cluster.
    pub(crate) fn kinds() -> Kinds {
        Kinds {
            deployments: &DEPLOYMENTS,
            replicasets: &REPLICASETS,
            pods: &PODS,
            namespaces: &NAMESPACES,
            events: &EVENTS,
            nodes: &NODES,
            services: &SERVICES,
            endpoints: &ENDPOINTS,
            all: vec![
                &NAMESPACES,
                &NODES,
                &SERVICES,
                &ENDPOINTS,
                &CONFIGMAPS,
                &EVENTS,
                &PODS,
                &REPLICASETS,
                &DEPLOYMENTS,
            ],
        }
    }

    #[test]
    fn the_served_table_has_every_kind_the_controllers_need() {
        let k = Kinds::from_table().expect("every kind resolves");
        assert_eq!(
            (k.nodes.plural, k.services.plural, k.endpoints.plural),
            ("nodes", "services", "endpoints")
        );
        assert!(!k.nodes.namespaced && k.services.namespaced && k.endpoints.namespaced);
    }

    #[test]
    fn by_kind_matches_group_and_version() {
        let k = kinds();
        assert_eq!(
            k.by_kind("apps/v1", "ReplicaSet").unwrap().plural,
            "replicasets"
        );
        assert_eq!(k.by_kind("v1", "Pod").unwrap().plural, "pods");
        assert!(k.by_kind("apps/v2", "ReplicaSet").is_none());
    }
}
