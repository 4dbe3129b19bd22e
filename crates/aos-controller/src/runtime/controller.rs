//! The controller loop in kube-runtime's shape: watched objects (and objects
//! mapped to them, such as owned children) become keys in a [`WorkQueue`];
//! workers reconcile the cached object of each key with
//! `reconcile(obj, ctx) -> Result<Action, E>`; errors go through an
//! `error_policy` that decides the retry.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::informer::{Informer, InformerEvent};
use super::queue::WorkQueue;
use crate::cluster::ObjectKey;
use crate::meta;
use crate::metrics::Metrics;

/// What to do after a reconciliation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    kind: ActionKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ActionKind {
    Await,
    Requeue(Duration),
    Backoff,
}

impl Action {
    /// Reconcile again after `after` (and on any change before).
    pub fn requeue(after: Duration) -> Self {
        Self {
            kind: ActionKind::Requeue(after),
        }
    }
    /// Reconcile again only when something changes.
    pub fn await_change() -> Self {
        Self {
            kind: ActionKind::Await,
        }
    }
    /// Reconcile again after the key's exponential backoff delay (for errors).
    pub fn backoff() -> Self {
        Self {
            kind: ActionKind::Backoff,
        }
    }
    /// The fixed requeue delay, if any.
    pub fn requeue_after(&self) -> Option<Duration> {
        match self.kind {
            ActionKind::Requeue(d) => Some(d),
            _ => None,
        }
    }
}

type Mapper = Box<dyn Fn(&InformerEvent) -> Vec<ObjectKey> + Send + Sync>;

/// A controller of one primary resource type.
pub struct Controller {
    name: &'static str,
    main: Informer,
    queue: WorkQueue<ObjectKey>,
    informers: Vec<Informer>,
    workers: usize,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The keys of the controllers (`ownerReferences` with `controller: true`) of `kind`.
fn controller_owner_keys(obj: &Value, owner_kind: &str) -> Option<ObjectKey> {
    let r = meta::controller_ref(obj)?;
    (r.kind == owner_kind).then(|| ObjectKey {
        namespace: meta::namespace(obj).map(str::to_owned),
        name: r.name,
    })
}

impl Controller {
    /// A controller reconciling the objects of `main`.
    pub fn new(name: &'static str, main: Informer) -> Self {
        let queue = WorkQueue::default();
        let q = queue.clone();
        main.add_handler(move |ev| {
            if let Some(key) = ObjectKey::of(ev.object()) {
                q.add(key);
            }
        });
        Self {
            name,
            informers: vec![main.clone()],
            main,
            queue,
            workers: 2,
            metrics: None,
        }
    }

    /// Reconcile the controlling owner (of kind `owner_kind`, same namespace) when a child changes,
    /// as kube-runtime's `.owns()`.
    pub fn owns(self, child: Informer, owner_kind: &'static str) -> Self {
        self.watches(child, move |ev| {
            let mut keys: Vec<ObjectKey> = controller_owner_keys(ev.object(), owner_kind)
                .into_iter()
                .collect();
            if let Some(old) = ev.old().and_then(|o| controller_owner_keys(o, owner_kind))
                && !keys.contains(&old)
            {
                keys.push(old);
            }
            keys
        })
    }

    /// Reconcile the keys `mapper` returns for every change of `other`.
    pub fn watches(
        mut self,
        other: Informer,
        mapper: impl Fn(&InformerEvent) -> Vec<ObjectKey> + Send + Sync + 'static,
    ) -> Self {
        let mapper: Mapper = Box::new(mapper);
        let q = self.queue.clone();
        other.add_handler(move |ev| {
            for key in mapper(ev) {
                q.add(key);
            }
        });
        if !self
            .informers
            .iter()
            .any(|i| std::ptr::eq(i.resource(), other.resource()))
        {
            self.informers.push(other);
        }
        self
    }

    /// Number of concurrent workers (distinct keys are reconciled in parallel; one key never is).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Record reconcile counts and durations.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The queue (to enqueue keys from elsewhere).
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }

    /// Wait for the informers' first lists, then reconcile until `cancel` fires.
    /// Keys whose object is no longer cached are dropped (see [`Controller::run_keyed`]
    /// to act on them).
    pub async fn run<Ctx, E, F, Fut, P>(
        self,
        reconcile: F,
        error_policy: P,
        ctx: Arc<Ctx>,
        cancel: CancellationToken,
    ) where
        Ctx: Send + Sync + 'static,
        E: Display + Send + 'static,
        F: Fn(Arc<Value>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(Arc<Value>, &E, Arc<Ctx>) -> Action + Send + Sync + 'static,
    {
        let reconcile = Arc::new(reconcile);
        let error_policy = Arc::new(error_policy);
        self.run_keyed(
            move |_key, obj, ctx| {
                let reconcile = reconcile.clone();
                async move {
                    match obj {
                        Some(obj) => reconcile(obj, ctx).await,
                        None => Ok(Action::await_change()),
                    }
                }
            },
            move |_key, obj, err, ctx| match obj {
                Some(obj) => error_policy(obj, err, ctx),
                None => Action::backoff(),
            },
            ctx,
            cancel,
        )
        .await;
    }

    /// As [`Controller::run`], but every queued key is reconciled, with `None` when its
    /// object is not (or no longer) cached: the place to clean up after a deleted object, as
    /// Kubernetes' controllers do when their lister answers "not found".
    pub async fn run_keyed<Ctx, E, F, Fut, P>(
        self,
        reconcile: F,
        error_policy: P,
        ctx: Arc<Ctx>,
        cancel: CancellationToken,
    ) where
        Ctx: Send + Sync + 'static,
        E: Display + Send + 'static,
        F: Fn(ObjectKey, Option<Arc<Value>>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(&ObjectKey, Option<Arc<Value>>, &E, Arc<Ctx>) -> Action + Send + Sync + 'static,
    {
        for inf in &self.informers {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = inf.wait_ready() => {}
            }
        }
        tracing::info!(
            controller = self.name,
            workers = self.workers,
            "caches synced; starting workers"
        );
        let reconcile = Arc::new(reconcile);
        let error_policy = Arc::new(error_policy);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.workers {
            let queue = self.queue.clone();
            let cache = self.main.cache().clone();
            let reconcile = reconcile.clone();
            let error_policy = error_policy.clone();
            let ctx = ctx.clone();
            let metrics = self.metrics.clone();
            let name = self.name;
            tasks.spawn(async move {
                while let Some(key) = queue.get().await {
                    let obj = cache.get(&key);
                    let started = Instant::now();
                    let result = reconcile(key.clone(), obj.clone(), ctx.clone()).await;
                    let action = match &result {
                        Ok(a) => {
                            queue.forget(&key);
                            *a
                        }
                        Err(e) => {
                            tracing::warn!(controller = name, object = %key, error = %e, "reconcile failed");
                            error_policy(&key, obj, e, ctx.clone())
                        }
                    };
                    if let Some(m) = &metrics {
                        m.record(name, result.is_ok(), started.elapsed());
                    }
                    match action.kind {
                        ActionKind::Await => {}
                        ActionKind::Requeue(d) => queue.add_after(key.clone(), d),
                        ActionKind::Backoff => queue.add_rate_limited(key.clone()),
                    }
                    queue.done(&key);
                }
            });
        }
        cancel.cancelled().await;
        self.queue.shut_down();
        // Workers finish the reconciliation in progress, then see the shut-down queue.
        while tasks.join_next().await.is_some() {}
        tracing::info!(controller = self.name, "stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::cluster::fake::FakeCluster;
    use crate::cluster::{Cluster, ListParams};
    use crate::kinds::tests::{CONFIGMAPS, PODS};

    #[tokio::test]
    async fn reconciles_owners_of_changed_children() {
        let fake = FakeCluster::new();
        let owner = fake
            .create(
                &CONFIGMAPS,
                Some("ns"),
                &json!({"kind": "ConfigMap", "metadata": {"name": "o"}}),
            )
            .await
            .unwrap();
        let cms = Informer::new(fake.clone(), &CONFIGMAPS, None, ListParams::default());
        let pods = Informer::new(fake.clone(), &PODS, None, ListParams::default());
        let cancel = CancellationToken::new();
        tokio::spawn(cms.clone().run(cancel.clone()));
        tokio::spawn(pods.clone().run(cancel.clone()));
        let count = Arc::new(AtomicUsize::new(0));
        let ctl = Controller::new("test", cms).owns(pods, "ConfigMap");
        let run = tokio::spawn(ctl.run(
            |_obj: Arc<Value>, ctx: Arc<AtomicUsize>| async move {
                ctx.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(Action::await_change())
            },
            |_, _, _| Action::backoff(),
            count.clone(),
            cancel.clone(),
        ));
        wait_for(|| count.load(Ordering::SeqCst) >= 1).await;
        let child = json!({"metadata": {"name": "p", "ownerReferences": [meta::OwnerRef::controller_of(&owner).to_value()]}});
        fake.create(&PODS, Some("ns"), &child).await.unwrap();
        wait_for(|| count.load(Ordering::SeqCst) >= 2).await;
        cancel.cancel();
        run.await.unwrap();
    }

    #[tokio::test]
    async fn errors_back_off_and_retry() {
        let fake = FakeCluster::new();
        fake.create(&CONFIGMAPS, Some("ns"), &json!({"metadata": {"name": "o"}}))
            .await
            .unwrap();
        let cms = Informer::new(fake.clone(), &CONFIGMAPS, None, ListParams::default());
        let cancel = CancellationToken::new();
        tokio::spawn(cms.clone().run(cancel.clone()));
        let count = Arc::new(AtomicUsize::new(0));
        let metrics = Arc::new(Metrics::default());
        let ctl = Controller::new("flaky", cms).metrics(metrics.clone());
        let run = tokio::spawn(ctl.run(
            |_obj: Arc<Value>, ctx: Arc<AtomicUsize>| async move {
                let n = ctx.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    Err("boom")
                } else {
                    Ok(Action::await_change())
                }
            },
            |_, _, _| Action::backoff(),
            count.clone(),
            cancel.clone(),
        ));
        wait_for(|| metrics.counts("flaky") == (1, 3)).await;
        assert_eq!(count.load(Ordering::SeqCst), 4);
        cancel.cancel();
        run.await.unwrap();
    }

    pub(crate) async fn wait_for(mut f: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("condition not met in time");
    }
}
