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
        unimplemented!()
    }
}

/// Every resource type aos serves.
pub fn all() -> &'static [ResourceType] {
    unimplemented!()
}

/// Look up by group, version and plural (as in a REST path).
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    let _ = (group, version, plural);
    unimplemented!()
}

/// Look up by an object's `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    let _ = (api_version, kind);
    unimplemented!()
}

/// Resolve a name a user types on the command line: plural, singular, short
/// name or kind, case-insensitive, optionally qualified by group
/// (`pods`, `pod`, `po`, `Pod`, `deploy`, `deployments.apps`, `vs`).
pub fn by_cli_name(name: &str) -> Option<&'static ResourceType> {
    let _ = name;
    unimplemented!()
}
