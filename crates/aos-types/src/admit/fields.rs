//! Data tables of fields that need a word to the author: fields written in the
//! wrong place (Kubernetes would drop them silently), and fields aos parses but
//! does not implement yet. Later work removes lines from [`UNIMPLEMENTED`] as
//! it implements them.
//!
//! Patterns are field paths with wildcards: `[*]` is any list item, `*` any
//! field name, and a leading `**.` any prefix. `{podspec}` stands for where a
//! kind keeps its pod spec (`spec` in a Pod, `spec.template.spec` in a
//! Deployment or ReplicaSet).

use serde_json::Value;

use super::Warning;
use super::schema::{FieldPath, Seg};
use crate::ResourceType;

/// A field written where Kubernetes has no such field, and where it belongs.
#[derive(Debug)]
pub struct Misplaced {
    /// Where the field was written (a pattern).
    pub pattern: &'static str,
    /// Where it belongs (a pattern).
    pub intended: &'static str,
}

/// Known misplacements. Pod-level `securityContext` has no
/// `readOnlyRootFilesystem`, `allowPrivilegeEscalation`, `capabilities`,
/// `privileged` or `procMount`: those are per container. The reverse holds for
/// `fsGroup`, `fsGroupChangePolicy`, `supplementalGroups` and `sysctls`.
pub const MISPLACED: &[Misplaced] = &[
    Misplaced {
        pattern: "{podspec}.securityContext.readOnlyRootFilesystem",
        intended: "{podspec}.containers[*].securityContext.readOnlyRootFilesystem",
    },
    Misplaced {
        pattern: "{podspec}.securityContext.allowPrivilegeEscalation",
        intended: "{podspec}.containers[*].securityContext.allowPrivilegeEscalation",
    },
    Misplaced {
        pattern: "{podspec}.securityContext.capabilities",
        intended: "{podspec}.containers[*].securityContext.capabilities",
    },
    Misplaced {
        pattern: "{podspec}.securityContext.privileged",
        intended: "{podspec}.containers[*].securityContext.privileged",
    },
    Misplaced {
        pattern: "{podspec}.securityContext.procMount",
        intended: "{podspec}.containers[*].securityContext.procMount",
    },
    Misplaced {
        pattern: "{podspec}.containers[*].securityContext.fsGroup",
        intended: "{podspec}.securityContext.fsGroup",
    },
    Misplaced {
        pattern: "{podspec}.containers[*].securityContext.fsGroupChangePolicy",
        intended: "{podspec}.securityContext.fsGroupChangePolicy",
    },
    Misplaced {
        pattern: "{podspec}.containers[*].securityContext.supplementalGroups",
        intended: "{podspec}.securityContext.supplementalGroups",
    },
    Misplaced {
        pattern: "{podspec}.containers[*].securityContext.sysctls",
        intended: "{podspec}.securityContext.sysctls",
    },
];

/// When an [`Unimplemented`] entry applies.
#[derive(Debug)]
pub enum When {
    /// Whenever the field is set.
    Set,
    /// When its value is none of these (strings as written, other values as JSON).
    ValueNotIn(&'static [&'static str]),
    /// When the field's own name is none of these (with a `*` pattern).
    NameNotIn(&'static [&'static str]),
}

/// A field aos accepts but ignores.
#[derive(Debug)]
pub struct Unimplemented {
    /// Kinds the entry applies to.
    pub kinds: &'static [&'static str],
    /// The field (a pattern).
    pub pattern: &'static str,
    /// When to warn.
    pub when: When,
}

const POD_KINDS: &[&str] = &["Pod", "Deployment", "ReplicaSet"];

/// Fields aos parses but does not implement yet.
pub const UNIMPLEMENTED: &[Unimplemented] = &[
    Unimplemented {
        kinds: POD_KINDS,
        pattern: "{podspec}.affinity",
        when: When::Set,
    },
    Unimplemented {
        kinds: POD_KINDS,
        pattern: "{podspec}.topologySpreadConstraints",
        when: When::Set,
    },
    Unimplemented {
        kinds: POD_KINDS,
        pattern: "{podspec}.hostNetwork",
        when: When::ValueNotIn(&["false"]),
    },
    Unimplemented {
        kinds: POD_KINDS,
        pattern: "{podspec}.hostPID",
        when: When::ValueNotIn(&["false"]),
    },
    Unimplemented {
        kinds: POD_KINDS,
        pattern: "{podspec}.hostIPC",
        when: When::ValueNotIn(&["false"]),
    },
    Unimplemented {
        kinds: POD_KINDS,
        pattern: "{podspec}.dnsPolicy",
        when: When::ValueNotIn(&["ClusterFirst"]),
    },
    Unimplemented {
        kinds: POD_KINDS,
        pattern: "{podspec}.volumes[*].*",
        when: When::NameNotIn(&["name", "emptyDir", "configMap", "secret"]),
    },
    Unimplemented {
        kinds: &["DestinationRule"],
        pattern: "**.connectionPool.tcp.tcpKeepalive",
        when: When::Set,
    },
    Unimplemented {
        kinds: &["DestinationRule"],
        pattern: "**.connectionPool.http.h2UpgradePolicy",
        when: When::ValueNotIn(&["DEFAULT"]),
    },
    Unimplemented {
        kinds: &["DestinationRule"],
        pattern: "**.loadBalancer.localityLbSetting",
        when: When::Set,
    },
    Unimplemented {
        kinds: &["DestinationRule"],
        pattern: "**.tunnel",
        when: When::Set,
    },
    Unimplemented {
        kinds: &["DestinationRule"],
        pattern: "**.proxyProtocol",
        when: When::Set,
    },
    Unimplemented {
        kinds: &["VirtualService"],
        pattern: "spec.http[*].mirror",
        when: When::Set,
    },
    Unimplemented {
        kinds: &["VirtualService"],
        pattern: "spec.http[*].mirrors",
        when: When::Set,
    },
    Unimplemented {
        kinds: &["VirtualService"],
        pattern: "spec.http[*].mirrorPercentage",
        when: When::Set,
    },
    Unimplemented {
        kinds: &["VirtualService"],
        pattern: "spec.tcp",
        when: When::Set,
    },
    Unimplemented {
        kinds: &["VirtualService"],
        pattern: "spec.tls",
        when: When::Set,
    },
];

/// Where a kind keeps its pod spec, if it has one.
pub(crate) fn pod_spec_prefix(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("spec"),
        "Deployment" | "ReplicaSet" => Some("spec.template.spec"),
        _ => None,
    }
}

#[derive(Debug, PartialEq)]
enum Pat {
    Key(String),
    AnyKey,
    AnyIndex,
}

/// A parsed pattern: whether it may start anywhere, and its steps.
struct Pattern {
    anywhere: bool,
    steps: Vec<Pat>,
}

/// Parse `pattern` for `kind`; `None` when it uses `{podspec}` and the kind has no pod spec.
fn parse_pattern(kind: &str, pattern: &str) -> Option<Pattern> {
    let expanded = if pattern.contains("{podspec}") {
        pattern.replace("{podspec}", pod_spec_prefix(kind)?)
    } else {
        pattern.to_string()
    };
    let (anywhere, rest) = match expanded.strip_prefix("**.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, expanded),
    };
    let mut steps = Vec::new();
    for part in rest.split('.') {
        let (name, mut brackets) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        steps.push(if name == "*" {
            Pat::AnyKey
        } else {
            Pat::Key(name.to_string())
        });
        while let Some(r) = brackets.strip_prefix("[*]") {
            steps.push(Pat::AnyIndex);
            brackets = r;
        }
    }
    Some(Pattern { anywhere, steps })
}

fn step_matches(p: &Pat, s: &Seg) -> bool {
    match (p, s) {
        (Pat::Key(k), Seg::Key(name)) => k == name,
        (Pat::AnyKey, Seg::Key(_)) => true,
        (Pat::AnyIndex, Seg::Index(_)) => true,
        _ => false,
    }
}

impl Pattern {
    fn matches(&self, path: &[Seg]) -> bool {
        let n = self.steps.len();
        if path.len() < n || (!self.anywhere && path.len() != n) {
            return false;
        }
        let tail = &path[path.len() - n..];
        self.steps.iter().zip(tail).all(|(p, s)| step_matches(p, s))
    }

    /// Every concrete path in `obj` this pattern names (no `**` support).
    fn resolve(&self, obj: &Value) -> Vec<(FieldPath, bool)> {
        let mut out = Vec::new();
        resolve_steps(&self.steps, obj, &mut FieldPath::default(), &mut out);
        out
    }

    fn display(&self) -> String {
        let mut s = String::new();
        for p in &self.steps {
            match p {
                Pat::Key(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Pat::AnyKey => s.push_str(".*"),
                Pat::AnyIndex => s.push_str("[*]"),
            }
        }
        s
    }
}

/// Expand `[*]` over list items; report each concrete path and whether it is set.
fn resolve_steps(steps: &[Pat], v: &Value, path: &mut FieldPath, out: &mut Vec<(FieldPath, bool)>) {
    let Some((first, rest)) = steps.split_first() else {
        out.push((path.clone(), true));
        return;
    };
    match first {
        Pat::Key(k) => {
            path.0.push(Seg::Key(k.clone()));
            match v.get(k.as_str()) {
                Some(child) => resolve_steps(rest, child, path, out),
                None if rest.contains(&Pat::AnyIndex) => {}
                None => {
                    let mut full = path.clone();
                    for p in rest {
                        if let Pat::Key(k) = p {
                            full.0.push(Seg::Key(k.clone()));
                        }
                    }
                    out.push((full, false));
                }
            }
            path.0.pop();
        }
        Pat::AnyIndex => {
            if let Some(items) = v.as_array() {
                for (i, item) in items.iter().enumerate() {
                    path.0.push(Seg::Index(i));
                    resolve_steps(rest, item, path, out);
                    path.0.pop();
                }
            }
        }
        Pat::AnyKey => {}
    }
}

/// The warning for an unknown field at `path` of `obj` (before pruning).
pub(crate) fn unknown_field_warning(rt: &ResourceType, obj: &Value, path: &FieldPath) -> Warning {
    for m in MISPLACED {
        let (Some(pattern), Some(intended)) = (
            parse_pattern(rt.kind, m.pattern),
            parse_pattern(rt.kind, m.intended),
        ) else {
            continue;
        };
        if !pattern.matches(&path.0) {
            continue;
        }
        let places = intended.resolve(obj);
        let set: Vec<&FieldPath> = places.iter().filter(|(_, s)| *s).map(|(p, _)| p).collect();
        let unset: Vec<&FieldPath> = places.iter().filter(|(_, s)| !*s).map(|(p, _)| p).collect();
        let status = if places.is_empty() {
            String::new()
        } else if unset.is_empty() {
            if !intended.steps.contains(&Pat::AnyIndex) {
                " (it is already set there)".to_string()
            } else if places.len() == 1 {
                " (the container already sets it there)".to_string()
            } else {
                " (every container already sets it there)".to_string()
            }
        } else if set.is_empty() {
            " (it is not set there, so as written it has no effect)".to_string()
        } else {
            format!(
                " ({} already set; not set at {})",
                set.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                unset
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Warning {
            path: path.to_string(),
            message: format!(
                "unknown field: Kubernetes has no such field here and ignores it; it belongs in {}{status}",
                intended.display()
            ),
        };
    }
    Warning {
        path: path.to_string(),
        message: "unknown field".to_string(),
    }
}

/// Warnings for fields set in `obj` that aos does not implement.
pub(crate) fn unimplemented_warnings(rt: &ResourceType, obj: &Value) -> Vec<Warning> {
    let entries: Vec<(Pattern, &When)> = UNIMPLEMENTED
        .iter()
        .filter(|u| u.kinds.contains(&rt.kind))
        .filter_map(|u| parse_pattern(rt.kind, u.pattern).map(|p| (p, &u.when)))
        .collect();
    let mut out = Vec::new();
    if entries.is_empty() {
        return out;
    }
    walk(obj, &mut FieldPath::default(), &mut |path, value| {
        let Some(Seg::Key(name)) = path.0.last() else {
            return;
        };
        for (pattern, when) in &entries {
            if !pattern.matches(&path.0) {
                continue;
            }
            let applies = match when {
                When::Set => true,
                When::ValueNotIn(values) => {
                    let shown = match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    !values.contains(&shown.as_str())
                }
                When::NameNotIn(names) => !names.contains(&name.as_str()),
            };
            if applies {
                out.push(Warning {
                    path: path.to_string(),
                    message: "not implemented by aos; ignored".to_string(),
                });
                return;
            }
        }
    });
    out
}

/// Visit every object field of `v` with its path.
fn walk(v: &Value, path: &mut FieldPath, f: &mut impl FnMut(&FieldPath, &Value)) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                path.0.push(Seg::Key(k.clone()));
                f(path, child);
                walk(child, path, f);
                path.0.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.0.push(Seg::Index(i));
                walk(child, path, f);
                path.0.pop();
            }
        }
        _ => {}
    }
}
