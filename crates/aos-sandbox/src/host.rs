//! The host kernel calls the sandbox layer makes outside libcontainer, behind a narrow trait.
//!
//! [`LinuxHost`] performs them; [`RecordingHost`] records them so that the logic that decides
//! *which* calls to make (pod namespaces, overlay mounts, cgroups, bridge and veth setup) is
//! unit-tested without root. Pass the one you want to the constructors (youki's `Syscall` and
//! `TestHelperSyscall` pattern).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// A failed host call.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A file system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{op} {target}: {errno}")]
    Sys {
        /// What was attempted.
        op: &'static str,
        /// On what.
        target: String,
        /// Why.
        errno: nix::Error,
    },
    /// A helper program failed.
    #[error("{program} {args}: {detail}")]
    Command {
        /// The program.
        program: String,
        /// Its arguments, joined.
        args: String,
        /// Exit status and stderr, or why it could not start.
        detail: String,
    },
    /// A namespace-creating thread panicked.
    #[error("namespace thread panicked")]
    ThreadPanicked,
}

impl HostError {
    /// The errno of a failed system call or file operation, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            HostError::Io { source, .. } => source.raw_os_error(),
            HostError::Sys { errno, .. } => Some(*errno as i32),
            _ => None,
        }
    }
}

/// Kinds of namespace a pod keeps as bind-mounted files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NsKind {
    /// Network.
    Net,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Hostname.
    Uts,
}

impl NsKind {
    /// The file name under `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
        }
    }

    fn clone_flag(self) -> CloneFlags {
        match self {
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }
}

/// The host calls, one method per operation.
pub trait Host: Send + Sync {
    /// `mount(2)`.
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), HostError>;
    /// Lazy `umount2(MNT_DETACH)`; not mounted is not an error.
    fn umount(&self, target: &Path) -> Result<(), HostError>;
    /// `mkdir -p`.
    fn create_dir_all(&self, path: &Path) -> Result<(), HostError>;
    /// `rmdir`; a missing directory is not an error.
    fn remove_dir(&self, path: &Path) -> Result<(), HostError>;
    /// `rm -r`; a missing path is not an error.
    fn remove_all(&self, path: &Path) -> Result<(), HostError>;
    /// Write a whole file (cgroup knobs, state).
    fn write_file(&self, path: &Path, contents: &str) -> Result<(), HostError>;
    /// Read a whole file.
    fn read_file(&self, path: &Path) -> Result<String, HostError>;
    /// Whether a path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Create new namespaces of these kinds, set the hostname in the new UTS namespace, and
    /// bind-mount each namespace onto its file (created empty), as `ip netns add` does. Nothing
    /// else enters the namespaces: they live as long as their bind mounts.
    fn create_namespaces(
        &self,
        files: &[(NsKind, PathBuf)],
        hostname: Option<&str>,
    ) -> Result<(), HostError>;
    /// Run a helper program to completion; its stdout on success.
    fn run(&self, program: &str, args: &[String]) -> Result<String, HostError>;
}

/// The real thing.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxHost;

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HostError {
    let path = path.to_path_buf();
    move |source| HostError::Io { op, path, source }
}

impl Host for LinuxHost {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), HostError> {
        nix::mount::mount(Some(source), target, fstype, flags, data).map_err(|errno| {
            HostError::Sys {
                op: "mount",
                target: target.display().to_string(),
                errno,
            }
        })
    }

    fn umount(&self, target: &Path) -> Result<(), HostError> {
        match nix::mount::umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
            Err(errno) => Err(HostError::Sys {
                op: "umount",
                target: target.display().to_string(),
                errno,
            }),
        }
    }

    fn create_dir_all(&self, path: &Path) -> Result<(), HostError> {
        fs::create_dir_all(path).map_err(io("mkdir", path))
    }

    fn remove_dir(&self, path: &Path) -> Result<(), HostError> {
        match fs::remove_dir(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(io("rmdir", path)),
        }
    }

    fn remove_all(&self, path: &Path) -> Result<(), HostError> {
        let r = match fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(e),
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
        };
        r.map_err(io("remove", path))
    }

    fn write_file(&self, path: &Path, contents: &str) -> Result<(), HostError> {
        fs::write(path, contents).map_err(io("write", path))
    }

    fn read_file(&self, path: &Path) -> Result<String, HostError> {
        fs::read_to_string(path).map_err(io("read", path))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_namespaces(
        &self,
        files: &[(NsKind, PathBuf)],
        hostname: Option<&str>,
    ) -> Result<(), HostError> {
        for (_, file) in files {
            fs::File::create(file).map_err(io("create", file))?;
        }
        let files = files.to_vec();
        let hostname = hostname.map(str::to_owned);
        // unshare(2) of net, ipc and uts namespaces acts on the calling thread only, so a
        // short-lived thread does it and the rest of the process is unaffected; the thread
        // exits right after the bind mounts pin the namespaces.
        std::thread::spawn(move || -> Result<(), HostError> {
            let flags = files
                .iter()
                .fold(CloneFlags::empty(), |f, (k, _)| f | k.clone_flag());
            nix::sched::unshare(flags).map_err(|errno| HostError::Sys {
                op: "unshare",
                target: format!("{flags:?}"),
                errno,
            })?;
            if let Some(h) = &hostname {
                nix::unistd::sethostname(h).map_err(|errno| HostError::Sys {
                    op: "sethostname",
                    target: h.clone(),
                    errno,
                })?;
            }
            let tid = nix::unistd::gettid();
            for (kind, file) in &files {
                let src = format!("/proc/self/task/{tid}/ns/{}", kind.proc_name());
                nix::mount::mount(
                    Some(src.as_str()),
                    file.as_path(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|errno| HostError::Sys {
                    op: "bind mount namespace",
                    target: file.display().to_string(),
                    errno,
                })?;
            }
            Ok(())
        })
        .join()
        .map_err(|_| HostError::ThreadPanicked)?
    }

    fn run(&self, program: &str, args: &[String]) -> Result<String, HostError> {
        let fail = |detail: String| HostError::Command {
            program: program.to_string(),
            args: args.join(" "),
            detail,
        };
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            return Err(fail(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `mount(source, target, fstype, flags, data)`.
    Mount {
        /// Source.
        source: String,
        /// Target.
        target: PathBuf,
        /// File system type.
        fstype: Option<String>,
        /// Flags.
        flags: MsFlags,
        /// Options.
        data: Option<String>,
    },
    /// `umount2(target, MNT_DETACH)`.
    Umount(PathBuf),
    /// `mkdir -p`.
    CreateDirAll(PathBuf),
    /// `rmdir`.
    RemoveDir(PathBuf),
    /// `rm -r`.
    RemoveAll(PathBuf),
    /// A file write.
    WriteFile(PathBuf, String),
    /// Namespace creation.
    CreateNamespaces(Vec<(NsKind, PathBuf)>, Option<String>),
    /// A helper program.
    Run(String, Vec<String>),
}

/// A fake [`Host`] that records calls, serves reads from a map, answers `exists` from the
/// same map plus the directories it was asked to create, and fails programs whose command line
/// starts with a configured prefix.
#[derive(Debug, Default)]
pub struct RecordingHost {
    calls: Mutex<Vec<Call>>,
    files: Mutex<HashMap<PathBuf, String>>,
    failing_commands: Mutex<Vec<String>>,
    failing_once: Mutex<Vec<String>>,
    outputs: Mutex<HashMap<String, String>>,
}

impl RecordingHost {
    /// An empty fake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve `contents` for reads of `path`.
    pub fn set_file(&self, path: impl Into<PathBuf>, contents: impl Into<String>) {
        self.files
            .lock()
            .expect("poisoned")
            .insert(path.into(), contents.into());
    }

    /// Make commands whose `program args...` line starts with `prefix` fail.
    pub fn fail_command(&self, prefix: impl Into<String>) {
        self.failing_commands
            .lock()
            .expect("poisoned")
            .push(prefix.into());
    }

    /// Make the next command whose `program args...` line starts with `prefix` fail, once.
    pub fn fail_command_once(&self, prefix: impl Into<String>) {
        self.failing_once
            .lock()
            .expect("poisoned")
            .push(prefix.into());
    }

    /// Answer commands whose `program args...` line equals `line` with `stdout`.
    pub fn set_output(&self, line: impl Into<String>, stdout: impl Into<String>) {
        self.outputs
            .lock()
            .expect("poisoned")
            .insert(line.into(), stdout.into());
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("poisoned").clone()
    }

    /// The helper command lines so far, `program arg arg...`.
    pub fn commands(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Run(p, a) => Some(std::iter::once(p).chain(a).collect::<Vec<_>>().join(" ")),
                _ => None,
            })
            .collect()
    }

    fn record(&self, c: Call) {
        self.calls.lock().expect("poisoned").push(c);
    }
}

impl Host for RecordingHost {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), HostError> {
        self.record(Call::Mount {
            source: source.to_string(),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_owned),
            flags,
            data: data.map(str::to_owned),
        });
        Ok(())
    }

    fn umount(&self, target: &Path) -> Result<(), HostError> {
        self.record(Call::Umount(target.to_path_buf()));
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> Result<(), HostError> {
        self.record(Call::CreateDirAll(path.to_path_buf()));
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> Result<(), HostError> {
        self.record(Call::RemoveDir(path.to_path_buf()));
        Ok(())
    }

    fn remove_all(&self, path: &Path) -> Result<(), HostError> {
        self.record(Call::RemoveAll(path.to_path_buf()));
        self.files.lock().expect("poisoned").remove(path);
        Ok(())
    }

    fn write_file(&self, path: &Path, contents: &str) -> Result<(), HostError> {
        self.record(Call::WriteFile(path.to_path_buf(), contents.to_string()));
        self.files
            .lock()
            .expect("poisoned")
            .insert(path.to_path_buf(), contents.to_string());
        Ok(())
    }

    fn read_file(&self, path: &Path) -> Result<String, HostError> {
        self.files
            .lock()
            .expect("poisoned")
            .get(path)
            .cloned()
            .ok_or_else(|| HostError::Io {
                op: "read",
                path: path.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
    }

    fn exists(&self, path: &Path) -> bool {
        self.files.lock().expect("poisoned").contains_key(path)
            || self
                .calls()
                .iter()
                .any(|c| matches!(c, Call::CreateDirAll(p) if p == path))
    }

    fn create_namespaces(
        &self,
        files: &[(NsKind, PathBuf)],
        hostname: Option<&str>,
    ) -> Result<(), HostError> {
        self.record(Call::CreateNamespaces(
            files.to_vec(),
            hostname.map(str::to_owned),
        ));
        Ok(())
    }

    fn run(&self, program: &str, args: &[String]) -> Result<String, HostError> {
        self.record(Call::Run(program.to_string(), args.to_vec()));
        let line = std::iter::once(program.to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let once = {
            let mut once = self.failing_once.lock().expect("poisoned");
            match once.iter().position(|p| line.starts_with(p)) {
                Some(i) => {
                    once.remove(i);
                    true
                }
                None => false,
            }
        };
        if once
            || self
                .failing_commands
                .lock()
                .expect("poisoned")
                .iter()
                .any(|p| line.starts_with(p))
        {
            return Err(HostError::Command {
                program: program.to_string(),
                args: args.join(" "),
                detail: "exit status: 2: injected failure".into(),
            });
        }
        Ok(self
            .outputs
            .lock()
            .expect("poisoned")
            .get(&line)
            .cloned()
            .unwrap_or_default())
    }
}
