//! The per-pod shim: a single-threaded process (the `aos` binary re-executed as `aos shim
//! CONFIG.json`, or `aos-node-shim`) that owns one pod's sandbox and containers.
//!
//! Container start forks (libcontainer), which is only safe from a single-threaded process;
//! the shim is that process. Its containers are its children: it reaps them, records how
//! they ended, copies their output into CRI log files, and keeps running when the agent
//! restarts, so containers outlive the agent and are adopted, never duplicated. The protocol
//! is in [`protocol`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, Read as _, Write as _};
use std::os::fd::AsFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_sandbox::cgroup::{self, PodCgroup};
use aos_sandbox::host::{Host, LinuxHost, NsKind};
use aos_sandbox::netns::PodNamespaces;
use aos_sandbox::network::{Network, NetworkConfig};
use aos_sandbox::{ExitStatus, Handle, Runtime};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::logs::{LogWriter, Stream2};
use crate::runtime::{ContainerInfo, ContainerRequest, Sandbox, SandboxConfig};

pub mod protocol;

use protocol::{EXEC_OUTPUT_LIMIT, ExecResult, Request, Response, ShimConfig};

/// How long a poll waits at most: the reaping latency.
const TICK: Duration = Duration::from_millis(50);

/// A container's record file.
pub fn record_path(pod_dir: &Path, id: &str) -> PathBuf {
    pod_dir.join("containers").join(id).join("info.json")
}

/// Read every container record of a pod (for an agent whose shim is gone).
pub fn read_records(pod_dir: &Path) -> Vec<ContainerInfo> {
    let mut out: Vec<ContainerInfo> = std::fs::read_dir(pod_dir.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("info.json")).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    out.sort_by(|a, b| (a.name.as_str(), a.attempt).cmp(&(b.name.as_str(), b.attempt)));
    out
}

fn write_record(pod_dir: &Path, info: &ContainerInfo) -> std::io::Result<()> {
    let path = record_path(pod_dir, &info.id);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(info).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

struct Entry {
    info: ContainerInfo,
    handle: Option<Handle>,
    outputs: [Option<File>; 2],
    log: Option<LogWriter>,
}

struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

/// What a polled descriptor belongs to.
enum Slot {
    Listener,
    Conn(usize),
    Waiter(usize),
    Output(String, usize),
    ExecClient(usize),
    ExecOutput(usize),
}

/// A command running in a container for a client that waits for its end.
struct ExecRun {
    container: String,
    pid: i32,
    /// The connection to answer; `None` once the client hung up.
    client: Option<UnixStream>,
    /// The read end of the command's stdout and stderr.
    output: Option<File>,
    buf: Vec<u8>,
    deadline: Instant,
    timed_out: bool,
    killed: bool,
}

impl ExecRun {
    /// Read what the command wrote; keep the first [`EXEC_OUTPUT_LIMIT`] bytes, drop the rest
    /// (reading on, so that a chatty command never blocks on a full pipe).
    fn drain(&mut self) {
        let mut chunk = [0u8; 8192];
        loop {
            let Some(f) = self.output.as_mut() else {
                return;
            };
            match f.read(&mut chunk) {
                Ok(0) => {
                    self.output = None;
                    return;
                }
                Ok(n) => {
                    let room = EXEC_OUTPUT_LIMIT.saturating_sub(self.buf.len());
                    self.buf.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.output = None;
                    return;
                }
            }
        }
    }

    /// A client that went away does not wait any more: its command is killed.
    fn check_client(&mut self) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        let mut b = [0u8; 64];
        match c.read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(n) if n > 0 => {}
            _ => {
                tracing::debug!(container = %self.container, pid = self.pid, "exec client went away; killing the command");
                self.client = None;
                self.kill();
            }
        }
    }

    /// SIGKILL to the command's process group (it leads one) and to itself.
    fn kill(&mut self) {
        if self.killed {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.pid);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        self.killed = true;
    }
}

struct Shim {
    cfg: ShimConfig,
    host: Arc<LinuxHost>,
    runtime: Runtime,
    listener: UnixListener,
    containers: BTreeMap<String, Entry>,
    generation: u64,
    conns: Vec<Conn>,
    waiters: Vec<(UnixStream, u64)>,
    sandbox: Option<Sandbox>,
    tmpfs: Vec<PathBuf>,
    execs: Vec<ExecRun>,
    /// Until when to look for unknown exited children (left by an exec that failed half-way).
    stray_check_until: Option<Instant>,
    exit: bool,
}

/// Install the shim's log subscriber: its stderr (the pod's `shim.log`), through a duplicate
/// of the descriptor made close-on-exec. A container's init is forked from the shim and
/// points fd 2 at the container's log before it execs; writing through the duplicate keeps
/// libcontainer's messages from that process out of the container's own log. `RUST_LOG`
/// overrides the filter (default `info`, libcontainer's chatter only from `error`).
pub fn init_shim_logging() {
    use std::os::fd::AsFd as _;
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libcontainer=error"));
    // The fmt subscriber writes synchronously and starts no thread: the shim stays
    // single-threaded.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(std::fs::File::from(fd)))
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}

/// The shim's entry point: `args` are the arguments after the program (and after `shim` for
/// the `aos` binary): the path of the [`ShimConfig`] JSON.
pub fn shim_main(args: Vec<String>) -> ExitCode {
    let Some(path) = args.first() else {
        tracing::error!("usage: shim CONFIG.json");
        return ExitCode::from(2);
    };
    let cfg: ShimConfig = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(config = %path, error = %e, "cannot read the shim config");
            return ExitCode::from(2);
        }
    };
    match Shim::new(cfg).and_then(|s| s.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "shim failed");
            ExitCode::FAILURE
        }
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

impl Shim {
    fn new(cfg: ShimConfig) -> Result<Self, String> {
        if let Some(d) = cfg.socket.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let _ = std::fs::remove_file(&cfg.socket);
        let listener = UnixListener::bind(&cfg.socket)
            .map_err(|e| format!("listening on {}: {e}", cfg.socket.display()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("socket: {e}"))?;
        let host = Arc::new(LinuxHost);
        let runtime = Runtime::new(cfg.state_root.clone(), host.clone());
        let mut shim = Self {
            cfg,
            host,
            runtime,
            listener,
            containers: BTreeMap::new(),
            generation: 0,
            conns: Vec::new(),
            waiters: Vec::new(),
            sandbox: None,
            tmpfs: Vec::new(),
            execs: Vec::new(),
            stray_check_until: None,
            exit: false,
        };
        shim.recover();
        Ok(shim)
    }

    /// Containers recorded by an earlier shim of this pod are not our children: end the ones
    /// still running and record them as killed.
    fn recover(&mut self) {
        for mut info in read_records(&self.cfg.pod_dir) {
            if info.exit.is_none() {
                tracing::warn!(id = %info.id, pid = info.pid, "container of a lost shim; killing it");
                if proc_in_cgroup(info.pid, &info.id) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(info.pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                info.exit = Some(ExitStatus {
                    code: 137,
                    signal: Some(9),
                    oom_killed: false,
                });
                info.finished_at = Some(now());
                let _ = write_record(&self.cfg.pod_dir, &info);
            }
            self.containers.insert(
                info.id.clone(),
                Entry {
                    info,
                    handle: None,
                    outputs: [None, None],
                    log: None,
                },
            );
        }
        if let Ok(b) = std::fs::read(self.cfg.pod_dir.join("sandbox.json")) {
            self.sandbox = serde_json::from_slice(&b).ok();
        }
    }

    fn run(mut self) -> Result<(), String> {
        tracing::info!(pod = %self.cfg.uid, socket = %self.cfg.socket.display(), "shim running");
        while !self.exit {
            self.poll_once();
        }
        let _ = std::fs::remove_file(&self.cfg.socket);
        tracing::info!(pod = %self.cfg.uid, "shim exiting");
        Ok(())
    }

    fn poll_once(&mut self) {
        // What to watch: the listener, open connections, parked waiters and exec clients (for
        // hang-ups), container outputs and exec outputs.
        let mut ready: Vec<Slot> = Vec::new();
        {
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            let mut slots: Vec<Slot> = Vec::new();
            fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
            slots.push(Slot::Listener);
            for (k, c) in self.conns.iter().enumerate() {
                fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
                slots.push(Slot::Conn(k));
            }
            for (k, (w, _)) in self.waiters.iter().enumerate() {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
                slots.push(Slot::Waiter(k));
            }
            for (id, e) in &self.containers {
                for (i, f) in e.outputs.iter().enumerate() {
                    if let Some(f) = f {
                        fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                        slots.push(Slot::Output(id.clone(), i));
                    }
                }
            }
            for (k, x) in self.execs.iter().enumerate() {
                if let Some(c) = &x.client {
                    fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
                    slots.push(Slot::ExecClient(k));
                }
                if let Some(f) = &x.output {
                    fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                    slots.push(Slot::ExecOutput(k));
                }
            }
            let timeout =
                PollTimeout::try_from(TICK.as_millis() as i32).unwrap_or(PollTimeout::NONE);
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => tracing::warn!(error = %e, "poll"),
            }
            for (f, slot) in fds.iter().zip(slots) {
                let hit = f.revents().is_some_and(|r| {
                    r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                });
                if hit {
                    ready.push(slot);
                }
            }
        }
        let mut listener_ready = false;
        let mut conns_ready = Vec::new();
        let mut waiters_ready = Vec::new();
        for slot in ready {
            match slot {
                Slot::Listener => listener_ready = true,
                Slot::Conn(k) => conns_ready.push(k),
                Slot::Waiter(k) => waiters_ready.push(k),
                Slot::Output(id, i) => self.drain_output(&id, i),
                Slot::ExecOutput(k) => self.execs[k].drain(),
                Slot::ExecClient(k) => self.execs[k].check_client(),
            }
        }
        // Hung-up waiters go away.
        let mut keep = Vec::new();
        for (k, (mut w, after)) in std::mem::take(&mut self.waiters).into_iter().enumerate() {
            if waiters_ready.contains(&k) {
                let mut b = [0u8; 64];
                match w.read(&mut b) {
                    Ok(0) | Err(_) => continue,
                    Ok(_) => {}
                }
            }
            keep.push((w, after));
        }
        self.waiters = keep;
        // Requests.
        let mut conns = std::mem::take(&mut self.conns);
        let mut still = Vec::new();
        for (k, mut c) in conns.drain(..).enumerate() {
            if !conns_ready.contains(&k) {
                still.push(c);
                continue;
            }
            let mut b = [0u8; 8192];
            match c.stream.read(&mut b) {
                Ok(0) => continue,
                Ok(n) => c.buf.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => continue,
            }
            if let Some(pos) = c.buf.iter().position(|&x| x == b'\n') {
                let line = c.buf[..pos].to_vec();
                self.handle_line(c.stream, &line);
            } else if c.buf.len() > 16 << 20 {
                continue;
            } else {
                still.push(c);
            }
        }
        self.conns.extend(still);
        if listener_ready {
            while let Ok((s, _)) = self.listener.accept() {
                if s.set_nonblocking(true).is_ok() {
                    self.conns.push(Conn {
                        stream: s,
                        buf: Vec::new(),
                    });
                }
            }
        }
        self.reap();
        self.reap_execs();
        self.answer_waiters();
    }

    fn drain_output(&mut self, id: &str, i: usize) {
        let Some(e) = self.containers.get_mut(id) else {
            return;
        };
        let stream = if i == 0 {
            Stream2::Stdout
        } else {
            Stream2::Stderr
        };
        let mut buf = [0u8; 65536];
        loop {
            let Some(f) = e.outputs[i].as_mut() else {
                return;
            };
            match f.read(&mut buf) {
                Ok(0) => {
                    // All writers closed.
                    e.outputs[i] = None;
                    return;
                }
                Ok(n) => {
                    if let Some(log) = e.log.as_mut()
                        && let Err(err) = log.write(stream, &buf[..n])
                    {
                        tracing::warn!(id, error = %err, "writing log");
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    e.outputs[i] = None;
                    return;
                }
            }
        }
    }

    fn reap(&mut self) {
        let ids: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, e)| e.info.exit.is_none() && e.handle.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let status = {
                let e = self.containers.get(&id).expect("listed above");
                match e.handle.as_ref().map(|h| h.try_wait()) {
                    Some(Ok(Some(s))) => s,
                    Some(Ok(None)) | None => continue,
                    Some(Err(err)) => {
                        tracing::warn!(id, error = %err, "waiting for container");
                        ExitStatus {
                            code: 137,
                            signal: None,
                            oom_killed: false,
                        }
                    }
                }
            };
            self.drain_output(&id, 0);
            self.drain_output(&id, 1);
            let e = self.containers.get_mut(&id).expect("listed above");
            if let Some(log) = e.log.as_mut() {
                let _ = log.flush();
            }
            e.outputs = [None, None];
            e.log = None;
            e.info.exit = Some(status);
            e.info.finished_at = Some(now());
            if let Err(err) = write_record(&self.cfg.pod_dir, &e.info) {
                tracing::warn!(id, error = %err, "recording exit");
            }
            tracing::info!(id, code = status.code, signal = ?status.signal, oom = status.oom_killed, "container exited");
            self.generation += 1;
        }
    }

    fn answer_waiters(&mut self) {
        let generation = self.generation;
        let mut keep = Vec::new();
        for (w, after) in std::mem::take(&mut self.waiters) {
            if generation > after {
                let resp = Response {
                    ok: true,
                    generation: Some(generation),
                    ..Default::default()
                };
                reply(w, &resp);
            } else {
                keep.push((w, after));
            }
        }
        self.waiters = keep;
    }

    /// Start a command in container `id`; returns its pid and the read end of its output.
    fn start_exec(&mut self, id: &str, command: &[String]) -> Result<(i32, File), String> {
        let handle = match self.containers.get(id) {
            Some(Entry {
                handle: Some(h),
                info,
                ..
            }) if info.exit.is_none() => h,
            Some(_) => return Err(format!("container {id} is not running")),
            None => return Err(format!("container {id} not found")),
        };
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| format!("exec output pipe: {e}"))?;
        let read = File::from(read);
        nix::fcntl::fcntl(
            &read,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| format!("exec output pipe: {e}"))?;
        match handle.exec(command, write) {
            Ok(pid) => Ok((pid, read)),
            Err(e) => {
                // Its intermediate process may be left to reap.
                self.stray_check_until = Some(Instant::now() + Duration::from_secs(2));
                Err(format!("exec in container {id}: {e}"))
            }
        }
    }

    /// Answer the execs that ended; kill the ones past their deadline.
    fn reap_execs(&mut self) {
        let now = Instant::now();
        let mut keep = Vec::new();
        for mut x in std::mem::take(&mut self.execs) {
            if !x.killed && now >= x.deadline {
                tracing::info!(container = %x.container, pid = x.pid, "exec timed out; killing it");
                x.timed_out = true;
                x.kill();
            }
            let code = match nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(x.pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            ) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => Ok(code),
                Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => Ok(128 + sig as i32),
                Ok(_) | Err(nix::Error::EINTR) => {
                    keep.push(x);
                    continue;
                }
                Err(e) => Err(e),
            };
            x.drain();
            let Some(client) = x.client.take() else {
                continue;
            };
            let resp = match code {
                Ok(exit_code) => Response {
                    ok: true,
                    exec: Some(ExecResult {
                        exit_code,
                        output: String::from_utf8_lossy(&x.buf).into_owned(),
                        timed_out: x.timed_out,
                    }),
                    ..Default::default()
                },
                Err(e) => Response::error(format!("waiting for exec pid {}: {e}", x.pid)),
            };
            reply(client, &resp);
        }
        self.execs = keep;
        if let Some(until) = self.stray_check_until {
            self.reap_strays();
            if now >= until {
                self.stray_check_until = None;
            }
        }
    }

    /// Reap exited children that are neither a container nor a running exec (what an exec that
    /// failed half-way leaves). Containers and execs are reaped by their own pid, never here.
    fn reap_strays(&self) {
        let known: std::collections::BTreeSet<i32> = self
            .containers
            .values()
            .filter(|e| e.handle.is_some())
            .map(|e| e.info.pid)
            .chain(self.execs.iter().map(|x| x.pid))
            .collect();
        for pid in own_children() {
            if !known.contains(&pid) && is_zombie(pid) {
                let _ = nix::sys::wait::waitpid(
                    nix::unistd::Pid::from_raw(pid),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
            }
        }
    }

    fn handle_line(&mut self, stream: UnixStream, line: &[u8]) {
        let req: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                reply(stream, &Response::error(format!("bad request: {e}")));
                return;
            }
        };
        let resp = match req {
            Request::Wait { after } => {
                if self.generation > after {
                    Response {
                        ok: true,
                        generation: Some(self.generation),
                        ..Default::default()
                    }
                } else {
                    self.waiters.push((stream, after));
                    return;
                }
            }
            Request::Exec {
                id,
                command,
                timeout_ms,
            } => match self.start_exec(&id, &command) {
                Ok((pid, output)) => {
                    tracing::debug!(container = %id, pid, ?command, "exec started");
                    self.execs.push(ExecRun {
                        container: id,
                        pid,
                        client: Some(stream),
                        output: Some(output),
                        buf: Vec::new(),
                        deadline: Instant::now() + Duration::from_millis(timeout_ms),
                        timed_out: false,
                        killed: false,
                    });
                    return;
                }
                Err(e) => Response::error(e),
            },
            Request::EnsureSandbox { config } => match self.ensure_sandbox(&config) {
                Ok(s) => Response {
                    ok: true,
                    sandbox: Some(s),
                    ..Default::default()
                },
                Err(e) => Response::error(e),
            },
            Request::Start { request } => match self.start(*request) {
                Ok(info) => Response {
                    ok: true,
                    container: Some(info),
                    ..Default::default()
                },
                Err(e) => Response::error(e),
            },
            Request::List => Response {
                ok: true,
                containers: Some(self.containers.values().map(|e| e.info.clone()).collect()),
                generation: Some(self.generation),
                ..Default::default()
            },
            Request::Signal { id, signal } => match self.containers.get(&id) {
                Some(Entry {
                    handle: Some(h),
                    info,
                    ..
                }) if info.exit.is_none() => match h.kill(signal) {
                    Ok(()) => Response::ok(),
                    Err(e) => Response::error(e),
                },
                Some(_) => Response::ok(),
                None => Response::error(format!("container {id} not found")),
            },
            Request::Remove { id } => match self.remove(&id) {
                Ok(()) => Response::ok(),
                Err(e) => Response::error(e),
            },
            Request::Shutdown => {
                let r = self.shutdown();
                self.exit = r.is_ok();
                match r {
                    Ok(()) => Response::ok(),
                    Err(e) => Response::error(e),
                }
            }
        };
        reply(stream, &resp);
    }

    fn netns(&self) -> Result<PodNamespaces, String> {
        PodNamespaces::at(&self.cfg.netns_root, &self.cfg.uid).map_err(|e| e.to_string())
    }

    fn network(&self) -> Result<Network, String> {
        let cidr = self
            .cfg
            .pod_cidr
            .parse()
            .map_err(|e: aos_sandbox::network::NetworkError| e.to_string())?;
        Network::new(
            NetworkConfig {
                bridge: self.cfg.bridge.clone(),
                cidr,
                allocations_file: self.cfg.ipam_file.clone(),
            },
            self.host.clone(),
        )
        .map_err(|e| e.to_string())
    }

    fn pod_cgroup(&self) -> Result<PodCgroup, String> {
        PodCgroup::new(&self.cfg.cgroup_parent, cgroup::detect_version()).map_err(|e| e.to_string())
    }

    fn ensure_sandbox(&mut self, config: &SandboxConfig) -> Result<Sandbox, String> {
        let host = self.host.clone();
        for v in &config.memory_volumes {
            if self.tmpfs.contains(&v.path) {
                continue;
            }
            host.create_dir_all(&v.path).map_err(|e| e.to_string())?;
            let mut data = "mode=1777".to_owned();
            if let Some(size) = v.size_bytes {
                data.push_str(&format!(",size={size}"));
            }
            host.mount(
                "tmpfs",
                &v.path,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                Some(&data),
            )
            .map_err(|e| format!("emptyDir {}: {e}", v.path.display()))?;
            self.tmpfs.push(v.path.clone());
        }
        if let Some(s) = &self.sandbox {
            return Ok(s.clone());
        }
        let ns = self.netns()?;
        ns.create(host.as_ref(), &config.hostname)
            .map_err(|e| format!("pod namespaces: {e}"))?;
        let net = self.network()?;
        let addr = match net.attach(&self.cfg.uid, &ns.path(NsKind::Net)) {
            Ok(a) => a,
            Err(e) => {
                let _ = ns.remove(host.as_ref());
                return Err(format!("pod network: {e}"));
            }
        };
        let cg = self.pod_cgroup()?;
        if let Err(e) = cg.create(host.as_ref(), self.cfg.pids_limit) {
            let _ = net.detach(&self.cfg.uid);
            let _ = ns.remove(host.as_ref());
            return Err(format!("pod cgroup: {e}"));
        }
        let sandbox = Sandbox {
            ip: Some(addr.ip),
            namespaces: ns.paths(),
            cgroup_parent: self.cfg.cgroup_parent.clone(),
            pod_dir: self.cfg.pod_dir.clone(),
        };
        if let Ok(b) = serde_json::to_vec(&sandbox) {
            let _ = std::fs::write(self.cfg.pod_dir.join("sandbox.json"), b);
        }
        tracing::info!(pod = %self.cfg.uid, ip = %addr.ip, "sandbox ready");
        self.sandbox = Some(sandbox.clone());
        Ok(sandbox)
    }

    fn start(&mut self, req: ContainerRequest) -> Result<ContainerInfo, String> {
        let id = req.spec.id.clone();
        if let Some(e) = self.containers.get(&id) {
            return Err(format!(
                "container {id} already exists (pid {}, {})",
                e.info.pid,
                if e.info.exit.is_some() {
                    "exited"
                } else {
                    "running"
                }
            ));
        }
        if self.sandbox.is_none() {
            return Err("the pod has no sandbox".into());
        }
        let cdir = self.cfg.pod_dir.join("containers").join(&id);
        std::fs::create_dir_all(&cdir).map_err(|e| format!("{}: {e}", cdir.display()))?;
        if let aos_sandbox::spec::RootfsSpec::Overlay { lower, .. } = &req.spec.rootfs {
            for l in lower.iter().filter(|l| l.starts_with(&self.cfg.pod_dir)) {
                std::fs::create_dir_all(l).map_err(|e| format!("{}: {e}", l.display()))?;
            }
        }
        let log = LogWriter::open(&req.log_path).map_err(|e| e.to_string())?;
        let mut outputs: [Option<File>; 2] = [None, None];
        let mut spec = req.spec.clone();
        for (i, name) in ["stdout", "stderr"].iter().enumerate() {
            let fifo = cdir.join(format!("{name}.fifo"));
            let _ = std::fs::remove_file(&fifo);
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| format!("mkfifo {}: {e}", fifo.display()))?;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open(&fifo)
                .map_err(|e| format!("{}: {e}", fifo.display()))?;
            outputs[i] = Some(f);
            if i == 0 {
                spec.stdout = Some(fifo);
            } else {
                spec.stderr = Some(fifo);
            }
        }
        let handle = self.runtime.start(&spec).map_err(|e| e.to_string())?;
        let info = ContainerInfo {
            id: id.clone(),
            name: req.name.clone(),
            attempt: req.attempt,
            pid: handle.pid(),
            started_at: now(),
            finished_at: None,
            exit: None,
            stop_signal: req.stop_signal,
            image_id: req.image_id.clone(),
            log_path: req.log_path.clone(),
        };
        if let Err(e) = write_record(&self.cfg.pod_dir, &info) {
            tracing::warn!(id, error = %e, "recording start");
        }
        self.containers.insert(
            id,
            Entry {
                info: info.clone(),
                handle: Some(handle),
                outputs,
                log: Some(log),
            },
        );
        Ok(info)
    }

    fn remove(&mut self, id: &str) -> Result<(), String> {
        let Some(e) = self.containers.get(id) else {
            return Ok(());
        };
        if e.info.exit.is_none() {
            return Err(format!("container {id} is running"));
        }
        let e = self.containers.remove(id).expect("checked above");
        self.cleanup_entry(e)
    }

    fn cleanup_entry(&mut self, e: Entry) -> Result<(), String> {
        let id = e.info.id.clone();
        match e.handle {
            Some(h) => h.cleanup().map_err(|err| format!("removing {id}: {err}"))?,
            None => cleanup_lost(&self.cfg, &id),
        }
        let dir = self.cfg.pod_dir.join("containers").join(&id);
        if let Err(err) = std::fs::remove_dir_all(&dir)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            return Err(format!("{}: {err}", dir.display()));
        }
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), String> {
        for mut x in std::mem::take(&mut self.execs) {
            x.kill();
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(x.pid), None);
            if let Some(c) = x.client.take() {
                reply(c, &Response::error("the pod's sandbox is being removed"));
            }
        }
        for e in self.containers.values() {
            if let (Some(h), None) = (&e.handle, &e.info.exit) {
                let _ = h.kill(9);
            }
        }
        let mut errors = Vec::new();
        let entries = std::mem::take(&mut self.containers);
        for (_, e) in entries {
            if let Some(h) = &e.handle {
                let _ = h.wait();
            }
            if let Err(err) = self.cleanup_entry(e) {
                errors.push(err);
            }
        }
        for p in std::mem::take(&mut self.tmpfs) {
            if let Err(e) = self.host.umount(&p) {
                errors.push(e.to_string());
            }
        }
        // Memory volumes of an earlier shim of this pod.
        unmount_under(self.host.as_ref(), &self.cfg.pod_dir.join("volumes"));
        match self.network() {
            Ok(net) => {
                if let Err(e) = net.detach(&self.cfg.uid) {
                    errors.push(format!("pod network: {e}"));
                }
            }
            Err(e) => errors.push(e),
        }
        match self.netns() {
            Ok(ns) => {
                if let Err(e) = ns.remove(self.host.as_ref()) {
                    errors.push(format!("pod namespaces: {e}"));
                }
            }
            Err(e) => errors.push(e),
        }
        match self.pod_cgroup() {
            Ok(cg) => {
                if let Err(e) = cg.remove(self.host.as_ref()) {
                    errors.push(format!("pod cgroup: {e}"));
                }
            }
            Err(e) => errors.push(e),
        }
        self.sandbox = None;
        let _ = std::fs::remove_file(self.cfg.pod_dir.join("sandbox.json"));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

fn reply(mut stream: UnixStream, resp: &Response) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut line = serde_json::to_vec(resp).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    line.push(b'\n');
    let _ = stream.write_all(&line);
}

/// The shim's child processes (`/proc/self/task/*/children`).
fn own_children() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Whether `pid` has exited and waits to be reaped.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Whether process `pid` is in a cgroup whose path names container `id` (a pid reused by an
/// unrelated process is not).
fn proc_in_cgroup(pid: i32, id: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|s| s.lines().any(|l| l.ends_with(&format!("/{id}"))))
        .unwrap_or(false)
}

/// Best-effort removal of a container whose shim was lost: its overlay mount, libcontainer
/// state and cgroup.
fn cleanup_lost(cfg: &ShimConfig, id: &str) {
    let host = LinuxHost;
    let bundle = cfg.pod_dir.join("containers").join(id).join("bundle");
    let _ = host.umount(&aos_sandbox::rootfs::mount_point(&bundle));
    let _ = host.remove_all(&cfg.state_root.join(id));
    let rel = format!("{}/{id}", cfg.cgroup_parent.trim_start_matches('/'));
    let root = Path::new(cgroup::CGROUP_ROOT);
    let dirs: Vec<PathBuf> = match cgroup::detect_version() {
        cgroup::CgroupVersion::V1 => [
            "cpu",
            "cpuacct",
            "memory",
            "pids",
            "cpuset",
            "devices",
            "freezer",
            "blkio",
            "hugetlb",
            "net_cls",
            "perf_event",
            "rdma",
            "misc",
        ]
        .iter()
        .map(|c| root.join(c).join(&rel))
        .collect(),
        cgroup::CgroupVersion::V2 => vec![root.join(&rel)],
    };
    for d in dirs {
        let _ = host.remove_dir(&d);
    }
}

/// Unmount whatever is mounted below `dir` (tmpfs emptyDirs), per `/proc/self/mountinfo`.
fn unmount_under(host: &dyn Host, dir: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    for line in text.lines() {
        if let Some(mp) = line.split(' ').nth(4)
            && mp.starts_with(&prefix)
        {
            let _ = host.umount(Path::new(mp));
        }
    }
}

/// Read one response line from a blocking stream (tests and tools).
pub fn call_blocking(socket: &Path, req: &Request) -> Result<Response, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    s.write_all(&line).map_err(|e| e.to_string())?;
    let mut r = std::io::BufReader::new(s);
    let mut out = String::new();
    r.read_line(&mut out).map_err(|e| e.to_string())?;
    serde_json::from_str(&out).map_err(|e| e.to_string())
}
