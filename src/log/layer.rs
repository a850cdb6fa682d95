use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, StatusCode};
use tower_layer::Layer;
use tracing::Level;

use super::sample::LogSample;
use super::service::*;
pub use crate::body::BodyCapture;
use crate::config::{self, ConfigError};
use crate::paths::PathSet;
use crate::redact::Redactor;

/// Fields a handler (or an inner layer) adds to its request's log line.
///
/// [`RequestLogLayer`] puts one in the request extensions. Under
/// [`JsonLayer`](super::JsonLayer) the values are written at the root of the
/// request's line (and only that line), typed as given: numbers stay numbers,
/// objects stay objects, strings are cut like any value
/// ([bounded values](super::JsonLayer#bounded-values)). Keys the request line
/// has or may have (`status`, `path`, `slow`, ...) and keys of the enclosing
/// spans win; so do `headers`, `request_body` and `response_body` when the layer
/// logs those.
///
/// Under another subscriber (tracing-subscriber's own `fmt().json()`, say), they
/// are fields of the request event like any other: integers, floats and booleans
/// typed, strings as strings, arrays and objects as their JSON text, so
/// `fmt().json()` writes `"fields":{"message":"request completed",...,"user_id":42}`.
/// tracing names an event's fields in `'static` metadata, so the process makes
/// one event callsite per level and distinct set of keys, up to 256; past that,
/// and for a key longer than 128 bytes, the event carries the fields as one text
/// field, `fields`, each `key=value` with the value in JSON:
/// `fields="user_id=42 plan=\"pro\""`.
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use axum::Extension;
/// use tower_ops::log::LogFields;
///
/// async fn handler(Extension(fields): Extension<LogFields>) -> &'static str {
///     fields.insert("user_id", 42);
///     fields.insert("plan", "pro");
///     "ok"
/// }
/// # }
/// ```
#[derive(Clone, Default)]
pub struct LogFields(Arc<Record>);

/// A request's fields and its sampling decision, one allocation for both.
#[derive(Default)]
struct Record {
    fields: Mutex<Vec<(String, serde_json::Value)>>,
    sample: LogSample,
}

impl LogFields {
    /// The fields of a request sampled as `sample` says.
    pub(super) fn sampled(sample: LogSample) -> Self {
        Self(Arc::new(Record {
            fields: Mutex::default(),
            sample,
        }))
    }

    /// The log sampling decision of the request these fields belong to.
    pub fn sample(&self) -> LogSample {
        self.0.sample
    }

    /// Adds (or replaces) a field; at most 64 fields are kept.
    pub fn insert(&self, key: impl Into<String>, value: impl Into<serde_json::Value>) {
        let key = key.into();
        let value = value.into();
        let mut fields = self.lock();
        if let Some(slot) = fields.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else if fields.len() < 64 {
            fields.push((key, value));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, serde_json::Value)>> {
        self.0.fields.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The layer's own field (`headers`, a body), over a handler's of that name.
    pub(super) fn set(&self, key: &str, value: serde_json::Value) {
        let mut fields = self.lock();
        match fields.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => fields.push((key.to_owned(), value)),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Runs `f` on the fields.
    pub(super) fn with<R>(&self, f: impl FnOnce(&[(String, serde_json::Value)]) -> R) -> R {
        f(&self.lock())
    }
}

/// The `fields` text of the request event: `key=value ...`, values in JSON.
pub(super) struct Readable<'a>(pub(super) &'a LogFields);

impl fmt::Display for Readable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.with(|fields| {
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{k}={v}")?;
            }
            Ok(())
        })
    }
}

impl fmt::Debug for LogFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = self.lock();
        f.debug_map()
            .entries(fields.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// Chooses the level of a request's line from its status (before the slow-request
/// rule raises it).
pub type LevelPolicy = fn(StatusCode) -> Level;

pub(super) fn default_level(status: StatusCode) -> Level {
    if status.is_server_error() {
        Level::ERROR
    } else if status.is_client_error() {
        Level::WARN
    } else {
        Level::INFO
    }
}

#[derive(Clone)]
pub(super) struct Config {
    pub(super) redactor: Redactor,
    pub(super) slow: Duration,
    pub(super) watchdog: Option<Duration>,
    pub(super) probes: PathSet,
    pub(super) probe_level: Option<Level>,
    pub(super) success_sample: f64,
    pub(super) levels: LevelPolicy,
    pub(super) headers: Vec<HeaderName>,
    pub(super) capture: Option<usize>,
}

/// Logs exactly one event per request, at completion. See the
/// [module docs](super).
#[derive(Clone)]
pub struct RequestLogLayer {
    config: Arc<Config>,
}

impl fmt::Debug for RequestLogLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestLogLayer")
            .field("slow", &self.config.slow)
            .field("watchdog", &self.config.watchdog)
            .field("probes", &self.config.probes)
            .field("success_sample", &self.config.success_sample)
            .finish_non_exhaustive()
    }
}

impl Default for RequestLogLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestLogLayer {
    /// Defaults: slow after 1 s, probes (`/health/*`, `/metrics`) at debug, every
    /// request logged, the default [`Redactor`], no headers.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                redactor: Redactor::installed(),
                slow: Duration::from_millis(1000),
                watchdog: None,
                probes: PathSet::probes(),
                probe_level: Some(Level::DEBUG),
                success_sample: 1.0,
                levels: default_level,
                headers: Vec::new(),
                capture: None,
            }),
        }
    }

    /// Reads `SLOW_REQUEST_MS` (default 1000) and `LOG_SAMPLE_RATE` (default
    /// 1.0, see [`sample_successes`](Self::sample_successes)).
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let mut layer = Self::new();
        if let Some(slow) = config::ms("SLOW_REQUEST_MS", 0..=u64::MAX, &mut errors) {
            layer = layer.slow_after(slow);
        }
        if let Some(raw) = config::var("LOG_SAMPLE_RATE", &mut errors) {
            match raw.trim().parse::<f64>() {
                Ok(rate) if (0.0..=1.0).contains(&rate) => layer = layer.sample_successes(rate),
                _ => errors.push(
                    "LOG_SAMPLE_RATE",
                    &raw,
                    "a fraction from 0.0 (no ordinary success logged) to 1.0 (all)",
                ),
            }
        }
        errors.into_result(layer)
    }

    fn with(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Requests slower than this are marked `slow: true` and logged at least at warn.
    pub fn slow_after(self, threshold: Duration) -> Self {
        self.with(|c| c.slow = threshold)
    }

    /// Also logs a warning, once, for a request still in flight after `threshold`
    /// (a hung request shows up before it completes, if it ever does).
    pub fn watchdog(self, threshold: Duration) -> Self {
        self.with(|c| c.watchdog = Some(threshold))
    }

    /// The probe and noise routes (default `/health/*` and `/metrics`).
    pub fn probes(self, paths: impl Into<PathSet>) -> Self {
        let paths = paths.into();
        self.with(|c| c.probes = paths)
    }

    /// The level of probe lines; `None` does not log them at all. Failed probes
    /// (5xx) are always logged at the normal level.
    pub fn probe_level(self, level: Option<Level>) -> Self {
        self.with(|c| c.probe_level = level)
    }

    /// Logs only this fraction (0.0 to 1.0, default 1.0) of ordinary successes:
    /// requests answered below 400, not slow, not aborted, with no
    /// [`Problem`](crate::error::Problem) or
    /// [`ShadowRejection`](crate::error::ShadowRejection) attached. Every other
    /// request is always logged, and metrics count every request.
    ///
    /// The decision is drawn once per request, before the inner service runs,
    /// and handed to it as a [`LogSample`](super::LogSample); a request
    /// sampled out that ends well skips the line's formatting and writing
    /// altogether. Lines written under a rate below 1 carry `sample_rate`.
    /// A value outside 0 to 1 is clamped (NaN counts as 1).
    ///
    /// ```
    /// use tower_ops::log::RequestLogLayer;
    ///
    /// // One ordinary success in ten gets a line; errors and slow requests all do.
    /// let layer = RequestLogLayer::new().sample_successes(0.1);
    /// # let _ = layer;
    /// ```
    pub fn sample_successes(self, fraction: f64) -> Self {
        let fraction = if fraction.is_nan() {
            1.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self.with(|c| c.success_sample = fraction)
    }

    /// Replaces the level policy (5xx error, 4xx warn, otherwise info).
    pub fn levels(self, policy: LevelPolicy) -> Self {
        self.with(|c| c.levels = policy)
    }

    /// Logs these request headers as a `headers` object, redacted.
    pub fn headers(self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        let names: Vec<HeaderName> = names.into_iter().collect();
        self.with(|c| c.headers = names)
    }

    /// Logs JSON request and response bodies, redacted, as `request_body` and
    /// `response_body`, when they are at most `max_bytes` long (larger ones are
    /// logged as `<body of N bytes not captured>`). Off by default: bodies are
    /// often large and personal.
    ///
    /// Response bodies are copied as they stream, only when their `content-type`
    /// is JSON. Request bodies are recorded by whoever reads them through the
    /// [`BodyCapture`] extension (the crate's `Json` extractor does).
    pub fn capture_bodies(self, max_bytes: usize) -> Self {
        self.with(|c| c.capture = Some(max_bytes))
    }

    /// Swaps the redactor used for the path's query string and headers.
    pub fn redactor(self, redactor: Redactor) -> Self {
        self.with(|c| c.redactor = redactor)
    }
}

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog {
            inner,
            config: Some(self.config.clone()),
        }
    }
}

impl<S> crate::stack::Switchable<S> for RequestLogLayer {
    /// A `RequestLog` that logs nothing.
    fn off(inner: S) -> Self::Service {
        RequestLog {
            inner,
            config: None,
        }
    }
}
