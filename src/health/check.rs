use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

use crate::BoxError;

/// The future returned by [`HealthCheck::check`].
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

/// One dependency or resource to check.
///
/// The trait is object safe so that a [`HealthRegistry`](super::HealthRegistry)
/// can hold checks of many types. Most checks are written as closures with
/// [`check_fn`]; implement the trait for a type when the check carries its own
/// state.
///
/// ```
/// use std::time::Duration;
/// use tower_ops::health::{CheckFuture, HealthCheck};
///
/// struct Queue { depth: std::sync::Arc<std::sync::atomic::AtomicUsize> }
///
/// impl HealthCheck for Queue {
///     fn name(&self) -> &str { "queue" }
///     fn check(&self) -> CheckFuture<'_> {
///         Box::pin(async move {
///             let depth = self.depth.load(std::sync::atomic::Ordering::Relaxed);
///             if depth > 10_000 {
///                 return Err(format!("{depth} jobs waiting").into());
///             }
///             Ok(())
///         })
///     }
///     fn is_critical(&self) -> bool { false }
///     fn timeout(&self) -> Option<Duration> { Some(Duration::from_millis(100)) }
/// }
/// ```
pub trait HealthCheck: Send + Sync + 'static {
    /// The name, used as the key in the `/health` report and in logs.
    fn name(&self) -> &str;

    /// Runs the check once. `Ok(())` means healthy.
    ///
    /// The registry bounds the future with a timeout, contains its panics and
    /// caches its result; the check itself needs none of that.
    fn check(&self) -> CheckFuture<'_>;

    /// A failing critical check makes the service `unhealthy` (503) and not
    /// ready; a failing non-critical one only makes it `degraded` (200).
    /// Default: critical.
    fn is_critical(&self) -> bool {
        true
    }

    /// Its own time budget; `None` uses the registry's (`HEALTH_CHECK_TIMEOUT_MS`).
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Its own background interval; `None` uses the registry's. Only used
    /// when background checking is started.
    fn interval(&self) -> Option<Duration> {
        None
    }

    /// How many failures in a row turn the check `unhealthy`. Below that, the
    /// check stays `healthy` and shows its last error. Default 1; 0 counts as 1.
    fn failure_threshold(&self) -> u32 {
        1
    }
}

impl<C: HealthCheck + ?Sized> HealthCheck for Box<C> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn check(&self) -> CheckFuture<'_> {
        (**self).check()
    }
    fn is_critical(&self) -> bool {
        (**self).is_critical()
    }
    fn timeout(&self) -> Option<Duration> {
        (**self).timeout()
    }
    fn interval(&self) -> Option<Duration> {
        (**self).interval()
    }
    fn failure_threshold(&self) -> u32 {
        (**self).failure_threshold()
    }
}

/// Makes a check from an async closure.
///
/// The closure is called for every run and returns `Result<(), E>` for any
/// error `E` that converts into [`BoxError`]. The check is critical by default;
/// chain [`FnCheck::non_critical`], [`FnCheck::timeout`], [`FnCheck::interval`]
/// and [`FnCheck::failure_threshold`] to change that.
///
/// ```
/// use std::time::Duration;
/// use tower_ops::health::{check_fn, HealthCheck};
///
/// # #[derive(Clone)] struct Pool;
/// # impl Pool { async fn ping(&self) -> Result<(), std::io::Error> { Ok(()) } }
/// let pool = Pool;
/// let db = check_fn("db", move || {
///     let pool = pool.clone();
///     async move { pool.ping().await }
/// })
/// .timeout(Duration::from_millis(500));
///
/// let cache = check_fn("cache", || async { Err::<(), _>("connection refused") }).non_critical();
/// assert!(db.is_critical());
/// assert!(!cache.is_critical());
/// ```
pub fn check_fn<F, Fut, E>(name: impl Into<String>, f: F) -> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    FnCheck {
        name: name.into(),
        f,
        critical: true,
        timeout: None,
        interval: None,
        failure_threshold: 1,
    }
}

/// A check made from a closure by [`check_fn`].
#[derive(Clone)]
pub struct FnCheck<F> {
    name: String,
    f: F,
    critical: bool,
    timeout: Option<Duration>,
    interval: Option<Duration>,
    failure_threshold: u32,
}

impl<F> FnCheck<F> {
    /// A failure gives `degraded` (200) instead of `unhealthy` (503), and does
    /// not affect readiness.
    pub fn non_critical(mut self) -> Self {
        self.critical = false;
        self
    }

    /// Sets whether the check is critical.
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// Its own time budget instead of the registry's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Its own background interval instead of the registry's.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Reports `unhealthy` only after `n` failures in a row.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n.max(1);
        self
    }
}

impl<F, Fut, E> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        let fut = (self.f)();
        Box::pin(async move { fut.await.map_err(Into::into) })
    }

    fn is_critical(&self) -> bool {
        self.critical
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }
}

impl<F> fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCheck")
            .field("name", &self.name)
            .field("critical", &self.critical)
            .field("timeout", &self.timeout)
            .field("interval", &self.interval)
            .field("failure_threshold", &self.failure_threshold)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// Turns a panic while polling the inner future into `Err(message)`.
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchUnwind<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(format!(
                "check panicked: {}",
                crate::panics::message(payload.as_ref())
            ))),
        }
    }
}
