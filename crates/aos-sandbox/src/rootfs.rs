//! A container's root file system: an overlay of image layers, or a directory as is.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::host::{Host, HostError};
use crate::spec::RootfsSpec;

/// Errors preparing a root file system.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A host call failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// overlayfs options are separated by `,` and `:`; a path containing them cannot be used.
    #[error("layer path {0:?} contains ',' or ':' which overlayfs cannot take")]
    UnusablePath(PathBuf),
}

/// The mount point of an overlay root inside a bundle.
pub fn mount_point(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// The overlay work directory for `upper`: a sibling, as overlayfs needs it on the same file system.
pub fn work_dir(upper: &Path) -> PathBuf {
    let name = upper
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    upper.with_file_name(format!("{name}.work"))
}

/// Make the root file system ready; returns the path for the OCI spec's `root.path`.
pub fn prepare(host: &dyn Host, spec: &RootfsSpec, bundle: &Path) -> Result<PathBuf, RootfsError> {
    match spec {
        RootfsSpec::Dir(dir) => Ok(dir.clone()),
        RootfsSpec::Overlay { lower, upper } => {
            for p in lower.iter().chain(std::iter::once(upper)) {
                let s = p.to_string_lossy();
                if s.contains(',') || s.contains(':') {
                    return Err(RootfsError::UnusablePath(p.clone()));
                }
            }
            let work = work_dir(upper);
            let target = mount_point(bundle);
            host.create_dir_all(upper)?;
            host.create_dir_all(&work)?;
            host.create_dir_all(&target)?;
            let lowers = lower
                .iter()
                .map(|p| p.to_string_lossy())
                .collect::<Vec<_>>()
                .join(":");
            let data = format!(
                "lowerdir={lowers},upperdir={},workdir={}",
                upper.display(),
                work.display()
            );
            host.mount(
                "overlay",
                &target,
                Some("overlay"),
                MsFlags::empty(),
                Some(&data),
            )?;
            Ok(target)
        }
    }
}

/// Undo [`prepare`]: unmount an overlay (the upper directory, the container's writes, stays
/// for the caller to keep or delete).
pub fn release(host: &dyn Host, spec: &RootfsSpec, bundle: &Path) -> Result<(), RootfsError> {
    if let RootfsSpec::Overlay { upper, .. } = spec {
        let target = mount_point(bundle);
        host.umount(&target)?;
        host.remove_dir(&target)?;
        host.remove_all(&work_dir(upper))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Call, RecordingHost};

    #[test]
    fn overlay_mount_options() {
        let host = RecordingHost::new();
        let spec = RootfsSpec::Overlay {
            lower: vec!["/l/top".into(), "/l/base".into()],
            upper: "/c/upper".into(),
        };
        let root = prepare(&host, &spec, Path::new("/b")).unwrap();
        assert_eq!(root, PathBuf::from("/b/rootfs"));
        assert!(host.calls().contains(&Call::Mount {
            source: "overlay".into(),
            target: "/b/rootfs".into(),
            fstype: Some("overlay".into()),
            flags: MsFlags::empty(),
            data: Some("lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/upper.work".into()),
        }));
        release(&host, &spec, Path::new("/b")).unwrap();
        assert!(host.calls().contains(&Call::Umount("/b/rootfs".into())));
    }

    #[test]
    fn dir_is_used_as_is_and_bad_paths_refused() {
        let host = RecordingHost::new();
        let root = prepare(&host, &RootfsSpec::Dir("/r".into()), Path::new("/b")).unwrap();
        assert_eq!(root, PathBuf::from("/r"));
        assert!(host.calls().is_empty());
        let bad = RootfsSpec::Overlay {
            lower: vec!["/l/a:b".into()],
            upper: "/u".into(),
        };
        assert!(matches!(
            prepare(&host, &bad, Path::new("/b")),
            Err(RootfsError::UnusablePath(_))
        ));
    }
}
