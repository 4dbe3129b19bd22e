//! Cgroups: the pod-level cgroup (pids limit) and reading what happened to a container (OOM).
//!
//! A container's own cgroup (`<pod cgroup>/<container id>`) is created and configured by
//! libcontainer from the OCI spec's `linux.resources`; this module owns the pod's parent cgroup,
//! where the per-pod pids limit lives, and knows where the files are on cgroup v1 and v2.

use std::path::{Path, PathBuf};

use crate::host::{Host, HostError};

/// The pids limit of a pod when none is configured.
pub const DEFAULT_POD_PIDS_LIMIT: i64 = 1024;

/// Where cgroup file systems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup hierarchy the host uses for resource control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Per-controller hierarchies (also "hybrid": v1 controllers with a v2 mount beside them).
    V1,
    /// The unified hierarchy.
    V2,
}

/// Errors managing cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A host call failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A cgroup path must be absolute and free of `..`.
    #[error("invalid cgroup path {0:?}")]
    InvalidPath(String),
}

/// Detect the hierarchy: v2 when `/sys/fs/cgroup` itself is a cgroup2 mount.
pub fn detect_version() -> CgroupVersion {
    match nix::sys::statfs::statfs(CGROUP_ROOT) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => CgroupVersion::V2,
        _ => CgroupVersion::V1,
    }
}

fn check_path(path: &str) -> Result<&str, CgroupError> {
    let ok = path.starts_with('/')
        && !path.split('/').any(|c| c == ".." || c == ".")
        && !path.contains('\0');
    if ok {
        Ok(path.trim_end_matches('/'))
    } else {
        Err(CgroupError::InvalidPath(path.to_string()))
    }
}

/// The controllers aos configures on cgroup v1, each its own hierarchy.
const V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids"];

/// The other v1 hierarchies libcontainer places a container's cgroup in (it creates the
/// container's path, and so the pod's, in every subsystem it manages, but removes only the
/// container's leaf). Combined mounts such as `net_cls,net_prio` are reached through their
/// per-controller symlinks; a hierarchy the machine lacks is simply not found.
const V1_OTHER_HIERARCHIES: &[&str] = &[
    "blkio",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

/// A pod's parent cgroup, holding the per-pod pids limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    /// The cgroup path, for example `/aos/pod-<uid>`.
    pub path: String,
    /// The hierarchy it lives in.
    pub version: CgroupVersion,
    root: PathBuf,
}

impl PodCgroup {
    /// A pod cgroup at `path` under the standard root.
    pub fn new(path: &str, version: CgroupVersion) -> Result<Self, CgroupError> {
        Self::with_root(CGROUP_ROOT, path, version)
    }

    /// A pod cgroup under another cgroup root (tests).
    pub fn with_root(
        root: impl Into<PathBuf>,
        path: &str,
        version: CgroupVersion,
    ) -> Result<Self, CgroupError> {
        Ok(Self {
            path: check_path(path)?.to_string(),
            version,
            root: root.into(),
        })
    }

    /// The directories that make up this cgroup (one per v1 controller, one on v2).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let rel = self.path.trim_start_matches('/');
        match self.version {
            CgroupVersion::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| self.root.join(c).join(rel))
                .collect(),
            CgroupVersion::V2 => vec![self.root.join(rel)],
        }
    }

    /// Create the cgroup and set its pids limit (idempotent).
    pub fn create(&self, host: &dyn Host, pids_limit: i64) -> Result<(), CgroupError> {
        match self.version {
            CgroupVersion::V1 => {
                for d in self.dirs() {
                    host.create_dir_all(&d)?;
                }
                let pids = self
                    .root
                    .join("pids")
                    .join(self.path.trim_start_matches('/'));
                host.write_file(&pids.join("pids.max"), &pids_limit.to_string())?;
            }
            CgroupVersion::V2 => {
                // Enable the controllers on the way down so that the leaf can use them.
                let mut dir = self.root.clone();
                for comp in self.path.trim_start_matches('/').split('/') {
                    let control = dir.join("cgroup.subtree_control");
                    host.create_dir_all(&dir.join(comp))?;
                    for c in ["+cpu", "+memory", "+pids"] {
                        // A controller the parent lacks cannot be enabled; limits using it fail
                        // later with a clear error from libcontainer.
                        if let Err(e) = host.write_file(&control, c) {
                            tracing::debug!(error = %e, controller = c, "cannot enable controller");
                        }
                    }
                    dir = dir.join(comp);
                }
                host.write_file(&dir.join("pids.max"), &pids_limit.to_string())?;
            }
        }
        Ok(())
    }

    /// Remove the cgroup (its container cgroups must be gone: libcontainer removes them), on v1
    /// in every hierarchy, not only in those aos configures.
    pub fn remove(&self, host: &dyn Host) -> Result<(), CgroupError> {
        for d in self.dirs() {
            host.remove_dir(&d)?;
        }
        if self.version == CgroupVersion::V1 {
            let rel = self.path.trim_start_matches('/');
            for h in V1_OTHER_HIERARCHIES {
                host.remove_dir(&self.root.join(h).join(rel))?;
            }
        }
        Ok(())
    }
}

/// Whether the OOM killer killed a process in the cgroup at `path` (the container's cgroup).
pub fn oom_killed(
    host: &dyn Host,
    version: CgroupVersion,
    path: &str,
) -> Result<bool, CgroupError> {
    oom_killed_under(host, Path::new(CGROUP_ROOT), version, path)
}

/// [`oom_killed`] under another cgroup root.
pub fn oom_killed_under(
    host: &dyn Host,
    root: &Path,
    version: CgroupVersion,
    path: &str,
) -> Result<bool, CgroupError> {
    let rel = check_path(path)?.trim_start_matches('/');
    let (file, key) = match version {
        // Since Linux 4.13 memory.oom_control counts kills; `under_oom` alone would miss a kill
        // that already ended.
        CgroupVersion::V1 => (
            root.join("memory").join(rel).join("memory.oom_control"),
            "oom_kill",
        ),
        CgroupVersion::V2 => (root.join(rel).join("memory.events"), "oom_kill"),
    };
    let text = host.read_file(&file)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .any(|(k, v)| k == key && v.trim().parse::<u64>().is_ok_and(|n| n > 0)))
}

/// Kubernetes CPU limit (millicores) to a CFS quota for `period_us`.
pub fn cpu_quota_us(limit_millis: u64, period_us: u64) -> i64 {
    let q = limit_millis.saturating_mul(period_us) / 1000;
    // The kernel's minimum quota is 1ms.
    q.max(1000) as i64
}

/// Kubernetes CPU request (millicores) to cgroup v1 shares, as the kubelet computes them.
pub fn cpu_shares(request_millis: u64) -> u64 {
    (request_millis * 1024 / 1000).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Call, RecordingHost};

    #[test]
    fn v1_pod_cgroup_layout() {
        let host = RecordingHost::new();
        let pod = PodCgroup::with_root("/cg", "/aos/pod-a", CgroupVersion::V1).unwrap();
        pod.create(&host, 1024).unwrap();
        let calls = host.calls();
        for c in ["cpu", "cpuacct", "memory", "pids"] {
            assert!(calls.contains(&Call::CreateDirAll(format!("/cg/{c}/aos/pod-a").into())));
        }
        assert!(calls.contains(&Call::WriteFile(
            "/cg/pids/aos/pod-a/pids.max".into(),
            "1024".into()
        )));
        pod.remove(&host).unwrap();
        assert!(
            host.calls()
                .contains(&Call::RemoveDir("/cg/memory/aos/pod-a".into()))
        );
        // libcontainer put the pod's path in every hierarchy: it goes from all of them.
        for h in ["freezer", "devices", "cpuset", "blkio"] {
            assert!(
                host.calls()
                    .contains(&Call::RemoveDir(format!("/cg/{h}/aos/pod-a").into()))
            );
        }
    }

    #[test]
    fn v2_pod_cgroup_enables_controllers() {
        let host = RecordingHost::new();
        let pod = PodCgroup::with_root("/cg", "/aos/pod-a", CgroupVersion::V2).unwrap();
        pod.create(&host, 64).unwrap();
        let calls = host.calls();
        assert!(calls.contains(&Call::WriteFile(
            "/cg/cgroup.subtree_control".into(),
            "+pids".into()
        )));
        assert!(calls.contains(&Call::WriteFile(
            "/cg/aos/cgroup.subtree_control".into(),
            "+memory".into()
        )));
        assert!(calls.contains(&Call::WriteFile(
            "/cg/aos/pod-a/pids.max".into(),
            "64".into()
        )));
    }

    #[test]
    fn invalid_paths_rejected() {
        for p in ["aos/x", "/aos/../etc", "/aos/./x"] {
            assert!(
                PodCgroup::with_root("/cg", p, CgroupVersion::V1).is_err(),
                "{p}"
            );
        }
    }

    #[test]
    fn oom_detection() {
        let host = RecordingHost::new();
        host.set_file(
            "/cg/memory/aos/p/c/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        host.set_file(
            "/cg/aos/p/d/memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n",
        );
        let root = Path::new("/cg");
        assert!(oom_killed_under(&host, root, CgroupVersion::V1, "/aos/p/c").unwrap());
        assert!(!oom_killed_under(&host, root, CgroupVersion::V2, "/aos/p/d").unwrap());
        assert!(oom_killed_under(&host, root, CgroupVersion::V1, "/aos/p/missing").is_err());
    }

    #[test]
    fn cpu_conversions() {
        assert_eq!(cpu_quota_us(500, 100_000), 50_000);
        assert_eq!(cpu_quota_us(1, 100_000), 1000);
        assert_eq!(cpu_shares(500), 512);
        assert_eq!(cpu_shares(0), 2);
    }
}
