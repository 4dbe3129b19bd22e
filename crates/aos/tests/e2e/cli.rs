//! Smaller verbs: version, completion, create, get formats, delete, wait timeouts.

use super::support::{Aos, run_aos};

#[test]
fn completion_scripts_generate() {
    for (shell, needle) in [
        ("bash", "_aos()"),
        ("zsh", "#compdef aos"),
        ("fish", "complete -c aos"),
    ] {
        let run = run_aos(&["completion", shell], None);
        assert!(
            run.ok().contains(needle),
            "{shell}: {}",
            &run.stdout[..run.stdout.len().min(200)]
        );
        assert!(
            run.stdout.contains("apply"),
            "{shell} completion lacks subcommands"
        );
    }
}

#[test]
fn client_version_needs_no_server() {
    let run = run_aos(&["version", "--client"], None);
    assert_eq!(
        run.ok(),
        format!("Client Version: v{}\n", env!("CARGO_PKG_VERSION"))
    );
    let run = run_aos(&["--version"], None);
    assert!(run.ok().starts_with("aos "), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_verbs() {
    let tmp = tempfile::tempdir().unwrap();
    let aos = Aos::start(&tmp.path().join("data")).await;

    let version = aos.aos(&["version"]);
    let mut lines = version.ok().lines();
    assert!(lines.next().unwrap().starts_with("Client Version: v"));
    assert!(
        lines.next().unwrap().starts_with("Server Version: v"),
        "{}",
        version.stdout
    );

    assert_eq!(
        aos.aos(&["create", "namespace", "team"]).ok(),
        "namespace/team created\n"
    );
    let dup = aos.aos(&["create", "namespace", "team"]);
    assert_eq!(dup.code, 1);
    assert!(
        dup.stderr.starts_with("error: ") && dup.stderr.contains("already exists"),
        "{}",
        dup.stderr
    );

    // create -f from stdin, with -n for objects without a namespace.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels:\n    tier: web\ndata:\n  color: blue\n";
    assert_eq!(
        aos.aos_stdin(&["create", "-f", "-", "-n", "team"], Some(cm))
            .ok(),
        "configmap/settings created\n"
    );

    // A directory of manifests, recursively and sorted.
    let dir = tmp.path().join("manifests");
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: team\ndata: {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("a.json"),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"team"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("nested/c.yml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: team\n",
    )
    .unwrap();
    std::fs::write(dir.join("ignored.txt"), "not a manifest").unwrap();
    assert_eq!(
        aos.aos(&["apply", "-f", dir.to_str().unwrap()]).ok(),
        "configmap/a created\nconfigmap/b created\nconfigmap/c created\n"
    );

    // Apply semantics: a field removed from the manifest is removed from the object.
    let v1 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: team\ndata:\n  keep: \"1\"\n  drop: \"2\"\n";
    let v2 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: team\ndata:\n  keep: \"1\"\n";
    assert_eq!(
        aos.aos_stdin(&["apply", "-f", "-"], Some(v1)).ok(),
        "configmap/applied created\n"
    );
    assert_eq!(
        aos.aos_stdin(&["apply", "-f", "-"], Some(v2)).ok(),
        "configmap/applied configured\n"
    );
    assert_eq!(
        aos.aos_stdin(&["apply", "-f", "-"], Some(v2)).ok(),
        "configmap/applied unchanged\n"
    );
    let obj: serde_json::Value = serde_json::from_str(
        aos.aos(&["get", "configmap", "applied", "-n", "team", "-o", "json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(obj["data"], serde_json::json!({"keep": "1"}));
    assert_eq!(obj["kind"], "ConfigMap");
    assert!(
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // get: table, selector, names, -A, yaml.
    let table = aos.aos(&["get", "configmaps", "-n", "team", "-l", "tier=web"]);
    let rows: Vec<&str> = table.ok().lines().collect();
    assert_eq!(rows.len(), 2, "{}", table.stdout);
    assert!(rows[0].starts_with("NAME "), "{}", rows[0]);
    assert!(rows[1].starts_with("settings "), "{}", rows[1]);
    let all = aos.aos(&["get", "cm", "-A"]);
    assert!(
        all.ok()
            .lines()
            .next()
            .unwrap()
            .starts_with("NAMESPACE   NAME"),
        "{}",
        all.stdout
    );
    assert!(
        all.stdout
            .lines()
            .any(|l| l.starts_with("team ") && l.contains("settings")),
        "{}",
        all.stdout
    );
    assert_eq!(
        aos.aos(&["get", "cm", "a", "b", "-n", "team", "-o", "name"])
            .ok(),
        "configmap/a\nconfigmap/b\n"
    );
    let yaml = aos.aos(&["get", "cm/a", "cm/b", "-n", "team", "-o", "yaml"]);
    assert!(yaml.ok().contains("kind: List"), "{}", yaml.stdout);
    let ns_table = aos.aos(&["get", "namespace", "team"]);
    assert!(ns_table.ok().contains("Active"), "{}", ns_table.stdout);
    let described = aos.aos(&["describe", "namespace", "team"]);
    assert!(
        described.ok().contains("Status:       Active"),
        "{}",
        described.stdout
    );
    let described = aos.aos(&["describe", "configmap", "settings", "-n", "team"]);
    assert!(
        described.ok().contains("color: blue"),
        "{}",
        described.stdout
    );

    // wait: a condition that never comes times out with kubectl's message.
    let run = aos.aos(&[
        "wait",
        "--for=condition=Ready",
        "configmap/settings",
        "-n",
        "team",
        "--timeout=300ms",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        "error: timed out waiting for the condition on configmaps/settings"
    );

    // delete by name, by selector, by file; then the objects are gone.
    assert_eq!(
        aos.aos(&["delete", "configmap", "settings", "-n", "team"])
            .ok(),
        "configmap \"settings\" deleted\n"
    );
    aos.aos(&[
        "wait",
        "--for=delete",
        "configmap/settings",
        "-n",
        "team",
        "--timeout=5s",
    ])
    .ok();
    let gone = aos.aos(&["delete", "configmap", "settings", "-n", "team"]);
    assert_eq!(gone.code, 1);
    assert_eq!(
        gone.stderr.trim(),
        "error: configmaps \"settings\" not found"
    );
    aos.aos(&[
        "delete",
        "configmap",
        "settings",
        "-n",
        "team",
        "--ignore-not-found",
    ])
    .ok();
    assert_eq!(
        aos.aos(&["delete", "-f", dir.to_str().unwrap()]).ok(),
        "configmap \"a\" deleted\nconfigmap \"b\" deleted\nconfigmap \"c\" deleted\n"
    );
    let run = aos.aos(&["get", "configmaps", "-n", "team", "-o", "name"]);
    assert!(!run.ok().contains("configmap/a\n"), "{}", run.stdout);
}

/// The demo's objects, as `(apiVersion, kind, name)`, all in namespace agent-os.
const DEMO_OBJECTS: [(&str, &str, &str); 5] = [
    ("apps/v1", "Deployment", "agent-registry"),
    ("v1", "Secret", "agent-registry-secrets"),
    ("v1", "Service", "agent-registry"),
    (
        "networking.istio.io/v1beta1",
        "VirtualService",
        "agent-registry",
    ),
    (
        "networking.istio.io/v1beta1",
        "DestinationRule",
        "agent-registry",
    ),
];

/// Start `aos up --demo` (without the image build) and wait until the demo has logged how to
/// reach the pods, its last step.
async fn start_demo(data: &std::path::Path, port: u16) -> Aos {
    let (aos, _) = Aos::start_with(data, port, &["--demo", "--demo-skip-image-build"]).await;
    super::support::eventually(
        "the demo's last log line",
        std::time::Duration::from_secs(10),
        || async {
            aos.log()
                .contains("demo: through the gateway")
                .then_some(())
        },
    )
    .await;
    aos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_applies_the_seed_idempotently_and_sigterm_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // The same port for both starts: the kubeconfig written by the first names it.
    let port = super::support::free_port();
    let mut aos = start_demo(&data, port).await;
    let client = aos.client();
    for (api_version, kind, name) in DEMO_OBJECTS {
        let rt = super::support::rt(api_version, kind);
        let obj = client
            .get(rt, Some("agent-os"), name)
            .await
            .unwrap_or_else(|e| panic!("{kind} agent-os/{name}: {e}; log:\n{}", aos.log()));
        if kind == "Service" {
            assert_eq!(obj["spec"]["selector"]["app"], "agent-registry", "{obj:#}");
            assert_eq!(obj["spec"]["ports"][0]["port"], 3000, "{obj:#}");
            assert_eq!(obj["spec"]["ports"][0]["targetPort"], "http", "{obj:#}");
        }
        if kind == "Secret" {
            let data = obj["data"].as_object().expect("secret data");
            assert!(
                data.contains_key("database-url") && data.contains_key("redis-url"),
                "{obj:#}"
            );
        }
    }
    let status = aos.terminate(std::time::Duration::from_secs(15));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        aos.log()
    );
    let log = aos.log();
    assert!(log.contains("aos is ready"), "{log}");
    assert!(log.contains("demo: secret created"), "{log}");
    assert!(!log.contains("demo: apply failed"), "{log}");
    assert!(
        !log.contains("sqlite:///tmp") && !log.contains("redis://"),
        "a secret value reached the log:\n{log}"
    );
    assert!(log.contains("aos stopped"), "{log}");

    // A second start applies the same objects again: no duplicates, no errors.
    let mut again = start_demo(&data, port).await;
    let log = again.log();
    assert!(log.contains("demo: secret exists"), "{log}");
    for object in [
        "deployment.apps/agent-registry",
        "service/agent-registry",
        "virtualservice.networking.istio.io/agent-registry",
        "destinationrule.networking.istio.io/agent-registry",
    ] {
        let line = format!(r#"object={object} namespace="agent-os" outcome="unchanged""#);
        assert!(log.contains(&line), "{object} not unchanged:\n{log}");
    }
    assert!(!log.contains("demo: apply failed"), "{log}");
    assert!(!log.contains(" ERROR "), "{log}");
    let client = again.client();
    for (api_version, kind, name) in DEMO_OBJECTS {
        let rt = super::support::rt(api_version, kind);
        let list = client
            .list(rt, Some("agent-os"), &aos_client::ListParams::default())
            .await
            .expect("list");
        let same_name = list
            .items
            .iter()
            .filter(|o| o["metadata"]["name"] == name)
            .count();
        assert_eq!(same_name, 1, "{kind} {name}");
    }
    let status = again.terminate(std::time::Duration::from_secs(15));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        again.log()
    );
}

/// Every object of `examples/seed/` applies as `created`, then as `unchanged`: the Istio
/// manifests name `v1beta1` while the server answers in `v1`, which must not read as a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_the_seed_twice_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let aos = Aos::start(&tmp.path().join("data")).await;
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed");
    let seed = seed.to_str().unwrap();

    let first = aos.aos(&["apply", "-f", seed]);
    let lines: Vec<&str> = first.ok().lines().collect();
    assert!(lines.len() >= 5, "{}", first.stdout);
    assert!(
        lines.iter().all(|l| l.ends_with(" created")),
        "{}",
        first.stdout
    );

    let second = aos.aos(&["apply", "-f", seed]);
    let again: Vec<&str> = second.ok().lines().collect();
    assert_eq!(again.len(), lines.len(), "{}", second.stdout);
    assert!(
        again.iter().all(|l| l.ends_with(" unchanged")),
        "{}",
        second.stdout
    );
    for kind in ["virtualservice", "destinationrule"] {
        let obj: serde_json::Value = serde_json::from_str(
            aos.aos(&[
                "get",
                kind,
                "agent-registry",
                "-n",
                "agent-os",
                "-o",
                "json",
            ])
            .ok(),
        )
        .unwrap();
        assert_eq!(obj["metadata"]["generation"], 1, "{obj:#}");
    }
}
