//! One connection: the socket behind a phase tracker, hyper-util's auto
//! connection on top, and a watchdog for the header and idle timeouts.
//!
//! The watchdog needs to know, without parsing anything itself, whether the
//! connection is reading a request head, busy with requests, or idle:
//!
//! - `Head`: from accept until the first request reaches the service, and from
//!   the first byte read while idle until the next one does;
//! - `Busy`: while at least one request is in flight, that is from the service
//!   call until its response body ends or is dropped;
//! - `Idle`: otherwise.
//!
//! Reads flip `Idle` to `Head` (HTTP/1.1 only: an HTTP/2 client's pings and
//! window updates are not request heads); the service wrapper and the response
//! body do the rest, with a few uncontended atomic operations a request and no
//! wake-up. The watchdog instead wakes on its own at least once per header
//! timeout and reads the phase: a head that began since the last look has its
//! deadline one header timeout after its first byte, which is never before that
//! next look, so it is enforced on time.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tower_service::Service;

use super::{BoxError, ServeConfig};

const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// What every connection shares: the limits, the builder, the counters.
pub(super) struct Shared {
    pub(super) max_connections: usize,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    builder: auto::Builder<TokioExecutor>,
    close: watch::Sender<bool>,
    #[cfg(feature = "metrics")]
    metrics: Option<ConnectionMetrics>,
}

impl Shared {
    pub(super) fn new(
        config: &ServeConfig,
        #[cfg(feature = "metrics")] metrics: Option<ConnectionMetrics>,
    ) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // The header timeout is the watchdog's: hyper's own would also
            // close kept-alive connections after it, and arm a timer for
            // every request.
            .header_read_timeout(None)
            .keep_alive(true)
            // A head longer than the read buffer is answered 431 by hyper.
            .max_buf_size(config.max_header_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(config.h2_max_concurrent_streams)
            .keep_alive_interval(config.h2_keep_alive_interval)
            .keep_alive_timeout(config.h2_keep_alive_interval)
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            // Streams the client opens and resets before they are served,
            // and those the server resets on a protocol error: past these
            // counts the connection is closed (the rapid reset attack).
            .max_pending_accept_reset_streams(Some(20))
            .max_local_error_reset_streams(Some(256));
        Self {
            max_connections: config.max_connections,
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            builder,
            close: watch::Sender::new(false),
            #[cfg(feature = "metrics")]
            metrics,
        }
    }

    pub(super) fn closing(&self) -> watch::Receiver<bool> {
        self.close.subscribe()
    }

    /// Asks every connection to close: at once when idle or reading a head,
    /// after their requests otherwise.
    pub(super) fn close_all(&self) {
        self.close.send_replace(true);
    }

    pub(super) fn count_wait(&self) {
        tracing::debug!(
            target: "tower_ops::serve",
            max_connections = self.max_connections,
            "connection cap reached; accepting paused"
        );
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.metrics {
            m.accept_waits.inc();
        }
    }

    fn opened(&self) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.metrics {
            m.open.inc();
        }
    }

    fn closed(&self) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.metrics {
            m.open.dec();
        }
    }

    fn error(&self, peer: SocketAddr, kind: ErrorKind, error: Option<&dyn std::fmt::Display>) {
        tracing::warn!(
            target: "tower_ops::serve",
            client_ip = %peer.ip(),
            client_port = peer.port(),
            kind = kind.as_str(),
            error = error.map(tracing::field::display),
            "connection error"
        );
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.metrics {
            m.errors
                .get_or_create(&ErrorLabels {
                    kind: kind.as_str(),
                })
                .inc();
        }
    }
}

/// The server's connection-level metrics, registered once and handed to
/// [`Serve::metrics`](super::Serve::metrics) (feature `metrics`).
///
/// Register them where the application's other metrics go, before the registry
/// is shared with the `/metrics` exporter:
///
/// ```
/// let mut registry = prometheus_client::registry::Registry::default();
/// let connections = tower_ops::serve::ConnectionMetrics::register(&mut registry);
/// // ...later: serve(listener, app).metrics(connections)
/// # let _ = connections;
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    open: prometheus_client::metrics::gauge::Gauge,
    errors: prometheus_client::metrics::family::Family<
        ErrorLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    accept_waits: prometheus_client::metrics::counter::Counter,
}

#[cfg(feature = "metrics")]
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ErrorLabels {
    kind: &'static str,
}

#[cfg(feature = "metrics")]
impl prometheus_client::encoding::EncodeLabelSet for ErrorLabels {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        ("kind", self.kind).encode(encoder.encode_label())
    }
}

#[cfg(feature = "metrics")]
impl ConnectionMetrics {
    /// Registers `http_server_open_connections` (gauge),
    /// `http_server_connection_errors_total{kind}` and
    /// `http_server_connection_cap_waits_total` in `registry`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self {
            open: Default::default(),
            errors: Default::default(),
            accept_waits: Default::default(),
        };
        registry.register(
            "http_server_open_connections",
            "Connections open",
            m.open.clone(),
        );
        registry.register(
            "http_server_connection_errors",
            "Connections ended by what the HTTP parser or the connection refused before any layer ran, by kind",
            m.errors.clone(),
        );
        registry.register(
            "http_server_connection_cap_waits",
            "Times the server stopped accepting because MAX_CONNECTIONS were open",
            m.accept_waits.clone(),
        );
        m
    }
}

/// What ended a connection badly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ErrorKind {
    /// A request head that does not parse (hyper answered 400).
    Parse,
    /// A request head over `MAX_HEADER_BYTES` (hyper answered 431).
    HeadTooLarge,
    /// No complete request head within `HEADER_READ_TIMEOUT_MS` (408).
    HeaderTimeout,
    /// The socket failed (reset by the client, say).
    Io,
    /// An HTTP/2 protocol error, or too many reset streams.
    Http2,
    /// Anything else hyper reported.
    Other,
}

impl ErrorKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Parse => "parse",
            Self::HeadTooLarge => "head_too_large",
            Self::HeaderTimeout => "header_timeout",
            Self::Io => "io",
            Self::Http2 => "http2",
            Self::Other => "other",
        }
    }

    /// What `error` was; `None` for the ends that are no error at all (the
    /// client went away between requests).
    fn of(error: &(dyn std::error::Error + 'static), h2: bool) -> Option<Self> {
        if let Some(e) = error.downcast_ref::<hyper::Error>() {
            if e.is_parse_too_large() {
                return Some(Self::HeadTooLarge);
            }
            if e.is_parse() {
                return Some(Self::Parse);
            }
            if e.is_timeout() {
                return Some(Self::HeaderTimeout);
            }
            if e.is_incomplete_message() && !h2 {
                // The client closed in the middle of a head or a body.
                return Some(Self::Io);
            }
            if e.is_canceled() || e.is_closed() {
                return None;
            }
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                if let Some(io) = s.downcast_ref::<io::Error>() {
                    return benign_io(io).then_some(Self::Io);
                }
                source = s.source();
            }
            return Some(if h2 { Self::Http2 } else { Self::Other });
        }
        if let Some(io) = error.downcast_ref::<io::Error>() {
            return benign_io(io).then_some(Self::Io);
        }
        // hyper-util's own errors (a broken HTTP/2 preface, say).
        Some(if h2 { Self::Http2 } else { Self::Parse })
    }
}

/// Whether an I/O error is worth a line: a client that simply went away is not.
fn benign_io(error: &io::Error) -> bool {
    !matches!(error.kind(), io::ErrorKind::NotConnected)
}

/// The phase tracker shared by the socket, the service and the watchdog.
struct Phase {
    phase: AtomicU8,
    /// When the phase began, in milliseconds since `start`.
    since: AtomicU64,
    in_flight: AtomicUsize,
    h2: AtomicBool,
    start: Instant,
}

/// What the watchdog does after a look at the phase.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Look again then.
    LookAt(Instant),
    /// The request head took too long.
    HeaderTimeout,
    /// Idle for too long.
    IdleTimeout,
}

impl Phase {
    fn new() -> Self {
        Self {
            phase: AtomicU8::new(HEAD),
            since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            h2: AtomicBool::new(false),
            start: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    #[inline]
    fn on_read(&self) {
        if self.phase.load(Ordering::Acquire) == IDLE
            && !self.h2.load(Ordering::Relaxed)
            && self
                .phase
                .compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.since.store(self.now_ms(), Ordering::Release);
        }
    }

    #[inline]
    fn request_started(&self, version: Version) {
        if version == Version::HTTP_2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.phase.store(BUSY, Ordering::Release);
        }
    }

    #[inline]
    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.since.store(self.now_ms(), Ordering::Release);
            // A request that started meanwhile keeps the connection busy.
            let _ = self
                .phase
                .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire);
            if self.in_flight.load(Ordering::Acquire) > 0 {
                self.phase.store(BUSY, Ordering::Release);
            }
        }
    }

    fn state(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    /// A look at the phase at `now`.
    fn look(&self, now: Instant, header: Duration, idle: Duration) -> Next {
        let since = self.start + Duration::from_millis(self.since.load(Ordering::Acquire));
        match self.phase.load(Ordering::Acquire) {
            HEAD if now >= since + header => Next::HeaderTimeout,
            HEAD => Next::LookAt(since + header),
            IDLE if now >= since + idle => Next::IdleTimeout,
            IDLE => Next::LookAt((since + idle).min(now + header)),
            _ => Next::LookAt(now + header),
        }
    }
}

/// The socket as hyper sees it, reporting reads to the phase tracker.
struct Tracked {
    stream: TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for Tracked {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.phase.on_read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A second handle on the socket, for the watchdog's 408 once hyper's
/// connection stops being polled: a duplicate of its descriptor, taken at
/// accept (one system call a connection).
#[cfg(unix)]
struct Answer(Option<std::net::TcpStream>);

#[cfg(unix)]
impl Answer {
    fn new(stream: &TcpStream) -> Self {
        use std::os::fd::AsFd;
        Self(
            stream
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .map(std::net::TcpStream::from),
        )
    }

    /// Writes `bytes` if the socket takes them now (it is non-blocking, and an
    /// empty send buffer takes a short answer whole), then half-closes it.
    fn send_and_close(&self, bytes: &[u8]) {
        use std::io::Write;
        if let Some(mut socket) = self.0.as_ref() {
            let _ = socket.write(bytes);
            let _ = socket.shutdown(std::net::Shutdown::Write);
        }
    }
}

/// Elsewhere the connection just closes.
#[cfg(not(unix))]
struct Answer;

#[cfg(not(unix))]
impl Answer {
    fn new(_stream: &TcpStream) -> Self {
        Self
    }

    fn send_and_close(&self, _bytes: &[u8]) {}
}

/// The user's service, marking requests in flight and giving them the peer.
struct Tracking<S> {
    inner: S,
    peer: SocketAddr,
    phase: Arc<Phase>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracking<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<ConnectionBody<B>>;
    type Error = Infallible;
    type Future = TrackingFuture<S, Incoming>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.phase.request_started(req.version());
        #[cfg(feature = "axum")]
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        #[cfg(not(feature = "axum"))]
        req.extensions_mut().insert(self.peer);
        TrackingFuture {
            inner: tower::util::Oneshot::new(self.inner.clone(), req),
            guard: Some(Guard(self.phase.clone())),
        }
    }
}

/// Ends a request in flight when dropped, whatever ends it.
struct Guard(Arc<Phase>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

pin_project! {
    /// The response future of a tracked request: readiness, then the call.
    struct TrackingFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        inner: tower::util::Oneshot<S, Request<B>>,
        guard: Option<Guard>,
    }
}

impl<S, B, ResBody> Future for TrackingFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>, Error = Infallible>,
{
    type Output = Result<Response<ConnectionBody<ResBody>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = std::task::ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|inner| ConnectionBody { inner, guard })))
    }
}

pin_project! {
    /// The response body as served: the request stays in flight until it ends
    /// or is dropped.
    pub(super) struct ConnectionBody<B> {
        #[pin]
        inner: B,
        guard: Option<Guard>,
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ConnectionBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B> Body for ConnectionBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.guard.take();
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one connection to its end, enforcing the header and idle timeouts
/// and closing early when the server shuts down.
pub(super) async fn serve_connection<S, B>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    shared: &Shared,
    mut closing: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(target: "tower_ops::serve", %error, "TCP_NODELAY not set");
    }
    shared.opened();
    let _closed = OnDrop(|| shared.closed());
    let answer = Answer::new(&stream);
    let phase = Arc::new(Phase::new());
    let io = TokioIo::new(Tracked {
        stream,
        phase: phase.clone(),
    });
    let service = Tracking {
        inner: service,
        peer,
        phase: phase.clone(),
    };
    let conn = shared
        .builder
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    let mut conn = std::pin::pin!(conn);
    let (header, idle) = (shared.header_read_timeout, shared.idle_timeout);
    let sleep = tokio::time::sleep_until(phase.start + header);
    let mut sleep = std::pin::pin!(sleep);
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(error) = result {
                    let h2 = phase.h2.load(Ordering::Relaxed);
                    if let Some(kind) = ErrorKind::of(&*error, h2) {
                        shared.error(peer, kind, Some(&error));
                    }
                }
                return;
            }
            _ = closing.changed(), if !draining => {
                if phase.state() != BUSY {
                    return;
                }
                // Let the requests in flight finish; HTTP/1.1 closes after
                // them, HTTP/2 sends GOAWAY.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            () = sleep.as_mut() => match phase.look(Instant::now(), header, idle) {
                Next::LookAt(at) => sleep.as_mut().reset(at),
                Next::HeaderTimeout => {
                    // hyper's connection is not polled again and no request is
                    // in flight, so nothing else writes on the socket.
                    if !phase.h2.load(Ordering::Relaxed) {
                        answer.send_and_close(REQUEST_TIMEOUT);
                    }
                    shared.error(peer, ErrorKind::HeaderTimeout, None);
                    return;
                }
                // Idle: close without a word, as HTTP/1.1 allows.
                Next::IdleTimeout => return,
            },
        }
    }
}

struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
