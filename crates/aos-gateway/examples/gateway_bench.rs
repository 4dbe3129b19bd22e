//! Run the gateway from a static configuration file, without the rest of the platform.
//!
//! ```text
//! gateway_bench --config FILE [--listen ADDR] [--admin-listen ADDR] [--workers N]
//! ```
//!
//! `FILE` is YAML with Services, Endpoints (written by hand, e.g. pointing at 127.0.0.1) and
//! optionally VirtualServices and DestinationRules. `--workers N` (default 1) runs N proxy
//! workers, as `aos gateway --gateway-workers N` does (one worker: as an nginx or haproxy with
//! one worker process); the configuration and the admin port run on a single-threaded runtime
//! of their own, as in `aos gateway`. Stops on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use aos_gateway::{GatewayConfig, Snapshot, StaticSource};
use tokio_util::sync::CancellationToken;

// The allocator of the `aos` binary (crates/aos/src/main.rs), so that the benchmark measures
// the gateway as `aos` runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    config: PathBuf,
    listen: SocketAddr,
    admin_listen: SocketAddr,
    workers: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: gateway_bench --config FILE [--listen ADDR] [--admin-listen ADDR] [--workers N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut config = None;
    let defaults = GatewayConfig::default();
    let mut args = Args {
        config: PathBuf::new(),
        listen: defaults.listen,
        admin_listen: defaults.admin_listen,
        workers: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--config" => config = Some(PathBuf::from(value())),
            "--listen" => args.listen = value().parse().unwrap_or_else(|_| usage()),
            "--admin-listen" => args.admin_listen = value().parse().unwrap_or_else(|_| usage()),
            "--workers" => args.workers = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    args.config = config.unwrap_or_else(|| usage());
    args
}

fn main() {
    let args = parse_args();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,aos_gateway=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let snapshot = match Snapshot::from_file(&args.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let config = GatewayConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        drain_grace_seconds: 2,
        workers: args.workers,
        ..GatewayConfig::default()
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.cancel();
        });
        aos_gateway::run(config, StaticSource::new(snapshot), shutdown).await
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
