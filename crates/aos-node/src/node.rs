//! The Node object and its heartbeats: registration with capacity, labels, taints, addresses
//! and `nodeInfo`; a `coordination.k8s.io/v1` Lease in `kube-node-lease` renewed every
//! heartbeat, and the Node's `Ready` condition with its `lastHeartbeatTime`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use aos_controller::cluster::{Cluster, ClusterError, Patch};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::NodeConfig;
use crate::kinds::{LEASES, NAMESPACES, NODES};

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// `status.nodeInfo.containerRuntimeVersion`.
pub const RUNTIME_VERSION: &str = "aos://0.1.0";
/// How long a Lease is valid without renewal.
pub const LEASE_DURATION_SECONDS: i64 = 40;
/// The Node annotation with the lowercase hex SHA-256 of the agent's serving certificate
/// (DER), which the API server pins when it calls the agent.
pub const SERVING_CERT_ANNOTATION: &str = "node.aos.dev/serving-cert-sha256";

/// A failed registration or heartbeat.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The API refused or could not be reached.
    #[error("{what}: {source}")]
    Api {
        /// What was attempted.
        what: String,
        /// Why it failed.
        source: ClusterError,
    },
}

fn api(what: impl Into<String>) -> impl FnOnce(ClusterError) -> NodeError {
    let what = what.into();
    move |source| NodeError::Api { what, source }
}

/// What the machine offers, read from `/proc` and `/etc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    /// Logical CPUs.
    pub cpus: u64,
    /// Memory in KiB (`MemTotal`).
    pub memory_kib: u64,
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub os_image: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// The boot id.
    pub boot_id: String,
    /// The host name.
    pub hostname: String,
    /// GOARCH-style architecture (`amd64`, `arm64`).
    pub architecture: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl MachineInfo {
    /// Read the running machine.
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpus = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count() as u64;
        let cpus = if cpus == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
        } else {
            cpus
        };
        let memory_kib =
            parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default());
        let os_image = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "Linux".to_owned());
        Self {
            cpus,
            memory_kib,
            kernel_version: read_trim("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read_trim("/etc/machine-id"),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            hostname: read_trim("/proc/sys/kernel/hostname"),
            architecture: go_arch(std::env::consts::ARCH).to_owned(),
        }
    }
}

/// `MemTotal` in KiB.
pub fn parse_meminfo(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Rust's architecture names as Kubernetes spells them.
pub fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The address other machines would see: the source address of the default route (no packet
/// is sent), else loopback.
pub fn detect_node_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// RFC 3339 with seconds (`metav1.Time`).
pub fn now_time() -> String {
    format_time(jiff::Timestamp::now())
}

/// A timestamp as `metav1.Time`.
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// RFC 3339 with microseconds (`metav1.MicroTime`).
pub fn now_micro_time() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// Registers the Node and keeps it alive.
pub struct NodeRegistrar {
    cluster: Arc<dyn Cluster>,
    config: NodeConfig,
    machine: MachineInfo,
    node_ip: IpAddr,
    /// When `Ready` last changed (kept across heartbeats).
    ready_since: String,
    /// Where the agent's HTTPS server listens, and its certificate's SHA-256.
    serving: Option<(u16, String)>,
}

impl std::fmt::Debug for NodeRegistrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRegistrar")
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

impl NodeRegistrar {
    /// A registrar for the machine it runs on.
    pub fn new(cluster: Arc<dyn Cluster>, config: NodeConfig) -> Self {
        let machine = MachineInfo::read();
        Self::with_machine(cluster, config, machine)
    }

    /// A registrar with given machine facts (tests).
    pub fn with_machine(
        cluster: Arc<dyn Cluster>,
        config: NodeConfig,
        machine: MachineInfo,
    ) -> Self {
        let node_ip = config.node_ip.unwrap_or_else(detect_node_ip);
        Self {
            cluster,
            config,
            machine,
            node_ip,
            ready_since: now_time(),
            serving: None,
        }
    }

    /// Publish the agent's HTTPS server: its port in `daemonEndpoints.kubeletEndpoint.Port`,
    /// its certificate's SHA-256 in the [`SERVING_CERT_ANNOTATION`], and, when it listens on a
    /// specific address, that address as the `InternalIP` (the API server connects there).
    pub fn with_serving(mut self, listen: SocketAddr, cert_sha256: impl Into<String>) -> Self {
        if !listen.ip().is_unspecified() {
            if self.config.node_ip.is_some_and(|ip| ip != listen.ip()) {
                tracing::info!(node_ip = %self.node_ip, listen = %listen, "publishing the agent's listen address as the node's InternalIP");
            }
            self.node_ip = listen.ip();
        }
        self.serving = Some((listen.port(), cert_sha256.into()));
        self
    }

    /// The node's address.
    pub fn node_ip(&self) -> IpAddr {
        self.node_ip
    }

    /// The labels the Node carries.
    pub fn labels(&self) -> serde_json::Map<String, Value> {
        let mut l = serde_json::Map::new();
        l.insert(
            "kubernetes.io/hostname".into(),
            json!(self.config.node_name),
        );
        l.insert("kubernetes.io/os".into(), json!("linux"));
        l.insert(
            "kubernetes.io/arch".into(),
            json!(self.machine.architecture),
        );
        l.insert("beta.kubernetes.io/os".into(), json!("linux"));
        l.insert(
            "beta.kubernetes.io/arch".into(),
            json!(self.machine.architecture),
        );
        for (k, v) in &self.config.labels {
            l.insert(k.clone(), json!(v));
        }
        l
    }

    fn resources(&self) -> Value {
        json!({
            "cpu": self.machine.cpus.to_string(),
            "memory": format!("{}Ki", self.machine.memory_kib),
            "pods": self.config.max_pods.to_string(),
        })
    }

    /// The Node's `status`.
    pub fn status(&self) -> Value {
        let now = now_time();
        let condition = |type_: &str, status: &str, reason: &str, message: &str| {
            json!({
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self.ready_since,
            })
        };
        json!({
            "capacity": self.resources(),
            "allocatable": self.resources(),
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "node agent has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "node agent has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "node agent has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "aos node agent is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.node_ip.to_string()},
                {"type": "Hostname", "address": self.config.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.serving.as_ref().map_or(0, |s| s.0)}},
            "nodeInfo": {
                "machineID": self.machine.machine_id,
                "systemUUID": self.machine.machine_id,
                "bootID": self.machine.boot_id,
                "kernelVersion": self.machine.kernel_version,
                "osImage": self.machine.os_image,
                "containerRuntimeVersion": RUNTIME_VERSION,
                "kubeletVersion": concat!("v", env!("CARGO_PKG_VERSION"), "-aos"),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": self.machine.architecture,
            },
        })
    }

    fn spec(&self) -> Value {
        json!({
            "podCIDR": self.config.pod_cidr,
            "podCIDRs": [self.config.pod_cidr],
            "taints": self.config.taints.iter().map(|t| t.to_value()).collect::<Vec<_>>(),
        })
    }

    /// Create the Node, or bring an existing one's labels, taints and status up to date.
    /// Returns the Node's uid.
    pub async fn register(&self) -> Result<String, NodeError> {
        let name = self.config.node_name.as_str();
        let node = match self.cluster.get(&NODES, None, name).await {
            Ok(existing) => {
                let patch = json!({
                    "metadata": {
                        "labels": Value::Object(self.labels()),
                        // A pin left by an earlier agent that served goes with it (null).
                        "annotations": {
                            SERVING_CERT_ANNOTATION: self.serving.as_ref().map(|s| s.1.clone()),
                        },
                    },
                    "spec": self.spec(),
                });
                let _ = existing;
                self.cluster
                    .patch(&NODES, None, name, &Patch::Merge(patch), None)
                    .await
                    .map_err(api(format!("updating node {name}")))?
            }
            Err(e) if e.is_not_found() => {
                let mut obj = json!({
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name, "labels": Value::Object(self.labels())},
                    "spec": self.spec(),
                    "status": self.status(),
                });
                if let Some((_, sha)) = &self.serving {
                    obj["metadata"]["annotations"] = json!({SERVING_CERT_ANNOTATION: sha});
                }
                match self.cluster.create(&NODES, None, &obj).await {
                    Ok(n) => n,
                    Err(e) if e.is_already_exists() => {
                        self.cluster
                            .get(&NODES, None, name)
                            .await
                            .map_err(api(format!("reading node {name}")))?
                    }
                    Err(e) => return Err(api(format!("creating node {name}"))(e)),
                }
            }
            Err(e) => return Err(api(format!("reading node {name}"))(e)),
        };
        self.update_status().await?;
        tracing::info!(node = name, ip = %self.node_ip, "node registered");
        Ok(node
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// Write the Node's status (conditions with a fresh heartbeat).
    pub async fn update_status(&self) -> Result<(), NodeError> {
        let name = self.config.node_name.as_str();
        self.cluster
            .patch(
                &NODES,
                None,
                name,
                &Patch::Merge(json!({"status": self.status()})),
                Some("status"),
            )
            .await
            .map_err(api(format!("updating status of node {name}")))?;
        Ok(())
    }

    /// Create or renew the node's Lease (and its namespace when missing).
    pub async fn renew_lease(&self, node_uid: &str) -> Result<(), NodeError> {
        let name = self.config.node_name.as_str();
        let ns = Some(LEASE_NAMESPACE);
        match self.cluster.get(&LEASES, ns, name).await {
            Ok(mut lease) => {
                lease["spec"]["holderIdentity"] = json!(name);
                lease["spec"]["leaseDurationSeconds"] = json!(LEASE_DURATION_SECONDS);
                lease["spec"]["renewTime"] = json!(now_micro_time());
                self.cluster
                    .replace(&LEASES, ns, name, &lease)
                    .await
                    .map_err(api(format!("renewing lease {LEASE_NAMESPACE}/{name}")))?;
            }
            Err(e) if e.is_not_found() => {
                self.ensure_lease_namespace().await?;
                let mut lease = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
                    "spec": {
                        "holderIdentity": name,
                        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                        "renewTime": now_micro_time(),
                    },
                });
                if !node_uid.is_empty() {
                    lease["metadata"]["ownerReferences"] = json!([{
                        "apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid,
                    }]);
                }
                match self.cluster.create(&LEASES, ns, &lease).await {
                    Ok(_) => {}
                    Err(e) if e.is_already_exists() => {}
                    Err(e) => {
                        return Err(api(format!("creating lease {LEASE_NAMESPACE}/{name}"))(e));
                    }
                }
            }
            Err(e) => return Err(api(format!("reading lease {LEASE_NAMESPACE}/{name}"))(e)),
        }
        Ok(())
    }

    async fn ensure_lease_namespace(&self) -> Result<(), NodeError> {
        match self.cluster.get(&NAMESPACES, None, LEASE_NAMESPACE).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(api(format!("reading namespace {LEASE_NAMESPACE}"))(e)),
        }
        let ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NAMESPACE}});
        match self.cluster.create(&NAMESPACES, None, &ns).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => Err(api(format!("creating namespace {LEASE_NAMESPACE}"))(e)),
        }
    }

    /// Register, then heartbeat every `heartbeat_interval` until `cancel`; errors are logged
    /// and retried at the next beat.
    pub async fn run(self, cancel: CancellationToken) {
        let mut node_uid = None;
        let mut tick = tokio::time::interval(self.config.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let uid = match &node_uid {
                Some(uid) => {
                    if let Err(e) = self.update_status().await {
                        tracing::warn!(error = %e, "node heartbeat failed");
                        if matches!(&e, NodeError::Api { source, .. } if source.is_not_found()) {
                            // Someone deleted the Node: register again.
                            node_uid = None;
                        }
                        continue;
                    }
                    uid
                }
                None => match self.register().await {
                    Ok(uid) => node_uid.insert(uid),
                    Err(e) => {
                        tracing::warn!(error = %e, "node registration failed; retrying");
                        continue;
                    }
                },
            };
            if let Err(e) = self.renew_lease(uid).await {
                tracing::warn!(error = %e, "lease renewal failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_controller::cluster::fake::FakeCluster;

    fn machine() -> MachineInfo {
        MachineInfo {
            cpus: 2,
            memory_kib: 4_000_000,
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            hostname: "h".into(),
            architecture: "amd64".into(),
        }
    }

    fn config() -> NodeConfig {
        let mut c = NodeConfig::new("node-1", "/tmp/unused", "/bin/false");
        c.labels.insert("agent.os".into(), "linux".into());
        c.taints
            .push(crate::config::Taint::parse("dedicated=agents:NoSchedule").unwrap());
        c.node_ip = Some("192.168.1.5".parse().unwrap());
        c
    }

    #[test]
    fn parsers() {
        assert_eq!(
            parse_meminfo("MemTotal:       8048260 kB\nMemFree: 1 kB\n"),
            8048260
        );
        assert_eq!(go_arch("x86_64"), "amd64");
        let info = MachineInfo::read();
        assert!(info.cpus >= 1);
        assert!(info.memory_kib > 0);
        assert!(now_micro_time().contains('.'));
    }

    #[tokio::test]
    async fn registers_node_and_lease_then_renews() {
        let cluster = FakeCluster::new();
        let reg = NodeRegistrar::with_machine(cluster.clone(), config(), machine());
        let uid = reg.register().await.unwrap();
        assert!(!uid.is_empty());
        let node = cluster.object(&NODES, None, "node-1").unwrap();
        let labels = &node["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], "node-1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels["agent.os"], "linux");
        assert_eq!(node["spec"]["taints"][0]["key"], "dedicated");
        let status = &node["status"];
        assert_eq!(status["capacity"]["cpu"], "2");
        assert_eq!(status["capacity"]["memory"], "4000000Ki");
        assert_eq!(status["allocatable"]["pods"], "110");
        assert_eq!(status["nodeInfo"]["containerRuntimeVersion"], "aos://0.1.0");
        assert_eq!(status["nodeInfo"]["kernelVersion"], "6.1.0");
        assert_eq!(status["addresses"][0]["address"], "192.168.1.5");
        assert_eq!(status["addresses"][1]["type"], "Hostname");
        let ready = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");

        reg.renew_lease(&uid).await.unwrap();
        assert!(cluster.object(&NAMESPACES, None, LEASE_NAMESPACE).is_some());
        let lease = cluster
            .object(&LEASES, Some(LEASE_NAMESPACE), "node-1")
            .unwrap();
        assert_eq!(lease["spec"]["holderIdentity"], "node-1");
        assert_eq!(lease["metadata"]["ownerReferences"][0]["uid"], uid);
        let first = lease["spec"]["renewTime"].clone();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        reg.renew_lease(&uid).await.unwrap();
        let lease = cluster
            .object(&LEASES, Some(LEASE_NAMESPACE), "node-1")
            .unwrap();
        assert_ne!(lease["spec"]["renewTime"], first);

        // A second registration keeps the object and updates labels.
        let mut c = config();
        c.labels.insert("zone".into(), "a".into());
        let again = NodeRegistrar::with_machine(cluster.clone(), c, machine());
        assert_eq!(again.register().await.unwrap(), uid);
        let node = cluster.object(&NODES, None, "node-1").unwrap();
        assert_eq!(node["metadata"]["labels"]["zone"], "a");
    }

    #[tokio::test]
    async fn publishes_the_serving_endpoint_and_pin() {
        let cluster = FakeCluster::new();
        let listen: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        let reg = NodeRegistrar::with_machine(cluster.clone(), config(), machine())
            .with_serving(listen, "ab".repeat(32));
        assert_eq!(
            reg.node_ip(),
            listen.ip(),
            "a specific listen address is the InternalIP"
        );
        reg.register().await.unwrap();
        let node = cluster.object(&NODES, None, "node-1").unwrap();
        assert_eq!(
            node["metadata"]["annotations"][SERVING_CERT_ANNOTATION],
            "ab".repeat(32)
        );
        assert_eq!(
            node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            41234
        );
        assert_eq!(node["status"]["addresses"][0]["address"], "127.0.0.1");

        // A restart on another port with a new certificate updates the Node in place.
        let reg = NodeRegistrar::with_machine(cluster.clone(), config(), machine())
            .with_serving("127.0.0.1:41235".parse().unwrap(), "cd".repeat(32));
        reg.register().await.unwrap();
        let node = cluster.object(&NODES, None, "node-1").unwrap();
        assert_eq!(
            node["metadata"]["annotations"][SERVING_CERT_ANNOTATION],
            "cd".repeat(32)
        );
        assert_eq!(
            node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            41235
        );

        // A wildcard address keeps the node's own address.
        let reg = NodeRegistrar::with_machine(cluster.clone(), config(), machine())
            .with_serving("0.0.0.0:10250".parse().unwrap(), "ef".repeat(32));
        assert_eq!(reg.node_ip().to_string(), "192.168.1.5");

        // An agent that serves nothing takes the stale pin away.
        let reg = NodeRegistrar::with_machine(cluster.clone(), config(), machine());
        reg.register().await.unwrap();
        let node = cluster.object(&NODES, None, "node-1").unwrap();
        assert!(
            node.pointer(&format!(
                "/metadata/annotations/{}",
                SERVING_CERT_ANNOTATION.replace('/', "~1")
            ))
            .is_none(),
            "{node}"
        );
        assert_eq!(
            node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_every_interval() {
        let cluster = FakeCluster::new();
        let reg = NodeRegistrar::with_machine(cluster.clone(), config(), machine());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(reg.run(cancel.clone()));
        tokio::time::sleep(std::time::Duration::from_secs(35)).await;
        cancel.cancel();
        task.await.unwrap();
        // Beats at 0, 10, 20, 30 s: one create + three renewals.
        assert_eq!(cluster.calls("create", "leases"), 1);
        assert_eq!(cluster.calls("replace", "leases"), 3);
        assert_eq!(cluster.calls("patch", "nodes"), 4);
    }
}
