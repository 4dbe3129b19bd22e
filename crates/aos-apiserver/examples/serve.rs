//! Serve the API over a SQLite store in a data dir, for trying kubectl by hand:
//! `cargo run -p aos-apiserver --example serve -- /tmp/aos-dev 127.0.0.1:6443`,
//! then `kubectl --kubeconfig /tmp/aos-dev/kubeconfig.yaml get ns`.

use std::sync::Arc;

use aos_apiserver::{ApiServer, Config};
use aos_store::sqlite::{SqliteOptions, SqliteStore};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/aos-dev".into()));
    let listen = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:6443".into())
        .parse()?;
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(SqliteStore::open(
        &dir.join("store.db"),
        SqliteOptions::default(),
    )?);
    let metrics_store = store.clone();
    let server = ApiServer::bind(
        Config {
            listen,
            data_dir: dir,
            external_hosts: Vec::new(),
        },
        store,
    )
    .await?
    .with_metrics_source(move || metrics_store.render_metrics());
    eprintln!(
        "serving on https://{}; kubeconfig {}",
        server.local_addr(),
        server.kubeconfig_path().display()
    );
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    server.serve(cancel).await?;
    Ok(())
}
