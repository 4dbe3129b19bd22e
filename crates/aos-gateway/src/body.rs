//! Request and response bodies of the proxy, without boxing.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use crate::conns::RequestActive;
use crate::proxy::{H1Body, H1BodyError};
use crate::table::{ClusterState, EndpointState};

/// A request body: streamed from the client, or buffered (so a retry can send it again).
#[derive(Debug)]
pub(crate) enum ReqBody {
    /// Nothing.
    Empty,
    /// A buffered body, sent once.
    Full(Option<Bytes>),
    /// The client's body, streamed.
    Stream(Incoming),
}

impl ReqBody {
    /// The client's body; `Empty` when it has ended already (a GET without body).
    pub(crate) fn from_incoming(body: Incoming) -> Self {
        if body.is_end_stream() {
            ReqBody::Empty
        } else {
            ReqBody::Stream(body)
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Stream(s) => s.size_hint(),
        }
    }
}

/// Held while an upstream request is in flight: releases the endpoint's load count, the
/// cluster's request slot and the connection slot when the response body ends or is dropped.
/// (An HTTP/1.1 body gives its connection back to the pool itself, when it ends cleanly.)
#[derive(Default)]
pub(crate) struct InflightGuard {
    pub endpoint: Option<Arc<EndpointState>>,
    pub cluster: Option<Arc<ClusterState>>,
    pub permit: Option<OwnedSemaphorePermit>,
}

impl InflightGuard {
    /// Give the cluster's request slot back now.
    pub(crate) fn release_cluster(&mut self) {
        if let Some(c) = self.cluster.take() {
            c.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if let Some(ep) = self.endpoint.take() {
            ep.active.fetch_sub(1, Ordering::Relaxed);
        }
        self.release_cluster();
    }
}

/// A response body: the upstream's, streamed, or a local answer.
pub(crate) struct RespBody {
    kind: RespKind,
    guard: Option<InflightGuard>,
    /// Keeps the client connection busy (no idle timeout) until the body ends.
    busy: Option<RequestActive>,
}

enum RespKind {
    Full(Option<Bytes>),
    /// An HTTP/2 upstream's body.
    Stream(Incoming),
    /// An HTTP/1.1 upstream's body, read from its pooled connection.
    H1(H1Body),
}

/// Why a response body failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RespBodyError {
    /// The HTTP/2 upstream's stream failed.
    #[error(transparent)]
    H2(#[from] hyper::Error),
    /// The HTTP/1.1 upstream's connection failed.
    #[error(transparent)]
    H1(#[from] H1BodyError),
}

impl RespBody {
    /// A local answer.
    pub(crate) fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        RespBody {
            kind: RespKind::Full((!b.is_empty()).then_some(b)),
            guard: None,
            busy: None,
        }
    }

    /// An HTTP/2 upstream's body.
    pub(crate) fn stream(b: Incoming) -> Self {
        RespBody {
            kind: RespKind::Stream(b),
            guard: None,
            busy: None,
        }
    }

    /// An HTTP/1.1 upstream's body.
    pub(crate) fn h1(b: H1Body) -> Self {
        RespBody {
            kind: RespKind::H1(b),
            guard: None,
            busy: None,
        }
    }

    /// Keep the client connection busy until the body ends (at once if it has ended).
    pub(crate) fn hold(&mut self, busy: RequestActive) {
        if !self.is_end_stream() {
            self.busy = Some(busy);
        }
    }

    /// Hold `g` until the body ends (or is dropped).
    pub(crate) fn attach(&mut self, g: InflightGuard) {
        self.guard = Some(g);
        if self.is_end_stream() {
            self.finish();
        }
    }
}

impl RespBody {
    /// The body ended: release the guard.
    fn finish(&mut self) {
        self.guard = None;
        self.busy = None;
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = RespBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RespBodyError>>> {
        let this = self.get_mut();
        let r = match &mut this.kind {
            RespKind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RespKind::Stream(s) => Pin::new(s)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(RespBodyError::from))),
            RespKind::H1(s) => Pin::new(s)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(RespBodyError::from))),
        };
        match &r {
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Ready(Some(Ok(_))) if this.is_end_stream() => this.finish(),
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RespKind::Full(b) => b.is_none(),
            RespKind::Stream(s) => s.is_end_stream(),
            RespKind::H1(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RespKind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RespKind::Stream(s) => s.size_hint(),
            RespKind::H1(s) => s.size_hint(),
        }
    }
}
