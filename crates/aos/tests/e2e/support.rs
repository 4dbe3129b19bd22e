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
        let log = data_dir.with_extension(format!("{port}.log"));
        let log_file = std::fs::File::create(&log).expect("create log file");
        let started = Instant::now();
        let child = Command::new(AOS)
            .args(["up", "--data-dir"])
            .arg(data_dir)
            .args(["--api-listen", &format!("127.0.0.1:{port}")])
            // Each test has its own gateway ports, so tests can run side by side.
            .args(["--gateway-listen", &format!("127.0.0.1:{}", free_port())])
            .args([
                "--gateway-admin-listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            // These tests exercise the control plane with no node yet (as issue 2 asks);
            // the node agent has its own tests.
            .arg("--no-agent")
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
            if client.is_none() && self.kubeconfig.exists() {
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
            let _ = child.kill();
            let _ = child.wait();
        }
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
