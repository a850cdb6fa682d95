//! The service: what is known of a request when it arrives, and its call.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;

use http::header::{CONTENT_LENGTH, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use tower_service::Service;
use tracing::Span;

use super::future::*;
use super::layer::*;
use super::sample::LogSample;
use crate::body::BodyCapture;
use crate::client_ip::ClientIp;
use crate::context::{RequestContext, Scoped};
use crate::error::{Problem, ShadowRejection};
use crate::redact::Redactor;
use crate::request_id::{ClientRequestId, RequestId};
use crate::route::MatchedRoute;
use crate::trace_context::{TraceContext, TraceId};

/// The service made by [`RequestLogLayer`].
#[derive(Clone)]
pub struct RequestLog<S> {
    pub(super) inner: S,
    /// `None`: switched off ([`Switchable`](crate::stack::Switchable)).
    pub(super) config: Option<Arc<Config>>,
}

impl<S: fmt::Debug> fmt::Debug for RequestLog<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestLog")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> RequestLog<S> {
    /// A layer with the defaults: [`RequestLogLayer::new`].
    pub fn layer() -> RequestLogLayer {
        RequestLogLayer::new()
    }

    define_inner_service_accessors!();
}

/// What is known of a request before its response.
pub(super) struct Pending {
    pub(super) config: Arc<Config>,
    pub(super) start: Instant,
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) request_id: Option<RequestId>,
    pub(super) client_request_id: Option<RequestId>,
    pub(super) client_ip: Option<ClientIp>,
    pub(super) user_agent: Option<HeaderValue>,
    pub(super) request_bytes: Option<u64>,
    pub(super) headers: Option<serde_json::Value>,
    pub(super) route: Option<MatchedRoute>,
    pub(super) fields: LogFields,
    pub(super) request_body: Option<BodyCapture>,
    pub(super) span: Span,
    /// The effective trace id: incoming, or started by OpenTelemetry.
    pub(super) trace_id: Option<TraceId>,
    pub(super) probe: bool,
    /// Whether an ordinary success gets its line.
    pub(super) sample: LogSample,
}

/// A request's log record, boxed once: the response future and then the
/// response body carry a pointer instead of the record itself, which keeps
/// every future above this layer smaller.
pub(super) struct Record {
    pub(super) pending: Pending,
    pub(super) done: Option<Done>,
}

/// What is known once the response head is out.
pub(super) struct Done {
    pub(super) status: StatusCode,
    pub(super) route: Option<MatchedRoute>,
    pub(super) problem: Option<Problem>,
    pub(super) shadow: Option<ShadowRejection>,
    pub(super) response_bytes: u64,
    /// A copy of a JSON response body while it fits the capture limit.
    pub(super) response_body: Option<Vec<u8>>,
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
        // The sampling decision travels with the fields: the handler reads it
        // there, at no allocation of its own.
        let sample = LogSample::draw(config.success_sample);
        let fields = LogFields::sampled(sample);
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
            sample,
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
pub(super) fn captured(
    redactor: &Redactor,
    body: &[u8],
    total: u64,
    limit: usize,
) -> serde_json::Value {
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
pub(super) fn request_span(request_id: Option<&RequestId>) -> Span {
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

pub(super) fn request_bytes(headers: &HeaderMap) -> Option<u64> {
    match headers.get(CONTENT_LENGTH) {
        Some(v) => v.to_str().ok()?.trim().parse().ok(),
        None => Some(0).filter(|_| !headers.contains_key(http::header::TRANSFER_ENCODING)),
    }
}

pub(super) fn render_headers(config: &Config, headers: &HeaderMap) -> serde_json::Value {
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
