//! The `agent-registry` binary: `agent-registry [serve]` runs the service,
//! `agent-registry healthcheck` checks a running one (for the image's `HEALTHCHECK`).

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_registry::api::{AppState, InstanceInfo};
use agent_registry::clock::{Clock, SystemClock};
use agent_registry::config::Config;
use agent_registry::db::AgentStore;
use agent_registry::{VERSION, healthcheck, server};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "\
usage: agent-registry [serve]      run the service (configured by the environment)
       agent-registry healthcheck  GET http://127.0.0.1:$PORT/health; exit 0 if it answers 200
       agent-registry --version

environment: PORT (3000), LISTEN_ADDR (0.0.0.0), DATABASE_URL (sqlite:///tmp/agent-registry.db),
HEARTBEAT_TTL_SECONDS (30), EXPIRED_RETENTION_SECONDS (300), REAPER_INTERVAL_SECONDS (5),
SHUTDOWN_TIMEOUT_SECONDS (25), RUST_LOG (info)";

/// How long `healthcheck` waits for an answer.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["serve"] => serve(),
        ["healthcheck"] => healthcheck(),
        ["--version" | "-V" | "version"] => {
            println!("agent-registry {VERSION}");
            ExitCode::SUCCESS
        }
        ["--help" | "-h" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("agent-registry: unexpected arguments {args:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// JSON lines on stdout, filtered by `RUST_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .init();
}

fn serve() -> ExitCode {
    init_logging();
    let clock = SystemClock;
    let started_at = clock.now();
    tracing::info!(
        version = VERSION,
        pid = std::process::id(),
        "agent-registry starting"
    );

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    if config.redis_configured {
        // Never the value: it may carry a password.
        tracing::info!(
            "REDIS_URL is configured but unused: this service keeps its state in SQLite"
        );
    }
    if config.test_hooks {
        tracing::warn!("test hooks are enabled (AGENT_REGISTRY_TEST_HOOKS=1); never in production");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("agent-registry")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let mut signals = match server::ShutdownSignals::install() {
            Ok(signals) => signals,
            Err(e) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                return Err(None);
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let signal = signals.recv().await;
                tracing::info!(signal, "shutting down");
                shutdown.cancel();
                let signal = signals.recv().await;
                tracing::warn!(signal, "second signal: exiting without draining");
                std::process::exit(1);
            }
        });
        let store = AgentStore::new(config.database.clone());
        let state = AppState::new(
            &config,
            store,
            Arc::new(clock),
            InstanceInfo::current(started_at),
        );
        server::run(config, state, shutdown).await.map_err(Some)
    });
    // Abandon anything still running after the drain timeout instead of waiting for it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let Some(e) = e {
                tracing::error!(error = %e, "agent-registry failed");
            }
            ExitCode::FAILURE
        }
    }
}

fn healthcheck() -> ExitCode {
    let outcome = Config::from_env()
        .map_err(|e| e.to_string())
        .and_then(|config| healthcheck::target(config.listen).map_err(|e| e.to_string()))
        .and_then(|addr| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(healthcheck::check(addr, HEALTHCHECK_TIMEOUT))
                .map_err(|e| e.to_string())
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-registry healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}
