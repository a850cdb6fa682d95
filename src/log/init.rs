use std::io::IsTerminal;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::layer::Layered;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

use super::JsonLayer;
use crate::config::{self, ConfigError};

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One flat JSON object per line (the default when stdout is not a terminal).
    Json,
    /// Human-readable lines (the default on a terminal).
    Pretty,
}

/// Sets up logging: format, level, and a non-blocking writer to stdout.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // LOG_FORMAT, LOG_LEVEL and RUST_LOG decide; keep the guard alive until exit,
/// // dropping it flushes the lines still queued.
/// let guard = tower_ops::log::LogBuilder::from_env()?.init()?;
/// tracing::info!("ready");
/// eprintln!("{} lines dropped so far", guard.dropped_lines());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct LogBuilder {
    format: LogFormat,
    filter: String,
    buffered_lines: usize,
    lossy: bool,
}

impl Default for LogBuilder {
    fn default() -> Self {
        Self {
            format: if std::io::stdout().is_terminal() {
                LogFormat::Pretty
            } else {
                LogFormat::Json
            },
            filter: "info".to_owned(),
            buffered_lines: 128_000,
            lossy: true,
        }
    }
}

impl LogBuilder {
    /// Defaults: JSON unless stdout is a terminal, level `info`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `LOG_FORMAT` (`json` or `pretty`), `LOG_LEVEL` (a level or filter
    /// directives, default `info`) and `RUST_LOG`, which wins over `LOG_LEVEL`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let mut builder = Self::new();
        match config::var("LOG_FORMAT", &mut errors).as_deref() {
            None => {}
            Some(f) if f.eq_ignore_ascii_case("json") => builder.format = LogFormat::Json,
            Some(f) if f.eq_ignore_ascii_case("pretty") => builder.format = LogFormat::Pretty,
            Some(other) => errors.push("LOG_FORMAT", other, "json or pretty"),
        }
        for name in ["LOG_LEVEL", "RUST_LOG"] {
            if let Some(filter) = config::var(name, &mut errors) {
                match EnvFilter::builder().parse(&filter) {
                    Ok(_) => builder.filter = filter,
                    Err(e) => errors.push(
                        name,
                        &filter,
                        format!(
                            "a level (error, warn, info, debug, trace) or filter directives ({e})"
                        ),
                    ),
                }
            }
        }
        errors.into_result(builder)
    }

    /// Chooses the format.
    pub fn format(mut self, format: LogFormat) -> Self {
        self.format = format;
        self
    }

    /// Sets the filter: a level or `tracing` filter directives
    /// (`info,tower_ops=debug`). Invalid directives make [`init`](Self::init) fail.
    pub fn filter(mut self, directives: impl Into<String>) -> Self {
        self.filter = directives.into();
        self
    }

    /// Lines buffered between the application and the writer thread
    /// (default 128,000). When the buffer is full, lines are dropped and counted
    /// rather than blocking requests; see [`lossy`](Self::lossy).
    pub fn buffered_lines(mut self, lines: usize) -> Self {
        self.buffered_lines = lines.max(1);
        self
    }

    /// `false` makes a full buffer block the logging thread instead of dropping.
    pub fn lossy(mut self, lossy: bool) -> Self {
        self.lossy = lossy;
        self
    }

    /// Installs the global subscriber writing to stdout.
    ///
    /// Fails, without panicking, when the filter is invalid or a global subscriber
    /// is already installed.
    pub fn init(self) -> Result<LogGuard, LogInitError> {
        self.init_with(tracing_subscriber::layer::Identity::new())
    }

    /// Like [`init`](Self::init), with one more layer in the same subscriber,
    /// after the filter (an OpenTelemetry layer, say; several layers can be
    /// combined with [`Layer::and_then`](tracing_subscriber::Layer::and_then)).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let extra = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    /// let _guard = tower_ops::log::LogBuilder::new().init_with(extra)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn init_with<L>(self, layer: L) -> Result<LogGuard, LogInitError>
    where
        L: tracing_subscriber::Layer<Layered<EnvFilter, Registry>> + Send + Sync + 'static,
    {
        let filter = EnvFilter::builder()
            .parse(&self.filter)
            .map_err(|e| LogInitError(format!("invalid filter {:?}: {e}", self.filter)))?;
        let (writer, guard) = NonBlockingBuilder::default()
            .buffered_lines_limit(self.buffered_lines)
            .lossy(self.lossy)
            .thread_name("tower-ops-log")
            .finish(std::io::stdout());
        let counter = writer.error_counter();
        let registry = tracing_subscriber::registry().with(filter).with(layer);
        let result = match self.format {
            LogFormat::Json => registry.with(JsonLayer::new(writer)).try_init(),
            LogFormat::Pretty => registry.with(pretty_layer(writer)).try_init(),
        };
        result.map_err(|e| LogInitError(format!("cannot install the subscriber: {e}")))?;
        Ok(LogGuard {
            _guard: guard,
            counter,
        })
    }
}

fn pretty_layer<S>(writer: NonBlocking) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::stdout().is_terminal())
}

/// [`LogBuilder::from_env`] then [`LogBuilder::init`].
pub fn init_from_env() -> Result<LogGuard, LogInitError> {
    LogBuilder::from_env()
        .map_err(|e| LogInitError(e.to_string()))?
        .init()
}

/// Keeps the writer thread alive; dropping it flushes queued lines.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _guard: WorkerGuard,
    counter: ErrorCounter,
}

impl LogGuard {
    /// Lines dropped because the buffer was full (or stdout failed).
    pub fn dropped_lines(&self) -> usize {
        self.counter.dropped_lines()
    }

    /// A cheap handle to read the dropped-line count elsewhere (a metrics
    /// exporter, a health check).
    pub fn dropped_lines_counter(&self) -> DroppedLines {
        DroppedLines(self.counter.clone())
    }
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard")
            .field("dropped_lines", &self.dropped_lines())
            .finish()
    }
}

/// Reads how many log lines were dropped.
#[derive(Clone)]
pub struct DroppedLines(ErrorCounter);

impl DroppedLines {
    #[cfg(all(test, feature = "metrics"))]
    fn detached() -> Self {
        let (writer, _guard) = tracing_appender::non_blocking(std::io::sink());
        Self(writer.error_counter())
    }
}

impl DroppedLines {
    /// Lines dropped so far.
    pub fn get(&self) -> usize {
        self.0.dropped_lines()
    }
}

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
impl DroppedLines {
    /// Exports the count as the counter `log_dropped_lines_total`, read at each
    /// scrape.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut registry = prometheus_client::registry::Registry::default();
    /// let guard = tower_ops::log::init_from_env()?;
    /// guard.dropped_lines_counter().register(&mut registry);
    /// # Ok(())
    /// # }
    /// ```
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(self.clone()));
    }
}

#[cfg(feature = "metrics")]
impl prometheus_client::collector::Collector for DroppedLines {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let counter = prometheus_client::metrics::counter::ConstCounter::new(self.get() as u64);
        counter.encode(encoder.encode_descriptor(
            "log_dropped_lines",
            "Log lines dropped because the non-blocking writer's buffer was full",
            None,
            counter.metric_type(),
        )?)
    }
}

impl std::fmt::Debug for DroppedLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DroppedLines").field(&self.get()).finish()
    }
}

/// Logging could not be set up.
#[derive(Clone, Debug)]
pub struct LogInitError(String);

impl std::fmt::Display for LogInitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LogInitError {}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn dropped_lines_are_exported() {
        let mut registry = prometheus_client::registry::Registry::default();
        DroppedLines::detached().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("# TYPE log_dropped_lines counter"), "{text}");
        assert!(text.contains("log_dropped_lines_total 0"), "{text}");
    }
}
