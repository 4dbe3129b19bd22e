//! A container's environment and command line by Kubernetes' rules: `envFrom`, then `env`
//! (values, `$(VAR)` references, `valueFrom` Secrets, ConfigMaps, pod fields and resources),
//! merged over the image's `ENV`; `command`/`args` over `ENTRYPOINT`/`CMD`.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;

use crate::image::ResolvedImage;
use crate::quantity;

/// Why a container's configuration cannot be built (waiting reason
/// `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A referenced Secret does not exist.
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    /// A referenced ConfigMap does not exist.
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    /// A key is missing from a Secret or ConfigMap.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyNotFound {
        /// The key.
        key: String,
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A `fieldRef` or `resourceFieldRef` the agent does not know.
    #[error("unsupported {what}: {path}")]
    Unsupported {
        /// `fieldRef` or `resourceFieldRef`.
        what: &'static str,
        /// The path or resource.
        path: String,
    },
    /// Neither the pod nor the image says what to run.
    #[error("no command specified")]
    NoCommand,
    /// A malformed quantity.
    #[error(transparent)]
    Quantity(#[from] quantity::QuantityError),
}

/// Secrets and ConfigMaps of the pod's namespace, fetched for one container start: `None`
/// for an object that does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigData {
    /// Secret name → decoded data.
    pub secrets: BTreeMap<String, Option<BTreeMap<String, String>>>,
    /// ConfigMap name → data.
    pub configmaps: BTreeMap<String, Option<BTreeMap<String, String>>>,
}

/// The decoded data of a Secret object (`data` is base64; `stringData` is taken as is).
pub fn secret_data(obj: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(m) = obj.get("data").and_then(Value::as_object) {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .unwrap_or_else(|_| s.as_bytes().to_vec());
                out.insert(k.clone(), String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    if let Some(m) = obj.get("stringData").and_then(Value::as_object) {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_owned());
            }
        }
    }
    out
}

/// The data of a ConfigMap object (`data`, and `binaryData` decoded).
pub fn configmap_data(obj: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(m) = obj.get("binaryData").and_then(Value::as_object) {
        for (k, v) in m {
            if let Some(bytes) = v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            {
                out.insert(k.clone(), String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    if let Some(m) = obj.get("data").and_then(Value::as_object) {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_owned());
            }
        }
    }
    out
}

/// The Secrets and ConfigMaps a container's environment refers to.
pub fn referenced(c: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut configmaps = BTreeSet::new();
    for e in c.env_from.iter().flatten() {
        if let Some(r) = &e.secret_ref {
            secrets.insert(r.name.clone());
        }
        if let Some(r) = &e.config_map_ref {
            configmaps.insert(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.secret_key_ref {
                secrets.insert(r.name.clone());
            }
            if let Some(r) = &vf.config_map_key_ref {
                configmaps.insert(r.name.clone());
            }
        }
    }
    (secrets, configmaps)
}

/// Facts about the node and the pod's runtime that `fieldRef` and `resourceFieldRef` read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// `status.podIP`.
    pub pod_ip: String,
    /// `status.hostIP`.
    pub host_ip: String,
    /// Node CPU allocatable in millicores (the default of an absent CPU limit).
    pub node_cpu_millis: u64,
    /// Node memory allocatable in bytes (the default of an absent memory limit).
    pub node_memory_bytes: u64,
}

/// Expand `$(VAR)` references from `vars`; `$$(` escapes; unknown references stay as written.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&s[i..i + 3 + end]),
                }
                i += 3 + end;
                continue;
            }
        }
        // Push the whole UTF-8 character starting at i.
        let ch = s[i..].chars().next().expect("index is on a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn valid_env_name(k: &str) -> bool {
    !k.is_empty() && !k.contains('=') && !k.contains('\0')
}

fn field_value(pod: &Pod, path: &str, facts: &PodFacts) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let subscript = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['").or_else(|| r.strip_prefix("[\"")))
            .and_then(|r| r.strip_suffix("']").or_else(|| r.strip_suffix("\"]")))
            .map(str::to_owned)
    };
    let v = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_owned()),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        _ => {
            if let Some(k) = subscript("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = subscript("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(EnvError::Unsupported {
                    what: "fieldRef",
                    path: path.to_owned(),
                });
            }
        }
    };
    Ok(v)
}

fn resource_value(
    pod: &Pod,
    own: &Container,
    container_name: Option<&str>,
    resource: &str,
    divisor: Option<&str>,
    facts: &PodFacts,
) -> Result<String, EnvError> {
    let c = match container_name.filter(|n| !n.is_empty()) {
        Some(n) => pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == n))
            .unwrap_or(own),
        None => own,
    };
    let res = c.resources.as_ref();
    let get = |limits: bool, name: &str| -> Option<String> {
        let m = if limits {
            res.and_then(|r| r.limits.as_ref())
        } else {
            res.and_then(|r| r.requests.as_ref())
        };
        m.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    let unsupported = || EnvError::Unsupported {
        what: "resourceFieldRef",
        path: resource.to_owned(),
    };
    let (limits, name) = resource.split_once('.').ok_or_else(unsupported)?;
    let limits = match limits {
        "limits" => true,
        "requests" => false,
        _ => return Err(unsupported()),
    };
    match name {
        "cpu" => {
            let millis = match get(limits, "cpu")
                .or_else(|| (!limits).then(|| get(true, "cpu")).flatten())
            {
                Some(q) => quantity::parse_millis(&q)?,
                None if limits => facts.node_cpu_millis,
                None => 0,
            };
            let div = quantity::parse_millis(divisor.unwrap_or("1"))?.max(1);
            Ok(millis.div_ceil(div).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes =
                match get(limits, name).or_else(|| (!limits).then(|| get(true, name)).flatten()) {
                    Some(q) => quantity::parse_units(&q)?,
                    None if limits => facts.node_memory_bytes,
                    None => 0,
                };
            let div = quantity::parse_units(divisor.unwrap_or("1"))?.max(1);
            Ok(bytes.div_ceil(div).to_string())
        }
        _ => Err(unsupported()),
    }
}

/// The container's environment as `(name, value)` in order: the image's `ENV`, then `envFrom`,
/// then `env`, a later name replacing an earlier one in place.
pub fn container_env(
    pod: &Pod,
    c: &Container,
    image_env: &[String],
    data: &ConfigData,
    facts: &PodFacts,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| match out
        .iter_mut()
        .find(|(n, _)| *n == k)
    {
        Some(slot) => slot.1 = v,
        None => out.push((k, v)),
    };
    for e in image_env {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        set(&mut out, k.to_owned(), v.to_owned());
    }
    // `$(VAR)` sees what the pod defines, in order (not the image's ENV).
    let mut defined: BTreeMap<String, String> = BTreeMap::new();
    for e in c.env_from.iter().flatten() {
        let prefix = e.prefix.clone().unwrap_or_default();
        let source = if let Some(r) = &e.secret_ref {
            match data.secrets.get(&r.name).cloned().flatten() {
                Some(d) => Some(d),
                None if r.optional == Some(true) => None,
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
        } else if let Some(r) = &e.config_map_ref {
            match data.configmaps.get(&r.name).cloned().flatten() {
                Some(d) => Some(d),
                None if r.optional == Some(true) => None,
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
        } else {
            None
        };
        for (k, v) in source.into_iter().flatten() {
            let name = format!("{prefix}{k}");
            if valid_env_name(&name) {
                defined.insert(name.clone(), v.clone());
                set(&mut out, name, v);
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.secret_key_ref {
                match data.secrets.get(&r.name).cloned().flatten() {
                    Some(d) => match d.get(&r.key) {
                        Some(v) => Some(v.clone()),
                        None if r.optional == Some(true) => None,
                        None => {
                            return Err(EnvError::KeyNotFound {
                                key: r.key.clone(),
                                kind: "Secret",
                                namespace: ns.clone(),
                                name: r.name.clone(),
                            });
                        }
                    },
                    None if r.optional == Some(true) => None,
                    None => return Err(EnvError::SecretNotFound(r.name.clone())),
                }
            } else if let Some(r) = &vf.config_map_key_ref {
                match data.configmaps.get(&r.name).cloned().flatten() {
                    Some(d) => match d.get(&r.key) {
                        Some(v) => Some(v.clone()),
                        None if r.optional == Some(true) => None,
                        None => {
                            return Err(EnvError::KeyNotFound {
                                key: r.key.clone(),
                                kind: "ConfigMap",
                                namespace: ns.clone(),
                                name: r.name.clone(),
                            });
                        }
                    },
                    None if r.optional == Some(true) => None,
                    None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
                }
            } else if let Some(f) = &vf.field_ref {
                Some(field_value(pod, &f.field_path, facts)?)
            } else if let Some(r) = &vf.resource_field_ref {
                Some(resource_value(
                    pod,
                    c,
                    r.container_name.as_deref(),
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    facts,
                )?)
            } else {
                None
            }
        } else {
            Some(expand(e.value.as_deref().unwrap_or_default(), &defined))
        };
        // An optional reference that is missing leaves the variable out.
        if let Some(v) = value {
            defined.insert(e.name.clone(), v.clone());
            set(&mut out, e.name.clone(), v);
        }
    }
    Ok(out)
}

/// The argv by Kubernetes' rules: `command` replaces ENTRYPOINT (and drops CMD), `args`
/// replaces CMD; `$(VAR)` references expand from the container's environment.
pub fn command_line(
    c: &Container,
    image: &ResolvedImage,
    env: &[(String, String)],
) -> Result<Vec<String>, EnvError> {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    let x = |v: Vec<String>| -> Vec<String> { v.iter().map(|s| expand(s, &vars)).collect() };
    let argv: Vec<String> = match (command.is_empty(), args.is_empty()) {
        (true, true) => image
            .entrypoint
            .iter()
            .chain(image.cmd.iter())
            .cloned()
            .collect(),
        (true, false) => image.entrypoint.iter().cloned().chain(x(args)).collect(),
        (false, _) => x(command).into_iter().chain(x(args)).collect(),
    };
    if argv.is_empty() {
        return Err(EnvError::NoCommand);
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(container: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "agent-os", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [container]}
        }))
        .unwrap()
    }

    fn facts() -> PodFacts {
        PodFacts {
            pod_ip: "10.88.0.7".into(),
            host_ip: "192.168.1.2".into(),
            node_cpu_millis: 2000,
            node_memory_bytes: 1 << 33,
        }
    }

    #[test]
    fn expansion() {
        let vars: BTreeMap<String, String> =
            [("A".to_string(), "1".to_string())].into_iter().collect();
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("é$(A", &vars), "é$(A");
    }

    #[test]
    fn env_sources_and_errors() {
        let p = pod(json!({
            "name": "app", "image": "x",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [
                {"name": "PATH", "value": "/custom"},
                {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "agent-registry-secrets", "key": "database-url"}}},
                {"name": "URL", "value": "$(DB)/x"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
            ],
            "resources": {"limits": {"memory": "1Gi"}}
        }));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let (secrets, cms) = referenced(c);
        assert!(secrets.contains("agent-registry-secrets"));
        assert!(cms.contains("cfg"));

        let mut data = ConfigData::default();
        data.configmaps.insert(
            "cfg".into(),
            Some(
                [("mode".to_string(), "fast".to_string())]
                    .into_iter()
                    .collect(),
            ),
        );
        // Secret missing: the kubelet's message.
        data.secrets.insert("agent-registry-secrets".into(), None);
        let err = container_env(&p, c, &[], &data, &facts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret \"agent-registry-secrets\" not found"
        );

        data.secrets.insert(
            "agent-registry-secrets".into(),
            Some(secret_data(&json!({"data": {"redis-url": "eA=="}}))),
        );
        let err = container_env(&p, c, &[], &data, &facts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "couldn't find key database-url in Secret agent-os/agent-registry-secrets"
        );

        data.secrets.insert(
            "agent-registry-secrets".into(),
            Some(secret_data(
                &json!({"data": {"database-url": "c3FsaXRlOi8vL2RiLnNxbGl0ZQ=="}}),
            )),
        );
        let env = container_env(
            &p,
            c,
            &["PATH=/usr/bin".into(), "LANG=C".into()],
            &data,
            &facts(),
        )
        .unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            env[0],
            ("PATH".into(), "/custom".into()),
            "pod env replaces image env in place"
        );
        assert_eq!(get("LANG"), Some("C"));
        assert_eq!(get("CFG_mode"), Some("fast"));
        assert_eq!(get("DB"), Some("sqlite:///db.sqlite"));
        assert_eq!(get("URL"), Some("sqlite:///db.sqlite/x"));
        assert_eq!(get("POD"), Some("web-0"));
        assert_eq!(get("IP"), Some("10.88.0.7"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("MEM"), Some("1024"));
        assert_eq!(get("OPT"), None);

        let missing_cm = pod(
            json!({"name": "a", "image": "x", "envFrom": [{"configMapRef": {"name": "gone"}}]}),
        );
        let c = &missing_cm.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container_env(&missing_cm, c, &[], &ConfigData::default(), &facts())
                .unwrap_err()
                .to_string(),
            "configmap \"gone\" not found"
        );
    }

    #[test]
    fn command_rules() {
        let image = ResolvedImage {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["--default".into()],
            ..Default::default()
        };
        let env = vec![("PORT".to_string(), "3000".to_string())];
        let c = |v: Value| -> Container { serde_json::from_value(v).unwrap() };
        let cases = [
            (json!({"name": "a"}), vec!["/entry", "--default"]),
            (
                json!({"name": "a", "args": ["--port=$(PORT)"]}),
                vec!["/entry", "--port=3000"],
            ),
            (
                json!({"name": "a", "command": ["/bin/sh"]}),
                vec!["/bin/sh"],
            ),
            (
                json!({"name": "a", "command": ["/bin/sh"], "args": ["-c", "x"]}),
                vec!["/bin/sh", "-c", "x"],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(
                command_line(&c(spec.clone()), &image, &env).unwrap(),
                want,
                "{spec}"
            );
        }
        assert_eq!(
            command_line(&c(json!({"name": "a"})), &ResolvedImage::default(), &env),
            Err(EnvError::NoCommand)
        );
    }
}
