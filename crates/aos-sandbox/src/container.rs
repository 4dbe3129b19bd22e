//! Starting, signalling, waiting for and removing containers through youki's libcontainer.
//!
//! **Fork safety.** [`Runtime::start`] forks (libcontainer clones the container's intermediate
//! and init processes). Call it only from a single-threaded process, the per-pod shim: a child
//! forked from a multi-threaded process (a tokio runtime) may inherit a lock another thread held
//! and deadlock. The started container is a child of the caller, which must reap it
//! ([`Handle::wait`]).

use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::cgroup::{self, CgroupError, CgroupVersion};
use crate::executor::SandboxExecutor;
use crate::host::{Host, HostError};
use crate::oci::{self, CapabilityPlan, OciError};
use crate::rootfs::{self, RootfsError};
use crate::seccomp::{CompiledFilter, Policy, ResolveContext, SeccompError};
use crate::spec::{ExitStatus, ProcessSpec, SandboxSpec, SpecError};

/// Errors of the container runtime.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec is malformed.
    #[error("invalid sandbox spec: {0}")]
    Spec(#[from] SpecError),
    /// The seccomp profile could not be loaded or compiled.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// The OCI spec could not be built.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// The root file system could not be prepared.
    #[error("root file system: {0}")]
    Rootfs(#[from] RootfsError),
    /// A cgroup operation failed.
    #[error("cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    /// A host call failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A file could not be opened or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// libcontainer failed.
    #[error("libcontainer: {op}: {source}")]
    Libcontainer {
        /// The operation.
        op: &'static str,
        /// Its error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `waitpid` or `kill` failed.
    #[error("{op} pid {pid}: {errno}")]
    Process {
        /// The operation.
        op: &'static str,
        /// The container's init pid.
        pid: i32,
        /// Why.
        errno: nix::Error,
    },
    /// An unknown signal number.
    #[error("invalid signal {0}")]
    InvalidSignal(i32),
    /// An exec into a container that has exited.
    #[error("container {0} is not running")]
    NotRunning(String),
}

fn lc(op: &'static str) -> impl FnOnce(libcontainer::error::LibcontainerError) -> SandboxError {
    move |e| SandboxError::Libcontainer {
        op,
        source: Box::new(e),
    }
}

/// Starts containers; owns libcontainer's state directory.
#[derive(Clone)]
pub struct Runtime {
    state_root: PathBuf,
    host: Arc<dyn Host>,
    cgroup_version: CgroupVersion,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("state_root", &self.state_root)
            .field("cgroup_version", &self.cgroup_version)
            .finish()
    }
}

impl Runtime {
    /// A runtime keeping libcontainer's state under `state_root` (for example
    /// `DATA_DIR/run/containers`).
    pub fn new(state_root: impl Into<PathBuf>, host: Arc<dyn Host>) -> Self {
        Self {
            state_root: state_root.into(),
            host,
            cgroup_version: cgroup::detect_version(),
        }
    }

    /// The cgroup hierarchy in use.
    pub fn cgroup_version(&self) -> CgroupVersion {
        self.cgroup_version
    }

    /// Create and start a container; returns once its process is running.
    ///
    /// Must be called from a single-threaded process (see the module docs).
    pub fn start(&self, spec: &SandboxSpec) -> Result<Handle, SandboxError> {
        spec.validate()?;
        let capabilities: Vec<String> = if spec.privileged {
            crate::caps::all()
        } else {
            let mut c: Vec<String> = spec
                .process
                .capabilities
                .iter()
                .filter_map(|c| crate::caps::canonical(c))
                .collect();
            c.sort();
            c.dedup();
            c
        };
        let filter =
            Policy::for_profile(&spec.process.seccomp, &ResolveContext::new(&capabilities))?
                .map(|p| p.compile())
                .transpose()?;
        let plan = CapabilityPlan::new(capabilities, filter.is_some(), spec.process.no_new_privs);
        let temporary: Vec<caps::Capability> = plan
            .temporary
            .iter()
            .filter_map(|c| crate::caps::parse(c))
            .collect();
        let exec = ExecContext {
            filter: filter.clone(),
            temporary: temporary.clone(),
            process: spec.process.clone(),
        };

        let bundle = &spec.bundle_dir;
        std::fs::create_dir_all(bundle).map_err(|source| SandboxError::Io {
            what: "create bundle",
            path: bundle.clone(),
            source,
        })?;
        let root = rootfs::prepare(self.host.as_ref(), &spec.rootfs, bundle)?;
        let cgroup_path = format!(
            "{}/{}",
            spec.cgroup.parent_path().trim_end_matches('/'),
            spec.id
        );

        let started = (|| {
            let oci = oci::build(spec, &root, &cgroup_path, &plan)?;
            let config = bundle.join("config.json");
            oci.save(&config).map_err(|e| SandboxError::Io {
                what: "write",
                path: config.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            let stdin = open_null()?;
            let stdout = open_log(spec.stdout.as_deref())?;
            let stderr = open_log(spec.stderr.as_deref())?;
            let mut container = ContainerBuilder::new(spec.id.clone(), SyscallType::Linux)
                .with_root_path(&self.state_root)
                .map_err(lc("state root"))?
                .with_executor(SandboxExecutor::new(filter, temporary))
                .with_stdin(stdin)
                .with_stdout(stdout)
                .with_stderr(stderr)
                .validate_id()
                .map_err(lc("container id"))?
                .as_init(bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
                .map_err(lc("create"))?;
            let pid = container.pid().map(|p| p.as_raw()).unwrap_or_default();
            if let Err(e) = container.start() {
                let _ = container.delete(true);
                return Err(lc("start")(e));
            }
            Ok(pid)
        })();
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => {
                if let Err(undo) = rootfs::release(self.host.as_ref(), &spec.rootfs, bundle) {
                    tracing::warn!(error = %undo, "releasing root file system after a failed start");
                }
                return Err(e);
            }
        };
        tracing::info!(id = %spec.id, pid, cgroup = %cgroup_path, "container started");
        Ok(Handle {
            id: spec.id.clone(),
            pid,
            cgroup_path,
            state_root: self.state_root.clone(),
            bundle: bundle.clone(),
            rootfs: spec.rootfs.clone(),
            host: self.host.clone(),
            cgroup_version: self.cgroup_version,
            exit: Mutex::new(None),
            exec,
        })
    }
}

fn open_null() -> Result<File, SandboxError> {
    File::open("/dev/null").map_err(|source| SandboxError::Io {
        what: "open",
        path: "/dev/null".into(),
        source,
    })
}

fn open_log(path: Option<&Path>) -> Result<File, SandboxError> {
    let path = path.unwrap_or(Path::new("/dev/null"));
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| SandboxError::Io {
            what: "open",
            path: path.to_path_buf(),
            source,
        })
}

/// A started container.
pub struct Handle {
    id: String,
    pid: i32,
    cgroup_path: String,
    state_root: PathBuf,
    bundle: PathBuf,
    rootfs: crate::spec::RootfsSpec,
    host: Arc<dyn Host>,
    cgroup_version: CgroupVersion,
    exit: Mutex<Option<ExitStatus>>,
    exec: ExecContext,
}

/// What a process run in the container inherits besides the OCI spec: the seccomp filter, the
/// capabilities the init drops after installing it, and the container's user and directory.
struct ExecContext {
    filter: Option<CompiledFilter>,
    temporary: Vec<caps::Capability>,
    process: ProcessSpec,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .field("cgroup_path", &self.cgroup_path)
            .finish()
    }
}

impl Handle {
    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's init process, as seen from the host.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The container's cgroup path (relative to each hierarchy's root).
    pub fn cgroup_path(&self) -> &str {
        &self.cgroup_path
    }

    /// Send `signal` to the container's init. `SIGKILL` ends the whole container: the init of
    /// a pid namespace takes every process of it down.
    pub fn kill(&self, signal: i32) -> Result<(), SandboxError> {
        let sig = Signal::try_from(signal).map_err(|_| SandboxError::InvalidSignal(signal))?;
        match nix::sys::signal::kill(Pid::from_raw(self.pid), sig) {
            Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
            Err(errno) => Err(SandboxError::Process {
                op: "kill",
                pid: self.pid,
                errno,
            }),
        }
    }

    /// Start `args` inside the running container, as `kubectl exec` (and the kubelet's exec
    /// probes and hooks) do: it joins the container's namespaces and cgroup (libcontainer's
    /// tenant builder, `setns` into the init's namespaces), and runs as the container's process
    /// does: the same uid, gid and supplementary groups, capabilities, `no_new_privs`, seccomp
    /// filter, environment and working directory. Its stdin is `/dev/null`; stdout and stderr
    /// both go to `output`.
    ///
    /// Returns the process's pid (host view) once it has executed `args[0]`; the process is a
    /// child of the caller, which must reap it (`waitpid`). It leads its own session and process
    /// group (libcontainer's init calls `setsid`), so `kill(-pid, ...)` reaches what it forked.
    ///
    /// Like [`Runtime::start`], this forks: call it only from a single-threaded process.
    pub fn exec(&self, args: &[String], output: OwnedFd) -> Result<i32, SandboxError> {
        if args.is_empty() {
            return Err(SpecError::EmptyArgs.into());
        }
        if self
            .exit
            .lock()
            .expect("exit status lock poisoned")
            .is_some()
        {
            return Err(SandboxError::NotRunning(self.id.clone()));
        }
        let stdin = open_null()?;
        let stderr = output.try_clone().map_err(|source| SandboxError::Io {
            what: "duplicate exec output",
            path: self.bundle.clone(),
            source,
        })?;
        // The pid lands here before the process is told to go on, so that a failed exec's
        // process can still be found, killed and reaped.
        let pid_file = self.bundle.join("exec.pid");
        let _ = std::fs::remove_file(&pid_file);
        let p = &self.exec.process;
        let built = (|| {
            ContainerBuilder::new(self.id.clone(), SyscallType::Linux)
                .with_root_path(&self.state_root)
                .map_err(lc("state root"))?
                .with_pid_file(Some(&pid_file))
                .map_err(lc("pid file"))?
                .with_executor(SandboxExecutor::new(
                    self.exec.filter.clone(),
                    self.exec.temporary.clone(),
                ))
                .with_stdin(stdin)
                .with_stdout(output)
                .with_stderr(stderr)
                .as_tenant()
                .with_container_args(args.to_vec())
                .with_cwd(Some(&p.cwd))
                .with_user(Some(p.uid))
                .with_group(Some(p.gid))
                .with_additional_gids(p.supplemental_groups.clone())
                .with_no_new_privs(p.no_new_privs)
                .with_detach(true)
                .build()
                .map_err(lc("exec"))
        })();
        // libcontainer leaves the tenant's notify socket behind in the state directory; one
        // exec at a time (the caller is single-threaded), so every such socket is finished.
        remove_tenant_sockets(&self.state_root.join(&self.id));
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let _ = std::fs::remove_file(&pid_file);
        match built {
            Ok(p) => Ok(p.as_raw()),
            Err(e) => {
                if let Some(pid) = pid {
                    // It failed before or at execve: make sure it is gone, and reap it.
                    let pid = Pid::from_raw(pid);
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                }
                Err(e)
            }
        }
    }

    /// Block until the container's init exits; the status is kept for later calls.
    pub fn wait(&self) -> Result<ExitStatus, SandboxError> {
        self.wait_with(None)
    }

    /// The exit status if the container has exited, without blocking.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>, SandboxError> {
        match self.wait_with(Some(WaitPidFlag::WNOHANG)) {
            Ok(s) => Ok(Some(s)),
            Err(SandboxError::Process {
                errno: nix::Error::EAGAIN,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn wait_with(&self, flags: Option<WaitPidFlag>) -> Result<ExitStatus, SandboxError> {
        let mut exit = self.exit.lock().expect("exit status lock poisoned");
        if let Some(s) = *exit {
            return Ok(s);
        }
        let (code, signal) = loop {
            match waitpid(Pid::from_raw(self.pid), flags) {
                Ok(WaitStatus::Exited(_, code)) => break (code, None),
                Ok(WaitStatus::Signaled(_, sig, _)) => break (128 + sig as i32, Some(sig as i32)),
                Ok(WaitStatus::StillAlive) => {
                    return Err(SandboxError::Process {
                        op: "waitpid",
                        pid: self.pid,
                        errno: nix::Error::EAGAIN,
                    });
                }
                Ok(_) | Err(nix::Error::EINTR) => continue,
                Err(errno) => {
                    return Err(SandboxError::Process {
                        op: "waitpid",
                        pid: self.pid,
                        errno,
                    });
                }
            }
        };
        let oom_killed =
            match cgroup::oom_killed(self.host.as_ref(), self.cgroup_version, &self.cgroup_path) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(id = %self.id, error = %e, "cannot read OOM status");
                    false
                }
            };
        let status = ExitStatus {
            code,
            signal,
            oom_killed,
        };
        tracing::info!(id = %self.id, code, ?signal, oom_killed, "container exited");
        *exit = Some(status);
        Ok(status)
    }

    /// Remove the container: kill what is left, delete its cgroup and libcontainer state, and
    /// unmount its root file system. Reaps the init if nobody waited for it.
    pub fn cleanup(self) -> Result<(), SandboxError> {
        let state_dir = self.state_root.join(&self.id);
        if state_dir.exists() {
            let mut container = Container::load(state_dir).map_err(lc("load"))?;
            container.delete(true).map_err(lc("delete"))?;
        }
        if self
            .exit
            .lock()
            .expect("exit status lock poisoned")
            .is_none()
        {
            // delete(force) killed it; collect the zombie.
            let _ = self.wait();
        }
        rootfs::release(self.host.as_ref(), &self.rootfs, &self.bundle)?;
        let config = self.bundle.join("config.json");
        self.host.remove_all(&config)?;
        Ok(())
    }
}

/// Remove the notify sockets libcontainer's tenant builder leaves in a container's state
/// directory (`tenant-notify-<random>.sock`, one per exec).
fn remove_tenant_sockets(state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("tenant-notify-") && name.ends_with(".sock") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
