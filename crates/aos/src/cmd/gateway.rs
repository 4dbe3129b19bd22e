//! `aos gateway`: the L7 gateway alone, configured through the API it finds in the kubeconfig.
//! `aos up` runs the same gateway in its own process.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::Ctx;

/// Arguments of `aos gateway`.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// Address the gateway serves traffic on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    gateway_listen: SocketAddr,
    /// Address of the gateway's /metrics and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    gateway_admin_listen: SocketAddr,
    /// Proxy worker threads, each with its own event loop and listening socket (default: one
    /// per core).
    #[arg(long, value_name = "N")]
    gateway_workers: Option<usize>,
    /// Log filter (overrides RUST_LOG).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

/// Proxy workers: `requested`, else one per core.
pub(crate) fn workers(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Bind the gateway's listeners, with an error that names the address.
pub(crate) async fn bind(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    workers: usize,
) -> anyhow::Result<aos_gateway::Gateway> {
    aos_gateway::Gateway::bind(aos_gateway::GatewayConfig {
        listen,
        admin_listen,
        workers,
        ..aos_gateway::GatewayConfig::default()
    })
    .await
    .with_context(|| format!("cannot start the gateway on {listen} (admin {admin_listen})"))
}

pub(crate) fn run(args: GatewayArgs, ctx: &Ctx) -> anyhow::Result<()> {
    super::up::init_logging(args.log_level.as_deref())?;
    let client = ctx.client()?;
    let workers = workers(args.gateway_workers);
    // With proxy workers, this runtime only watches the API and serves the admin port.
    let runtime = if workers > 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("aos-gateway")
            .build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        tokio::spawn(super::up::stop_on_signals(cancel.clone()));
        let gateway = bind(args.gateway_listen, args.gateway_admin_listen, workers).await?;
        tracing::info!(
            listen = %gateway.local_addr(),
            admin = %gateway.admin_addr(),
            workers,
            "gateway serving"
        );
        gateway
            .serve(aos_gateway::ApiSource::new(client), cancel)
            .await
            .map_err(anyhow::Error::from)
    })
}
