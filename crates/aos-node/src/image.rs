//! Images as the pod workers need them: the run-time defaults of the image configuration and
//! its unpacked layers, behind [`ImageSource`] (the node's `aos-image` store, or a fake).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An image lookup that failed for another reason than absence.
#[derive(Debug, Clone, thiserror::Error)]
#[error("image {reference}: {detail}")]
pub struct ImageError {
    /// The reference.
    pub reference: String,
    /// What went wrong.
    pub detail: String,
}

/// An image ready to run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedImage {
    /// `sha256:<hex>` of the image configuration (the image id).
    pub id: String,
    /// `ENTRYPOINT`.
    pub entrypoint: Vec<String>,
    /// `CMD`.
    pub cmd: Vec<String>,
    /// `ENV` as `NAME=value`.
    pub env: Vec<String>,
    /// `WORKDIR`.
    pub working_dir: Option<String>,
    /// `USER` (`uid`, `uid:gid`, `name`, `name:group`).
    pub user: Option<String>,
    /// `STOPSIGNAL`.
    pub stop_signal: Option<String>,
    /// Unpacked layers, base first.
    pub layers: Vec<PathBuf>,
}

/// Where images come from. Calls block (file I/O); callers use `spawn_blocking`.
pub trait ImageSource: Send + Sync + 'static {
    /// The image, unpacked; `Ok(None)` when the store does not have it.
    fn resolve(&self, reference: &str) -> Result<Option<ResolvedImage>, ImageError>;
}

/// The node's `aos-image` store in `DATA_DIR`.
#[derive(Debug)]
pub struct StoreImages {
    store: aos_image::store::ImageStore,
}

impl StoreImages {
    /// Open the store of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, ImageError> {
        let store = aos_image::store::ImageStore::open(data_dir).map_err(|e| ImageError {
            reference: String::new(),
            detail: e.to_string(),
        })?;
        Ok(Self { store })
    }
}

impl ImageSource for StoreImages {
    fn resolve(&self, reference: &str) -> Result<Option<ResolvedImage>, ImageError> {
        let err = |e: aos_image::store::StoreError| ImageError {
            reference: reference.to_owned(),
            detail: e.to_string(),
        };
        let info = match self.store.resolve(reference) {
            Ok(info) => info,
            Err(aos_image::store::StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let layers = self.store.unpack_layers(&info).map_err(err)?;
        let c = &info.config.config;
        Ok(Some(ResolvedImage {
            id: info.config_digest.to_string(),
            entrypoint: c.entrypoint.clone().unwrap_or_default(),
            cmd: c.cmd.clone().unwrap_or_default(),
            env: c.env.clone(),
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            user: c.user.clone().filter(|u| !u.is_empty()),
            stop_signal: c.stop_signal.clone().filter(|s| !s.is_empty()),
            layers,
        }))
    }
}

/// Images given by the test.
#[derive(Debug, Default)]
pub struct FakeImages {
    images: Mutex<BTreeMap<String, ResolvedImage>>,
}

impl FakeImages {
    /// Add (or replace) an image.
    pub fn insert(&self, reference: &str, image: ResolvedImage) {
        self.images
            .lock()
            .expect("fake images lock poisoned")
            .insert(reference.to_owned(), image);
    }
}

impl ImageSource for FakeImages {
    fn resolve(&self, reference: &str) -> Result<Option<ResolvedImage>, ImageError> {
        Ok(self
            .images
            .lock()
            .expect("fake images lock poisoned")
            .get(reference)
            .cloned())
    }
}

/// A file of the image as the container sees it: the top-most layer that has it.
fn image_file(layers: &[PathBuf], rel: &str) -> Option<String> {
    layers
        .iter()
        .rev()
        .map(|l| l.join(rel))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::read_to_string(p).ok())
}

/// Find `name` in a passwd- or group-style file: `(id, gid)` (the gid field is passwd's 4th).
fn lookup_colon_file(text: &str, name: &str) -> Option<(u32, Option<u32>)> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 3 && f[0] == name {
            let id = f[2].parse().ok()?;
            let gid = f.get(3).and_then(|g| g.parse().ok());
            Some((id, gid))
        } else {
            None
        }
    })
}

/// The error of a `USER` that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// A user name not in the image's `/etc/passwd`.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    User(String),
    /// A group name not in the image's `/etc/group`.
    #[error("unable to find group {0}: no matching entries in group file")]
    Group(String),
}

/// Resolve the image's `USER` to numbers using the image's `/etc/passwd` and `/etc/group`.
/// `None` user means root (uid 0, gid 0).
pub fn resolve_user(
    user: Option<&str>,
    layers: &[PathBuf],
) -> Result<aos_sandbox::security::ImageUser, UserError> {
    let Some(user) = user else {
        return Ok(aos_sandbox::security::ImageUser {
            uid: Some(0),
            gid: Some(0),
        });
    };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = || image_file(layers, "etc/passwd").unwrap_or_default();
    let (uid, passwd_gid) = match u.parse::<u32>() {
        Ok(uid) => (uid, lookup_uid_gid(&passwd(), uid)),
        Err(_) => {
            let (uid, gid) =
                lookup_colon_file(&passwd(), u).ok_or_else(|| UserError::User(u.to_owned()))?;
            (uid, gid)
        }
    };
    let gid = match g {
        None => passwd_gid.or(Some(if uid == 0 { 0 } else { uid })),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => Some(gid),
            Err(_) => {
                let group = image_file(layers, "etc/group").unwrap_or_default();
                Some(
                    lookup_colon_file(&group, g)
                        .ok_or_else(|| UserError::Group(g.to_owned()))?
                        .0,
                )
            }
        },
    };
    Ok(aos_sandbox::security::ImageUser {
        uid: Some(uid),
        gid,
    })
}

fn lookup_uid_gid(passwd: &str, uid: u32) -> Option<u32> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[2].parse() == Ok(uid))
            .then(|| f[3].parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let top = dir.path().join("top");
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::create_dir_all(top.join("etc")).unwrap();
        std::fs::write(base.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        std::fs::write(
            top.join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\napp:x:1001:1002::/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(top.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let layers = vec![base, top];
        let r = |u: Option<&str>| resolve_user(u, &layers).map(|u| (u.uid, u.gid));
        assert_eq!(r(None), Ok((Some(0), Some(0))));
        assert_eq!(r(Some("app")), Ok((Some(1001), Some(1002))));
        assert_eq!(r(Some("1001")), Ok((Some(1001), Some(1002))));
        assert_eq!(r(Some("4242")), Ok((Some(4242), Some(4242))));
        assert_eq!(r(Some("app:staff")), Ok((Some(1001), Some(50))));
        assert_eq!(r(Some("5:6")), Ok((Some(5), Some(6))));
        assert_eq!(r(Some("ghost")), Err(UserError::User("ghost".into())));
        assert_eq!(
            r(Some("app:ghosts")),
            Err(UserError::Group("ghosts".into()))
        );
    }
}
