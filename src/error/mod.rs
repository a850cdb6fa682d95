//! One error format everywhere: the [`Problem`] model, its renderers, the
//! [`ErrorLayer`] that turns panics, service errors and plain error responses into
//! problems, and axum extractors whose rejections are problems.
//!
//! Every response a tower-ops layer produces (413, 429, 504, panic 500s, ...) is a
//! rendering of a [`Problem`], and carries that `Problem` in its response extensions
//! with [`Problem::get_rejected_by`] naming the layer. The default rendering is
//! RFC 9457 `application/problem+json`:
//!
//! ```json
//! {"type":"about:blank","title":"Too Many Requests","status":429,
//!  "detail":"rate limit exceeded, retry in 3 s","code":"RATE_LIMITED",
//!  "request_id":"0192f5a4-...","timestamp":"2026-11-21T10:00:00.000Z"}
//! ```
//!
//! `ERROR_FORMAT=wrapped` (or [`Renderer::wrapped`]) renders
//! `{"success":false,"error":{"code","message","details","traceId","timestamp","requestId"}}`
//! instead, and [`RenderProblem`] plugs in a format of your own.
//!
//! For 5xx, clients see only the generic title and the problem's own `detail`; the
//! source error stays in [`Problem::source`] for the log, unless the development
//! switch [`Renderer::expose_internal`] is on.
//!
//! ```
//! use http::StatusCode;
//! use tower_ops::error::{FieldError, Problem, Renderer};
//!
//! let problem = Problem::validation([FieldError::pointer("/email", "not an email")]);
//! let body = Renderer::default().body(&problem);
//! let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(json["status"], 422);
//! assert_eq!(json["code"], "VALIDATION_FAILED");
//! assert_eq!(json["errors"][0]["pointer"], "/email");
//! ```
//!
//! # The error layer
//!
//! [`ErrorLayer`] makes every error response of the services below it a problem:
//!
//! - **Panics** while calling or polling the inner service become 500 `INTERNAL`
//!   (`rejected_by: "panic"`). The panic message is logged at error level with the
//!   request id and never reaches the client. (Panics in a body that is already
//!   streaming cannot be answered: the status line is gone.)
//! - **Service errors** become responses, so the layer works under axum without
//!   `HandleErrorLayer`: tower's `Elapsed` gives 504 `TIMEOUT`, `Overloaded` 503
//!   `SERVICE_UNAVAILABLE`, anything else 500 `INTERNAL`; the error chain is logged.
//! - **Plain error responses** (status >= 400, not JSON, no [`Problem`]): axum's
//!   plain-text rejections, its empty 404 and 405, any framework's text or HTML, are
//!   re-rendered with the same status and the usual [`Code`] for it. Headers keep
//!   their meaning (`Allow`, `Retry-After`, `WWW-Authenticate`, rate-limit headers,
//!   CORS, `x-request-id`); only those describing the old body go. A 4xx
//!   `text/plain` body of at most 1 KiB whose length is known becomes the `detail`;
//!   nothing else is ever read, so streaming bodies and success bodies are never
//!   buffered. A 5xx body is logged, not shown.
//! - **Problems rendered in another format** (by `Problem`'s `IntoResponse`, which
//!   uses the default renderer) are re-rendered in the layer's format, so
//!   `ERROR_FORMAT=wrapped` holds everywhere. A missing request id is filled in.
//! - JSON error bodies the application wrote itself are left alone.
//!
//! 5xx sources that reach the layer in a [`Problem`] (`Problem::internal(err)` in a
//! handler) are logged once at error level; clients see the generic title. Every
//! response the layer makes carries its `Problem` in the response extensions.
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use tower_ops::error::{ErrorLayer, Problem};
//!
//! async fn panics() -> &'static str {
//!     panic!("token=abc123")
//! }
//!
//! async fn fail() -> Result<String, Problem> {
//!     Err(Problem::internal(std::io::Error::other("db password=hunter2 refused")))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new()
//!     .route("/panic", get(panics))
//!     .route("/fail", get(fail))
//!     .layer(ErrorLayer::new());
//!
//! let res = app.clone().oneshot(Request::get("/panic").body(Body::empty())?).await?;
//! assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! let body = axum::body::to_bytes(res.into_body(), 4096).await?;
//! assert!(!String::from_utf8_lossy(&body).contains("abc123"));
//!
//! let res = app.clone().oneshot(Request::get("/fail").body(Body::empty())?).await?;
//! let body = axum::body::to_bytes(res.into_body(), 4096).await?;
//! assert!(!String::from_utf8_lossy(&body).contains("hunter2"));
//!
//! // axum's empty 404 and plain-text 405 become problems too.
//! let res = app.oneshot(Request::delete("/fail").body(Body::empty())?).await?;
//! assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
//! assert_eq!(res.headers()["allow"], "GET,HEAD");
//! let json: serde_json::Value =
//!     serde_json::from_slice(&axum::body::to_bytes(res.into_body(), 4096).await?)?;
//! assert_eq!(json["code"], "METHOD_NOT_ALLOWED");
//! # Ok(())
//! # }
//! # }
//! ```
//!
//! Its error type is [`Infallible`](std::convert::Infallible), unlike the other
//! tower-ops layers (which keep `Error = S::Error`): answering errors is its job.
//! tower middleware that fails with errors goes inside it, with no
//! `HandleErrorLayer`:
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use tower::ServiceBuilder;
//! use tower_ops::error::{ErrorLayer, Renderer};
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(ErrorLayer::new().renderer(Renderer::wrapped()))
//!             .load_shed()
//!             .concurrency_limit(256)
//!             .timeout(Duration::from_secs(10)),
//!     );
//! # }
//! ```
//!
//! [`ErrorLayer::from_env`] reads `ERROR_FORMAT`. In the canonical stack it sits
//! inside the request id, log and metrics layers, so its answers carry the id and
//! are logged and counted like any other.
//!
//! # Error reports (Sentry and other trackers)
//!
//! [`ErrorLayer::reporter`] (or
//! [`Stack::error_reporter`](crate::stack::Stack::error_reporter)) takes an
//! [`ErrorReporter`]: a hook of yours, called once for each 5xx [`Problem`] and
//! each panic the layer answers, never for 4xx. Each [`ErrorReport`] holds the
//! problem (with its source error), the redacted request head and request id,
//! the redacted error chain, and for panics the message and the location. The
//! hook runs on a thread of its own, behind a bounded queue: the response never
//! waits for it, a slow hook only delays later reports (or drops them when the
//! queue is full, counted), and a panicking hook loses only its own report. See
//! [`ErrorReporter`] for the whole contract and why.
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use std::sync::mpsc;
//! use std::time::Duration;
//! use axum::{Router, body::Body, routing::get};
//! use http::Request;
//! use tower::ServiceExt;
//! use tower_ops::error::{ErrorLayer, ErrorReport, ErrorReporter, Problem};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (tx, reports) = mpsc::channel();
//! let reporter = ErrorReporter::new(move |report: ErrorReport| {
//!     // A tracker's client goes here; this one hands the report back.
//!     let _ = tx.send(report);
//! });
//! let app = Router::new()
//!     .route("/fail", get(|| async {
//!         Err::<(), _>(Problem::internal(std::io::Error::other("db refused, password=hunter2")))
//!     }))
//!     .route("/missing", get(|| async { Err::<(), _>(Problem::not_found()) }))
//!     .layer(ErrorLayer::new().for_axum().reporter(reporter.clone()));
//!
//! let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(get("/missing")).await?.status(), 404);
//! assert_eq!(app.oneshot(get("/fail?token=abc")).await?.status(), 500);
//!
//! assert!(reporter.flush(Duration::from_secs(5)));
//! let report = reports.try_recv()?; // one report: the 404 gave none
//! assert!(reports.try_recv().is_err());
//! assert_eq!(report.request().uri(), "/fail?token=[REDACTED]");
//! assert_eq!(report.error_chain(), ["db refused, password=[REDACTED]"]);
//! # Ok(())
//! # }
//! # }
//! ```
//!
//! Panic locations come from a panic hook: the one
//! [`log::init_from_env`](crate::log::init_from_env) installs notes them, and
//! [`capture_panic_locations`] does it for applications with a logging set-up
//! of their own.
//!
//! ## With `sentry-tower`
//!
//! The stack composes with Sentry's own tower layers. Put them outside the
//! stack, so that the hub Sentry binds for each request is in place for every
//! tower-ops layer, and the transaction sees the status the error layer
//! answered with. Sentry's panic integration reports panics from its panic hook,
//! with the request's hub: initialise Sentry *after* tower-ops logging, so that
//! its hook wraps the one logging installs instead of being replaced by it. The
//! tower-ops error layer still turns the panic into a 500 problem.
//!
//! ```ignore
//! let _log = tower_ops::log::init_from_env()?;
//! let _sentry = sentry::init(sentry::ClientOptions::default()); // after logging
//! let stack = Stack::from_env()?.for_axum();
//! let app = Router::new()
//!     .route("/users/{id}", get(user))
//!     .merge(stack.routes())
//!     .layer(CaptureRouteLayer::new())
//!     .layer(stack)
//!     .layer(sentry_tower::SentryHttpLayer::new().enable_transaction())
//!     .layer(sentry_tower::NewSentryLayer::<Request<Body>>::new_from_top());
//! ```
//!
//! `sentry-tower` does not report 5xx answers that are not panics
//! (`Problem::internal(err)` in a handler, a failing dependency). To send those
//! too, give the stack an [`ErrorReporter`] whose hook builds a Sentry event from
//! the report (status, code, request id as a tag, the redacted head, the error
//! chain) and captures it on the main hub (the hook runs off the request's
//! task); skip reports with a [`panic`](ErrorReport::panic) so that panics are
//! not reported twice.
//!
//! # Extractors (feature `axum`)
//!
//! [`Json`], [`Query`], [`Path`] and [`Form`] are used like axum's, but reject with
//! problems: 415 for a missing or wrong `content-type`, 413 over axum's body limit,
//! 400 for malformed JSON (with line and column), and `VALIDATION_FAILED` with an
//! `errors` entry pointing at the offending field where serde can tell (a JSON
//! `pointer` for bodies, a `field` for query, form and path parameters).
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{Router, body::Body, routing::post};
//! use http::{Request, StatusCode};
//! use serde::Deserialize;
//! use tower::ServiceExt;
//! use tower_ops::error::Json;
//!
//! #[derive(Deserialize)]
//! struct Signup {
//!     email: String,
//!     age: u8,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app: Router = Router::new().route(
//!     "/signup",
//!     post(|Json(s): Json<Signup>| async move { format!("{} ({})", s.email, s.age) }),
//! );
//! let req = Request::post("/signup")
//!     .header("content-type", "application/json")
//!     .body(Body::from(r#"{"email":"a@b.c","age":300}"#))?;
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
//! let json: serde_json::Value =
//!     serde_json::from_slice(&axum::body::to_bytes(res.into_body(), 4096).await?)?;
//! assert_eq!(json["code"], "VALIDATION_FAILED");
//! assert_eq!(json["errors"][0]["pointer"], "/age");
//! # Ok(())
//! # }
//! # }
//! ```
//!
//! Path parameters that do not parse answer 400, not 404: the client sent a
//! malformed address it can fix, and a handler's own 404 keeps meaning "no such
//! resource".

#[cfg(feature = "axum")]
mod extract;
mod future;
mod layer;
mod log;
mod problem;
mod report;
mod shadow;

#[cfg(feature = "axum")]
pub use self::extract::{Form, Json, Path, Query};
pub use self::future::ResponseFuture;
pub use self::layer::{ErrorEnvelope, ErrorLayer};

/// The old name of [`ErrorEnvelope`].
#[deprecated(note = "renamed to `ErrorEnvelope`, after the `X<S>` naming of the other services")]
pub type ErrorService<S, M = crate::body::AnyBody> = ErrorEnvelope<S, M>;
pub(crate) use self::log::for_log;
pub(crate) use self::problem::RenderMark;
pub use self::problem::{Code, FieldError, Location, Problem};
pub use self::report::{
    DEFAULT_REPORT_QUEUE, ErrorReport, ErrorReporter, PanicLocation, PanicReport, ReportError,
    RequestHead, capture_panic_locations,
};
pub use self::shadow::ShadowRejection;
pub use crate::respond::{ErrorFormat, RenderProblem, Renderer};

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Problem {
    /// Renders with the default renderer (problem+json).
    fn into_response(self) -> axum::response::Response {
        Renderer::default()
            .response::<axum::body::Body>(self)
            .map(axum::body::Body::new)
    }
}
