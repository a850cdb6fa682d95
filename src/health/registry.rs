use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::check::{CatchUnwind, HealthCheck};
use super::readiness::Readiness;
use crate::config::{ConfigError, parse_ms};

/// The longest error text shown for a check, in characters (an ellipsis included).
pub const MAX_ERROR_CHARS: usize = 256;

/// Default for `HEALTH_CHECK_TIMEOUT_MS`.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_millis(2000);
/// Default for `HEALTH_CACHE_TTL_MS`.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_millis(1000);
/// Default deadline for one whole round of checks.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Overall health, as `status` in the `/health` report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HealthStatus {
    /// Every check passes.
    Healthy,
    /// Only non-critical checks fail (HTTP 200).
    Degraded,
    /// At least one critical check fails (HTTP 503).
    Unhealthy,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckStatus {
    /// Passing, or failing fewer times in a row than its failure threshold.
    Healthy,
    /// Failing (timed out, returned an error or panicked) at least its
    /// failure threshold times in a row.
    Unhealthy,
}

impl CheckStatus {
    /// `healthy` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// The latest result of one check.
#[derive(Clone, Debug)]
pub struct CheckResult {
    status: CheckStatus,
    critical: bool,
    duration: Duration,
    error: Option<Arc<str>>,
    checked_at: Instant,
}

impl CheckResult {
    /// Healthy or unhealthy (after the failure threshold).
    pub fn status(&self) -> CheckStatus {
        self.status
    }

    /// Whether the check is critical.
    pub fn is_critical(&self) -> bool {
        self.critical
    }

    /// How long the run took.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The error of the last run, if it failed: sanitized (control characters
    /// replaced, at most [`MAX_ERROR_CHARS`] characters).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// When the run finished.
    pub fn checked_at(&self) -> Instant {
        self.checked_at
    }
}

/// The outcome of a round of checks.
#[derive(Clone, Debug)]
pub struct HealthReport {
    status: HealthStatus,
    checks: Vec<(Arc<str>, CheckResult)>,
    uptime: Duration,
}

impl HealthReport {
    /// The aggregate: unhealthy when a critical check is unhealthy, degraded
    /// when only non-critical ones are, healthy otherwise.
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Each check's result, in registration order.
    pub fn checks(&self) -> impl ExactSizeIterator<Item = (&str, &CheckResult)> {
        self.checks.iter().map(|(n, r)| (&**n, r))
    }

    /// The result of the check called `name`.
    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, r)| r)
    }

    /// Time since the registry was built.
    pub fn uptime(&self) -> Duration {
        self.uptime
    }
}

/// Builds a [`HealthRegistry`].
pub struct HealthRegistryBuilder {
    checks: Vec<Arc<dyn HealthCheck>>,
    check_timeout: Duration,
    cache_ttl: Duration,
    deadline: Duration,
    background_interval: Option<Duration>,
    detail_token: Option<String>,
    readiness: Readiness,
    ready_runs_checks: bool,
}

impl Default for HealthRegistryBuilder {
    fn default() -> Self {
        Self {
            checks: Vec::new(),
            check_timeout: DEFAULT_CHECK_TIMEOUT,
            cache_ttl: DEFAULT_CACHE_TTL,
            deadline: DEFAULT_DEADLINE,
            background_interval: None,
            detail_token: None,
            readiness: Readiness::new(),
            ready_runs_checks: true,
        }
    }
}

impl HealthRegistryBuilder {
    /// Defaults overridden by `HEALTH_CHECK_TIMEOUT_MS` and `HEALTH_CACHE_TTL_MS`.
    ///
    /// # Errors
    /// Every invalid variable, listed together.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let check_timeout = parse_ms(
            "HEALTH_CHECK_TIMEOUT_MS",
            DEFAULT_CHECK_TIMEOUT,
            1,
            &mut errors,
        );
        let cache_ttl = parse_ms("HEALTH_CACHE_TTL_MS", DEFAULT_CACHE_TTL, 0, &mut errors);
        errors.into_result(
            Self::default()
                .check_timeout(check_timeout)
                .cache_ttl(cache_ttl),
        )
    }

    /// Adds a check.
    ///
    /// # Panics
    /// When a check with the same name was already added (a programming error;
    /// two checks cannot share a key of the report).
    pub fn check(mut self, check: impl HealthCheck) -> Self {
        let name = check.name();
        assert!(
            self.checks.iter().all(|c| c.name() != name),
            "health check {name:?} registered twice"
        );
        self.checks.push(Arc::new(check));
        self
    }

    /// The budget of a check without its own timeout. Default 2 s.
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a result is served from the cache. Default 1 s. With zero,
    /// every probe runs the checks, but concurrent probes still share one run.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// The deadline for a whole round: no probe waits longer. Default 10 s;
    /// a check's own budget is cut to it.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline.max(Duration::from_millis(1));
        self
    }

    /// The interval of checks without their own, once
    /// [`HealthRegistry::spawn_background`] is called. Unset: only checks with
    /// their own interval run in the background.
    pub fn background_interval(mut self, interval: Duration) -> Self {
        self.background_interval = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// Hides the per-check details of `/health` unless the request carries
    /// `Authorization: Bearer <token>` (compared in constant time). Without
    /// the token, `/health` answers only `status` and `uptime_s`.
    pub fn detail_token(mut self, token: impl Into<String>) -> Self {
        self.detail_token = Some(token.into());
        self
    }

    /// Shares an existing readiness handle (for example the one the shutdown
    /// coordinator flips). By default the registry makes its own.
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Whether `/health/ready` runs the critical checks (from the cache) once
    /// the application is ready. Default true. Turn it off when many services
    /// share a dependency whose outage should not take them all out of the
    /// load balancer at once.
    pub fn ready_runs_checks(mut self, yes: bool) -> Self {
        self.ready_runs_checks = yes;
        self
    }

    /// Builds the registry.
    pub fn build(self) -> HealthRegistry {
        let deadline = self.deadline;
        let entries = self
            .checks
            .into_iter()
            .map(|check| {
                let budget = check.timeout().unwrap_or(self.check_timeout);
                Entry {
                    name: Arc::from(check.name()),
                    critical: check.is_critical(),
                    budget: budget.clamp(Duration::from_millis(1), deadline),
                    threshold: check.failure_threshold().max(1),
                    interval: check.interval().or(self.background_interval),
                    check,
                    state: Mutex::new(EntryState::default()),
                    flight: tokio::sync::Mutex::new(()),
                    background: AtomicBool::new(false),
                }
            })
            .collect();
        HealthRegistry {
            inner: Arc::new(Inner {
                entries,
                check_timeout: self.check_timeout,
                background_interval: self.background_interval,
                cache_ttl: self.cache_ttl,
                deadline,
                detail_token: self.detail_token.map(String::into_bytes),
                readiness: self.readiness,
                ready_runs_checks: self.ready_runs_checks,
                started: Instant::now(),
                overall: Mutex::new(None),
                background_started: AtomicBool::new(false),
            }),
        }
    }
}

impl fmt::Debug for HealthRegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistryBuilder")
            .field(
                "checks",
                &self.checks.iter().map(|c| c.name()).collect::<Vec<_>>(),
            )
            .field("check_timeout", &self.check_timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("deadline", &self.deadline)
            .field("background_interval", &self.background_interval)
            .field(
                "detail_token",
                &self.detail_token.as_ref().map(|_| "<hidden>"),
            )
            .finish_non_exhaustive()
    }
}

/// The set of health checks, their cache and the readiness state.
///
/// Cloning is cheap: clones share everything through an `Arc`. See the
/// [module docs](super) for the behaviour.
#[derive(Clone)]
pub struct HealthRegistry {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    entries: Box<[Entry]>,
    // Kept as configured, for `to_builder`.
    check_timeout: Duration,
    background_interval: Option<Duration>,
    cache_ttl: Duration,
    deadline: Duration,
    pub(crate) detail_token: Option<Vec<u8>>,
    pub(crate) readiness: Readiness,
    pub(crate) ready_runs_checks: bool,
    started: Instant,
    overall: Mutex<Option<HealthStatus>>,
    background_started: AtomicBool,
}

struct Entry {
    name: Arc<str>,
    check: Arc<dyn HealthCheck>,
    critical: bool,
    budget: Duration,
    threshold: u32,
    interval: Option<Duration>,
    state: Mutex<EntryState>,
    /// Held while the check runs: concurrent probes wait for that run instead
    /// of starting their own.
    flight: tokio::sync::Mutex<()>,
    /// Set while a background task keeps the result current.
    background: AtomicBool,
}

#[derive(Default)]
struct EntryState {
    last: Option<CheckResult>,
    generation: u64,
    consecutive_failures: u32,
    reported: Option<CheckStatus>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent even if a holder panicked: every write is a
    // single assignment.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HealthRegistry {
    /// A builder with the defaults (2 s per check, 1 s cache).
    pub fn builder() -> HealthRegistryBuilder {
        HealthRegistryBuilder::default()
    }

    /// A builder holding this registry's checks, settings and readiness
    /// handle, to build a registry with more checks. Clones of `self` keep the
    /// old set, so callers replace every handle they hold.
    pub(crate) fn to_builder(&self) -> HealthRegistryBuilder {
        let inner = &self.inner;
        HealthRegistryBuilder {
            checks: inner.entries.iter().map(|e| e.check.clone()).collect(),
            check_timeout: inner.check_timeout,
            cache_ttl: inner.cache_ttl,
            deadline: inner.deadline,
            background_interval: inner.background_interval,
            detail_token: inner
                .detail_token
                .as_ref()
                .map(|t| String::from_utf8_lossy(t).into_owned()),
            readiness: inner.readiness.clone(),
            ready_runs_checks: inner.ready_runs_checks,
        }
    }

    /// Whether this handle is the only one (no router or clone shares it).
    pub(crate) fn is_unshared(&self) -> bool {
        Arc::strong_count(&self.inner) == 1 && Arc::weak_count(&self.inner) == 0
    }

    /// The readiness handle shared with the probes.
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// Time since the registry was built.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    pub(crate) fn has_critical(&self) -> bool {
        self.inner.entries.iter().any(|e| e.critical)
    }

    /// Runs (or reads from the cache) every check and aggregates them.
    ///
    /// Checks run concurrently on spawned tasks, so a probe that goes away does
    /// not cancel a run other probes wait for. Requires a tokio runtime.
    pub async fn check_all(&self) -> HealthReport {
        let report = self.run(false).await;
        let previous = lock(&self.inner.overall).replace(report.status);
        if previous != Some(report.status) {
            match (previous, report.status) {
                (None, HealthStatus::Healthy) => {}
                (_, HealthStatus::Healthy) => {
                    tracing::info!(status = "healthy", "service health recovered");
                }
                (_, status) => tracing::warn!(
                    status = status.as_str(),
                    previous = previous.map_or("unknown", HealthStatus::as_str),
                    "service health changed"
                ),
            }
        }
        report
    }

    /// Runs (or reads from the cache) the critical checks only.
    pub async fn check_critical(&self) -> HealthReport {
        self.run(true).await
    }

    async fn run(&self, only_critical: bool) -> HealthReport {
        let inner = &self.inner;
        let now = Instant::now();
        let deadline = now + inner.deadline;
        let mut results: Vec<(Arc<str>, CheckResult)> = Vec::with_capacity(inner.entries.len());
        let mut pending: Vec<(usize, bool, JoinHandle<CheckResult>)> = Vec::new();
        for (index, entry) in inner.entries.iter().enumerate() {
            if only_critical && !entry.critical {
                continue;
            }
            match entry.fresh(now, inner.cache_ttl) {
                Ok(result) => results.push((entry.name.clone(), result)),
                Err(seen) => {
                    let inner = self.inner.clone();
                    let handle = tokio::spawn(async move {
                        let entry = &inner.entries[index];
                        entry.evaluate(seen).await
                    });
                    // Keeps the order of registration in the report.
                    results.push((entry.name.clone(), placeholder(entry, now)));
                    pending.push((results.len() - 1, entry.critical, handle));
                }
            }
        }
        for (slot, critical, handle) in pending {
            results[slot].1 = match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(result)) => result,
                Ok(Err(_join)) => failed(critical, "check task ended unexpectedly", now),
                Err(_) => failed(
                    critical,
                    &format!("timed out after {} ms", inner.deadline.as_millis()),
                    now,
                ),
            };
        }
        HealthReport {
            status: aggregate(results.iter().map(|(_, r)| r)),
            checks: results,
            uptime: inner.started.elapsed(),
        }
    }

    /// Starts background checking: each check with an interval (its own or
    /// the registry's [`background_interval`](HealthRegistryBuilder::background_interval))
    /// runs on a spawned task at that interval, and probes read its last
    /// result instead of waiting on it. Tasks stop when every clone of the
    /// registry is dropped, or on [`BackgroundTasks::abort`]. Calling this a
    /// second time starts nothing.
    pub fn spawn_background(&self) -> BackgroundTasks {
        let mut handles = Vec::new();
        if self.inner.background_started.swap(true, Ordering::AcqRel) {
            tracing::debug!("health background checks already running");
            return BackgroundTasks {
                handles,
                registry: Weak::new(),
            };
        }
        for (index, entry) in self.inner.entries.iter().enumerate() {
            let Some(interval) = entry.interval else {
                continue;
            };
            let weak = Arc::downgrade(&self.inner);
            handles.push(tokio::spawn(async move {
                loop {
                    let Some(inner) = weak.upgrade() else { break };
                    let entry = &inner.entries[index];
                    let guard = entry.flight.lock().await;
                    let result = entry.run_once().await;
                    entry.store(result);
                    drop(guard);
                    entry.background.store(true, Ordering::Release);
                    drop(inner);
                    tokio::time::sleep(interval).await;
                }
            }));
        }
        BackgroundTasks {
            handles,
            registry: Arc::downgrade(&self.inner),
        }
    }
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistry")
            .field(
                "checks",
                &self
                    .inner
                    .entries
                    .iter()
                    .map(|e| &*e.name)
                    .collect::<Vec<_>>(),
            )
            .field("readiness", &self.inner.readiness)
            .finish_non_exhaustive()
    }
}

/// The tasks started by [`HealthRegistry::spawn_background`]. Dropping this
/// leaves them running (like a `JoinHandle`); [`abort`](Self::abort) stops them.
#[derive(Debug)]
pub struct BackgroundTasks {
    handles: Vec<JoinHandle<()>>,
    registry: Weak<Inner>,
}

impl BackgroundTasks {
    /// Stops background checking; probes go back to the on-demand cache.
    pub fn abort(self) {
        for handle in &self.handles {
            handle.abort();
        }
        if let Some(inner) = self.registry.upgrade() {
            for entry in &inner.entries {
                entry.background.store(false, Ordering::Release);
            }
            inner.background_started.store(false, Ordering::Release);
        }
    }

    /// How many checks run in the background.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// True when no check has an interval.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}

impl Entry {
    /// The cached result when it can be served, or the generation seen.
    fn fresh(&self, now: Instant, ttl: Duration) -> Result<CheckResult, u64> {
        let state = lock(&self.state);
        match &state.last {
            Some(last)
                if self.background.load(Ordering::Acquire)
                    || now.saturating_duration_since(last.checked_at) < ttl =>
            {
                Ok(last.clone())
            }
            _ => Err(state.generation),
        }
    }

    /// Single flight: waits for a run in progress, or runs the check itself.
    async fn evaluate(&self, seen: u64) -> CheckResult {
        let started = Instant::now();
        let Ok(_guard) = tokio::time::timeout(self.budget, self.flight.lock()).await else {
            return failed(self.critical, &self.timeout_message(), started);
        };
        {
            let state = lock(&self.state);
            if state.generation != seen
                && let Some(last) = &state.last
            {
                return last.clone();
            }
        }
        let result = self.run_once().await;
        self.store(result)
    }

    fn timeout_message(&self) -> String {
        format!("timed out after {} ms", self.budget.as_millis())
    }

    /// One run under the budget, panics contained. Returns the raw outcome.
    async fn run_once(&self) -> RunOutcome {
        let started = Instant::now();
        let check = &self.check;
        let run = CatchUnwind::new(async { check.check().await });
        let error = match tokio::time::timeout(self.budget, run).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(error))) => Some(sanitize_error(&error_chain(error.as_ref()))),
            Ok(Err(panic)) => Some(sanitize_error(&panic)),
            Err(_) => Some(self.timeout_message()),
        };
        RunOutcome {
            error,
            duration: started.elapsed(),
        }
    }

    /// Records a run: failure count, status with threshold, transition log.
    fn store(&self, outcome: RunOutcome) -> CheckResult {
        let mut state = lock(&self.state);
        state.generation = state.generation.wrapping_add(1);
        if outcome.error.is_some() {
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        } else {
            state.consecutive_failures = 0;
        }
        let status = if state.consecutive_failures >= self.threshold {
            CheckStatus::Unhealthy
        } else {
            CheckStatus::Healthy
        };
        let result = CheckResult {
            status,
            critical: self.critical,
            duration: outcome.duration,
            error: outcome.error.map(Arc::from),
            checked_at: Instant::now(),
        };
        let previous = state.reported.replace(status);
        let failures = state.consecutive_failures;
        state.last = Some(result.clone());
        drop(state);
        if previous != Some(status) {
            match status {
                CheckStatus::Unhealthy => tracing::warn!(
                    check = &*self.name,
                    critical = self.critical,
                    consecutive_failures = failures,
                    error = result.error.as_deref().unwrap_or_default(),
                    "health check became unhealthy"
                ),
                CheckStatus::Healthy if previous.is_some() => {
                    tracing::info!(check = &*self.name, "health check recovered");
                }
                CheckStatus::Healthy => {}
            }
        }
        result
    }
}

struct RunOutcome {
    error: Option<String>,
    duration: Duration,
}

fn placeholder(entry: &Entry, now: Instant) -> CheckResult {
    failed(entry.critical, "not run", now)
}

fn failed(critical: bool, error: &str, since: Instant) -> CheckResult {
    CheckResult {
        status: CheckStatus::Unhealthy,
        critical,
        duration: since.elapsed(),
        error: Some(Arc::from(error)),
        checked_at: Instant::now(),
    }
}

pub(crate) fn aggregate<'a>(results: impl Iterator<Item = &'a CheckResult>) -> HealthStatus {
    let mut status = HealthStatus::Healthy;
    for r in results {
        if r.status == CheckStatus::Unhealthy {
            if r.critical {
                return HealthStatus::Unhealthy;
            }
            status = HealthStatus::Degraded;
        }
    }
    status
}

/// The first links of the chain: a few are enough, the text is capped anyway.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    for (i, e) in crate::error_chain::links(error).take(5).enumerate() {
        if i > 0 {
            text.push_str(": ");
        }
        text.push_str(&e.to_string());
        if text.len() > MAX_ERROR_CHARS * 4 {
            break;
        }
    }
    text
}

/// The one place error text passes through before it is stored or shown:
/// secrets are redacted, control and bidirectional-formatting characters become
/// spaces, and the text is capped at [`MAX_ERROR_CHARS`] characters.
pub(crate) fn sanitize_error(raw: &str) -> String {
    const ELLIPSIS: &str = "...";
    // Secrets in a dependency's error (a connection string, a token) never reach
    // the detailed view.
    let redacted = crate::redact::Redactor::installed().redact_text(raw);
    let raw: &str = &redacted;
    let keep = MAX_ERROR_CHARS - ELLIPSIS.len();
    let mut out = String::with_capacity(raw.len().min(MAX_ERROR_CHARS * 4));
    let mut chars = raw.chars();
    for (count, ch) in chars.by_ref().enumerate() {
        if count == keep {
            // Exactly at the cap: keep the last few characters if nothing follows.
            let rest: Vec<char> = std::iter::once(ch).chain(chars.by_ref().take(4)).collect();
            if rest.len() <= ELLIPSIS.len() {
                out.extend(rest.into_iter().map(clean_char));
            } else {
                out.push_str(ELLIPSIS);
            }
            return out;
        }
        out.push(clean_char(ch));
    }
    out
}

fn clean_char(ch: char) -> char {
    let bidi_or_invisible = matches!(
        ch,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    );
    if ch.is_control() || bidi_or_invisible {
        ' '
    } else {
        ch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_caps_and_strips() {
        assert_eq!(sanitize_error("a\nb\r\tc\u{1b}[31m"), "a b  c [31m");
        assert_eq!(sanitize_error("x\u{202E}y"), "x y");
        let secret = sanitize_error("connect failed: password=hunter2 Bearer abc.def.ghi");
        assert!(
            !secret.contains("hunter2") && !secret.contains("abc.def"),
            "{secret}"
        );
        let long = "é".repeat(1000);
        let out = sanitize_error(&long);
        assert_eq!(out.chars().count(), MAX_ERROR_CHARS);
        assert!(out.ends_with("..."));
        let exact = "a".repeat(MAX_ERROR_CHARS);
        assert_eq!(sanitize_error(&exact), exact);
        let over = "a".repeat(MAX_ERROR_CHARS + 1);
        assert_eq!(sanitize_error(&over).chars().count(), MAX_ERROR_CHARS);
    }

    proptest::proptest! {
        #[test]
        fn sanitize_never_exceeds_cap_or_keeps_controls(s in "\\PC*|[\\x00-\\x1f\\u{202a}-\\u{202e}a-z]{0,600}") {
            let out = sanitize_error(&s);
            proptest::prop_assert!(out.chars().count() <= MAX_ERROR_CHARS);
            proptest::prop_assert!(!out.chars().any(char::is_control));
            if s.chars().count() <= MAX_ERROR_CHARS {
                proptest::prop_assert_eq!(out.chars().count(), s.chars().count());
            }
        }
    }
}
