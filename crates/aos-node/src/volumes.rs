//! Pod volumes on the node: emptyDir (a directory under the pod, a tmpfs with `medium:
//! Memory`), configMap and secret (files written from the API objects, mounted read-only),
//! and the container mounts that use them.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use aos_sandbox::spec::{MountKind, MountSpec};
use k8s_openapi::api::core::v1::{Container, KeyToPath, PodSpec, Volume};

use crate::envs::ConfigData;
use crate::quantity;
use crate::runtime::MemoryVolume;

/// A volume that cannot be prepared or mounted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    /// The Secret a volume needs does not exist.
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    /// The ConfigMap a volume needs does not exist.
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    /// An `items` key missing from its source.
    #[error("configmap or secret {name}: couldn't find key {key}")]
    KeyNotFound {
        /// The object.
        name: String,
        /// The key.
        key: String,
    },
    /// A volume source the agent does not implement.
    #[error("volume {0:?}: only emptyDir, configMap and secret volumes are supported")]
    Unsupported(String),
    /// A volumeMount naming no volume.
    #[error("volumeMount {0:?} names no volume of the pod")]
    NoSuchVolume(String),
    /// A path escaping its volume.
    #[error("invalid path {0:?}: must be relative and must not contain '..'")]
    BadPath(String),
    /// A file operation failed.
    #[error("{path}: {detail}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        detail: String,
    },
    /// A bad `sizeLimit`.
    #[error(transparent)]
    Quantity(#[from] quantity::QuantityError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |e| VolumeError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// The host directory of a volume.
pub fn volume_dir(pod_dir: &Path, v: &Volume) -> PathBuf {
    let kind = if v.empty_dir.is_some() {
        "empty-dir"
    } else if v.config_map.is_some() {
        "configmap"
    } else if v.secret.is_some() {
        "secret"
    } else {
        "other"
    };
    pod_dir.join("volumes").join(kind).join(&v.name)
}

/// Object names a volume reads, each with whether it is optional.
pub type Refs = Vec<(String, bool)>;

/// The Secrets and ConfigMaps the pod's volumes read.
pub fn referenced(spec: &PodSpec) -> (Refs, Refs) {
    let mut secrets = Vec::new();
    let mut configmaps = Vec::new();
    for v in spec.volumes.iter().flatten() {
        if let Some(s) = &v.secret
            && let Some(n) = &s.secret_name
        {
            secrets.push((n.clone(), s.optional == Some(true)));
        }
        if let Some(c) = &v.config_map {
            configmaps.push((c.name.clone(), c.optional == Some(true)));
        }
    }
    (secrets, configmaps)
}

/// tmpfs-backed emptyDirs of the pod, for the sandbox.
pub fn memory_volumes(spec: &PodSpec, pod_dir: &Path) -> Result<Vec<MemoryVolume>, VolumeError> {
    let mut out = Vec::new();
    for v in spec.volumes.iter().flatten() {
        if let Some(e) = &v.empty_dir
            && e.medium.as_deref() == Some("Memory")
        {
            let size_bytes = e
                .size_limit
                .as_ref()
                .map(|q| quantity::parse_units(&q.0))
                .transpose()?;
            out.push(MemoryVolume {
                path: volume_dir(pod_dir, v),
                size_bytes,
            });
        }
    }
    Ok(out)
}

fn check_rel(p: &str) -> Result<&Path, VolumeError> {
    let path = Path::new(p);
    if p.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(VolumeError::BadPath(p.to_owned()));
    }
    Ok(path)
}

fn write_files(
    dir: &Path,
    name: &str,
    data: &BTreeMap<String, String>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    fs_group: Option<u32>,
) -> Result<(), VolumeError> {
    // Start from an empty directory so that removed keys disappear.
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files: Vec<(String, String, u32)> = match items {
        Some(items) => {
            let mut out = Vec::new();
            for it in items {
                let v = data.get(&it.key).ok_or_else(|| VolumeError::KeyNotFound {
                    name: name.to_owned(),
                    key: it.key.clone(),
                })?;
                let mode = it.mode.map_or(default_mode, |m| m as u32);
                out.push((it.path.clone(), v.clone(), mode));
            }
            out
        }
        None => data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), default_mode))
            .collect(),
    };
    for (rel, content, mode) in files {
        let path = dir.join(check_rel(&rel)?);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, content).map_err(io(&path))?;
        // With an fsGroup the group may read too, as the kubelet arranges.
        let mode = if fs_group.is_some() {
            mode | 0o040
        } else {
            mode
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(io(&path))?;
        if let Some(g) = fs_group {
            std::os::unix::fs::chown(&path, None, Some(g)).map_err(io(&path))?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(io(dir))?;
    if let Some(g) = fs_group {
        std::os::unix::fs::chown(dir, None, Some(g)).map_err(io(dir))?;
    }
    Ok(())
}

/// Create every volume of the pod under `pod_dir`, writing configMap and secret files from
/// `data`.
pub fn prepare(
    spec: &PodSpec,
    pod_dir: &Path,
    data: &ConfigData,
    fs_group: Option<u32>,
) -> Result<(), VolumeError> {
    for v in spec.volumes.iter().flatten() {
        let dir = volume_dir(pod_dir, v);
        if v.empty_dir.is_some() {
            if !dir.exists() {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            }
            // emptyDir is world-writable like the kubelet's; with fsGroup, group-owned and setgid.
            let mode = if fs_group.is_some() { 0o2777 } else { 0o777 };
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                .map_err(io(&dir))?;
            if let Some(g) = fs_group {
                std::os::unix::fs::chown(&dir, None, Some(g)).map_err(io(&dir))?;
            }
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let mode = s.default_mode.map_or(0o644, |m| m as u32);
            match data.secrets.get(&name).cloned().flatten() {
                Some(d) => write_files(&dir, &name, &d, s.items.as_ref(), mode, fs_group)?,
                None if s.optional == Some(true) => {
                    write_files(&dir, &name, &BTreeMap::new(), None, mode, fs_group)?
                }
                None => return Err(VolumeError::SecretNotFound(name)),
            }
        } else if let Some(c) = &v.config_map {
            let mode = c.default_mode.map_or(0o644, |m| m as u32);
            match data.configmaps.get(&c.name).cloned().flatten() {
                Some(d) => write_files(&dir, &c.name, &d, c.items.as_ref(), mode, fs_group)?,
                None if c.optional == Some(true) => {
                    write_files(&dir, &c.name, &BTreeMap::new(), None, mode, fs_group)?
                }
                None => return Err(VolumeError::ConfigMapNotFound(c.name.clone())),
            }
        } else {
            return Err(VolumeError::Unsupported(v.name.clone()));
        }
    }
    Ok(())
}

/// The mounts of a container: its volumeMounts bound from the pod's volume directories;
/// configMap and secret volumes read-only.
pub fn container_mounts(
    spec: &PodSpec,
    c: &Container,
    pod_dir: &Path,
) -> Result<Vec<MountSpec>, VolumeError> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .ok_or_else(|| VolumeError::NoSuchVolume(m.name.clone()))?;
        let mut source = volume_dir(pod_dir, v);
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            source = source.join(check_rel(sub)?);
        }
        let readonly = m.read_only == Some(true) || v.secret.is_some() || v.config_map.is_some();
        out.push(MountSpec {
            destination: PathBuf::from(&m.mount_path),
            kind: MountKind::Bind { source },
            readonly,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn prepare_and_mount() {
        let dir = tempfile::tempdir().unwrap();
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [{"name": "a", "volumeMounts": [
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "sec", "mountPath": "/etc/sec", "readOnly": true},
                {"name": "mem", "mountPath": "/mem"},
            ]}],
            "volumes": [
                {"name": "tmp", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                {"name": "cfg", "configMap": {"name": "app", "items": [{"key": "a", "path": "conf/a.txt", "mode": 384}]}},
                {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256}},
            ]
        }))
        .unwrap();
        let mut data = ConfigData::default();
        data.configmaps.insert(
            "app".into(),
            Some(
                [
                    ("a".to_string(), "A".to_string()),
                    ("b".to_string(), "B".to_string()),
                ]
                .into_iter()
                .collect(),
            ),
        );
        data.secrets.insert("s".into(), None);
        assert_eq!(
            prepare(&spec, dir.path(), &data, None),
            Err(VolumeError::SecretNotFound("s".into()))
        );
        data.secrets.insert(
            "s".into(),
            Some(
                [("token".to_string(), "t0k".to_string())]
                    .into_iter()
                    .collect(),
            ),
        );
        prepare(&spec, dir.path(), &data, Some(1001)).unwrap();
        let cfg = dir.path().join("volumes/configmap/cfg/conf/a.txt");
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), "A");
        assert!(!dir.path().join("volumes/configmap/cfg/b").exists());
        let meta = std::fs::metadata(&cfg).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        let tok = std::fs::metadata(dir.path().join("volumes/secret/sec/token")).unwrap();
        assert_eq!(tok.mode() & 0o777, 0o440);
        if nix::unistd::geteuid().is_root() {
            assert_eq!(tok.gid(), 1001);
        }
        let empty = std::fs::metadata(dir.path().join("volumes/empty-dir/tmp")).unwrap();
        assert_eq!(empty.mode() & 0o7777, 0o2777);

        let mem = memory_volumes(&spec, dir.path()).unwrap();
        assert_eq!(mem.len(), 1);
        assert_eq!(mem[0].size_bytes, Some(64 << 20));

        let mounts = container_mounts(&spec, &spec.containers[0], dir.path()).unwrap();
        assert_eq!(mounts.len(), 4);
        assert!(!mounts[0].readonly);
        assert!(mounts[1].readonly && mounts[2].readonly);
        assert_eq!(mounts[0].destination, PathBuf::from("/tmp"));

        let bad: Container = serde_json::from_value(
            json!({"name": "b", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}),
        )
        .unwrap();
        assert_eq!(
            container_mounts(&spec, &bad, dir.path()),
            Err(VolumeError::NoSuchVolume("x".into()))
        );
    }
}
