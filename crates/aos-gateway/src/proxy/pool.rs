//! Connection-pool limits: Envoy's circuit breakers as Istio's `connectionPool` sets them.
//! `http2MaxRequests` caps requests in flight to the cluster; for HTTP/1.1 upstreams
//! `tcp.maxConnections` caps connections (one request each) and `http1MaxPendingRequests` caps
//! the requests waiting for one. Beyond the limits the request is shed at once with 503 and
//! `x-envoy-overloaded: true`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::Semaphore;

use super::Failure;
use crate::body::InflightGuard;
use crate::table::{Cluster, ClusterState};

/// Whether a try may go.
pub(crate) enum Admission {
    Go,
    /// Shed: a limit is reached.
    Overflow,
    /// Wait for a connection slot (the queue has room).
    Wait(Wait),
}

/// A try waiting for a connection slot; counted as pending until it has one or gives up.
pub(crate) struct Wait {
    sem: Arc<Semaphore>,
    pending: Pending,
}

/// Counts a request waiting for a connection slot.
struct Pending(Arc<ClusterState>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Wait {
    /// Wait for the slot; the guard holds it until the response body ends.
    pub(crate) async fn acquire(self, guard: &mut InflightGuard) -> Result<(), Failure> {
        let permit = self
            .sem
            .acquire_owned()
            .await
            .map_err(|_| Failure::Overflow)?;
        guard.permit = Some(permit);
        drop(self.pending);
        Ok(())
    }
}

/// Count the try against the cluster's limits; the guard releases what it took.
pub(crate) fn admit(cluster: &Cluster, guard: &mut InflightGuard) -> Admission {
    let limits = &cluster.policy.pool;
    let state = &cluster.state;
    let n = state.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
    guard.cluster = Some(state.clone());
    if n > limits.max_requests {
        return overflow(cluster, guard);
    }
    let Some(sem) = &state.connections else {
        return Admission::Go;
    };
    match sem.clone().try_acquire_owned() {
        Ok(p) => {
            guard.permit = Some(p);
            Admission::Go
        }
        Err(_) => {
            // Wait for a connection slot, if the queue has room (the rare path).
            let waiting = state.pending.fetch_add(1, Ordering::AcqRel) + 1;
            let pending = Pending(state.clone());
            if waiting > limits.max_pending_requests {
                drop(pending);
                return overflow(cluster, guard);
            }
            Admission::Wait(Wait {
                sem: sem.clone(),
                pending,
            })
        }
    }
}

/// Shed the try: it gives its request slot back at once.
fn overflow(cluster: &Cluster, guard: &mut InflightGuard) -> Admission {
    guard.release_cluster();
    cluster.service.overflows.fetch_add(1, Ordering::Relaxed);
    Admission::Overflow
}
