//! Where aos keeps its state, and where a client finds the server's kubeconfig.

use std::path::{Path, PathBuf};

/// The file `aos up` writes its admin kubeconfig to, inside the data dir.
pub(crate) const KUBECONFIG_FILE: &str = "kubeconfig.yaml";

/// The default data directory: `$AOS_DATA_DIR`, else `/var/lib/aos` for root, else
/// `$XDG_DATA_HOME/aos` (`~/.local/share/aos` when `XDG_DATA_HOME` is unset).
pub(crate) fn default_data_dir() -> anyhow::Result<PathBuf> {
    data_dir_from(
        non_empty_env("AOS_DATA_DIR"),
        nix::unistd::geteuid().is_root(),
        non_empty_env("XDG_DATA_HOME"),
        non_empty_env("HOME"),
    )
}

fn data_dir_from(
    aos_data_dir: Option<String>,
    is_root: bool,
    xdg_data_home: Option<String>,
    home: Option<String>,
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = aos_data_dir {
        return Ok(PathBuf::from(dir));
    }
    if is_root {
        return Ok(PathBuf::from("/var/lib/aos"));
    }
    if let Some(xdg) = xdg_data_home {
        return Ok(Path::new(&xdg).join("aos"));
    }
    match home {
        Some(home) => Ok(Path::new(&home).join(".local/share/aos")),
        None => anyhow::bail!(
            "cannot choose a data directory: set AOS_DATA_DIR, XDG_DATA_HOME or HOME, or pass --data-dir"
        ),
    }
}

/// The kubeconfig a client uses: `--kubeconfig` (clap also reads `$AOS_KUBECONFIG` into it),
/// else the default data dir's `kubeconfig.yaml`.
pub(crate) fn kubeconfig(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(path) => Ok(path.to_path_buf()),
        None => Ok(default_data_dir()?.join(KUBECONFIG_FILE)),
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_precedence() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            data_dir_from(s("/d"), true, s("/x"), s("/h")).unwrap(),
            PathBuf::from("/d")
        );
        assert_eq!(
            data_dir_from(None, true, s("/x"), s("/h")).unwrap(),
            PathBuf::from("/var/lib/aos")
        );
        assert_eq!(
            data_dir_from(None, false, s("/x"), s("/h")).unwrap(),
            PathBuf::from("/x/aos")
        );
        assert_eq!(
            data_dir_from(None, false, None, s("/h")).unwrap(),
            PathBuf::from("/h/.local/share/aos")
        );
        assert!(data_dir_from(None, false, None, None).is_err());
    }
}
