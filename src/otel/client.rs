use std::task::{Context, Poll};

use http::{HeaderValue, Request};
use opentelemetry::global;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::HeaderInjector;
use tower_layer::Layer;
use tower_service::Service;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::request_id::{self, RequestId};
use crate::trace_context::{SpanId, TRACEPARENT, TraceContext, TraceId};

const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Adds `traceparent`, `tracestate` (and baggage, with the installed propagators)
/// and `x-request-id` to outgoing requests of an HTTP client, from the current
/// `tracing` span and [`request_id::current()`](crate::request_id::current).
///
/// Without an OpenTelemetry span to send (the OpenTelemetry layer is not
/// installed, say), the `traceparent` the current request came with is forwarded
/// unchanged, so the trace id survives the hop; [`RequestLogLayer`] keeps it for
/// the request's future. `tracestate` and baggage are sent only from an
/// OpenTelemetry context.
///
/// [`RequestLogLayer`]: crate::log::RequestLogLayer
///
/// An `x-request-id` the caller set is kept. See the [module docs](super) for an
/// example.
#[derive(Clone, Copy, Debug, Default)]
pub struct PropagateContextLayer {
    _priv: (),
}

impl PropagateContextLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for PropagateContextLayer {
    type Service = PropagateContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateContext { inner }
    }
}

/// The service made by [`PropagateContextLayer`].
#[derive(Clone, Debug)]
pub struct PropagateContext<S> {
    inner: S,
}

impl<S> PropagateContext<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The layer.
    pub fn layer() -> PropagateContextLayer {
        PropagateContextLayer::new()
    }

    define_inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for PropagateContext<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        inject(req.headers_mut());
        self.inner.call(req)
    }
}

/// Writes the current context into `headers`.
fn inject(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
    // Without the global propagators installed, still send a W3C traceparent
    // (unless they were installed without it on purpose).
    if super::trace_context_on() && !headers.contains_key(TRACEPARENT) {
        let span = cx.span();
        let sc = span.span_context();
        let ours = match (
            TraceId::from_bytes(sc.trace_id().to_bytes()),
            SpanId::from_bytes(sc.span_id().to_bytes()),
        ) {
            (Some(trace), Some(span)) => {
                Some(TraceContext::new(trace, span, sc.trace_flags().to_u8()))
            }
            _ => None,
        };
        // No OpenTelemetry span here (its layer is not installed, or the
        // request is not sampled into one): forward the incoming context as it
        // came, so the trace id survives the hop.
        if let Some(tc) = ours.or_else(crate::trace_context::incoming) {
            headers.insert(TRACEPARENT, tc.to_header_value());
        }
    }
    if !headers.contains_key(X_REQUEST_ID)
        && let Some(id) = request_id::current()
        && let Ok(value) = HeaderValue::from_str(RequestId::as_str(&id))
    {
        headers.insert(X_REQUEST_ID, value);
    }
}
