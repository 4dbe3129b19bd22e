//! The HTTP/1.1 upstream client: a pooled connection driven by the request's own task.
//!
//! hyper's client runs every connection as a separate task and talks to it through channels
//! (request, response, and one more for the body). On the gateway's request path that meant
//! two task wake-ups and three channel hand-offs per request; the profile of the benchmark put
//! the client side at about a third of the proxy's CPU. Here the request future writes the
//! request and parses the answer's head itself, and the response body reads its bytes straight
//! from the socket, so a request costs one write and (usually) one read, like nginx's upstream
//! module. The connection goes back to its endpoint's pool the moment the body's last byte
//! is read.
//!
//! Scope: what a reverse proxy needs. Request bodies are sent whole (buffered), with their known
//! length, or chunked; `Expect: 100-continue` is handled towards the client by the server side,
//! so it is not forwarded; interim (1xx) answers are skipped; answers are framed by
//! `Transfer-Encoding: chunked`, `Content-Length` or the end of the connection (RFC 9112 §6.3);
//! trailers are read and dropped. No upgrades (the router strips `Upgrade`).
//!
//! Stale keep-alive connections: an idle connection the upstream closed is noticed before use
//! when the reactor has seen its end (no system call otherwise). When a reused connection fails
//! before the first byte of an answer, the request goes again on a new connection if it is safe:
//! when the request could not be written at all, or when its method is idempotent (RFC 9110
//! §9.2.2) or it carries an `Idempotency-Key`, and its body is not a stream already partly sent.
//! That is the keep-alive race of a pod that closes its idle connections on shutdown: the
//! request never reached the application.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncWriteExt as _, Interest};
use tokio::net::TcpStream;

use super::Failure;
use crate::body::ReqBody;

/// Most header lines in an upstream answer.
const MAX_HEADERS: usize = 128;
/// Largest upstream answer head (Envoy's default header limit is 60 KiB).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest chunk-size line, or trailer line, of a chunked body.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;
/// Largest request buffer a connection keeps for its next request.
const MAX_KEPT_WRITE_BUFFER: usize = 16 * 1024;
/// Idle connections kept per endpoint.
const MAX_IDLE: usize = 1024;

/// An HTTP/1.1 connection to one upstream endpoint.
pub(crate) struct Conn {
    io: TcpStream,
    /// Bytes read and not yet consumed.
    rbuf: BytesMut,
    /// The buffer requests are encoded into, empty between requests.
    wbuf: Vec<u8>,
}

impl Conn {
    /// Whether an idle connection can carry a request: no unsolicited bytes and no end of
    /// stream seen by the reactor. Costs a system call only when the socket is readable.
    fn is_usable(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        // The readiness the reactor last saw, read without registering a waker (`try_io`
        // calls the closure only when the socket is marked readable).
        match self.io.try_io(Interest::READABLE, || Ok(())) {
            Err(_) => true,
            // Readable while idle: the end of the stream, an error, or garbage. Or stale
            // readiness from the last answer: then the read below says "would block".
            Ok(()) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Read more bytes into the buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

struct Idle {
    conn: Conn,
    /// When it went idle, on [`coarse_now`]'s clock.
    since: Duration,
}

/// Now on the coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`: a read of the vDSO's page,
/// no timestamp counter; a few milliseconds of resolution, plenty for idle times): the pool
/// reads the time twice per request.
fn coarse_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The idle HTTP/1.1 connections of one endpoint, most recently used last: one list per proxy
/// worker (a connection stays with the worker whose reactor it is registered with).
pub(crate) struct Pool {
    shards: Box<[Mutex<VecDeque<Idle>>]>,
}

/// Lists per pool: at least one per proxy worker of any gateway of the process (see
/// [`reserve_pool_shards`]), and one per core.
static POOL_SHARDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Make pools created from now on keep one list per worker of a gateway with `workers`.
pub(crate) fn reserve_pool_shards(workers: usize) {
    POOL_SHARDS.fetch_max(workers.min(1024), std::sync::atomic::Ordering::Relaxed);
}

impl Default for Pool {
    fn default() -> Self {
        // Read once: `available_parallelism` reads cgroup files, and a table of thousands of
        // endpoints makes as many pools.
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cores = *CORES
            .get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(64)));
        let n = POOL_SHARDS
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(cores);
        Pool {
            shards: (0..n).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Pool {
    /// This worker's list.
    fn shard(&self) -> &Mutex<VecDeque<Idle>> {
        &self.shards[crate::proxy::worker() % self.shards.len()]
    }

    /// The most recently used idle connection that is still usable.
    fn checkout(&self, idle_timeout: Duration) -> Option<Conn> {
        let now = coarse_now();
        loop {
            let mut idle = self.shard().lock().unwrap_or_else(|e| e.into_inner());
            let entry = idle.pop_back()?;
            if now.saturating_sub(entry.since) > idle_timeout {
                // The newest is past its idle timeout: so are all the others.
                let stale = std::mem::take(&mut *idle);
                drop(idle);
                drop(stale);
                return None;
            }
            drop(idle);
            let mut conn = entry.conn;
            if conn.is_usable() {
                return Some(conn);
            }
        }
    }

    /// Give a connection back, dropping those idle for longer than `idle_timeout`, and the
    /// oldest when the upstream closed it (upstreams close their longest-idle connections
    /// first; without this, closed sockets would wait for a checkout to reach them).
    fn release(&self, conn: Conn, idle_timeout: Duration) {
        let now = coarse_now();
        let mut idle = self.shard().lock().unwrap_or_else(|e| e.into_inner());
        let mut expired = Vec::new();
        while idle
            .front()
            .is_some_and(|e| now.saturating_sub(e.since) > idle_timeout)
        {
            expired.extend(idle.pop_front());
        }
        if idle.front_mut().is_some_and(|e| !e.conn.is_usable()) {
            expired.extend(idle.pop_front());
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle { conn, since: now });
        }
        drop(idle);
        drop(expired);
    }

    /// Idle connections held.
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// Where a response's connection goes back to when its body ends.
pub(crate) struct ReturnTo {
    pub pool: std::sync::Arc<crate::table::EndpointState>,
    pub idle_timeout: Duration,
}

/// How one exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExchangeError {
    /// The request could not be written: the upstream cannot have acted on it.
    Unsent,
    /// The connection ended before the first byte of an answer.
    NoAnswer,
    /// Anything later, or a malformed answer.
    Broken,
    /// The client's request body failed.
    ClientBody,
}

/// How the request body is framed upstream.
enum ReqFraming {
    None,
    Length(u64),
    Chunked,
}

/// Whether the request may be sent again after a reused connection failed before answering
/// (RFC 9110 §9.2.2 idempotent methods, or an idempotency key).
fn idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || headers.contains_key("idempotency-key")
        || headers.contains_key("x-idempotency-key")
}

/// Methods whose empty body is announced with `content-length: 0`.
fn announces_empty_body(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::OPTIONS
            | Method::TRACE
            | Method::CONNECT
    )
}

/// Encode the request head (and a buffered body) into `out`.
fn encode_head(
    parts: &http::request::Parts,
    framing: &ReqFraming,
    default_host: &str,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .as_bytes();
    out.extend_from_slice(if target.is_empty() { b"/" } else { target });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !parts.headers.contains_key(header::HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(default_host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        // Framing is this hop's, and `Expect` was answered towards the client already.
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::EXPECT
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        ReqFraming::None => {}
        ReqFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        ReqFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed answer head.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
}

/// Parse one answer head from the front of `buf`, consuming it. `Ok(None)`: need more bytes.
pub(crate) fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<Head>, ExchangeError> {
    loop {
        match parse_one_head(buf, head_request)? {
            // 100 Continue, 103 Early Hints: the final answer follows. (101 cannot happen: the
            // router strips `Upgrade`; it is taken as the final answer with no body.)
            Some(h)
                if h.status.is_informational() && h.status != StatusCode::SWITCHING_PROTOCOLS => {}
            other => return Ok(other),
        }
    }
}

/// One head, interim or final, from the front of `buf`.
fn parse_one_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, ExchangeError> {
    // Slots left uninitialised: httparse writes the ones it fills (4 KiB not zeroed per answer).
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD_BYTES => n,
        Ok(httparse::Status::Complete(_)) => return Err(ExchangeError::Broken),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(ExchangeError::Broken);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ExchangeError::Broken),
    };
    let code = resp.code.ok_or(ExchangeError::Broken)?;
    let status = StatusCode::from_u16(code).map_err(|_| ExchangeError::Broken)?;
    let http10 = resp.version == Some(0);
    let base = buf.as_ptr() as usize;
    // Where each line's name and value are, to slice the frozen head afterwards (no allocation).
    // (The head is at most MAX_HEAD_BYTES long: offsets fit in u32.)
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let count = resp.headers.len();
    for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
        *span = (
            (h.name.as_ptr() as usize - base) as u32,
            h.name.len() as u32,
            (h.value.as_ptr() as usize - base) as u32,
            h.value.len() as u32,
        );
    }
    let head = buf.split_to(len).freeze();
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Some(Head {
            status,
            headers: HeaderMap::new(),
            framing: Framing::Length(0),
            keep_alive: true,
        }));
    }
    let mut headers = HeaderMap::with_capacity(count);
    let mut chunked = None;
    let mut length: Option<u64> = None;
    let mut close = http10;
    for &(name_at, name_len, at, n) in &spans[..count] {
        let (name_at, name_len, at, n) =
            (name_at as usize, name_len as usize, at as usize, n as usize);
        let name = HeaderName::from_bytes(&head[name_at..name_at + name_len])
            .map_err(|_| ExchangeError::Broken)?;
        let value = HeaderValue::from_maybe_shared(head.slice(at..at + n))
            .map_err(|_| ExchangeError::Broken)?;
        if name == header::TRANSFER_ENCODING {
            // An HTTP/1.0 answer cannot be chunked: its framing is faulty (RFC 9112 §6.1).
            if http10 {
                return Err(ExchangeError::Broken);
            }
            // The last coding decides (RFC 9112 §6.3): chunked or read to the end.
            let v = value.to_str().map_err(|_| ExchangeError::Broken)?;
            chunked = Some(
                v.rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked")),
            );
            continue;
        }
        if name == header::CONTENT_LENGTH {
            // Digits only (RFC 9110 §8.6): `u64::from_str` would take a leading `+`.
            let v: u64 = value
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok())
                .ok_or(ExchangeError::Broken)?;
            if length.is_some_and(|l| l != v) {
                return Err(ExchangeError::Broken);
            }
            length = Some(v);
        }
        if name == header::CONNECTION {
            let v = value.to_str().unwrap_or("");
            let mut names_others = false;
            for token in v.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    // An HTTP/1.0 connection stays open only when asked to.
                    if http10 {
                        close = false;
                    }
                } else if !token.is_empty() {
                    names_others = true;
                }
            }
            // A hop-by-hop header, removed before the answer goes on; kept only when it names
            // other headers, for the router to remove those too.
            if !names_others {
                continue;
            }
        }
        headers.append(name, value);
    }
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::Length(0)
    } else {
        match (chunked, length) {
            (Some(true), _) => {
                // Transfer-Encoding overrides Content-Length.
                headers.remove(header::CONTENT_LENGTH);
                Framing::Chunked(Chunk::Size)
            }
            (Some(false), _) => {
                headers.remove(header::CONTENT_LENGTH);
                Framing::Close
            }
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    let keep_alive = !close && !matches!(framing, Framing::Close);
    Ok(Some(Head {
        status,
        headers,
        framing,
        keep_alive,
    }))
}

/// Send the request on `conn` and read the answer's head.
async fn exchange(
    conn: &mut Conn,
    wire: &[u8],
    stream: Option<(&mut ReqBody, bool)>,
    head_request: bool,
) -> Result<Head, ExchangeError> {
    conn.io
        .write_all(wire)
        .await
        .map_err(|_| ExchangeError::Unsent)?;
    if let Some((body, chunked)) = stream {
        send_stream(conn, body, chunked).await?;
    }
    let mut answered = false;
    loop {
        if !conn.rbuf.is_empty() {
            answered = true;
            if let Some(head) = parse_head(&mut conn.rbuf, head_request)? {
                return Ok(head);
            }
        }
        match conn.fill().await {
            Ok(n) if n > 0 => {}
            _ if answered => return Err(ExchangeError::Broken),
            _ => return Err(ExchangeError::NoAnswer),
        }
    }
}

/// Stream the client's body upstream (its head is written already).
async fn send_stream(
    conn: &mut Conn,
    body: &mut ReqBody,
    chunked: bool,
) -> Result<(), ExchangeError> {
    let mut body = Pin::new(body);
    let mut line = Vec::with_capacity(32);
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|_| ExchangeError::ClientBody)?;
        let Ok(data) = frame.into_data() else {
            // Trailers are not forwarded.
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            line.clear();
            line.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            line.extend_from_slice(&data);
            line.extend_from_slice(b"\r\n");
            conn.io.write_all(&line).await
        } else {
            conn.io.write_all(&data).await
        }
        .map_err(|_| ExchangeError::Broken)?;
    }
    if chunked {
        conn.io
            .write_all(b"0\r\n\r\n")
            .await
            .map_err(|_| ExchangeError::Broken)?;
    }
    Ok(())
}

/// A TCP connection to an upstream within `timeout`, with `TCP_NODELAY`.
pub(crate) async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(io)) => {
            let _ = io.set_nodelay(true);
            Ok(io)
        }
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "upstream connect failed");
            Err(Failure::Connect)
        }
        Err(_) => {
            tracing::debug!(%addr, "upstream connect timed out");
            Err(Failure::Connect)
        }
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, Failure> {
    Ok(Conn {
        io: connect_tcp(addr, timeout).await?,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        wbuf: Vec::with_capacity(512),
    })
}

/// Send `req` to the endpoint over a pooled (or new) connection and return the answer, its
/// body streaming from the connection, and the request's head (the tests' entry point).
#[cfg(test)]
pub(crate) async fn send(
    to: ReturnTo,
    addr: SocketAddr,
    authority: &str,
    connect_timeout: Duration,
    req: crate::proxy::Req,
) -> (Result<Response<Body>, Failure>, http::request::Parts) {
    let (parts, mut body) = req.into_parts();
    let result = send_parts(to, addr, authority, connect_timeout, &parts, &mut body).await;
    (result, parts)
}

pub(crate) async fn send_parts(
    to: ReturnTo,
    addr: SocketAddr,
    authority: &str,
    connect_timeout: Duration,
    parts: &http::request::Parts,
    body: &mut ReqBody,
) -> Result<Response<Body>, Failure> {
    let head_request = parts.method == Method::HEAD;
    let replayable = idempotent(&parts.method, &parts.headers);
    // How the body goes: written with the head (`full`), or streamed after it (`stream`:
    // chunked or not).
    let (framing, full, stream) = match body {
        ReqBody::Empty if announces_empty_body(&parts.method) => {
            (ReqFraming::Length(0), None, None)
        }
        ReqBody::Empty => (ReqFraming::None, None, None),
        ReqBody::Full(b) => {
            let b = b.take().unwrap_or_default();
            (ReqFraming::Length(b.len() as u64), Some(b), None)
        }
        ReqBody::Stream(s) => match s.size_hint().exact() {
            Some(n) => (ReqFraming::Length(n), None, Some(false)),
            None => (ReqFraming::Chunked, None, Some(true)),
        },
    };
    // The request's bytes, encoded into the first connection's buffer (no allocation per
    // request) and kept for a resend on a new connection.
    let mut wire = Vec::new();
    loop {
        let (mut conn, reused) = match to.pool.h1.checkout(to.idle_timeout) {
            Some(c) => (c, true),
            // Connecting is the rare path: boxed, so its future does not make every request's
            // future larger.
            None => (Box::pin(connect(addr, connect_timeout)).await?, false),
        };
        if wire.is_empty() {
            wire = std::mem::take(&mut conn.wbuf);
            encode_head(parts, &framing, authority, &mut wire);
            if let Some(b) = &full {
                wire.extend_from_slice(b);
            }
        }
        let result = exchange(
            &mut conn,
            &wire,
            stream.map(|chunked| (&mut *body, chunked)),
            head_request,
        )
        .await;
        match result {
            Ok(head) => {
                if wire.capacity() <= MAX_KEPT_WRITE_BUFFER {
                    wire.clear();
                    conn.wbuf = wire;
                }
                let mut resp = Response::new(Body {
                    conn: Some(conn),
                    framing: head.framing,
                    keep_alive: head.keep_alive,
                    to: Some(to),
                });
                *resp.status_mut() = head.status;
                *resp.version_mut() = Version::HTTP_11;
                *resp.headers_mut() = head.headers;
                if resp.body().is_end_stream() {
                    resp.body_mut().finish();
                }
                return Ok(resp);
            }
            Err(e) => {
                let again = reused
                    && stream.is_none()
                    && (e == ExchangeError::Unsent || (e == ExchangeError::NoAnswer && replayable));
                if again {
                    tracing::debug!(%addr, error = ?e, "stale keep-alive connection; sending on a new one");
                    continue;
                }
                tracing::debug!(%addr, error = ?e, reused, "upstream exchange failed");
                return Err(Failure::Reset);
            }
        }
    }
}

/// Where a chunked body's decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// Reading (and dropping) trailer lines up to the empty line.
    Trailers,
}

/// How an answer body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// This many bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`, at this point of the decoding.
    Chunked(Chunk),
    /// Until the connection closes.
    Close,
    /// Ended.
    Done,
}

/// An error reading an upstream answer body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The connection failed.
    #[error("reading the upstream body: {0}")]
    Io(#[from] io::Error),
    /// The connection ended early.
    #[error("the upstream closed the connection before the end of the body")]
    Incomplete,
    /// Bad chunked encoding.
    #[error("malformed chunked encoding from the upstream")]
    Chunked,
}

/// What one step of decoding an answer body gives.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Body bytes (never empty); more may follow.
    Data(Bytes),
    /// The body's last bytes (never empty): the body ended with them.
    Last(Bytes),
    /// The body ended, with no bytes.
    End,
    /// The buffer ends inside the body's framing: read more.
    More,
}

/// Decode the next piece of an answer body from the front of `buf` (the connection's read
/// buffer), consuming it and advancing `framing`. `eof`: the connection has ended, nothing
/// follows what `buf` holds; then the answer is never [`Step::More`] (a body cut short is
/// [`BodyError::Incomplete`], a body read to the end of the connection ends).
///
/// Pure, and the same whatever reads the bytes came in. Chunk-size lines, chunk ends and
/// trailers are consumed in place; data is split off the buffer without a copy. After an
/// error the framing is [`Framing::Done`].
pub(crate) fn decode(
    framing: &mut Framing,
    buf: &mut BytesMut,
    eof: bool,
) -> Result<Step, BodyError> {
    let step = decode_step(framing, buf, eof);
    if step.is_err() {
        *framing = Framing::Done;
    }
    step
}

fn decode_step(framing: &mut Framing, buf: &mut BytesMut, eof: bool) -> Result<Step, BodyError> {
    // More bytes needed: an error when none will come.
    let more = || {
        if eof {
            Err(BodyError::Incomplete)
        } else {
            Ok(Step::More)
        }
    };
    loop {
        match *framing {
            Framing::Done | Framing::Length(0) => {
                *framing = Framing::Done;
                return Ok(Step::End);
            }
            Framing::Length(left) => {
                if buf.is_empty() {
                    return more();
                }
                let n = (buf.len() as u64).min(left);
                // `n <= buf.len()`: the cast cannot truncate.
                let data = buf.split_to(n as usize).freeze();
                return Ok(if n == left {
                    *framing = Framing::Done;
                    Step::Last(data)
                } else {
                    *framing = Framing::Length(left - n);
                    Step::Data(data)
                });
            }
            Framing::Close => {
                if !buf.is_empty() {
                    return Ok(Step::Data(buf.split().freeze()));
                }
                if eof {
                    *framing = Framing::Done;
                    return Ok(Step::End);
                }
                return Ok(Step::More);
            }
            Framing::Chunked(Chunk::Data(left)) => {
                if buf.is_empty() {
                    return more();
                }
                let n = (buf.len() as u64).min(left);
                let data = buf.split_to(n as usize).freeze();
                *framing = Framing::Chunked(if n == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n)
                });
                return Ok(Step::Data(data));
            }
            Framing::Chunked(Chunk::DataEnd) => {
                // CRLF, or a lone LF (tolerated as a line end).
                match buf[..] {
                    [b'\n', ..] => buf.advance(1),
                    [b'\r', b'\n', ..] => buf.advance(2),
                    [] | [b'\r'] => return more(),
                    _ => return Err(BodyError::Chunked),
                }
                *framing = Framing::Chunked(Chunk::Size);
            }
            Framing::Chunked(state @ (Chunk::Size | Chunk::Trailers)) => {
                let Some(end) = line_end(buf)? else {
                    return more();
                };
                let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
                *framing = Framing::Chunked(match state {
                    Chunk::Trailers if line.is_empty() => {
                        buf.advance(end + 1);
                        *framing = Framing::Done;
                        return Ok(Step::End);
                    }
                    // A trailer line: dropped.
                    Chunk::Trailers => Chunk::Trailers,
                    _ => match parse_chunk_size(line) {
                        Some(0) => Chunk::Trailers,
                        Some(n) => Chunk::Data(n),
                        None => return Err(BodyError::Chunked),
                    },
                });
                buf.advance(end + 1);
            }
        }
    }
}

/// Where the `\n` ending the line at the front of `buf` is, if the line is whole. A line longer
/// than [`MAX_CHUNK_LINE`] is an error whether its end has arrived or not, so that the answer
/// does not depend on how the bytes were split into reads; only that much is searched.
fn line_end(buf: &[u8]) -> Result<Option<usize>, BodyError> {
    let window = &buf[..buf.len().min(MAX_CHUNK_LINE + 1)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => Ok(Some(i)),
        None if buf.len() > MAX_CHUNK_LINE => Err(BodyError::Chunked),
        None => Ok(None),
    }
}

/// The size in a chunk-size line (RFC 9112 §7.1: `1*HEXDIG [BWS ";" extensions]`, the
/// extensions ignored). At most 15 digits, so no overflow; no sign, no leading blanks.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let mut digits = &line[..end];
    while let [rest @ .., b' ' | b'\t'] = digits {
        digits = rest;
    }
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    // Only ASCII hex digits: both conversions succeed.
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// An upstream answer's body, read from its connection.
pub(crate) struct Body {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    to: Option<ReturnTo>,
}

impl Body {
    /// The body is over: the connection goes back to the pool when it can carry more.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let (Some(conn), Some(to)) = (self.conn.take(), self.to.take())
            && self.keep_alive
            && conn.rbuf.is_empty()
        {
            to.pool.h1.release(conn, to.idle_timeout);
        }
    }

    fn fail(&mut self, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.framing = Framing::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    /// Read from the socket only when [`decode`] needs more bytes.
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let mut eof = false;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match decode(&mut this.framing, &mut conn.rbuf, eof) {
                Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Step::Last(data)) => {
                    // The connection goes back before the last bytes are handed on.
                    this.finish();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                // `decode` never asks for more once told of the end: this loop ends.
                Ok(Step::More) => match ready!(conn.poll_fill(cx)) {
                    Ok(0) => eof = true,
                    Ok(_) => {}
                    Err(e) => return this.fail(e.into()),
                },
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use tokio::io::AsyncReadExt as _;
    use tokio::net::TcpListener;

    fn head(raw: &str, head_request: bool) -> Result<Option<Head>, ExchangeError> {
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_head(&mut buf, head_request)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let cases: [(&str, bool, Framing, bool); 9] = [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                false,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 5\r\n\r\n",
                false,
                Framing::Chunked(Chunk::Size),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                false,
                Framing::Close,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false, Framing::Close, false),
            (
                "HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Framing::Length(0),
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                false,
                Framing::Length(0),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
                true,
                Framing::Length(0),
                true,
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                false,
            ),
            (
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n",
                false,
                Framing::Length(2),
                false,
            ),
        ];
        for (raw, head_request, framing, keep_alive) in cases {
            let h = head(raw, head_request).unwrap().unwrap();
            assert_eq!((h.framing, h.keep_alive), (framing, keep_alive), "{raw:?}");
        }
        assert!(
            head("HTTP/1.1 200 OK\r\ncontent-le", false)
                .unwrap()
                .is_none()
        );
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", false).is_err());
        assert!(
            head(
                "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                false
            )
            .is_err()
        );
        assert!(head("garbage\r\n\r\n", false).is_err());
        // Digits only in content-length; no chunked HTTP/1.0 answer (RFC 9112 §6.1).
        for faulty in [
            "HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
            "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert!(head(faulty, false).is_err(), "{faulty:?}");
        }
        let over = format!(
            "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert!(head(&over, false).is_err(), "a head longer than the limit");
    }

    #[test]
    fn interim_answers_are_skipped_without_recursion() {
        let raw = "HTTP/1.1 100 Continue\r\n\r\n".repeat(5000)
            + "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let h = head(&raw, false).unwrap().unwrap();
        assert_eq!(h.status, StatusCode::OK);
    }

    #[test]
    fn request_heads_carry_this_hops_framing() {
        let req = http::Request::post("http://x/a?b=c")
            .header("host", "svc")
            .header("content-length", "99")
            .header("expect", "100-continue")
            .header("x-a", "1")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        encode_head(&parts, &ReqFraming::Length(3), "ep:80", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a?b=c HTTP/1.1\r\nhost: svc\r\nx-a: 1\r\ncontent-length: 3\r\n\r\n"
        );
        let (parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        let mut out = Vec::new();
        encode_head(&parts, &ReqFraming::None, "ep:80", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\nhost: ep:80\r\n\r\n"
        );
    }

    /// A raw upstream: answers each request (read up to the blank line) with the next canned
    /// answer, on one connection; then closes.
    async fn raw_upstream(answers: Vec<&'static [u8]>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            for a in answers {
                loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        break;
                    }
                    let mut b = [0u8; 1024];
                    let n = s.read(&mut b).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&b[..n]);
                }
                s.write_all(a).await.unwrap();
            }
        });
        addr
    }

    fn get() -> crate::proxy::Req {
        http::Request::get("/x")
            .header("host", "svc")
            .body(ReqBody::Empty)
            .unwrap()
    }

    #[tokio::test]
    async fn chunked_and_sized_bodies_reuse_the_connection() {
        let addr = raw_upstream(vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nt: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nwxyz",
        ])
        .await;
        let state = std::sync::Arc::new(crate::table::EndpointState::default());
        let to = || ReturnTo {
            pool: state.clone(),
            idle_timeout: Duration::from_secs(60),
        };
        let t = Duration::from_secs(1);
        let resp = send(to(), addr, "ep", t, get()).await.0.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"abcde");
        assert_eq!(state.h1.idle_count(), 1);
        let resp = send(to(), addr, "ep", t, get()).await.0.unwrap();
        assert_eq!(resp.headers()["content-length"], "4");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"wxyz");
        assert_eq!(state.h1.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_stale_pooled_connection_is_replaced_for_idempotent_requests() {
        // The first upstream answers once and closes: its connection goes stale in the pool.
        let addr = raw_upstream(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na"]).await;
        let state = std::sync::Arc::new(crate::table::EndpointState::default());
        let to = || ReturnTo {
            pool: state.clone(),
            idle_timeout: Duration::from_secs(60),
        };
        let t = Duration::from_secs(1);
        let resp = send(to(), addr, "ep", t, get()).await.0.unwrap();
        resp.into_body().collect().await.unwrap();
        assert_eq!(state.h1.idle_count(), 1);
        // Nothing listens any more: the stale connection is skipped, the new connection fails.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = send(to(), addr, "ep", t, get()).await.0;
        assert!(
            matches!(r, Err(Failure::Connect)),
            "{:?}",
            r.map(|r| r.status())
        );
        assert_eq!(state.h1.idle_count(), 0);
    }

    /// An upstream that closes every connection right after its first answer, without saying
    /// so (`Connection: close` missing): the keep-alive race of a pod that shuts down.
    async fn one_answer_per_connection() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut b = [0u8; 1024];
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&b[..n]),
                        }
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn idempotent_requests_survive_upstreams_closing_idle_connections() {
        let addr = one_answer_per_connection().await;
        let state = std::sync::Arc::new(crate::table::EndpointState::default());
        for i in 0..200 {
            let to = ReturnTo {
                pool: state.clone(),
                idle_timeout: Duration::from_secs(60),
            };
            let resp = send(to, addr, "ep", Duration::from_secs(1), get())
                .await
                .0
                .unwrap_or_else(|f| panic!("request {i}: {f:?}"));
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
    }

    #[tokio::test]
    async fn idle_connections_the_upstream_closed_are_not_used_for_requests_that_cannot_be_resent()
    {
        let addr = one_answer_per_connection().await;
        let state = std::sync::Arc::new(crate::table::EndpointState::default());
        for i in 0..20 {
            let to = ReturnTo {
                pool: state.clone(),
                idle_timeout: Duration::from_secs(60),
            };
            let post = http::Request::post("/")
                .header("host", "ep")
                .body(ReqBody::Full(Some(Bytes::from_static(b"x"))))
                .unwrap();
            let resp = send(to, addr, "ep", Duration::from_secs(1), post)
                .await
                .0
                .unwrap_or_else(|f| panic!("request {i}: {f:?}"));
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
            // The upstream's close reaches the reactor while the connection waits in the pool.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_and_the_connection_is_not_reused() {
        let addr = raw_upstream(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"]).await;
        let state = std::sync::Arc::new(crate::table::EndpointState::default());
        let to = ReturnTo {
            pool: state.clone(),
            idle_timeout: Duration::from_secs(60),
        };
        let resp = send(to, addr, "ep", Duration::from_secs(1), get())
            .await
            .0
            .unwrap();
        assert!(resp.into_body().collect().await.is_err());
        assert_eq!(state.h1.idle_count(), 0);
    }

    #[tokio::test]
    async fn close_delimited_bodies_and_bodies_with_bytes_after_them_are_not_pooled() {
        let cases: [(&'static [u8], &[u8]); 2] = [
            (b"HTTP/1.1 200 OK\r\n\r\nto the end", b"to the end"),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nEXTRA",
                b"ok",
            ),
        ];
        for (answer, want) in cases {
            // The upstream closes after its answer.
            let addr = raw_upstream(vec![answer]).await;
            let state = std::sync::Arc::new(crate::table::EndpointState::default());
            let to = ReturnTo {
                pool: state.clone(),
                idle_timeout: Duration::from_secs(60),
            };
            let resp = send(to, addr, "ep", Duration::from_secs(1), get())
                .await
                .0
                .unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], want);
            assert_eq!(state.h1.idle_count(), 0);
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"0;ext=1"), Some(0));
        assert_eq!(parse_chunk_size(b"A \t;ext"), Some(10));
        assert_eq!(parse_chunk_size(b"fffffffffffffff"), Some((1 << 60) - 1));
        assert_eq!(parse_chunk_size(b""), None);
        assert_eq!(parse_chunk_size(b"zz"), None);
        assert_eq!(parse_chunk_size(b";x"), None);
        assert_eq!(parse_chunk_size(b"ffffffffffffffffff"), None);
        // Leniencies of `u64::from_str_radix` and `str::trim` that are not chunk sizes.
        assert_eq!(parse_chunk_size(b"+5"), None);
        assert_eq!(parse_chunk_size(b" 5"), None);
        assert_eq!(parse_chunk_size(b"5\r"), None);
        assert_eq!(parse_chunk_size("5\u{a0}".as_bytes()), None);
    }

    /// Decode `input` with `framing` as the whole of what the connection brings after the head,
    /// in reads of `read` bytes: the body and how many bytes were left after it, or the error.
    fn decode_all(
        mut framing: Framing,
        input: &[u8],
        read: usize,
    ) -> Result<(Vec<u8>, usize), BodyError> {
        let mut buf = BytesMut::new();
        let mut pieces = input.chunks(read.max(1));
        let mut body = Vec::new();
        let mut eof = false;
        loop {
            match decode(&mut framing, &mut buf, eof) {
                Ok(Step::Data(d)) => {
                    assert!(!d.is_empty());
                    body.extend_from_slice(&d);
                }
                Ok(Step::Last(d)) => {
                    assert!(!d.is_empty());
                    body.extend_from_slice(&d);
                    assert_eq!(framing, Framing::Done);
                    return Ok((body, buf.len() + pieces.map(<[u8]>::len).sum::<usize>()));
                }
                Ok(Step::End) => {
                    assert_eq!(framing, Framing::Done);
                    return Ok((body, buf.len() + pieces.map(<[u8]>::len).sum::<usize>()));
                }
                Ok(Step::More) => {
                    assert!(!eof, "more asked for after the end of the connection");
                    match pieces.next() {
                        Some(p) => buf.extend_from_slice(p),
                        None => eof = true,
                    }
                }
                Err(e) => {
                    assert_eq!(framing, Framing::Done);
                    return Err(e);
                }
            }
        }
    }

    #[test]
    fn bodies_decode_the_same_whatever_the_reads() {
        let chunked = Framing::Chunked(Chunk::Size);
        let long_ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE));
        let long_trailer = format!("0\r\nt: {}\r\n\r\n", "v".repeat(MAX_CHUNK_LINE));
        let max_line = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE - 3));
        // The framing, the input, and the body with how many bytes are left after it (or
        // `None`: an error).
        type Case<'a> = (Framing, &'a [u8], Option<(&'a [u8], usize)>);
        let cases: Vec<Case<'_>> = vec![
            (Framing::Length(3), b"abcde", Some((b"abc", 2))),
            (Framing::Length(3), b"ab", None),
            (Framing::Length(0), b"x", Some((b"", 1))),
            (Framing::Close, b"all of it", Some((b"all of it", 0))),
            (Framing::Close, b"", Some((b"", 0))),
            (Framing::Done, b"x", Some((b"", 1))),
            (
                chunked,
                b"3;a=b\r\nabc\r\n2\r\nde\r\n0\r\nt: 1\r\n\r\nnext",
                Some((b"abcde", 4)),
            ),
            // Bare LF line ends are tolerated.
            (chunked, b"3\nabc\n0\n\n", Some((b"abc", 0))),
            (chunked, b"3\r\nabc\r\n0\r\n", None),
            (chunked, b"3\r\nabcX\r\n0\r\n\r\n", None),
            (chunked, b"3\r\nabc\r", None),
            (chunked, b"x\r\n", None),
            (chunked, b"", None),
            (chunked, long_ext.as_bytes(), None),
            (chunked, long_trailer.as_bytes(), None),
            (chunked, max_line.as_bytes(), Some((b"x", 0))),
        ];
        for (framing, input, want) in cases {
            for read in [1, 2, 3, 7, input.len()] {
                let got = decode_all(framing, input, read);
                match (want, &got) {
                    (Some((body, left)), Ok((b, l))) => {
                        assert_eq!(
                            (&b[..], *l),
                            (body, left),
                            "{framing:?} {input:?} in {read}s"
                        );
                    }
                    (None, Err(_)) => {}
                    _ => panic!("{framing:?} {input:?} in {read}s: {got:?}"),
                }
            }
        }
    }

    /// Regression: a chunk-size line longer than `MAX_CHUNK_LINE` was accepted when its end came
    /// in the same read and refused when it did not.
    #[test]
    fn a_long_chunk_line_is_refused_even_when_whole() {
        let input = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(2 * MAX_CHUNK_LINE));
        let mut buf = BytesMut::from(input.as_bytes());
        let mut framing = Framing::Chunked(Chunk::Size);
        assert!(matches!(
            decode(&mut framing, &mut buf, false),
            Err(BodyError::Chunked)
        ));
        assert_eq!(framing, Framing::Done);
    }

    /// Regression: garbage where a chunk's CRLF belongs was only noticed once a second byte came.
    #[test]
    fn garbage_after_chunk_data_fails_at_once() {
        let mut buf = BytesMut::from(&b"x"[..]);
        let mut framing = Framing::Chunked(Chunk::DataEnd);
        assert!(matches!(
            decode(&mut framing, &mut buf, false),
            Err(BodyError::Chunked)
        ));
        let mut buf = BytesMut::from(&b"\r"[..]);
        let mut framing = Framing::Chunked(Chunk::DataEnd);
        assert_eq!(decode(&mut framing, &mut buf, false).unwrap(), Step::More);
        assert!(matches!(
            decode(&mut framing, &mut buf, true),
            Err(BodyError::Incomplete)
        ));
    }
}
