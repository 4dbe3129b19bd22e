//! End-to-end tests of `aos image`: the real binary, each run on its own temp data dir, building
//! the agent-registry image from the repository's Dockerfile, exchanging archives with skopeo,
//! and refusing bad input without touching the store.
//!
//! The agent-registry build needs the static (musl) binary: `scripts/test.sh` builds it once and
//! exports its path as `AOS_TEST_AGENT_REGISTRY_BIN`; without it those tests say so and skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The `aos` binary under test.
const AOS: &str = env!("CARGO_BIN_EXE_aos");
/// The variable scripts/test.sh sets to the static agent-registry binary.
const BIN_VAR: &str = "AOS_TEST_AGENT_REGISTRY_BIN";
const IMAGE: &str = "agent-registry:1.0.0";

/// One CLI run's result.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "aos failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }
}

/// `aos image --data-dir DATA ARGS...`
fn image(data: &Path, args: &[&str]) -> Run {
    let out = Command::new(AOS)
        .arg("image")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .output()
        .expect("run aos");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The static agent-registry binary, or `None` after printing why the test skips.
fn agent_registry_bin() -> Option<PathBuf> {
    match std::env::var_os(BIN_VAR) {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "{BIN_VAR}={} is not a file", path.display());
            Some(path)
        }
        _ => {
            eprintln!("skipped: {BIN_VAR} not set (scripts/test.sh builds it)");
            None
        }
    }
}

/// A temp copy of `images/agent-registry` (Dockerfile, .dockerignore) with the binary in
/// `context/`.
fn agent_registry_context(tmp: &Path, bin: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/agent-registry");
    let dir = tmp.join("agent-registry");
    std::fs::create_dir_all(dir.join("context")).unwrap();
    for name in ["Dockerfile", ".dockerignore"] {
        std::fs::copy(src.join(name), dir.join(name))
            .unwrap_or_else(|e| panic!("copy {name}: {e}"));
    }
    std::fs::copy(bin, dir.join("context/agent-registry")).expect("copy the binary");
    dir
}

/// Build the agent-registry image into `data`; returns the digest (the last stdout line).
fn build_agent_registry(data: &Path, context: &Path) -> String {
    let run = image(data, &["build", "-t", IMAGE, context.to_str().unwrap()]);
    let digest = run.ok().lines().last().unwrap_or_default().to_string();
    assert!(digest.starts_with("sha256:"), "{}", run.stdout);
    digest
}

fn inspect(data: &Path, reference: &str) -> Value {
    serde_json::from_str(image(data, &["inspect", reference]).ok()).expect("inspect prints JSON")
}

#[test]
fn agent_registry_builds_reproducibly_with_its_config() {
    let Some(bin) = agent_registry_bin() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let context = agent_registry_context(tmp.path(), &bin);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let first = build_agent_registry(&a, &context);
    let second = build_agent_registry(&b, &context);
    assert_eq!(first, second, "two builds of the same inputs differ");

    let ls = image(&a, &["ls"]);
    let row = ls
        .ok()
        .lines()
        .find(|l| l.starts_with("agent-registry "))
        .unwrap_or_else(|| panic!("no agent-registry row in:\n{}", ls.stdout));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..2], ["agent-registry", "1.0.0"], "{row}");

    let v = inspect(&a, IMAGE);
    assert_eq!(v["digest"], first.as_str(), "{v:#}");
    let config = &v["config"]["config"];
    let user = config["User"].as_str().unwrap_or_default();
    assert!(
        user == "1001" || user.starts_with("1001:"),
        "User {user:?}: {config:#}"
    );
    assert!(
        config["ExposedPorts"].get("3000/tcp").is_some(),
        "{config:#}"
    );
    assert!(
        config["Healthcheck"]["Test"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{config:#}"
    );
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/app/agent-registry"])
    );
}

#[test]
fn skopeo_reads_the_export_and_its_docker_archive_imports_back() {
    let Some(bin) = agent_registry_bin() else {
        return;
    };
    let skopeo_works = Command::new("skopeo")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !skopeo_works {
        eprintln!("skipped: skopeo not found (scripts/prereqs.sh installs Debian's skopeo)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let context = agent_registry_context(tmp.path(), &bin);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    build_agent_registry(&a, &context);
    let config_digest = inspect(&a, IMAGE)["configDigest"].clone();
    assert!(config_digest.is_string(), "no configDigest");

    let oci = tmp.path().join("x.tar");
    image(&a, &["export", IMAGE, "-o", oci.to_str().unwrap()]).ok();
    let skopeo = |args: &[String]| {
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "--tmpdir"])
            .arg(tmp.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let seen: Value = serde_json::from_str(&skopeo(&[
        "inspect".into(),
        "--config".into(),
        format!("oci-archive:{}", oci.display()),
    ]))
    .expect("skopeo inspect --config prints JSON");
    assert_eq!(
        seen["config"]["ExposedPorts"]["3000/tcp"],
        serde_json::json!({})
    );
    let raw: Value = serde_json::from_str(&skopeo(&[
        "inspect".into(),
        "--raw".into(),
        format!("oci-archive:{}", oci.display()),
    ]))
    .expect("skopeo inspect --raw prints JSON");
    assert_eq!(raw["config"]["digest"], config_digest, "{raw:#}");

    let docker = tmp.path().join("y.tar");
    skopeo(&[
        "copy".into(),
        "--quiet".into(),
        format!("oci-archive:{}", oci.display()),
        format!("docker-archive:{}:{IMAGE}", docker.display()),
    ]);
    let loaded = image(&b, &["import", docker.to_str().unwrap()]);
    assert!(
        loaded.ok().contains(&format!("Loaded image: {IMAGE}")),
        "{}",
        loaded.stdout
    );
    assert_eq!(inspect(&b, IMAGE)["configDigest"], config_digest);
}

/// Bad input: exit 1, one clear first line on stderr, and `aos image ls` as before.
#[test]
fn bad_input_fails_cleanly_and_leaves_the_store_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Something in the store to keep: a small image from a scratch build.
    let good = tmp.path().join("good");
    std::fs::create_dir_all(&good).unwrap();
    std::fs::write(good.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(
        good.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\nUSER 1001\nHEALTHCHECK NONE\n",
    )
    .unwrap();
    image(&data, &["build", "-t", "good:1", good.to_str().unwrap()]).ok();
    let before = image(&data, &["ls"]).ok().to_string();
    assert!(before.contains("good "), "{before}");

    // A truncated archive: the first half of a real export.
    let full = tmp.path().join("full.tar");
    image(&data, &["export", "good:1", "-o", full.to_str().unwrap()]).ok();
    let bytes = std::fs::read(&full).unwrap();
    let truncated = tmp.path().join("truncated.tar");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    image(&data, &["rm", "good:1"]).ok();
    image(&data, &["import", full.to_str().unwrap(), "-t", "good:1"]).ok();

    let unknown = tmp.path().join("unknown");
    std::fs::create_dir_all(&unknown).unwrap();
    std::fs::write(unknown.join("Dockerfile"), "FROM scratch\nFROBNICATE /x\n").unwrap();

    let escape = tmp.path().join("escape");
    std::fs::create_dir_all(&escape).unwrap();
    std::fs::write(tmp.path().join("x"), "outside the context\n").unwrap();
    std::fs::write(escape.join("Dockerfile"), "FROM scratch\nCOPY ../x /x\n").unwrap();

    let cases: [(&str, Vec<&str>, &[&str]); 3] = [
        (
            "truncated archive",
            vec!["import", truncated.to_str().unwrap()],
            &["truncated", "unexpected end", "eof", "archive"],
        ),
        (
            "unknown instruction",
            vec!["build", "-t", "bad:1", unknown.to_str().unwrap()],
            &["frobnicate"],
        ),
        (
            "COPY ../x",
            vec!["build", "-t", "bad:2", escape.to_str().unwrap()],
            &["../x", "outside", "context"],
        ),
    ];
    for (what, args, needles) in cases {
        let run = image(&data, &args);
        assert_eq!(run.code, 1, "{what}: exit {}\n{}", run.code, run.stderr);
        // Progress lines may come first; exactly one line is the error.
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{what}: {}", run.stderr);
        let first = errors[0];
        let lower = first.to_lowercase();
        assert!(
            needles.iter().any(|n| lower.contains(n)),
            "{what}: {first:?} names none of {needles:?}"
        );
        assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
        assert_eq!(
            image(&data, &["ls"]).ok(),
            before,
            "{what} changed the store"
        );
    }
}
