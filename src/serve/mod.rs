//! A hardened HTTP server for the stack: [`serve`].
//!
//! `axum::serve` sets no limits on purpose, and the layers only see requests
//! that hyper has already parsed. [`serve`] is the part in front of them:
//!
//! - HTTP/1.1 and cleartext HTTP/2 with prior knowledge on the same port
//!   (hyper-util's auto builder), `TCP_NODELAY` on every connection, and the peer
//!   address in each request's extensions (`ConnectInfo<SocketAddr>` with the
//!   `axum` feature, a `SocketAddr` otherwise), where
//!   [`ClientIpLayer`](crate::client_ip::ClientIpLayer) finds it.
//! - `HEADER_READ_TIMEOUT_MS` (default 10000): a connection that has not sent a complete
//!   request head in time is answered 408 (HTTP/1.1) and closed. The clock starts
//!   at accept for the first request and at the first byte of each later one on a
//!   kept-alive connection.
//! - `MAX_HEADER_BYTES` (default 16384): a larger HTTP/1.1 request head is answered 431;
//!   HTTP/2 advertises the same bound as its header-list size.
//! - `IDLE_TIMEOUT_MS` (default 60000): a kept-alive connection with no request in
//!   flight and no new request begun is closed.
//! - `MAX_CONNECTIONS` (default 10000): at the cap the server stops accepting until a
//!   connection closes; each wait is counted.
//! - HTTP/2: at most 256 concurrent streams a connection, keep-alive pings every
//!   20 s, and hyper's limits on streams reset by the client (the "rapid reset"
//!   attack) and by the server.
//! - What hyper refuses before any layer runs (a malformed head, a head too large,
//!   a header timeout, an I/O error, an HTTP/2 protocol error) gives one WARN line
//!   per connection (target `tower_ops::serve`, with `client_ip` and `kind`) and,
//!   with [`Serve::metrics`], `http_server_connection_errors_total{kind}`, next to
//!   the `http_server_open_connections` gauge.
//! - Shutdown built in ([`Serve::with_shutdown`]): on SIGTERM, readiness flips and
//!   the drain delay runs; then the listener closes, connections that are idle or
//!   still sending a request head close at once, and requests in flight finish
//!   within `SHUTDOWN_TIMEOUT_MS`. Readiness is marked ready once the server
//!   accepts connections.
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::get};
//! use tower_ops::health::Readiness;
//! use tower_ops::serve::{ServeConfig, serve};
//! use tower_ops::shutdown::ShutdownBuilder;
//!
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let shutdown = ShutdownBuilder::from_env()?.readiness(Readiness::new()).build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! serve(listener, app)
//!     .config(ServeConfig::from_env()?)
//!     .with_shutdown(shutdown)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Keeping `axum::serve`? Then nothing bounds how long a client may take to send
//! a request head or how large it may be, idle connections stay open until the
//! client closes them, connections are not capped, and hyper's own 400 and 431
//! answers are neither logged nor counted.

mod conn;

#[cfg(feature = "metrics")]
pub use self::conn::ConnectionMetrics;

use std::convert::Infallible;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower_service::Service;

use crate::config::{ConfigError, parse_ms, var};
use crate::shutdown::Shutdown;

/// Default for `HEADER_READ_TIMEOUT_MS`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for `MAX_HEADER_BYTES`.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default for `IDLE_TIMEOUT_MS`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for `MAX_CONNECTIONS`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The smallest `MAX_HEADER_BYTES`: hyper reads a head into a buffer of at
/// least this size.
pub const MIN_MAX_HEADER_BYTES: usize = 8192;
const MAX_MAX_HEADER_BYTES: usize = 1024 * 1024;

/// The server's limits; see the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    header_read_timeout: Duration,
    max_header_bytes: usize,
    idle_timeout: Duration,
    max_connections: usize,
    h2_max_concurrent_streams: u32,
    h2_keep_alive_interval: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            h2_max_concurrent_streams: 256,
            h2_keep_alive_interval: Duration::from_secs(20),
        }
    }
}

impl ServeConfig {
    /// The defaults: 10 s to send a request head, heads of at most 16 KiB, idle
    /// connections closed after 60 s, at most 10,000 connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults overridden by `HEADER_READ_TIMEOUT_MS`, `MAX_HEADER_BYTES`,
    /// `IDLE_TIMEOUT_MS` and `MAX_CONNECTIONS`.
    ///
    /// # Errors
    /// Every invalid variable, listed together.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let header_read_timeout = parse_ms(
            "HEADER_READ_TIMEOUT_MS",
            DEFAULT_HEADER_READ_TIMEOUT,
            1,
            &mut errors,
        );
        let max_header_bytes = parse_count(
            "MAX_HEADER_BYTES",
            DEFAULT_MAX_HEADER_BYTES,
            MIN_MAX_HEADER_BYTES..=MAX_MAX_HEADER_BYTES,
            &mut errors,
        );
        let idle_timeout = parse_ms("IDLE_TIMEOUT_MS", DEFAULT_IDLE_TIMEOUT, 1, &mut errors);
        let max_connections = parse_count(
            "MAX_CONNECTIONS",
            DEFAULT_MAX_CONNECTIONS,
            1..=Semaphore::MAX_PERMITS,
            &mut errors,
        );
        errors.into_result(Self {
            header_read_timeout,
            max_header_bytes,
            idle_timeout,
            max_connections,
            ..Self::default()
        })
    }

    /// How long a client may take to send a complete request head.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The largest request head accepted, in bytes; at least
    /// [`MIN_MAX_HEADER_BYTES`].
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.clamp(MIN_MAX_HEADER_BYTES, MAX_MAX_HEADER_BYTES);
        self
    }

    /// How long a connection may stay open with nothing in flight.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The most connections open at once.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// The most concurrent HTTP/2 streams a connection may open (default 256).
    pub fn h2_max_concurrent_streams(mut self, max: u32) -> Self {
        self.h2_max_concurrent_streams = max.max(1);
        self
    }

    /// How often an idle-looking HTTP/2 connection is pinged (default 20 s); a
    /// ping unanswered for as long closes it.
    pub fn h2_keep_alive_interval(mut self, interval: Duration) -> Self {
        self.h2_keep_alive_interval = interval.max(Duration::from_millis(1));
        self
    }
}

fn parse_count(
    name: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
    errors: &mut ConfigError,
) -> usize {
    let Some(raw) = var(name, errors) else {
        return default;
    };
    match raw.parse::<usize>() {
        Ok(n) if range.contains(&n) => n,
        _ => {
            errors.push(
                name,
                &raw,
                format!("a whole number from {} to {}", range.start(), range.end()),
            );
            default
        }
    }
}

/// Serves `service` (an axum `Router`, or any tower `Service` of
/// `http::Request<hyper::body::Incoming>`) on `listener`; see the
/// [module docs](self). Await it (or `.with_shutdown(..)` first).
pub fn serve<S>(listener: TcpListener, service: S) -> Serve<S> {
    Serve {
        listener,
        service,
        config: ServeConfig::default(),
        shutdown: None,
        #[cfg(feature = "metrics")]
        metrics: None,
    }
}

/// A server to await, made by [`serve`].
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<S> {
    listener: TcpListener,
    service: S,
    config: ServeConfig,
    shutdown: Option<Shutdown>,
    #[cfg(feature = "metrics")]
    metrics: Option<ConnectionMetrics>,
}

impl<S> fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .field("shutdown", &self.shutdown.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> Serve<S> {
    /// Replaces the limits (default [`ServeConfig::default`]).
    pub fn config(mut self, config: ServeConfig) -> Self {
        self.config = config;
        self
    }

    /// Shuts down on the crate's sequence (see the [module docs](self)); the
    /// future then resolves when the sequence is over. Readiness is marked
    /// ready as the server starts accepting connections (see
    /// [`ShutdownBuilder::ready_on_run`](crate::shutdown::ShutdownBuilder::ready_on_run)).
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Counts connections and their errors into `metrics` (feature `metrics`;
    /// see [`ConnectionMetrics`]).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, metrics: ConnectionMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

use crate::BoxError;

impl<S, B> IntoFuture for Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let Serve {
            listener,
            service,
            config,
            shutdown,
            #[cfg(feature = "metrics")]
            metrics,
        } = self;
        let shared = Arc::new(conn::Shared::new(
            &config,
            #[cfg(feature = "metrics")]
            metrics,
        ));
        Box::pin(async move {
            match shutdown {
                None => accept_loop(listener, service, shared, std::future::pending()).await,
                Some(shutdown) => {
                    // `run` marks readiness ready as it starts the accept loop.
                    let stop = shutdown.stop_accepting();
                    shutdown
                        .run(accept_loop(listener, service, shared, stop))
                        .await;
                }
            }
            Ok(())
        })
    }
}

/// Accepts until `stop`, then waits for every connection to end.
async fn accept_loop<S, B>(
    listener: TcpListener,
    service: S,
    shared: Arc<conn::Shared>,
    stop: impl Future<Output = ()>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let permits = Arc::new(Semaphore::new(shared.max_connections));
    let mut connections = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        // Reap finished connections so the set stays small.
        while connections.try_join_next().is_some() {}
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                shared.count_wait();
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut stop => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: the error is the listener's,
                    // not a client's. Back off instead of spinning.
                    tracing::warn!(target: "tower_ops::serve", %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service = service.clone();
        let shared = shared.clone();
        let closing = shared.closing();
        connections.spawn(async move {
            conn::serve_connection(stream, peer, service, &shared, closing).await;
            drop(permit);
        });
    }
    drop(listener);
    shared.close_all();
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_clamps_values() {
        let c = ServeConfig::new()
            .max_header_bytes(10)
            .max_connections(0)
            .header_read_timeout(Duration::ZERO)
            .idle_timeout(Duration::ZERO);
        assert_eq!(c.max_header_bytes, MIN_MAX_HEADER_BYTES);
        assert_eq!(c.max_connections, 1);
        assert_eq!(c.header_read_timeout, Duration::from_millis(1));
        assert_eq!(c.idle_timeout, Duration::from_millis(1));
        assert_eq!(
            ServeConfig::new()
                .max_header_bytes(usize::MAX)
                .max_header_bytes,
            MAX_MAX_HEADER_BYTES
        );
    }
}
