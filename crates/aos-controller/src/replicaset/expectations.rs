//! Controller expectations, as Kubernetes' `UIDTrackingControllerExpectations`:
//! after creating or deleting pods a ReplicaSet waits until its informer has
//! seen those changes before it counts pods again, so a fast loop does not
//! create (or delete) twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::ObjectKey;

/// After this long, unmet expectations are given up (a watch event was lost).
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Expected {
    add: i64,
    del: i64,
    deleting: HashSet<String>,
    since: Instant,
}

/// Expectations of every ReplicaSet.
#[derive(Debug, Default)]
pub struct Expectations {
    inner: Mutex<HashMap<ObjectKey, Expected>>,
}

impl Expectations {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<ObjectKey, Expected>) -> R) -> R {
        f(&mut self.inner.lock().expect("expectations lock poisoned"))
    }

    /// Whether `key` may act: no pending expectations, all met, or expired.
    pub fn satisfied(&self, key: &ObjectKey) -> bool {
        self.with(|m| match m.get(key) {
            None => true,
            Some(e) => (e.add <= 0 && e.del <= 0) || e.since.elapsed() > EXPECTATIONS_TTL,
        })
    }

    /// `key` is about to create `n` pods.
    pub fn expect_creations(&self, key: &ObjectKey, n: usize) {
        self.with(|m| {
            m.insert(
                key.clone(),
                Expected {
                    add: n as i64,
                    del: 0,
                    deleting: HashSet::new(),
                    since: Instant::now(),
                },
            );
        });
    }

    /// `key` is about to delete these pods (`namespace/name`).
    pub fn expect_deletions(&self, key: &ObjectKey, pods: Vec<String>) {
        self.with(|m| {
            m.insert(
                key.clone(),
                Expected {
                    add: 0,
                    del: pods.len() as i64,
                    deleting: pods.into_iter().collect(),
                    since: Instant::now(),
                },
            );
        });
    }

    /// A pod of `key` appeared (or a creation was given up).
    pub fn creation_observed(&self, key: &ObjectKey) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.add -= 1;
            }
        });
    }

    /// A pod of `key` went away (or its deletion failed); counted once per pod.
    pub fn deletion_observed(&self, key: &ObjectKey, pod: &str) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key)
                && e.deleting.remove(pod)
            {
                e.del -= 1;
            }
        });
    }

    /// Forget `key` (its ReplicaSet was deleted).
    pub fn delete(&self, key: &ObjectKey) {
        self.with(|m| {
            m.remove(key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn lifecycle() {
        let e = Expectations::default();
        let k = ObjectKey::new("ns", "rs");
        assert!(e.satisfied(&k));
        e.expect_creations(&k, 2);
        assert!(!e.satisfied(&k));
        e.creation_observed(&k);
        assert!(!e.satisfied(&k));
        e.creation_observed(&k);
        assert!(e.satisfied(&k));

        e.expect_deletions(&k, vec!["ns/a".into(), "ns/b".into()]);
        e.deletion_observed(&k, "ns/a");
        e.deletion_observed(&k, "ns/a"); // counted once
        assert!(!e.satisfied(&k));
        tokio::time::advance(EXPECTATIONS_TTL + Duration::from_secs(1)).await;
        assert!(e.satisfied(&k), "expired expectations are satisfied");
    }
}
