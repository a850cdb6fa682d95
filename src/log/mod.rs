//! One safe, structured line per request, and the logging set-up behind it.
//!
//! [`RequestLogLayer`] emits exactly one event per request, when it completes
//! (after the last byte of the response body), with the fields of the request log
//! contract at the root of the JSON line:
//!
//! ```json
//! {"timestamp":"2026-11-21T10:00:00.123456Z","level":"INFO","message":"request completed",
//!  "target":"tower_ops::request","method":"GET","route":"/users/{id}","path":"/users/42?token=[REDACTED]",
//!  "status":200,"duration_ms":0.412,"request_id":"0192f5a4-...","client_ip":"203.0.113.9",
//!  "user_agent":"curl/8.5.0","request_bytes":0,"response_bytes":26}
//! ```
//!
//! - Requests rejected by other layers are logged like any other, with `code` and
//!   `rejected_by` read from the response's [`Problem`](crate::error::Problem).
//! - A request whose client went away is logged once, with `aborted: true`.
//! - Level: 5xx `error`, 4xx `warn`, otherwise `info`; requests slower than
//!   `SLOW_REQUEST_MS` get `slow: true` and at least `warn`.
//! - The query string is redacted by a [`Redactor`](crate::redact::Redactor); the
//!   user agent and every other value is escaped, so a hostile value cannot break
//!   the line.
//! - The inner service runs inside a `request` span carrying `request_id`, so every
//!   event a handler logs has `request_id` at the root of its line too.
//! - Probe routes (`/health/*`, `/metrics`) are logged at debug, or not at all.
//! - Sampling ([`RequestLogLayer::sample_successes`], `LOG_SAMPLE_RATE`) keeps a
//!   fraction of the ordinary successes and every other request; the decision is
//!   drawn before the handler runs, handed to it as a [`LogSample`], and lines
//!   written under a rate below 1 carry `sample_rate`.
//! - A request a limit in shadow mode would have refused carries
//!   `shadow_rejected_by` and `shadow_policy`, read from the response's
//!   [`ShadowRejection`](crate::error::ShadowRejection).
//! - Handlers add fields to their line through [`LogFields`].
//!
//! # Set-up
//!
//! [`init_from_env`] installs a subscriber that writes JSON lines (or pretty lines on
//! a terminal) through the batching [`LogWriter`], honouring `LOG_FORMAT`,
//! `LOG_LEVEL`, `RUST_LOG` and `LOG_MAX_FIELD_BYTES`, and a panic hook that makes
//! each panic one ERROR event. [`LogWriter`] also works on its own, under a `fmt`
//! layer of the user's. Its JSON formatter, [`JsonLayer`], writes the fields of enclosing
//! spans at the root of each line, once.
//!
//! The filter can be changed while the process runs: [`LogFilter`] reads and
//! swaps it at once ([`LogGuard::filter`], or [`LogFilter::installed`]), which is
//! what the token-protected [admin routes](crate::admin) do. A subscriber of your
//! own gets the same with a [`LogFilterLayer`] in place of its `EnvFilter`.
//!
//! ```
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ops::log::RequestLogLayer;
//! use tower_ops::request_id::RequestIdLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // In `main`: let _guard = tower_ops::log::init_from_env()?;
//! let service = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new())
//!     .layer(RequestLogLayer::new())
//!     .service(service_fn(|_req: Request<String>| async {
//!         tracing::info!("inside the handler: this line carries request_id too");
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("hi")))
//!     }));
//! let response = service.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # }
//! ```
//!
//! # Your own subscriber
//!
//! The layers need no set-up of this module: they log through `tracing`, so
//! they work under whatever subscriber the application installs. Under
//! tracing-subscriber's `fmt().json()`:
//!
//! - the request line is an event with target `tower_ops::request` and message
//!   `request completed`; its fields (the contract's, and a handler's
//!   [`LogFields`] as real fields, numbers as numbers) are under `"fields"`;
//! - `request_id` and `trace_id` are fields of the request's span, so `fmt`
//!   writes them under `"span"` and `"spans"` on the request line, on the lines a
//!   handler logs, and on lines logged in a task started with
//!   [`request_id::spawn`](crate::request_id::spawn).
//!
//! `examples/own_subscriber.rs` is such a service. For every field at the root of
//! each line, as the contract shows it, add [`JsonLayer`] to your registry in place
//! of the `fmt` layer, next to your filter and other layers; give it a
//! [`LogWriter`] so lines are written in batches:
//!
//! ```
//! use tracing_subscriber::EnvFilter;
//! use tracing_subscriber::layer::SubscriberExt;
//! use tower_ops::log::{JsonLayer, LogWriter};
//!
//! let (writer, _guard) = LogWriter::builder().stdout(); // keep the guard in `main`
//! let subscriber = tracing_subscriber::registry()
//!     .with(EnvFilter::new("info"))
//!     .with(JsonLayer::new(writer));
//! // tracing::subscriber::set_global_default(subscriber)?;
//! # tracing::subscriber::with_default(subscriber, || tracing::info!(user = 7, "hello"));
//! ```

mod fields;
mod filter;
pub(crate) mod format;
mod future;
mod init;
mod layer;
mod line;
mod panic;
mod sample;
mod service;
mod writer;

pub use self::filter::{FilterError, LogFilter, LogFilterLayer};
pub use self::format::JsonLayer;
pub use self::future::{LogBody, ResponseFuture};
pub use self::init::{
    DroppedLines, LogBuilder, LogDestination, LogFormat, LogGuard, LogInitError, init_from_env,
};
pub use self::layer::{BodyCapture, LevelPolicy, LogFields, RequestLogLayer};
pub use self::sample::LogSample;
pub use self::service::RequestLog;
pub use self::writer::{LogWriter, LogWriterBuilder, WriterGuard};
