//! Safe extraction of layer tars into a directory.
//!
//! Nothing in a layer may write outside the root: entries with `..` or an absolute path are
//! refused, as is any entry whose path passes through a symlink (extraction never follows a
//! symlink when writing), and hard links may only point at files inside the root. Whiteouts are
//! either turned into overlayfs markers (a 0/0 character device for `.wh.NAME`, the
//! `trusted.overlay.opaque` xattr for `.wh..wh..opq`), so the directory can be an overlay
//! lowerdir, or applied, when layers are flattened into one tree.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tar::EntryType;

/// Why a layer could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry would land outside the root.
    #[error("layer entry {path:?} escapes the root: {reason}")]
    Escape {
        /// The entry's path as written in the tar.
        path: String,
        /// Why it escapes.
        reason: &'static str,
    },
    /// The tar stream is malformed or ends early.
    #[error("layer tar is malformed or truncated: {0}")]
    Tar(#[source] io::Error),
    /// An entry's data ended before its declared size.
    #[error("layer tar is truncated in entry {0:?}")]
    Truncated(String),
    /// A filesystem operation failed.
    #[error("cannot extract {path}: {source}")]
    Io {
        /// The path being written.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// What to do with whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Keep them as overlayfs markers (for a layer cache used as overlay lowerdirs).
    Overlay,
    /// Apply them: delete what they hide (for flattening layers into one tree, in order).
    Apply,
}

/// What extracting one layer did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Entries written.
    pub entries: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    /// Entries skipped (device nodes when not permitted, unknown types).
    pub skipped: u64,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Splits a tar path into clean components, refusing `..` and absolute paths.
fn clean_components(raw: &[u8]) -> Result<Vec<&OsStr>, UnpackError> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.first() == Some(&b'/') {
        return Err(UnpackError::Escape {
            path: shown(),
            reason: "absolute path",
        });
    }
    let mut out = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(UnpackError::Escape {
                    path: shown(),
                    reason: "path contains ..",
                });
            }
            p => out.push(OsStr::from_bytes(p)),
        }
    }
    Ok(out)
}

struct Extractor<'a> {
    root: &'a Path,
    whiteouts: Whiteouts,
    /// Directories to chmod/utime after all entries are written (deepest last in the vector).
    dirs: Vec<(PathBuf, u32, u64)>,
    /// Paths this layer wrote, for opaque whiteouts in Apply mode.
    written: HashSet<PathBuf>,
    stats: UnpackStats,
    can_chown: bool,
}

/// Extracts a plain (already decompressed) layer tar into `root`, which must exist.
pub fn extract_layer<R: Read>(
    reader: R,
    root: &Path,
    whiteouts: Whiteouts,
) -> Result<UnpackStats, UnpackError> {
    let mut ex = Extractor {
        root,
        whiteouts,
        dirs: Vec::new(),
        written: HashSet::new(),
        stats: UnpackStats::default(),
        can_chown: rustix::process::geteuid().is_root(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(UnpackError::Tar)? {
        let entry = entry.map_err(UnpackError::Tar)?;
        ex.entry(entry)?;
    }
    // Directory modes last, so a read-only directory can still be filled; deepest first.
    ex.dirs
        .sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
    for (path, mode, mtime) in std::mem::take(&mut ex.dirs) {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_err(&path))?;
        set_mtime(&path, mtime).map_err(io_err(&path))?;
    }
    Ok(ex.stats)
}

/// Checks a layer tar without extracting it: the same path rules as [`extract_layer`] (no `..`,
/// no absolute paths, nothing through a symlink the layer made, hard links inside the root).
pub fn check_layer<R: Read>(entries: tar::Entries<'_, R>) -> Result<u64, UnpackError> {
    let mut symlinks: HashSet<Vec<u8>> = HashSet::new();
    let mut count = 0;
    for entry in entries {
        let entry = entry.map_err(UnpackError::Tar)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let comps = clean_components(&raw)?;
        let mut prefix = Vec::new();
        for (i, c) in comps.iter().enumerate() {
            if i > 0 {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(c.as_bytes());
            if i + 1 < comps.len() && symlinks.contains(&prefix) {
                return Err(UnpackError::Escape {
                    path: shown,
                    reason: "path goes through a symlink (extraction never follows symlinks)",
                });
            }
        }
        if kind == EntryType::Symlink {
            symlinks.insert(prefix);
        } else {
            symlinks.remove(&prefix);
            if kind == EntryType::Link {
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                let t = clean_components(&target).map_err(|_| UnpackError::Escape {
                    path: shown.clone(),
                    reason: "hard link target leaves the root",
                })?;
                if t.is_empty() {
                    return Err(UnpackError::Escape {
                        path: shown,
                        reason: "hard link to the root",
                    });
                }
            }
        }
        count += 1;
    }
    Ok(count)
}

fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let f = File::open(path)?;
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
}

impl Extractor<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let comps = clean_components(&raw_path)?;
        let Some((name, parents)) = comps.split_last() else {
            // The root itself ("./"): take its mode if it is a directory.
            return Ok(());
        };
        let parent = self.ensure_parents(parents, &shown)?;
        let name_str = name.to_string_lossy();

        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(&parent, hidden, name, &shown);
        }

        let path = parent.join(name);
        let header = entry.header();
        let mode = header.mode().map_err(UnpackError::Tar)? & 0o7777;
        // Some writers leave uid/gid empty; that means root.
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);
        let major = header.device_major().ok().flatten().unwrap_or(0);
        let minor = header.device_minor().ok().flatten().unwrap_or(0);
        let xattrs = pax_xattrs(&mut entry)?;

        match kind {
            EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_any(&path)?;
                        fs::create_dir(&path).map_err(io_err(&path))?;
                    }
                    Err(_) => fs::create_dir(&path).map_err(io_err(&path))?,
                }
                // Writable by us until the end, then the real mode.
                fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
                    .map_err(io_err(&path))?;
                self.chown(&path, uid, gid)?;
                self.dirs.push((path.clone(), mode, mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                remove_any(&path)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)
                    .map_err(io_err(&path))?;
                let size = entry.size();
                let n = io::copy(&mut entry, &mut file).map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => UnpackError::Truncated(shown.clone()),
                    _ => UnpackError::Io {
                        path: path.clone(),
                        source: e,
                    },
                })?;
                if n != size {
                    return Err(UnpackError::Truncated(shown));
                }
                self.stats.bytes += n;
                self.chown(&path, uid, gid)?;
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io_err(&path))?;
                file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
                    .map_err(io_err(&path))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                remove_any(&path)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(io_err(&path))?;
                self.chown(&path, uid, gid)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                let tcomps = clean_components(&target).map_err(|_| UnpackError::Escape {
                    path: shown.clone(),
                    reason: "hard link target leaves the root",
                })?;
                let target_path = self.existing_inside(&tcomps, &shown)?;
                remove_any(&path)?;
                fs::hard_link(&target_path, &path).map_err(io_err(&path))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => rustix::fs::FileType::CharacterDevice,
                    EntryType::Block => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                remove_any(&path)?;
                let dev = rustix::fs::makedev(major, minor);
                match rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &path,
                    file_type,
                    rustix::fs::Mode::from_bits_truncate(mode),
                    dev,
                ) {
                    Ok(()) => self.chown(&path, uid, gid)?,
                    Err(e) if e == rustix::io::Errno::PERM => {
                        tracing::debug!(path = %shown, "skipping a device node: not permitted");
                        self.stats.skipped += 1;
                        return Ok(());
                    }
                    Err(e) => {
                        return Err(UnpackError::Io {
                            path,
                            source: e.into(),
                        });
                    }
                }
            }
            other => {
                tracing::warn!(path = %shown, kind = ?other, "skipping a layer entry of an unsupported type");
                self.stats.skipped += 1;
                return Ok(());
            }
        }
        if self.can_chown {
            for (k, v) in xattrs {
                if let Err(e) =
                    rustix::fs::lsetxattr(&path, k.as_str(), &v, rustix::fs::XattrFlags::empty())
                {
                    tracing::debug!(path = %shown, xattr = %k, error = %e, "cannot set an extended attribute");
                }
            }
        }
        self.written.insert(path);
        self.stats.entries += 1;
        Ok(())
    }

    fn chown(&self, path: &Path, uid: u64, gid: u64) -> Result<(), UnpackError> {
        if !self.can_chown {
            return Ok(());
        }
        let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Err(UnpackError::Io {
                path: path.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidData, "uid or gid out of range"),
            });
        };
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_err(path))
    }

    /// Makes sure every parent exists as a real directory (never a symlink) and returns the last.
    fn ensure_parents(&mut self, parents: &[&OsStr], shown: &str) -> Result<PathBuf, UnpackError> {
        let mut cur = self.root.to_path_buf();
        for part in parents {
            cur.push(part);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::Escape {
                        path: shown.to_owned(),
                        reason: "path goes through a symlink (extraction never follows symlinks)",
                    });
                }
                Ok(_) => {
                    if self.whiteouts == Whiteouts::Apply {
                        remove_any(&cur)?;
                        fs::create_dir(&cur).map_err(io_err(&cur))?;
                    } else {
                        return Err(UnpackError::Io {
                            path: cur,
                            source: io::Error::new(
                                io::ErrorKind::NotADirectory,
                                "a parent of a layer entry is not a directory",
                            ),
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).map_err(io_err(&cur))?;
                    fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                        .map_err(io_err(&cur))?;
                }
                Err(e) => {
                    return Err(UnpackError::Io {
                        path: cur,
                        source: e,
                    });
                }
            }
        }
        Ok(cur)
    }

    /// The path of an existing non-directory inside the root reached without symlinks.
    fn existing_inside(&self, comps: &[&OsStr], shown: &str) -> Result<PathBuf, UnpackError> {
        let escape = |reason| UnpackError::Escape {
            path: shown.to_owned(),
            reason,
        };
        let Some((last, parents)) = comps.split_last() else {
            return Err(escape("hard link to the root"));
        };
        let mut cur = self.root.to_path_buf();
        for part in parents {
            cur.push(part);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                _ => return Err(escape("hard link target is not inside the root")),
            }
        }
        cur.push(last);
        match fs::symlink_metadata(&cur) {
            Ok(m) if !m.is_dir() => Ok(cur),
            Ok(_) => Err(escape("hard link to a directory")),
            Err(_) => Err(escape("hard link target does not exist in the layer")),
        }
    }

    fn whiteout(
        &mut self,
        parent: &Path,
        hidden: &str,
        name: &OsStr,
        shown: &str,
    ) -> Result<(), UnpackError> {
        if name == OPAQUE {
            match self.whiteouts {
                Whiteouts::Apply => {
                    for child in fs::read_dir(parent).map_err(io_err(parent))? {
                        let child = child.map_err(io_err(parent))?.path();
                        if !self.written.contains(&child) {
                            remove_any(&child)?;
                        }
                    }
                }
                Whiteouts::Overlay => {
                    if let Err(e) = rustix::fs::lsetxattr(
                        parent,
                        "trusted.overlay.opaque",
                        b"y",
                        rustix::fs::XattrFlags::empty(),
                    ) {
                        tracing::debug!(path = %shown, error = %e, "cannot set trusted.overlay.opaque: keeping the .wh..wh..opq file");
                        let marker = parent.join(name);
                        File::create(&marker).map_err(io_err(&marker))?;
                    }
                }
            }
            self.stats.entries += 1;
            return Ok(());
        }
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
            return Err(UnpackError::Escape {
                path: shown.to_owned(),
                reason: "malformed whiteout",
            });
        }
        let target = parent.join(hidden);
        remove_any(&target)?;
        if self.whiteouts == Whiteouts::Overlay {
            let dev = rustix::fs::makedev(0, 0);
            match rustix::fs::mknodat(
                rustix::fs::CWD,
                &target,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::empty(),
                dev,
            ) {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(path = %shown, error = %e, "cannot create an overlay whiteout device: keeping the .wh. file");
                    let marker = parent.join(name);
                    File::create(&marker).map_err(io_err(&marker))?;
                }
            }
        }
        self.stats.entries += 1;
        Ok(())
    }
}

fn pax_xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<Vec<(String, Vec<u8>)>, UnpackError> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(UnpackError::Tar)? {
        for ext in exts {
            let ext = ext.map_err(UnpackError::Tar)?;
            if let Ok(key) = ext.key()
                && let Some(name) = key.strip_prefix("SCHILY.xattr.")
            {
                out.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Removes whatever is at `path` (file, symlink, or directory tree); absent is fine.
fn remove_any(path: &Path) -> Result<(), UnpackError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path),
        Ok(_) => fs::remove_file(path).map_err(io_err(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(UnpackError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

/// Removes a directory tree, making read-only directories writable first.
pub(crate) fn remove_tree(path: &Path) -> Result<(), UnpackError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(path);
            fs::remove_dir_all(path).map_err(io_err(path))
        }
    }
}

fn make_writable(path: &Path) {
    if let Ok(m) = fs::symlink_metadata(path)
        && m.is_dir()
    {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(path) {
            for e in rd.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Spec<'a> = (&'a str, EntryType, &'a [u8], Option<&'a str>);

    fn tar_of(entries: &[Spec<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_size(data.len() as u64);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            // Bypass the tar crate's own path checks: a hostile layer is written by hand.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn extract(
        entries: &[(&str, EntryType, &[u8], Option<&str>)],
        mode: Whiteouts,
    ) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let r = extract_layer(&tar_of(entries)[..], &root, mode);
        (dir, r)
    }

    #[test]
    fn extracts_files_dirs_links() {
        let (dir, r) = extract(
            &[
                ("app/", EntryType::Directory, b"", None),
                ("app/bin", EntryType::Regular, b"hello", None),
                ("app/link", EntryType::Symlink, b"", Some("/etc/passwd")),
                ("app/hard", EntryType::Link, b"", Some("app/bin")),
            ],
            Whiteouts::Overlay,
        );
        r.unwrap();
        let root = dir.path().join("root");
        assert_eq!(fs::read(root.join("app/bin")).unwrap(), b"hello");
        assert_eq!(fs::read(root.join("app/hard")).unwrap(), b"hello");
        assert_eq!(
            fs::read_link(root.join("app/link")).unwrap(),
            Path::new("/etc/passwd")
        );
    }

    #[test]
    fn refuses_escapes() {
        let cases: Vec<Vec<Spec<'_>>> = vec![
            vec![("../evil", EntryType::Regular, b"x", None)],
            vec![("a/../../evil", EntryType::Regular, b"x", None)],
            vec![("/etc/evil", EntryType::Regular, b"x", None)],
            vec![
                ("a", EntryType::Symlink, b"", Some("/")),
                ("a/etc/passwd", EntryType::Regular, b"x", None),
            ],
            vec![
                ("a", EntryType::Symlink, b"", Some("..")),
                ("a/evil", EntryType::Regular, b"x", None),
            ],
            vec![("h", EntryType::Link, b"", Some("../../etc/passwd"))],
            vec![("h", EntryType::Link, b"", Some("/etc/passwd"))],
        ];
        for entries in cases {
            let (dir, r) = extract(&entries, Whiteouts::Overlay);
            let err = r.unwrap_err();
            assert!(
                matches!(err, UnpackError::Escape { .. }),
                "{entries:?}: {err}"
            );
            assert!(!dir.path().join("evil").exists());
            assert!(!dir.path().join("etc").exists());
        }
    }

    #[test]
    fn whiteouts_apply_and_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        extract_layer(
            &tar_of(&[
                ("d/", EntryType::Directory, b"", None),
                ("d/old", EntryType::Regular, b"1", None),
                ("gone", EntryType::Regular, b"1", None),
            ])[..],
            root,
            Whiteouts::Apply,
        )
        .unwrap();
        extract_layer(
            &tar_of(&[
                ("d/", EntryType::Directory, b"", None),
                ("d/.wh..wh..opq", EntryType::Regular, b"", None),
                ("d/new", EntryType::Regular, b"2", None),
                (".wh.gone", EntryType::Regular, b"", None),
            ])[..],
            root,
            Whiteouts::Apply,
        )
        .unwrap();
        assert!(!root.join("d/old").exists());
        assert!(root.join("d/new").exists());
        assert!(!root.join("gone").exists());
        assert!(!root.join(".wh.gone").exists());

        let (dir2, r) = extract(
            &[(".wh.gone", EntryType::Regular, b"", None)],
            Whiteouts::Overlay,
        );
        r.unwrap();
        let root2 = dir2.path().join("root");
        let marker =
            fs::symlink_metadata(root2.join("gone")).is_ok() || root2.join(".wh.gone").exists();
        assert!(marker, "a whiteout marker is kept");
    }
}
