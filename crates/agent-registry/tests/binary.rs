//! The real binary, driven like a user: signals, draining, the healthcheck subcommand, and a
//! hostile environment (no HOME, read-only working directory).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_agent-registry");
const WAIT: Duration = Duration::from_secs(15);

/// A running agent-registry whose stdout log lines arrive on a channel.
struct Service {
    child: Child,
    addr: SocketAddr,
    logs: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

fn command(db_dir: &Path, cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PORT", "0")
        .env("LISTEN_ADDR", "127.0.0.1")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/agents.db", db_dir.display()),
        )
        .env("RUST_LOG", "info")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

impl Service {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("spawn agent-registry");
        let stdout = child.stdout.take().unwrap();
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut service = Self {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            logs,
            seen: Vec::new(),
        };
        let listening = service.wait_for_log("listening");
        service.addr = listening["addr"].as_str().unwrap().parse().unwrap();
        service
    }

    /// Waits for a log line with this message, keeping every line seen.
    fn wait_for_log(&mut self, message: &str) -> Value {
        if let Some(v) = self.seen.iter().find(|v| v["message"] == message) {
            return v.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["message"] == message {
                        return v;
                    }
                }
                Err(e) => panic!("no {message:?} log line ({e}); saw {:#?}", self.seen),
            }
        }
    }

    fn signal(&self, signal: Signal) {
        kill(
            Pid::from_raw(i32::try_from(self.child.id()).unwrap()),
            signal,
        )
        .unwrap();
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Collect the remaining log lines.
                while let Ok(v) = self.logs.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(v);
                }
                return status;
            }
            assert!(Instant::now() < deadline, "agent-registry did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), dir.path());
    cmd.env("AGENT_REGISTRY_TEST_HOOKS", "1");
    let mut svc = Service::spawn(cmd);
    let addr = svc.addr;

    let (status, _) = http(
        addr,
        "POST",
        "/api/v1/agent-registry/agents",
        &[],
        r#"{"name":"a"}"#,
    );
    assert_eq!(status, 201);

    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let response = http(
            addr,
            "GET",
            "/api/v1/agent-registry/agents",
            &[("x-test-delay-ms", "3000")],
            "",
        );
        (response, started.elapsed())
    });
    svc.wait_for_log("test hook: delaying request");
    svc.signal(Signal::SIGTERM);
    svc.wait_for_log("shutting down");

    // New connections are refused while the slow request is still being served.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "still accepting connections after SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    assert!(
        !slow.is_finished(),
        "the slow request finished before the refusal was checked"
    );

    let ((status, body), took) = slow.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["total"], 1);
    assert!(took >= Duration::from_millis(3000));

    let exit = svc.wait_exit();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        svc.seen
            .iter()
            .any(|v| v["message"] == "shutting down" && v["signal"] == "SIGTERM")
    );
    assert!(
        svc.seen.iter().any(|v| v["message"] == "database closed"),
        "{:#?}",
        svc.seen
    );
    // One JSON line per request, with the route template.
    let requests: Vec<&Value> = svc
        .seen
        .iter()
        .filter(|v| v["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(requests[1]["route"], "/api/v1/agent-registry/agents");
    assert_eq!(requests[1]["method"], "GET");
    assert_eq!(requests[1]["status"], 200);
    assert!(requests[1]["duration_ms"].as_f64().unwrap() >= 3000.0);
    assert_eq!(requests[1]["level"], "INFO");
}

#[test]
fn sigint_stops_cleanly_and_the_version_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::spawn(command(dir.path(), dir.path()));
    let starting = svc.wait_for_log("agent-registry starting");
    assert_eq!(starting["version"], agent_registry::VERSION);
    svc.signal(Signal::SIGINT);
    assert!(svc.wait_exit().success());
    assert!(svc.seen.iter().any(|v| v["signal"] == "SIGINT"));
}

#[test]
fn test_hooks_are_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::spawn(command(dir.path(), dir.path()));
    let started = Instant::now();
    let (status, _) = http(
        svc.addr,
        "GET",
        "/health",
        &[("x-test-delay-ms", "5000")],
        "",
    );
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the delay header was honoured"
    );
    svc.signal(Signal::SIGTERM);
    assert!(svc.wait_exit().success());
}

#[test]
fn runs_with_home_unset_and_a_read_only_working_directory() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cwd.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut cmd = command(data.path(), cwd.path());
    // env_clear() already removed HOME, TMPDIR and the rest; say so explicitly.
    cmd.env_remove("HOME")
        .env("REDIS_URL", "redis://:s3cret-value@redis:6379/0")
        .env("NODE_ENV", "production");
    let mut svc = Service::spawn(cmd);

    let (status, body) = http(
        svc.addr,
        "POST",
        "/api/v1/agent-registry/agents",
        &[],
        r#"{"name":"a","capabilities":["x"]}"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, _) = http(
        svc.addr,
        "GET",
        "/api/v1/agent-registry/agents?capability=x",
        &[],
        "",
    );
    assert_eq!(status, 200);
    let (status, body) = http(svc.addr, "GET", "/ready", &[], "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(svc.addr, "GET", "/api/v1/agent-registry/instance", &[], "");
    assert_eq!(status, 200);
    let instance: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(instance["pid"], svc.child.id());

    svc.signal(Signal::SIGTERM);
    assert!(svc.wait_exit().success());

    // Nothing was written to the working directory; only the database beside itself.
    std::fs::set_permissions(cwd.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
    let mut files: Vec<String> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["agents.db"]);

    // REDIS_URL is acknowledged, never echoed.
    let logs = serde_json::to_string(&svc.seen).unwrap();
    assert!(!logs.contains("s3cret"), "a secret reached the log");
    assert!(
        svc.seen
            .iter()
            .any(|v| v["message"].as_str().unwrap_or("").contains("REDIS_URL"))
    );
}

#[test]
fn healthcheck_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::spawn(command(dir.path(), dir.path()));
    let port = svc.addr.port().to_string();
    let check = |port: &str| {
        Command::new(BIN)
            .arg("healthcheck")
            .env_clear()
            .env("PORT", port)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    let up = check(&port);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    svc.signal(Signal::SIGTERM);
    assert!(svc.wait_exit().success());
    let down = check(&port);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot connect"));
}

#[test]
fn bad_configuration_exits_2_without_echoing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path(), dir.path())
        .env("DATABASE_URL", "postgres://admin:pa55word@db/agents")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("unsupported scheme"), "{stdout}");
    assert!(!stdout.contains("pa55word"), "{stdout}");

    let output = Command::new(BIN).arg("frobnicate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains(agent_registry::VERSION));
}

/// Why the hardened run cannot happen here, if it cannot.
fn hardened_run_unavailable() -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root to create a mount namespace and switch to uid 1001".into());
    }
    for tool in ["unshare", "setpriv", "mount"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
        if !found {
            return Some(format!("{tool} (util-linux) is not installed"));
        }
    }
    // uid 1001 must be able to reach the binary.
    let mut dir = Path::new(BIN).parent();
    while let Some(d) = dir {
        let mode = std::fs::metadata(d)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        if mode & 0o001 == 0 {
            return Some(format!("{} is not searchable by other users", d.display()));
        }
        dir = d.parent();
    }
    None
}

/// The image's runtime conditions, reproduced without an image: a read-only root file system,
/// only the database directory writable (a tmpfs, like the Deployment's emptyDir on /tmp),
/// uid/gid 1001, no capabilities, no_new_privs, an empty environment, cwd `/`.
#[test]
fn runs_as_uid_1001_with_no_capabilities_on_a_read_only_root() {
    if let Some(why) = hardened_run_unavailable() {
        eprintln!("skipping: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("tmp");
    std::fs::create_dir(&db_dir).unwrap();
    let script = r#"set -e
mount -o remount,bind,ro /
mount -t tmpfs -o mode=1777,size=16m tmpfs "$1"
cd /
exec setpriv --reuid=1001 --regid=1001 --clear-groups --inh-caps=-all --bounding-set=-all \
    --no-new-privs env -i PORT=0 LISTEN_ADDR=127.0.0.1 "DATABASE_URL=sqlite://$1/agents.db" "$2"
"#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(&db_dir)
    .arg(BIN)
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let mut svc = Service::spawn(cmd);

    let status = std::fs::read_to_string(format!("/proc/{}/status", svc.child.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    assert!(field("Uid:").starts_with("1001\t"), "{status}");
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");

    let (status, body) = http(svc.addr, "GET", "/ready", &[], "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        svc.addr,
        "POST",
        "/api/v1/agent-registry/agents",
        &[],
        r#"{"name":"a","capabilities":["x"]}"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(
        svc.addr,
        "GET",
        "/api/v1/agent-registry/agents?capability=x&status=active",
        &[],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["total"], 1);

    svc.signal(Signal::SIGTERM);
    assert!(svc.wait_exit().success());
    // The tmpfs went away with the mount namespace: nothing reached the real directory.
    assert_eq!(std::fs::read_dir(&db_dir).unwrap().count(), 0);
}

#[test]
fn drain_is_bounded_by_the_shutdown_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), dir.path());
    cmd.env("AGENT_REGISTRY_TEST_HOOKS", "1")
        .env("SHUTDOWN_TIMEOUT_SECONDS", "1");
    let mut svc = Service::spawn(cmd);
    let addr = svc.addr;
    let stuck = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let request =
            format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nx-test-delay-ms: 30000\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        // The connection is closed without an answer when the process gives up on it.
        let _ = stream.read_to_end(&mut response);
        response
    });
    svc.wait_for_log("test hook: delaying request");
    let signalled = Instant::now();
    svc.signal(Signal::SIGTERM);
    let exit = svc.wait_exit();
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(
        took >= Duration::from_secs(1),
        "exited after {took:?}, before the timeout"
    );
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    assert!(
        stuck.join().unwrap().is_empty(),
        "the abandoned request got an answer"
    );
    assert!(svc.seen.iter().any(|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("shutdown timeout reached"))
    }));
}
