//! Limits request bodies, answering 413 `PAYLOAD_TOO_LARGE` with a [`Problem`].
//!
//! [`BodyLimitLayer`] checks a body twice:
//!
//! - **Up front**, from `Content-Length`: a declared length over the limit is
//!   answered with 413 without calling the inner service. A `Content-Length` that
//!   is not a plain decimal number of bytes (`abc`, `-1`, `+5`, a value past
//!   `u64::MAX`), or that carries different values (two headers, or a comma list
//!   such as `1, 2`) is answered with 400 `BAD_REQUEST`. Repeated identical values
//!   are accepted, as RFC 9110 allows.
//! - **As it streams**, for bodies without a length (HTTP/1.1 chunked, HTTP/2):
//!   the inner service gets a [`Limited`] body that never passes on more than the
//!   limit; the frame that would cross it becomes a [`LengthLimitError`]. The
//!   layer remembers that the limit was hit and replaces whatever the handler
//!   answered (axum's own rejection, a 500, or a 200 built from
//!   `unwrap_or_default()`) with the 413 Problem. So a client gets the same 413
//!   whether the handler used axum's `Json`, `Bytes` or `String` extractors or
//!   collected the body with `http_body_util`.
//!
//! A body of exactly the limit passes; requests without a body (most `GET` and
//! `HEAD`) are untouched. Every rejection carries the [`Problem`] in its response
//! extensions with `rejected_by` = `"body_limit"`, its `detail` states the limit,
//! and the request id is taken from the request's [`RequestId`] extension.
//!
//! Over a real socket, hyper's HTTP/1 parser sees `Content-Length` first: it
//! answers malformed, overflowing or conflicting values with its own bare 400
//! and closes the connection before any service runs. The 400 Problem of this
//! layer is for what reaches it through other servers, HTTP/2, proxies, tests
//! and `oneshot`.
//!
//! # Where to put it
//!
//! The inner service sees `Request<Limited<B>>`. axum's `Router` and `Route`
//! accept any body whose error converts into a boxed error, so the layer works
//! both inside a router (`Router::layer`) and around one (`ServiceBuilder`).
//! The body is never read after the handler answered: a handler that hands the
//! body to a background task and answers first is not corrected.
//!
//! # Per-route limits
//!
//! [`BodyLimitLayer::route`] sets another limit for a path: an exact path
//! (`/upload`) or a prefix ending in `/*` (`/files/*`). Matching is byte for byte
//! on the request path, like axum's router; the first matching rule wins.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, body::Bytes, routing::post};
//! use http::{Request, StatusCode};
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use tower_ops::body_limit::BodyLimitLayer;
//! use tower_ops::error::Problem;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new()
//!     .route("/echo", post(|body: Bytes| async move { body }))
//!     .route("/upload", post(|body: Bytes| async move { body.len().to_string() }))
//!     .layer(BodyLimitLayer::new(16).route("/upload", 1024));
//!
//! // A declared length over the limit never reaches the handler.
//! let request = Request::post("/echo")
//!     .header("content-length", "17")
//!     .body(Body::from("x".repeat(17)))?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! let problem = response.extensions().get::<Problem>().unwrap();
//! assert_eq!(problem.get_rejected_by(), Some("body_limit"));
//! let json: serde_json::Value =
//!     serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
//! assert_eq!(json["code"], "PAYLOAD_TOO_LARGE");
//! assert_eq!(json["detail"], "request body of 17 bytes exceeds the limit of 16 bytes");
//!
//! // A streamed body (no Content-Length) is counted as it arrives.
//! let parts = ["0123456789", "0123456789"].map(Ok::<_, std::convert::Infallible>);
//! let chunked = Body::from_stream(futures_util::stream::iter(parts));
//! let response = app.clone().oneshot(Request::post("/echo").body(chunked)?).await?;
//! assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
//!
//! // The per-route limit applies to /upload.
//! let request = Request::post("/upload").body(Body::from("x".repeat(100)))?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! [`Problem`]: crate::error::Problem
//! [`RequestId`]: crate::request_id::RequestId

mod body;
mod future;
mod layer;
pub(crate) mod routes;

pub use self::body::{BoxError, LengthLimitError, Limited};
pub use self::future::ResponseFuture;
pub use self::layer::{BodyLimit, BodyLimitLayer, DEFAULT_LIMIT};
pub(crate) use self::layer::parse_whole;
