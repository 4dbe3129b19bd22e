//! `aos-bench`: benchmarks that measure aos beside its physical limit or its peer in one run.
//!
//! `aos-bench api` starts a real `aos up` in a temporary data dir (on the same disk as the
//! baseline database) and reports:
//! - start to `/readyz`, on a fresh data dir and on a restart;
//! - idle RSS, and RSS with 10,000 pods stored;
//! - create throughput and latency (p50/p99) with 1 and with N concurrent clients, beside the raw
//!   durable single-row insert rate of SQLite on the same disk (WAL, `synchronous=FULL`, one
//!   transaction per row) — the physical limit of a design that acknowledges only durable writes;
//! - list latency of 10,000 pods.
//!
//! `aos-bench pods` measures pod start latency and node-agent memory per pod (see `pods.rs`).
//!
//! This is a benchmark, not a test: it asserts nothing, it prints numbers and ratios.

#![forbid(unsafe_code)]

mod pods;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use aos_client::{Client, ListParams};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
#[command(about = "aos benchmarks")]
enum Cli {
    /// API server: start-up, RSS, create throughput and latency, list latency.
    Api(ApiArgs),
    /// Node agent (root): pod start latency (create → Ready, 1 pod and a batch), where the time
    /// goes, and memory per running pod.
    Pods(pods::PodsArgs),
}

#[derive(Parser)]
struct ApiArgs {
    /// The aos binary to measure.
    #[arg(long, default_value = "target/release/aos")]
    aos: PathBuf,
    /// Where the temporary data dirs go (the same disk for aos and the SQLite baseline).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Creates measured per concurrency level.
    #[arg(long, default_value_t = 2000)]
    creates: usize,
    /// Concurrent clients for the parallel create run.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Objects for the list and RSS measurement.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match Cli::parse() {
        Cli::Api(args) => rt.block_on(api(args)),
        Cli::Pods(args) => rt.block_on(pods::run(args)),
    }
}

/// A running `aos up`, killed on drop.
struct Aos {
    child: Child,
    kubeconfig: PathBuf,
}

impl Drop for Aos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Start `aos up` and return it with the time until `/readyz` answered 200.
async fn start_aos(bin: &Path, data_dir: &Path) -> Result<(Aos, Duration)> {
    let port = free_port()?;
    let started = Instant::now();
    let child = Command::new(bin)
        .args(["up", "--data-dir"])
        .arg(data_dir)
        .args(["--api-listen", &format!("127.0.0.1:{port}")])
        .args(["--gateway-listen", &format!("127.0.0.1:{}", free_port()?)])
        .args([
            "--gateway-admin-listen",
            &format!("127.0.0.1:{}", free_port()?),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let aos = Aos {
        child,
        kubeconfig: data_dir.join("kubeconfig.yaml"),
    };
    // /readyz needs no token; the CA is not known before the kubeconfig exists, so poll the
    // kubeconfig first, then /readyz through a client that trusts its CA.
    let deadline = started + Duration::from_secs(30);
    loop {
        if Instant::now() > deadline {
            bail!("aos did not become ready within 30 s");
        }
        if aos.kubeconfig.exists()
            && let Ok(client) = Client::from_kubeconfig(&aos.kubeconfig)
            && client.raw(http_get(), "/readyz", None).await.is_ok()
        {
            return Ok((aos, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn http_get() -> http::Method {
    http::Method::GET
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Raw durable single-row inserts per second: the physical limit on this disk.
fn sqlite_baseline(dir: &Path, rows: usize) -> Result<f64> {
    let path = dir.join("baseline.db");
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB)", [])?;
    let value = vec![b'x'; 700]; // about the size of a small pod as JSON
    let started = Instant::now();
    for i in 0..rows {
        conn.execute(
            "INSERT INTO kv (key, value) VALUES (?1, ?2)",
            rusqlite::params![format!("/k/{i}"), value],
        )?;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

fn pod(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "api"}},
        "spec": {"containers": [{
            "name": "app",
            "image": "agent-registry:1.0.0",
            "ports": [{"containerPort": 3000, "name": "http"}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
        }]}
    })
}

/// Create `n` pods named `{prefix}-{i}` from `concurrency` tasks; returns (elapsed, latencies).
async fn create_pods(
    client: &Client,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Result<(Duration, Vec<Duration>)> {
    let rt = aos_types::resource::by_kind("v1", "Pod").context("Pod type")?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let next = next.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                client
                    .create(rt, Some("bench"), &pod(&format!("{prefix}-{i}")))
                    .await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    all.sort();
    Ok((elapsed, all))
}

async fn api(args: ApiArgs) -> Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let tmp = tempfile::tempdir_in(&args.dir)?;
    let data = tmp.path().join("aos");
    std::fs::create_dir_all(&data)?;

    println!("# aos API benchmark");
    println!(
        "machine: {} cores, disk of {}",
        std::thread::available_parallelism()?,
        args.dir.display()
    );

    let baseline = sqlite_baseline(tmp.path(), args.creates)?;
    println!("sqlite raw durable single-row insert: {baseline:.0} rows/s");

    let (aos, first_ready) = start_aos(&args.aos, &data).await?;
    drop(aos);
    let (aos, ready) = start_aos(&args.aos, &data).await?;
    println!(
        "start to /readyz: first start {:.1} ms, restart {:.1} ms",
        ms(first_ready),
        ms(ready)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(aos.child.id())?;
    println!("idle RSS: {:.1} MiB", idle_rss as f64 / 1024.0);

    let client = Client::from_kubeconfig(&aos.kubeconfig)?;
    let ns = aos_types::resource::by_kind("v1", "Namespace").context("Namespace type")?;
    client
        .create(
            ns,
            None,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
        )
        .await?;

    for (label, conc) in [("1 client", 1), ("parallel", args.concurrency)] {
        let (elapsed, lat) = create_pods(&client, &format!("c{conc}"), args.creates, conc).await?;
        let rate = args.creates as f64 / elapsed.as_secs_f64();
        println!(
            "create, {label} ({conc}): {rate:.0}/s = {:.2}x sqlite raw; p50 {:.2} ms, p99 {:.2} ms",
            rate / baseline,
            ms(percentile(&lat, 0.50)),
            ms(percentile(&lat, 0.99)),
        );
    }

    let have = 2 * args.creates;
    if args.objects > have {
        create_pods(&client, "fill", args.objects - have, args.concurrency).await?;
    }
    let pods = aos_types::resource::by_kind("v1", "Pod").context("Pod type")?;
    let mut lat = Vec::new();
    let mut count = 0;
    for _ in 0..10 {
        let t = Instant::now();
        let list = client
            .list(pods, Some("bench"), &ListParams::default())
            .await?;
        lat.push(t.elapsed());
        count = list.items.len();
    }
    lat.sort();
    println!(
        "list of {count} pods: p50 {:.1} ms, max {:.1} ms",
        ms(percentile(&lat, 0.5)),
        ms(*lat.last().unwrap_or(&Duration::ZERO))
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let full_rss = rss_kib(aos.child.id())?;
    println!("RSS with {count} pods: {:.1} MiB", full_rss as f64 / 1024.0);
    Ok(())
}
