//! Settings of the node agent.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

/// A node taint, `KEY[=VALUE]:EFFECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// The key.
    pub key: String,
    /// The value (may be empty).
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A malformed `--node-label` or `--node-taint`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not `KEY[=VALUE]:EFFECT` with a known effect.
    #[error(
        "invalid taint {0:?}: want KEY[=VALUE]:EFFECT with EFFECT NoSchedule, PreferNoSchedule or NoExecute"
    )]
    Taint(String),
    /// Not `KEY=VALUE`.
    #[error("invalid label {0:?}: want KEY=VALUE")]
    Label(String),
}

impl Taint {
    /// Parse `KEY[=VALUE]:EFFECT`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::Taint(s.to_owned());
        let (kv, effect) = s.rsplit_once(':').ok_or_else(bad)?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(bad());
        }
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if key.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            key: key.to_owned(),
            value: value.to_owned(),
            effect: effect.to_owned(),
        })
    }

    /// The API form.
    pub fn to_value(&self) -> Value {
        let mut v = json!({"key": self.key, "effect": self.effect});
        if !self.value.is_empty() {
            v["value"] = json!(self.value);
        }
        v
    }
}

/// Parse `KEY=VALUE`.
pub fn parse_label(s: &str) -> Result<(String, String), ConfigError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(ConfigError::Label(s.to_owned())),
    }
}

/// Where the agent's HTTPS server (logs, resource statistics, metrics) listens by default:
/// the kubelet's port, on loopback.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 10250);

/// Everything the node agent is told.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The Node's name (the host name by default).
    pub node_name: String,
    /// The data directory: pods live in `pods/`, runtime state in `run/`, addresses in
    /// `network/`, images in `images/` and `layers/`.
    pub data_dir: PathBuf,
    /// Extra Node labels (`--node-label`).
    pub labels: BTreeMap<String, String>,
    /// Node taints (`--node-taint`).
    pub taints: Vec<Taint>,
    /// The pod address range.
    pub pod_cidr: String,
    /// The pod bridge.
    pub bridge: String,
    /// The pids limit of each pod's cgroup.
    pub pids_limit: i64,
    /// `status.capacity.pods`.
    pub max_pods: u32,
    /// Whether `privileged: true` containers may run.
    pub allow_privileged: bool,
    /// The shim program: the `aos` binary (run as `aos shim ...`) or `aos-node-shim`.
    pub shim_exe: PathBuf,
    /// Arguments put before the shim's own (`["shim"]` for the `aos` binary).
    pub shim_args: Vec<String>,
    /// The parent of every pod cgroup (`/aos`).
    pub cgroup_root: String,
    /// Directory `Localhost` seccomp profiles are relative to (`DATA_DIR/seccomp` by default).
    pub seccomp_root: PathBuf,
    /// How often the Lease and the Node's conditions are renewed.
    pub heartbeat_interval: Duration,
    /// The node address reported as `InternalIP` and pods' `hostIP`; detected when absent.
    pub node_ip: Option<IpAddr>,
    /// On shutdown, stop every pod (`true`) or leave them running for the next agent to adopt
    /// (`false`, the default, as a kubelet restart does).
    pub stop_pods_on_shutdown: bool,
    /// With `stop_pods_on_shutdown`, the most a pod gets of its termination grace period when
    /// the agent stops (Kubernetes' graceful node shutdown, `shutdownGracePeriod`): the
    /// containers get their stop signal, then SIGKILL when this runs out, so that the agent
    /// finishes within its own shutdown budget and leaves nothing behind.
    pub shutdown_grace_period: Duration,
    /// Where the agent's HTTPS server listens (`--node-listen`; port 0 picks a free port).
    /// A specific address (not `0.0.0.0` or `::`) is also published as the Node's
    /// `InternalIP`, so that the API server reaches the agent there.
    pub listen: SocketAddr,
    /// PEM of the CA that client certificates must chain to: the cluster CA, from the
    /// kubeconfig the agent reaches the API with. Without one the agent serves nothing (it
    /// could not tell the API server from anyone else) and says so at start.
    pub client_ca_pem: Option<Vec<u8>>,
    /// How often pods' and the node's resource usage is sampled.
    pub stats_interval: Duration,
}

impl NodeConfig {
    /// Defaults for `node_name` in `data_dir`, with `shim_exe` as the shim.
    pub fn new(
        node_name: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        shim_exe: impl Into<PathBuf>,
    ) -> Self {
        let data_dir = data_dir.into();
        Self {
            node_name: node_name.into(),
            seccomp_root: data_dir.join("seccomp"),
            data_dir,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            pod_cidr: aos_sandbox::network::DEFAULT_POD_CIDR.to_owned(),
            bridge: aos_sandbox::network::DEFAULT_BRIDGE.to_owned(),
            pids_limit: aos_sandbox::cgroup::DEFAULT_POD_PIDS_LIMIT,
            max_pods: 110,
            allow_privileged: false,
            shim_exe: shim_exe.into(),
            shim_args: Vec::new(),
            cgroup_root: "/aos".to_owned(),
            heartbeat_interval: Duration::from_secs(10),
            node_ip: None,
            stop_pods_on_shutdown: false,
            shutdown_grace_period: Duration::from_secs(30),
            listen: DEFAULT_LISTEN,
            client_ca_pem: None,
            stats_interval: crate::stats::DEFAULT_INTERVAL,
        }
    }

    /// `DATA_DIR/pods`.
    pub fn pods_dir(&self) -> PathBuf {
        self.data_dir.join("pods")
    }

    /// `DATA_DIR/run`: shim sockets, container state, namespaces.
    pub fn run_dir(&self) -> PathBuf {
        self.data_dir.join("run")
    }

    /// The file of persisted address allocations.
    pub fn ipam_file(&self) -> PathBuf {
        self.data_dir.join("network").join("ipam.json")
    }

    /// `DATA_DIR/node`: the agent's serving certificate and key.
    pub fn node_dir(&self) -> PathBuf {
        self.data_dir.join("node")
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_and_labels() {
        assert_eq!(
            Taint::parse("agent.os=linux:NoSchedule").unwrap(),
            Taint {
                key: "agent.os".into(),
                value: "linux".into(),
                effect: "NoSchedule".into()
            }
        );
        assert_eq!(Taint::parse("gpu:NoExecute").unwrap().value, "");
        for bad in ["x", "x=y", "=y:NoSchedule", "x=y:Sometimes"] {
            assert!(Taint::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_label("agent.os=linux").unwrap(),
            ("agent.os".into(), "linux".into())
        );
        assert!(parse_label("nolabel").is_err());
        assert_eq!(
            Taint::parse("k=v:NoSchedule").unwrap().to_value(),
            json!({"key": "k", "value": "v", "effect": "NoSchedule"})
        );
    }
}
