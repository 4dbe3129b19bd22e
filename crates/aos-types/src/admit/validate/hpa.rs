//! HorizontalPodAutoscaler (autoscaling/v2).

use serde_json::{Value, json};

use super::super::{Errors, names};
use super::{int_at, items, one_of, quantity, str_at};

const METRIC_SOURCES: &[(&str, &str)] = &[
    ("Object", "object"),
    ("Pods", "pods"),
    ("Resource", "resource"),
    ("ContainerResource", "containerResource"),
    ("External", "external"),
];

pub(super) fn hpa(obj: &Value, errs: &mut Errors) {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    match spec.get("scaleTargetRef") {
        None => errs.required("spec.scaleTargetRef", ""),
        Some(target) => {
            let kind = str_at(target, "kind").unwrap_or_default();
            if kind.is_empty() {
                errs.required("spec.scaleTargetRef.kind", "");
            } else {
                errs.invalid_all(
                    "spec.scaleTargetRef.kind",
                    &json!(kind),
                    names::path_segment_name(kind),
                );
            }
            let name = str_at(target, "name").unwrap_or_default();
            if name.is_empty() {
                errs.required("spec.scaleTargetRef.name", "");
            } else {
                errs.invalid_all(
                    "spec.scaleTargetRef.name",
                    &json!(name),
                    names::path_segment_name(name),
                );
            }
        }
    }
    let min = int_at(spec, "minReplicas").unwrap_or(1);
    if min < 1 {
        errs.invalid(
            "spec.minReplicas",
            &json!(min),
            "must be greater than or equal to 1",
        );
    }
    match int_at(spec, "maxReplicas") {
        None => errs.required("spec.maxReplicas", ""),
        Some(max) if max < 1 => {
            errs.invalid("spec.maxReplicas", &json!(max), "must be greater than 0")
        }
        Some(max) if max < min => errs.invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to `minReplicas`",
        ),
        Some(_) => {}
    }
    for (i, m) in items(spec, "metrics").iter().enumerate() {
        metric(m, &format!("spec.metrics[{i}]"), errs);
    }
    if let Some(behavior) = spec.get("behavior") {
        for key in ["scaleUp", "scaleDown"] {
            if let Some(rules) = behavior.get(key) {
                scaling_rules(rules, &format!("spec.behavior.{key}"), errs);
            }
        }
    }
}

fn metric(m: &Value, mp: &str, errs: &mut Errors) {
    let ty = str_at(m, "type").unwrap_or_default();
    let Some((_, source)) = METRIC_SOURCES.iter().find(|(t, _)| *t == ty) else {
        let supported: Vec<&str> = METRIC_SOURCES.iter().map(|(t, _)| *t).collect();
        errs.not_supported(
            &format!("{mp}.type"),
            m.get("type").unwrap_or(&json!("")),
            &supported,
        );
        return;
    };
    for (_, other) in METRIC_SOURCES {
        if other != source && m.get(*other).is_some() {
            errs.forbidden(
                &format!("{mp}.{other}"),
                "must populate the given metric source only",
            );
        }
    }
    let Some(src) = m.get(*source) else {
        errs.required(
            &format!("{mp}.{source}"),
            "must populate information for the given metric source",
        );
        return;
    };
    let sp = format!("{mp}.{source}");
    match *source {
        "resource" | "containerResource" => {
            if str_at(src, "name").unwrap_or_default().is_empty() {
                errs.required(&format!("{sp}.name"), "must specify a resource name");
            }
            if *source == "containerResource"
                && str_at(src, "container").unwrap_or_default().is_empty()
            {
                errs.required(&format!("{sp}.container"), "must specify a container");
            }
        }
        _ => {
            let name = src
                .get("metric")
                .and_then(|metric| str_at(metric, "name"))
                .unwrap_or_default();
            if name.is_empty() {
                errs.required(&format!("{sp}.metric.name"), "must specify a metric name");
            }
            if *source == "object"
                && src
                    .get("describedObject")
                    .and_then(|d| str_at(d, "name"))
                    .unwrap_or_default()
                    .is_empty()
            {
                errs.required(&format!("{sp}.describedObject.name"), "");
            }
        }
    }
    let Some(target) = src.get("target") else {
        errs.required(&format!("{sp}.target"), "must specify a metric target");
        return;
    };
    let tp = format!("{sp}.target");
    match str_at(target, "type").unwrap_or_default() {
        "Utilization" => {
            if *source == "pods" || *source == "object" || *source == "external" {
                errs.not_supported(
                    &format!("{tp}.type"),
                    &json!("Utilization"),
                    &["Value", "AverageValue"],
                );
            }
            match int_at(target, "averageUtilization") {
                None => errs.required(
                    &format!("{tp}.averageUtilization"),
                    "must set either a target raw value or a target utilization",
                ),
                Some(u) if u < 1 => errs.invalid(
                    &format!("{tp}.averageUtilization"),
                    &json!(u),
                    "must be greater than 0",
                ),
                Some(_) => {}
            }
        }
        "Value" | "AverageValue" => {
            let key = if str_at(target, "type") == Some("Value") {
                "value"
            } else {
                "averageValue"
            };
            match target.get(key) {
                None => errs.required(
                    &format!("{tp}.{key}"),
                    &format!("must specify a positive target {key}"),
                ),
                Some(v) => {
                    let p = format!("{tp}.{key}");
                    if let Some(q) = quantity(v, &p, errs)
                        && (q.is_negative() || q.is_zero())
                    {
                        errs.invalid(&p, v, "must be positive");
                    }
                }
            }
        }
        _ => errs.not_supported(
            &format!("{tp}.type"),
            target.get("type").unwrap_or(&json!("")),
            &["Utilization", "Value", "AverageValue"],
        ),
    }
}

fn scaling_rules(rules: &Value, rp: &str, errs: &mut Errors) {
    if let Some(w) = int_at(rules, "stabilizationWindowSeconds") {
        if w < 0 {
            errs.invalid(
                &format!("{rp}.stabilizationWindowSeconds"),
                &json!(w),
                "must be greater than or equal to zero",
            );
        } else if w > 3600 {
            errs.invalid(
                &format!("{rp}.stabilizationWindowSeconds"),
                &json!(w),
                "must be less than or equal to 3600",
            );
        }
    }
    one_of(rules, "selectPolicy", &["Max", "Min", "Disabled"], rp, errs);
    let policies = items(rules, "policies");
    if policies.is_empty() && rules.get("policies").is_some() {
        errs.required(
            &format!("{rp}.policies"),
            "must specify at least one Policy",
        );
    }
    for (i, p) in policies.iter().enumerate() {
        let pp = format!("{rp}.policies[{i}]");
        one_of(p, "type", &["Pods", "Percent"], &pp, errs);
        if p.get("type").is_none() {
            errs.required(&format!("{pp}.type"), "");
        }
        match int_at(p, "value") {
            Some(v) if v <= 0 => errs.invalid(
                &format!("{pp}.value"),
                &json!(v),
                "must be greater than zero",
            ),
            None => errs.required(&format!("{pp}.value"), ""),
            _ => {}
        }
        match int_at(p, "periodSeconds") {
            Some(s) if s <= 0 => errs.invalid(
                &format!("{pp}.periodSeconds"),
                &json!(s),
                "must be greater than zero",
            ),
            Some(s) if s > 1800 => errs.invalid(
                &format!("{pp}.periodSeconds"),
                &json!(s),
                "must be less than or equal to 1800",
            ),
            None => errs.required(&format!("{pp}.periodSeconds"), ""),
            _ => {}
        }
    }
}
