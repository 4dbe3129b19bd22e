//! The per-pod shim as its own program, for tests and for running the node agent outside the
//! `aos` binary: `aos-node-shim CONFIG.json`.

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    aos_node::shim_main(std::env::args().skip(1).collect())
}
