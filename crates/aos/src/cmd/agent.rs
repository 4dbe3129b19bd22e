//! `aos agent`: the node agent alone, against the API server in the kubeconfig. `aos up` runs
//! the same agent in its own process. Also the hidden `aos shim`, the per-pod process the agent
//! re-executes this binary as (see `aos_node::shim_main`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::Ctx;

/// Node settings shared by `aos agent` and `aos up`.
#[derive(Debug, Clone, Args)]
pub(crate) struct NodeArgs {
    /// Name of this node (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub(crate) node_name: Option<String>,
    /// A label for this node, K=V; repeat for more.
    #[arg(long = "node-label", value_name = "K=V")]
    pub(crate) node_labels: Vec<String>,
    /// A taint for this node, K=V:EFFECT (NoSchedule, PreferNoSchedule, NoExecute); repeat for more.
    #[arg(long = "node-taint", value_name = "K=V:EFFECT")]
    pub(crate) node_taints: Vec<String>,
    /// Range pod addresses come from.
    #[arg(long, value_name = "CIDR", default_value = "10.88.0.0/16")]
    pub(crate) pod_cidr: String,
    /// Most processes in one pod.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub(crate) pod_pids_limit: i64,
    /// Let pods ask for `privileged: true` (refused by default).
    #[arg(long)]
    pub(crate) allow_privileged: bool,
    /// Address of the agent's HTTPS server (container logs, resource statistics, metrics),
    /// which only the API server may call; a specific address is published as the node's
    /// InternalIP. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:10250")]
    pub(crate) node_listen: std::net::SocketAddr,
}

impl NodeArgs {
    /// The agent's configuration for `data_dir`, with `extra_labels` added.
    pub(crate) fn config(
        &self,
        data_dir: PathBuf,
        extra_labels: &[(&str, &str)],
    ) -> anyhow::Result<aos_node::NodeConfig> {
        let name = match &self.node_name {
            Some(name) => name.clone(),
            None => nix::unistd::gethostname()
                .context("cannot read the host name; pass --node-name")?
                .to_string_lossy()
                .to_lowercase(),
        };
        let exe = std::env::current_exe().context("cannot find the aos binary for the pod shim")?;
        let mut config = aos_node::NodeConfig::new(name, data_dir, exe);
        config.shim_args = vec!["shim".to_string()];
        for label in &self.node_labels {
            let (k, v) = aos_node::config::parse_label(label)
                .with_context(|| format!("invalid --node-label {label:?}"))?;
            config.labels.insert(k, v);
        }
        for (k, v) in extra_labels {
            config.labels.insert((*k).to_string(), (*v).to_string());
        }
        for taint in &self.node_taints {
            config.taints.push(
                aos_node::config::Taint::parse(taint)
                    .with_context(|| format!("invalid --node-taint {taint:?}"))?,
            );
        }
        config.pod_cidr = self.pod_cidr.clone();
        config.pids_limit = self.pod_pids_limit;
        config.allow_privileged = self.allow_privileged;
        config.listen = self.node_listen;
        // A stopped platform leaves nothing running: no processes, cgroups, mounts or veths.
        config.stop_pods_on_shutdown = true;
        Ok(config)
    }
}

/// Arguments of `aos agent`.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// State directory for pods, logs and images (default: as `aos up`'s).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
    /// Log filter (overrides RUST_LOG).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

/// Start the node agent as a task of the current runtime: it trusts the cluster CA of
/// `client`'s kubeconfig for the API server's client certificate, and its HTTPS server is
/// bound here, so a taken `--node-listen` address fails the start.
pub(crate) fn start(
    mut config: aos_node::NodeConfig,
    client: aos_client::Client,
    cancel: CancellationToken,
) -> anyhow::Result<impl Future<Output = ()>> {
    config.client_ca_pem = Some(client.ca_pem().to_vec());
    let listen = config.listen;
    let mut agent = aos_node::NodeAgent::new(config, Arc::new(client))
        .context("cannot start the node agent")?;
    let bound = agent.bind().with_context(|| {
        format!("cannot start the node agent's server on {listen} (--node-listen)")
    })?;
    if let Some(addr) = bound {
        tracing::debug!(%addr, "node agent server bound");
    }
    Ok(agent.run(cancel))
}

pub(crate) fn run(args: AgentArgs, ctx: &Ctx) -> anyhow::Result<()> {
    super::up::init_logging(args.log_level.as_deref())?;
    let client = ctx.client()?;
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => crate::paths::default_data_dir()?,
    };
    let config = args.node.config(data_dir, &[])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aos-agent")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        tokio::spawn(super::up::stop_on_signals(cancel.clone()));
        start(config, client, cancel)?.await;
        Ok(())
    })
}
