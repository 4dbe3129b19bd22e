//! `kill -9` in the middle of a loop of applies loses nothing that was acknowledged, and a
//! restart on the same data dir is ready fast.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::support::{Aos, rt};

const APPLIES: usize = 500;
const NAMES: usize = 250;
const KILL_AFTER: usize = 300;

fn manifest(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{}\n  namespace: default\ndata:\n  value: \"{i}\"\n",
        i % NAMES
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_applies_survive_kill_9_and_restart_is_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (aos, _) = Aos::start_on(&dir, super::support::free_port()).await;
    let port = aos.port;
    let aos = Arc::new(std::sync::Mutex::new(aos));

    // The killer: SIGKILL the server as soon as KILL_AFTER applies are acknowledged, while
    // the next apply is likely in flight.
    let acked_count = Arc::new(AtomicUsize::new(0));
    let killer = {
        let acked_count = acked_count.clone();
        let aos = aos.clone();
        std::thread::spawn(move || {
            while acked_count.load(Ordering::SeqCst) < KILL_AFTER {
                std::thread::sleep(Duration::from_micros(200));
            }
            aos.lock().unwrap().kill9();
        })
    };

    let kubeconfig = aos.lock().unwrap().kubeconfig.clone();
    let cli = |i: usize| {
        super::support::run_aos(
            &[
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "apply",
                "-f",
                "-",
            ],
            Some(&manifest(i)),
        )
    };
    // Last acknowledged value per name, and the first apply that failed.
    let mut acked: BTreeMap<usize, usize> = BTreeMap::new();
    let mut first_failed = None;
    let loop_started = std::time::Instant::now();
    for i in 0..APPLIES {
        let run = cli(i);
        if run.code == 0 {
            let name = i % NAMES;
            let verb = if i < NAMES { "created" } else { "configured" };
            assert_eq!(
                run.stdout,
                format!("configmap/cm-{name} {verb}\n"),
                "stderr: {}",
                run.stderr
            );
            acked.insert(name, i);
            acked_count.fetch_add(1, Ordering::SeqCst);
        } else {
            first_failed = Some(i);
            break;
        }
    }
    killer.join().unwrap();
    let first_failed = first_failed.expect("an apply fails once the server is killed");
    println!(
        "{} applies acknowledged in {:?} before kill -9 (apply {first_failed} failed)",
        acked_count.load(Ordering::SeqCst),
        loop_started.elapsed()
    );
    assert!(first_failed >= KILL_AFTER);

    // Restart on the same data dir and port.
    let (aos, ready_after) = Aos::start_on(&dir, port).await;
    println!(
        "restart on an existing data dir: /readyz after {} ms",
        ready_after.as_millis()
    );
    assert!(
        ready_after < Duration::from_secs(1),
        "restart took {ready_after:?}"
    );

    let client = aos.client();
    let cm = rt("v1", "ConfigMap");
    for (&name, &i) in &acked {
        let obj = client
            .get(cm, Some("default"), &format!("cm-{name}"))
            .await
            .unwrap_or_else(|e| panic!("cm-{name} lost: {e}"));
        let value: usize = obj["data"]["value"].as_str().unwrap().parse().unwrap();
        // The apply in flight at the kill may or may not have committed; nothing else may differ.
        let allowed = value == i || (value == first_failed && first_failed % NAMES == name);
        assert!(allowed, "cm-{name} holds {value}, last acknowledged {i}");
    }

    // The loop goes on against the restarted server.
    for i in first_failed..APPLIES {
        let run = aos.aos_stdin(&["apply", "-f", "-"], Some(&manifest(i)));
        run.ok();
    }
    let list = client
        .list(cm, Some("default"), &Default::default())
        .await
        .unwrap();
    assert_eq!(
        list.items
            .iter()
            .filter(|o| o["metadata"]["name"].as_str().unwrap().starts_with("cm-"))
            .count(),
        NAMES
    );
}
