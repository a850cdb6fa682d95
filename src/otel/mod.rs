//! OpenTelemetry tracing (feature `otel`): OTLP export, W3C trace context in and
//! out, and one trace id in spans, logs and error envelopes.
//!
//! - [`init_from_env`] (or [`OtelBuilder`]) installs a tracer provider exporting
//!   over OTLP (gRPC by default, HTTP/protobuf as an option) when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the W3C trace-context and baggage
//!   propagators, and our logging with the OpenTelemetry layer in the same
//!   subscriber. The protocol, timeout and header variables (and their
//!   `TRACES` variants), `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//!   `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_PROPAGATORS` and
//!   `OTEL_SDK_DISABLED` are honoured ([`OtelBuilder::from_env`]). Without an
//!   endpoint nothing is exported, but trace ids are still made and propagated.
//! - [`RequestLogLayer`](crate::log::RequestLogLayer)'s `request` span becomes the
//!   server span: a child of the incoming `traceparent`, named `{method} {route}`,
//!   with `http.request.method`, `http.route`, `http.response.status_code`,
//!   `url.path`, `url.query` (redacted), `url.scheme`, `client.address`,
//!   `user_agent.original`, `network.protocol.version` and `error.type`; its
//!   status is an error only for 5xx responses and failures. Its trace id is in
//!   the `request completed` line, in [`Problem`](crate::error::Problem) envelopes
//!   and in the [`trace_context::TraceId`](crate::trace_context::TraceId) request extension (for
//!   metric exemplars).
//! - [`PropagateContextLayer`] sends the context on with a service's outgoing
//!   requests (`traceparent`, `tracestate`, `x-request-id`).
//! - The OpenTelemetry crates this was built against are re-exported
//!   ([`opentelemetry`], [`opentelemetry_sdk`], [`opentelemetry_otlp`],
//!   [`tracing_opentelemetry`]): use them rather than your own copies so that
//!   versions never mix.
//!
//! # The filter must let the request span through
//!
//! The span is created at `info` with target `tower_ops::request`. A filter that
//! drops it (`LOG_LEVEL=warn`, say) drops the server span and its parent: keep
//! `tower_ops::request=info` in the directives, for example
//! `LOG_LEVEL=warn,tower_ops::request=info` (request lines are then logged at
//! info as well).
//!
//! # Exporting and shutting down
//!
//! Exports run on a small runtime on a thread of their own, so they work on any
//! application runtime and [`OtelGuard::shutdown`] flushes pending spans without
//! depending on (or hanging) the application's runtime. The exporter speaks plain
//! HTTP/2 (gRPC) or HTTP/1.1 to a collector; for TLS to a gRPC endpoint, enable one
//! of `opentelemetry-otlp`'s `tls-*` features in your own manifest.
//!
//! ```no_run
//! # async fn serve() {}
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // JSON logs plus OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set.
//!     let otel = tower_ops::otel::init_from_env()?;
//!     serve().await;
//!     otel.shutdown()?; // flushes the spans still queued
//!     Ok(())
//! }
//! ```
//!
//! # One trace across services
//!
//! ```
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ops::log::RequestLogLayer;
//! use tower_ops::otel::{OtelBuilder, PropagateContextLayer};
//! use tower_ops::trace_context::{TraceContext, TraceId};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // No endpoint: ids and propagation, no export.
//! let otel = OtelBuilder::new().service_name("front").build()?;
//! let subscriber = tracing_subscriber::registry().with(otel.layer());
//! let _default = tracing::subscriber::set_default(subscriber);
//!
//! // The downstream service echoes the traceparent it received.
//! let downstream = service_fn(|req: Request<String>| async move {
//!     let tp = req.headers()["traceparent"].to_str().unwrap_or_default().to_owned();
//!     Ok::<_, std::convert::Infallible>(Response::new(tp))
//! });
//! let client = ServiceBuilder::new().layer(PropagateContextLayer::new()).service(downstream);
//!
//! let server = ServiceBuilder::new()
//!     .layer(RequestLogLayer::new())
//!     .service(service_fn(move |req: Request<String>| {
//!         let client = client.clone();
//!         async move {
//!             let ours = req.extensions().get::<TraceId>().copied();
//!             let sent = client.oneshot(Request::new(String::new())).await?.into_body();
//!             let sent = TraceContext::parse(sent.as_bytes()).map(|tc| tc.trace_id());
//!             assert_eq!(sent, ours);
//!             let body = sent.map(|t| t.to_string()).unwrap_or_default();
//!             Ok::<_, std::convert::Infallible>(Response::new(body))
//!         }
//!     }));
//!
//! let request = Request::builder()
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(String::new())?;
//! let response = server.oneshot(request).await?;
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "4bf92f3577b34da6a3ce929d0e0e4736");
//! # Ok(())
//! # }
//! ```

mod client;
mod http_client;
mod init;
mod runtime;
pub(crate) mod server;

pub use self::client::{PropagateContext, PropagateContextLayer};
pub use self::init::{
    OtelBuilder, OtelGuard, OtelInitError, Propagators, PropagatorsError, Protocol, Sampler,
    init_from_env,
};

pub use opentelemetry;
pub use opentelemetry_otlp;
pub use opentelemetry_sdk;
pub use tracing_opentelemetry;

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::trace_context::TraceId;

/// Set when an [`OtelBuilder`] installs propagators without W3C trace context.
static TRACE_CONTEXT_OFF: AtomicBool = AtomicBool::new(false);

fn set_trace_context(on: bool) {
    TRACE_CONTEXT_OFF.store(!on, Ordering::Relaxed);
}

/// False only when the installed propagators leave W3C trace context out
/// (`OTEL_PROPAGATORS` without `tracecontext`).
pub(crate) fn trace_context_on() -> bool {
    !TRACE_CONTEXT_OFF.load(Ordering::Relaxed)
}

/// The trace id of the current `tracing` span's OpenTelemetry context, if valid.
pub(crate) fn current_span_trace_id() -> Option<TraceId> {
    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let cx = span.context();
    let otel_span = cx.span();
    let sc = otel_span.span_context();
    if sc.is_valid() {
        TraceId::from_bytes(sc.trace_id().to_bytes())
    } else {
        None
    }
}
