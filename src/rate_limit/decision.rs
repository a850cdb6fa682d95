//! The decision: which policies apply to a request, what their checks find
//! (in process, or on the shared backend), and the answer when one refuses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Extensions, HeaderValue, Response, StatusCode};

use super::backend::{Backend, BackendRequest, Breaker, FailureMode, FallbackLog};
use super::headers::{HeaderMode, PolicyHeaders};
use super::key::KeyHasher;
use super::layer::{Config, SkipFn};
use super::local::{LocalLimiter, LocalState, Outcome, RateLimitClock, spawn_cleanup};
use super::mode::Mode;
use super::policy::{Policy, RequestHead};
use super::quota::ceil_secs;
use crate::body::ResponseBody;
use crate::error::{Code, Problem, Renderer, ShadowRejection};
use crate::paths::PathSet;

pub(super) struct Shared {
    pub(super) config: Config,
    pub(super) policies: Vec<Policy>,
    pub(super) headers: Vec<PolicyHeaders>,
    /// One per policy: whether it is in shadow mode (its own mode, else the layer's).
    pub(super) shadow: Box<[bool]>,
    /// One per policy: the missing-key warning.
    pub(super) watches: Box<[KeyWatch]>,
    pub(super) local: Arc<LocalState>,
    pub(super) hasher: KeyHasher,
    /// `None` when empty, so that most requests never compute their path here.
    pub(super) skip_paths: Option<PathSet>,
    pub(super) skip: Option<SkipFn>,
    pub(super) mode: HeaderMode,
    pub(super) renderer: Renderer,
    pub(super) grpc: bool,
    pub(super) clock: RateLimitClock,
    pub(super) cleanup_every: Duration,
    pub(super) cleanup_started: AtomicBool,
    pub(super) remote: Option<Remote>,
}

pub(super) struct Remote {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) timeout: Duration,
    pub(super) breaker: Breaker,
    pub(super) failure_mode: FailureMode,
    pub(super) fallbacks: FallbackLog,
    pub(super) secret: Arc<[u8]>,
}

/// The built-in key secret used when a backend is set without one.
pub(super) const DEFAULT_SECRET: &[u8] = b"tower-ops rate limit";

impl Shared {
    pub(super) fn new(config: Config) -> Self {
        let local = LocalState {
            limiters: config
                .policies
                .iter()
                .map(|p| LocalLimiter::new(p.quota, config.clock.clone()))
                .collect(),
        };
        let shadow: Box<[bool]> = config
            .policies
            .iter()
            .map(|p| p.mode.unwrap_or(config.mode) == Mode::Shadow)
            .collect();
        for (p, shadow) in config.policies.iter().zip(&shadow) {
            tracing::debug!(
                policy = %p.name,
                shadow,
                requests = p.quota.count(),
                window = ?p.quota.window(),
                replenish_every = ?p.quota.replenish_interval(),
                burst = p.quota.burst_size(),
                "rate limit policy"
            );
        }
        Self {
            headers: config.policies.iter().map(PolicyHeaders::new).collect(),
            shadow,
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
    pub(super) fn start_cleanup(&self) {
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
    pub(super) fn decide_local(&self, head: &RequestHead<'_>) -> Verdict {
        let want = self.mode.any();
        // The common configuration, one enforced policy: no walk, no comparison of
        // outcomes.
        if let [policy] = &self.policies[..]
            && !self.shadow[0]
        {
            if !policy.applies(head) {
                return Verdict::pass(None);
            }
            let Some(key) = policy.key.local_key(head, &self.hasher) else {
                self.watches[0].missed(policy);
                return Verdict::pass(None);
            };
            self.watches[0].found();
            let outcome = self.local.limiters[0].check(key, policy.cost_of(head), want);
            return if !outcome.allowed {
                Verdict::Limited(0, outcome)
            } else if want {
                Verdict::pass(Some((0, outcome)))
            } else {
                Verdict::pass(None)
            };
        }
        let mut closest: Option<(usize, Outcome)> = None;
        let mut shadowed = None;
        for (i, policy) in self.policies.iter().enumerate() {
            if !policy.applies(head) {
                continue;
            }
            let Some(key) = policy.key.local_key(head, &self.hasher) else {
                self.watches[i].missed(policy);
                continue;
            };
            self.watches[i].found();
            let shadow = self.shadow[i];
            // A shadow policy sends no header, so its check needs no snapshot.
            let outcome = self.local.limiters[i].check(key, policy.cost_of(head), want && !shadow);
            if shadow {
                if !outcome.allowed && shadowed.is_none() {
                    shadowed = Some(ShadowMark::limited(policy));
                }
                continue;
            }
            if !outcome.allowed {
                return Verdict::Limited(i, outcome);
            }
            if want {
                closest = Some(self.closer(closest, (i, outcome)));
            }
        }
        Verdict::Pass { closest, shadowed }
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
    pub(super) fn remote_checks(&self, head: &RequestHead<'_>, secret: &[u8]) -> Vec<RemoteCheck> {
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
    pub(super) fn answers_grpc(&self, head: &RequestHead<'_>) -> bool {
        self.grpc && crate::media::is_grpc(head.headers())
    }

    pub(super) fn limited<B>(
        &self,
        index: usize,
        outcome: &Outcome,
        grpc: bool,
    ) -> Response<ResponseBody<B>> {
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

    pub(super) fn unavailable<B>(&self, retry_secs: u64, grpc: bool) -> Response<ResponseBody<B>> {
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
pub(super) struct KeyWatch {
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

pub(super) struct RemoteCheck {
    pub(super) index: usize,
    pub(super) local_key: u64,
    pub(super) request: BackendRequest,
}

pub(super) enum Verdict {
    /// Let through.
    Pass {
        /// The headers of the enforced policy closest to its limit, if any applied.
        closest: Option<(usize, Outcome)>,
        /// The first policy in shadow mode that would have refused the request.
        shadowed: Option<ShadowMark>,
    },
    /// Refused by the enforced policy at this index.
    Limited(usize, Outcome),
    /// The backend is down and the failure mode is `closed`.
    Unavailable(u64),
}

impl Verdict {
    /// Let through, with no shadow policy refusing.
    #[inline]
    pub(super) fn pass(closest: Option<(usize, Outcome)>) -> Self {
        Verdict::Pass {
            closest,
            shadowed: None,
        }
    }
}

/// What a policy in shadow mode would have answered a request that was served.
/// Made only when such a policy refuses; it costs a reference count, and the
/// response's extension map when it is written there.
pub(super) struct ShadowMark {
    policy: Arc<str>,
    /// Refused because the backend was down and the failure mode is `closed`
    /// (503 `SERVICE_UNAVAILABLE`), not by the quota (429 `RATE_LIMITED`).
    unavailable: bool,
}

impl ShadowMark {
    fn limited(policy: &Policy) -> Self {
        Self {
            policy: policy.name.clone(),
            unavailable: false,
        }
    }

    fn unavailable(policy: &Policy) -> Self {
        Self {
            policy: policy.name.clone(),
            unavailable: true,
        }
    }

    /// Leaves the [`ShadowRejection`] on a response, in place of one an inner
    /// limiter left: this layer's policies were checked first.
    pub(super) fn write(self, extensions: &mut Extensions) {
        let code = if self.unavailable {
            Code::SERVICE_UNAVAILABLE
        } else {
            Code::RATE_LIMITED
        };
        extensions.insert(ShadowRejection::new("rate_limit", code).policy(self.policy));
    }
}

pub(super) async fn decide_remote(shared: Arc<Shared>, checks: Vec<RemoteCheck>) -> Verdict {
    let Some(remote) = shared.remote.as_ref() else {
        return Verdict::pass(None);
    };
    let mut closest = None;
    let mut shadowed = None;
    for check in checks {
        let index = check.index;
        let cost = check.request.cost;
        let shadow = shared.shadow[index];
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
                    // A shadow policy never refuses: it marks what `closed` would do.
                    FailureMode::Closed if shadow => {
                        if shadowed.is_none() {
                            shadowed = Some(ShadowMark::unavailable(&shared.policies[index]));
                        }
                        continue;
                    }
                    FailureMode::Closed => {
                        return Verdict::Unavailable(remote.breaker.retry_secs());
                    }
                    FailureMode::Local => {
                        shared.local.limiters[index].check(check.local_key, cost, !shadow)
                    }
                }
            }
        };
        if shadow {
            if !outcome.allowed && shadowed.is_none() {
                shadowed = Some(ShadowMark::limited(&shared.policies[index]));
            }
            continue;
        }
        if !outcome.allowed {
            return Verdict::Limited(index, outcome);
        }
        closest = Some(shared.closer(closest, (index, outcome)));
    }
    Verdict::Pass { closest, shadowed }
}

/// The headers a passing response gets: the policy closest to its limit and
/// what its check found. Only made when headers are on.
pub(super) struct HeaderJob {
    pub(super) shared: Arc<Shared>,
    pub(super) index: u32,
    pub(super) remaining: u32,
    pub(super) reset_secs: u64,
}

impl HeaderJob {
    #[inline]
    pub(super) fn new(shared: &Arc<Shared>, index: usize, outcome: Outcome) -> Self {
        Self {
            shared: shared.clone(),
            // Policies are counted in a `Vec` built by hand: far fewer than 2^32.
            index: index as u32,
            remaining: outcome.remaining,
            reset_secs: outcome.reset_secs,
        }
    }

    #[inline]
    pub(super) fn write(self, headers: &mut http::HeaderMap) {
        let outcome = Outcome {
            allowed: true,
            remaining: self.remaining,
            reset_secs: self.reset_secs,
        };
        self.shared.headers[self.index as usize].write(self.shared.mode, &outcome, headers);
    }
}
