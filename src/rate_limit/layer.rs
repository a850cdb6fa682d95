use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::backend::{Backend, FailureMode};
use super::decision::Shared;
use super::headers::HeaderMode;
use super::local::RateLimitClock;
use super::mode::Mode;
use super::policy::{Policy, RequestHead};
use super::quota::Quota;
use super::service::RateLimit;
use crate::body::AnyBody;
use crate::config::{self, ConfigError};
use crate::error::Renderer;
use crate::paths::PathSet;

pub(super) type SkipFn = Arc<dyn Fn(&RequestHead<'_>) -> bool + Send + Sync>;

/// Limits requests per key with GCRA and answers 429 when a policy is exhausted.
///
/// Built from named [`Policy`]s; see the [module docs](super) for the behaviour and
/// an example. Clones share their state; build the layer once and reuse it.
///
/// `M` chooses the response body: [`AnyBody`] by default, which wraps the inner
/// body in a [`ResponseBody`](crate::body::ResponseBody), or [`AxumBody`](crate::body::AxumBody) after
/// [`for_axum`](Self::for_axum).
pub struct RateLimitLayer<M = AnyBody> {
    // One `Arc`: axum may clone the layer for every request it routes.
    pub(super) shared: Arc<Shared>,
    _mode: PhantomData<fn() -> M>,
}

impl<M> Clone for RateLimitLayer<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _mode: PhantomData,
        }
    }
}

#[derive(Clone)]
pub(super) struct Config {
    pub(super) policies: Vec<Policy>,
    pub(super) skip_paths: PathSet,
    pub(super) skip: Option<SkipFn>,
    pub(super) headers: HeaderMode,
    pub(super) renderer: Renderer,
    pub(super) clock: RateLimitClock,
    pub(super) cleanup_every: Duration,
    pub(super) remote: Option<RemoteConfig>,
    pub(super) failure_mode: FailureMode,
    pub(super) key_secret: Option<Arc<[u8]>>,
    pub(super) grpc: bool,
    /// The mode of every policy that sets none of its own.
    pub(super) mode: Mode,
}

#[derive(Clone)]
pub(super) struct RemoteConfig {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) timeout: Duration,
    pub(super) breaker_threshold: u32,
    pub(super) breaker_cooldown: Duration,
}

impl Default for RateLimitLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimitLayer {
    /// A layer without policies (it limits nothing until [`RateLimitLayer::policy`]).
    pub fn new() -> Self {
        Self::from_config(Config {
            policies: Vec::new(),
            skip_paths: PathSet::default(),
            skip: None,
            headers: HeaderMode {
                ietf: true,
                legacy: false,
            },
            renderer: Renderer::default(),
            clock: RateLimitClock::system(),
            cleanup_every: Duration::from_secs(60),
            remote: None,
            failure_mode: FailureMode::Local,
            key_secret: None,
            grpc: true,
            mode: Mode::Enforce,
        })
    }

    /// One policy named `default` with `quota`, keyed by client IP.
    pub fn with_quota(quota: Quota) -> Self {
        Self::new().policy(Policy::new("default", quota))
    }

    /// The `default` policy from `RATE_LIMIT_MAX_REQUESTS` (default 100) per
    /// `RATE_LIMIT_WINDOW_MS` (default 60000), keyed by client IP; the renderer from
    /// `ERROR_FORMAT`; the failure mode from `RATE_LIMIT_FAILURE_MODE` (default local);
    /// the [`Mode`] from `RATE_LIMIT_MODE` (`enforce` or `shadow`, default enforce);
    /// and, with the `redis` feature, a Redis backend when `REDIS_URL` is set.
    /// Every invalid value is listed in the error.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let max = read_number(&mut errors, "RATE_LIMIT_MAX_REQUESTS", 100);
        let window = config::ms("RATE_LIMIT_WINDOW_MS", 1..=u64::MAX, &mut errors)
            .unwrap_or(Duration::from_secs(60));
        let quota = match (u32::try_from(max), Quota::try_per(1, window)) {
            (Ok(max), Ok(_)) => Quota::try_per(max, window).map_err(|e| {
                errors.push("RATE_LIMIT_MAX_REQUESTS", &max.to_string(), e.to_string());
            }),
            (Err(_), _) => {
                errors.push(
                    "RATE_LIMIT_MAX_REQUESTS",
                    &max.to_string(),
                    "a number up to 4294967295",
                );
                Err(())
            }
            (_, Err(e)) => {
                let ms = window.as_millis().to_string();
                errors.push("RATE_LIMIT_WINDOW_MS", &ms, e.to_string());
                Err(())
            }
        };
        let failure_mode = FailureMode::read_env(&mut errors);
        let mode = Mode::read_env(&mut errors);
        let renderer = Renderer::from_env().unwrap_or_else(|e| {
            errors.merge(e);
            Renderer::default()
        });
        #[cfg(feature = "redis")]
        let backend = config::var("REDIS_URL", &mut errors).and_then(|url| {
            super::RedisBackend::new(&url)
                .map_err(|e| errors.push("REDIS_URL", &url, format!("a Redis URL ({e})")))
                .ok()
        });
        #[cfg(not(feature = "redis"))]
        if config::var("REDIS_URL", &mut errors).is_some() {
            tracing::warn!(
                "REDIS_URL is set but the `redis` feature is off: limits are per instance"
            );
        }
        let Ok(quota) = quota else {
            return Err(errors);
        };
        let layer = Self::with_quota(quota)
            .renderer(renderer)
            .failure_mode(failure_mode)
            .mode(mode);
        #[cfg(feature = "redis")]
        let layer = match backend {
            Some(backend) => layer.backend(backend),
            None => layer,
        };
        errors.into_result(layer)
    }

    fn from_config(config: Config) -> Self {
        Self {
            shared: Arc::new(Shared::new(config)),
            _mode: PhantomData,
        }
    }
}

impl<M> RateLimitLayer<M> {
    fn map(self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone();
        f(&mut config);
        Self {
            shared: Arc::new(Shared::new(config)),
            _mode: PhantomData,
        }
    }

    /// A handle on the same state in the default mode (for code that does not
    /// care about the response body).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(super) fn same_state(&self) -> RateLimitLayer {
        RateLimitLayer {
            shared: self.shared.clone(),
            _mode: PhantomData,
        }
    }

    /// Returns axum's own `Body` in responses, for `Router::layer`.
    ///
    /// The handler's response then passes through as it is, where the default
    /// mode wraps its body and axum boxes that wrapper again for every request;
    /// only the layer's own answers (429, 503) are boxed. Same behaviour and
    /// headers otherwise.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower_ops::rate_limit::{Quota, RateLimitLayer};
    ///
    /// let app: Router = Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .layer(RateLimitLayer::with_quota(Quota::per_minute(100)).for_axum());
    /// ```
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn for_axum(self) -> RateLimitLayer<crate::body::AxumBody> {
        RateLimitLayer {
            shared: self.shared,
            _mode: PhantomData,
        }
    }

    /// Adds a policy. Policies are checked in order and each that applies to a
    /// request charges it; the first exhausted one in [`Mode::Enforce`] rejects it
    /// (later ones are not charged). One in [`Mode::Shadow`] only marks it, and
    /// the walk goes on.
    pub fn policy(self, policy: Policy) -> Self {
        self.map(|c| c.policies.push(policy))
    }

    /// The mode of every policy that does not set its own with [`Policy::mode`]
    /// ([`Mode::Enforce`] by default; `RATE_LIMIT_MODE` with [`from_env`](RateLimitLayer::from_env)),
    /// the `default` policy of [`with_quota`](RateLimitLayer::with_quota) and
    /// [`from_env`](RateLimitLayer::from_env) included. A policy's own mode wins
    /// over this one, whichever is set first.
    ///
    /// In [`Mode::Shadow`], a request over a policy's limit is served as usual and
    /// its response carries a [`ShadowRejection`](crate::error::ShadowRejection);
    /// see [shadow mode](super#shadow-mode).
    pub fn mode(self, mode: Mode) -> Self {
        self.map(|c| c.mode = mode)
    }

    /// Requests whose path is in `paths` are never limited and carry no
    /// rate-limit headers: the shared probe set, for example
    /// [`PathSet::probes`] (`/health/*` and `/metrics`), the same value the log and
    /// metrics layers take.
    pub fn skip_paths(self, paths: impl Into<PathSet>) -> Self {
        let set = paths.into();
        self.map(|c| c.skip_paths = set)
    }

    /// Requests for which `skip` returns true are never limited (an allow-list,
    /// internal callers...).
    pub fn skip<F>(self, skip: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    {
        self.map(|c| c.skip = Some(Arc::new(skip)))
    }

    /// Sends the IETF `RateLimit-Policy` and `RateLimit` headers on limited
    /// routes (on by default). `Retry-After` is always sent on 429.
    pub fn headers(self, on: bool) -> Self {
        self.map(|c| c.headers.ietf = on)
    }

    /// Also sends `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
    /// `X-RateLimit-Reset` (seconds from now), for older clients (off by default).
    pub fn legacy_headers(self, on: bool) -> Self {
        self.map(|c| c.headers.legacy = on)
    }

    /// The renderer of 429 (and 503) responses.
    pub fn renderer(self, renderer: Renderer) -> Self {
        self.map(|c| c.renderer = renderer)
    }

    /// Answers gRPC calls with a gRPC status instead of an HTTP error (on by
    /// default).
    ///
    /// A request whose `content-type` is `application/grpc` or
    /// `application/grpc+<codec>` is rejected "trailers-only": HTTP 200,
    /// `content-type: application/grpc`, `grpc-status: 8` (`RESOURCE_EXHAUSTED`; 14,
    /// `UNAVAILABLE`, when the backend is down and the failure mode is closed) and a
    /// `grpc-message` with the detail, next to the usual `RateLimit`,
    /// `RateLimit-Policy` and `Retry-After` headers. gRPC clients would read a 429
    /// as `UNAVAILABLE`, which retry policies retry at once. The response still
    /// carries its [`Problem`](crate::error::Problem) (status 429, `RATE_LIMITED`) in its extensions, so the
    /// log and metrics layers count the rejection. gRPC-Web and every other request
    /// get the HTTP answer. With `false`, gRPC calls get the HTTP answer too.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_ops::rate_limit::{KeyBy, Policy, Quota, RateLimitLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limits = RateLimitLayer::new()
    ///     .policy(Policy::new("calls", Quota::per_minute(1)).key(KeyBy::global()));
    /// let service = ServiceBuilder::new().layer(limits).service(service_fn(|_req: Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    /// }));
    /// let call = || {
    ///     Request::post("/demo.Greeter/SayHello")
    ///         .header("content-type", "application/grpc")
    ///         .body(())
    /// };
    /// service.clone().oneshot(call()?).await?;
    /// let response = service.clone().oneshot(call()?).await?;
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.headers()["content-type"], "application/grpc");
    /// assert_eq!(response.headers()["grpc-status"], "8");
    /// assert_eq!(response.headers()["grpc-message"], "rate limit exceeded, retry in 60 s");
    /// assert_eq!(response.headers()["retry-after"], "60");
    /// # Ok(())
    /// # }
    /// ```
    pub fn grpc(self, on: bool) -> Self {
        self.map(|c| c.grpc = on)
    }

    /// The clock (the monotonic system clock by default; see [`RateLimitClock`]).
    pub fn clock(self, clock: RateLimitClock) -> Self {
        self.map(|c| c.clock = clock)
    }

    /// How often idle keys are dropped, off the request path, by a task spawned on
    /// the tokio runtime that serves the first request (60 s by default). The task
    /// holds a weak reference and ends with the layer.
    pub fn cleanup_every(self, every: Duration) -> Self {
        self.map(|c| c.cleanup_every = every.max(Duration::from_millis(1)))
    }

    /// Checks policies against a shared backend (such as Redis) so that several
    /// instances enforce one limit. Calls are bounded by a 50 ms timeout and a
    /// circuit breaker (5 consecutive failures open it for 1 s); meanwhile the
    /// [`FailureMode`] applies.
    pub fn backend(self, backend: impl Backend) -> Self {
        let backend: Arc<dyn Backend> = Arc::new(backend);
        self.map(|c| {
            c.remote = Some(RemoteConfig {
                backend,
                timeout: Duration::from_millis(50),
                breaker_threshold: 5,
                breaker_cooldown: Duration::from_secs(1),
            });
        })
    }

    /// What to do while the backend fails (default [`FailureMode::Local`]).
    pub fn failure_mode(self, mode: FailureMode) -> Self {
        self.map(|c| c.failure_mode = mode)
    }

    /// The longest a backend check may take before it counts as a failure.
    pub fn backend_timeout(self, timeout: Duration) -> Self {
        self.map(|c| {
            if let Some(r) = &mut c.remote {
                r.timeout = timeout;
            }
        })
    }

    /// The circuit breaker: open after `failures` consecutive backend failures,
    /// probe again after `cooldown`.
    pub fn circuit_breaker(self, failures: u32, cooldown: Duration) -> Self {
        self.map(|c| {
            if let Some(r) = &mut c.remote {
                r.breaker_threshold = failures.max(1);
                r.breaker_cooldown = cooldown;
            }
        })
    }

    /// The secret mixed into the hash of header and extension keys sent to a
    /// backend. Instances sharing a backend must use the same secret; without
    /// one, a built-in constant is used, which still keeps raw values out of the
    /// backend but lets anyone who reads it test guesses.
    pub fn key_secret(self, secret: impl AsRef<[u8]>) -> Self {
        let secret: Arc<[u8]> = Arc::from(secret.as_ref());
        self.map(|c| c.key_secret = Some(secret))
    }

    /// The number of keys tracked in process, over all policies (a gauge).
    pub fn len(&self) -> usize {
        self.shared.local.len()
    }

    /// Whether no key is tracked in process.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops idle keys now and returns how many; the background task does this
    /// every [`RateLimitLayer::cleanup_every`].
    pub fn cleanup(&self) -> usize {
        self.shared.local.cleanup()
    }

    /// How many times the failure mode was applied because the backend failed or
    /// the circuit breaker was open.
    pub fn fallbacks(&self) -> u64 {
        self.shared
            .remote
            .as_ref()
            .map_or(0, |r| r.fallbacks.count())
    }

    /// Whether the backend's circuit breaker is open.
    pub fn backend_unavailable(&self) -> bool {
        self.shared
            .remote
            .as_ref()
            .is_some_and(|r| r.breaker.is_open())
    }
}

fn read_number(errors: &mut ConfigError, name: &str, default: u64) -> u64 {
    match config::var(name, errors) {
        None => default,
        Some(v) => v.parse::<u64>().unwrap_or_else(|_| {
            errors.push(name, &v, "a positive integer");
            default
        }),
    }
}

impl<M> fmt::Debug for RateLimitLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.shared.config;
        f.debug_struct("RateLimitLayer")
            .field("policies", &config.policies)
            .field("skip_paths", &config.skip_paths)
            .field("headers", &config.headers)
            .field("backend", &config.remote.is_some())
            .field("failure_mode", &config.failure_mode)
            .field("grpc", &config.grpc)
            .field("mode", &config.mode)
            .field("tracked_keys", &self.len())
            .finish()
    }
}

impl<S, M> Layer<S> for RateLimitLayer<M> {
    type Service = RateLimit<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::with_shared(inner, Some(self.shared.clone()))
    }
}

impl<S, M> crate::stack::Switchable<S> for RateLimitLayer<M> {
    /// A `RateLimit` that limits nothing and adds no headers.
    fn off(inner: S) -> Self::Service {
        RateLimit::with_shared(inner, None)
    }
}
