//! `aos up` (the whole platform) and `aos server` (the control plane alone), in the foreground.
//!
//! Composition, in order: the SQLite store at `DATA_DIR/store.db` wrapped in the encrypting
//! store (Secrets sealed at rest, key in `DATA_DIR/secrets.key`), its background compactor,
//! the API server (which writes `DATA_DIR/kubeconfig.yaml`), and the controllers, which talk
//! to the API server over loopback HTTPS with that kubeconfig exactly as a controller on
//! another machine would; with `aos up`, also the gateway and the node agent. SIGINT or SIGTERM
//! (or a failed component) cancels the stop token: the node agent stops its pods and reports
//! them first, then the API server, controllers and gateway drain, all within one grace
//! period; a second signal exits at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aos_apiserver::{ApiServer, Config};
use aos_client::Client;
use aos_store::Store;
use aos_store::encrypt::{EncryptingStore, KeyFile};
use aos_store::sqlite::{SqliteOptions, SqliteStore};
use clap::Args;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cmd::wait::parse_duration;

/// The store key prefix whose values are encrypted at rest.
const SECRETS_PREFIX: &str = "/registry/core/secrets/";
/// How often the compactor runs.
const COMPACT_INTERVAL: Duration = Duration::from_secs(60);
/// How many revisions of history the compactor keeps for watchers to resume from.
const COMPACT_RETAIN_REVISIONS: i64 = 10_000;

/// Which components a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `aos up`: everything.
    All,
    /// `aos server`: store, API server and controllers.
    ControlPlane,
}

/// Arguments of `aos up` and `aos server`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// State directory (default: $AOS_DATA_DIR, else /var/lib/aos as root, else $XDG_DATA_HOME/aos).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the HTTPS API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6443")]
    api_listen: SocketAddr,
    /// Address the gateway serves traffic on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) gateway_listen: SocketAddr,
    /// Address of the gateway's /metrics and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    pub(crate) gateway_admin_listen: SocketAddr,
    /// Gateway proxy worker threads, each with its own event loop and listening socket
    /// (default: one per core).
    #[arg(long, value_name = "N")]
    pub(crate) gateway_workers: Option<usize>,
    /// Do not run the node agent (`aos up` then runs the control plane and the gateway; pods
    /// stay Pending until an `aos agent` joins).
    #[arg(long)]
    no_agent: bool,
    #[command(flatten)]
    node: super::agent::NodeArgs,
    /// Extra host names or addresses for the API server's certificate.
    #[arg(long = "tls-san", value_name = "HOST")]
    external_hosts: Vec<String>,
    /// Once ready, run the seed's agent-registry in namespace agent-os: build the image
    /// agent-registry:1.0.0 if missing (with images/agent-registry/build.sh from the source tree;
    /// needs cargo), create the Secret agent-registry-secrets, apply the Deployment, a Service,
    /// the VirtualService and the DestinationRule (idempotent across restarts), and print how
    /// to reach the pods.
    #[arg(long)]
    demo: bool,
    /// With --demo: do not build the agent-registry:1.0.0 image when it is missing (pods wait
    /// for it). Set AOS_DEMO_SKIP_IMAGE_BUILD=1 for the same effect.
    #[arg(
        long,
        env = "AOS_DEMO_SKIP_IMAGE_BUILD",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    demo_skip_image_build: bool,
    /// Log filter (overrides RUST_LOG), e.g. `info` or `aos_apiserver=debug,info`.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// How long running work may take to stop after SIGINT/SIGTERM.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    shutdown_grace: Duration,
}

pub(crate) fn run(args: UpArgs, mode: Mode) -> anyhow::Result<()> {
    init_logging(args.log_level.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aos")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(up(args, mode));
    // Tasks still running after the grace period are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

pub(crate) fn init_logging(level: Option<&str>) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => {
            EnvFilter::try_new(level).with_context(|| format!("invalid --log-level {level:?}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .init();
    Ok(())
}

async fn up(args: UpArgs, mode: Mode) -> anyhow::Result<()> {
    let started = Instant::now();
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => crate::paths::default_data_dir()?,
    };
    create_private_dir(&data_dir)?;
    // `cancel` is the stop request (a signal or a failed component). The node agent stops on it
    // first; the API server, controllers and gateway (`platform`) only after the agent is done,
    // so that it can still report its pods' last status through the API.
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signals(cancel.clone()));
    let platform = CancellationToken::new();

    let store = open_store(&data_dir, &platform)?;
    let server = ApiServer::bind(
        Config {
            listen: args.api_listen,
            data_dir: data_dir.clone(),
            external_hosts: args.external_hosts,
        },
        store,
    )
    .await
    .with_context(|| format!("cannot start the API server on {}", args.api_listen))?;
    let api_addr = server.local_addr();
    let kubeconfig = server.kubeconfig_path().to_path_buf();

    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    let serve_cancel = platform.clone();
    tasks.spawn(async move {
        (
            "api server",
            server
                .serve(serve_cancel)
                .await
                .map_err(anyhow::Error::from),
        )
    });

    let client = crate::cmd::client_from(&kubeconfig)?;
    let controller_client = client.clone();
    let controller_cancel = platform.clone();
    tasks.spawn(async move {
        let result = aos_controller::run_all(controller_client, controller_cancel)
            .await
            .map_err(anyhow::Error::from);
        ("controllers", result)
    });

    if mode == Mode::All {
        let gateway = crate::cmd::gateway::bind(
            args.gateway_listen,
            args.gateway_admin_listen,
            crate::cmd::gateway::workers(args.gateway_workers),
        )
        .await?;
        let gateway_client = client.clone();
        let gateway_cancel = platform.clone();
        tasks.spawn(async move {
            let source = aos_gateway::ApiSource::new(gateway_client);
            let result = gateway
                .serve(source, gateway_cancel)
                .await
                .map_err(anyhow::Error::from);
            ("gateway", result)
        });
    }

    let mut agent_task: Option<tokio::task::JoinHandle<()>> = None;
    let run_agent = mode == Mode::All && !args.no_agent;
    if run_agent && !nix::unistd::geteuid().is_root() {
        warn!(
            "the node agent needs root (namespaces, cgroups, the pod bridge): not started; pods stay Pending"
        );
    } else if run_agent {
        let extra_labels: &[(&str, &str)] = if args.demo {
            &[("agent.os", "linux")]
        } else {
            &[]
        };
        let mut config = args.node.config(data_dir.clone(), extra_labels)?;
        // Pods must be gone (SIGKILL at the latest) before the platform's own grace runs out;
        // the margin covers the kill itself and the removal of the sandboxes.
        config.shutdown_grace_period = args
            .shutdown_grace
            .saturating_sub(Duration::from_secs(3))
            .max(Duration::from_secs(1));
        let agent = super::agent::start(config, client.clone(), cancel.clone())?;
        agent_task = Some(tokio::spawn(agent));
    }

    wait_ready(&client, &cancel).await?;
    info!(
        api = %format!("https://{api_addr}"),
        kubeconfig = %kubeconfig.display(),
        data_dir = %data_dir.display(),
        ready_ms = started.elapsed().as_millis() as u64,
        "aos is ready"
    );
    if mode == Mode::All {
        info!(
            gateway = %args.gateway_listen,
            gateway_admin = %args.gateway_admin_listen,
            "gateway serving"
        );
    }
    if args.demo {
        let demo = crate::demo::Demo {
            data_dir: data_dir.clone(),
            kubeconfig: kubeconfig.clone(),
            build_image: !args.demo_skip_image_build,
            gateway: (mode == Mode::All).then_some(args.gateway_listen),
        };
        tokio::spawn(crate::demo::run(client.clone(), demo, cancel.clone()));
    }

    let mut failure = None;
    tokio::select! {
        // A stop request first: components end on it, and that is not a failure.
        biased;
        () = cancel.cancelled() => {}
        Some(joined) = tasks.join_next() => {
            let (name, result) = flatten(joined);
            match result {
                Ok(()) => error!(component = name, "stopped unexpectedly"),
                Err(e) => error!(component = name, error = %format!("{e:#}"), "failed"),
            }
            failure = Some(anyhow::anyhow!("{name} stopped unexpectedly"));
            cancel.cancel();
        }
        Some(joined) = maybe_join(&mut agent_task) => {
            if let Err(e) = joined {
                error!(component = "node agent", error = %e, "failed");
            } else {
                error!(component = "node agent", "stopped unexpectedly");
            }
            failure = Some(anyhow::anyhow!("node agent stopped unexpectedly"));
            cancel.cancel();
        }
    }
    info!(grace = ?args.shutdown_grace, "shutting down");
    let deadline = tokio::time::Instant::now() + args.shutdown_grace;
    cancel.cancel();
    if let Some(agent) = agent_task.take() {
        match tokio::time::timeout_at(deadline, agent).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(component = "node agent", error = %e, "error while stopping"),
            Err(_) => warn!("the node agent did not stop within the grace period"),
        }
    }
    platform.cancel();
    let drained = tokio::time::timeout_at(deadline, async {
        while let Some(joined) = tasks.join_next().await {
            let (name, result) = flatten(joined);
            if let Err(e) = result {
                warn!(component = name, error = %format!("{e:#}"), "error while stopping");
            }
        }
    })
    .await;
    if drained.is_err() {
        warn!("some components did not stop within the grace period; exiting anyway");
        tasks.abort_all();
    }
    info!("aos stopped");
    failure.map_or(Ok(()), Err)
}

/// The agent's end, if it runs (else never).
async fn maybe_join(
    task: &mut Option<tokio::task::JoinHandle<()>>,
) -> Option<Result<(), tokio::task::JoinError>> {
    match task {
        Some(t) => {
            let r = t.await;
            *task = None;
            Some(r)
        }
        None => std::future::pending().await,
    }
}

fn flatten(
    joined: Result<(&'static str, anyhow::Result<()>), tokio::task::JoinError>,
) -> (&'static str, anyhow::Result<()>) {
    joined.unwrap_or_else(|e| {
        (
            "task",
            Err(anyhow::anyhow!("task panicked or was cancelled: {e}")),
        )
    })
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// The SQLite store, compacted in the background, behind the Secrets encryption.
fn open_store(data_dir: &Path, cancel: &CancellationToken) -> anyhow::Result<Arc<dyn Store>> {
    let db = data_dir.join("store.db");
    let sqlite = SqliteStore::open(&db, SqliteOptions::default())
        .with_context(|| format!("cannot open the store {}", db.display()))?;
    sqlite.spawn_compactor(COMPACT_INTERVAL, COMPACT_RETAIN_REVISIONS, cancel.clone());
    let key_path = data_dir.join("secrets.key");
    let key = KeyFile::load_or_create(&key_path)
        .with_context(|| format!("cannot load the encryption key {}", key_path.display()))?;
    Ok(Arc::new(EncryptingStore::new(
        sqlite,
        key,
        vec![SECRETS_PREFIX.to_string()],
    )))
}

/// Poll `/readyz` on loopback until it answers 200 (a few milliseconds after `serve` starts).
async fn wait_ready(client: &Client, cancel: &CancellationToken) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut delay = Duration::from_millis(2);
    loop {
        if crate::api::ready(client).await {
            return Ok(());
        }
        if cancel.is_cancelled() {
            anyhow::bail!("stopped before the API server was ready");
        }
        if Instant::now() > deadline {
            anyhow::bail!("the API server did not become ready within 30 s");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// Stop on the first SIGINT/SIGTERM; exit at once on the second.
pub(crate) async fn stop_on_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; stop aos with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!(signal = "SIGTERM", "stopping"),
        _ = int.recv() => info!(signal = "SIGINT", "stopping"),
    }
    cancel.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    warn!("second signal: exiting without waiting");
    std::process::exit(130);
}
