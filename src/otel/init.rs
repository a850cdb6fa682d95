use std::fmt;
use std::time::Duration;

use opentelemetry::global;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{self as sdktrace, SdkTracer, SdkTracerProvider, SpanExporter};

use super::runtime::ExportRuntime;
use crate::config::{self, ConfigError};
use crate::log::{LogBuilder, LogGuard};

/// How spans travel to the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP over gRPC (default port 4317).
    #[default]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (default port 4318, path `/v1/traces`).
    HttpProtobuf,
}

/// Which traces are recorded and exported (`OTEL_TRACES_SAMPLER`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
#[non_exhaustive]
pub enum Sampler {
    /// `always_on`: every trace.
    AlwaysOn,
    /// `always_off`: none.
    AlwaysOff,
    /// `traceidratio`: this fraction of traces, by trace id.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (default): follow the caller's decision, sample roots.
    #[default]
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`: follow the caller's decision, never sample roots.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`: follow the caller, sample this fraction of roots.
    ParentBasedTraceIdRatio(f64),
}

impl Sampler {
    fn to_sdk(self) -> sdktrace::Sampler {
        use sdktrace::Sampler as S;
        match self {
            Self::AlwaysOn => S::AlwaysOn,
            Self::AlwaysOff => S::AlwaysOff,
            Self::TraceIdRatio(r) => S::TraceIdRatioBased(r),
            Self::ParentBasedAlwaysOn => S::ParentBased(Box::new(S::AlwaysOn)),
            Self::ParentBasedAlwaysOff => S::ParentBased(Box::new(S::AlwaysOff)),
            Self::ParentBasedTraceIdRatio(r) => S::ParentBased(Box::new(S::TraceIdRatioBased(r))),
        }
    }

    fn parse(name: &str, arg: Option<f64>) -> Option<Self> {
        let ratio = arg.unwrap_or(1.0);
        Some(match name {
            "always_on" => Self::AlwaysOn,
            "always_off" => Self::AlwaysOff,
            "traceidratio" => Self::TraceIdRatio(ratio),
            "parentbased_always_on" => Self::ParentBasedAlwaysOn,
            "parentbased_always_off" => Self::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => Self::ParentBasedTraceIdRatio(ratio),
            _ => return None,
        })
    }
}

/// The context formats read from incoming requests and written on outgoing ones
/// (`OTEL_PROPAGATORS`). Both W3C formats by default.
///
/// ```
/// use tower_ops::otel::Propagators;
///
/// assert_eq!(Propagators::parse("tracecontext,baggage"), Ok(Propagators::default()));
/// assert_eq!(Propagators::parse("none"), Ok(Propagators::none()));
/// assert!(Propagators::parse("b3").is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Propagators {
    trace_context: bool,
    baggage: bool,
}

impl Default for Propagators {
    fn default() -> Self {
        Self {
            trace_context: true,
            baggage: true,
        }
    }
}

impl Propagators {
    /// No propagation: incoming `traceparent` headers do not parent server spans
    /// (each request starts a trace of its own) and outgoing requests carry none.
    pub const fn none() -> Self {
        Self {
            trace_context: false,
            baggage: false,
        }
    }

    /// W3C trace context (`traceparent`, `tracestate`) on or off.
    pub const fn trace_context(mut self, on: bool) -> Self {
        self.trace_context = on;
        self
    }

    /// W3C baggage on or off.
    pub const fn baggage(mut self, on: bool) -> Self {
        self.baggage = on;
        self
    }

    /// Parses an `OTEL_PROPAGATORS` list: `tracecontext`, `baggage`, or `none`
    /// alone, separated by commas. Other formats (`b3`, `jaeger`, `xray`, ...)
    /// are not built in and are an error, as is an empty list.
    pub fn parse(list: &str) -> Result<Self, PropagatorsError> {
        let mut parsed = Self::none();
        let mut none = false;
        let mut count = 0;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            count += 1;
            match name {
                "tracecontext" => parsed.trace_context = true,
                "baggage" => parsed.baggage = true,
                "none" => none = true,
                other => return Err(PropagatorsError(Some(other.to_owned()))),
            }
        }
        if count == 0 || (none && count > 1) {
            return Err(PropagatorsError(None));
        }
        Ok(parsed)
    }

    fn install(self) {
        let mut list: Vec<Box<dyn opentelemetry::propagation::TextMapPropagator + Send + Sync>> =
            Vec::new();
        if self.trace_context {
            list.push(Box::new(TraceContextPropagator::new()));
        }
        if self.baggage {
            list.push(Box::new(BaggagePropagator::new()));
        }
        global::set_text_map_propagator(TextMapCompositePropagator::new(list));
        super::set_trace_context(self.trace_context);
    }
}

/// An `OTEL_PROPAGATORS` list that [`Propagators::parse`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropagatorsError(Option<String>);

impl fmt::Display for PropagatorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(name) => write!(
                f,
                "propagator {name:?} is not built in (tracecontext, baggage or none)"
            ),
            None => f.write_str("expected tracecontext and/or baggage, or none alone"),
        }
    }
}

impl std::error::Error for PropagatorsError {}

type CustomExporter =
    Box<dyn FnOnce(sdktrace::TracerProviderBuilder) -> sdktrace::TracerProviderBuilder + Send>;

/// Sets up OpenTelemetry tracing: a tracer provider exporting over OTLP, the W3C
/// trace-context and baggage propagators (see [`Propagators`]), and (with
/// [`init`](Self::init)) our logging with the OpenTelemetry layer in one
/// subscriber.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_ops::otel::{OtelBuilder, Protocol, Sampler};
///
/// let otel = OtelBuilder::from_env()?
///     .service_name("checkout")
///     .endpoint("http://127.0.0.1:4318")
///     .protocol(Protocol::HttpProtobuf)
///     .sampler(Sampler::ParentBasedTraceIdRatio(0.1))
///     .init()?; // JSON logs (LOG_FORMAT, LOG_LEVEL) plus export
/// // ... serve ...
/// otel.shutdown()?; // flushes the spans still queued
/// # Ok(())
/// # }
/// ```
pub struct OtelBuilder {
    endpoint: Option<String>,
    append_signal_path: bool,
    protocol: Protocol,
    service_name: Option<String>,
    attributes: Vec<opentelemetry::KeyValue>,
    sampler: Sampler,
    timeout: Duration,
    exporter: Option<CustomExporter>,
    propagators: Propagators,
    /// `OTEL_SDK_DISABLED`: nothing exported.
    disabled: bool,
    log: Option<LogBuilder>,
}

impl fmt::Debug for OtelBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelBuilder")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("service_name", &self.service_name)
            .field("sampler", &self.sampler)
            .field("timeout", &self.timeout)
            .field("propagators", &self.propagators)
            .field("disabled", &self.disabled)
            .field("custom_exporter", &self.exporter.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for OtelBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl OtelBuilder {
    /// No endpoint (ids and propagation, no export), gRPC, `parentbased_always_on`,
    /// a 10 s export timeout. Service name and resource attributes still come from
    /// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` unless set here.
    pub fn new() -> Self {
        Self {
            endpoint: None,
            append_signal_path: true,
            protocol: Protocol::Grpc,
            service_name: None,
            attributes: Vec::new(),
            sampler: Sampler::default(),
            timeout: Duration::from_secs(10),
            exporter: None,
            propagators: Propagators::default(),
            disabled: false,
            log: None,
        }
    }

    /// Reads the standard variables, every invalid value listed in the error:
    ///
    /// - `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    ///   used verbatim);
    /// - `OTEL_EXPORTER_OTLP_PROTOCOL` or `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`
    ///   (`grpc` or `http/protobuf`);
    /// - `OTEL_EXPORTER_OTLP_TIMEOUT` or `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`
    ///   (milliseconds);
    /// - `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`;
    /// - `OTEL_PROPAGATORS` (see [`Propagators::parse`]);
    /// - `OTEL_SDK_DISABLED` (`true`: nothing is exported, see
    ///   [`disabled`](Self::disabled)).
    ///
    /// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` are read when the
    /// provider is built, `OTEL_EXPORTER_OTLP_HEADERS` (and its traces variant)
    /// by the exporter. TLS follows the endpoint's scheme, so
    /// `OTEL_EXPORTER_OTLP_INSECURE` has nothing to decide. The log variables
    /// (`LOG_FORMAT`, `LOG_LEVEL`, `RUST_LOG`) are read too, for
    /// [`init`](Self::init).
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let mut builder = Self::new();
        for (name, append) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", true),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", false),
        ] {
            if let Some(v) = config::var(name, &mut errors) {
                if valid_endpoint(&v) {
                    builder.endpoint = Some(v);
                    builder.append_signal_path = append;
                } else {
                    errors.push(name, &v, "an http:// or https:// URL with a host");
                }
            }
        }
        // The traces-specific variable wins over the general one, as for endpoints.
        for name in [
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ] {
            match config::var(name, &mut errors).as_deref() {
                None => {}
                Some("grpc") => builder.protocol = Protocol::Grpc,
                Some("http/protobuf") => builder.protocol = Protocol::HttpProtobuf,
                Some(other) => errors.push(name, other, "grpc or http/protobuf"),
            }
        }
        for name in [
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        ] {
            builder.timeout = config::parse_ms(name, builder.timeout, 1, &mut errors);
        }
        if let Some(v) = config::var("OTEL_PROPAGATORS", &mut errors) {
            match Propagators::parse(&v) {
                Ok(p) => builder.propagators = p,
                Err(e) => errors.push("OTEL_PROPAGATORS", &v, e.to_string()),
            }
        }
        if let Some(v) = config::var("OTEL_SDK_DISABLED", &mut errors) {
            if v.eq_ignore_ascii_case("true") {
                builder.disabled = true;
            } else if !v.eq_ignore_ascii_case("false") {
                errors.push("OTEL_SDK_DISABLED", &v, "true or false");
            }
        }
        let arg = config::var("OTEL_TRACES_SAMPLER_ARG", &mut errors);
        let ratio = match arg.as_deref().map(|a| a.trim().parse::<f64>()) {
            None => None,
            Some(Ok(r)) if (0.0..=1.0).contains(&r) => Some(r),
            Some(_) => {
                errors.push(
                    "OTEL_TRACES_SAMPLER_ARG",
                    arg.as_deref().unwrap_or_default(),
                    "a ratio between 0 and 1",
                );
                None
            }
        };
        if let Some(name) = config::var("OTEL_TRACES_SAMPLER", &mut errors) {
            match Sampler::parse(name.trim(), ratio) {
                Some(s) => builder.sampler = s,
                None => errors.push(
                    "OTEL_TRACES_SAMPLER",
                    &name,
                    "always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off or parentbased_traceidratio",
                ),
            }
        }
        match LogBuilder::from_env() {
            Ok(log) => builder.log = Some(log),
            Err(e) => errors.merge(e),
        }
        errors.into_result(builder)
    }

    /// The collector's base URL; with [`Protocol::HttpProtobuf`], `/v1/traces` is
    /// appended. Without an endpoint nothing is exported.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self.append_signal_path = true;
        self
    }

    /// The full traces URL, used as is.
    pub fn traces_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self.append_signal_path = false;
        self
    }

    /// gRPC (default) or HTTP/protobuf.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The `service.name` resource attribute (wins over `OTEL_SERVICE_NAME`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Adds a resource attribute (wins over `OTEL_RESOURCE_ATTRIBUTES`).
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes
            .push(opentelemetry::KeyValue::new(key.into(), value.into()));
        self
    }

    /// The sampler (default `parentbased_always_on`).
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = sampler;
        self
    }

    /// The context formats read and written (default: W3C trace context and
    /// baggage).
    pub fn propagators(mut self, propagators: Propagators) -> Self {
        self.propagators = propagators;
        self
    }

    /// With `true`, nothing is exported (the endpoint, a custom exporter and the
    /// sampler are ignored). Trace context is still propagated: requests start no
    /// sampled trace of their own and pass a caller's sampling decision on.
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.disabled = disabled;
        self
    }

    /// How long one export may take (default 10 s).
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Exports through `exporter` (batched) instead of OTLP, whatever the endpoint.
    pub fn with_exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        self.exporter = Some(Box::new(move |b| b.with_batch_exporter(exporter)));
        self
    }

    /// The log set-up [`init`](Self::init) installs (default: from the environment
    /// when built by [`from_env`](Self::from_env), else [`LogBuilder::new`]).
    pub fn log(mut self, log: LogBuilder) -> Self {
        self.log = Some(log);
        self
    }

    /// Builds the tracer provider, installs it and the propagators globally, and
    /// returns the guard, without touching logging: add
    /// [`OtelGuard::layer`] to your own subscriber.
    pub fn build(self) -> Result<OtelGuard, OtelInitError> {
        let mut runtime = None;
        // Disabled: no roots of our own, and the caller's decision passed on
        // unchanged to the services we call.
        let sampler = if self.disabled {
            Sampler::ParentBasedAlwaysOff
        } else {
            self.sampler
        };
        let mut provider = SdkTracerProvider::builder().with_sampler(sampler.to_sdk());
        let mut resource = Resource::builder();
        if let Some(name) = &self.service_name {
            resource = resource.with_service_name(name.clone());
        }
        provider = provider.with_resource(resource.with_attributes(self.attributes).build());
        if self.disabled {
            // No exporter at all.
        } else if let Some(custom) = self.exporter {
            provider = custom(provider);
        } else if let Some(endpoint) = &self.endpoint {
            if !valid_endpoint(endpoint) {
                return Err(OtelInitError(format!(
                    "invalid OTLP endpoint {endpoint:?}: expected an http:// or https:// URL"
                )));
            }
            let rt = ExportRuntime::start()
                .map_err(|e| OtelInitError(format!("cannot start the export thread: {e}")))?;
            let exporter = match self.protocol {
                Protocol::Grpc => {
                    let _enter = rt.handle().enter();
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint.clone())
                        .with_timeout(self.timeout)
                        .build()
                }
                Protocol::HttpProtobuf => {
                    if endpoint.starts_with("https:") {
                        return Err(OtelInitError(format!(
                            "OTLP/HTTP endpoint {endpoint:?}: TLS is not built in; use a local \
                             collector over http://, or gRPC with opentelemetry-otlp's TLS features"
                        )));
                    }
                    let url = if self.append_signal_path {
                        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
                    } else {
                        endpoint.clone()
                    };
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_http_client(super::http_client::HyperClient::new(
                            rt.handle().clone(),
                            self.timeout,
                        ))
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_endpoint(url)
                        .with_timeout(self.timeout)
                        .build()
                }
            }
            .map_err(|e| OtelInitError(format!("cannot build the OTLP exporter: {e}")))?;
            provider = provider.with_batch_exporter(exporter);
            runtime = Some(rt);
        }
        let provider = provider.build();
        self.propagators.install();
        global::set_tracer_provider(provider.clone());
        Ok(OtelGuard {
            provider: Some(provider),
            runtime,
            log: None,
            pending_log: self.log,
        })
    }

    /// [`build`](Self::build), then installs our logging (JSON or pretty, see
    /// [`LogBuilder`]) with the OpenTelemetry layer in the same subscriber.
    pub fn init(self) -> Result<OtelGuard, OtelInitError> {
        let mut guard = self.build()?;
        let log = guard.pending_log.take().unwrap_or_default();
        let layer = guard.layer();
        match log.init_with(layer) {
            Ok(log) => {
                guard.log = Some(log);
                Ok(guard)
            }
            Err(e) => {
                let _ = guard.shutdown();
                Err(OtelInitError(e.to_string()))
            }
        }
    }
}

fn valid_endpoint(url: &str) -> bool {
    url.parse::<http::Uri>().is_ok_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
    })
}

/// [`OtelBuilder::from_env`] then [`OtelBuilder::init`]: JSON logs plus OTLP export
/// (when `OTEL_EXPORTER_OTLP_ENDPOINT` is set) in one call. Keep the guard until
/// exit and call [`OtelGuard::shutdown`].
pub fn init_from_env() -> Result<OtelGuard, OtelInitError> {
    OtelBuilder::from_env()
        .map_err(|e| OtelInitError(e.to_string()))?
        .init()
}

/// Owns the tracer provider (and the log writer with [`OtelBuilder::init`]).
///
/// [`shutdown`](Self::shutdown) (or dropping the guard) flushes the spans still
/// queued. Exports run on a thread of their own, so this never waits on the
/// application's runtime and does not hang on a `current_thread` runtime; it
/// blocks the calling thread for at most the export timeout.
#[must_use = "dropping the guard shuts the exporter down"]
pub struct OtelGuard {
    provider: Option<SdkTracerProvider>,
    runtime: Option<ExportRuntime>,
    log: Option<LogGuard>,
    pending_log: Option<LogBuilder>,
}

impl fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelGuard")
            .field("exporting", &self.runtime.is_some())
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl OtelGuard {
    /// The `tracing` layer that turns spans into OpenTelemetry spans, for a
    /// subscriber of your own (after [`OtelBuilder::build`]).
    ///
    /// Spans carry their fields and semantic-convention attributes but no
    /// source-location, thread, target or busy/idle attributes, and the
    /// `request completed` events (already a log line, their data already span
    /// attributes) are not copied into span events.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber
            + for<'a> tracing_subscriber::registry::LookupSpan<'a>
            + Send
            + Sync
            + 'static,
    {
        use tracing_subscriber::Layer as _;
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer())
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                !(meta.is_event() && meta.target() == "tower_ops::request")
            }))
    }

    /// A tracer of this provider.
    pub fn tracer(&self) -> SdkTracer {
        use opentelemetry::trace::TracerProvider as _;
        match &self.provider {
            Some(p) => p.tracer("tower-ops"),
            None => SdkTracerProvider::builder().build().tracer("tower-ops"),
        }
    }

    /// The tracer provider.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// The log guard, when [`OtelBuilder::init`] installed logging.
    pub fn log_guard(&self) -> Option<&LogGuard> {
        self.log.as_ref()
    }

    /// Exports the spans queued so far and waits for the export.
    pub fn force_flush(&self) -> Result<(), OtelInitError> {
        match &self.provider {
            Some(p) => p
                .force_flush()
                .map_err(|e| OtelInitError(format!("flush failed: {e}"))),
            None => Ok(()),
        }
    }

    /// Flushes the spans still queued and stops the exporter, then the log
    /// writer. Safe to call from async code on any runtime flavour.
    pub fn shutdown(mut self) -> Result<(), OtelInitError> {
        self.close()
    }

    fn close(&mut self) -> Result<(), OtelInitError> {
        let result = match self.provider.take() {
            Some(p) => p
                .shutdown()
                .map_err(|e| OtelInitError(format!("shutdown failed: {e}"))),
            None => Ok(()),
        };
        // The export thread goes once nothing can export any more.
        self.runtime.take();
        self.log.take();
        result
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// OpenTelemetry could not be set up.
#[derive(Clone, Debug)]
pub struct OtelInitError(String);

impl fmt::Display for OtelInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OtelInitError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_names() {
        assert_eq!(Sampler::parse("always_off", None), Some(Sampler::AlwaysOff));
        assert_eq!(
            Sampler::parse("parentbased_traceidratio", Some(0.25)),
            Some(Sampler::ParentBasedTraceIdRatio(0.25))
        );
        assert_eq!(
            Sampler::parse("traceidratio", None),
            Some(Sampler::TraceIdRatio(1.0))
        );
        assert_eq!(Sampler::parse("sometimes", None), None);
    }

    #[test]
    fn propagator_lists() {
        let both = Propagators::default();
        let none = Propagators::none();
        for (list, expected) in [
            ("tracecontext,baggage", both),
            (" baggage , tracecontext ", both),
            ("tracecontext", none.trace_context(true)),
            ("baggage,baggage", none.baggage(true)),
            ("none", none),
            (",none,", none),
        ] {
            assert_eq!(Propagators::parse(list), Ok(expected), "{list}");
        }
        for list in [
            "",
            " , ",
            "none,baggage",
            "TraceContext",
            "b3",
            "tracecontext,xray",
        ] {
            let err = Propagators::parse(list).unwrap_err().to_string();
            assert!(err.contains("tracecontext"), "{list}: {err}");
        }
        assert_eq!(
            Propagators::parse("tracecontext,jaeger")
                .unwrap_err()
                .to_string(),
            "propagator \"jaeger\" is not built in (tracecontext, baggage or none)"
        );
    }

    #[test]
    fn endpoints() {
        assert!(valid_endpoint("http://127.0.0.1:4317"));
        assert!(valid_endpoint("https://collector.internal"));
        assert!(!valid_endpoint("127.0.0.1:4317"));
        assert!(!valid_endpoint("ftp://x"));
        assert!(!valid_endpoint("http://"));
        assert!(!valid_endpoint(""));
    }
}
