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
//! - Over a limit, the inner service is not called (unless the policy is in
//!   [shadow mode](#shadow-mode), which only marks the response). The answer is a 429
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
//! default local), `RATE_LIMIT_MODE` (enforce|shadow, default enforce; see
//! [shadow mode](#shadow-mode)) and, with the `redis` feature, `REDIS_URL`.
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
//!
//! # Shadow mode
//!
//! A policy in [`Mode::Shadow`] counts requests as an enforced one would, but
//! never refuses one: a request over its limit is served as usual, and its
//! response carries a [`ShadowRejection`](crate::error::ShadowRejection)
//! (`rejected_by` = `rate_limit`, code `RATE_LIMITED`, the policy's name) in its
//! extensions. The request log writes it as `shadow_rejected_by` and
//! `shadow_policy`, and the metrics layer counts
//! `http_server_shadow_rejections_total{rejected_by="rate_limit",code="RATE_LIMITED"}`,
//! so a new limit shows whom it would refuse before it refuses anyone.
//!
//! - [`RateLimitLayer::mode`] (or `RATE_LIMIT_MODE=shadow` with
//!   [`RateLimitLayer::from_env`]) sets the mode of every policy, the default
//!   per-IP policy included; [`Policy::mode`] sets one policy's. **A policy's own
//!   mode wins over the layer's**, so a layer in shadow mode can keep one limit
//!   enforced, and the other way round.
//! - Shadow policies never change what enforced ones decide: each has its own
//!   buckets, a shadow refusal does not stop the walk through the policies, and a
//!   request over a shadow limit is not charged to it (as with an enforced limit).
//!   An enforced refusal still answers 429 as usual; that response carries no
//!   shadow mark, since the request was not served. Like any policy, a shadow one
//!   placed after an enforced one that refuses is not checked (see
//!   [several policies](#several-policies)).
//! - Shadow policies add no header: `RateLimit`, `RateLimit-Policy` and
//!   `Retry-After` (and the legacy fields) describe the enforced policies only, so
//!   clients see the same headers as without the shadow policies, and none when
//!   only shadow policies apply.
//! - When several shadow policies would refuse a request, the mark names the first
//!   in the layer's order.
//! - With a shared [`Backend`], shadow policies are checked there like the others,
//!   and the [`FailureMode`] applies to them too: `local` checks them in process,
//!   `open` lets the request through unmarked, and `closed` serves the request and
//!   marks it with code `SERVICE_UNAVAILABLE`, the answer it would have had.
//! - With no policy in shadow mode, a request costs what it did: nothing is
//!   allocated for it, and one enforced policy keeps its fast path. A shadow
//!   policy within its limit allocates nothing either; the mark is written (one
//!   extension) only when it would refuse.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ops::error::{Code, ShadowRejection};
//! use tower_ops::rate_limit::{KeyBy, Mode, Policy, Quota, RateLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limits = RateLimitLayer::new()
//!     // Enforced: 3 per minute for everyone together.
//!     .policy(Policy::new("global", Quota::per_minute(3)).key(KeyBy::global()))
//!     // Being tried out: 1 per minute.
//!     .policy(
//!         Policy::new("strict", Quota::per_minute(1))
//!             .key(KeyBy::global())
//!             .mode(Mode::Shadow),
//!     );
//! let service = ServiceBuilder::new().layer(limits).service(service_fn(|_req: Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::from("welcome")))
//! }));
//!
//! let first = service.clone().oneshot(Request::new(())).await?;
//! assert_eq!(first.status(), StatusCode::OK);
//! assert!(first.extensions().get::<ShadowRejection>().is_none());
//! // The headers are the enforced policy's.
//! assert_eq!(first.headers()["ratelimit"], "\"global\";r=2;t=20");
//!
//! // Over the shadow limit: served all the same, and marked.
//! let second = service.clone().oneshot(Request::new(())).await?;
//! assert_eq!(second.status(), StatusCode::OK);
//! let mark = second.extensions().get::<ShadowRejection>().unwrap();
//! assert_eq!(mark.rejected_by(), "rate_limit");
//! assert_eq!(mark.code(), &Code::RATE_LIMITED);
//! assert_eq!(mark.policy_name(), Some("strict"));
//! assert_eq!(second.headers()["ratelimit"], "\"global\";r=1;t=40");
//!
//! // The enforced limit still refuses.
//! service.clone().oneshot(Request::new(())).await?;
//! let fourth = service.clone().oneshot(Request::new(())).await?;
//! assert_eq!(fourth.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(fourth.extensions().get::<ShadowRejection>().is_none());
//! # Ok(())
//! # }
//! ```

mod backend;
mod decision;
#[cfg(feature = "metrics")]
mod export;
mod future;
mod headers;
mod key;
mod layer;
mod local;
mod mode;
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
pub use self::mode::Mode;
#[allow(deprecated)]
pub use self::policy::PathPatterns;
pub use self::policy::{Policy, RequestHead};
pub use self::quota::{Quota, QuotaError};
#[cfg(feature = "redis")]
pub use self::redis::{RedisBackend, TimeSource};
pub use self::service::RateLimit;
