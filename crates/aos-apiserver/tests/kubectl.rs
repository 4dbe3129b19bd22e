//! Real kubectl against the server (skipped when kubectl is not on PATH).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Kubectl<'a> {
    kubeconfig: &'a Path,
    cache: tempfile::TempDir,
}

impl Kubectl<'_> {
    /// Run kubectl; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args);
        cmd.env("HOME", self.cache.path()).env_remove("KUBECONFIG");
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("kubectl timed out")
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a).await).unwrap()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_end_to_end() {
    if !kubectl_available() {
        eprintln!("skipped: kubectl not found");
        return;
    }
    let h = start().await;
    let k = Kubectl {
        kubeconfig: &h.kubeconfig,
        cache: tempfile::tempdir().unwrap(),
    };
    let files = tempfile::tempdir().unwrap();
    let d = files.path();

    // Namespaces. (`kubectl create namespace NAME` sends protobuf, which aos does not
    // decode; manifests go as JSON.)
    let ns = write(
        d,
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: agent-os\n",
    );
    let out = k.ok(&["create", "-f", &ns]).await;
    assert!(out.contains("namespace/agent-os created"), "{out}");
    let out = k.ok(&["get", "namespaces"]).await;
    assert!(out.contains("agent-os") && out.contains("default"), "{out}");

    // The seed's Deployment: create -f, get, describe, apply (create, then change), scale.
    let seed = include_str!("data/deployment.yaml");
    let deploy = write(d, "deployment.yaml", seed);
    let (ok, out, err) = k.run(&["create", "-f", &deploy]).await;
    assert!(ok, "create -f: {out}\n{err}");
    assert!(out.contains("created"), "{out}");
    let out = k.ok(&["get", "deployments", "-n", "agent-os"]).await;
    assert!(out.contains("agent-registry"), "{out}");
    let out = k
        .ok(&["describe", "deployment", "agent-registry", "-n", "agent-os"])
        .await;
    assert!(
        out.contains("agent-registry") && out.contains("Replicas"),
        "{out}"
    );
    let out = k.ok(&["apply", "-f", &deploy]).await;
    assert!(out.contains("agent-registry"), "{out}");
    let changed = seed.replacen("replicas: 3", "replicas: 4", 1);
    assert_ne!(changed, seed);
    let deploy2 = write(d, "deployment2.yaml", &changed);
    let out = k.ok(&["apply", "-f", &deploy2]).await;
    assert!(out.contains("configured"), "{out}");
    let obj = k
        .json(&["get", "deployment", "agent-registry", "-n", "agent-os"])
        .await;
    assert_eq!(obj["spec"]["replicas"], 4);
    let out = k
        .ok(&[
            "scale",
            "deployment",
            "agent-registry",
            "-n",
            "agent-os",
            "--replicas=2",
        ])
        .await;
    assert!(out.contains("scaled"), "{out}");
    let obj = k
        .json(&["get", "deployment", "agent-registry", "-n", "agent-os"])
        .await;
    assert_eq!(obj["spec"]["replicas"], 2);

    // ConfigMaps, Secrets, Services, Pods, ReplicaSets, Events: apply (create), get, describe, delete.
    let manifests = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: agent-os
data:
  a: "1"
---
apiVersion: v1
kind: Secret
metadata:
  name: sec
  namespace: agent-os
type: Opaque
stringData:
  password: hunter2
---
apiVersion: v1
kind: Service
metadata:
  name: svc
  namespace: agent-os
spec:
  selector:
    app: agent-registry
  ports:
  - port: 80
    targetPort: 3000
---
apiVersion: v1
kind: Pod
metadata:
  name: pod1
  namespace: agent-os
  labels:
    app: solo
spec:
  containers:
  - name: c
    image: nginx:1.27
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: rs1
  namespace: agent-os
spec:
  replicas: 1
  selector:
    matchLabels:
      app: rs1
  template:
    metadata:
      labels:
        app: rs1
    spec:
      containers:
      - name: c
        image: nginx:1.27
---
apiVersion: v1
kind: Event
metadata:
  name: ev1
  namespace: agent-os
involvedObject:
  kind: Pod
  name: pod1
  namespace: agent-os
reason: Testing
message: hello
type: Normal
"#;
    let many = write(d, "many.yaml", manifests);
    let out = k.ok(&["apply", "-f", &many]).await;
    for n in [
        "configmap/cfg",
        "secret/sec",
        "service/svc",
        "pod/pod1",
        "replicaset.apps/rs1",
        "event/ev1",
    ] {
        assert!(out.contains(n), "{n} missing in apply output: {out}");
    }
    let changed = manifests.replace("a: \"1\"", "a: \"2\"");
    let many2 = write(d, "many2.yaml", &changed);
    let out = k.ok(&["apply", "-f", &many2]).await;
    assert!(out.contains("configmap/cfg configured"), "{out}");
    let cm = k.json(&["get", "configmap", "cfg", "-n", "agent-os"]).await;
    assert_eq!(cm["data"]["a"], "2");
    for kind in [
        "configmaps",
        "secrets",
        "services",
        "pods",
        "replicasets",
        "events",
    ] {
        let out = k.ok(&["get", kind, "-n", "agent-os"]).await;
        assert!(out.lines().count() >= 2, "get {kind}: {out}");
        k.ok(&["describe", kind, "-n", "agent-os"]).await;
    }
    let out = k
        .ok(&[
            "scale",
            "replicaset",
            "rs1",
            "-n",
            "agent-os",
            "--replicas=3",
        ])
        .await;
    assert!(out.contains("scaled"), "{out}");
    let out = k.ok(&["get", "all", "-n", "agent-os"]).await;
    assert!(out.contains("pod/pod1"), "{out}");

    // get -w: the first event arrives, then we stop kubectl.
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&h.kubeconfig)
        .arg("--cache-dir")
        .arg(k.cache.path())
        .args(["get", "configmaps", "-n", "agent-os", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("cfg") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(
            deadline,
            tokio::io::AsyncReadExt::read(&mut stdout, &mut buf),
        )
        .await
        .expect("no output from kubectl get -w")
        .unwrap();
        assert!(n > 0, "kubectl get -w ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    child.kill().await.unwrap();

    // Delete.
    for (kind, name) in [
        ("pod", "pod1"),
        ("configmap", "cfg"),
        ("secret", "sec"),
        ("service", "svc"),
        ("replicaset", "rs1"),
        ("event", "ev1"),
        ("deployment", "agent-registry"),
    ] {
        let out = k.ok(&["delete", kind, name, "-n", "agent-os"]).await;
        assert!(out.contains("deleted"), "{out}");
    }
    let (ok, _, err) = k.run(&["get", "configmap", "cfg", "-n", "agent-os"]).await;
    assert!(
        !ok && err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    let out = k
        .ok(&["delete", "namespace", "agent-os", "--wait=false"])
        .await;
    assert!(out.contains("deleted"), "{out}");
    h.stop().await;
}
