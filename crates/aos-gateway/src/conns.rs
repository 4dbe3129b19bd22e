//! The proxy's client connections: the idle (header read) timeout and the drain on shutdown,
//! with no per-request timer.
//!
//! hyper's own `header_read_timeout` arms a boxed timer in tokio's timer wheel each time a
//! keep-alive connection waits for its next request and removes it when the head arrives: an
//! allocation, a clock read and two timer-wheel updates per request (about 4% of the proxy's
//! CPU in bench/gateway). hyper-util's graceful shutdown adds a `watch` receiver polled at every
//! wake-up of every connection. Here one sweeper task per listener does both jobs, once a
//! second, on state the request path updates with a few relaxed atomics:
//! - a connection with no request in flight (none received yet, or the last response body
//!   finished) for longer than the timeout is shut down gracefully: at once for HTTP/1.1 (it
//!   is between requests), with GOAWAY for HTTP/2;
//! - on drain every connection is told to shut down gracefully, and [`Conns::drained`] waits for
//!   the last one to end.
//!
//! The timeout is checked once per tick (1 s): a connection is closed between `timeout` and
//! `timeout` + 1 s after it became idle.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::sync::Notify;

/// How often the sweeper looks at the connections (the granularity of the idle timeout).
const TICK: Duration = Duration::from_secs(1);

/// The client connections of one listener.
pub(crate) struct Conns {
    /// Ticks since the sweeper started: the coarse clock of the idle timeout.
    clock: Arc<AtomicU64>,
    /// Ticks a connection may stay idle.
    timeout_ticks: u64,
    /// Every live connection (dead entries are dropped by the sweeper).
    list: Mutex<Vec<Weak<ConnState>>>,
    live: Arc<Live>,
}

/// The count of live connections, and who waits for it to reach zero.
#[derive(Default)]
struct Live {
    count: AtomicU64,
    draining: AtomicBool,
    zero: Notify,
}

/// One client connection's state, shared by its task, its requests and the sweeper.
pub(crate) struct ConnState {
    /// Requests in progress: from the request head to the end (or drop) of the response body.
    active: AtomicU32,
    /// The coarse time at which the connection last became idle.
    idle_since: AtomicU64,
    /// Set when the connection must shut down gracefully.
    stop: AtomicBool,
    /// The connection task, woken when `stop` is set.
    waker: AtomicWaker,
    clock: Arc<AtomicU64>,
    live: Arc<Live>,
}

impl Drop for ConnState {
    fn drop(&mut self) {
        if self.live.count.fetch_sub(1, Ordering::AcqRel) == 1
            && self.live.draining.load(Ordering::Acquire)
        {
            self.live.zero.notify_one();
        }
    }
}

impl ConnState {
    /// A request of this connection began: the idle timeout stops until it ends.
    pub(crate) fn begin(self: &Arc<Self>) -> RequestActive {
        self.active.fetch_add(1, Ordering::Relaxed);
        RequestActive(self.clone())
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// Held from a request's head to the end of its response body (or until either is dropped).
pub(crate) struct RequestActive(Arc<ConnState>);

impl Drop for RequestActive {
    fn drop(&mut self) {
        let c = &self.0;
        // The time first, then the count: the sweeper reads them in the other order.
        c.idle_since
            .store(c.clock.load(Ordering::Relaxed), Ordering::Relaxed);
        c.active.fetch_sub(1, Ordering::Release);
    }
}

impl Conns {
    /// Connections idle for longer than `idle_timeout` are closed.
    pub(crate) fn new(idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Conns {
            clock: Arc::new(AtomicU64::new(0)),
            timeout_ticks: idle_timeout.as_secs().max(1),
            list: Mutex::new(Vec::new()),
            live: Arc::new(Live::default()),
        })
    }

    /// Register a new connection (idle from now on).
    pub(crate) fn add(&self) -> Arc<ConnState> {
        self.live.count.fetch_add(1, Ordering::AcqRel);
        let state = Arc::new(ConnState {
            active: AtomicU32::new(0),
            idle_since: AtomicU64::new(self.clock.load(Ordering::Relaxed)),
            stop: AtomicBool::new(self.live.draining.load(Ordering::Acquire)),
            waker: AtomicWaker::new(),
            clock: self.clock.clone(),
            live: self.live.clone(),
        });
        self.list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&state));
        state
    }

    /// Live connections.
    #[cfg(test)]
    pub(crate) fn live(&self) -> u64 {
        self.live.count.load(Ordering::Acquire)
    }

    /// One tick of the sweeper: advance the clock, close the connections idle for too long,
    /// forget the dead ones.
    fn sweep(&self) {
        let now = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|w| {
            let Some(c) = w.upgrade() else {
                return false;
            };
            if c.active.load(Ordering::Acquire) == 0
                && now.saturating_sub(c.idle_since.load(Ordering::Relaxed)) > self.timeout_ticks
                && !c.stop.load(Ordering::Relaxed)
            {
                tracing::debug!("closing an idle client connection");
                c.stop();
            }
            true
        });
    }

    /// Run the sweeper until the returned future is dropped.
    pub(crate) async fn sweeper(self: Arc<Self>) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep();
        }
    }

    /// Tell every connection (and every one registered from now on) to shut down gracefully.
    pub(crate) fn drain(&self) {
        self.live.draining.store(true, Ordering::Release);
        let list = std::mem::take(&mut *self.list.lock().unwrap_or_else(|e| e.into_inner()));
        for c in list.iter().filter_map(Weak::upgrade) {
            c.stop();
        }
    }

    /// Wait until every connection has ended (after [`Conns::drain`]).
    pub(crate) async fn drained(&self) {
        loop {
            let zero = self.live.zero.notified();
            if self.live.count.load(Ordering::Acquire) == 0 {
                return;
            }
            zero.await;
        }
    }
}

/// A connection future that shuts down gracefully when its [`ConnState`] says so.
pub(crate) struct Watched<C> {
    conn: Pin<Box<C>>,
    state: Arc<ConnState>,
    /// Starts the connection's graceful shutdown (hyper's `graceful_shutdown`).
    shutdown: fn(Pin<&mut C>),
    stopping: bool,
    /// The waker last registered: registering again (two atomic operations on every wake-up
    /// of the connection) is needed only when the task's waker changes.
    registered: Option<Waker>,
}

impl<C: Future> Watched<C> {
    pub(crate) fn new(conn: C, state: Arc<ConnState>, shutdown: fn(Pin<&mut C>)) -> Self {
        Watched {
            conn: Box::pin(conn),
            state,
            shutdown,
            stopping: false,
            registered: None,
        }
    }
}

impl<C: Future> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        if !this.stopping {
            // Register before looking at the flag: a `stop` set in between still wakes us.
            // (Only `stop` takes the registered waker, after setting the flag: a waker
            // registered once stays there until then.)
            if !this
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                this.state.waker.register(cx.waker());
                this.registered = Some(cx.waker().clone());
            }
            if this.state.stop.load(Ordering::Acquire) {
                this.stopping = true;
                (this.shutdown)(this.conn.as_mut());
            }
        }
        this.conn.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_are_stopped_after_the_timeout_and_busy_ones_are_not() {
        let conns = Conns::new(Duration::from_secs(2));
        let idle = conns.add();
        let busy = conns.add();
        let req = busy.begin();
        for _ in 0..2 {
            conns.sweep();
        }
        assert!(
            !idle.stop.load(Ordering::Acquire),
            "not past the timeout yet"
        );
        conns.sweep();
        assert!(idle.stop.load(Ordering::Acquire));
        assert!(!busy.stop.load(Ordering::Acquire), "a request is in flight");
        // The request ends: the connection is idle from now on.
        drop(req);
        conns.sweep();
        conns.sweep();
        assert!(!busy.stop.load(Ordering::Acquire));
        conns.sweep();
        assert!(busy.stop.load(Ordering::Acquire));
        assert_eq!(conns.live(), 2);
        drop((idle, busy));
        assert_eq!(conns.live(), 0);
        conns.sweep();
        assert!(conns.list.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn drain_stops_every_connection_and_waits_for_them() {
        let conns = Conns::new(Duration::from_secs(60));
        let a = conns.add();
        conns.drain();
        assert!(a.stop.load(Ordering::Acquire));
        let late = conns.add();
        assert!(
            late.stop.load(Ordering::Acquire),
            "registered during the drain"
        );
        let waiter = tokio::spawn({
            let conns = conns.clone();
            async move { conns.drained().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(late);
        waiter.await.unwrap();
    }
}
