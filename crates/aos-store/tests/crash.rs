//! Crash safety: a child process writes in a loop and prints each key once
//! its write is acknowledged; the parent kills it with SIGKILL mid-loop,
//! reopens the database and checks that every acknowledged write is there.
//!
//! The child is this same test binary, re-executed with `CRASH_CHILD_DB` set
//! and filtered to the `crash_child` test.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_store::Store;
use aos_store::sqlite::{SqliteOptions, SqliteStore};

const CHILD_ENV: &str = "CRASH_CHILD_DB";
/// Acknowledged writes to see before killing the child.
const KILL_AFTER_ACKS: usize = 300;

/// The writer half. A no-op unless run as the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Some(db) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = Arc::new(SqliteStore::open(Path::new(&db), SqliteOptions::default()).unwrap());
    let mut tasks = Vec::new();
    // 16 concurrent writers, so batches are in flight when the kill lands.
    for w in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/crash/{w:02}/{i:06}");
                let kv = store.create(&key, key.clone().into_bytes()).await.unwrap();
                // Written straight to stdout (not the test harness's capture),
                // one line per acknowledged write.
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {key} {}", kv.mod_revision).unwrap();
                out.flush().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Arc::new(Mutex::new(Some(child)));
    // SIGKILL the child (once) and reap it.
    let kill = {
        let child = Arc::clone(&child);
        move || {
            if let Some(mut child) = child.lock().unwrap().take() {
                child.kill().unwrap();
                child.wait().unwrap();
            }
        }
    };
    let reader = {
        let kill = kill.clone();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Each line is one small write(2) to a pipe, so it arrives whole.
                let parsed = line
                    .strip_prefix("ack ")
                    .and_then(|rest| rest.split_once(' '))
                    .and_then(|(key, rev)| Some((key.to_string(), rev.parse::<i64>().ok()?)));
                if let Some(ack) = parsed {
                    acked.push(ack);
                }
                if acked.len() == KILL_AFTER_ACKS {
                    kill();
                }
            }
            // Lines written before the kill are read to the end of the pipe.
            acked
        })
    };
    // A watchdog: a child that stops acknowledging is killed too (the test then fails).
    let watchdog = {
        let kill = kill.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            kill();
        })
    };
    let acked = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    watchdog.abort();
    kill();
    assert!(
        acked.len() >= KILL_AFTER_ACKS,
        "child acknowledged only {} writes",
        acked.len()
    );
    eprintln!(
        "child acknowledged {} writes before SIGKILL landed",
        acked.len()
    );

    let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
    let list = store.list("/crash/").await.unwrap();
    let present: std::collections::HashMap<&str, i64> = list
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.mod_revision))
        .collect();
    for (key, rev) in &acked {
        assert_eq!(
            present.get(key.as_str()),
            Some(rev),
            "acknowledged write {key} at {rev} lost"
        );
    }
    // Unacknowledged writes may or may not have landed; the revision never goes back.
    let max_acked = acked.iter().map(|(_, r)| *r).max().unwrap();
    assert!(list.revision >= max_acked);
    assert_eq!(
        list.revision,
        list.items.len() as i64,
        "revisions are dense: one per committed create"
    );
    let next = store.create("/crash/after", b"x".to_vec()).await.unwrap();
    assert_eq!(next.mod_revision, list.revision + 1);
}
