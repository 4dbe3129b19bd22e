//! Pod namespaces kept as bind-mounted files, as `ip netns add` does.
//!
//! A pod's network, IPC and UTS namespaces are created once, when the pod is, and each of its
//! containers joins them through the OCI spec's namespace paths
//! ([`crate::spec::NamespacePaths`]). They live as long as their bind mounts, so they survive
//! container restarts and are gone after [`PodNamespaces::remove`].

use std::path::{Path, PathBuf};

use crate::host::{Host, HostError, NsKind};
use crate::spec::NamespacePaths;

/// Errors managing pod namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A host call failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A pod id that cannot name a directory.
    #[error("invalid pod id {0:?}")]
    InvalidId(String),
}

/// The namespace files of one pod, in `<dir>/<pod id>/{net,ipc,uts}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespaces {
    /// The pod's directory.
    pub dir: PathBuf,
}

impl PodNamespaces {
    /// Where the pod's namespace files are (nothing is created).
    pub fn at(root: &Path, pod_id: &str) -> Result<Self, NetnsError> {
        let ok = !pod_id.is_empty()
            && pod_id != "."
            && pod_id != ".."
            && pod_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(NetnsError::InvalidId(pod_id.to_string()));
        }
        Ok(Self {
            dir: root.join(pod_id),
        })
    }

    /// The file of one namespace.
    pub fn path(&self, kind: NsKind) -> PathBuf {
        self.dir.join(kind.proc_name())
    }

    /// The paths to put in a container's spec.
    pub fn paths(&self) -> NamespacePaths {
        NamespacePaths {
            net: Some(self.path(NsKind::Net)),
            ipc: Some(self.path(NsKind::Ipc)),
            uts: Some(self.path(NsKind::Uts)),
        }
    }

    /// Create the pod's network, IPC and UTS namespaces with `hostname`, unless they exist.
    /// The loopback interface is brought up by [`crate::network::Network::attach`].
    pub fn create(&self, host: &dyn Host, hostname: &str) -> Result<(), NetnsError> {
        if host.exists(&self.path(NsKind::Net)) {
            return Ok(());
        }
        host.create_dir_all(&self.dir)?;
        let files: Vec<(NsKind, PathBuf)> = [NsKind::Net, NsKind::Ipc, NsKind::Uts]
            .into_iter()
            .map(|k| (k, self.path(k)))
            .collect();
        if let Err(e) = host.create_namespaces(&files, Some(hostname)) {
            // Leave nothing half-made behind.
            let _ = self.remove(host);
            return Err(e.into());
        }
        Ok(())
    }

    /// Unmount and delete the namespace files; the namespaces end when their last process does.
    pub fn remove(&self, host: &dyn Host) -> Result<(), NetnsError> {
        for k in [NsKind::Net, NsKind::Ipc, NsKind::Uts] {
            let p = self.path(k);
            host.umount(&p)?;
            host.remove_all(&p)?;
        }
        host.remove_dir(&self.dir)?;
        Ok(())
    }
}

/// Create a pod's namespaces under `root` (see [`PodNamespaces::create`]).
pub fn create_pod_netns(
    host: &dyn Host,
    root: &Path,
    pod_id: &str,
    hostname: &str,
) -> Result<PodNamespaces, NetnsError> {
    let ns = PodNamespaces::at(root, pod_id)?;
    ns.create(host, hostname)?;
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Call, RecordingHost};

    #[test]
    fn create_and_remove() {
        let host = RecordingHost::new();
        let ns = create_pod_netns(&host, Path::new("/run/aos/ns"), "pod-1", "web-0").unwrap();
        assert_eq!(ns.paths().net, Some(PathBuf::from("/run/aos/ns/pod-1/net")));
        assert!(host.calls().contains(&Call::CreateNamespaces(
            vec![
                (NsKind::Net, "/run/aos/ns/pod-1/net".into()),
                (NsKind::Ipc, "/run/aos/ns/pod-1/ipc".into()),
                (NsKind::Uts, "/run/aos/ns/pod-1/uts".into()),
            ],
            Some("web-0".into())
        )));
        ns.remove(&host).unwrap();
        assert!(
            host.calls()
                .contains(&Call::Umount("/run/aos/ns/pod-1/uts".into()))
        );
        assert!(
            host.calls()
                .contains(&Call::RemoveDir("/run/aos/ns/pod-1".into()))
        );
    }

    #[test]
    fn existing_namespaces_are_kept() {
        let host = RecordingHost::new();
        host.set_file("/ns/p/net", "");
        create_pod_netns(&host, Path::new("/ns"), "p", "h").unwrap();
        assert!(host.calls().is_empty());
    }

    #[test]
    fn bad_ids() {
        for id in ["", "..", "a/b"] {
            assert!(PodNamespaces::at(Path::new("/ns"), id).is_err(), "{id}");
        }
    }
}
