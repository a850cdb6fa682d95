//! Production middleware for tower-based HTTP servers (axum, hyper, tonic).
//!
//! Every concern is an independent [`Layer`](tower_layer::Layer) that keeps
//! the inner service's error type and composes with the others in any order. The
//! layers talk to each other only through typed extensions:
//!
//! | extension | set by | read by |
//! |---|---|---|
//! | [`request_id::RequestId`] (request and response) | [`request_id::RequestIdLayer`] | logs, error envelopes, handlers |
//! | [`client_ip::ClientIp`] (request) | [`client_ip::ClientIpLayer`] | logs, rate limiting, security headers |
//! | [`route::MatchedRoute`] (response) | [`route::CaptureRouteLayer`] inside the router | logs, metrics |
//! | [`error::Problem`] (response) | every layer that answers by itself | logs, metrics |
//!
//! # Architecture
//!
//! Layers never import each other's internals; their contracts are the typed
//! extensions above. Every layer that answers by itself (body limit, timeout,
//! rate limit, error, the exporters) builds a [`error::Problem`] and hands it to
//! one private respond core, whose [`error::Renderer`] writes problem+json, the
//! wrapped format or a user's own for HTTP clients and a trailers-only gRPC status
//! for gRPC calls, always into the one [`body::ResponseBody`]. The request id and
//! trace id a handler (or a `Problem` built in it) reads come from the request's
//! scope, set by [`request_id::RequestIdLayer`] and [`trace_context`]; paths are
//! named once, in one grammar, by [`paths::PathSet`].
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{Router, routing::get};
//! use tower::ServiceBuilder;
//! use tower_ops::{client_ip::ClientIpLayer, request_id::RequestIdLayer, route::CaptureRouteLayer};
//!
//! # fn build() -> Result<Router, tower_ops::config::ConfigError> {
//! let app = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     // Inside the router: records the route template for the outer layers.
//!     .layer(CaptureRouteLayer::new())
//!     // Outermost first, in the canonical order.
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(RequestIdLayer::new())
//!             .layer(ClientIpLayer::from_env()?),
//!     );
//! # Ok(app)
//! # }
//! # build().unwrap();
//! # }
//! ```
//!
//! # Modules
//!
//! | module | what it gives |
//! |---|---|
//! | [`request_id`] | validated correlation ids, UUIDv7, `current()` in handlers |
//! | [`client_ip`] | the client address, safely behind trusted proxies |
//! | [`log`] | one JSON line per request, flat JSON logging set-up |
//! | [`redact`] | secrets removed from headers, queries, JSON bodies and text |
//! | [`error`] | the [`error::Problem`] envelope, `ErrorLayer`, axum extractors |
//! | `metrics` | RED metrics on `prometheus-client` and a `/metrics` exporter |
//! | `rate_limit` | keyed GCRA limits in process or on Redis, IETF headers |
//! | [`health`] | checks, `/health/live`, `/health/ready`, `/health` |
//! | [`admin`] | operator routes behind `ADMIN_TOKEN`: the log filter, read and changed at run time |
//! | [`load_shed`] | a fixed or adaptive limit on requests in flight, 503 `OVERLOADED` above it |
//! | [`serve`] | the server in front of the stack: header and idle timeouts, a head-size cap, a connection cap, HTTP/1.1 and h2c, connection errors logged and counted, shutdown built in |
//! | [`shutdown`] | SIGTERM handling and a bounded drain tied to readiness |
//! | [`trace_context`] | W3C `traceparent` parsing; the trace id in logs and envelopes |
//! | `otel` | OTLP export, server spans parented to the caller, client propagation |
//! | [`paths`] | the probe and noise routes, named once for every layer |
//! | [`route`] | route templates for layers outside the router |
//!
//! # Features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `axum` | yes | route capture from axum's `MatchedPath`, `ConnectInfo` peers, `IntoResponse` for [`error::Problem`], the `Json`/`Query`/`Path`/`Form` extractors, router helpers |
//! | `metrics` | yes | the `metrics` module, on `prometheus-client` |
//! | `rate-limit` | yes | the `rate_limit` module, on `governor` |
//! | `redis` | no | the Redis backend of the rate limiter |
//! | `otel` | no | the `otel` module: OTLP export over gRPC or HTTP/protobuf |
//! | `tonic` | no | peers from tonic's `TcpConnectInfo`, for [`client_ip::ClientIpLayer`] and the rate limiter |
//! | `full` | no | every feature |
//!
//! # Configuration
//!
//! Layers have builders and a `from_env()` that reads the variables of the
//! README's environment table. `from_env()` never stops at the first mistake: its
//! [`config::ConfigError`] lists every invalid variable with the value found and what
//! was expected.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;

/// The boxed error every layer's body and check errors convert into: the one
/// error type of the crate's own bodies, health checks and server.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub mod admin;
mod bearer;
pub mod body;
pub mod body_limit;
pub mod client_ip;
pub mod config;
mod context;
pub mod error;
mod error_chain;
// Entry points for the fuzz targets in `fuzz/`; not a public API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;
mod grpc;
pub mod health;
mod json;
pub mod load_shed;
pub mod log;
mod media;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
mod panics;
pub mod paths;
mod peer;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
pub mod redact;
pub mod request_id;
mod respond;
pub mod route;
pub mod security_headers;
pub mod serve;
pub mod shutdown;
pub mod stack;
mod time;
pub mod timeout;
pub mod trace_context;
