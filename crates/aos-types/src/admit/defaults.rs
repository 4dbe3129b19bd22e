//! Defaults as Kubernetes applies them on create and update (its
//! `SetDefaults_*` functions), on the JSON form. A field the author set is
//! never changed.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::ResourceType;

/// Apply `rt`'s defaults to `obj` in place.
pub(crate) fn apply(rt: &ResourceType, obj: &mut Value) {
    match (rt.group, rt.kind) {
        ("", "Namespace") => namespace(obj),
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
            }
        }
        ("", "Service") => service(obj),
        ("", "Secret") => secret(obj),
        ("", "Endpoints") => endpoints(obj),
        ("apps", "Deployment") => deployment(obj),
        ("apps", "ReplicaSet") => replica_set(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(obj),
        _ => {}
    }
}

/// The object at `key` of `v`, created empty when absent; `None` when `v` is
/// not an object or the field holds something else.
fn child<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    v.as_object_mut()?
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

/// Set `key` to `value` when absent.
fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.entry(key).or_insert(value);
}

fn each_item(v: Option<&mut Value>, mut f: impl FnMut(&mut Value)) {
    if let Some(Value::Array(items)) = v {
        items.iter_mut().for_each(&mut f);
    }
}

fn namespace(obj: &mut Value) {
    if let Some(spec) = child(obj, "spec") {
        default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child(obj, "status") {
        default(status, "phase", json!("Active"));
    }
}

fn deployment(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    let strategy = spec
        .entry("strategy")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(strategy) = strategy.as_object_mut() {
        default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = strategy
                .entry("rollingUpdate")
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
        {
            default(ru, "maxUnavailable", json!("25%"));
            default(ru, "maxSurge", json!("25%"));
        }
    }
    if let Some(pod) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(pod);
    }
}

fn replica_set(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    default(spec, "replicas", json!(1));
    if let Some(pod) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(pod);
    }
}

/// Defaults of a `PodSpec` (also inside templates).
pub(crate) fn pod_spec(spec: &mut Value) {
    let Some(map) = spec.as_object_mut() else {
        return;
    };
    default(map, "dnsPolicy", json!("ClusterFirst"));
    default(map, "restartPolicy", json!("Always"));
    default(map, "terminationGracePeriodSeconds", json!(30));
    default(map, "securityContext", json!({}));
    default(map, "schedulerName", json!("default-scheduler"));
    default(map, "enableServiceLinks", json!(true));
    each_item(map.get_mut("containers"), |c| container(c, true));
    each_item(map.get_mut("initContainers"), |c| container(c, false));
    each_item(map.get_mut("volumes"), volume);
}

fn volume(v: &mut Value) {
    let Some(map) = v.as_object_mut() else {
        return;
    };
    // A volume with no source is an emptyDir.
    if map.keys().all(|k| k == "name") {
        map.insert("emptyDir".to_string(), json!({}));
    }
    for source in ["configMap", "secret"] {
        if let Some(s) = map.get_mut(source).and_then(Value::as_object_mut) {
            default(s, "defaultMode", json!(420));
        }
    }
}

/// The pull policy Kubernetes picks: `Always` for `:latest` or no tag, else `IfNotPresent`.
pub(crate) fn pull_policy_for(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Value, probes: bool) {
    let Some(map) = c.as_object_mut() else {
        return;
    };
    default(map, "terminationMessagePath", json!("/dev/termination-log"));
    default(map, "terminationMessagePolicy", json!("File"));
    if let Some(image) = map.get("image").and_then(Value::as_str) {
        let policy = pull_policy_for(image);
        default(map, "imagePullPolicy", json!(policy));
    }
    each_item(map.get_mut("ports"), |p| {
        if let Some(p) = p.as_object_mut() {
            default(p, "protocol", json!("TCP"));
        }
    });
    each_item(map.get_mut("env"), |e| {
        if let Some(f) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            default(f, "apiVersion", json!("v1"));
        }
    });
    if probes {
        for name in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if let Some(p) = map.get_mut(name) {
                probe(p);
            }
        }
    }
    if let Some(resources) = map.get_mut("resources").and_then(Value::as_object_mut) {
        let limits = resources
            .get("limits")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if !limits.is_empty() {
            let requests = resources
                .entry("requests")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(requests) = requests.as_object_mut() {
                for (k, v) in limits {
                    requests.entry(k).or_insert(v);
                }
            }
        }
    }
}

fn probe(p: &mut Value) {
    let Some(map) = p.as_object_mut() else {
        return;
    };
    default(map, "timeoutSeconds", json!(1));
    default(map, "periodSeconds", json!(10));
    default(map, "successThreshold", json!(1));
    default(map, "failureThreshold", json!(3));
    if let Some(h) = map.get_mut("httpGet").and_then(Value::as_object_mut) {
        default(h, "path", json!("/"));
        default(h, "scheme", json!("HTTP"));
    }
}

fn service(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "ExternalName" {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
        let config = spec
            .entry("sessionAffinityConfig")
            .or_insert_with(|| json!({}));
        if let Some(client_ip) = child(config, "clientIP") {
            default(client_ip, "timeoutSeconds", json!(10800));
        }
    }
    each_item(spec.get_mut("ports"), |p| {
        if let Some(p) = p.as_object_mut() {
            default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default(p, "targetPort", port);
            }
        }
    });
}

fn endpoints(obj: &mut Value) {
    each_item(obj.get_mut("subsets"), |s| {
        each_item(s.get_mut("ports"), |p| {
            if let Some(p) = p.as_object_mut() {
                default(p, "protocol", json!("TCP"));
            }
        });
    });
}

fn secret(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    default(map, "type", json!("Opaque"));
    // `stringData` is write-only: Kubernetes merges it into `data`, where it wins.
    if let Some(Value::Object(string_data)) = map.remove("stringData") {
        let data = map
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(data) = data.as_object_mut() {
            for (k, v) in string_data {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
}

/// The scale-up rules Kubernetes uses when none are given: double or add 4
/// pods every 15 s, whichever is more, with no stabilisation window.
pub fn hpa_default_scale_up() -> Value {
    json!({
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15}
        ]
    })
}

/// The scale-down rules Kubernetes uses when none are given: down to the
/// recommendation at once (100% per 15 s) after a 300 s stabilisation window.
pub fn hpa_default_scale_down() -> Value {
    json!({
        "stabilizationWindowSeconds": 300,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 15}
        ]
    })
}

/// The whole default `spec.behavior` of an HPA.
pub fn hpa_default_behavior() -> Value {
    json!({"scaleUp": hpa_default_scale_up(), "scaleDown": hpa_default_scale_down()})
}

fn hpa(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    default(spec, "minReplicas", json!(1));
    let no_metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_metrics {
        spec.insert(
            "metrics".to_string(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    // Like Kubernetes, rules are filled in only when `behavior` is given;
    // a controller treats an absent `behavior` as [`hpa_default_behavior`].
    if let Some(behavior) = spec.get_mut("behavior").and_then(Value::as_object_mut) {
        for (key, defaults) in [
            ("scaleUp", hpa_default_scale_up()),
            ("scaleDown", hpa_default_scale_down()),
        ] {
            let rules = behavior.entry(key).or_insert_with(|| defaults.clone());
            if let (Some(rules), Value::Object(defaults)) = (rules.as_object_mut(), defaults) {
                let empty_policies = rules
                    .get("policies")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
                if empty_policies {
                    rules.insert("policies".to_string(), defaults["policies"].clone());
                }
                default(rules, "selectPolicy", defaults["selectPolicy"].clone());
                default(
                    rules,
                    "stabilizationWindowSeconds",
                    defaults["stabilizationWindowSeconds"].clone(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("localhost:5000/app", "Always"),
            ("localhost:5000/app:v1", "IfNotPresent"),
            ("app@sha256:abcd", "IfNotPresent"),
            ("agent-registry:1.0.0", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(pull_policy_for(image), want, "{image}");
        }
    }
}
