//! One error format everywhere: the [`Problem`] model and its renderers.
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

mod problem;
mod render;

pub use self::problem::{Code, FieldError, Location, Problem};
#[allow(unused_imports)] // used by the error layer
pub(crate) use self::render::chain;
pub use self::render::{ErrorFormat, RenderProblem, Renderer};

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Problem {
    /// Renders with the default renderer (problem+json).
    fn into_response(self) -> axum::response::Response {
        Renderer::default()
            .response::<axum::body::Body>(self)
            .map(axum::body::Body::new)
    }
}
