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
use std::time::Duration;

use aos_sandbox::cgroup::{self, PodCgroup};
use aos_sandbox::host::{Host, LinuxHost, NsKind};
use aos_sandbox::netns::PodNamespaces;
use aos_sandbox::network::{Network, NetworkConfig};
use aos_sandbox::{ExitStatus, Handle, Runtime};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::logs::{LogWriter, Stream2};
use crate::runtime::{ContainerInfo, ContainerRequest, Sandbox, SandboxConfig};

pub mod protocol;

use protocol::{Request, Response, ShimConfig};

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
    exit: bool,
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
        // What to watch: the listener, open connections, parked waiters (for hang-ups) and
        // container outputs.
        let mut readable = vec![false; 1 + self.conns.len() + self.waiters.len()];
        let mut outputs: Vec<(String, usize)> = Vec::new();
        let mut out_ready;
        {
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
            for c in &self.conns {
                fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
            }
            for (w, _) in &self.waiters {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
            }
            for (id, e) in &self.containers {
                for (i, f) in e.outputs.iter().enumerate() {
                    if let Some(f) = f {
                        fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                        outputs.push((id.clone(), i));
                    }
                }
            }
            let timeout =
                PollTimeout::try_from(TICK.as_millis() as i32).unwrap_or(PollTimeout::NONE);
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => tracing::warn!(error = %e, "poll"),
            }
            let any = |f: &PollFd<'_>| {
                f.revents().is_some_and(|r| {
                    r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                })
            };
            for (i, r) in readable.iter_mut().enumerate() {
                *r = any(&fds[i]);
            }
            out_ready = Vec::new();
            for (k, f) in fds[readable.len()..].iter().enumerate() {
                if any(f) {
                    out_ready.push(outputs[k].clone());
                }
            }
        }
        for (id, i) in out_ready {
            self.drain_output(&id, i);
        }
        // Hung-up waiters go away.
        let nconns = self.conns.len();
        let mut keep = Vec::new();
        for (k, (mut w, after)) in std::mem::take(&mut self.waiters).into_iter().enumerate() {
            if readable[1 + nconns + k] {
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
            if !readable[1 + k] {
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
        if readable[0] {
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
