use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use http::StatusCode;

use crate::request_id::RequestId;

/// A stable, machine-readable error code (`RATE_LIMITED`, `NOT_FOUND`, ...).
///
/// The codes of the contract are associated constants; applications may add their
/// own with [`Code::new`] or [`Code::from_static`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Code(Cow<'static, str>);

impl Code {
    /// 400, a malformed request.
    pub const BAD_REQUEST: Code = Code::from_static("BAD_REQUEST");
    /// 422 (or 400), a request whose fields failed validation.
    pub const VALIDATION_FAILED: Code = Code::from_static("VALIDATION_FAILED");
    /// 401.
    pub const UNAUTHORIZED: Code = Code::from_static("UNAUTHORIZED");
    /// 403.
    pub const FORBIDDEN: Code = Code::from_static("FORBIDDEN");
    /// 404.
    pub const NOT_FOUND: Code = Code::from_static("NOT_FOUND");
    /// 405.
    pub const METHOD_NOT_ALLOWED: Code = Code::from_static("METHOD_NOT_ALLOWED");
    /// 409.
    pub const CONFLICT: Code = Code::from_static("CONFLICT");
    /// 413.
    pub const PAYLOAD_TOO_LARGE: Code = Code::from_static("PAYLOAD_TOO_LARGE");
    /// 415.
    pub const UNSUPPORTED_MEDIA_TYPE: Code = Code::from_static("UNSUPPORTED_MEDIA_TYPE");
    /// 429.
    pub const RATE_LIMITED: Code = Code::from_static("RATE_LIMITED");
    /// 500.
    pub const INTERNAL: Code = Code::from_static("INTERNAL");
    /// 503.
    pub const SERVICE_UNAVAILABLE: Code = Code::from_static("SERVICE_UNAVAILABLE");
    /// 504 (or the status a timeout layer was configured with).
    pub const TIMEOUT: Code = Code::from_static("TIMEOUT");
    /// 503 from the load shedder: too many requests in flight.
    pub const OVERLOADED: Code = Code::from_static("OVERLOADED");

    /// A code known at compile time.
    pub const fn from_static(code: &'static str) -> Self {
        Self(Cow::Borrowed(code))
    }

    /// A code made at run time.
    pub fn new(code: impl Into<Cow<'static, str>>) -> Self {
        Self(code.into())
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The usual code for a status: `NOT_FOUND` for 404, `INTERNAL` for other 5xx,
    /// `BAD_REQUEST` for other 4xx.
    pub fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            401 => Self::UNAUTHORIZED,
            403 => Self::FORBIDDEN,
            404 => Self::NOT_FOUND,
            405 => Self::METHOD_NOT_ALLOWED,
            408 | 504 => Self::TIMEOUT,
            409 => Self::CONFLICT,
            413 => Self::PAYLOAD_TOO_LARGE,
            415 => Self::UNSUPPORTED_MEDIA_TYPE,
            422 => Self::VALIDATION_FAILED,
            429 => Self::RATE_LIMITED,
            503 => Self::SERVICE_UNAVAILABLE,
            s if s >= 500 => Self::INTERNAL,
            _ => Self::BAD_REQUEST,
        }
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where in the request a validation error is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A JSON pointer into the body (RFC 6901), such as `/items/0/name`.
    Pointer(String),
    /// A named field: a query or form parameter, a path segment.
    Field(String),
}

/// One entry of a Problem's `errors` array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Where the error is, when it can be told.
    pub location: Option<Location>,
    /// What is wrong, for the client.
    pub message: String,
}

impl FieldError {
    /// An error at a JSON pointer.
    pub fn pointer(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            location: Some(Location::Pointer(pointer.into())),
            message: message.into(),
        }
    }

    /// An error in a named field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            location: Some(Location::Field(field.into())),
            message: message.into(),
        }
    }
}

/// The error model: what went wrong, for the client and for the operator.
///
/// Rendered as RFC 9457 `application/problem+json` by default (see
/// [`Renderer`](super::Renderer)). Every response a tower-ops layer produces or
/// rewrites carries its `Problem` in the response extensions, so the log and metrics
/// layers read `code` and `rejected_by` instead of parsing bodies.
///
/// `title` and `detail` go to the client. Keep internals in [`Problem::source`]: it
/// is logged, and shown to clients only when a renderer's development switch is on.
#[derive(Clone)]
pub struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) code: Code,
    pub(crate) title: Option<Cow<'static, str>>,
    pub(crate) detail: Option<Cow<'static, str>>,
    pub(crate) type_uri: Option<Cow<'static, str>>,
    pub(crate) errors: Vec<FieldError>,
    pub(crate) request_id: Option<RequestId>,
    pub(crate) trace_id: Option<Arc<str>>,
    pub(crate) timestamp: SystemTime,
    pub(crate) rejected_by: Option<&'static str>,
    pub(crate) source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    /// Which renderer wrote the body of the response carrying this problem, so the
    /// error layer can tell whether its own renderer would have written the same.
    pub(crate) rendered: Option<RenderMark>,
    /// The source was logged already; nested error layers do not log it again.
    pub(crate) logged: bool,
}

/// Identifies a renderer configuration (format instance and development switch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RenderMark {
    pub(crate) format: u64,
    pub(crate) expose_internal: bool,
}

impl Problem {
    /// A problem with `status` and the usual [`Code`] for it.
    pub fn new(status: StatusCode) -> Self {
        // One read of the request context for both ids.
        let (request_id, trace_id) =
            crate::context::read(|c| (c.request_id.clone(), c.trace_id)).unwrap_or_default();
        let trace_id = trace_id.or_else(crate::trace_context::fallback);
        Self {
            status,
            code: Code::for_status(status),
            title: None,
            detail: None,
            type_uri: None,
            errors: Vec::new(),
            request_id,
            trace_id: trace_id.map(|t| Arc::from(t.encode(&mut [0; 32]))),
            timestamp: SystemTime::now(),
            rejected_by: None,
            source: None,
            rendered: None,
            logged: false,
        }
    }

    /// 400 `BAD_REQUEST`.
    pub fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST).detail(detail)
    }

    /// 422 `VALIDATION_FAILED` with the given field errors.
    pub fn validation(errors: impl IntoIterator<Item = FieldError>) -> Self {
        let mut p = Self::new(StatusCode::UNPROCESSABLE_ENTITY);
        p.errors = errors.into_iter().collect();
        p
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND)
    }

    /// 500 `INTERNAL`, keeping `error` as the source for the log.
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR).source(error)
    }

    /// Replaces the code.
    pub fn code(mut self, code: Code) -> Self {
        self.code = code;
        self
    }

    /// Sets the title (defaults to the status's reason phrase). Ignored for 5xx,
    /// whose title is always the reason phrase.
    pub fn title(mut self, title: impl Into<Cow<'static, str>>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the detail shown to the client.
    pub fn detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets the `type` URI (defaults to `about:blank`).
    pub fn type_uri(mut self, uri: impl Into<Cow<'static, str>>) -> Self {
        self.type_uri = Some(uri.into());
        self
    }

    /// Adds a field error.
    pub fn error(mut self, error: FieldError) -> Self {
        self.errors.push(error);
        self
    }

    /// Sets the request id (filled from the current request by default).
    pub fn request_id(mut self, id: RequestId) -> Self {
        self.request_id = Some(id);
        self
    }

    /// Sets the trace id (32 lowercase hex digits).
    pub fn trace_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.trace_id = Some(id.into());
        self
    }

    /// Names the layer that answered (`rate_limit`, `body_limit`, `timeout`,
    /// `panic`, `error`, ...).
    pub fn rejected_by(mut self, layer: &'static str) -> Self {
        self.rejected_by = Some(layer);
        self
    }

    /// Keeps the underlying error for the log; never shown to clients unless a
    /// renderer exposes internals.
    pub fn source(mut self, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.source = Some(Arc::from(error.into()));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn get_code(&self) -> &Code {
        &self.code
    }

    /// The title the client sees.
    pub fn get_title(&self) -> &str {
        match &self.title {
            Some(t) if !self.status.is_server_error() => t,
            _ => self.status.canonical_reason().unwrap_or("Error"),
        }
    }

    /// The detail, if any.
    pub fn get_detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The field errors.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The request id, if known.
    pub fn get_request_id(&self) -> Option<&RequestId> {
        self.request_id.as_ref()
    }

    /// The trace id, if known.
    pub fn get_trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    /// The layer that answered, if a tower-ops layer did.
    pub fn get_rejected_by(&self) -> Option<&'static str> {
        self.rejected_by
    }

    /// The underlying error, if any.
    pub fn get_source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }

    /// When the problem happened.
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }
}

impl fmt::Debug for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Problem")
            .field("status", &self.status.as_u16())
            .field("code", &self.code)
            .field("detail", &self.detail)
            .field("rejected_by", &self.rejected_by)
            .field("request_id", &self.request_id)
            .field("source", &self.source.as_ref().map(|e| e.to_string()))
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.code)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}
