use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use tracing_subscriber::Registry;
use tracing_subscriber::layer::Layered;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::JsonLayer;
use super::filter::{LogFilter, LogFilterLayer};
use super::writer::{LogWriter, LogWriterBuilder, WriterGuard};
use crate::config::{self, ConfigError};

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogDestination {
    /// The process's standard output (the default).
    Stdout,
    /// The process's standard error.
    Stderr,
    /// A file, appended to (created if needed).
    File(PathBuf),
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One flat JSON object per line (the default when stdout is not a terminal).
    Json,
    /// Human-readable lines (the default on a terminal).
    Pretty,
}

/// Sets up logging: format, level, the batching [`LogWriter`] to stdout, and a
/// panic hook that turns panics into log events.
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
    destination: LogDestination,
    max_buffer_bytes: usize,
    flush_interval: Duration,
    lossy: bool,
    panic_hook: bool,
    max_field_bytes: usize,
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
            destination: LogDestination::Stdout,
            max_buffer_bytes: 16 << 20,
            flush_interval: Duration::from_millis(100),
            lossy: true,
            panic_hook: true,
            max_field_bytes: 1024,
        }
    }
}

impl LogBuilder {
    /// Defaults: JSON unless stdout is a terminal, level `info`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `LOG_FORMAT` (`json` or `pretty`), `LOG_LEVEL` (a level or filter
    /// directives, default `info`), `RUST_LOG`, which wins over `LOG_LEVEL`, and
    /// `LOG_MAX_FIELD_BYTES` (default 1024).
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
                match super::filter::parse(&filter) {
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
        if let Some(raw) = config::var("LOG_MAX_FIELD_BYTES", &mut errors) {
            match raw.parse::<usize>() {
                Ok(bytes) if (16..=1 << 20).contains(&bytes) => builder.max_field_bytes = bytes,
                _ => errors.push(
                    "LOG_MAX_FIELD_BYTES",
                    &raw,
                    "a whole number of bytes from 16 to 1048576",
                ),
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

    /// Where lines go (default stdout).
    pub fn destination(mut self, destination: LogDestination) -> Self {
        self.destination = destination;
        self
    }

    /// Bytes of lines buffered between the application and the writer thread
    /// (default 16 MiB). When the buffer is full, lines are dropped and counted
    /// rather than blocking requests; see [`lossy`](Self::lossy).
    pub fn max_buffer_bytes(mut self, bytes: usize) -> Self {
        self.max_buffer_bytes = bytes.max(1);
        self
    }

    /// The longest a line waits before it is written on an idle server (default
    /// 100 ms); busy servers write as soon as a batch is full.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// `false` makes a full buffer block the logging thread instead of dropping.
    pub fn lossy(mut self, lossy: bool) -> Self {
        self.lossy = lossy;
        self
    }

    /// Whether to install the panic hook (default `true`): each panic becomes one
    /// ERROR event (redacted, with its location, the request id when in a request,
    /// and a `backtrace` field when `RUST_BACKTRACE` asks for one), and nothing raw
    /// is printed to stderr.
    pub fn panic_hook(mut self, install: bool) -> Self {
        self.panic_hook = install;
        self
    }

    /// The longest string value on a JSON line, in bytes (default 1024,
    /// `LOG_MAX_FIELD_BYTES`); longer values are cut with a marker, and the line
    /// carries `"truncated":true`.
    pub fn max_field_bytes(mut self, bytes: usize) -> Self {
        self.max_field_bytes = bytes;
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
    /// The filter is a [`LogFilterLayer`]: its handle is
    /// [installed](LogFilter::install) for the process and returned by
    /// [`LogGuard::filter`], so the filter can be changed while the process
    /// runs (the [admin routes](crate::admin) do).
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
        L: tracing_subscriber::Layer<Layered<LogFilterLayer, Registry>> + Send + Sync + 'static,
    {
        let filter = LogFilterLayer::new(&self.filter)
            .map_err(|e| LogInitError(format!("invalid filter {:?}: {e}", self.filter)))?;
        let handle = filter.handle();
        let builder = LogWriterBuilder::new()
            .max_buffer_bytes(self.max_buffer_bytes)
            .flush_interval(self.flush_interval)
            .blocking(!self.lossy);
        let ansi = match self.destination {
            LogDestination::Stdout => std::io::stdout().is_terminal(),
            LogDestination::Stderr => std::io::stderr().is_terminal(),
            LogDestination::File(_) => false,
        };
        let (writer, guard) = match &self.destination {
            LogDestination::Stdout => builder.stdout(),
            LogDestination::Stderr => builder.stderr(),
            LogDestination::File(path) => builder.file(path).map_err(|e| {
                LogInitError(format!("cannot open the log file {}: {e}", path.display()))
            })?,
        };
        let registry = tracing_subscriber::registry().with(filter).with(layer);
        let result = match self.format {
            LogFormat::Json => registry
                .with(JsonLayer::new(writer.clone()).max_field_bytes(self.max_field_bytes))
                .try_init(),
            LogFormat::Pretty => registry.with(pretty_layer(writer.clone(), ansi)).try_init(),
        };
        result.map_err(|e| LogInitError(format!("cannot install the subscriber: {e}")))?;
        handle.clone().install();
        if self.panic_hook {
            let flusher = writer;
            super::panic::install(move || {
                flusher.flush();
            });
        }
        Ok(LogGuard {
            guard,
            filter: handle,
        })
    }
}

fn pretty_layer<S>(writer: LogWriter, ansi: bool) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
}

/// [`LogBuilder::from_env`] then [`LogBuilder::init`].
pub fn init_from_env() -> Result<LogGuard, LogInitError> {
    LogBuilder::from_env()
        .map_err(|e| LogInitError(e.to_string()))?
        .init()
}

/// Keeps the writer thread alive; dropping it writes the lines still buffered.
///
/// Lines logged after the guard is gone (requests cut while the runtime shuts
/// down) are written synchronously, so none is lost on the way out.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    guard: WriterGuard,
    filter: LogFilter,
}

impl LogGuard {
    /// Lines dropped because the buffer was full, or lost to a failed write.
    pub fn dropped_lines(&self) -> usize {
        self.guard.writer().dropped_lines() as usize
    }

    /// Failed writes to the destination (a closed pipe, a full disk).
    pub fn write_errors(&self) -> u64 {
        self.guard.writer().write_errors()
    }

    /// Writes every buffered line now, waiting at most a second.
    pub fn flush(&self) {
        self.guard.writer().flush();
    }

    /// The handle on the subscriber's filter, to read or change it while the
    /// process runs (the same one [`LogFilter::installed`] returns).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tower_ops::log::LogBuilder::new().filter("info").init()?;
    /// guard.filter().set("info,my_app=debug")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn filter(&self) -> LogFilter {
        self.filter.clone()
    }

    /// A cheap handle to read the dropped-line count elsewhere (a metrics
    /// exporter, a health check).
    pub fn dropped_lines_counter(&self) -> DroppedLines {
        DroppedLines(self.guard.writer().clone())
    }
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard")
            .field("dropped_lines", &self.dropped_lines())
            .field("filter", &self.filter)
            .finish()
    }
}

/// Reads how many log lines were dropped.
#[derive(Clone)]
pub struct DroppedLines(LogWriter);

impl DroppedLines {
    #[cfg(all(test, feature = "metrics"))]
    fn detached() -> Self {
        let (writer, _guard) = LogWriter::builder().writer(std::io::sink());
        Self(writer)
    }
}

impl DroppedLines {
    /// Lines dropped so far.
    pub fn get(&self) -> usize {
        self.0.dropped_lines() as usize
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
            "Log lines dropped because the writer's buffer was full or a write failed",
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
