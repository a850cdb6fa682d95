use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::ALLOW;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use tower_service::Service;

use super::log_level;
use super::{AdminBody, LOG_LEVEL_PATH, MIN_TOKEN_BYTES};
use crate::bearer;
use crate::config::ConfigError;
use crate::error::{Problem, Renderer};
use crate::log::LogFilter;

/// The token-protected operator routes, as a tower [`Service`] (for plain hyper)
/// and as an axum router (`into_router`, feature `axum`). See the
/// [module docs](super) for what they answer.
///
/// Cloning is cheap; clones share the token and the filter. `Debug` never shows
/// the token.
#[derive(Clone)]
pub struct AdminRoutes {
    token: Arc<[u8]>,
    filter: Option<LogFilter>,
    renderer: Renderer,
}

impl AdminRoutes {
    /// Routes that require `Authorization: Bearer <token>`.
    ///
    /// The log filter is the one [installed](LogFilter::install) for the process
    /// (by [`LogBuilder::init`](crate::log::LogBuilder::init)), looked up at each
    /// request, unless [`filter`](Self::filter) names one.
    ///
    /// # Panics
    ///
    /// When the token is shorter than 16 bytes or holds anything but visible
    /// ASCII (a space, a control character, non-ASCII), as [`from_env`](Self::from_env)
    /// refuses for `ADMIN_TOKEN`: such a token is too easily guessed or can
    /// never match. The message does not show the token.
    pub fn new(token: impl Into<String>) -> Self {
        let token = token.into();
        assert!(
            acceptable(&token),
            "the admin token must be at least {MIN_TOKEN_BYTES} visible ASCII characters, \
             without spaces"
        );
        Self::with_token(token)
    }

    fn with_token(token: String) -> Self {
        Self {
            token: token.into_bytes().into(),
            filter: None,
            renderer: Renderer::default(),
        }
    }

    /// The routes when `ADMIN_TOKEN` is set, `None` when it is unset or empty;
    /// problems are rendered as `ERROR_FORMAT` says.
    ///
    /// The token is trimmed of surrounding white space (a secret mounted from a
    /// file often ends in a newline); it must then be at least 16 bytes of
    /// visible ASCII. An invalid token is a [`ConfigError`] naming `ADMIN_TOKEN`
    /// that never shows the value.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let mut errors = ConfigError::default();
        let renderer = errors.take(Renderer::from_env()).unwrap_or_default();
        let token = token_from_env(&mut errors);
        errors.into_result(token.map(|t| Self::with_token(t).renderer(renderer)))
    }

    /// The log filter to read and change, in place of the one installed for the
    /// process.
    pub fn filter(mut self, filter: LogFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// How problems (401, 400, ...) are rendered.
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.renderer = renderer;
        self
    }

    /// A router serving these routes (`/admin/log-level`), to merge into an app
    /// next to `/metrics`.
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn into_router<S>(self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        axum::Router::new().route_service(LOG_LEVEL_PATH, self)
    }

    fn problem(&self, problem: Problem) -> Response<AdminBody> {
        self.renderer.response(problem.rejected_by("admin"))
    }
}

/// Whether a token is one the routes accept.
fn acceptable(token: &str) -> bool {
    token.len() >= MIN_TOKEN_BYTES && bearer::valid_token(token.as_bytes())
}

/// `ADMIN_TOKEN`, read without [`config::var`](crate::config), whose problems
/// would show the value.
fn token_from_env(errors: &mut ConfigError) -> Option<String> {
    const NAME: &str = "ADMIN_TOKEN";
    let expected = || {
        format!(
            "at least {MIN_TOKEN_BYTES} visible ASCII characters without spaces \
             (`openssl rand -hex 32` makes one)"
        )
    };
    let raw = std::env::var_os(NAME)?;
    let Some(token) = raw.to_str().map(str::trim) else {
        errors.push(NAME, "<redacted>", expected());
        return None;
    };
    if token.is_empty() {
        return None;
    }
    if !acceptable(token) {
        errors.push(NAME, "<redacted>", expected());
        return None;
    }
    Some(token.to_owned())
}

impl fmt::Debug for AdminRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Installed;
        impl fmt::Debug for Installed {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<installed>")
            }
        }
        let mut s = f.debug_struct("AdminRoutes");
        s.field("token", &"<redacted>");
        match &self.filter {
            Some(filter) => s.field("filter", filter),
            None => s.field("filter", &Installed),
        };
        s.field("renderer", &self.renderer).finish()
    }
}

/// The future of [`AdminRoutes`]: ready at once, except for a `PUT`, whose body
/// is read.
pub type ResponseFuture = crate::body::EndpointFuture;

impl<B> Service<Request<B>> for AdminRoutes
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    type Response = Response<AdminBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        if req.uri().path() != LOG_LEVEL_PATH {
            return ResponseFuture::ready(self.problem(Problem::not_found()));
        }
        // Before anything else is told: a caller without the token learns
        // nothing about methods or the filter.
        if !bearer::authorized(req.headers(), &self.token) {
            return ResponseFuture::ready(bearer::unauthorized(&self.renderer, "admin"));
        }
        let head = match *req.method() {
            Method::GET => Some(false),
            Method::HEAD => Some(true),
            Method::PUT => None,
            _ => {
                let mut response = self.problem(Problem::new(StatusCode::METHOD_NOT_ALLOWED));
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, HEAD, PUT"));
                return ResponseFuture::ready(response);
            }
        };
        let Some(filter) = self.filter.clone().or_else(LogFilter::installed) else {
            return ResponseFuture::ready(self.problem(log_level::no_filter()));
        };
        match head {
            Some(head) => ResponseFuture::ready(log_level::current(&filter, head)),
            None => ResponseFuture::waiting(log_level::change(req, filter, self.renderer.clone())),
        }
    }
}
