//! Rate limiting: keyed GCRA limits that answer `429 Too Many Requests`.
//!
//! [`RateLimitLayer`] holds named [`Policy`]s. Each has a [`Quota`] that reads as
//! written (`Quota::per(100, Duration::from_secs(15 * 60))` is 100 requests per 15
//! minutes, optionally with a smaller [`Quota::burst`]), a key ([`KeyBy`]: client
//! IP, a header such as an API key, a typed extension your authentication inserts
//! such as a user id, a closure over the request head, or one global bucket), and
//! a scope (path patterns, methods). A request is charged by every policy that
//! applies to it, with a per-request cost if you set one.
//!
//! - Within its limits a request goes through, and the response carries the IETF
//!   fields of the policy closest to its limit:
//!   `RateLimit-Policy: "default";q=100;w=60` and `RateLimit: "default";r=42;t=17`
//!   (`r` requests left now, `t` seconds until the quota is whole again).
//! - Over a limit, the inner service is not called. The answer is a 429
//!   `RATE_LIMITED` [`Problem`](crate::error::Problem) (`rejected_by` =
//!   `rate_limit`, detail "rate limit exceeded, retry in 3 s") with the same fields
//!   and `Retry-After` in whole seconds, rounded up and at least 1.
//! - Skipped requests ([`RateLimitLayer::skip_paths`], [`RateLimitLayer::skip`])
//!   and routes no policy applies to carry no rate-limit fields.
//! - Legacy `X-RateLimit-Limit/Remaining/Reset` are opt-in
//!   ([`RateLimitLayer::legacy_headers`]).
//! - Under axum, add it with [`RateLimitLayer::for_axum`]: responses keep axum's
//!   own body type, so the handler's response is not boxed a second time.
//! - gRPC calls (`content-type: application/grpc`) are rejected with a gRPC
//!   status instead: HTTP 200, `grpc-status: 8` (`RESOURCE_EXHAUSTED`) and a
//!   `grpc-message`, with the same rate-limit headers ([`RateLimitLayer::grpc`]).
//!
//! The algorithm is GCRA (`governor`): requests replenish one at a time, so no
//! window boundary lets twice the quota through. Keys are held as 64-bit keyed
//! hashes (header values are never stored), IPv6 clients are grouped by /56, and
//! idle keys are dropped by a background task ([`RateLimitLayer::cleanup_every`]);
//! [`RateLimitLayer::len`] gives the number of tracked keys. About 30 bytes per key:
//! a million distinct clients fit in well under 128 MB, returned once they go idle.
//!
//! Client addresses come from the [`ClientIp`](crate::client_ip::ClientIp)
//! extension, so put [`ClientIpLayer`](crate::client_ip::ClientIpLayer) outside
//! this layer when proxies stand in front of the service. Without it the peer
//! address is used; forwarding headers are never read here.
//!
//! With several instances, a shared [`Backend`] (Redis with the `redis` feature:
//! [`RedisBackend`]) enforces one limit across them, bounded by a timeout and a
//! circuit breaker, with a [`FailureMode`] while it is down.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use http::{Method, Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ops::rate_limit::{KeyBy, Policy, Quota, RateLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limits = RateLimitLayer::new()
//!     .policy(Policy::new("default", Quota::per(100, Duration::from_secs(60))))
//!     .policy(
//!         Policy::new("auth", Quota::per(2, Duration::from_secs(15 * 60)))
//!             .paths(["/login"])
//!             .methods([Method::POST]),
//!     )
//!     .skip_paths(["/health/*", "/metrics"]);
//! let service = ServiceBuilder::new().layer(limits).service(service_fn(|_req: Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::from("welcome")))
//! }));
//!
//! let login = || {
//!     let mut request = Request::post("/login").body(()).unwrap();
//!     request.extensions_mut().insert("203.0.113.9:4000".parse::<std::net::SocketAddr>().unwrap());
//!     request
//! };
//! let response = service.clone().oneshot(login()).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! // The auth policy is the one closest to its limit.
//! assert_eq!(response.headers()["ratelimit-policy"], "\"auth\";q=2;w=900");
//! assert_eq!(response.headers()["ratelimit"], "\"auth\";r=1;t=450");
//!
//! service.clone().oneshot(login()).await?;
//! let response = service.clone().oneshot(login()).await?;
//! assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(response.headers()["retry-after"], "450");
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! # Ok(())
//! # }
//! ```
//!
//! # From the environment
//!
//! [`RateLimitLayer::from_env`] reads `RATE_LIMIT_MAX_REQUESTS` (default 100) per
//! `RATE_LIMIT_WINDOW_MS` (default 60000), `RATE_LIMIT_FAILURE_MODE` (local|open|closed,
//! default local) and, with the `redis` feature, `REDIS_URL`.
//!
//! # Per-user limits
//!
//! A policy keyed by a user ([`KeyBy::extension`] for the type your
//! authentication inserts, or [`KeyBy::from_fn`]) needs that layer to run before
//! this one. With [`Stack`](crate::stack::Stack), give it the slot made for it,
//! [`Stack::auth`](crate::stack::Stack::auth), just outside the limiter; when you
//! stack by hand, put it between [`ClientIpLayer`](crate::client_ip::ClientIpLayer)
//! and this layer. Inside the router it runs too late: the policy finds no key,
//! limits nothing, and logs one warning
//! ([`Policy::warn_missing_key_after`]). `examples/per_user_limits.rs` is a whole
//! service.
//!
//! # Several policies
//!
//! governor cannot check a bucket without charging it, so a request rejected by a
//! later policy has already been charged by the earlier ones. Put the strictest
//! policies first: a rejection stops the walk and later policies are not charged.

mod backend;
mod decision;
#[cfg(feature = "metrics")]
mod export;
mod future;
mod headers;
mod key;
mod layer;
mod local;
mod policy;
mod quota;
#[cfg(feature = "redis")]
mod redis;
mod service;
#[cfg(test)]
mod tests;

pub use self::backend::{
    Backend, BackendError, BackendFuture, BackendRequest, Decision, FailureMode,
};
pub use self::future::ResponseFuture;
pub use self::key::{CustomKey, KeyBy};
pub use self::layer::RateLimitLayer;
pub use self::local::RateLimitClock;
#[allow(deprecated)]
pub use self::policy::PathPatterns;
pub use self::policy::{Policy, RequestHead};
pub use self::quota::{Quota, QuotaError};
#[cfg(feature = "redis")]
pub use self::redis::{RedisBackend, TimeSource};
pub use self::service::RateLimit;
