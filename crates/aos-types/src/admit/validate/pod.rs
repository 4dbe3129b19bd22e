//! Pods and pod templates.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::super::{Errors, names};
use super::{
    at_least, entries, int_at, int_or_name_port, items, labels, one_of, port_number, quantity,
    str_at,
};

pub(super) fn pod(obj: &Value, errs: &mut Errors) {
    match obj.get("spec") {
        None => errs.required("spec.containers", ""),
        Some(spec) => pod_spec(spec, "spec", errs),
    }
}

const VOLUME_SOURCES_WITH_NAME: &[(&str, &str)] =
    &[("configMap", "name"), ("secret", "secretName")];

/// A `PodSpec` at `p`.
pub(super) fn pod_spec(spec: &Value, p: &str, errs: &mut Errors) {
    // Volumes first: mounts refer to them.
    let mut volumes = BTreeSet::new();
    for (i, v) in items(spec, "volumes").iter().enumerate() {
        let vp = format!("{p}.volumes[{i}]");
        let name = str_at(v, "name").unwrap_or_default();
        if name.is_empty() {
            errs.required(&format!("{vp}.name"), "");
        } else {
            errs.invalid_all(
                &format!("{vp}.name"),
                &json!(name),
                names::dns1123_label(name),
            );
            if !volumes.insert(name) {
                errs.duplicate(&format!("{vp}.name"), &json!(name));
            }
        }
        let sources: Vec<&String> = v
            .as_object()
            .map(|m| m.keys().filter(|k| *k != "name").collect())
            .unwrap_or_default();
        match sources.as_slice() {
            [] => errs.required(&vp, "must specify a volume type"),
            [_] => {}
            [_, rest @ ..] => {
                for s in rest {
                    errs.forbidden(
                        &format!("{vp}.{s}"),
                        "may not specify more than 1 volume type",
                    );
                }
            }
        }
        for (source, name_field) in VOLUME_SOURCES_WITH_NAME {
            if let Some(s) = v.get(*source) {
                if str_at(s, name_field).unwrap_or_default().is_empty() {
                    errs.required(&format!("{vp}.{source}.{name_field}"), "");
                }
                for (j, item) in items(s, "items").iter().enumerate() {
                    let path = str_at(item, "path").unwrap_or_default();
                    if path.is_empty() {
                        errs.required(&format!("{vp}.{source}.items[{j}].path"), "");
                    } else if path.starts_with('/') || path.split('/').any(|c| c == "..") {
                        errs.invalid(
                            &format!("{vp}.{source}.items[{j}].path"),
                            &json!(path),
                            "must be a relative path without '..'",
                        );
                    }
                }
                if let Some(mode) = int_at(s, "defaultMode")
                    && !(0..=0o777).contains(&mode)
                {
                    errs.invalid(
                        &format!("{vp}.{source}.defaultMode"),
                        &json!(mode),
                        "must be a number between 0 and 0777 (octal), both inclusive",
                    );
                }
            }
        }
        if let Some(limit) = v.get("emptyDir").and_then(|e| e.get("sizeLimit")) {
            let lp = format!("{vp}.emptyDir.sizeLimit");
            if let Some(q) = quantity(limit, &lp, errs)
                && q.is_negative()
            {
                errs.invalid(&lp, limit, "must be greater than or equal to 0");
            }
        }
    }

    let containers = items(spec, "containers");
    if containers.is_empty() {
        errs.required(&format!("{p}.containers"), "");
    }
    let mut container_names = BTreeSet::new();
    for (field, list) in [
        ("initContainers", items(spec, "initContainers")),
        ("containers", containers),
    ] {
        for (i, c) in list.iter().enumerate() {
            let cp = format!("{p}.{field}[{i}]");
            container(c, &cp, field == "containers", &volumes, errs);
            let name = str_at(c, "name").unwrap_or_default();
            if !name.is_empty() && !container_names.insert(name) {
                errs.duplicate(&format!("{cp}.name"), &json!(name));
            }
        }
    }

    one_of(
        spec,
        "restartPolicy",
        &["Always", "OnFailure", "Never"],
        p,
        errs,
    );
    one_of(
        spec,
        "dnsPolicy",
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        p,
        errs,
    );
    at_least(spec, "terminationGracePeriodSeconds", 0, p, errs);
    at_least(spec, "activeDeadlineSeconds", 1, p, errs);
    for key in ["hostname", "subdomain"] {
        if let Some(h) = str_at(spec, key)
            && !h.is_empty()
        {
            errs.invalid_all(&format!("{p}.{key}"), &json!(h), names::dns1123_label(h));
        }
    }
    if let Some(ns) = spec.get("nodeSelector") {
        labels(ns, &format!("{p}.nodeSelector"), errs);
    }
    for (i, t) in items(spec, "tolerations").iter().enumerate() {
        toleration(t, &format!("{p}.tolerations[{i}]"), errs);
    }
    if let Some(sc) = spec.get("securityContext") {
        let sp = format!("{p}.securityContext");
        for key in ["runAsUser", "runAsGroup", "fsGroup"] {
            id_range(sc, key, &sp, errs);
        }
        seccomp(sc, &sp, errs);
    }
}

fn id_range(v: &Value, key: &str, path: &str, errs: &mut Errors) {
    if let Some(n) = int_at(v, key)
        && !(0..=i64::from(i32::MAX)).contains(&n)
    {
        errs.invalid(
            &format!("{path}.{key}"),
            &json!(n),
            "must be between 0 and 2147483647, inclusive",
        );
    }
}

fn seccomp(sc: &Value, path: &str, errs: &mut Errors) {
    let Some(profile) = sc.get("seccompProfile") else {
        return;
    };
    let pp = format!("{path}.seccompProfile");
    one_of(
        profile,
        "type",
        &["RuntimeDefault", "Unconfined", "Localhost"],
        &pp,
        errs,
    );
    let local = str_at(profile, "localhostProfile").unwrap_or_default();
    match str_at(profile, "type") {
        None => errs.required(&format!("{pp}.type"), ""),
        Some("Localhost") if local.is_empty() => errs.required(
            &format!("{pp}.localhostProfile"),
            "must be set when seccomp type is Localhost",
        ),
        Some(t) if t != "Localhost" && !local.is_empty() => errs.invalid(
            &format!("{pp}.localhostProfile"),
            &json!(local),
            "can only be set when seccomp type is Localhost",
        ),
        _ => {}
    }
}

fn toleration(t: &Value, tp: &str, errs: &mut Errors) {
    let key = str_at(t, "key").unwrap_or_default();
    let operator = str_at(t, "operator").unwrap_or("Equal");
    let value = str_at(t, "value").unwrap_or_default();
    if !key.is_empty() {
        errs.invalid_all(
            &format!("{tp}.key"),
            &json!(key),
            names::qualified_name(key),
        );
    }
    match operator {
        "Equal" => {
            if key.is_empty() {
                errs.invalid(
                    &format!("{tp}.operator"),
                    &json!(operator),
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                );
            }
            errs.invalid_all(
                &format!("{tp}.value"),
                &json!(value),
                names::label_value(value),
            );
        }
        "Exists" => {
            if !value.is_empty() {
                errs.invalid(
                    &format!("{tp}.operator"),
                    &json!(value),
                    "value must be empty when `operator` is 'Exists'",
                );
            }
        }
        _ => errs.not_supported(
            &format!("{tp}.operator"),
            &json!(operator),
            &["Equal", "Exists"],
        ),
    }
    one_of(
        t,
        "effect",
        &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        tp,
        errs,
    );
    if t.get("tolerationSeconds").is_some() && str_at(t, "effect") != Some("NoExecute") {
        errs.invalid(
            &format!("{tp}.effect"),
            t.get("effect").unwrap_or(&json!("")),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        );
    }
}

const STANDARD_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

fn container(c: &Value, cp: &str, regular: bool, volumes: &BTreeSet<&str>, errs: &mut Errors) {
    let name = str_at(c, "name").unwrap_or_default();
    if name.is_empty() {
        errs.required(&format!("{cp}.name"), "");
    } else {
        errs.invalid_all(
            &format!("{cp}.name"),
            &json!(name),
            names::dns1123_label(name),
        );
    }
    if str_at(c, "image").unwrap_or_default().trim().is_empty() {
        errs.required(&format!("{cp}.image"), "");
    }
    one_of(
        c,
        "imagePullPolicy",
        &["Always", "IfNotPresent", "Never"],
        cp,
        errs,
    );
    one_of(
        c,
        "terminationMessagePolicy",
        &["File", "FallbackToLogsOnError"],
        cp,
        errs,
    );

    let mut port_names = BTreeSet::new();
    for (j, port) in items(c, "ports").iter().enumerate() {
        let pp = format!("{cp}.ports[{j}]");
        match port.get("containerPort") {
            None => errs.required(&format!("{pp}.containerPort"), ""),
            Some(_) => port_number(port, "containerPort", &pp, errs),
        }
        if int_at(port, "hostPort").is_some_and(|h| h != 0) {
            port_number(port, "hostPort", &pp, errs);
        }
        if let Some(pn) = str_at(port, "name")
            && !pn.is_empty()
        {
            errs.invalid_all(&format!("{pp}.name"), &json!(pn), names::iana_svc_name(pn));
            if !port_names.insert(pn) {
                errs.duplicate(&format!("{pp}.name"), &json!(pn));
            }
        }
        one_of(port, "protocol", &["TCP", "UDP", "SCTP"], &pp, errs);
    }

    for (j, e) in items(c, "env").iter().enumerate() {
        env_var(e, &format!("{cp}.env[{j}]"), errs);
    }
    for (j, e) in items(c, "envFrom").iter().enumerate() {
        let ep = format!("{cp}.envFrom[{j}]");
        let refs: Vec<&str> = ["configMapRef", "secretRef"]
            .into_iter()
            .filter(|k| e.get(*k).is_some())
            .collect();
        match refs.as_slice() {
            [] => errs.invalid(
                &ep,
                &json!(""),
                "must specify one of: `configMapRef` or `secretRef`",
            ),
            [one] => {
                if str_at(&e[*one], "name").unwrap_or_default().is_empty() {
                    errs.required(&format!("{ep}.{one}.name"), "");
                }
            }
            _ => errs.invalid(
                &ep,
                &json!(""),
                "may not have more than one field specified at a time",
            ),
        }
    }

    if let Some(resources) = c.get("resources") {
        resources_check(resources, &format!("{cp}.resources"), errs);
    }

    for probe_name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = c.get(probe_name) {
            let pp = format!("{cp}.{probe_name}");
            if !regular {
                errs.forbidden(&pp, "may not be set for init containers");
                continue;
            }
            probe_check(probe, &pp, probe_name != "readinessProbe", errs);
        }
    }
    if let Some(lifecycle) = c.get("lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lifecycle.get(hook) {
                handler(
                    h,
                    &format!("{cp}.lifecycle.{hook}"),
                    &["exec", "httpGet", "tcpSocket", "sleep"],
                    errs,
                );
            }
        }
    }

    let mut mount_paths = BTreeSet::new();
    for (j, m) in items(c, "volumeMounts").iter().enumerate() {
        let mp = format!("{cp}.volumeMounts[{j}]");
        let vname = str_at(m, "name").unwrap_or_default();
        if vname.is_empty() {
            errs.required(&format!("{mp}.name"), "");
        } else if !volumes.contains(vname) {
            errs.push(
                &format!("{mp}.name"),
                super::super::FieldErrorKind::Invalid,
                format!(
                    "Invalid value: {}: no volume of that name in the pod's volumes (Not found)",
                    json!(vname)
                ),
            );
        }
        let path = str_at(m, "mountPath").unwrap_or_default();
        if path.is_empty() {
            errs.required(&format!("{mp}.mountPath"), "");
        } else if !mount_paths.insert(path) {
            errs.invalid(&format!("{mp}.mountPath"), &json!(path), "must be unique");
        }
    }

    if let Some(sc) = c.get("securityContext") {
        let sp = format!("{cp}.securityContext");
        for key in ["runAsUser", "runAsGroup"] {
            id_range(sc, key, &sp, errs);
        }
        seccomp(sc, &sp, errs);
        let ape = sc.get("allowPrivilegeEscalation").and_then(Value::as_bool);
        if ape == Some(false) {
            if sc.get("privileged").and_then(Value::as_bool) == Some(true) {
                errs.invalid(
                    &sp,
                    &json!(""),
                    "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
                );
            }
            let adds_sys_admin = sc
                .get("capabilities")
                .map(|caps| items(caps, "add"))
                .unwrap_or_default()
                .iter()
                .any(|c| matches!(c.as_str(), Some("SYS_ADMIN" | "CAP_SYS_ADMIN")));
            if adds_sys_admin {
                errs.invalid(
                    &sp,
                    &json!(""),
                    "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                );
            }
        }
        one_of(sc, "procMount", &["Default", "Unmasked"], &sp, errs);
    }
}

fn env_var(e: &Value, ep: &str, errs: &mut Errors) {
    let name = str_at(e, "name").unwrap_or_default();
    if name.is_empty() {
        errs.required(&format!("{ep}.name"), "");
    } else {
        errs.invalid_all(
            &format!("{ep}.name"),
            &json!(name),
            names::env_var_name(name),
        );
    }
    let Some(from) = e.get("valueFrom") else {
        return;
    };
    let vp = format!("{ep}.valueFrom");
    if !str_at(e, "value").unwrap_or_default().is_empty() {
        errs.invalid(
            &vp,
            &json!(""),
            "may not be specified when `value` is not empty",
        );
    }
    let sources: Vec<&str> = [
        "fieldRef",
        "resourceFieldRef",
        "configMapKeyRef",
        "secretKeyRef",
    ]
    .into_iter()
    .filter(|k| from.get(*k).is_some())
    .collect();
    match sources.as_slice() {
        [] => errs.invalid(
            &vp,
            &json!(""),
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ),
        [one] => {
            let sp = format!("{vp}.{one}");
            let s = &from[*one];
            match *one {
                "configMapKeyRef" | "secretKeyRef" => {
                    if str_at(s, "name").unwrap_or_default().is_empty() {
                        errs.required(&format!("{sp}.name"), "");
                    }
                    let key = str_at(s, "key").unwrap_or_default();
                    if key.is_empty() {
                        errs.required(&format!("{sp}.key"), "");
                    } else {
                        errs.invalid_all(&format!("{sp}.key"), &json!(key), names::config_key(key));
                    }
                }
                "fieldRef" => {
                    if str_at(s, "fieldPath").unwrap_or_default().is_empty() {
                        errs.required(&format!("{sp}.fieldPath"), "");
                    }
                }
                _ => {
                    if str_at(s, "resource").unwrap_or_default().is_empty() {
                        errs.required(&format!("{sp}.resource"), "");
                    }
                }
            }
        }
        _ => errs.invalid(
            &vp,
            &json!(""),
            "may not have more than one field specified at a time",
        ),
    }
}

fn resources_check(r: &Value, rp: &str, errs: &mut Errors) {
    let mut parsed = std::collections::BTreeMap::new();
    for field in ["limits", "requests"] {
        for (name, v) in entries(r, field) {
            let p = format!("{rp}.{field}[{name}]");
            let standard = STANDARD_RESOURCES.contains(&name.as_str())
                || name.starts_with("hugepages-")
                || (name.contains('/') && names::qualified_name(name).is_empty());
            if !standard {
                errs.invalid(
                    &p,
                    &json!(name),
                    "must be a standard resource for containers",
                );
                continue;
            }
            if let Some(q) = quantity(v, &p, errs) {
                if q.is_negative() {
                    errs.invalid(&p, v, "must be greater than or equal to 0");
                } else {
                    parsed.insert((field, name.as_str()), q);
                }
            }
        }
    }
    for ((field, name), request) in &parsed {
        if *field != "requests" {
            continue;
        }
        if let Some(limit) = parsed.get(&("limits", name))
            && request > limit
        {
            errs.invalid(
                &format!("{rp}.requests"),
                &json!(request.to_string()),
                &format!("must be less than or equal to {name} limit of {limit}"),
            );
        }
    }
}

fn handler(h: &Value, hp: &str, kinds: &[&str], errs: &mut Errors) {
    let set: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| h.get(*k).is_some())
        .collect();
    match set.as_slice() {
        [] => errs.required(hp, "must specify a handler type"),
        [_] => {}
        [_, rest @ ..] => {
            for k in rest {
                errs.forbidden(
                    &format!("{hp}.{k}"),
                    "may not specify more than 1 handler type",
                );
            }
        }
    }
    if let Some(http) = h.get("httpGet") {
        let p = format!("{hp}.httpGet");
        match http.get("port") {
            None => errs.required(&format!("{p}.port"), ""),
            Some(port) => int_or_name_port(port, &format!("{p}.port"), errs),
        }
        one_of(http, "scheme", &["HTTP", "HTTPS"], &p, errs);
    }
    if let Some(tcp) = h.get("tcpSocket") {
        let p = format!("{hp}.tcpSocket");
        match tcp.get("port") {
            None => errs.required(&format!("{p}.port"), ""),
            Some(port) => int_or_name_port(port, &format!("{p}.port"), errs),
        }
    }
    if let Some(grpc) = h.get("grpc") {
        port_number(grpc, "port", &format!("{hp}.grpc"), errs);
    }
    if let Some(exec) = h.get("exec")
        && items(exec, "command").is_empty()
    {
        errs.required(&format!("{hp}.exec.command"), "");
    }
}

fn probe_check(probe: &Value, pp: &str, success_must_be_one: bool, errs: &mut Errors) {
    handler(probe, pp, &["exec", "httpGet", "tcpSocket", "grpc"], errs);
    at_least(probe, "initialDelaySeconds", 0, pp, errs);
    for key in [
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        at_least(probe, key, 1, pp, errs);
    }
    if success_must_be_one
        && let Some(n) = int_at(probe, "successThreshold")
        && n != 1
    {
        errs.invalid(&format!("{pp}.successThreshold"), &json!(n), "must be 1");
    }
    if let Some(t) = int_at(probe, "terminationGracePeriodSeconds")
        && t < 1
    {
        errs.invalid(
            &format!("{pp}.terminationGracePeriodSeconds"),
            &json!(t),
            "must be greater than 0",
        );
    }
}
