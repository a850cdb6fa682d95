use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::backend::{Backend, BackendRequest, Breaker, FailureMode, FallbackLog};
use super::headers::{HeaderMode, PolicyHeaders};
use super::key::KeyHasher;
use super::local::{LocalLimiter, LocalState, Outcome, RateLimitClock, spawn_cleanup};
use super::policy::{Policy, RequestHead};
use super::quota::{Quota, ceil_secs};
use crate::body::{AnyBody, ResponseBody, ResponseMode};
use crate::config::{self, ConfigError};
use crate::error::{Code, Problem, Renderer};
use crate::paths::PathSet;

type SkipFn = Arc<dyn Fn(&RequestHead<'_>) -> bool + Send + Sync>;

/// Limits requests per key with GCRA and answers 429 when a policy is exhausted.
///
/// Built from named [`Policy`]s; see the [module docs](super) for the behaviour and
/// an example. Clones share their state; build the layer once and reuse it.
///
/// `M` chooses the response body: [`AnyBody`] by default, which wraps the inner
/// body in a [`ResponseBody`], or [`AxumBody`](crate::body::AxumBody) after
/// [`for_axum`](Self::for_axum).
pub struct RateLimitLayer<M = AnyBody> {
    // One `Arc`: axum may clone the layer for every request it routes.
    shared: Arc<Shared>,
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
struct Config {
    policies: Vec<Policy>,
    skip_paths: PathSet,
    skip: Option<SkipFn>,
    headers: HeaderMode,
    renderer: Renderer,
    clock: RateLimitClock,
    cleanup_every: Duration,
    remote: Option<RemoteConfig>,
    failure_mode: FailureMode,
    key_secret: Option<Arc<[u8]>>,
    grpc: bool,
}

#[derive(Clone)]
struct RemoteConfig {
    backend: Arc<dyn Backend>,
    timeout: Duration,
    breaker_threshold: u32,
    breaker_cooldown: Duration,
}

struct Shared {
    config: Config,
    policies: Vec<Policy>,
    headers: Vec<PolicyHeaders>,
    /// One per policy: the missing-key warning.
    watches: Box<[KeyWatch]>,
    local: Arc<LocalState>,
    hasher: KeyHasher,
    /// `None` when empty, so that most requests never compute their path here.
    skip_paths: Option<PathSet>,
    skip: Option<SkipFn>,
    mode: HeaderMode,
    renderer: Renderer,
    grpc: bool,
    clock: RateLimitClock,
    cleanup_every: Duration,
    cleanup_started: AtomicBool,
    remote: Option<Remote>,
}

struct Remote {
    backend: Arc<dyn Backend>,
    timeout: Duration,
    breaker: Breaker,
    failure_mode: FailureMode,
    fallbacks: FallbackLog,
    secret: Arc<[u8]>,
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
        })
    }

    /// One policy named `default` with `quota`, keyed by client IP.
    pub fn with_quota(quota: Quota) -> Self {
        Self::new().policy(Policy::new("default", quota))
    }

    /// The `default` policy from `RATE_LIMIT_MAX_REQUESTS` (default 100) per
    /// `RATE_LIMIT_WINDOW_MS` (default 60000), keyed by client IP; the renderer from
    /// `ERROR_FORMAT`; the failure mode from `RATE_LIMIT_FAILURE_MODE` (default local); and,
    /// with the `redis` feature, a Redis backend when `REDIS_URL` is set.
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
            .failure_mode(failure_mode);
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
    /// request charges it; the first exhausted one rejects it (later ones are not
    /// charged).
    pub fn policy(self, policy: Policy) -> Self {
        self.map(|c| c.policies.push(policy))
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
    /// carries its [`Problem`] (status 429, `RATE_LIMITED`) in its extensions, so the
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
            .field("tracked_keys", &self.len())
            .finish()
    }
}

/// The built-in key secret used when a backend is set without one.
const DEFAULT_SECRET: &[u8] = b"tower-ops rate limit";

impl Shared {
    fn new(config: Config) -> Self {
        let local = LocalState {
            limiters: config
                .policies
                .iter()
                .map(|p| LocalLimiter::new(p.quota, config.clock.clone()))
                .collect(),
        };
        for p in &config.policies {
            tracing::debug!(
                policy = %p.name,
                requests = p.quota.count(),
                window = ?p.quota.window(),
                replenish_every = ?p.quota.replenish_interval(),
                burst = p.quota.burst_size(),
                "rate limit policy"
            );
        }
        Self {
            headers: config.policies.iter().map(PolicyHeaders::new).collect(),
            watches: config.policies.iter().map(KeyWatch::new).collect(),
            policies: config.policies.clone(),
            local: Arc::new(local),
            hasher: KeyHasher::new(),
            skip_paths: (!config.skip_paths.is_empty()).then(|| config.skip_paths.clone()),
            skip: config.skip.clone(),
            mode: config.headers,
            renderer: config.renderer.clone(),
            grpc: config.grpc,
            clock: config.clock.clone(),
            cleanup_every: config.cleanup_every,
            cleanup_started: AtomicBool::new(false),
            remote: config.remote.as_ref().map(|r| Remote {
                backend: r.backend.clone(),
                timeout: r.timeout,
                breaker: Breaker::new(r.breaker_threshold, r.breaker_cooldown),
                failure_mode: config.failure_mode,
                fallbacks: FallbackLog::new(),
                secret: config
                    .key_secret
                    .clone()
                    .unwrap_or_else(|| Arc::from(DEFAULT_SECRET)),
            }),
            config,
        }
    }

    #[inline]
    fn start_cleanup(&self) {
        if !self.cleanup_started.load(Ordering::Relaxed)
            && !self.cleanup_started.swap(true, Ordering::Relaxed)
            && !spawn_cleanup(&self.local, self.cleanup_every)
        {
            // No runtime here (a test calling the service by hand): try again later.
            self.cleanup_started.store(false, Ordering::Relaxed);
        }
    }

    /// The in-process decision. With headers off, a passing request carries no
    /// outcome and nothing only the headers need is computed.
    #[inline]
    fn decide_local(&self, head: &RequestHead<'_>) -> Verdict {
        let want = self.mode.any();
        // The common configuration, one policy: no walk, no comparison of outcomes.
        if let [policy] = &self.policies[..] {
            if !policy.applies(head) {
                return Verdict::Pass(None);
            }
            let Some(key) = policy.key.local_key(head, &self.hasher) else {
                self.watches[0].missed(policy);
                return Verdict::Pass(None);
            };
            self.watches[0].found();
            let outcome = self.local.limiters[0].check(key, policy.cost_of(head), want);
            return if !outcome.allowed {
                Verdict::Limited(0, outcome)
            } else if want {
                Verdict::Pass(Some((0, outcome)))
            } else {
                Verdict::Pass(None)
            };
        }
        let mut closest: Option<(usize, Outcome)> = None;
        for (i, policy) in self.policies.iter().enumerate() {
            if !policy.applies(head) {
                continue;
            }
            let Some(key) = policy.key.local_key(head, &self.hasher) else {
                self.watches[i].missed(policy);
                continue;
            };
            self.watches[i].found();
            let outcome = self.local.limiters[i].check(key, policy.cost_of(head), want);
            if !outcome.allowed {
                return Verdict::Limited(i, outcome);
            }
            if want {
                closest = Some(self.closer(closest, (i, outcome)));
            }
        }
        Verdict::Pass(closest)
    }

    /// Of two outcomes, the one with the smaller share of its quota left.
    fn closer(&self, a: Option<(usize, Outcome)>, b: (usize, Outcome)) -> (usize, Outcome) {
        match a {
            None => b,
            Some(a) => {
                let share = |(i, o): (usize, Outcome)| {
                    (
                        u64::from(o.remaining),
                        u64::from(self.policies[i].quota.count()),
                    )
                };
                let ((ra, qa), (rb, qb)) = (share(a), share(b));
                if rb * qa < ra * qb { b } else { a }
            }
        }
    }

    /// What must be asked of the backend for this request.
    fn remote_checks(&self, head: &RequestHead<'_>, secret: &[u8]) -> Vec<RemoteCheck> {
        let now_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let now_micros = if self.clock.is_manual() {
            u64::try_from(self.clock.elapsed().as_micros()).unwrap_or(u64::MAX)
        } else {
            now_micros
        };
        self.policies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.applies(head))
            .filter_map(|(index, policy)| {
                let Some((local_key, key)) = policy.key.remote_key(head, &self.hasher, secret)
                else {
                    self.watches[index].missed(policy);
                    return None;
                };
                self.watches[index].found();
                let cost = policy.cost_of(head);
                Some(RemoteCheck {
                    index,
                    local_key,
                    request: BackendRequest {
                        policy: policy.name.clone(),
                        key,
                        quota: policy.quota,
                        cost,
                        now_micros,
                    },
                })
            })
            .collect()
    }

    /// Whether a rejection of this request is answered with a gRPC status.
    #[inline]
    fn answers_grpc(&self, head: &RequestHead<'_>) -> bool {
        self.grpc && crate::media::is_grpc(head.headers())
    }

    fn limited<B>(&self, index: usize, outcome: &Outcome, grpc: bool) -> Response<ResponseBody<B>> {
        let secs = outcome.reset_secs.max(1);
        let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS)
            .code(Code::RATE_LIMITED)
            .rejected_by("rate_limit")
            .detail(format!("rate limit exceeded, retry in {secs} s"));
        let mut response = self.renderer.clone().grpc(grpc).response::<B>(problem);
        let headers = response.headers_mut();
        self.headers[index].write(self.mode, outcome, headers);
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        response
    }

    fn unavailable<B>(&self, retry_secs: u64, grpc: bool) -> Response<ResponseBody<B>> {
        let secs = retry_secs.max(1);
        let problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .code(Code::SERVICE_UNAVAILABLE)
            .rejected_by("rate_limit")
            .detail(format!("rate limiting is unavailable, retry in {secs} s"));
        let mut response = self.renderer.clone().grpc(grpc).response::<B>(problem);
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        response
    }
}

/// Watches a policy keyed by an extension or a closure until it first finds a
/// key, and warns once when it has seen `after` requests without one: the layer
/// that inserts the key most likely runs after this one.
struct KeyWatch {
    /// Still watching: no key found and no warning given yet.
    open: AtomicBool,
    misses: AtomicU32,
    after: u32,
}

impl KeyWatch {
    fn new(policy: &Policy) -> Self {
        let after = policy.warn_missing_key_after;
        Self {
            open: AtomicBool::new(policy.key.supplied_by_app().is_some() && after > 0),
            misses: AtomicU32::new(0),
            after,
        }
    }

    #[inline]
    fn found(&self) {
        if self.open.load(Ordering::Relaxed) {
            self.open.store(false, Ordering::Relaxed);
        }
    }

    #[inline]
    fn missed(&self, policy: &Policy) {
        if self.open.load(Ordering::Relaxed) {
            self.count_miss(policy);
        }
    }

    #[cold]
    fn count_miss(&self, policy: &Policy) {
        // `fetch_add` hands out each count once: one thread reaches `after`.
        if self.misses.fetch_add(1, Ordering::Relaxed).wrapping_add(1) != self.after {
            return;
        }
        self.open.store(false, Ordering::Relaxed);
        let key = policy.key.supplied_by_app().map_or("", |k| k.type_name());
        tracing::warn!(
            policy = %policy.name,
            key,
            requests = self.after,
            "rate limit policy found no key in any request so far and limits nothing: \
             the layer that inserts the key must run before the rate limiter \
             (Stack::auth, or outside RateLimitLayer)"
        );
    }
}

struct RemoteCheck {
    index: usize,
    local_key: u64,
    request: BackendRequest,
}

enum Verdict {
    /// Let through; headers of the policy closest to its limit, if any applied.
    Pass(Option<(usize, Outcome)>),
    Limited(usize, Outcome),
    /// The backend is down and the failure mode is `closed`.
    Unavailable(u64),
}

async fn decide_remote(shared: Arc<Shared>, checks: Vec<RemoteCheck>) -> Verdict {
    let Some(remote) = shared.remote.as_ref() else {
        return Verdict::Pass(None);
    };
    let mut closest = None;
    for check in checks {
        let index = check.index;
        let cost = check.request.cost;
        let decided = if remote.breaker.allow() {
            match tokio::time::timeout(remote.timeout, remote.backend.check(check.request)).await {
                Ok(Ok(d)) => {
                    remote.breaker.success();
                    Ok(Outcome {
                        allowed: d.allowed,
                        remaining: d.remaining,
                        reset_secs: if d.allowed {
                            ceil_secs(d.reset)
                        } else {
                            ceil_secs(d.reset).max(1)
                        },
                    })
                }
                Ok(Err(e)) => {
                    remote.breaker.failure();
                    Err(e.to_string())
                }
                Err(_) => {
                    remote.breaker.failure();
                    Err(format!("no answer within {:?}", remote.timeout))
                }
            }
        } else {
            Err("circuit breaker open".to_owned())
        };
        let outcome = match decided {
            Ok(o) => o,
            Err(reason) => {
                remote.fallbacks.record(remote.failure_mode, &reason);
                match remote.failure_mode {
                    FailureMode::Open => continue,
                    FailureMode::Closed => {
                        return Verdict::Unavailable(remote.breaker.retry_secs());
                    }
                    FailureMode::Local => {
                        shared.local.limiters[index].check(check.local_key, cost, true)
                    }
                }
            }
        };
        if !outcome.allowed {
            return Verdict::Limited(index, outcome);
        }
        closest = Some(shared.closer(closest, (index, outcome)));
    }
    Verdict::Pass(closest)
}

impl<S, M> Layer<S> for RateLimitLayer<M> {
    type Service = RateLimit<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            shared: Some(self.shared.clone()),
            _mode: PhantomData,
        }
    }
}

impl<S, M> crate::stack::Switchable<S> for RateLimitLayer<M> {
    /// A `RateLimit` that limits nothing and adds no headers.
    fn off(inner: S) -> Self::Service {
        RateLimit {
            inner,
            shared: None,
            _mode: PhantomData,
        }
    }
}

/// The service of [`RateLimitLayer`]; `M` is its layer's response mode
/// ([`AnyBody`] by default, [`AxumBody`](crate::body::AxumBody) after
/// [`RateLimitLayer::for_axum`]).
pub struct RateLimit<S, M = AnyBody> {
    inner: S,
    /// `None`: switched off ([`Switchable`](crate::stack::Switchable)).
    shared: Option<Arc<Shared>>,
    _mode: PhantomData<fn() -> M>,
}

impl<S: Clone, M> Clone for RateLimit<S, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            _mode: PhantomData,
        }
    }
}

impl<S> RateLimit<S> {
    /// A layer: [`RateLimitLayer::with_quota`].
    pub fn layer(quota: Quota) -> RateLimitLayer {
        RateLimitLayer::with_quota(quota)
    }
}

impl<S, M> RateLimit<S, M> {
    /// Wraps `inner` with the policies of `layer`.
    pub fn new(inner: S, layer: &RateLimitLayer<M>) -> Self {
        layer.layer(inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, M> fmt::Debug for RateLimit<S, M>
where
    S: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, M, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, M>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    M: ResponseMode<ResBody>,
{
    type Response = Response<M::ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody, M>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some(shared) = &self.shared else {
            return ResponseFuture::new(Kind::Inner {
                future: self.inner.call(request),
                headers: None,
            });
        };
        shared.start_cleanup();
        let head = RequestHead::of(&request);
        // One call site for the inner service, so the request is moved only once.
        let headers = if shared
            .skip_paths
            .as_ref()
            .is_some_and(|set| set.contains(head.uri.path()))
            || shared.skip.as_ref().is_some_and(|f| f(&head))
        {
            None
        } else if let Some(remote) = &shared.remote {
            let checks = shared.remote_checks(&head, &remote.secret);
            if !checks.is_empty() {
                // Keep the readied service for this request; leave a clone behind.
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                return ResponseFuture::new(Kind::Checking {
                    state: Box::new(Checking {
                        check: Box::pin(decide_remote(shared.clone(), checks)),
                        service: Some(service),
                        grpc: shared.answers_grpc(&head),
                        request: Some(request),
                        shared: shared.clone(),
                    }),
                });
            }
            None
        } else {
            match shared.decide_local(&head) {
                Verdict::Pass(None) => None,
                Verdict::Pass(Some((index, outcome))) => {
                    Some(HeaderJob::new(shared, index, outcome))
                }
                Verdict::Limited(index, outcome) => {
                    let grpc = shared.answers_grpc(&head);
                    return ResponseFuture::ready(shared.limited(index, &outcome, grpc));
                }
                Verdict::Unavailable(secs) => {
                    let grpc = shared.answers_grpc(&head);
                    return ResponseFuture::ready(shared.unavailable(secs, grpc));
                }
            }
        };
        ResponseFuture::new(Kind::Inner {
            future: self.inner.call(request),
            headers,
        })
    }
}

/// The headers a passing response gets: the policy closest to its limit and
/// what its check found. Only made when headers are on.
struct HeaderJob {
    shared: Arc<Shared>,
    index: u32,
    remaining: u32,
    reset_secs: u64,
}

impl HeaderJob {
    #[inline]
    fn new(shared: &Arc<Shared>, index: usize, outcome: Outcome) -> Self {
        Self {
            shared: shared.clone(),
            // Policies are counted in a `Vec` built by hand: far fewer than 2^32.
            index: index as u32,
            remaining: outcome.remaining,
            reset_secs: outcome.reset_secs,
        }
    }

    #[inline]
    fn write(self, headers: &mut http::HeaderMap) {
        let outcome = Outcome {
            allowed: true,
            remaining: self.remaining,
            reset_secs: self.reset_secs,
        };
        self.shared.headers[self.index as usize].write(self.shared.mode, &outcome, headers);
    }
}

struct Checking<S, ReqBody> {
    check: Pin<Box<dyn Future<Output = Verdict> + Send>>,
    service: Option<S>,
    request: Option<Request<ReqBody>>,
    shared: Arc<Shared>,
    /// Whether a rejection is answered with a gRPC status.
    grpc: bool,
}

pin_project! {
    /// The future of [`RateLimit`].
    pub struct ResponseFuture<S, ReqBody, ResBody, M = AnyBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        kind: Kind<S, ReqBody, ResBody>,
        _mode: PhantomData<fn() -> M>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Inner {
            #[pin]
            future: S::Future,
            headers: Option<HeaderJob>,
        },
        // Boxed: the in-process path should not move a whole request around.
        Checking {
            state: Box<Checking<S, ReqBody>>,
        },
        // Boxed: a rejection is rarer than a pass, and a whole response would
        // grow every future by its size.
        Ready {
            response: Option<Box<Response<ResponseBody<ResBody>>>>,
        },
    }
}

impl<S, ReqBody, ResBody, M> ResponseFuture<S, ReqBody, ResBody, M>
where
    S: Service<Request<ReqBody>>,
{
    #[inline]
    fn new(kind: Kind<S, ReqBody, ResBody>) -> Self {
        Self {
            kind,
            _mode: PhantomData,
        }
    }

    fn ready(response: Response<ResponseBody<ResBody>>) -> Self {
        Self::new(Kind::Ready {
            response: Some(Box::new(response)),
        })
    }
}

impl<S, ReqBody, ResBody, M> Future for ResponseFuture<S, ReqBody, ResBody, M>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    M: ResponseMode<ResBody>,
{
    type Output = Result<Response<M::ResBody>, S::Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().kind.project() {
                KindProj::Inner { future, headers } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(job) = headers.take() {
                        job.write(response.headers_mut());
                    }
                    return Poll::Ready(Ok(M::response(response)));
                }
                KindProj::Ready { response } => {
                    return match response.take() {
                        Some(r) => Poll::Ready(Ok(M::rejection(*r))),
                        None => panic!("ResponseFuture polled after completion"),
                    };
                }
                KindProj::Checking { state } => {
                    let Checking {
                        check,
                        service,
                        request,
                        shared,
                        grpc,
                    } = &mut **state;
                    let verdict = ready!(check.as_mut().poll(cx));
                    match (verdict, service.take(), request.take()) {
                        (Verdict::Pass(headers), Some(mut service), Some(request)) => {
                            let headers = headers
                                .filter(|_| shared.mode.any())
                                .map(|(i, o)| HeaderJob::new(shared, i, o));
                            Kind::Inner {
                                future: service.call(request),
                                headers,
                            }
                        }
                        (Verdict::Limited(index, outcome), _, _) => Kind::Ready {
                            response: Some(Box::new(shared.limited(index, &outcome, *grpc))),
                        },
                        (Verdict::Unavailable(secs), _, _) => Kind::Ready {
                            response: Some(Box::new(shared.unavailable(secs, *grpc))),
                        },
                        (Verdict::Pass(_), _, _) => {
                            panic!("ResponseFuture polled after completion")
                        }
                    }
                }
            };
            self.as_mut().project().kind.set(next);
        }
    }
}

impl<S, ReqBody, ResBody, M> fmt::Debug for ResponseFuture<S, ReqBody, ResBody, M>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;
    use http::{HeaderName, Method};
    use http_body_util::{BodyExt, Full};
    use proptest::prelude::*;
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::client_ip::{ClientIp, ClientIpLayer};
    use crate::rate_limit::{BackendError, BackendFuture, Decision, KeyBy};

    type Calls = Arc<AtomicUsize>;

    fn app(
        layer: &RateLimitLayer,
    ) -> (
        impl Service<Request<()>, Response = Response<ResponseBody<Full<Bytes>>>, Error = Infallible>
        + Clone
        + use<>,
        Calls,
    ) {
        let calls = Calls::default();
        let c = calls.clone();
        let svc = layer.layer(service_fn(move |_req: Request<()>| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
        }));
        (svc, calls)
    }

    fn req(path: &str, peer: &str) -> Request<()> {
        let mut r = Request::get(path).body(()).unwrap();
        r.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        r
    }

    async fn send<S>(svc: &S, r: Request<()>) -> Response<ResponseBody<Full<Bytes>>>
    where
        S: Service<Request<()>, Response = Response<ResponseBody<Full<Bytes>>>, Error = Infallible>
            + Clone,
    {
        svc.clone().oneshot(r).await.unwrap()
    }

    fn manual(quota: Quota) -> (RateLimitLayer, RateLimitClock) {
        let clock = RateLimitClock::manual();
        (
            RateLimitLayer::with_quota(quota).clock(clock.clone()),
            clock,
        )
    }

    #[tokio::test]
    async fn rejects_with_problem_and_never_calls_inner() {
        let (layer, clock) = manual(Quota::per(2, Duration::from_millis(500)));
        let (svc, calls) = app(&layer);
        let ok = send(&svc, req("/", "192.0.2.1:1")).await;
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["ratelimit-policy"], "\"default\";q=2;w=1");
        assert_eq!(ok.headers()["ratelimit"], "\"default\";r=1;t=1");
        assert!(ok.headers().get("retry-after").is_none());
        send(&svc, req("/", "192.0.2.1:2")).await;
        let limited = send(&svc, req("/", "192.0.2.1:3")).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(limited.status(), 429);
        assert_eq!(
            limited.headers()["retry-after"],
            "1",
            "250 ms rounds up to 1"
        );
        assert_eq!(limited.headers()["ratelimit"], "\"default\";r=0;t=1");
        let problem = limited.extensions().get::<Problem>().unwrap();
        assert_eq!(problem.get_code(), &Code::RATE_LIMITED);
        assert_eq!(problem.get_rejected_by(), Some("rate_limit"));
        let body = limited.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["detail"], "rate limit exceeded, retry in 1 s");
        assert_eq!(json["status"], 429);
        // Another client is unaffected; time heals.
        assert_eq!(send(&svc, req("/", "192.0.2.2:1")).await.status(), 200);
        clock.advance(Duration::from_millis(250));
        assert_eq!(send(&svc, req("/", "192.0.2.1:4")).await.status(), 200);
        assert_eq!(layer.len(), 2);
    }

    fn grpc_call(content_type: &'static str) -> Request<()> {
        let mut r = req("/demo.Greeter/SayHello", "192.0.2.1:1");
        *r.method_mut() = Method::POST;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        r
    }

    #[tokio::test]
    async fn grpc_calls_get_resource_exhausted_and_http_is_unchanged() {
        let (layer, _) = manual(Quota::per_minute(1));
        let (svc, calls) = app(&layer);
        assert_eq!(
            send(&svc, grpc_call("application/grpc")).await.status(),
            200
        );
        let limited = send(&svc, grpc_call("application/grpc+proto")).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(limited.status(), 200, "gRPC errors travel in grpc-status");
        let h = limited.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "8");
        assert_eq!(h["grpc-message"], "rate limit exceeded, retry in 60 s");
        assert_eq!(h["retry-after"], "60");
        assert_eq!(h["ratelimit"], "\"default\";r=0;t=60");
        assert_eq!(h["ratelimit-policy"], "\"default\";q=1;w=60");
        let problem = limited.extensions().get::<Problem>().unwrap();
        assert_eq!(problem.get_code(), &Code::RATE_LIMITED);
        assert_eq!(problem.get_rejected_by(), Some("rate_limit"));
        let body = limited.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "trailers-only: no body");
        // gRPC-Web and plain HTTP keep the 429 Problem.
        for r in [grpc_call("application/grpc-web"), req("/", "192.0.2.1:1")] {
            let r = send(&svc, r).await;
            assert_eq!(r.status(), 429);
            assert_eq!(r.headers()["content-type"], "application/problem+json");
            assert!(r.headers().get("grpc-status").is_none());
        }
        // Switched off, gRPC calls get the HTTP answer too.
        let (layer, _) = manual(Quota::per_minute(1));
        let (svc, _) = app(&layer.grpc(false));
        send(&svc, grpc_call("application/grpc")).await;
        let r = send(&svc, grpc_call("application/grpc")).await;
        assert_eq!(r.status(), 429);
        assert!(r.headers().get("grpc-status").is_none());
    }

    #[tokio::test]
    async fn grpc_calls_through_a_backend() {
        for (mode, fail, expected) in [
            (FailureMode::Closed, true, "14"),
            (FailureMode::Local, true, "8"),
        ] {
            let (layer, backend) = remote(mode).await;
            let (svc, _) = app(&layer);
            backend.fail.store(fail, Ordering::SeqCst);
            let call = || {
                let mut r = grpc_call("application/grpc");
                r.headers_mut()
                    .insert("x-api-key", HeaderValue::from_static("k"));
                r
            };
            let mut last = send(&svc, call()).await;
            for _ in 0..2 {
                last = send(&svc, call()).await;
            }
            assert_eq!(last.status(), 200, "{mode:?}");
            assert_eq!(last.headers()["grpc-status"], expected, "{mode:?}");
            assert!(
                last.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
                    >= 1
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the content-type, a rejection is either a gRPC status on 200 or
        /// the 429 Problem, never something in between.
        #[test]
        fn rejection_is_grpc_or_http(content_type in prop::collection::vec(any::<u8>(), 0..40)) {
            let (layer, _) = manual(Quota::per_minute(1));
            let (mut svc, _) = app(&layer);
            let mut last = None;
            for _ in 0..2 {
                let mut r = req("/", "192.0.2.1:1");
                if let Ok(v) = HeaderValue::from_bytes(&content_type) {
                    r.headers_mut().insert(http::header::CONTENT_TYPE, v);
                }
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut fut = std::pin::pin!(svc.call(r));
                let Poll::Ready(Ok(resp)) = fut.as_mut().poll(&mut cx) else { panic!("pending") };
                last = Some(resp);
            }
            let last = last.unwrap();
            let grpc = last.headers().get("grpc-status").is_some();
            if grpc {
                prop_assert_eq!(last.status(), 200);
                prop_assert_eq!(&last.headers()["content-type"], "application/grpc");
            } else {
                prop_assert_eq!(last.status(), 429);
            }
            prop_assert!(last.headers().contains_key("retry-after"));
        }
    }

    #[tokio::test]
    async fn skipped_requests_carry_nothing() {
        let (layer, _) = manual(Quota::per_second(1));
        let layer = layer
            .skip_paths(["/health/*", "/metrics"])
            .skip(|h| h.headers().contains_key("x-internal"));
        let (svc, calls) = app(&layer);
        for _ in 0..5 {
            let r = send(&svc, req("/health/live", "192.0.2.1:1")).await;
            assert_eq!(r.status(), 200);
            assert!(r.headers().get("ratelimit").is_none());
            let mut internal = req("/", "192.0.2.1:1");
            internal
                .headers_mut()
                .insert("x-internal", HeaderValue::from_static("1"));
            assert_eq!(send(&svc, internal).await.status(), 200);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        assert_eq!(layer.len(), 0);
    }

    #[tokio::test]
    async fn single_policy_fast_path_honours_scope_skips_and_cost() {
        let clock = RateLimitClock::manual();
        let layer = RateLimitLayer::new()
            .policy(
                Policy::new("only", Quota::per(10, Duration::from_secs(10)))
                    .paths(["/api/**"])
                    .methods([Method::GET])
                    .cost(|h| {
                        if h.uri().query() == Some("heavy") {
                            4
                        } else {
                            1
                        }
                    }),
            )
            .skip_paths(["/api/health"])
            .clock(clock);
        let (svc, calls) = app(&layer);
        // Out of scope (path, method) and skipped requests carry nothing.
        for r in [
            req("/other", "192.0.2.1:1"),
            req("/api/health", "192.0.2.1:1"),
            {
                let mut r = req("/api/x", "192.0.2.1:1");
                *r.method_mut() = Method::POST;
                r
            },
        ] {
            let r = send(&svc, r).await;
            assert_eq!(r.status(), 200);
            assert!(r.headers().get("ratelimit").is_none());
        }
        assert_eq!(layer.len(), 0);
        let r = send(&svc, req("/api/x?heavy", "192.0.2.1:1")).await;
        assert_eq!(r.headers()["ratelimit"], "\"only\";r=6;t=4");
        let r = send(&svc, req("/api/x?heavy", "192.0.2.1:1")).await;
        assert_eq!(r.headers()["ratelimit"], "\"only\";r=2;t=8");
        let r = send(&svc, req("/api/x?heavy", "192.0.2.1:1")).await;
        assert_eq!(r.status(), 429, "4 more do not fit in 2");
        let r = send(&svc, req("/api/x", "192.0.2.1:1")).await;
        assert_eq!(r.headers()["ratelimit"], "\"only\";r=1;t=9");
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn header_modes() {
        let (layer, _) = manual(Quota::per_minute(10));
        let layer = layer.headers(false).legacy_headers(true);
        let (svc, _) = app(&layer);
        let r = send(&svc, req("/", "192.0.2.1:1")).await;
        assert!(r.headers().get("ratelimit").is_none());
        assert_eq!(r.headers()["x-ratelimit-limit"], "10");
        assert_eq!(r.headers()["x-ratelimit-remaining"], "9");
        assert_eq!(r.headers()["x-ratelimit-reset"], "6");
        let (layer, _) = manual(Quota::per_minute(10));
        let (svc, _) = app(&layer.headers(false));
        let r = send(&svc, req("/", "192.0.2.1:1")).await;
        assert!(
            r.headers()
                .iter()
                .all(|(n, _)| !n.as_str().contains("ratelimit"))
        );
    }

    #[tokio::test]
    async fn spoofed_forwarded_for_does_not_change_the_key() {
        let (layer, _) = manual(Quota::per_minute(1));
        let (svc, _) = app(&layer);
        let svc = ClientIpLayer::new().layer(svc);
        let spoof = |xff: &str| {
            let mut r = req("/", "198.51.100.7:9");
            r.headers_mut()
                .insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
            r
        };
        assert_eq!(
            svc.clone()
                .oneshot(spoof("1.1.1.1"))
                .await
                .unwrap()
                .status(),
            200
        );
        for xff in ["2.2.2.2", "3.3.3.3, 4.4.4.4", "::1", "garbage"] {
            assert_eq!(
                svc.clone().oneshot(spoof(xff)).await.unwrap().status(),
                429,
                "{xff}"
            );
        }
        // Without the ClientIp layer, the peer is used too.
        let (layer, _) = manual(Quota::per_minute(1));
        let (svc, _) = app(&layer);
        send(&svc, spoof("1.1.1.1")).await;
        assert_eq!(send(&svc, spoof("5.5.5.5")).await.status(), 429);
    }

    #[tokio::test]
    async fn ipv6_forms() {
        let (layer, _) = manual(Quota::per_minute(1));
        let (svc, _) = app(&layer);
        let with_ip = |ip: &str| {
            let mut r = Request::get("/").body(()).unwrap();
            r.extensions_mut()
                .insert(ClientIp::from_peer(ip.parse().unwrap()));
            r
        };
        assert_eq!(
            send(&svc, with_ip("2001:db8:aa:bb01::1")).await.status(),
            200
        );
        // Same /56, other spellings and hosts.
        for same in [
            "2001:db8:aa:bbff:ffff::9",
            "2001:0db8:00aa:bb00::",
            "2001:db8:aa:bb12::1",
        ] {
            assert_eq!(send(&svc, with_ip(same)).await.status(), 429, "{same}");
        }
        // Another /56.
        assert_eq!(
            send(&svc, with_ip("2001:db8:aa:cc00::1")).await.status(),
            200
        );
        // IPv4-mapped counts as the IPv4 address, not as a /56 shared by all IPv4.
        assert_eq!(send(&svc, with_ip("::ffff:192.0.2.10")).await.status(), 200);
        assert_eq!(send(&svc, with_ip("192.0.2.10")).await.status(), 429);
        assert_eq!(send(&svc, with_ip("::ffff:192.0.2.11")).await.status(), 200);
        // No address at all: one shared bucket.
        assert_eq!(send(&svc, Request::new(())).await.status(), 200);
        assert_eq!(send(&svc, Request::new(())).await.status(), 429);
    }

    #[tokio::test]
    async fn headers_off_with_several_policies_still_limits_and_sends_only_retry_after() {
        let layer = RateLimitLayer::new()
            .clock(RateLimitClock::manual())
            .headers(false)
            .policy(Policy::new("wide", Quota::per_minute(100)))
            .policy(Policy::new("narrow", Quota::per_minute(2)));
        let (svc, calls) = app(&layer);
        for _ in 0..2 {
            let r = send(&svc, req("/", "192.0.2.1:1")).await;
            assert_eq!(r.status(), 200);
            assert!(
                r.headers()
                    .iter()
                    .all(|(n, _)| !n.as_str().contains("ratelimit"))
            );
        }
        let r = send(&svc, req("/", "192.0.2.1:1")).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "30");
        assert!(r.headers().get("ratelimit").is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn axum_mode_shares_the_state_and_answers_the_same() {
        use http_body_util::BodyExt;
        let (layer, _) = manual(Quota::per_minute(1));
        let axum_layer = layer.clone().for_axum();
        let svc = axum_layer.layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(axum::body::Body::from("ok")))
        }));
        let ok = svc.clone().oneshot(req("/", "192.0.2.1:1")).await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["ratelimit"], "\"default\";r=0;t=60");
        assert_eq!(ok.into_body().collect().await.unwrap().to_bytes(), "ok");
        let limited = svc.clone().oneshot(req("/", "192.0.2.1:2")).await.unwrap();
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()["retry-after"], "60");
        let body = limited.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["code"], "RATE_LIMITED");
        // One state: the default-mode handle sees the key the axum mode tracked.
        assert_eq!((layer.len(), axum_layer.len()), (1, 1));
        assert_eq!(axum_layer.same_state().len(), 1);
    }

    #[derive(Clone, Hash)]
    struct User(String);

    #[tokio::test]
    async fn header_and_extension_keys() {
        let clock = RateLimitClock::manual();
        let layer = RateLimitLayer::new()
            .clock(clock)
            .policy(
                Policy::new("api", Quota::per_minute(1))
                    .key(KeyBy::header(HeaderName::from_static("x-api-key"))),
            )
            .policy(Policy::new("user", Quota::per_minute(2)).key(KeyBy::extension::<User>()));
        let (svc, _) = app(&layer);
        let with_key = |k: &[u8]| {
            let mut r = Request::get("/").body(()).unwrap();
            r.headers_mut()
                .insert("x-api-key", HeaderValue::from_bytes(k).unwrap());
            r
        };
        assert_eq!(send(&svc, with_key(b"k1")).await.status(), 200);
        assert_eq!(send(&svc, with_key(b"k1")).await.status(), 429);
        assert_eq!(send(&svc, with_key(b"k2")).await.status(), 200);
        let long = vec![b'a'; 64 * 1024];
        assert_eq!(send(&svc, with_key(&long)).await.status(), 200);
        // No key: policy does not apply, no headers.
        let r = send(&svc, Request::new(())).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("ratelimit").is_none());
        let user = |id: &str| {
            let mut r = Request::get("/").body(()).unwrap();
            r.extensions_mut().insert(User(id.to_owned()));
            r
        };
        assert_eq!(
            send(&svc, user("u1")).await.headers()["ratelimit"],
            "\"user\";r=1;t=30"
        );
        send(&svc, user("u1")).await;
        assert_eq!(send(&svc, user("u1")).await.status(), 429);
        assert_eq!(send(&svc, user("u2")).await.status(), 200);
    }

    /// The WARN events emitted while `f` runs, each as `name=value` pairs.
    fn warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
        use std::fmt::Write as _;
        use tracing_subscriber::layer::SubscriberExt;

        #[derive(Clone, Default)]
        struct Warnings(Arc<Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                if *event.metadata().level() == tracing::Level::WARN {
                    let mut text = String::new();
                    event.record(
                        &mut |field: &tracing::field::Field, value: &dyn fmt::Debug| {
                            let _ = write!(text, "{}={value:?} ", field.name());
                        },
                    );
                    self.0.lock().unwrap().push(text);
                }
            }
        }
        let seen = Warnings::default();
        let subscriber = tracing_subscriber::registry().with(seen.clone());
        let out = tracing::subscriber::with_default(subscriber, f);
        let events = seen.0.lock().unwrap().clone();
        (out, events)
    }

    /// Calls `svc` and returns the status, without a runtime (the in-process
    /// path answers on the first poll).
    fn status_now<S>(svc: &mut S, r: Request<()>) -> u16
    where
        S: Service<Request<()>, Response = Response<ResponseBody<Full<Bytes>>>, Error = Infallible>,
    {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut fut = std::pin::pin!(svc.call(r));
        let Poll::Ready(Ok(response)) = fut.as_mut().poll(&mut cx) else {
            panic!("pending")
        };
        response.status().as_u16()
    }

    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    struct UserId(u64);

    fn as_user(id: u64) -> Request<()> {
        let mut r = Request::get("/me").body(()).unwrap();
        r.extensions_mut().insert(UserId(id));
        r
    }

    #[test]
    fn closure_keys_count_per_value_and_skip_none() {
        let layer = RateLimitLayer::new()
            .clock(RateLimitClock::manual())
            .policy(
                Policy::new("tenant", Quota::per_minute(1)).key(KeyBy::from_fn(|h| {
                    let user = h.extensions().get::<UserId>()?;
                    Some((user.0 / 10, h.method().clone()))
                })),
            );
        let (mut svc, calls) = app(&layer);
        // Users 41 and 42 make one tenant (4); 53 another.
        assert_eq!(status_now(&mut svc, as_user(41)), 200);
        assert_eq!(status_now(&mut svc, as_user(42)), 429);
        assert_eq!(status_now(&mut svc, as_user(53)), 200);
        let mut post = as_user(42);
        *post.method_mut() = Method::POST;
        assert_eq!(status_now(&mut svc, post), 200);
        // No user: the closure says None, the policy does not count it.
        for _ in 0..3 {
            assert_eq!(status_now(&mut svc, Request::new(())), 200);
        }
        assert_eq!(layer.len(), 3);
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn a_policy_that_never_finds_its_key_warns_once() {
        let layer = RateLimitLayer::new()
            .clock(RateLimitClock::manual())
            .policy(
                Policy::new("user", Quota::per_minute(5))
                    .key(KeyBy::extension::<UserId>())
                    .warn_missing_key_after(3),
            )
            .policy(
                Policy::new("tenant", Quota::per_minute(5))
                    .key(KeyBy::from_fn(|h| h.headers().get("x-tenant").map(|_| 1u8)))
                    .warn_missing_key_after(3),
            )
            .policy(
                Policy::new("api", Quota::per_minute(5))
                    .key(KeyBy::header(HeaderName::from_static("x-api-key"))),
            )
            .policy(
                Policy::new("quiet", Quota::per_minute(5))
                    .key(KeyBy::extension::<String>())
                    .warn_missing_key_after(0),
            );
        let (mut svc, _) = app(&layer);
        let (_, first) = warnings(|| {
            for _ in 0..2 {
                status_now(&mut svc, Request::new(()));
            }
        });
        assert!(first.is_empty(), "{first:?}");
        let (_, warned) = warnings(|| {
            for _ in 0..50 {
                assert_eq!(status_now(&mut svc, Request::new(())), 200);
            }
        });
        assert_eq!(warned.len(), 2, "one for each watched policy: {warned:?}");
        let user = warned.iter().find(|w| w.contains("policy=user")).unwrap();
        assert!(user.contains("UserId"), "{user}");
        assert!(user.contains("requests=3"), "{user}");
        assert!(user.contains("Stack::auth"), "{user}");
        assert!(warned.iter().any(|w| w.contains("policy=tenant")));
    }

    #[test]
    fn a_policy_that_found_its_key_once_never_warns() {
        let layer = RateLimitLayer::new()
            .clock(RateLimitClock::manual())
            .policy(
                Policy::new("user", Quota::per_minute(500))
                    .key(KeyBy::extension::<UserId>())
                    .warn_missing_key_after(3),
            );
        let (mut svc, _) = app(&layer);
        let (_, warned) = warnings(|| {
            assert_eq!(status_now(&mut svc, as_user(1)), 200);
            for _ in 0..20 {
                assert_eq!(status_now(&mut svc, Request::new(())), 200);
            }
        });
        assert!(warned.is_empty(), "{warned:?}");
        // Requests outside the policy's scope are not counted as missing keys.
        let scoped = RateLimitLayer::new()
            .clock(RateLimitClock::manual())
            .policy(
                Policy::new("user", Quota::per_minute(500))
                    .paths(["/me"])
                    .key(KeyBy::extension::<UserId>())
                    .warn_missing_key_after(3),
            );
        let (mut svc, _) = app(&scoped);
        let (_, warned) = warnings(|| {
            for _ in 0..20 {
                status_now(&mut svc, Request::get("/other").body(()).unwrap());
            }
        });
        assert!(warned.is_empty(), "{warned:?}");
    }

    #[test]
    fn custom_keys_compare_by_type_or_closure() {
        assert_eq!(KeyBy::extension::<UserId>(), KeyBy::extension::<UserId>());
        assert_ne!(KeyBy::extension::<UserId>(), KeyBy::extension::<String>());
        let f = KeyBy::from_fn(|_| Some(1u8));
        assert_eq!(f, f.clone());
        assert_ne!(f, KeyBy::from_fn(|_| Some(1u8)));
        assert!(format!("{:?}", KeyBy::extension::<UserId>()).contains("UserId"));
    }

    #[tokio::test]
    async fn backend_keys_of_extensions_are_stable_across_instances_and_hide_values() {
        #[derive(Clone, Hash)]
        struct Token(String);
        let layer = || {
            let backend = Scripted::default();
            let layer = RateLimitLayer::new()
                .policy(Policy::new("user", Quota::per_minute(5)).key(KeyBy::extension::<Token>()))
                .backend(backend.clone())
                .key_secret("s3cret");
            (layer, backend)
        };
        let request = |t: &str| {
            let mut r = Request::new(());
            r.extensions_mut().insert(Token(t.to_owned()));
            r
        };
        let ((a, seen_a), (b, seen_b)) = (layer(), layer());
        send(&app(&a).0, request("tok_secret_1")).await;
        send(&app(&b).0, request("tok_secret_1")).await;
        send(&app(&b).0, request("tok_secret_2")).await;
        send(&app(&b).0, Request::new(())).await;
        let ka = seen_a.seen.lock().unwrap()[0].key.clone();
        let kb: Vec<String> = seen_b
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.key.clone())
            .collect();
        assert_eq!(kb.len(), 2, "no token, no check");
        assert_eq!(ka, kb[0], "two instances, one key");
        assert_ne!(kb[0], kb[1]);
        assert!(ka.starts_with("h:") && !ka.contains("tok_secret"), "{ka}");
    }

    #[tokio::test]
    async fn scoped_policies_and_cost() {
        let clock = RateLimitClock::manual();
        let layer = RateLimitLayer::new()
            .clock(clock)
            .policy(
                Policy::new("auth", Quota::per(5, Duration::from_secs(900)))
                    .paths(["/auth/**"])
                    .methods([Method::POST]),
            )
            .policy(
                Policy::new("default", Quota::per_minute(100))
                    .cost(|h| if h.uri().path() == "/export" { 40 } else { 1 }),
            );
        let (svc, _) = app(&layer);
        let r = send(&svc, req("/", "192.0.2.1:1")).await;
        assert_eq!(r.headers()["ratelimit"], "\"default\";r=99;t=1");
        let r = send(&svc, req("/export", "192.0.2.1:1")).await;
        assert_eq!(r.headers()["ratelimit"], "\"default\";r=59;t=25");
        let mut post = req("/auth/login", "192.0.2.1:1");
        *post.method_mut() = Method::POST;
        let r = send(&svc, post).await;
        // auth has 4 of 5 left, default 58 of 100: default is closer to its limit.
        assert_eq!(r.headers()["ratelimit"], "\"default\";r=58;t=26");
        let r = send(&svc, req("/auth/login", "192.0.2.1:1")).await;
        assert_eq!(
            r.headers()["ratelimit-policy"],
            "\"default\";q=100;w=60",
            "GET is not scoped"
        );
        // 40 more fit once (r=18 left), not twice.
        assert_eq!(
            send(&svc, req("/export", "192.0.2.1:1")).await.status(),
            200
        );
        assert_eq!(
            send(&svc, req("/export", "192.0.2.1:1")).await.status(),
            429
        );
    }

    #[test]
    fn works_without_a_runtime_and_cleans_up_by_hand() {
        let (layer, clock) = manual(Quota::per_second(10));
        let (mut svc, _) = app(&layer);
        for i in 0..100u16 {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let mut fut =
                std::pin::pin!(svc.call(req("/", &format!("10.0.{}.{}:1", i / 256, i % 256))));
            let Poll::Ready(Ok(r)) = fut.as_mut().poll(&mut cx) else {
                panic!("pending")
            };
            assert_eq!(r.status(), 200);
        }
        assert_eq!(layer.len(), 100);
        clock.advance(Duration::from_secs(1));
        assert_eq!(layer.cleanup(), 100);
        assert!(layer.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn background_cleanup_drops_idle_keys_and_ends_with_the_layer() {
        let (layer, clock) = manual(Quota::per_second(10));
        let layer = layer.cleanup_every(Duration::from_secs(5));
        let (svc, _) = app(&layer);
        for i in 0..50u8 {
            send(&svc, req("/", &format!("10.0.0.{i}:1"))).await;
        }
        assert_eq!(layer.len(), 50);
        // Tokio's paused clock drives the task's ticks; the limiter's own clock
        // says how old the keys are. While they are fresh, ticks keep them.
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(layer.len(), 50);
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(layer.len(), 0);
        let weak = Arc::downgrade(&layer.shared.local);
        drop((svc, layer));
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(weak.upgrade().is_none());
    }

    /// A backend whose answers the test controls.
    #[derive(Clone, Default)]
    struct Scripted {
        fail: Arc<AtomicBool>,
        calls: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<BackendRequest>>>,
    }

    impl Backend for Scripted {
        fn check(&self, request: BackendRequest) -> BackendFuture {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let fail = self.fail.load(Ordering::SeqCst);
            let remaining = 7;
            self.seen.lock().unwrap().push(request);
            Box::pin(async move {
                if fail {
                    Err(BackendError::new("connection refused"))
                } else {
                    Ok(Decision::new(true, remaining, Duration::from_millis(1500)))
                }
            })
        }
    }

    async fn remote(mode: FailureMode) -> (RateLimitLayer, Scripted) {
        let backend = Scripted::default();
        let layer = RateLimitLayer::new()
            .clock(RateLimitClock::manual())
            .policy(
                Policy::new("api", Quota::per_minute(1))
                    .key(KeyBy::header(HeaderName::from_static("x-api-key"))),
            )
            .backend(backend.clone())
            .failure_mode(mode)
            .circuit_breaker(2, Duration::from_secs(3600))
            .key_secret("s3cret");
        (layer, backend)
    }

    fn keyed() -> Request<()> {
        let mut r = Request::get("/").body(()).unwrap();
        r.headers_mut()
            .insert("x-api-key", HeaderValue::from_static("sk_live_abc"));
        r
    }

    #[tokio::test]
    async fn backend_decides_and_never_sees_raw_keys() {
        let (layer, backend) = remote(FailureMode::Local).await;
        let (svc, _) = app(&layer);
        let r = send(&svc, keyed()).await;
        assert_eq!(
            r.headers()["ratelimit"],
            "\"api\";r=1;t=2",
            "remaining capped by q, reset rounded up"
        );
        let seen = backend.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].key.starts_with("h:") && !seen[0].key.contains("sk_live"));
        assert_eq!(&*seen[0].policy, "api");
        // Requests the policy does not apply to never reach the backend.
        send(&svc, Request::new(())).await;
        assert_eq!(backend.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failure_modes_breaker_and_recovery() {
        for mode in [FailureMode::Local, FailureMode::Open, FailureMode::Closed] {
            let (layer, backend) = remote(mode).await;
            let (svc, calls) = app(&layer);
            backend.fail.store(true, Ordering::SeqCst);
            let statuses: Vec<u16> = {
                let mut v = Vec::new();
                for _ in 0..4 {
                    v.push(send(&svc, keyed()).await.status().as_u16());
                }
                v
            };
            match mode {
                FailureMode::Local => assert_eq!(statuses, [200, 429, 429, 429]),
                FailureMode::Open => assert_eq!(statuses, [200, 200, 200, 200]),
                _ => assert_eq!(statuses, [503, 503, 503, 503]),
            }
            if mode == FailureMode::Closed {
                let r = send(&svc, keyed()).await;
                assert!(
                    r.headers()["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                        >= 1
                );
                assert_eq!(
                    r.extensions().get::<Problem>().unwrap().get_code(),
                    &Code::SERVICE_UNAVAILABLE
                );
            }
            assert_eq!(
                backend.calls.load(Ordering::SeqCst),
                2,
                "{mode:?}: the breaker opened after 2"
            );
            assert!(layer.backend_unavailable());
            assert!(layer.fallbacks() >= 4);
            let _ = calls;
        }
        // Recovery: a zero cooldown lets the next request probe.
        let (layer, backend) = remote(FailureMode::Open).await;
        let layer = layer.circuit_breaker(1, Duration::ZERO);
        let (svc, _) = app(&layer);
        backend.fail.store(true, Ordering::SeqCst);
        send(&svc, keyed()).await;
        assert!(layer.backend_unavailable());
        backend.fail.store(false, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(2));
        let r = send(&svc, keyed()).await;
        assert_eq!(r.headers()["ratelimit"], "\"api\";r=1;t=2");
        assert!(!layer.backend_unavailable());
    }

    #[tokio::test(start_paused = true)]
    async fn slow_backend_times_out() {
        #[derive(Clone)]
        struct Hang;
        impl Backend for Hang {
            fn check(&self, _: BackendRequest) -> BackendFuture {
                Box::pin(std::future::pending())
            }
        }
        let layer = RateLimitLayer::with_quota(Quota::per_minute(1))
            .backend(Hang)
            .failure_mode(FailureMode::Open)
            .backend_timeout(Duration::from_millis(20));
        let (svc, calls) = app(&layer);
        assert_eq!(send(&svc, req("/", "192.0.2.1:1")).await.status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(layer.fallbacks(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the arrivals, accepted cost never exceeds burst + rate x elapsed.
        #[test]
        fn never_more_than_burst_plus_rate(
            count in 1u32..20,
            window_ms in 1u64..5_000,
            burst in 1u32..20,
            arrivals in prop::collection::vec((0u64..400, 1u32..4), 1..200),
        ) {
            let quota = Quota::per(count, Duration::from_millis(window_ms)).burst(burst);
            let clock = RateLimitClock::manual();
            let layer = RateLimitLayer::new()
                .clock(clock.clone())
                .headers(false)
                .policy(Policy::new("p", quota).key(KeyBy::global()).cost(|h| {
                    h.headers().get("cost").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1)
                }));
            let (mut svc, _) = app(&layer);
            let mut accepted = 0u64;
            let mut elapsed = Duration::ZERO;
            let interval = quota.replenish_interval().as_nanos();
            for (gap_ms, cost) in arrivals {
                clock.advance(Duration::from_millis(gap_ms));
                elapsed += Duration::from_millis(gap_ms);
                let mut r = Request::new(());
                r.headers_mut().insert("cost", HeaderValue::from(cost));
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut fut = std::pin::pin!(svc.call(r));
                let Poll::Ready(Ok(resp)) = fut.as_mut().poll(&mut cx) else { panic!("pending") };
                if resp.status() == 200 {
                    accepted += u64::from(cost);
                }
                let bound = u128::from(burst) + elapsed.as_nanos() / interval;
                prop_assert!(u128::from(accepted) <= bound, "{accepted} > {bound}");
            }
        }
    }
}
