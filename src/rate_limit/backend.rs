//! Shared backends (several instances, one limit) and what happens when they fail.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::quota::Quota;
use crate::config::{self, ConfigError};

/// The future a [`Backend`] returns.
pub type BackendFuture = Pin<Box<dyn Future<Output = Result<Decision, BackendError>> + Send>>;

/// A store that several instances share, so that they enforce one limit together
/// (for example [`RedisBackend`](super::RedisBackend)).
///
/// A backend only decides; the layer around it bounds how long a decision may take,
/// trips a circuit breaker when the backend keeps failing and applies the
/// [`FailureMode`] meanwhile.
pub trait Backend: Send + Sync + 'static {
    /// Checks `request.cost` units against `request.key` under `request.quota`,
    /// charging them only when they fit.
    fn check(&self, request: BackendRequest) -> BackendFuture;
}

impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn check(&self, request: BackendRequest) -> BackendFuture {
        (**self).check(request)
    }
}

/// One check sent to a [`Backend`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendRequest {
    /// The policy name.
    pub policy: Arc<str>,
    /// The key within the policy: `ip:<address or prefix>`, `global`, or `h:<hex>`
    /// (a SHA-256 of the layer's key secret and the header or extension value; raw
    /// values are never handed to a backend).
    pub key: String,
    /// The policy's quota.
    pub quota: Quota,
    /// Units this request costs (at least 1).
    pub cost: u32,
    /// Microseconds since the Unix epoch by the instance's clock, for backends told
    /// to use client time.
    pub now_micros: u64,
}

/// A backend's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request fits (and was charged).
    pub allowed: bool,
    /// Units still available right now.
    pub remaining: u32,
    /// When allowed, time until the quota is whole again; when rejected, time until
    /// the request would fit.
    pub reset: Duration,
}

impl Decision {
    /// A decision.
    pub fn new(allowed: bool, remaining: u32, reset: Duration) -> Self {
        Self {
            allowed,
            remaining,
            reset,
        }
    }
}

/// A backend failure (connection refused, timeout, script error...).
#[derive(Debug)]
pub struct BackendError(Box<dyn std::error::Error + Send + Sync>);

impl BackendError {
    /// Wraps an error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate-limit backend failed: {}", self.0)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// What the layer does while its shared backend is failing (`RATE_LIMIT_FAILURE_MODE`).
///
/// Every such decision is logged (at most once per 10 s) and counted
/// ([`RateLimitLayer::fallbacks`](super::RateLimitLayer::fallbacks)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureMode {
    /// Enforce the same policies in process (the default). Each instance then
    /// allows the full quota, so N instances allow up to N times the limit.
    #[default]
    Local,
    /// Let requests through unlimited.
    Open,
    /// Reject with 503 `SERVICE_UNAVAILABLE`: the choice for login-like routes
    /// whose brute-force protection must not switch off with the backend.
    Closed,
}

impl FailureMode {
    /// Reads `RATE_LIMIT_FAILURE_MODE` (`local`, `open` or `closed`; default `local`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let mode = Self::read_env(&mut errors);
        errors.into_result(mode)
    }

    pub(crate) fn read_env(errors: &mut ConfigError) -> Self {
        const VAR: &str = "RATE_LIMIT_FAILURE_MODE";
        match config::var(VAR, errors)
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("local") => FailureMode::Local,
            Some("open") => FailureMode::Open,
            Some("closed") => FailureMode::Closed,
            Some(other) => {
                errors.push(VAR, other, "local, open or closed");
                FailureMode::Local
            }
        }
    }
}

/// Opens after `threshold` consecutive failures; while open, the backend is not
/// called. After `cooldown` one request probes it (half-open): success closes the
/// breaker, failure opens it for another cooldown.
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    base: Instant,
    failures: AtomicU32,
    /// Milliseconds since `base` until which the breaker is open; 0 when closed.
    open_until: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            base: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this request may call the backend. While open, exactly one caller
    /// per cooldown gets `true` (the probe).
    pub(crate) fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        if now < until {
            return false;
        }
        // Half-open: the caller that moves the deadline is the probe.
        let next = now.saturating_add(self.cooldown_ms());
        self.open_until
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn cooldown_ms(&self) -> u64 {
        u64::try_from(self.cooldown.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    pub(crate) fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until.store(0, Ordering::Release);
    }

    /// Records a failure; returns true when this failure opened the breaker.
    pub(crate) fn failure(&self) -> bool {
        let n = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if n >= self.threshold {
            let next = self.now_ms().saturating_add(self.cooldown_ms()).max(1);
            let was = self.open_until.swap(next, Ordering::AcqRel);
            return was == 0;
        }
        false
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }

    /// Seconds until the next probe, at least 1.
    pub(crate) fn retry_secs(&self) -> u64 {
        let until = self.open_until.load(Ordering::Acquire);
        until.saturating_sub(self.now_ms()).div_ceil(1000).max(1)
    }
}

/// Counts fallbacks and logs them, at most once per interval.
pub(crate) struct FallbackLog {
    count: AtomicU64,
    last_log_ms: AtomicU64,
    base: Instant,
}

impl FallbackLog {
    pub(crate) fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            last_log_ms: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, mode: FailureMode, reason: &dyn fmt::Display) {
        const EVERY_MS: u64 = 10_000;
        let total = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX) + EVERY_MS;
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= EVERY_MS)
            && self
                .last_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                failure_mode = ?mode,
                fallbacks_total = total,
                reason = %reason,
                "rate limit backend unavailable; applying the failure mode"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_probes_and_closes() {
        let b = Breaker::new(3, Duration::from_millis(0));
        assert!(b.allow());
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(b.failure(), "third failure opens");
        assert!(b.is_open());
        assert_eq!(b.retry_secs(), 1);
        b.success();
        assert!(!b.is_open() && b.allow());
    }

    #[test]
    fn breaker_stays_open_during_cooldown() {
        let b = Breaker::new(1, Duration::from_secs(60));
        assert!(b.failure());
        assert!(!b.allow());
        assert!(!b.allow());
        assert!(b.retry_secs() >= 59);
    }

    #[test]
    fn one_probe_after_cooldown() {
        let b = Breaker::new(1, Duration::from_millis(1));
        b.failure();
        std::thread::sleep(Duration::from_millis(5));
        let probes = (0..10).filter(|_| b.allow()).count();
        assert_eq!(probes, 1);
    }

    #[test]
    fn fallback_counter() {
        let log = FallbackLog::new();
        log.record(FailureMode::Open, &"boom");
        log.record(FailureMode::Open, &"boom");
        assert_eq!(log.count(), 2);
    }

    #[test]
    fn errors_display() {
        let e = BackendError::new("refused");
        assert_eq!(e.to_string(), "rate-limit backend failed: refused");
        assert!(std::error::Error::source(&e).is_some());
    }
}
