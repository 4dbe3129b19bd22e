//! A [`SandboxSpec`] as an OCI runtime spec (`config.json`) for libcontainer.

use std::path::Path;

use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use crate::spec::{DEFAULT_PATH, MountKind, SandboxSpec};

/// Errors building the OCI spec.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The generated document does not deserialize as an OCI spec (a bug here).
    #[error("generated OCI spec is invalid: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// Paths hidden from an unprivileged container (containerd's defaults).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths read-only in an unprivileged container (containerd's defaults).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Character devices every container may use: null, zero, full, random, urandom, tty, ptmx, pts.
const ALLOWED_DEVICES: &[(i64, Option<i64>)] = &[
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(0)),
    (5, Some(2)),
    (136, None),
];

/// How the process's capabilities are laid out for libcontainer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityPlan {
    /// The bounding, permitted and effective set the container process ends with.
    pub target: Vec<String>,
    /// Capabilities kept in the init's effective and permitted sets only until the seccomp
    /// filter is installed, then dropped before `execve` (by the container init's executor).
    pub temporary: Vec<String>,
}

impl CapabilityPlan {
    /// Plan for a container: without `no_new_privs`, installing a filter needs `CAP_SYS_ADMIN`
    /// at the last step in the init, so it is granted there and dropped right after.
    pub fn new(target: Vec<String>, has_filter: bool, no_new_privs: bool) -> Self {
        let admin = "CAP_SYS_ADMIN".to_string();
        let temporary = if has_filter && !no_new_privs && !target.contains(&admin) {
            vec![admin]
        } else {
            vec![]
        };
        Self { target, temporary }
    }
}

/// Build `config.json` for `spec`, whose root file system is ready at `rootfs` and whose
/// container cgroup is `cgroup_path`.
pub fn build(
    spec: &SandboxSpec,
    rootfs: &Path,
    cgroup_path: &str,
    caps: &CapabilityPlan,
) -> Result<Spec, OciError> {
    let value = build_json(spec, rootfs, cgroup_path, caps);
    Ok(serde_json::from_value(value)?)
}

/// The document [`build`] deserializes, for inspection.
pub fn build_json(
    spec: &SandboxSpec,
    rootfs: &Path,
    cgroup_path: &str,
    caps: &CapabilityPlan,
) -> Value {
    let p = &spec.process;
    let mut env = p.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let mut working: Vec<String> = caps.target.clone();
    working.extend(caps.temporary.iter().cloned());

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", if spec.privileged { "rw" } else { "ro" }]}),
    ];
    for m in &spec.mounts {
        let mut options: Vec<String> = vec!["nosuid".into(), "nodev".into()];
        if m.readonly {
            options.push("ro".into());
        }
        let v = match &m.kind {
            MountKind::Tmpfs { size_bytes } => {
                options.push("mode=1777".into());
                if let Some(size) = size_bytes {
                    options.push(format!("size={size}"));
                }
                json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": options})
            }
            MountKind::Bind { source } => {
                options.push("rbind".into());
                options.push("rprivate".into());
                json!({"destination": m.destination, "type": "bind", "source": source, "options": options})
            }
        };
        mounts.push(v);
    }

    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
    for (kind, path) in [
        ("network", &spec.namespaces.net),
        ("ipc", &spec.namespaces.ipc),
        ("uts", &spec.namespaces.uts),
    ] {
        namespaces.push(match path {
            Some(p) => json!({"type": kind, "path": p}),
            None => json!({"type": kind}),
        });
    }

    let mut devices = vec![json!({"allow": spec.privileged, "access": "rwm"})];
    if !spec.privileged {
        for (major, minor) in ALLOWED_DEVICES {
            let mut d = json!({"allow": true, "type": "c", "major": major, "access": "rwm"});
            if let Some(minor) = minor {
                d["minor"] = json!(minor);
            }
            devices.push(d);
        }
    }
    let mut resources = json!({ "devices": devices });
    let c = &spec.cgroup;
    if let Some(limit) = c.memory_limit_bytes {
        // memory+swap equal to memory: no swap use beyond the limit.
        resources["memory"] = json!({"limit": limit, "swap": limit});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(q) = c.cpu_quota_us {
        cpu.insert("quota".into(), json!(q));
        cpu.insert("period".into(), json!(c.cpu_period_us.unwrap_or(100_000)));
    }
    if let Some(s) = c.cpu_shares {
        cpu.insert("shares".into(), json!(s));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = c.pids_limit {
        resources["pids"] = json!({"limit": p});
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": cgroup_path,
        "resources": resources,
    });
    if !spec.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }

    let mut doc = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": p.uid, "gid": p.gid, "additionalGids": p.supplemental_groups},
            "args": p.args,
            "env": env,
            "cwd": p.cwd,
            "capabilities": {
                "bounding": caps.target,
                "effective": working,
                "permitted": working,
                "inheritable": [],
                "ambient": [],
            },
            "noNewPrivileges": p.no_new_privs,
        },
        "root": {"path": rootfs, "readonly": spec.readonly_root},
        "mounts": mounts,
        "linux": linux,
    });
    // A hostname needs a UTS namespace of the container's own.
    if spec.namespaces.uts.is_none() {
        doc["hostname"] = json!(spec.hostname.clone().unwrap_or_else(|| spec.id.clone()));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{MountSpec, NamespacePaths};

    fn spec() -> SandboxSpec {
        let mut s: SandboxSpec = serde_json::from_str(
            r#"{"id":"c1","bundleDir":"/b","rootfs":{"dir":"/r"},"process":{"args":["/bin/sh"],"uid":1001,"gid":1001}}"#,
        )
        .unwrap();
        s.readonly_root = true;
        s.mounts.push(MountSpec {
            destination: "/tmp".into(),
            kind: MountKind::Tmpfs {
                size_bytes: Some(1 << 20),
            },
            readonly: false,
        });
        s.cgroup.memory_limit_bytes = Some(1 << 30);
        s.cgroup.cpu_quota_us = Some(50_000);
        s.cgroup.pids_limit = Some(100);
        s
    }

    #[test]
    fn unprivileged_spec_shape() {
        let s = spec();
        let plan = CapabilityPlan::new(vec![], true, false);
        assert_eq!(plan.temporary, vec!["CAP_SYS_ADMIN".to_string()]);
        let doc = build_json(&s, Path::new("/r"), "/aos/p/c1", &plan);
        assert_eq!(doc["process"]["user"]["uid"], 1001);
        assert_eq!(doc["process"]["capabilities"]["bounding"], json!([]));
        assert_eq!(
            doc["process"]["capabilities"]["effective"],
            json!(["CAP_SYS_ADMIN"])
        );
        assert_eq!(doc["root"]["readonly"], true);
        assert_eq!(doc["linux"]["resources"]["memory"]["limit"], 1u64 << 30);
        assert_eq!(doc["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(doc["linux"]["resources"]["cpu"]["period"], 100_000);
        assert_eq!(doc["linux"]["resources"]["pids"]["limit"], 100);
        assert_eq!(doc["linux"]["resources"]["devices"][0]["allow"], false);
        assert!(
            doc["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&json!("/proc/kcore"))
        );
        assert!(
            doc["process"]["env"][0]
                .as_str()
                .unwrap()
                .starts_with("PATH=")
        );
        assert_eq!(doc["hostname"], "c1");
        let tmp = doc["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/tmp")
            .unwrap();
        assert_eq!(tmp["type"], "tmpfs");
        build(&s, Path::new("/r"), "/aos/p/c1", &plan).expect("valid OCI spec");
    }

    #[test]
    fn joined_namespaces_and_no_temporary_caps_with_nnp() {
        let mut s = spec();
        s.namespaces = NamespacePaths {
            net: Some("/run/aos/ns/p/net".into()),
            ipc: Some("/run/aos/ns/p/ipc".into()),
            uts: Some("/run/aos/ns/p/uts".into()),
        };
        let plan = CapabilityPlan::new(vec!["CAP_NET_BIND_SERVICE".into()], true, true);
        assert!(plan.temporary.is_empty());
        let doc = build_json(&s, Path::new("/r"), "/aos/p/c1", &plan);
        let ns = doc["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "network", "path": "/run/aos/ns/p/net"})));
        assert!(ns.contains(&json!({"type": "pid"})));
        assert!(doc.get("hostname").is_none());
        build(&s, Path::new("/r"), "/aos/p/c1", &plan).expect("valid OCI spec");
    }

    #[test]
    fn privileged_spec() {
        let mut s = spec();
        s.privileged = true;
        let doc = build_json(
            &s,
            Path::new("/r"),
            "/aos/p/c1",
            &CapabilityPlan::new(crate::caps::all(), false, false),
        );
        assert!(doc["linux"].get("maskedPaths").is_none());
        assert_eq!(
            doc["linux"]["resources"]["devices"],
            json!([{"allow": true, "access": "rwm"}])
        );
    }
}
