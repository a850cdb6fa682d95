//! Health checks and the probe endpoints: `/health/live`, `/health/ready` and
//! `/health`.
//!
//! A [`HealthRegistry`] holds [`HealthCheck`]s (closures through [`check_fn`],
//! or the built-in [`TcpCheck`], `MemoryCheck` and `DiskCheck`) and serves:
//!
//! | path | answers | runs checks |
//! |---|---|---|
//! | `/health/live` | 200 `{"status":"alive"}` | never |
//! | `/health/ready` | 200 `{"status":"ready"}`, or 503 `{"status":"not_ready","reason":"starting"\|"draining"\|"checks_failed"}` | the critical ones, from the cache, once ready |
//! | `/health` | `{"status":"healthy"\|"degraded"\|"unhealthy","checks":{..},"uptime_s":..}`; 503 when unhealthy | all, from the cache |
//!
//! Every answer is `application/json` with `cache-control: no-store`; GET and
//! HEAD are accepted, other methods get 405 with `Allow: GET, HEAD`.
//!
//! How checks run:
//! - concurrently, each under its own budget (default `HEALTH_CHECK_TIMEOUT_MS`,
//!   2 s) and all under a round deadline; a check that hangs is reported
//!   `unhealthy` with `timed out after N ms` when its budget is spent;
//! - a check that panics is contained and reported `unhealthy`;
//! - results are cached for `HEALTH_CACHE_TTL_MS` (1 s), and concurrent probes
//!   share one run of each check (single flight), so a burst of probes never
//!   multiplies the load on a database;
//! - optionally in the background ([`HealthRegistry::spawn_background`]):
//!   probes then only read the last result;
//! - a check can be allowed a few failures in a row before it counts
//!   ([`FnCheck::failure_threshold`]);
//! - each change of a check's status, and of the aggregate, is logged once;
//! - error texts are sanitized (control characters removed) and capped at
//!   [`MAX_ERROR_CHARS`]; [`HealthRegistryBuilder::detail_token`] hides the
//!   per-check details from callers without `Authorization: Bearer <token>`.
//!
//! Aggregation: a failing critical check makes the service `unhealthy` (503)
//! and not ready; failing non-critical checks make it `degraded` (200) and leave
//! readiness alone.
//!
//! Readiness follows [`Readiness`]: `Starting` until serving starts,
//! `Draining` once [`shutdown`](crate::shutdown) begins. Serving through
//! [`Shutdown::run`](crate::shutdown::Shutdown::run) (with the registry's
//! readiness given to the [`ShutdownBuilder`](crate::shutdown::ShutdownBuilder))
//! marks it ready as the server starts; without it, call
//! [`Readiness::mark_ready`] once the listener is bound. Liveness never depends on anything but the process answering, so
//! an outage of a dependency never gets healthy pods restarted.
//!
//! # Example
//!
//! ```
//! use http::{Request, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use bytes::Bytes;
//! use tower::ServiceExt;
//! use tower_ops::health::{check_fn, HealthRegistry};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = HealthRegistry::builder()
//!     .check(check_fn("db", || async { Ok::<_, std::io::Error>(()) }))
//!     .check(check_fn("cache", || async { Err::<(), _>("connection refused") }).non_critical())
//!     .build();
//!
//! let get = |path: &str| Request::get(path).body(Full::<Bytes>::default()).unwrap();
//!
//! // Not ready until start-up is done.
//! let response = registry.service().oneshot(get("/health/ready")).await?;
//! assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(body, r#"{"status":"not_ready","reason":"starting"}"#);
//!
//! registry.readiness().mark_ready();
//! let response = registry.service().oneshot(get("/health/ready")).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // Only a non-critical check fails: degraded, still 200.
//! let response = registry.service().oneshot(get("/health")).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.headers()["cache-control"], "no-store");
//! let body = response.into_body().collect().await?.to_bytes();
//! let body = std::str::from_utf8(&body)?;
//! assert!(body.starts_with(r#"{"status":"degraded","checks":{"db":{"status":"healthy""#));
//! assert!(body.contains(r#""cache":{"status":"unhealthy","duration_ms":"#));
//! assert!(body.contains(r#""error":"connection refused"}"#));
//! # Ok(())
//! # }
//! ```
//!
//! With axum, merge [`HealthRegistry::router`] into the application's router:
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{Router, routing::get};
//! use tower_ops::health::HealthRegistry;
//!
//! let registry = HealthRegistry::builder().build();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .merge(registry.router());
//! # }
//! ```

mod builtin;
mod check;
mod readiness;
mod registry;
mod service;

#[cfg(feature = "redis")]
pub use self::builtin::RedisCheck;
pub use self::builtin::TcpCheck;
#[cfg(target_os = "linux")]
pub use self::builtin::{DiskCheck, MemoryCheck};
pub use self::check::{CheckFuture, FnCheck, HealthCheck, check_fn};
pub use self::readiness::{Readiness, ReadinessState};
pub use self::registry::{
    BackgroundTasks, CheckResult, CheckStatus, DEFAULT_CACHE_TTL, DEFAULT_CHECK_TIMEOUT,
    DEFAULT_DEADLINE, HealthRegistry, HealthRegistryBuilder, HealthReport, HealthStatus,
    MAX_ERROR_CHARS,
};
pub use self::service::{
    HEALTH_PATH, HealthBody, HealthService, LIVE_PATH, READY_PATH, ResponseFuture,
};

pub(crate) use self::check::CatchUnwind;

#[cfg(test)]
mod tests;
