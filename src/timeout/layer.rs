use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use crate::config::{self, ConfigError};
use crate::error::Renderer;
use crate::paths::PathRules;

/// The default timeout: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Cloned into every service, by axum on every request, and into every response
/// future: the common configuration clones without touching a reference count.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    default: Duration,
    routes: Option<Arc<PathRules<Duration>>>,
    pub(crate) status: StatusCode,
    /// `None` is the default problem+json renderer, made only on expiry.
    pub(crate) renderer: Option<Renderer>,
}

/// Bounds the time to produce a response, answering with a 504 `TIMEOUT`
/// Problem. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct TimeoutLayer {
    config: Config,
}

impl TimeoutLayer {
    /// A layer giving every request `timeout` to produce its response.
    pub fn new(timeout: Duration) -> Self {
        Self {
            config: Config {
                default: timeout,
                routes: None,
                status: StatusCode::GATEWAY_TIMEOUT,
                renderer: None,
            },
        }
    }

    /// Reads `REQUEST_TIMEOUT_MS` (whole milliseconds, 1 to a day; default 30000)
    /// and `ERROR_FORMAT` (see [`Renderer::from_env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let timeout = config::parse_ms("REQUEST_TIMEOUT_MS", DEFAULT_TIMEOUT, 1, &mut errors);
        let mut layer = Self::new(timeout);
        layer.config.renderer = Renderer::from_env_if_set(&mut errors);
        errors.into_result(layer)
    }

    /// The status of the answer on expiry (default 504 Gateway Timeout; 503 and
    /// 408 are other common choices). The code stays `TIMEOUT`.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.config.status = status;
        self
    }

    /// A different timeout for requests whose path matches `pattern`: an exact
    /// path (`/reports`) or a prefix ending in `/*` (`/export/*`), compared byte
    /// for byte with the request path; the first matching rule wins.
    pub fn route(mut self, pattern: &str, timeout: Duration) -> Self {
        Arc::make_mut(self.config.routes.get_or_insert_with(Arc::default)).push(pattern, timeout);
        self
    }

    /// Renders the answer with `renderer` instead of problem+json.
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.config.renderer = Some(renderer);
        self
    }

    /// The timeout of requests that match no route rule.
    pub fn timeout(&self) -> Duration {
        self.config.default
    }
}

impl Default for TimeoutLayer {
    /// A 30 s timeout.
    fn default() -> Self {
        Self::new(DEFAULT_TIMEOUT)
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            config: Some(self.config.clone()),
        }
    }
}

impl<S> crate::stack::Switchable<S> for TimeoutLayer {
    /// A `Timeout` that never expires.
    fn off(inner: S) -> Self::Service {
        Timeout {
            inner,
            config: None,
        }
    }
}

/// The service made by [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    /// `None`: switched off ([`Switchable`](crate::stack::Switchable)).
    config: Option<Config>,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with a timeout.
    pub fn new(inner: S, timeout: Duration) -> Self {
        TimeoutLayer::new(timeout).layer(inner)
    }

    /// A [`TimeoutLayer`] with this timeout.
    pub fn layer(timeout: Duration) -> TimeoutLayer {
        TimeoutLayer::new(timeout)
    }

    define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timeout<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some(config) = &self.config else {
            return ResponseFuture::unlimited(self.inner.call(req));
        };
        let timeout = match &config.routes {
            Some(routes) => routes.get(req.uri().path()).unwrap_or(config.default),
            None => config.default,
        };
        // The clock starts now; the timer itself is only registered if the inner
        // future does not finish on its first poll.
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        // Inside a request id scope, the 504 picks the id up itself.
        let request_id = crate::context::request_id_for_later(req.extensions());
        let grpc = crate::media::is_grpc(req.headers());
        let future = self.inner.call(req);
        ResponseFuture::new(future, deadline, timeout, request_id, grpc, config)
    }
}
