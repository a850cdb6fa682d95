//! RED metrics on `prometheus-client`: request durations, active requests, body
//! sizes and rejections, with bounded label sets, plus a safe `/metrics` endpoint.
//!
//! [`MetricsLayer`] registers these in a [`Registry`] you own (no global state; any
//! number of layers and registries may live in one process):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `http_server_request_duration_seconds` | histogram, OpenTelemetry buckets 5 ms to 10 s | `http_request_method`, `http_route`, `http_response_status_code` |
//! | `http_server_request_body_size_bytes` | histogram | same |
//! | `http_server_response_body_size_bytes` | histogram | same |
//! | `http_server_active_requests` | gauge | `http_request_method` |
//! | `http_server_rejections_total` | counter | `rejected_by`, `code` (from the response's [`Problem`](crate::error::Problem)) |
//! | `http_server_shadow_rejections_total` | counter | `rejected_by`, `code` (from the response's [`ShadowRejection`](crate::error::ShadowRejection): a limit in shadow mode would have refused it, and it was served) |
//! | `http_server_series_overflow_total` | counter | none |
//!
//! Labels cannot explode:
//! - `http_route` is the route template from the
//!   [`MatchedRoute`](crate::route::MatchedRoute) response extension, never the
//!   path; every request no route matched shares the value `unmatched`.
//! - Methods outside RFC 9110 and PATCH become `_OTHER`.
//! - Past [`max_series`](MetricsLayerBuilder::max_series) distinct label sets
//!   (10,000 by default; the rejection counters' label sets count too), new ones
//!   are folded into one overflow series and `http_server_series_overflow_total`
//!   counts them.
//!
//! The duration runs until the response body has been sent (or dropped), and the
//! active requests gauge goes down whatever ends the request: end of body, client
//! disconnect, timeout or panic. With [`exemplar`](MetricsLayerBuilder::exemplar),
//! duration buckets carry the request's `trace_id` as an OpenMetrics exemplar.
//! Probes and `/metrics` itself can be left out with
//! [`skip_paths`](MetricsLayerBuilder::skip_paths).
//!
//! [`MetricsExporter`] answers with OpenMetrics text
//! (`application/openmetrics-text; version=1.0.0; charset=utf-8`), behind a bearer
//! token when `METRICS_TOKEN` is set, and [`ProcessCollector`] adds CPU, memory,
//! file descriptor and start time metrics on Linux.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use tower_ops::metrics::{MetricsExporter, MetricsLayer};
//! use tower_ops::route::CaptureRouteLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (metrics, registry) = MetricsLayer::builder()
//!     .skip_paths(["/health/*", "/metrics"])
//!     .build();
//! let exporter = MetricsExporter::new(registry).bearer_token("s3cr3t");
//!
//! let app = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(CaptureRouteLayer::new()) // inside: sees the matched route
//!     .merge(exporter.into_router())
//!     .layer(metrics); // outside: sees every request
//!
//! let res = app.clone().oneshot(Request::get("/users/7").body(Body::empty())?).await?;
//! res.into_body().collect().await?; // the duration ends with the body
//!
//! let scrape = Request::get("/metrics")
//!     .header("authorization", "Bearer s3cr3t")
//!     .body(Body::empty())?;
//! let res = app.clone().oneshot(scrape).await?;
//! assert_eq!(
//!     res.headers()["content-type"],
//!     "application/openmetrics-text; version=1.0.0; charset=utf-8"
//! );
//! let text = String::from_utf8(res.into_body().collect().await?.to_bytes().to_vec())?;
//! assert!(text.contains(
//!     r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/users/{id}",http_response_status_code="200"} 1"#
//! ));
//! assert!(text.ends_with("# EOF\n"));
//!
//! // Without the token: a 401 problem.
//! let res = app.oneshot(Request::get("/metrics").body(Body::empty())?).await?;
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers()["www-authenticate"], "Bearer");
//! # Ok(())
//! # }
//! ```
//!
//! # Placement
//!
//! Put the layer *outside* the router (or with `Router::layer` after every route)
//! and [`CaptureRouteLayer`](crate::route::CaptureRouteLayer) *inside* it with
//! `Router::layer`: the outer layer sees 404s too, and reads the template the inner
//! one leaves on the response. In the canonical stack it sits below the request log
//! and above the error, timeout, rate limit and body limit layers, so their
//! rejections are counted with their status and `rejected_by`.
//!
//! # Exemplars
//!
//! ```
//! use prometheus_client::registry::Registry;
//! use tower_ops::metrics::MetricsLayer;
//!
//! let mut registry = Registry::default();
//! let metrics = MetricsLayer::builder()
//!     .exemplar(|parts| {
//!         let header = parts.headers.get("traceparent")?.to_str().ok()?;
//!         Some(header.split('-').nth(1)?.to_owned())
//!     })
//!     .register(&mut registry);
//! # let _ = metrics;
//! ```
//!
//! Prometheus stores exemplars only with `--enable-feature=exemplar-storage` and
//! when it scrapes OpenMetrics, which the exporter always serves.
//!
//! # Your own metrics
//!
//! Register them in the same registry, through the re-exported
//! [`prometheus_client`], before the exporter is mounted:
//! [`MetricsExporter::registry_mut`], or
//! [`Stack::metrics_registry_mut`](crate::stack::Stack::metrics_registry_mut)
//! with the canonical stack.
//!
//! ```
//! use tower_ops::metrics::prometheus_client::metrics::counter::Counter;
//! use tower_ops::metrics::{MetricsExporter, MetricsLayer};
//!
//! let (metrics, mut registry) = MetricsLayer::builder().build();
//! let orders = Counter::<u64>::default();
//! registry.register("orders", "Orders placed", orders.clone());
//! let exporter = MetricsExporter::new(registry); // /metrics shows orders_total
//! orders.inc();
//! # let _ = (metrics, exporter);
//! ```
//!
//! # Cost
//!
//! The label set of a response is found without hashing any label text: a small
//! map keyed by the address of the route template, the method index and the status
//! gives the cached histogram handles. Only the first request of a label set takes
//! the slow path that builds the labels.

mod exporter;
mod labels;
mod layer;
mod process;
mod service;

pub use self::exporter::{ExporterBody, MetricsExporter, OPENMETRICS_CONTENT_TYPE};
pub use self::layer::{
    DEFAULT_DURATION_BUCKETS, DEFAULT_MAX_SERIES, DEFAULT_SIZE_BUCKETS, DEFAULT_UNMATCHED_ROUTE,
    MetricsLayer, MetricsLayerBuilder, OVERFLOW_ROUTE,
};
pub use self::process::ProcessCollector;
pub use self::service::{Metrics, MetricsBody, ResponseFuture};

#[doc(no_inline)]
pub use prometheus_client::registry::Registry;

/// The `prometheus-client` crate this module is built on, re-exported so that
/// metrics of your own register into the stack's [`Registry`] with the same
/// version of the crate (a second version in the dependency tree makes
/// `Registry::register` fail to compile with E0277).
pub use prometheus_client;

#[cfg(test)]
mod tests;
