use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Level, Span};

pub use crate::body::BodyCapture;
use crate::client_ip::ClientIp;
use crate::config::{self, ConfigError};
use crate::context::{RequestContext, Scoped};
use crate::error::Problem;
use crate::paths::PathSet;
use crate::redact::Redactor;
use crate::request_id::{ClientRequestId, RequestId};
use crate::route::MatchedRoute;
use crate::trace_context::{TraceContext, TraceId};

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
pub struct LogFields(Arc<Mutex<Vec<(String, serde_json::Value)>>>);

impl LogFields {
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
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The layer's own field (`headers`, a body), over a handler's of that name.
    fn set(&self, key: &str, value: serde_json::Value) {
        let mut fields = self.lock();
        match fields.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => fields.push((key.to_owned(), value)),
        }
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Runs `f` on the fields.
    pub(super) fn with<R>(&self, f: impl FnOnce(&[(String, serde_json::Value)]) -> R) -> R {
        f(&self.lock())
    }
}

/// The `fields` text of the request event: `key=value ...`, values in JSON.
struct Readable<'a>(&'a LogFields);

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

fn default_level(status: StatusCode) -> Level {
    if status.is_server_error() {
        Level::ERROR
    } else if status.is_client_error() {
        Level::WARN
    } else {
        Level::INFO
    }
}

#[derive(Clone)]
struct Config {
    redactor: Redactor,
    slow: Duration,
    watchdog: Option<Duration>,
    probes: PathSet,
    probe_level: Option<Level>,
    success_sample: f64,
    levels: LevelPolicy,
    headers: Vec<HeaderName>,
    capture: Option<usize>,
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
                redactor: Redactor::default(),
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

    /// Reads `SLOW_REQUEST_MS` (default 1000).
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let mut layer = Self::new();
        if let Some(slow) = config::ms("SLOW_REQUEST_MS", 0..=u64::MAX, &mut errors) {
            layer = layer.slow_after(slow);
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

    /// Logs only this fraction (0.0 to 1.0) of successful, fast requests. Errors,
    /// client errors and slow requests are always logged.
    pub fn sample_successes(self, fraction: f64) -> Self {
        self.with(|c| c.success_sample = fraction.clamp(0.0, 1.0))
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

/// The service made by [`RequestLogLayer`].
#[derive(Clone)]
pub struct RequestLog<S> {
    inner: S,
    /// `None`: switched off ([`Switchable`](crate::stack::Switchable)).
    config: Option<Arc<Config>>,
}

impl<S: fmt::Debug> fmt::Debug for RequestLog<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestLog")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> RequestLog<S> {
    define_inner_service_accessors!();
}

/// What is known of a request before its response.
struct Pending {
    config: Arc<Config>,
    start: Instant,
    method: Method,
    uri: Uri,
    request_id: Option<RequestId>,
    client_request_id: Option<RequestId>,
    client_ip: Option<ClientIp>,
    user_agent: Option<HeaderValue>,
    request_bytes: Option<u64>,
    headers: Option<serde_json::Value>,
    route: Option<MatchedRoute>,
    fields: LogFields,
    request_body: Option<BodyCapture>,
    span: Span,
    /// The effective trace id: incoming, or started by OpenTelemetry.
    trace_id: Option<TraceId>,
    probe: bool,
}

/// A request's log record, boxed once: the response future and then the
/// response body carry a pointer instead of the record itself, which keeps
/// every future above this layer smaller.
struct Record {
    pending: Pending,
    done: Option<Done>,
}

/// What is known once the response head is out.
struct Done {
    status: StatusCode,
    route: Option<MatchedRoute>,
    problem: Option<Problem>,
    response_bytes: u64,
    /// A copy of a JSON response body while it fits the capture limit.
    response_body: Option<Vec<u8>>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestLog<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: fmt::Display,
    ResBody: Body,
{
    type Response = Response<LogBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let Some(config) = &self.config else {
            return ResponseFuture {
                inner: Scoped::plain(self.inner.call(req)),
                record: None,
                watchdog: None,
                off: true,
            };
        };
        let start = Instant::now();
        let request_id = req.extensions().get::<RequestId>().cloned();
        let span = request_span(request_id.as_ref());
        let parent = TraceContext::from_headers(req.headers());
        #[cfg(feature = "otel")]
        let trace_id = crate::otel::server::start(&span, &req, parent.as_ref(), &config.redactor);
        #[cfg(not(feature = "otel"))]
        let trace_id = parent.map(|p| p.trace_id());
        if let Some(id) = trace_id {
            span.record("trace_id", tracing::field::display(id));
            req.extensions_mut().insert(id);
        }
        if let Some(parent) = parent {
            req.extensions_mut().insert(parent);
        }
        // The valid incoming `traceparent`, forwarded by outgoing requests when
        // no OpenTelemetry span stands in between.
        let incoming = parent;
        let fields = LogFields::default();
        super::format::attach(&span, &fields);
        req.extensions_mut().insert(fields.clone());
        let request_body = config.capture.map(|_| {
            let capture = BodyCapture::default();
            req.extensions_mut().insert(capture.clone());
            capture
        });
        let headers = (!config.headers.is_empty()).then(|| render_headers(config, req.headers()));
        let pending = Pending {
            config: config.clone(),
            start,
            method: req.method().clone(),
            uri: req.uri().clone(),
            client_request_id: req
                .extensions()
                .get::<ClientRequestId>()
                .map(|c| c.0.clone()),
            client_ip: req.extensions().get::<ClientIp>().copied(),
            user_agent: req.headers().get(USER_AGENT).cloned(),
            request_bytes: request_bytes(req.headers()),
            probe: config.probes.contains(req.uri().path()),
            route: MatchedRoute::of_request(&req),
            request_id,
            headers,
            fields,
            request_body,
            span,
            trace_id,
        };
        let watchdog = config
            .watchdog
            .map(|after| Box::pin(tokio::time::sleep(after)));
        // The trace id joins the request's context while the inner service is
        // called and polled.
        let inner = &mut self.inner;
        let inner = pending.span.in_scope(|| match trace_id {
            Some(id) => {
                let context = RequestContext::current().with_trace(id, incoming);
                let future = context.clone().sync_scope(|| inner.call(req));
                context.scope(future)
            }
            None => Scoped::plain(inner.call(req)),
        });
        ResponseFuture {
            inner,
            record: Some(Box::new(Record {
                pending,
                done: None,
            })),
            watchdog,
            off: false,
        }
    }
}

/// A captured body for the log line: redacted JSON, or a placeholder.
fn captured(redactor: &Redactor, body: &[u8], total: u64, limit: usize) -> serde_json::Value {
    if total > limit as u64 || body.len() as u64 != total {
        return serde_json::Value::String(format!("<body of {total} bytes not captured>"));
    }
    let redacted = redactor.redact_json_bytes(body);
    match redacted
        .as_json()
        .and_then(|j| serde_json::from_str(j).ok())
    {
        Some(value) => value,
        None => serde_json::Value::String(redacted.to_string()),
    }
}

/// The `request` span. With `otel` it is also the OpenTelemetry server span: the
/// kind can only be set here, as a field; name, status and attributes are set on
/// the OpenTelemetry span directly (`otel::server`), out of the log lines.
fn request_span(request_id: Option<&RequestId>) -> Span {
    macro_rules! span {
        ($($otel:tt)*) => {
            tracing::info_span!(
                target: "tower_ops::request",
                "request",
                request_id = request_id.map(RequestId::as_str),
                trace_id = tracing::field::Empty,
                $($otel)*
            )
        };
    }
    #[cfg(feature = "otel")]
    let span = span!(otel.kind = "server");
    #[cfg(not(feature = "otel"))]
    let span = span!();
    span
}

fn request_bytes(headers: &HeaderMap) -> Option<u64> {
    match headers.get(CONTENT_LENGTH) {
        Some(v) => v.to_str().ok()?.trim().parse().ok(),
        None => Some(0).filter(|_| !headers.contains_key(http::header::TRANSFER_ENCODING)),
    }
}

fn render_headers(config: &Config, headers: &HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for name in &config.headers {
        let values: Vec<serde_json::Value> = headers
            .get_all(name)
            .iter()
            .map(|v| serde_json::Value::String(config.redactor.redact_header(name, v).into_owned()))
            .collect();
        match values.len() {
            0 => {}
            1 => {
                map.insert(
                    name.as_str().to_owned(),
                    values.into_iter().next().unwrap_or_default(),
                );
            }
            _ => {
                map.insert(name.as_str().to_owned(), serde_json::Value::Array(values));
            }
        }
    }
    serde_json::Value::Object(map)
}

pin_project! {
    /// The response future of [`RequestLog`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Scoped<F>,
        record: Option<Box<Record>>,
        watchdog: Option<Pin<Box<tokio::time::Sleep>>>,
        // The layer is switched off: the response passes through unlogged.
        off: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                // Dropped before a response: the client went away (or an outer
                // timeout fired).
                emit(&record.pending, None, Outcome::Aborted);
            }
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    E: fmt::Display,
{
    type Output = Result<Response<LogBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if *this.off {
            return this.inner.poll(cx).map_ok(|response| {
                response.map(|inner| LogBody {
                    inner,
                    record: None,
                })
            });
        }
        let Some(pending) = this.record.as_ref().map(|r| &r.pending) else {
            return Poll::Pending;
        };
        let result = {
            let _enter = pending.span.enter();
            this.inner.poll(cx)
        };
        let result = match result {
            Poll::Ready(r) => r,
            Poll::Pending => {
                if let Some(w) = this.watchdog.as_mut()
                    && w.as_mut().poll(cx).is_ready()
                {
                    *this.watchdog = None;
                    let elapsed = pending.start.elapsed();
                    tracing::warn!(
                        target: "tower_ops::request",
                        parent: &pending.span,
                        method = pending.method.as_str(),
                        path = &*pending.config.redactor.redact_path_and_query(&pending.uri),
                        elapsed_ms = elapsed.as_micros() as f64 / 1000.0,
                        "request still in flight"
                    );
                }
                return Poll::Pending;
            }
        };
        let mut record = this.record.take().expect("checked above");
        match result {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let pending = &mut record.pending;
                if pending.request_id.is_none() {
                    pending.request_id = parts.extensions.get::<RequestId>().cloned();
                }
                record.done = Some(Done {
                    status: parts.status,
                    route: MatchedRoute::of_response(
                        &parts.extensions,
                        &parts.headers,
                        pending.route.as_ref(),
                    )
                    .cloned(),
                    problem: parts.extensions.get::<Problem>().cloned(),
                    response_bytes: 0,
                    response_body: pending
                        .config
                        .capture
                        .filter(|_| crate::media::is_json(&parts.headers))
                        .map(|_| Vec::new()),
                });
                let body = if body.is_end_stream() {
                    emit(&record.pending, record.done.as_ref(), Outcome::Completed);
                    LogBody {
                        inner: body,
                        record: None,
                    }
                } else {
                    LogBody {
                        inner: body,
                        record: Some(record),
                    }
                };
                Poll::Ready(Ok(Response::from_parts(parts, body)))
            }
            Err(error) => {
                emit(&record.pending, None, Outcome::Failed(&error));
                Poll::Ready(Err(error))
            }
        }
    }
}

pin_project! {
    /// The response body of [`RequestLog`]: counts bytes and logs the request when
    /// the body ends, or when it is dropped before its end (`aborted: true`).
    pub struct LogBody<B> {
        #[pin]
        inner: B,
        record: Option<Box<Record>>,
    }

    impl<B> PinnedDrop for LogBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                emit(&record.pending, record.done.as_ref(), Outcome::Aborted);
            }
        }
    }
}

/// An empty body that logs nothing, for layers that answer without calling the
/// inner service (tower-http's `Cors` answers preflights with `Default`).
impl<B: Default> Default for LogBody<B> {
    fn default() -> Self {
        Self {
            inner: B::default(),
            record: None,
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for LogBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B> Body for LogBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(record), Some(data)) = (this.record.as_mut(), f.data_ref())
                    && let Some(done) = record.done.as_mut()
                {
                    done.response_bytes += data.len() as u64;
                    let limit = record.pending.config.capture.unwrap_or(0);
                    if let Some(copy) = done.response_body.as_mut()
                        && copy.len() + data.len() <= limit
                    {
                        copy.extend_from_slice(data);
                    }
                }
                // Servers stop polling once `is_end_stream` says so, without
                // waiting for a final `None`: the body is complete here.
                if this.inner.is_end_stream()
                    && let Some(record) = this.record.take()
                {
                    emit(&record.pending, record.done.as_ref(), Outcome::Completed);
                }
            }
            Some(Err(error)) => {
                if let Some(record) = this.record.take() {
                    let message = error.to_string();
                    emit(
                        &record.pending,
                        record.done.as_ref(),
                        Outcome::BodyFailed(&message),
                    );
                }
            }
            None => {
                if let Some(record) = this.record.take() {
                    emit(&record.pending, record.done.as_ref(), Outcome::Completed);
                }
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An IP address as text on the stack: the line needs it as a `&str`, and
/// IPv4, the usual case, is written without `core::fmt`.
struct IpText {
    buf: [u8; 45],
    len: usize,
}

impl IpText {
    fn new(ip: std::net::IpAddr) -> Self {
        let mut text = Self {
            buf: [0; 45],
            len: 0,
        };
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            // At most 39 characters: always fits.
            std::net::IpAddr::V6(v6) => {
                let _ = fmt::Write::write_fmt(&mut text, format_args!("{v6}"));
            }
        }
        text
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Outcome<'a> {
    Completed,
    Aborted,
    Failed(&'a dyn fmt::Display),
    BodyFailed(&'a str),
}

fn emit(p: &Pending, done: Option<&Done>, outcome: Outcome<'_>) {
    emit_line(p, done, outcome);
    // The OpenTelemetry span gets its name and status once the line is out.
    #[cfg(feature = "otel")]
    crate::otel::server::finish(
        &p.span,
        &p.method,
        done.and_then(|d| d.route.as_ref()),
        done.map(|d| d.status),
        matches!(outcome, Outcome::Failed(_) | Outcome::BodyFailed(_)),
    );
}

/// The status that decides the level: the response's, or the rejection's when
/// the answer travels in a successful HTTP status (a gRPC call over its quota
/// gets HTTP 200 with `grpc-status: 8`, and is a 429 for the log).
fn level_status(status: StatusCode, problem: Option<&Problem>) -> StatusCode {
    match problem {
        Some(p) if p.status().as_u16() >= 400 && status.as_u16() < 400 => p.status(),
        _ => status,
    }
}

fn emit_line(p: &Pending, done: Option<&Done>, outcome: Outcome<'_>) {
    let duration = p.start.elapsed();
    let config = &p.config;
    let slow = duration >= config.slow;
    let status = done.map(|d| d.status);
    let problem = done.and_then(|d| d.problem.as_ref());
    let failed = !matches!(outcome, Outcome::Completed);
    let mut level = match status {
        Some(s) => (config.levels)(level_status(s, problem)),
        None => Level::WARN,
    };
    if matches!(outcome, Outcome::Failed(_) | Outcome::BodyFailed(_)) {
        level = Level::ERROR;
    }
    let server_error = status.is_some_and(|s| s.is_server_error());
    if p.probe && !server_error && !failed {
        match config.probe_level {
            Some(l) => level = l,
            None => return,
        }
    }
    if slow && level > Level::WARN {
        level = Level::WARN;
    }
    if level == Level::INFO
        && config.success_sample < 1.0
        && !slow
        && fastrand::f64() >= config.success_sample
    {
        return;
    }
    let path = config.redactor.redact_path_and_query(&p.uri);
    let route = done.and_then(|d| d.route.as_ref());
    let user_agent = p
        .user_agent
        .as_ref()
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    let error = match &outcome {
        Outcome::Failed(e) => Some(config.redactor.redact_text(&e.to_string()).into_owned()),
        Outcome::BodyFailed(e) => Some(config.redactor.redact_text(e).into_owned()),
        _ => None,
    };
    let client_ip = p.client_ip.map(|c| IpText::new(c.ip()));
    let mut hex = [0; 32];
    let trace_id = match p.trace_id {
        Some(id) => Some(id.encode(&mut hex)),
        None => problem.and_then(Problem::get_trace_id),
    };
    if let Some(headers) = &p.headers {
        p.fields.set("headers", headers.clone());
    }
    if let Some(limit) = config.capture {
        if let Some(body) = p.request_body.as_ref().and_then(BodyCapture::take) {
            let value = captured(&config.redactor, &body, body.len() as u64, limit);
            p.fields.set("request_body", value);
        }
        if let Some(d) = done
            && let Some(copy) = &d.response_body
            && d.response_bytes > 0
        {
            let value = captured(&config.redactor, copy, d.response_bytes, limit);
            p.fields.set("response_body", value);
        }
    }
    let method = p.method.as_str();
    let route = route.map_or("unmatched", MatchedRoute::as_str);
    let path: &str = &path;
    let status = status.map(|s| s.as_u16());
    let duration_ms = duration.as_micros() as f64 / 1000.0;
    let request_id = p.request_id.as_ref().map(RequestId::as_str);
    let client_request_id = p.client_request_id.as_ref().map(RequestId::as_str);
    let client_ip = client_ip.as_ref().map(IpText::as_str);
    let user_agent = user_agent.as_deref();
    let response_bytes = done.map(|d| d.response_bytes);
    let code = problem.map(|pr| pr.get_code().as_str());
    let rejected_by = problem.and_then(Problem::get_rejected_by);
    let slow = slow.then_some(true);
    let aborted = matches!(outcome, Outcome::Aborted).then_some(true);
    let error = error.as_deref();
    if !p.fields.is_empty() {
        // In `fields::LINE_FIELDS` order. The handler's fields are copied out
        // first: a formatter may read them from the span while the line is
        // written.
        let values: [Option<&dyn tracing::Value>; super::fields::LINE_FIELDS.len()] = [
            Some(&MESSAGE),
            Some(&method),
            Some(&route),
            Some(&path),
            Some(&status),
            Some(&duration_ms),
            Some(&request_id),
            Some(&client_request_id),
            Some(&client_ip),
            Some(&user_agent),
            Some(&p.request_bytes),
            Some(&response_bytes),
            Some(&trace_id),
            Some(&code),
            Some(&rejected_by),
            Some(&slow),
            Some(&aborted),
            Some(&error),
        ];
        let handler = p.fields.with(<[_]>::to_vec);
        if super::fields::emit(level, &p.span, &values, &handler) {
            return;
        }
    }
    // No handler fields, or no run-time callsite left for them: their text.
    let fields = (!p.fields.is_empty()).then(|| tracing::field::display(Readable(&p.fields)));
    macro_rules! event {
        ($lvl:expr) => {
            tracing::event!(
                target: "tower_ops::request",
                parent: &p.span,
                $lvl,
                method,
                route,
                path,
                status,
                duration_ms,
                request_id,
                client_request_id,
                client_ip,
                user_agent,
                request_bytes = p.request_bytes,
                response_bytes,
                trace_id,
                code,
                rejected_by,
                slow,
                aborted,
                error,
                { super::format::HANDLER_FIELDS } = fields,
                "request completed"
            )
        };
    }
    match level {
        Level::ERROR => event!(Level::ERROR),
        Level::WARN => event!(Level::WARN),
        Level::INFO => event!(Level::INFO),
        Level::DEBUG => event!(Level::DEBUG),
        _ => event!(Level::TRACE),
    }
}

/// The request line's message (the event macro above spells it too).
const MESSAGE: &str = "request completed";

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::IpText;

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)),
            IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 100, 9)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::new(
                0xffff, 1, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )),
            IpAddr::V6(Ipv4Addr::new(192, 168, 255, 255).to_ipv6_mapped()),
        ] {
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }

    proptest! {
        #[test]
        fn any_ip_text_matches_display(v4 in any::<u32>(), v6 in any::<u128>()) {
            let v4 = IpAddr::V4(Ipv4Addr::from(v4));
            let text = IpText::new(v4);
            prop_assert_eq!(text.as_str(), v4.to_string());
            let v6 = IpAddr::V6(Ipv6Addr::from(v6));
            let text = IpText::new(v6);
            prop_assert_eq!(text.as_str(), v6.to_string());
        }
    }
}
