//! What a sandbox is made of: the input of [`crate::Runtime::start`].
//!
//! A [`SandboxSpec`] is plain data (serde) so that the node agent can hand it to the per-pod shim
//! process as JSON. It is already resolved: Kubernetes' securityContext rules (see
//! [`crate::security`]) have been applied, the image unpacked, volumes prepared.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::seccomp::Profile;

/// Everything needed to start one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SandboxSpec {
    /// Container id: `[A-Za-z0-9_.+-]`, unique on the node.
    pub id: String,
    /// A directory owned by this container (the OCI bundle): `config.json`, the root filesystem
    /// mount point and the overlay work directories live here.
    pub bundle_dir: PathBuf,
    /// Where the root filesystem comes from.
    pub rootfs: RootfsSpec,
    /// Mount the root filesystem read-only (`readOnlyRootFilesystem`).
    #[serde(default)]
    pub readonly_root: bool,
    /// Extra mounts (emptyDir, configMap, secret volumes).
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// The process to run.
    pub process: ProcessSpec,
    /// Hostname for a container with its own UTS namespace; ignored when joining the pod's.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Namespaces to join (pod-level); a namespace without a path is created fresh.
    #[serde(default)]
    pub namespaces: NamespacePaths,
    /// Resource limits.
    #[serde(default)]
    pub cgroup: CgroupSpec,
    /// File receiving the container's stdout (appended); `/dev/null` when absent.
    #[serde(default)]
    pub stdout: Option<PathBuf>,
    /// File receiving the container's stderr (appended); `/dev/null` when absent.
    #[serde(default)]
    pub stderr: Option<PathBuf>,
    /// A privileged container: all capabilities, no masked paths, devices visible, no seccomp
    /// unless asked. Only set when the node allows privileged pods.
    #[serde(default)]
    pub privileged: bool,
}

/// The source of a container's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum RootfsSpec {
    /// An overlay of read-only image layers (top-most first, as overlayfs' `lowerdir`) and a
    /// writable upper directory; the work directory is created next to `upper`.
    Overlay {
        /// Unpacked layers, top-most first.
        lower: Vec<PathBuf>,
        /// The container's writable layer.
        upper: PathBuf,
    },
    /// A directory used as is (for example a copy of the unpacked layers).
    Dir(PathBuf),
}

/// One extra mount inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MountSpec {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    /// What to mount.
    pub kind: MountKind,
    /// Mount read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// The kind of an extra mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum MountKind {
    /// A fresh tmpfs (emptyDir with `medium: Memory`, `/tmp`); `size_bytes` caps it.
    Tmpfs {
        /// Size limit; unlimited (half of RAM, the tmpfs default) when absent.
        #[serde(default)]
        size_bytes: Option<u64>,
    },
    /// A host directory or file bind-mounted in (emptyDir on disk, configMap, secret).
    Bind {
        /// Absolute host path.
        source: PathBuf,
    },
}

/// The container's process and its privileges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProcessSpec {
    /// argv; `args[0]` is looked up in `PATH` from `env` when it has no `/`.
    pub args: Vec<String>,
    /// `NAME=value` pairs. `PATH` gets a default when missing.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[serde(default = "default_cwd")]
    pub cwd: PathBuf,
    /// User id.
    #[serde(default)]
    pub uid: u32,
    /// Primary group id.
    #[serde(default)]
    pub gid: u32,
    /// Supplementary groups (fsGroup, supplementalGroups).
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
    /// Set `no_new_privs` (Kubernetes `allowPrivilegeEscalation: false`).
    #[serde(default)]
    pub no_new_privs: bool,
    /// Capability names (`CAP_NET_BIND_SERVICE`), the bounding, effective and permitted set.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The seccomp profile.
    #[serde(default)]
    pub seccomp: Profile,
}

fn default_cwd() -> PathBuf {
    PathBuf::from("/")
}

/// The `PATH` a container gets when its environment has none (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Paths of existing namespaces to join.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespacePaths {
    /// The pod's network namespace (see [`crate::netns`]).
    #[serde(default)]
    pub net: Option<PathBuf>,
    /// The pod's IPC namespace.
    #[serde(default)]
    pub ipc: Option<PathBuf>,
    /// The pod's UTS namespace (the hostname is set when it is created).
    #[serde(default)]
    pub uts: Option<PathBuf>,
}

/// Resource limits: the container's cgroup is `parent/id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CgroupSpec {
    /// Parent cgroup path, absolute, for example the pod's `/aos/pod-<uid>` (see
    /// [`crate::cgroup::PodCgroup`]); `/aos` when empty.
    #[serde(default)]
    pub parent: String,
    /// CFS quota per period in microseconds (CPU limit); unlimited when absent.
    #[serde(default)]
    pub cpu_quota_us: Option<i64>,
    /// CFS period in microseconds; 100000 when absent.
    #[serde(default)]
    pub cpu_period_us: Option<u64>,
    /// CPU shares (CPU request; 1024 = one CPU).
    #[serde(default)]
    pub cpu_shares: Option<u64>,
    /// Memory limit in bytes; unlimited when absent.
    #[serde(default)]
    pub memory_limit_bytes: Option<i64>,
    /// Maximum number of tasks in the container's cgroup.
    #[serde(default)]
    pub pids_limit: Option<i64>,
}

impl CgroupSpec {
    /// The parent path, defaulted.
    pub fn parent_path(&self) -> &str {
        if self.parent.is_empty() {
            "/aos"
        } else {
            &self.parent
        }
    }
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitStatus {
    /// The exit code as Kubernetes reports it: the process's code, or 128 + signal.
    pub code: i32,
    /// The signal that killed the process, if any.
    pub signal: Option<i32>,
    /// The memory cgroup's OOM killer killed a process of the container (reason `OOMKilled`).
    pub oom_killed: bool,
}

impl ExitStatus {
    /// The Kubernetes `reason` of a terminated container.
    pub fn reason(&self) -> &'static str {
        if self.oom_killed {
            "OOMKilled"
        } else if self.code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

/// Validation of a spec before anything touches the kernel.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// The id is empty or has characters outside `[A-Za-z0-9_.+-]`.
    #[error("invalid container id {0:?}: use letters, digits, '_', '.', '+' and '-'")]
    InvalidId(String),
    /// No argv.
    #[error("process args must not be empty")]
    EmptyArgs,
    /// A path that must be absolute is not.
    #[error("{field} must be an absolute path, got {path:?}")]
    NotAbsolute {
        /// Which field.
        field: &'static str,
        /// The value.
        path: PathBuf,
    },
    /// An overlay without layers.
    #[error("an overlay root filesystem needs at least one lower layer")]
    NoLayers,
    /// A capability name that does not exist.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
}

impl SandboxSpec {
    /// Check the spec's shape.
    pub fn validate(&self) -> Result<(), SpecError> {
        let id_ok = !self.id.is_empty()
            && self.id != "."
            && self.id != ".."
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c));
        if !id_ok {
            return Err(SpecError::InvalidId(self.id.clone()));
        }
        if self.process.args.is_empty() {
            return Err(SpecError::EmptyArgs);
        }
        let absolute = |field: &'static str, path: &PathBuf| {
            if path.is_absolute() {
                Ok(())
            } else {
                Err(SpecError::NotAbsolute {
                    field,
                    path: path.clone(),
                })
            }
        };
        absolute("bundleDir", &self.bundle_dir)?;
        absolute("process.cwd", &self.process.cwd)?;
        match &self.rootfs {
            RootfsSpec::Overlay { lower, upper } => {
                if lower.is_empty() {
                    return Err(SpecError::NoLayers);
                }
                for l in lower {
                    absolute("rootfs.overlay.lower", l)?;
                }
                absolute("rootfs.overlay.upper", upper)?;
            }
            RootfsSpec::Dir(dir) => absolute("rootfs.dir", dir)?,
        }
        for m in &self.mounts {
            absolute("mounts.destination", &m.destination)?;
            if let MountKind::Bind { source } = &m.kind {
                absolute("mounts.bind.source", source)?;
            }
        }
        for cap in &self.process.capabilities {
            crate::caps::parse(cap).ok_or_else(|| SpecError::UnknownCapability(cap.clone()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn minimal() -> SandboxSpec {
        SandboxSpec {
            id: "pod1-app".into(),
            bundle_dir: "/run/aos/c/pod1-app".into(),
            rootfs: RootfsSpec::Dir("/var/lib/aos/rootfs/x".into()),
            readonly_root: false,
            mounts: vec![],
            process: ProcessSpec {
                args: vec!["/bin/true".into()],
                env: vec![],
                cwd: "/".into(),
                uid: 0,
                gid: 0,
                supplemental_groups: vec![],
                no_new_privs: false,
                capabilities: vec![],
                seccomp: Profile::RuntimeDefault,
            },
            hostname: None,
            namespaces: NamespacePaths::default(),
            cgroup: CgroupSpec::default(),
            stdout: None,
            stderr: None,
            privileged: false,
        }
    }

    #[test]
    fn validate_table() {
        type Edit = Box<dyn Fn(&mut SandboxSpec)>;
        let cases: Vec<(&str, Edit, Result<(), SpecError>)> = vec![
            ("ok", Box::new(|_| {}), Ok(())),
            (
                "bad id",
                Box::new(|s| s.id = "a/b".into()),
                Err(SpecError::InvalidId("a/b".into())),
            ),
            (
                "dotdot",
                Box::new(|s| s.id = "..".into()),
                Err(SpecError::InvalidId("..".into())),
            ),
            (
                "no args",
                Box::new(|s| s.process.args.clear()),
                Err(SpecError::EmptyArgs),
            ),
            (
                "relative cwd",
                Box::new(|s| s.process.cwd = "tmp".into()),
                Err(SpecError::NotAbsolute {
                    field: "process.cwd",
                    path: "tmp".into(),
                }),
            ),
            (
                "no layers",
                Box::new(|s| {
                    s.rootfs = RootfsSpec::Overlay {
                        lower: vec![],
                        upper: "/u".into(),
                    }
                }),
                Err(SpecError::NoLayers),
            ),
            (
                "bad cap",
                Box::new(|s| s.process.capabilities = vec!["CAP_FLY".into()]),
                Err(SpecError::UnknownCapability("CAP_FLY".into())),
            ),
        ];
        for (name, edit, want) in cases {
            let mut s = minimal();
            edit(&mut s);
            assert_eq!(s.validate(), want, "{name}");
        }
    }

    #[test]
    fn json_round_trip_and_defaults() {
        let s = minimal();
        let json = serde_json::to_string(&s).unwrap();
        let back: SandboxSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let sparse: SandboxSpec = serde_json::from_str(
            r#"{"id":"x","bundleDir":"/b","rootfs":{"dir":"/r"},"process":{"args":["sh"]}}"#,
        )
        .unwrap();
        assert_eq!(sparse.process.cwd, PathBuf::from("/"));
        assert_eq!(sparse.process.seccomp, Profile::RuntimeDefault);
        assert_eq!(sparse.cgroup.parent_path(), "/aos");
    }

    #[test]
    fn exit_reason() {
        let oom = ExitStatus {
            code: 137,
            signal: Some(9),
            oom_killed: true,
        };
        assert_eq!(oom.reason(), "OOMKilled");
        assert_eq!(
            ExitStatus {
                code: 0,
                signal: None,
                oom_killed: false
            }
            .reason(),
            "Completed"
        );
        assert_eq!(
            ExitStatus {
                code: 2,
                signal: None,
                oom_killed: false
            }
            .reason(),
            "Error"
        );
    }
}
