//! Validation as Kubernetes (and Istio, for its kinds) validates, with field
//! paths as kubectl prints them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{Errors, names};
use crate::ResourceType;
use crate::quantity::{Quantity, parse_quantity};
use crate::selector::LabelSelector;

mod hpa;
mod istio;
mod pod;

/// Validate `obj` (defaulted) as `rt`; `old` is the stored object on update.
pub(crate) fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    metadata(rt, obj, errs);
    match (rt.group, rt.kind) {
        ("", "Namespace") => namespace(obj, errs),
        ("", "Pod") => pod::pod(obj, errs),
        ("", "Service") => service(obj, errs),
        ("", "Endpoints") => endpoints(obj, errs),
        ("", "ConfigMap") => config_map(obj, old, errs),
        ("", "Secret") => secret(obj, old, errs),
        ("", "Event") => event(obj, errs),
        ("apps", "Deployment") => workload(obj, old, errs, true),
        ("apps", "ReplicaSet") => workload(obj, old, errs, false),
        ("autoscaling", "HorizontalPodAutoscaler") => hpa::hpa(obj, errs),
        ("coordination.k8s.io", "Lease") => lease(obj, errs),
        ("networking.istio.io", "VirtualService") => istio::virtual_service(obj, errs),
        ("networking.istio.io", "DestinationRule") => istio::destination_rule(obj, errs),
        ("networking.istio.io", "Gateway") => istio::gateway(obj, errs),
        _ => {}
    }
}

// ---- small accessors -------------------------------------------------------

/// `path.key`, or `key` at the top level.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

pub(super) fn int_at(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

pub(super) fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub(super) fn entries<'a>(v: &'a Value, key: &str) -> Vec<(&'a String, &'a Value)> {
    v.get(key)
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default()
}

/// `min <= v[key]` when set.
pub(super) fn at_least(v: &Value, key: &str, min: i64, path: &str, errs: &mut Errors) {
    if let Some(n) = int_at(v, key)
        && n < min
    {
        let detail = if min == 0 {
            "must be greater than or equal to 0".to_string()
        } else {
            format!("must be greater than or equal to {min}")
        };
        errs.invalid(&join(path, key), &json!(n), &detail);
    }
}

/// `1 <= v[key] <= 65535` when set.
pub(super) fn port_number(v: &Value, key: &str, path: &str, errs: &mut Errors) {
    if let Some(n) = v.get(key).and_then(Value::as_i64)
        && !(1..=65535).contains(&n)
    {
        errs.invalid(
            &join(path, key),
            &json!(n),
            "must be between 1 and 65535, inclusive",
        );
    }
}

/// An int-or-string port: a number in range, or an IANA service name.
pub(super) fn int_or_name_port(v: &Value, path: &str, errs: &mut Errors) {
    match v {
        Value::Number(n) if !n.as_i64().is_some_and(|n| (1..=65535).contains(&n)) => {
            errs.invalid(path, v, "must be between 1 and 65535, inclusive");
        }
        Value::String(s) => {
            if let Ok(n) = s.parse::<i64>() {
                if !(1..=65535).contains(&n) {
                    errs.invalid(path, v, "must be between 1 and 65535, inclusive");
                }
            } else {
                errs.invalid_all(path, v, names::iana_svc_name(s));
            }
        }
        _ => {}
    }
}

/// One of `supported`, when set.
pub(super) fn one_of(v: &Value, key: &str, supported: &[&str], path: &str, errs: &mut Errors) {
    if let Some(s) = v.get(key)
        && !s.as_str().is_some_and(|s| supported.contains(&s))
    {
        errs.not_supported(&join(path, key), s, supported);
    }
}

/// Labels (or a selector map): keys are qualified names, values label values.
pub(super) fn labels(map: &Value, path: &str, errs: &mut Errors) {
    let Some(map) = map.as_object() else {
        return;
    };
    for (k, v) in map {
        errs.invalid_all(path, &json!(k), names::qualified_name(k));
        if let Some(s) = v.as_str() {
            errs.invalid_all(path, v, names::label_value(s));
        }
    }
}

/// A quantity (string or number); `None` (with an error) when malformed.
pub(super) fn quantity(v: &Value, path: &str, errs: &mut Errors) -> Option<Quantity> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            errs.type_invalid(path, v, "string");
            return None;
        }
    };
    match parse_quantity(&text) {
        Ok(q) => Some(q),
        Err(e) => {
            errs.invalid(path, v, &e.to_string());
            None
        }
    }
}

/// Kubernetes' `LabelSelector` rules; returns the parsed selector when valid.
pub(super) fn label_selector(sel: &Value, path: &str, errs: &mut Errors) -> Option<LabelSelector> {
    let before = errs.0.len();
    if let Some(ml) = sel.get("matchLabels") {
        labels(ml, &format!("{path}.matchLabels"), errs);
    }
    for (i, e) in items(sel, "matchExpressions").iter().enumerate() {
        let ep = format!("{path}.matchExpressions[{i}]");
        let key = str_at(e, "key").unwrap_or_default();
        errs.invalid_all(
            &format!("{ep}.key"),
            &json!(key),
            names::qualified_name(key),
        );
        let values = items(e, "values");
        match str_at(e, "operator").unwrap_or_default() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.required(
                        &format!("{ep}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.forbidden(
                        &format!("{ep}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
            other => errs.invalid(
                &format!("{ep}.operator"),
                &json!(other),
                "not a valid selector operator",
            ),
        }
        for (j, v) in values.iter().enumerate() {
            if let Some(s) = v.as_str() {
                errs.invalid_all(&format!("{ep}.values[{j}]"), v, names::label_value(s));
            }
        }
    }
    if errs.0.len() != before {
        return None;
    }
    LabelSelector::from_object(sel).ok()
}

/// A Go duration, at least `min_ms` milliseconds; `None` when malformed.
pub(super) fn duration(
    v: &Value,
    key: &str,
    min_ms: u64,
    path: &str,
    errs: &mut Errors,
) -> Option<std::time::Duration> {
    let raw = v.get(key)?;
    let p = join(path, key);
    let Some(s) = raw.as_str() else {
        errs.type_invalid(&p, raw, "string");
        return None;
    };
    match crate::duration::parse_duration(s) {
        Ok(d) if d.as_millis() < u128::from(min_ms) => {
            errs.invalid(&p, raw, &format!("duration must be at least {min_ms}ms"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errs.invalid(&p, raw, &e.to_string());
            None
        }
    }
}

// ---- metadata ---------------------------------------------------------------

/// How a kind's names are checked.
fn name_rule(rt: &ResourceType) -> fn(&str) -> Vec<String> {
    match rt.kind {
        "Namespace" | "Service" => names::dns1123_label,
        "HorizontalPodAutoscaler" => names::path_segment_name,
        _ => names::dns1123_subdomain,
    }
}

const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

fn metadata(rt: &ResourceType, obj: &Value, errs: &mut Errors) {
    let empty = json!({});
    let meta = obj.get("metadata").unwrap_or(&empty);
    let name = str_at(meta, "name").unwrap_or_default();
    let generate = str_at(meta, "generateName").unwrap_or_default();
    if name.is_empty() {
        if generate.is_empty() {
            errs.required("metadata.name", "name or generateName is required");
        }
    } else {
        errs.invalid_all("metadata.name", &json!(name), name_rule(rt)(name));
    }
    let namespace = str_at(meta, "namespace").unwrap_or_default();
    if rt.namespaced {
        if !namespace.is_empty() {
            errs.invalid_all(
                "metadata.namespace",
                &json!(namespace),
                names::dns1123_label(namespace),
            );
        }
    } else if !namespace.is_empty() {
        errs.forbidden("metadata.namespace", "not allowed on this type");
    }
    if let Some(l) = meta.get("labels") {
        labels(l, "metadata.labels", errs);
    }
    let mut annotation_bytes = 0;
    for (k, v) in entries(meta, "annotations") {
        errs.invalid_all(
            "metadata.annotations",
            &json!(k),
            names::qualified_name(&k.to_ascii_lowercase()),
        );
        annotation_bytes += k.len() + v.as_str().map_or(0, str::len);
    }
    if annotation_bytes > MAX_ANNOTATIONS_BYTES {
        errs.too_long("metadata.annotations", MAX_ANNOTATIONS_BYTES);
    }
    for (i, r) in items(meta, "ownerReferences").iter().enumerate() {
        let p = format!("metadata.ownerReferences[{i}]");
        for field in ["apiVersion", "kind", "name", "uid"] {
            if str_at(r, field).unwrap_or_default().is_empty() {
                errs.required(
                    &format!("{p}.{field}"),
                    &format!("{field} must not be empty"),
                );
            }
        }
    }
    let controllers = items(meta, "ownerReferences")
        .iter()
        .filter(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .count();
    if controllers > 1 {
        errs.invalid(
            "metadata.ownerReferences",
            &json!(controllers),
            "only one reference can have Controller set to true",
        );
    }
}

// ---- kinds ------------------------------------------------------------------

fn namespace(obj: &Value, errs: &mut Errors) {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    for (i, f) in items(spec, "finalizers").iter().enumerate() {
        if let Some(s) = f.as_str() {
            errs.invalid_all(
                &format!("spec.finalizers[{i}]"),
                f,
                names::qualified_name(s),
            );
        }
    }
    if let Some(status) = obj.get("status") {
        one_of(status, "phase", &["Active", "Terminating"], "status", errs);
    }
}

/// Deployment (`deployment`) or ReplicaSet.
fn workload(obj: &Value, old: Option<&Value>, errs: &mut Errors, deployment: bool) {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let what = if deployment {
        "deployment"
    } else {
        "replicaset"
    };
    at_least(spec, "replicas", 0, "spec", errs);
    at_least(spec, "minReadySeconds", 0, "spec", errs);
    let selector = match spec.get("selector") {
        None => {
            errs.required("spec.selector", "");
            None
        }
        Some(sel) => {
            let parsed = label_selector(sel, "spec.selector", errs);
            let is_empty = items(sel, "matchExpressions").is_empty()
                && sel
                    .get("matchLabels")
                    .and_then(Value::as_object)
                    .is_none_or(|m| m.is_empty());
            if is_empty {
                errs.invalid(
                    "spec.selector",
                    sel,
                    &format!("empty selector is invalid for {what}"),
                );
                None
            } else {
                parsed
            }
        }
    };
    match spec.get("template") {
        None => errs.required("spec.template", ""),
        Some(template) => {
            let template_labels = template
                .get("metadata")
                .and_then(|m| m.get("labels"))
                .cloned()
                .unwrap_or_else(|| json!({}));
            labels(&template_labels, "spec.template.metadata.labels", errs);
            if let Some(sel) = &selector {
                let map: BTreeMap<String, String> = template_labels
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                if !sel.matches(&map) {
                    errs.invalid(
                        "spec.template.metadata.labels",
                        &template_labels,
                        "selector does not match template labels",
                    );
                }
            }
            match template.get("spec") {
                None => errs.required("spec.template.spec.containers", ""),
                Some(pod_spec) => {
                    pod::pod_spec(pod_spec, "spec.template.spec", errs);
                    if let Some(policy) = pod_spec.get("restartPolicy")
                        && policy.as_str() != Some("Always")
                    {
                        errs.not_supported("spec.template.spec.restartPolicy", policy, &["Always"]);
                    }
                }
            }
        }
    }
    if deployment {
        strategy(spec, errs);
        at_least(spec, "revisionHistoryLimit", 0, "spec", errs);
        if let Some(deadline) = int_at(spec, "progressDeadlineSeconds") {
            let min_ready = int_at(spec, "minReadySeconds").unwrap_or(0);
            if deadline < 0 {
                errs.invalid(
                    "spec.progressDeadlineSeconds",
                    &json!(deadline),
                    "must be greater than or equal to 0",
                );
            } else if deadline <= min_ready {
                errs.invalid(
                    "spec.progressDeadlineSeconds",
                    &json!(deadline),
                    "must be greater than minReadySeconds",
                );
            }
        }
    }
    if let Some(old_selector) = old
        .and_then(|o| o.get("spec"))
        .and_then(|s| s.get("selector"))
        && let Some(new_selector) = spec.get("selector")
        && !same_selector(old_selector, new_selector)
    {
        errs.invalid("spec.selector", new_selector, "field is immutable");
    }
}

/// Selectors compare by meaning, not by how empty fields were written.
fn same_selector(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| {
        let ml = v.get("matchLabels").cloned().unwrap_or_else(|| json!({}));
        let me = v
            .get("matchExpressions")
            .cloned()
            .unwrap_or_else(|| json!([]));
        (ml, me)
    };
    norm(a) == norm(b)
}

/// `25%` or `1`: `(value, is_percent)`.
fn int_or_percent(v: &Value, path: &str, errs: &mut Errors) -> Option<(i64, bool)> {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(n) if n >= 0 => Some((n, false)),
            _ => {
                errs.invalid(path, v, "must be greater than or equal to 0");
                None
            }
        },
        Value::String(s) => match s.strip_suffix('%').map(str::parse::<i64>) {
            Some(Ok(n)) if n >= 0 => Some((n, true)),
            _ => {
                errs.invalid(
                    path,
                    v,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%')",
                );
                None
            }
        },
        _ => None,
    }
}

fn strategy(spec: &Value, errs: &mut Errors) {
    let Some(strategy) = spec.get("strategy") else {
        return;
    };
    match str_at(strategy, "type") {
        Some("Recreate") => {
            if strategy.get("rollingUpdate").is_some() {
                errs.forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        Some("RollingUpdate") => {
            let Some(ru) = strategy.get("rollingUpdate") else {
                return;
            };
            let base = "spec.strategy.rollingUpdate";
            let unavailable = ru
                .get("maxUnavailable")
                .and_then(|v| int_or_percent(v, &format!("{base}.maxUnavailable"), errs));
            let surge = ru
                .get("maxSurge")
                .and_then(|v| int_or_percent(v, &format!("{base}.maxSurge"), errs));
            if let Some((n, true)) = unavailable
                && n > 100
            {
                errs.invalid(
                    &format!("{base}.maxUnavailable"),
                    &ru["maxUnavailable"],
                    "must not be greater than 100%",
                );
            }
            if let (Some((0, _)), Some((0, _))) = (unavailable, surge) {
                errs.invalid(
                    &format!("{base}.maxUnavailable"),
                    &ru["maxUnavailable"],
                    "may not be 0 when `maxSurge` is 0",
                );
            }
        }
        _ => errs.not_supported(
            "spec.strategy.type",
            strategy.get("type").unwrap_or(&Value::Null),
            &["Recreate", "RollingUpdate"],
        ),
    }
}

fn service(obj: &Value, errs: &mut Errors) {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let ty = str_at(spec, "type").unwrap_or("ClusterIP");
    one_of(
        spec,
        "type",
        &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
        "spec",
        errs,
    );
    one_of(spec, "sessionAffinity", &["None", "ClientIP"], "spec", errs);
    one_of(
        spec,
        "internalTrafficPolicy",
        &["Cluster", "Local"],
        "spec",
        errs,
    );
    one_of(
        spec,
        "externalTrafficPolicy",
        &["Cluster", "Local"],
        "spec",
        errs,
    );
    let cluster_ip = str_at(spec, "clusterIP").unwrap_or_default();
    if !cluster_ip.is_empty() && cluster_ip != "None" && !names::is_ip(cluster_ip) {
        errs.invalid(
            "spec.clusterIP",
            &json!(cluster_ip),
            "must be empty, 'None', or a valid IP address",
        );
    }
    if ty == "ExternalName" {
        let name = str_at(spec, "externalName").unwrap_or_default();
        if name.is_empty() {
            errs.required("spec.externalName", "");
        } else {
            errs.invalid_all(
                "spec.externalName",
                &json!(name),
                names::dns1123_subdomain(name.trim_end_matches('.')),
            );
        }
    }
    let ports = items(spec, "ports");
    if ports.is_empty() && ty != "ExternalName" && cluster_ip != "None" {
        errs.required("spec.ports", "");
    }
    let mut names_seen = BTreeSet::new();
    let mut ports_seen = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        let name = str_at(port, "name").unwrap_or_default();
        if name.is_empty() {
            if ports.len() > 1 {
                errs.required(&format!("{p}.name"), "");
            }
        } else {
            errs.invalid_all(
                &format!("{p}.name"),
                &json!(name),
                names::dns1123_label(name),
            );
            if !names_seen.insert(name) {
                errs.duplicate(&format!("{p}.name"), &json!(name));
            }
        }
        match port.get("port") {
            None => errs.required(&format!("{p}.port"), ""),
            Some(_) => port_number(port, "port", &p, errs),
        }
        one_of(port, "protocol", &["TCP", "UDP", "SCTP"], &p, errs);
        if let Some(tp) = port.get("targetPort") {
            int_or_name_port(tp, &format!("{p}.targetPort"), errs);
        }
        if let Some(np) = int_at(port, "nodePort")
            && np != 0
        {
            if ty == "ClusterIP" || ty == "ExternalName" {
                errs.forbidden(
                    &format!("{p}.nodePort"),
                    &format!("may not be used when `type` is '{ty}'"),
                );
            } else {
                port_number(port, "nodePort", &p, errs);
            }
        }
        let key = (
            int_at(port, "port").unwrap_or_default(),
            str_at(port, "protocol").unwrap_or("TCP").to_string(),
        );
        if !ports_seen.insert(key.clone()) {
            errs.duplicate(&p, &json!({"port": key.0, "protocol": key.1}));
        }
    }
    if let Some(sel) = spec.get("selector") {
        labels(sel, "spec.selector", errs);
    }
}

fn endpoints(obj: &Value, errs: &mut Errors) {
    for (i, subset) in items(obj, "subsets").iter().enumerate() {
        let sp = format!("subsets[{i}]");
        for key in ["addresses", "notReadyAddresses"] {
            for (j, a) in items(subset, key).iter().enumerate() {
                let ip = str_at(a, "ip").unwrap_or_default();
                if !names::is_ip(ip) {
                    errs.invalid(
                        &format!("{sp}.{key}[{j}].ip"),
                        &json!(ip),
                        "must be a valid IP address",
                    );
                }
            }
        }
        for (j, port) in items(subset, "ports").iter().enumerate() {
            let pp = format!("{sp}.ports[{j}]");
            match port.get("port") {
                None => errs.required(&format!("{pp}.port"), ""),
                Some(_) => port_number(port, "port", &pp, errs),
            }
            one_of(port, "protocol", &["TCP", "UDP", "SCTP"], &pp, errs);
            if let Some(name) = str_at(port, "name")
                && !name.is_empty()
            {
                errs.invalid_all(
                    &format!("{pp}.name"),
                    &json!(name),
                    names::dns1123_label(name),
                );
            }
        }
    }
}

const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Keys of `data`/`binaryData` (or `data` of a Secret): valid, not repeated, not too big.
fn data_keys(obj: &Value, fields: &[&str], errs: &mut Errors) {
    let mut seen = BTreeSet::new();
    let mut total = 0usize;
    for field in fields {
        for (k, v) in entries(obj, field) {
            let p = format!("{field}[{k}]");
            errs.invalid_all(&p, &json!(k), names::config_key(k));
            if !seen.insert(k.as_str()) {
                errs.invalid(
                    &p,
                    &json!(k),
                    "duplicate of key present in another data field",
                );
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
    }
    if total > MAX_DATA_BYTES {
        errs.too_long("data", MAX_DATA_BYTES);
    }
}

/// `immutable: true` objects keep their data, and stay immutable.
fn immutable_data(obj: &Value, old: Option<&Value>, fields: &[&str], errs: &mut Errors) {
    let Some(old) = old else {
        return;
    };
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.forbidden("immutable", "field is immutable when `immutable` is set");
    }
    for field in fields {
        if obj.get(*field) != old.get(*field) {
            errs.forbidden(field, "field is immutable when `immutable` is set");
        }
    }
}

fn config_map(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    data_keys(obj, &["data", "binaryData"], errs);
    immutable_data(obj, old, &["data", "binaryData"], errs);
}

fn secret(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    data_keys(obj, &["data"], errs);
    immutable_data(obj, old, &["data"], errs);
    let ty = str_at(obj, "type").unwrap_or("Opaque");
    let required: &[&str] = match ty {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    let data = obj.get("data");
    for key in required {
        if data.and_then(|d| d.get(*key)).is_none() {
            errs.required(&format!("data[{key}]"), "");
        }
    }
    if let Some(old_type) = old.and_then(|o| str_at(o, "type"))
        && old_type != ty
    {
        errs.invalid("type", &json!(ty), "field is immutable");
    }
}

fn event(obj: &Value, errs: &mut Errors) {
    let ns = obj
        .get("metadata")
        .and_then(|m| str_at(m, "namespace"))
        .unwrap_or_default();
    if let Some(involved) = obj.get("involvedObject")
        && let Some(ins) = str_at(involved, "namespace")
        && !ins.is_empty()
        && !ns.is_empty()
        && ins != ns
    {
        errs.invalid(
            "involvedObject.namespace",
            &json!(ins),
            "does not match event.namespace",
        );
    }
    one_of(obj, "type", &["Normal", "Warning"], "", errs);
    at_least(obj, "count", 0, "", errs);
}

fn lease(obj: &Value, errs: &mut Errors) {
    let Some(spec) = obj.get("spec") else {
        return;
    };
    at_least(spec, "leaseDurationSeconds", 1, "spec", errs);
    at_least(spec, "leaseTransitions", 0, "spec", errs);
}
