//! Store benchmark: raw durable SQLite inserts against `SqliteStore::create`
//! (1 and 64 concurrent writers, plain and encrypted) and `list` of 10,000
//! keys, all on the same disk in one run. Run it with `bench/store/run.sh`.
//!
//! Usage: `store_bench [--dir DIR] [--raw N] [--creates N] [--list-keys N]`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_store::Store;
use aos_store::encrypt::{EncryptingStore, KeyFile};
use aos_store::sqlite::{SqliteOptions, SqliteStore};

/// A value shaped like a small Kubernetes object (about 1 KiB of JSON).
fn value(i: usize) -> Vec<u8> {
    let mut v = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"item-{i}","namespace":"default","labels":{{"app":"bench"}}}},"data":{{"payload":""#
    )
    .into_bytes();
    v.resize(1000, b'x');
    v.extend_from_slice(br#""}}"#);
    v
}

struct Args {
    dir: Option<PathBuf>,
    raw: usize,
    creates: usize,
    list_keys: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        dir: None,
        raw: 2000,
        creates: 5000,
        list_keys: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = Some(PathBuf::from(val()?)),
            "--raw" => args.raw = val()?.parse().map_err(|e| format!("--raw: {e}"))?,
            "--creates" => args.creates = val()?.parse().map_err(|e| format!("--creates: {e}"))?,
            "--list-keys" => {
                args.list_keys = val()?.parse().map_err(|e| format!("--list-keys: {e}"))?
            }
            "-h" | "--help" => {
                return Err(
                    "usage: store_bench [--dir DIR] [--raw N] [--creates N] [--list-keys N]"
                        .to_string(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// One measured case.
struct Row {
    name: String,
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Row {
    fn new(name: &str, ops: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Self {
        latencies.sort_unstable();
        Row {
            name: name.to_string(),
            ops,
            elapsed,
            latencies,
        }
    }

    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let idx = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[idx].as_secs_f64() * 1e3
    }
}

/// (a) One durable transaction per inserted row, straight through rusqlite.
fn raw_inserts(dir: &Path, n: usize) -> rusqlite::Result<Row> {
    let conn = rusqlite::Connection::open(dir.join("raw.db"))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE t (key TEXT PRIMARY KEY, value BLOB NOT NULL)")?;
    let mut stmt = conn.prepare("INSERT INTO t (key, value) VALUES (?1, ?2)")?;
    let mut latencies = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        // Autocommit: each INSERT is its own transaction, fsynced at commit.
        stmt.execute(rusqlite::params![format!("/raw/{i:08}"), value(i)])?;
        latencies.push(t.elapsed());
    }
    Ok(Row::new(
        "raw sqlite insert, 1 txn/row",
        n,
        start.elapsed(),
        latencies,
    ))
}

/// (b) `create` from `writers` concurrent tasks, `n` creates in total.
async fn creates(store: Arc<dyn Store>, name: &str, prefix: &str, writers: usize, n: usize) -> Row {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        // Spread the remainder so exactly `n` creates run.
        let per = n / writers + usize::from(w < n % writers);
        let store = Arc::clone(&store);
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let key = format!("{prefix}{w:03}-{i:08}");
                let t = Instant::now();
                store.create(&key, value(i)).await.expect("create");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for t in tasks {
        latencies.extend(t.await.expect("writer task"));
    }
    Row::new(name, n, start.elapsed(), latencies)
}

/// (c) `list` of `keys` keys.
async fn lists(store: Arc<dyn Store>, keys: usize) -> Row {
    creates(Arc::clone(&store), "fill", "/list/", 64, keys).await;
    let rounds = 20;
    let mut latencies = Vec::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        let list = store.list("/list/").await.expect("list");
        latencies.push(t.elapsed());
        assert_eq!(list.items.len(), keys);
    }
    Row::new(
        &format!("list of {keys} keys (ops = lists)"),
        rounds,
        start.elapsed(),
        latencies,
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let tmp;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::tempdir_in(dir)?.keep()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    println!("directory: {} (all databases on this disk)", dir.display());

    let raw = raw_inserts(&dir, args.raw)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = rt.block_on(async {
        let plain: Arc<dyn Store> = Arc::new(SqliteStore::open(
            &dir.join("store.db"),
            SqliteOptions::default(),
        )?);
        let one = creates(
            Arc::clone(&plain),
            "store create, 1 writer",
            "/one/",
            1,
            args.raw,
        )
        .await;
        let many = creates(
            Arc::clone(&plain),
            "store create, 64 writers",
            "/many/",
            64,
            args.creates,
        )
        .await;
        let sealed_inner = SqliteStore::open(&dir.join("sealed.db"), SqliteOptions::default())?;
        let sealed: Arc<dyn Store> = Arc::new(EncryptingStore::new(
            sealed_inner,
            KeyFile::generate("key1")?,
            vec!["/".to_string()],
        ));
        let many_sealed = creates(
            sealed,
            "store create, 64 writers, encrypted",
            "/sec/",
            64,
            args.creates,
        )
        .await;
        let listed = lists(plain, args.list_keys).await;
        Ok::<_, Box<dyn std::error::Error>>(vec![one, many, many_sealed, listed])
    })?;

    println!();
    println!(
        "{:<40} {:>7} {:>10} {:>9} {:>9}",
        "case", "ops", "ops/s", "p50 ms", "p99 ms"
    );
    for row in std::iter::once(&raw).chain(rows.iter()) {
        println!(
            "{:<40} {:>7} {:>10.0} {:>9.2} {:>9.2}",
            row.name,
            row.ops,
            row.rate(),
            row.pct(0.5),
            row.pct(0.99)
        );
    }
    println!();
    println!(
        "create, 1 writer / raw insert:   {:.2}x",
        rows[0].rate() / raw.rate()
    );
    println!(
        "create, 64 writers / raw insert: {:.2}x",
        rows[1].rate() / raw.rate()
    );
    println!(
        "encrypted / plain (64 writers):  {:.2}x",
        rows[2].rate() / rows[1].rate()
    );
    if args.dir.is_some() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
