//! Where the gateway's configuration comes from: the [`ConfigSource`] seam.
//!
//! A source publishes whole [`Snapshot`]s on a watch channel; the gateway compiles each into a
//! route table and swaps it in. `None` means "not synced yet" (`/readyz` answers 503).
//! - [`ApiSource`] lists and watches the API (the production source);
//! - [`StaticSource`] serves one snapshot (a file, for `examples/gateway_bench.rs`);
//! - [`channel`] gives tests a sender to publish snapshots directly.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::snapshot::Snapshot;

mod api;

pub use api::{ApiSource, ListWatch};

/// The receiving end of a source: the latest snapshot, `None` until the first full sync.
pub type SnapshotReceiver = watch::Receiver<Option<Arc<Snapshot>>>;

/// A source of configuration snapshots.
pub trait ConfigSource: Send + 'static {
    /// Start producing snapshots (spawning tasks as needed) until `shutdown` is cancelled.
    fn start(self, shutdown: CancellationToken) -> SnapshotReceiver;
}

/// One fixed snapshot.
#[derive(Clone, Debug, Default)]
pub struct StaticSource {
    snapshot: Snapshot,
}

impl StaticSource {
    /// Serve `snapshot` forever.
    pub fn new(snapshot: Snapshot) -> Self {
        StaticSource { snapshot }
    }
}

impl ConfigSource for StaticSource {
    fn start(self, _shutdown: CancellationToken) -> SnapshotReceiver {
        let (tx, rx) = watch::channel(Some(Arc::new(self.snapshot)));
        // Keep the sender alive so the receiver does not report the source as gone.
        std::mem::forget(tx);
        rx
    }
}

/// The sending half of [`channel`].
#[derive(Debug)]
pub struct SnapshotSender {
    tx: watch::Sender<Option<Arc<Snapshot>>>,
}

impl SnapshotSender {
    /// Publish a new snapshot; the gateway applies the latest one.
    pub fn send(&self, snapshot: Snapshot) {
        self.tx.send_replace(Some(Arc::new(snapshot)));
    }
}

/// A source fed by hand.
#[derive(Debug)]
pub struct ChannelSource {
    rx: SnapshotReceiver,
}

impl ConfigSource for ChannelSource {
    fn start(self, _shutdown: CancellationToken) -> SnapshotReceiver {
        self.rx
    }
}

/// A source and its sender: publish snapshots with [`SnapshotSender::send`].
pub fn channel() -> (SnapshotSender, ChannelSource) {
    let (tx, rx) = watch::channel(None);
    (SnapshotSender { tx }, ChannelSource { rx })
}
