//! The resource types the node agent uses. Their REST coordinates are fixed by the Kubernetes
//! API, so they are spelled out here rather than looked up.

use aos_types::ResourceType;

const fn core(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    status: bool,
) -> ResourceType {
    ResourceType {
        group: "",
        version: "v1",
        versions: &["v1"],
        kind,
        plural,
        singular,
        short_names: &[],
        namespaced,
        status_subresource: status,
        scale_subresource: false,
        categories: &[],
    }
}

/// `v1` Pods.
pub static PODS: ResourceType = core("Pod", "pods", "pod", true, true);
/// `v1` Nodes.
pub static NODES: ResourceType = core("Node", "nodes", "node", false, true);
/// `v1` Namespaces.
pub static NAMESPACES: ResourceType = core("Namespace", "namespaces", "namespace", false, true);
/// `v1` Secrets.
pub static SECRETS: ResourceType = core("Secret", "secrets", "secret", true, false);
/// `v1` ConfigMaps.
pub static CONFIGMAPS: ResourceType = core("ConfigMap", "configmaps", "configmap", true, false);
/// `v1` Events.
pub static EVENTS: ResourceType = core("Event", "events", "event", true, false);
/// `coordination.k8s.io/v1` Leases.
pub static LEASES: ResourceType = ResourceType {
    group: "coordination.k8s.io",
    version: "v1",
    versions: &["v1"],
    kind: "Lease",
    plural: "leases",
    singular: "lease",
    short_names: &[],
    namespaced: true,
    status_subresource: false,
    scale_subresource: false,
    categories: &[],
};
