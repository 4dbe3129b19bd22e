//! The table of resource types aos serves: group, version, kind, plural, scope.

/// One kind of resource as the API serves it.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; `""` for the core group.
    pub group: &'static str,
    /// Preferred (and storage) version, e.g. `"v1"`.
    pub version: &'static str,
    /// Every served version, preferred first (Istio kinds serve `v1` and `v1beta1`).
    pub versions: &'static [&'static str],
    /// Kind, e.g. `"Deployment"`.
    pub kind: &'static str,
    /// Plural resource name, e.g. `"deployments"`.
    pub plural: &'static str,
    /// Singular resource name, e.g. `"deployment"`.
    pub singular: &'static str,
    /// kubectl short names, e.g. `["deploy"]`.
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether the kind has a `status` subresource.
    pub status_subresource: bool,
    /// Whether the kind has a `scale` subresource.
    pub scale_subresource: bool,
    /// Categories (`"all"` for what `get all` lists).
    pub categories: &'static [&'static str],
}

impl ResourceType {
    /// `"v1"` for core, else `"group/version"`, for the preferred version.
    pub fn api_version(&self) -> String {
        api_version_of(self.group, self.version)
    }

    /// `"v1"` for core, else `"group/version"`, for any version.
    pub fn api_version_for(&self, version: &str) -> String {
        api_version_of(self.group, version)
    }

    /// Whether `version` is one of the served versions.
    pub fn serves(&self, version: &str) -> bool {
        self.versions.contains(&version)
    }

    /// Whether `api_version` (`"v1"`, `"apps/v1"`) names this type's group and a served version.
    pub fn serves_api_version(&self, api_version: &str) -> bool {
        let (group, version) = split_api_version(api_version);
        group == self.group && self.serves(version)
    }

    /// `"deployments.apps"`, or `"pods"` for the core group: the name kubectl prints.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether the type is in `category` (e.g. `"all"`).
    pub fn in_category(&self, category: &str) -> bool {
        self.categories.contains(&category)
    }
}

fn api_version_of(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Split an `apiVersion` into group and version: `"apps/v1"` → `("apps", "v1")`, `"v1"` → `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

const CORE: &[&str] = &["v1"];
const ISTIO: &[&str] = &["v1", "v1beta1"];
const ISTIO_CATEGORIES: &[&str] = &["istio-io", "networking-istio-io"];

static TYPES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        versions: CORE,
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        short_names: &["ns"],
        namespaced: false,
        status_subresource: true,
        scale_subresource: false,
        categories: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        versions: CORE,
        kind: "Node",
        plural: "nodes",
        singular: "node",
        short_names: &["no"],
        namespaced: false,
        status_subresource: true,
        scale_subresource: false,
        categories: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        versions: CORE,
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        namespaced: true,
        status_subresource: true,
        scale_subresource: false,
        categories: &["all"],
    },
    ResourceType {
        group: "",
        version: "v1",
        versions: CORE,
        kind: "Service",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        namespaced: true,
        status_subresource: true,
        scale_subresource: false,
        categories: &["all"],
    },
    ResourceType {
        group: "",
        version: "v1",
        versions: CORE,
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        short_names: &["ep"],
        namespaced: true,
        status_subresource: false,
        scale_subresource: false,
        categories: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        versions: CORE,
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        namespaced: true,
        status_subresource: false,
        scale_subresource: false,
        categories: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        versions: CORE,
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        short_names: &[],
        namespaced: true,
        status_subresource: false,
        scale_subresource: false,
        categories: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        versions: CORE,
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        namespaced: true,
        status_subresource: false,
        scale_subresource: false,
        categories: &[],
    },
    ResourceType {
        group: "apps",
        version: "v1",
        versions: CORE,
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        namespaced: true,
        status_subresource: true,
        scale_subresource: true,
        categories: &["all"],
    },
    ResourceType {
        group: "apps",
        version: "v1",
        versions: CORE,
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        namespaced: true,
        status_subresource: true,
        scale_subresource: true,
        categories: &["all"],
    },
    ResourceType {
        group: "autoscaling",
        version: "v2",
        versions: &["v2"],
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        short_names: &["hpa"],
        namespaced: true,
        status_subresource: true,
        scale_subresource: false,
        categories: &["all"],
    },
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        versions: CORE,
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        short_names: &[],
        namespaced: true,
        status_subresource: false,
        scale_subresource: false,
        categories: &[],
    },
    ResourceType {
        group: "networking.istio.io",
        version: "v1",
        versions: ISTIO,
        kind: "VirtualService",
        plural: "virtualservices",
        singular: "virtualservice",
        short_names: &["vs"],
        namespaced: true,
        status_subresource: true,
        scale_subresource: false,
        categories: ISTIO_CATEGORIES,
    },
    ResourceType {
        group: "networking.istio.io",
        version: "v1",
        versions: ISTIO,
        kind: "DestinationRule",
        plural: "destinationrules",
        singular: "destinationrule",
        short_names: &["dr"],
        namespaced: true,
        status_subresource: true,
        scale_subresource: false,
        categories: ISTIO_CATEGORIES,
    },
    ResourceType {
        group: "networking.istio.io",
        version: "v1",
        versions: ISTIO,
        kind: "Gateway",
        plural: "gateways",
        singular: "gateway",
        short_names: &["gw"],
        namespaced: true,
        status_subresource: true,
        scale_subresource: false,
        categories: ISTIO_CATEGORIES,
    },
];

/// Every resource type aos serves.
pub fn all() -> &'static [ResourceType] {
    TYPES
}

/// Look up by group, version and plural (as in a REST path).
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    TYPES
        .iter()
        .find(|rt| rt.group == group && rt.plural == plural && rt.serves(version))
}

/// Look up by an object's `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    TYPES
        .iter()
        .find(|rt| rt.kind == kind && rt.serves_api_version(api_version))
}

/// Resolve a name a user types on the command line: plural, singular, short
/// name or kind, case-insensitive, optionally qualified by group
/// (`pods`, `pod`, `po`, `Pod`, `deploy`, `deployments.apps`, `vs`).
///
/// The qualifier may also carry a version, as kubectl accepts:
/// `deployments.v1.apps`, `virtualservices.v1beta1.networking.istio.io`.
pub fn by_cli_name(name: &str) -> Option<&'static ResourceType> {
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() {
        return None;
    }
    let (resource, qualifier) = match name.split_once('.') {
        Some((resource, qualifier)) => (resource, Some(qualifier)),
        None => (name.as_str(), None),
    };
    TYPES.iter().find(|rt| {
        let named = rt.plural == resource
            || rt.singular == resource
            || rt.kind.eq_ignore_ascii_case(resource)
            || rt.short_names.contains(&resource);
        named
            && match qualifier {
                None => true,
                Some(q) => qualifier_matches(rt, q),
            }
    })
}

fn qualifier_matches(rt: &ResourceType, qualifier: &str) -> bool {
    if qualifier == rt.group {
        return true;
    }
    // `v1.apps`, `v1beta1.networking.istio.io`, or `v1` alone for the core group.
    match qualifier.split_once('.') {
        Some((version, group)) => group == rt.group && rt.serves(version),
        None => rt.group.is_empty() && rt.serves(qualifier),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        assert_eq!(by_kind("v1", "Pod").unwrap().api_version(), "v1");
        assert_eq!(
            by_kind("apps/v1", "Deployment").unwrap().api_version(),
            "apps/v1"
        );
        let vs = by_kind("networking.istio.io/v1beta1", "VirtualService").unwrap();
        assert_eq!(vs.api_version(), "networking.istio.io/v1");
        assert_eq!(vs.api_version_for("v1beta1"), "networking.istio.io/v1beta1");
    }

    #[test]
    fn lookups_by_kind() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("v1", "Pod", Some("pods")),
            ("v1", "pod", None),
            ("apps/v1", "Pod", None),
            ("apps/v1", "ReplicaSet", Some("replicasets")),
            ("apps/v1beta1", "Deployment", None),
            (
                "autoscaling/v2",
                "HorizontalPodAutoscaler",
                Some("horizontalpodautoscalers"),
            ),
            ("autoscaling/v1", "HorizontalPodAutoscaler", None),
            (
                "networking.istio.io/v1",
                "DestinationRule",
                Some("destinationrules"),
            ),
            ("networking.istio.io/v1beta1", "Gateway", Some("gateways")),
            ("networking.istio.io/v1alpha3", "Gateway", None),
            ("coordination.k8s.io/v1", "Lease", Some("leases")),
            ("monitoring.coreos.com/v1", "ServiceMonitor", None),
            ("", "Pod", None),
        ];
        for (av, kind, want) in cases {
            assert_eq!(by_kind(av, kind).map(|rt| rt.plural), *want, "{av} {kind}");
        }
    }

    #[test]
    fn lookups_by_plural() {
        assert_eq!(by_plural("", "v1", "pods").unwrap().kind, "Pod");
        assert_eq!(
            by_plural("apps", "v1", "deployments").unwrap().kind,
            "Deployment"
        );
        assert!(by_plural("", "v1", "deployments").is_none());
        assert!(by_plural("apps", "v2", "deployments").is_none());
        assert_eq!(
            by_plural("networking.istio.io", "v1beta1", "virtualservices")
                .unwrap()
                .kind,
            "VirtualService"
        );
    }

    #[test]
    fn cli_names() {
        let cases: &[(&str, Option<&str>)] = &[
            ("pods", Some("Pod")),
            ("pod", Some("Pod")),
            ("po", Some("Pod")),
            ("Pod", Some("Pod")),
            ("PODS", Some("Pod")),
            ("ns", Some("Namespace")),
            ("no", Some("Node")),
            ("svc", Some("Service")),
            ("ep", Some("Endpoints")),
            ("endpoints", Some("Endpoints")),
            ("cm", Some("ConfigMap")),
            ("secret", Some("Secret")),
            ("ev", Some("Event")),
            ("deploy", Some("Deployment")),
            ("deployments.apps", Some("Deployment")),
            ("deployments.v1.apps", Some("Deployment")),
            ("deployment.extensions", None),
            ("rs", Some("ReplicaSet")),
            ("hpa", Some("HorizontalPodAutoscaler")),
            (
                "horizontalpodautoscalers.autoscaling",
                Some("HorizontalPodAutoscaler"),
            ),
            ("vs", Some("VirtualService")),
            (
                "virtualservices.networking.istio.io",
                Some("VirtualService"),
            ),
            (
                "virtualservice.v1beta1.networking.istio.io",
                Some("VirtualService"),
            ),
            ("dr", Some("DestinationRule")),
            ("gw", Some("Gateway")),
            ("gateway", Some("Gateway")),
            ("lease", Some("Lease")),
            ("pods.v1", Some("Pod")),
            ("servicemonitors", None),
            ("", None),
            ("all", None),
        ];
        for (name, want) in cases {
            assert_eq!(by_cli_name(name).map(|rt| rt.kind), *want, "{name}");
        }
    }

    #[test]
    fn table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for rt in all() {
            assert_eq!(rt.versions[0], rt.version, "{}", rt.kind);
            assert!(seen.insert((rt.group, rt.plural)), "{}", rt.plural);
            for short in rt.short_names {
                assert_eq!(by_cli_name(short).unwrap().kind, rt.kind);
            }
        }
        let all_category: Vec<&str> = all()
            .iter()
            .filter(|rt| rt.in_category("all"))
            .map(|rt| rt.plural)
            .collect();
        assert_eq!(
            all_category,
            [
                "pods",
                "services",
                "deployments",
                "replicasets",
                "horizontalpodautoscalers"
            ]
        );
    }
}
