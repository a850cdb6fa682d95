//! Token-protected operator routes: the process's log filter, read and changed
//! while it runs.
//!
//! [`AdminRoutes`] exists only when an operator token is set (`ADMIN_TOKEN`,
//! through [`AdminRoutes::from_env`]); without one there is nothing to mount,
//! and the paths answer 404 like any unknown path. Mounted next to `/metrics`,
//! the routes answer:
//!
//! | request | answer |
//! |---|---|
//! | `GET /admin/log-level` | 200 `{"filter":"<directives>"}` |
//! | `PUT /admin/log-level` with `{"filter":"<directives>"}` | 200 `{"filter":"<new>","previous":"<old>"}`; the filter applies at once, to every callsite |
//! | no `Authorization: Bearer <token>`, or a wrong one | 401 `UNAUTHORIZED`, `WWW-Authenticate: Bearer` |
//! | directives that do not parse, or none | 400 `VALIDATION_FAILED`, the parser's message as the field error of `/filter` |
//! | a body that is not JSON | 400 `BAD_REQUEST` |
//! | a JSON body other than an object with one string `filter` (unknown fields included) | 400 `VALIDATION_FAILED`, one field error each |
//! | a body over 4 KiB ([`MAX_BODY_BYTES`]) | 413 `PAYLOAD_TOO_LARGE` |
//! | a `PUT` whose `content-type` is not JSON | 415 `UNSUPPORTED_MEDIA_TYPE` |
//! | another method | 405, `Allow: GET, HEAD, PUT` |
//! | no log filter to change (logging not set up by [`LogBuilder`](crate::log::LogBuilder)) | 503 `SERVICE_UNAVAILABLE` |
//!
//! Directives are those of `RUST_LOG` and `LOG_LEVEL`: a level (`debug`), or
//! `target=level` pairs after a default (`info,my_app::db=debug,hyper=warn`).
//! Answers are `application/json` with `cache-control: no-store`; problems are
//! rendered by the crate's [`Renderer`](crate::error::Renderer) with
//! `rejected_by: "admin"`. The token is checked first, in constant time, so a
//! caller without it learns nothing else. Unknown fields are refused rather than
//! ignored: a client that sends a field this version does not know would
//! otherwise believe it applied.
//!
//! Each change is logged at WARN, target `tower_ops::admin`, message
//! `log filter changed`, with `old_filter`, `new_filter` and `client_ip` (the
//! [`ClientIp`](crate::client_ip::ClientIp) the stack resolved, else the peer
//! address). The line is written under whichever of the two filters lets it
//! through, so quieting the logs to `error` is still on record. Neither the token
//! nor the `Authorization` header is ever logged.
//!
//! The filter is the one [`LogBuilder::init`](crate::log::LogBuilder::init)
//! installs for the process ([`LogFilter::installed`](crate::log::LogFilter::installed)),
//! looked up at each request, so the order of start-up does not matter; give
//! another with [`AdminRoutes::filter`] (a [`LogFilterLayer`](crate::log::LogFilterLayer)
//! in a subscriber of your own).
//!
//! # Token
//!
//! At least 16 bytes ([`MIN_TOKEN_BYTES`]) of visible ASCII, no spaces:
//! `openssl rand -hex 32` makes a good one. `from_env` refuses a shorter or
//! unprintable `ADMIN_TOKEN` with a [`ConfigError`](crate::config::ConfigError)
//! that names the variable but never shows the value; [`AdminRoutes::new`]
//! panics on one. Serve the routes over TLS or a private network: a bearer token
//! is only as secret as the connection it travels on.
//!
//! # With axum
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::Router;
//! use axum::body::Body;
//! use axum::routing::get;
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use tower_ops::admin::AdminRoutes;
//! use tower_ops::config::ConfigError;
//! # use tracing_subscriber::layer::SubscriberExt;
//!
//! /// The application, with the admin routes when `ADMIN_TOKEN` is set.
//! fn app() -> Result<Router, ConfigError> {
//!     let mut app = Router::new().route("/", get(|| async { "hello" }));
//!     if let Some(admin) = AdminRoutes::from_env()? {
//!         app = app.merge(admin.into_router());
//!     }
//!     Ok(app)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In `main`: let _log = tower_ops::log::init_from_env()?; it installs the
//! // filter the routes change.
//! # let layer = tower_ops::log::LogFilterLayer::new("info")?;
//! # layer.handle().install();
//! # let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
//! # let _ = app()?;
//! // Here with a token of our own.
//! let admin = AdminRoutes::new("0123456789abcdef").into_router();
//! let app = Router::new().merge(admin);
//!
//! let response = app
//!     .oneshot(
//!         Request::put("/admin/log-level")
//!             .header("authorization", "Bearer 0123456789abcdef")
//!             .header("content-type", "application/json")
//!             .body(Body::from(r#"{"filter":"info,my_app=debug"}"#))?,
//!     )
//!     .await?;
//! assert_eq!(response.status(), 200);
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(body, r#"{"filter":"info,my_app=debug","previous":"info"}"#);
//! assert!(tracing::enabled!(target: "my_app", tracing::Level::DEBUG));
//! # Ok(())
//! # }
//! # }
//! ```
//!
//! # With hyper
//!
//! [`AdminRoutes`] is a tower service over any request body; route the admin
//! paths to it from the service you give hyper (through hyper-util's
//! `TowerToHyperService`). Its responses have the body type of the health probes
//! and `/metrics`, [`EndpointBody`](crate::body::EndpointBody), so one `match`
//! answers them all:
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::ServiceExt;
//! use tower_ops::admin::AdminRoutes;
//! use tower_ops::body::EndpointBody;
//! use tower_ops::log::LogFilterLayer;
//! # use tracing_subscriber::layer::SubscriberExt;
//!
//! // `B` is `hyper::body::Incoming` under hyper.
//! async fn route<B>(admin: AdminRoutes, req: Request<B>) -> Result<Response<EndpointBody>, Infallible>
//! where
//!     B: http_body::Body<Data = Bytes> + Send + 'static,
//!     B::Error: Into<tower_ops::BoxError>,
//! {
//!     if req.uri().path().starts_with("/admin/") {
//!         return admin.oneshot(req).await;
//!     }
//!     Ok(Response::new(EndpointBody::full("hello")))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = LogFilterLayer::new("warn")?;
//! let admin = AdminRoutes::new("0123456789abcdef").filter(layer.handle());
//! # let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
//!
//! let get = |token: &str| {
//!     Request::get("/admin/log-level")
//!         .header("authorization", format!("Bearer {token}"))
//!         .body(Full::<Bytes>::default())
//! };
//! let response = route(admin.clone(), get("0123456789abcdef")?).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.headers()["content-type"], "application/json");
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(body, r#"{"filter":"warn"}"#);
//!
//! let response = route(admin, get("not-the-token")?).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], "Bearer");
//! # Ok(())
//! # }
//! ```

mod log_level;
mod routes;

pub use self::routes::{AdminRoutes, ResponseFuture};

/// The path of the log-filter route.
pub const LOG_LEVEL_PATH: &str = "/admin/log-level";

/// The largest `PUT` body accepted, in bytes; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 4096;

/// The shortest token accepted, in bytes.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The body of the admin responses: [`EndpointBody`](crate::body::EndpointBody),
/// the same type as the health probes' and the metrics exporter's.
pub type AdminBody = crate::body::EndpointBody;

#[cfg(test)]
mod tests;
