//! Errors read as one clear line naming the file, the document and the field path; bad
//! usage exits 2.

use super::support::{Aos, Run, data, run_aos};

fn error_lines(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_errors_name_file_document_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let aos = Aos::start(&tmp.path().join("data")).await;
    let dir = tmp.path().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    aos.aos(&["create", "namespace", "agent-os"]).ok();

    // The seed's VirtualService is not valid YAML at line 52.
    let vs = dir.join("virtualservice.yaml");
    std::fs::copy(data("verbatim-virtualservice.yaml"), &vs).unwrap();
    let run = aos.aos(&["apply", "-f", vs.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    let lines = error_lines(&run);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].starts_with(&format!("error: {}:52:", vs.display())),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");

    let deployment = std::fs::read_to_string(data("deployment.yaml")).unwrap();

    // Invalid replicas.
    let bad = dir.join("deployment.yaml");
    std::fs::write(&bad, deployment.replace("replicas: 3", "replicas: -1")).unwrap();
    let run = aos.aos(&["apply", "-f", bad.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    let lines = error_lines(&run);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].starts_with(&format!(
            "error: {}: document 1 (Deployment agent-os/agent-registry): spec.replicas: ",
            bad.display()
        )),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("-1"), "{}", lines[0]);

    // A selector that does not match the template's labels.
    let bad = dir.join("selector.yaml");
    std::fs::write(
        &bad,
        deployment.replacen(
            "      app: agent-registry\n  template:",
            "      app: something-else\n  template:",
            1,
        ),
    )
    .unwrap();
    let run = aos.aos(&["apply", "-f", bad.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    let lines = error_lines(&run);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].starts_with(&format!(
            "error: {}: document 1 (Deployment agent-os/agent-registry): spec.",
            bad.display()
        )),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("selector"), "{}", lines[0]);

    // An unknown kind, next to a good document that still goes in.
    let bad = dir.join("x.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Foo\nmetadata:\n  name: f\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good\ndata:\n  a: b\n",
    )
    .unwrap();
    let run = aos.aos(&["apply", "-f", bad.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        error_lines(&run),
        vec![
            format!(
                "error: {}: document 1: unknown kind \"Foo\" in apiVersion \"v1\"",
                bad.display()
            )
            .as_str()
        ]
    );
    assert_eq!(run.stdout, "configmap/good created\n");

    // Server-side errors are one line too.
    let run = aos.aos(&["get", "deployment", "nope", "-n", "agent-os"]);
    assert_eq!(run.code, 1);
    assert_eq!(error_lines(&run).len(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("not found"), "{}", run.stderr);
    let run = aos.aos(&["get", "frobs"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.trim(),
        "error: the server doesn't have a resource type \"frobs\""
    );
    let missing = dir.join("missing.yaml");
    let run = aos.aos(&["apply", "-f", missing.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.trim(),
        format!("error: the path \"{}\" does not exist", missing.display())
    );
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["frobnicate"][..],
        &["get"][..],
        &["apply"][..],
        &["scale", "deployment/x"][..],
        &["wait", "deployment/x", "--for=jsonpath={.x}"][..],
        &["up", "--api-listen", "not-an-address"][..],
        &["get", "pods", "--output", "xml"][..],
        &["completion", "tcsh"][..],
    ] {
        let run = run_aos(args, None);
        assert_eq!(run.code, 2, "aos {args:?}: {run:?}");
        assert!(
            run.stderr.starts_with("error: "),
            "aos {args:?}: {}",
            run.stderr
        );
    }
    // Usage errors the CLI finds after parsing exit 2 too.
    let run = run_aos(
        &[
            "--kubeconfig",
            "/nonexistent",
            "scale",
            "deployment",
            "--replicas=1",
        ],
        None,
    );
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn missing_kubeconfig_is_a_clear_error() {
    let run = run_aos(
        &[
            "--kubeconfig",
            "/nonexistent/kubeconfig.yaml",
            "get",
            "pods",
        ],
        None,
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: kubeconfig /nonexistent/kubeconfig.yaml not found"),
        "{}",
        run.stderr
    );
}
