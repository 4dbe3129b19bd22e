//! The parts of the watched objects the gateway reads, as serde structs.
//!
//! Kubernetes objects are reduced to the fields the gateway reads (they read leniently: the API
//! server has validated them already); the Istio resources are `aos_types::istio`'s. The route
//! compiler warns about fields it does not implement by looking at the raw JSON.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `metadata` of any object.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ObjectMeta {
    pub name: String,
    pub namespace: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    pub creation_timestamp: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub owner_references: Vec<OwnerReference>,
}

/// Read an explicit JSON `null` as the empty value, as Go's decoder does for lists and maps.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct OwnerReference {
    pub kind: String,
    pub name: String,
    pub controller: Option<bool>,
}

// ---------------------------------------------------------------- core/v1

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ServiceSpec {
    pub ports: Vec<ServicePort>,
    pub selector: Option<BTreeMap<String, String>>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub external_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: Option<serde_json::Value>,
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Endpoints {
    pub metadata: ObjectMeta,
    pub subsets: Vec<EndpointSubset>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct EndpointSubset {
    pub addresses: Vec<EndpointAddress>,
    pub ports: Vec<EndpointPort>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct EndpointAddress {
    pub ip: String,
    pub target_ref: Option<ObjectReference>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ObjectReference {
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EndpointPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Option<String>,
}

/// A pod, reduced to what the gateway needs: its labels (for DestinationRule subsets) and its
/// owner (for the `destination_workload` metric label).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Pod {
    pub metadata: ObjectMeta,
}

// ---------------------------------------------------------------- networking.istio.io

// The Istio resources are `aos_types::istio`'s, shared with admission.
pub(crate) use aos_types::istio::{
    ConnectionPoolSettings, CorsPolicy, DestinationRule, Gateway, HeaderOperations, Headers,
    HttpFaultInjection, HttpMatchRequest, HttpRetry, LoadBalancerSettings, OutlierDetection,
    Percent, StringMatch, TrafficPolicy, VirtualService,
};

/// Namespace and name of the `metadata` of a typed object.
pub(crate) trait Meta {
    /// The namespace (`default` when unset).
    fn ns(&self) -> &str;
    /// The name (empty when unset).
    fn name(&self) -> &str;
    /// The creation timestamp as written (empty when unset), for Istio's oldest-first order.
    fn created(&self) -> String;
}

impl Meta for ObjectMeta {
    fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn created(&self) -> String {
        self.creation_timestamp.clone().unwrap_or_default()
    }
}

impl Meta for k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
    fn created(&self) -> String {
        self.creation_timestamp
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_lists_and_maps_read_as_empty() {
        let m: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "p", "labels": null, "ownerReferences": null,
        }))
        .unwrap();
        assert!(m.labels.is_empty() && m.owner_references.is_empty());
    }
}
