use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::response::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::grpc;
use crate::body::ResponseBody;
use crate::config::{self, ConfigError};
use crate::error::{Location, Problem, RenderMark};
use crate::error_chain::joined;
use crate::json::push_str;
use crate::time::rfc3339_millis;

/// Turns a [`Problem`] into a body. Implement it for a format of your own.
pub trait RenderProblem: Send + Sync + 'static {
    /// The `content-type` of the body.
    fn content_type(&self) -> HeaderValue;

    /// Writes the body. `expose_internal` is the development switch: when set, 5xx
    /// bodies may include the problem's source error.
    fn render(&self, problem: &Problem, expose_internal: bool) -> Bytes;
}

/// The error formats of `ERROR_FORMAT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorFormat {
    /// RFC 9457 `application/problem+json` (the default).
    #[default]
    Problem,
    /// `{"success":false,"error":{...}}` as `application/json`.
    Wrapped,
}

/// Renders problems into responses; shared by every layer that answers by itself.
///
/// Cheap to clone. The default renders RFC 9457 problem details:
///
/// ```
/// use http::StatusCode;
/// use tower_ops::error::{Problem, Renderer};
///
/// let response = Renderer::default()
///     .response::<()>(Problem::new(StatusCode::NOT_FOUND).detail("no such user"));
/// assert_eq!(response.status(), 404);
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// assert!(response.extensions().get::<Problem>().is_some());
/// ```
#[derive(Clone)]
pub struct Renderer {
    format: Format,
    expose_internal: bool,
    /// Answer with a gRPC status: set by [`Renderer::for_request`] for gRPC calls.
    grpc: bool,
}

/// Ids 1 and 2 belong to the shared built-in formats below.
static NEXT_ID: AtomicU64 = AtomicU64::new(3);

/// The built-in formats need no allocation, and cloning them no atomic operation:
/// the error layer clones its renderer for every request, and keeps it in every
/// response future, so the whole renderer stays two words.
#[derive(Clone)]
enum Format {
    ProblemJson,
    Wrapped,
    Custom(Arc<Custom>),
}

/// A user's format with the id shared by its clones, which lets the error layer
/// see whether a rendered problem already has its format without comparing bodies.
struct Custom {
    id: u64,
    format: Box<dyn RenderProblem>,
}

impl Format {
    fn get(&self) -> &dyn RenderProblem {
        match self {
            Self::ProblemJson => &ProblemJson,
            Self::Wrapped => &Wrapped,
            Self::Custom(custom) => &*custom.format,
        }
    }

    fn id(&self) -> u64 {
        match self {
            Self::ProblemJson => 1,
            Self::Wrapped => 2,
            Self::Custom(custom) => custom.id,
        }
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Self::problem_json()
    }
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderer")
            .field("content_type", &self.format.get().content_type())
            .field("expose_internal", &self.expose_internal)
            .field("grpc", &self.grpc)
            .finish()
    }
}

impl Renderer {
    /// RFC 9457 `application/problem+json`.
    pub fn problem_json() -> Self {
        Self {
            format: Format::ProblemJson,
            expose_internal: false,
            grpc: false,
        }
    }

    /// The wrapped `{"success":false,"error":{...}}` format.
    pub fn wrapped() -> Self {
        Self {
            format: Format::Wrapped,
            expose_internal: false,
            grpc: false,
        }
    }

    /// One of the built-in formats.
    pub fn format(format: ErrorFormat) -> Self {
        match format {
            ErrorFormat::Problem => Self::problem_json(),
            ErrorFormat::Wrapped => Self::wrapped(),
        }
    }

    /// A format of your own.
    pub fn custom(format: impl RenderProblem) -> Self {
        Self {
            format: Format::Custom(Arc::new(Custom {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                format: Box::new(format),
            })),
            expose_internal: false,
            grpc: false,
        }
    }

    /// Reads `ERROR_FORMAT` (`problem` or `wrapped`; default `problem`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let format = match config::var("ERROR_FORMAT", &mut errors).as_deref() {
            None | Some("problem") => ErrorFormat::Problem,
            Some("wrapped") => ErrorFormat::Wrapped,
            Some(other) => {
                errors.push("ERROR_FORMAT", other, "problem or wrapped");
                ErrorFormat::Problem
            }
        };
        errors.into_result(Self::format(format))
    }

    /// The renderer chosen by `ERROR_FORMAT`, for the layers that answer by
    /// themselves; `None` when the variable is unset, so the default renderer
    /// costs nothing per request. A bad value is recorded in `errors`.
    pub(crate) fn from_env_if_set(errors: &mut ConfigError) -> Option<Self> {
        match Self::from_env() {
            Ok(renderer) => config::var("ERROR_FORMAT", errors).map(|_| renderer),
            Err(e) => {
                errors.merge(e);
                None
            }
        }
    }

    /// The development switch: show the source error of 5xx problems to clients.
    /// Never turn it on in production.
    pub fn expose_internal(mut self, on: bool) -> Self {
        self.expose_internal = on;
        self
    }

    /// This renderer for the request with `headers`: a gRPC call
    /// (`application/grpc` or `application/grpc+<codec>`) is answered with a
    /// trailers-only gRPC status instead of a body, so its client sees
    /// `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `INTERNAL` or `UNAVAILABLE`
    /// rather than an HTTP status it maps to `UNAVAILABLE`.
    #[inline]
    pub(crate) fn for_request(self, headers: &HeaderMap) -> Self {
        self.grpc(crate::media::is_grpc(headers))
    }

    /// This renderer answering with gRPC statuses, or not.
    #[inline]
    pub(crate) fn grpc(mut self, on: bool) -> Self {
        self.grpc = on;
        self
    }

    /// Whether this renderer answers with gRPC statuses.
    pub(crate) fn answers_grpc(&self) -> bool {
        self.grpc
    }

    /// The rendered body of `problem`.
    pub fn body(&self, problem: &Problem) -> Bytes {
        self.format.get().render(problem, self.expose_internal)
    }

    /// A complete response for `problem`, with the problem in its extensions.
    ///
    /// Sets `content-type` and `cache-control: no-store`; `x-request-id` is left to
    /// the request id layer.
    pub fn response<B>(&self, mut problem: Problem) -> Response<ResponseBody<B>> {
        if self.grpc {
            let mut response = Response::new(ResponseBody::empty());
            self.grpc_head(response.headers_mut(), &mut problem);
            response.extensions_mut().insert(problem);
            return response;
        }
        let mut response = Response::new(ResponseBody::full(self.body(&problem)));
        *response.status_mut() = problem.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, self.format.get().content_type());
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        problem.rendered = Some(self.mark());
        response.extensions_mut().insert(problem);
        response
    }

    /// What a response rendered by this renderer is marked with.
    pub(crate) fn mark(&self) -> RenderMark {
        RenderMark {
            format: self.format.id(),
            expose_internal: self.expose_internal,
        }
    }

    /// Replaces the body of an existing response by the rendering of `problem`.
    ///
    /// Status, extensions and headers are kept, except the headers that described
    /// the old body (its type, length, encoding, validators), which would now lie.
    pub(crate) fn rewrite<B>(
        &self,
        mut parts: Parts,
        mut problem: Problem,
    ) -> Response<ResponseBody<B>> {
        for name in REPRESENTATION_HEADERS {
            parts.headers.remove(name);
        }
        if self.grpc {
            parts.status = StatusCode::OK;
            self.grpc_head(&mut parts.headers, &mut problem);
            parts.extensions.insert(problem);
            return Response::from_parts(parts, ResponseBody::empty());
        }
        let body = self.body(&problem);
        parts
            .headers
            .insert(CONTENT_TYPE, self.format.get().content_type());
        parts
            .headers
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        parts.status = problem.status;
        problem.rendered = Some(self.mark());
        parts.extensions.insert(problem);
        Response::from_parts(parts, ResponseBody::full(body))
    }
}

impl Renderer {
    /// The head of a trailers-only gRPC answer (HTTP 200 is the caller's): the
    /// status for the problem and, as `grpc-message`, what a client may see of it.
    fn grpc_head(&self, headers: &mut HeaderMap, problem: &mut Problem) {
        let message = public_detail(problem, self.expose_internal)
            .unwrap_or_else(|| problem.get_title().to_owned());
        grpc::write_head(headers, problem, Some(&message));
        problem.rendered = Some(self.mark());
    }
}

/// Headers about the body being replaced. Everything else (`Allow`, `Retry-After`,
/// `WWW-Authenticate`, rate-limit headers, CORS, `Vary`, `Set-Cookie`,
/// `x-request-id`, ...) still holds for the new body and is kept.
const REPRESENTATION_HEADERS: [http::header::HeaderName; 9] = [
    http::header::CONTENT_LENGTH,
    http::header::CONTENT_ENCODING,
    http::header::CONTENT_LANGUAGE,
    http::header::CONTENT_LOCATION,
    http::header::CONTENT_RANGE,
    http::header::CONTENT_DISPOSITION,
    http::header::TRANSFER_ENCODING,
    http::header::ETAG,
    http::header::LAST_MODIFIED,
];

/// The detail a client may see.
fn public_detail(problem: &Problem, expose_internal: bool) -> Option<String> {
    let detail = problem.detail.as_deref();
    match (
        &problem.source,
        expose_internal && problem.status.is_server_error(),
    ) {
        (Some(source), true) => Some(match detail {
            Some(d) => format!("{d}: {}", joined(source.as_ref())),
            None => joined(source.as_ref()),
        }),
        _ => detail.map(str::to_owned),
    }
}

struct ProblemJson;

impl RenderProblem for ProblemJson {
    fn content_type(&self) -> HeaderValue {
        HeaderValue::from_static("application/problem+json")
    }

    fn render(&self, p: &Problem, expose_internal: bool) -> Bytes {
        let mut out = String::with_capacity(256);
        out.push_str("{\"type\":");
        push_str(&mut out, p.type_uri.as_deref().unwrap_or("about:blank"));
        out.push_str(",\"title\":");
        push_str(&mut out, p.get_title());
        out.push_str(",\"status\":");
        out.push_str(itoa(p.status.as_u16()).as_str());
        if let Some(detail) = public_detail(p, expose_internal) {
            out.push_str(",\"detail\":");
            push_str(&mut out, &detail);
        }
        out.push_str(",\"code\":");
        push_str(&mut out, p.code.as_str());
        if let Some(id) = &p.request_id {
            out.push_str(",\"request_id\":");
            push_str(&mut out, id.as_str());
        }
        if let Some(id) = &p.trace_id {
            out.push_str(",\"trace_id\":");
            push_str(&mut out, id);
        }
        out.push_str(",\"timestamp\":");
        push_str(&mut out, &rfc3339_millis(p.timestamp));
        if !p.errors.is_empty() {
            out.push_str(",\"errors\":");
            push_errors(&mut out, p);
        }
        out.push('}');
        Bytes::from(out)
    }
}

struct Wrapped;

impl RenderProblem for Wrapped {
    fn content_type(&self) -> HeaderValue {
        HeaderValue::from_static("application/json")
    }

    fn render(&self, p: &Problem, expose_internal: bool) -> Bytes {
        let mut out = String::with_capacity(256);
        out.push_str("{\"success\":false,\"error\":{\"code\":");
        push_str(&mut out, p.code.as_str());
        out.push_str(",\"message\":");
        let detail = public_detail(p, expose_internal);
        push_str(&mut out, detail.as_deref().unwrap_or(p.get_title()));
        if !p.errors.is_empty() {
            out.push_str(",\"details\":");
            push_errors(&mut out, p);
        }
        if let Some(id) = &p.trace_id {
            out.push_str(",\"traceId\":");
            push_str(&mut out, id);
        }
        out.push_str(",\"timestamp\":");
        push_str(&mut out, &rfc3339_millis(p.timestamp));
        if let Some(id) = &p.request_id {
            out.push_str(",\"requestId\":");
            push_str(&mut out, id.as_str());
        }
        out.push_str("}}");
        Bytes::from(out)
    }
}

fn push_errors(out: &mut String, p: &Problem) {
    out.push('[');
    for (i, e) in p.errors.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        match &e.location {
            Some(Location::Pointer(ptr)) => {
                out.push_str("\"pointer\":");
                push_str(out, ptr);
                out.push(',');
            }
            Some(Location::Field(field)) => {
                out.push_str("\"field\":");
                push_str(out, field);
                out.push(',');
            }
            None => {}
        }
        out.push_str("\"message\":");
        push_str(out, &e.message);
        out.push('}');
    }
    out.push(']');
}

fn itoa(n: u16) -> String {
    n.to_string()
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use serde_json::{Value, json};

    use super::*;
    use crate::error::{Code, FieldError};
    use crate::request_id::RequestId;

    fn parse(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn problem_json_shape() {
        let p = Problem::new(StatusCode::TOO_MANY_REQUESTS)
            .detail("rate limit exceeded, retry in 3 s")
            .request_id(RequestId::new("r-1").unwrap())
            .trace_id("4bf92f3577b34da6a3ce929d0e0e4736");
        let v = parse(&Renderer::default().body(&p));
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["title"], "Too Many Requests");
        assert_eq!(v["status"], 429);
        assert_eq!(v["code"], "RATE_LIMITED");
        assert_eq!(v["request_id"], "r-1");
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        let ts = v["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), 24);
        assert!(ts.ends_with('Z'));
        assert!(v.get("errors").is_none());
    }

    #[test]
    fn server_errors_hide_internals_unless_exposed() {
        let err = std::io::Error::other("db password=hunter2 refused");
        let p = Problem::internal(err).title("custom title with secret");
        let hidden = String::from_utf8(Renderer::default().body(&p).to_vec()).unwrap();
        assert!(!hidden.contains("hunter2"), "{hidden}");
        assert!(!hidden.contains("custom title"), "{hidden}");
        assert_eq!(
            parse(&Bytes::from(hidden))["title"],
            "Internal Server Error"
        );
        let shown = Renderer::default().expose_internal(true).body(&p);
        assert!(String::from_utf8_lossy(&shown).contains("hunter2"));
    }

    #[test]
    fn validation_errors_and_wrapped() {
        let p = Problem::validation([
            FieldError::pointer("/name", "must not be empty"),
            FieldError::field("page", "expected a number"),
        ])
        .request_id(RequestId::new("r-2").unwrap());
        let v = parse(&Renderer::default().body(&p));
        assert_eq!(v["code"], "VALIDATION_FAILED");
        assert_eq!(
            v["errors"],
            json!([{"pointer":"/name","message":"must not be empty"},
                   {"field":"page","message":"expected a number"}])
        );
        let w = parse(&Renderer::wrapped().body(&p));
        assert_eq!(w["success"], false);
        assert_eq!(w["error"]["code"], "VALIDATION_FAILED");
        assert_eq!(w["error"]["message"], "Unprocessable Entity");
        assert_eq!(w["error"]["requestId"], "r-2");
        assert_eq!(w["error"]["details"][1]["field"], "page");
        assert!(w["error"].get("traceId").is_none());
    }

    #[test]
    fn hostile_text_stays_valid_json() {
        let p = Problem::bad_request("quote\" backslash\\ newline\n nul\u{0} é")
            .code(Code::new("X\"Y"))
            .error(FieldError::pointer("/a\"b", "\r\n"));
        for r in [Renderer::default(), Renderer::wrapped()] {
            let b = r.body(&p);
            assert!(!b.contains(&b'\n'));
            parse(&b);
        }
    }

    #[test]
    fn response_carries_problem() {
        let r = Renderer::wrapped().response::<()>(Problem::not_found().rejected_by("error"));
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(
            r.extensions().get::<Problem>().unwrap().get_rejected_by(),
            Some("error")
        );
    }

    #[test]
    fn codes_for_statuses() {
        for (s, c) in [
            (404, "NOT_FOUND"),
            (502, "INTERNAL"),
            (418, "BAD_REQUEST"),
            (504, "TIMEOUT"),
        ] {
            assert_eq!(
                Code::for_status(StatusCode::from_u16(s).unwrap()).as_str(),
                c
            );
        }
    }
}
