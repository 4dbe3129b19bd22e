//! Test support: start `aos up` as a child process and run the CLI against it.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aos_client::{Client, Kubeconfig};

/// The `aos` binary under test.
pub(crate) const AOS: &str = env!("CARGO_BIN_EXE_aos");

/// A directory of this crate's test fixtures.
pub(crate) fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A free loopback port (bound and released; the window for a clash is tiny).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A running `aos up`, killed when dropped.
pub(crate) struct Aos {
    child: Option<Child>,
    /// The API port.
    pub(crate) port: u16,
    /// `DATA_DIR/kubeconfig.yaml`.
    pub(crate) kubeconfig: PathBuf,
    log: PathBuf,
    /// The data dir.
    pub(crate) data_dir: PathBuf,
    /// The gateway's traffic port.
    pub(crate) gateway_port: u16,
    /// Whether the node agent runs (it then gets SIGTERM when dropped).
    agent: bool,
}

impl Aos {
    /// Start `aos up` on a free port in `data_dir` and wait until `/readyz` answers.
    pub(crate) async fn start(data_dir: &Path) -> Aos {
        Self::start_on(data_dir, free_port()).await.0
    }

    /// Start on `port` and return the time from spawn to a 200 from `/readyz`.
    pub(crate) async fn start_on(data_dir: &Path, port: u16) -> (Aos, Duration) {
        Self::start_with(data_dir, port, &[]).await
    }

    /// Start on `port` with extra `aos up` arguments.
    pub(crate) async fn start_with(data_dir: &Path, port: u16, extra: &[&str]) -> (Aos, Duration) {
        // These tests exercise the control plane with no node yet (as issue 2 asks);
        // the node agent has its own tests.
        Self::spawn(data_dir, port, extra, false).await
    }

    /// Start `aos up` with its node agent (root only: see [`root_or_skip`]) on free ports,
    /// with `extra` arguments. Each instance gets a pod range of its own ([`pod_cidr`]) unless
    /// `extra` names one, so that tests can run side by side on the shared bridge.
    pub(crate) async fn start_node(data_dir: &Path, extra: &[&str]) -> Aos {
        let mut args: Vec<String> = extra.iter().map(|a| (*a).to_string()).collect();
        if !args.iter().any(|a| a == "--pod-cidr") {
            args.extend(["--pod-cidr".to_string(), pod_cidr()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::spawn(data_dir, free_port(), &args, true).await.0
    }

    async fn spawn(data_dir: &Path, port: u16, extra: &[&str], agent: bool) -> (Aos, Duration) {
        let log = data_dir.with_extension(format!("{port}.log"));
        let log_file = std::fs::File::create(&log).expect("create log file");
        let gateway_port = free_port();
        let started = Instant::now();
        let mut command = Command::new(AOS);
        command
            .args(["up", "--data-dir"])
            .arg(data_dir)
            .args(["--api-listen", &format!("127.0.0.1:{port}")])
            // Each test has its own gateway ports, so tests can run side by side.
            .args(["--gateway-listen", &format!("127.0.0.1:{gateway_port}")])
            .args([
                "--gateway-admin-listen",
                &format!("127.0.0.1:{}", free_port()),
            ]);
        if agent {
            // The node agent's HTTPS port (default 10250) must not collide either.
            command.args(["--node-listen", "127.0.0.1:0"]);
        } else {
            command.arg("--no-agent");
        }
        let child = command
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("AOS_KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn aos up");
        let mut aos = Aos {
            child: Some(child),
            port,
            kubeconfig: data_dir.join("kubeconfig.yaml"),
            log,
            data_dir: data_dir.to_path_buf(),
            gateway_port,
            agent,
        };
        aos.wait_ready(started).await;
        (aos, started.elapsed())
    }

    async fn wait_ready(&mut self, started: Instant) {
        let deadline = started + Duration::from_secs(20);
        let mut client: Option<Client> = None;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "aos up exited with {status} before it was ready; log:\n{}",
                    self.log()
                );
            }
            // A restart on the same data dir finds the last run's kubeconfig (another port)
            // until this run writes its own.
            let current = format!(":{}", self.port);
            if client
                .as_ref()
                .is_none_or(|c| !c.server().trim_end_matches('/').ends_with(&current))
                && self.kubeconfig.exists()
            {
                client = Client::from_kubeconfig(&self.kubeconfig).ok();
            }
            if let Some(client) = &client
                && client.raw(http::Method::GET, "/readyz", None).await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "aos up not ready after 20 s; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The process id of `aos up` (its node agent runs in it).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("aos up is running").id()
    }

    /// The server's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send SIGTERM and wait (at most `timeout`) for the exit status.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("aos up is running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for aos up") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "aos up did not stop within {timeout:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -9` the server.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill sends SIGKILL on Unix.
            child.kill().expect("kill -9 aos up");
            child.wait().expect("reap aos up");
        }
    }

    /// A client with the admin kubeconfig.
    pub(crate) fn client(&self) -> Client {
        Client::from_kubeconfig(&self.kubeconfig).expect("client from kubeconfig")
    }

    /// The parsed kubeconfig.
    pub(crate) fn kubeconfig(&self) -> Kubeconfig {
        Kubeconfig::load(&self.kubeconfig).expect("load kubeconfig")
    }

    /// Run the CLI with `--kubeconfig`.
    pub(crate) fn aos(&self, args: &[&str]) -> Run {
        self.aos_stdin(args, None)
    }

    /// Run the CLI with `--kubeconfig`, feeding `stdin`.
    pub(crate) fn aos_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut full = vec![
            "--kubeconfig".to_string(),
            self.kubeconfig.display().to_string(),
        ];
        full.extend(args.iter().map(|a| (*a).to_string()));
        run_aos(&full, stdin)
    }
}

impl Drop for Aos {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.agent {
                // A node agent stops its pods on SIGTERM; SIGKILL would leave shims, containers,
                // cgroups and veths behind for the next tests (a failed test drops it here).
                stop_gracefully(&mut child, Duration::from_secs(30));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM `child` and wait at most `timeout` for it to exit.
fn stop_gracefully(child: &mut Child, timeout: Duration) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The result of one CLI run.
#[derive(Debug)]
pub(crate) struct Run {
    /// Exit code.
    pub(crate) code: i32,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

impl Run {
    /// Assert success and return stdout.
    #[track_caller]
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "aos failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }
}

/// Run the CLI binary with these arguments (no implicit kubeconfig).
pub(crate) fn run_aos<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: Option<&str>) -> Run {
    let mut child = Command::new(AOS)
        .args(args)
        .env_remove("AOS_KUBECONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aos");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait for aos");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Poll `check` every few milliseconds until it gives `Some`, or panic after `timeout`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A resource type by kind.
pub(crate) fn rt(api_version: &str, kind: &str) -> &'static aos_types::ResourceType {
    aos_types::resource::by_kind(api_version, kind)
        .unwrap_or_else(|| panic!("no resource type {api_version} {kind}"))
}

// ---- Helpers for tests that run pods: `aos up` with its node agent, as root. ----

/// Whether this process may run the node agent; prints why a test skips otherwise.
pub(crate) fn root_or_skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root (the node agent creates namespaces, mounts, cgroups and veths)");
    false
}

/// Debian's static busybox, which the test images are made of.
pub(crate) const BUSYBOX: &str = "/bin/busybox";

/// Whether `/bin/busybox` exists (installed with apt-get when missing, as scripts/prereqs.sh
/// does in CI); prints why a test skips otherwise.
pub(crate) fn busybox_or_skip() -> bool {
    if !Path::new(BUSYBOX).exists() {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "busybox-static"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output();
    }
    if Path::new(BUSYBOX).exists() {
        return true;
    }
    eprintln!("skipped: /bin/busybox missing and `apt-get install busybox-static` failed");
    false
}

/// The variable scripts/test.sh sets to the static agent-registry binary.
pub(crate) const AGENT_REGISTRY_BIN_VAR: &str = "AOS_TEST_AGENT_REGISTRY_BIN";

/// The static agent-registry binary from `AOS_TEST_AGENT_REGISTRY_BIN`, or `None` after printing
/// why the test skips.
pub(crate) fn agent_registry_bin_or_skip() -> Option<PathBuf> {
    match std::env::var_os(AGENT_REGISTRY_BIN_VAR) {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{AGENT_REGISTRY_BIN_VAR}={} is not a file",
                path.display()
            );
            Some(path)
        }
        _ => {
            eprintln!(
                "skipped: {AGENT_REGISTRY_BIN_VAR} not set (scripts/test.sh builds the static agent-registry)"
            );
            None
        }
    }
}

/// `aos image --data-dir DATA_DIR build -t TAG CONTEXT`, asserting success.
fn image_build(data_dir: &Path, tag: &str, context: &Path) {
    let run = run_aos(
        &[
            "image".as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
            "build".as_ref(),
            "-t".as_ref(),
            tag.as_ref(),
            context.as_os_str(),
        ],
        None,
    );
    run.ok();
}

/// The busybox test image: FROM scratch, busybox and its applets, a passwd with user 1001.
pub(crate) const BUSYBOX_IMAGE: &str = "busybox:e2e";

/// Build [`BUSYBOX_IMAGE`] into the image store of `data_dir`.
pub(crate) fn build_busybox_image(data_dir: &Path) {
    let ctx = data_dir.with_extension("busybox-build");
    let root = ctx.join("rootfs");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "mnt"] {
        std::fs::create_dir_all(root.join(d)).expect("create rootfs dir");
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
                .expect("applet link");
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\napp:x:1001:1001:app:/tmp:/bin/sh\n",
    )
    .expect("write passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1001:\n").expect("write group");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nUSER 1001:1001\nENV PATH=/bin\nWORKDIR /tmp\nCMD [\"/bin/sh\"]\n",
    )
    .expect("write Dockerfile");
    image_build(data_dir, BUSYBOX_IMAGE, &ctx);
    std::fs::remove_dir_all(ctx).expect("remove build context");
}

/// The image the seed's Deployment runs.
pub(crate) const AGENT_REGISTRY_IMAGE: &str = "agent-registry:1.0.0";

/// Build [`AGENT_REGISTRY_IMAGE`] into the image store of `data_dir` from the static binary
/// `bin` and the project's `images/agent-registry/Dockerfile`.
pub(crate) fn build_agent_registry_image(data_dir: &Path, bin: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/agent-registry");
    let ctx = data_dir.with_extension("agent-registry-build");
    std::fs::create_dir_all(ctx.join("context")).expect("create build context");
    for name in ["Dockerfile", ".dockerignore"] {
        std::fs::copy(src.join(name), ctx.join(name))
            .unwrap_or_else(|e| panic!("copy images/agent-registry/{name}: {e}"));
    }
    std::fs::copy(bin, ctx.join("context/agent-registry")).expect("copy agent-registry");
    image_build(data_dir, AGENT_REGISTRY_IMAGE, &ctx);
    std::fs::remove_dir_all(ctx).expect("remove build context");
}

/// A pod range of this test process's own, from its pid: `10.(210..250).x.0/24`. Tests and
/// other `aos up`s share the bridge `aos0`, so each needs addresses nobody else hands out.
pub(crate) fn pod_cidr() -> String {
    let pid = std::process::id();
    format!("10.{}.{}.0/24", 210 + (pid / 250) % 40, pid % 250)
}

/// Whether the pod's `Ready` condition is `True`.
pub(crate) fn is_ready(pod: &serde_json::Value) -> bool {
    condition(pod, "Ready") == Some("True")
}

/// The status of condition `kind` of an object.
pub(crate) fn condition<'a>(obj: &'a serde_json::Value, kind: &str) -> Option<&'a str> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?
        .get("status")?
        .as_str()
}

/// `metadata.name`, `metadata.uid` and the like, as `&str` (empty when absent).
pub(crate) fn str_at<'a>(obj: &'a serde_json::Value, pointer: &str) -> &'a str {
    obj.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}

/// The pods of `ns` matching `selector` (a label selector; empty for all).
pub(crate) async fn list_pods(client: &Client, ns: &str, selector: &str) -> Vec<serde_json::Value> {
    let params = aos_client::ListParams {
        label_selector: (!selector.is_empty()).then(|| selector.to_string()),
        ..Default::default()
    };
    client
        .list(rt("v1", "Pod"), Some(ns), &params)
        .await
        .expect("list pods")
        .items
}

/// Wait until exactly `n` pods of `ns` match `selector`, none of them terminating, all Ready.
pub(crate) async fn wait_pods_ready(
    client: &Client,
    ns: &str,
    selector: &str,
    n: usize,
    timeout: Duration,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let pods = list_pods(client, ns, selector).await;
        let live: Vec<_> = pods
            .iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .collect();
        if pods.len() == n && live.len() == n && live.iter().all(|p| is_ready(p)) {
            return pods;
        }
        if Instant::now() > deadline {
            let summary: Vec<String> = pods
                .iter()
                .map(|p| format!("{}: {:#}", str_at(p, "/metadata/name"), p["status"]))
                .collect();
            panic!(
                "timed out after {timeout:?} waiting for {n} Ready pods ({selector:?} in {ns}); have:\n{}",
                summary.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Aos {
    /// The pod's directory on the node: `DATA_DIR/pods/NS_NAME_UID`.
    pub(crate) fn pod_dir(&self, pod: &serde_json::Value) -> PathBuf {
        self.data_dir.join("pods").join(format!(
            "{}_{}_{}",
            str_at(pod, "/metadata/namespace"),
            str_at(pod, "/metadata/name"),
            str_at(pod, "/metadata/uid")
        ))
    }

    /// The pids of the shims (`aos shim DATA_DIR/pods/...`) of this data dir.
    pub(crate) fn shim_pids(&self) -> Vec<i32> {
        let pods = self.data_dir.join("pods");
        processes()
            .into_iter()
            .filter(|(_, args)| {
                args.get(1).map(String::as_str) == Some("shim")
                    && args.get(2).is_some_and(|a| Path::new(a).starts_with(&pods))
            })
            .map(|(pid, _)| pid)
            .collect()
    }
}

/// Every process's pid and command line.
fn processes() -> Vec<(i32, Vec<String>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, args))
        })
        .collect()
}

/// The processes in the pod's cgroups (`/aos/pod-UID/...`): its containers' processes.
pub(crate) fn pod_processes(pod_uid: &str) -> Vec<i32> {
    let needle = format!("/aos/pod-{pod_uid}/");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|cg| cg.lines().any(|l| l.contains(&needle)))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The pod's cgroup directories that exist, in every hierarchy (`/sys/fs/cgroup/*/aos/pod-UID`
/// on v1, `/sys/fs/cgroup/aos/pod-UID` on v2).
pub(crate) fn pod_cgroups(pod_uid: &str) -> Vec<PathBuf> {
    let name = format!("aos/pod-{pod_uid}");
    let root = Path::new("/sys/fs/cgroup");
    let mut found: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join(&name))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    if root.join(&name).is_dir() {
        found.push(root.join(&name));
    }
    found
}

/// Mount points at or under `dir`, from `/proc/self/mountinfo`.
pub(crate) fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

/// The host end of a pod's veth pair, named as aos-sandbox names it (`aosv` + the 32-bit
/// FNV-1a hash of the pod uid, in hex).
/// The host end of a pod's veth on `aos up`'s bridge `aos0`: the formula of
/// `aos_sandbox::network::host_veth_name` (FNV-1a of `bridge/uid`), which this crate does not
/// depend on.
pub(crate) fn host_veth_name(pod_uid: &str) -> String {
    let hash = "aos0/"
        .bytes()
        .chain(pod_uid.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("aosv{:08x}", hash as u32)
}

/// Whether a network link of this name exists.
pub(crate) fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// One line `KEY:\tVALUE` of `/proc/PID/status`, the value trimmed.
pub(crate) fn proc_status(pid: i32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// One HTTP/1.1 connection with keep-alive: a client small enough to see every byte the
/// gateway sends, so that a failure is reported as it happened.
pub(crate) struct HttpConn {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct HttpAnswer {
    /// Status code.
    pub(crate) status: u16,
    /// The body.
    pub(crate) body: Vec<u8>,
    /// Whether the server keeps the connection open.
    pub(crate) keep_alive: bool,
}

impl HttpConn {
    /// Connect to `addr`.
    pub(crate) async fn connect(addr: std::net::SocketAddr) -> std::io::Result<HttpConn> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(HttpConn {
            stream: tokio::io::BufReader::new(tcp),
        })
    }

    /// `GET path` with `Host: host`; reads the whole answer.
    pub(crate) async fn get(&mut self, host: &str, path: &str) -> std::io::Result<HttpAnswer> {
        use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n");
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the status line",
            ));
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        let (mut length, mut chunked, mut keep_alive) = (None, false, true);
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(bad("connection closed in the headers".into()));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                return Err(bad(format!("bad header {header:?}")));
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => {
                    length = Some(
                        value
                            .parse::<usize>()
                            .map_err(|_| bad(format!("bad content-length {value:?}")))?,
                    );
                }
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            self.stream.read_exact(&mut body).await?;
        } else {
            self.stream.read_to_end(&mut body).await?;
            keep_alive = false;
        }
        Ok(HttpAnswer {
            status,
            body,
            keep_alive,
        })
    }
}

/// One `GET http://addr/path` on a new connection.
pub(crate) async fn http_get(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
) -> std::io::Result<HttpAnswer> {
    HttpConn::connect(addr).await?.get(host, path).await
}
