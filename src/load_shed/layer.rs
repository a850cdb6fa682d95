use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::limit::{Adaptive, Limiter, Permit};
use crate::body::ResponseBody;
use crate::config::{ConfigError, var};
use crate::error::{Code, Problem, Renderer};
use crate::paths::PathSet;

/// Sheds requests above a limit on the requests in flight: they are answered at
/// once with 503 `OVERLOADED` and `Retry-After: 1`. See the [module docs](super).
///
/// Cheap to clone: clones share the limit and the count of requests in flight.
#[derive(Clone)]
pub struct ConcurrencyLimitLayer {
    /// `None`: off, every request passes.
    shared: Option<Arc<Shared>>,
}

#[derive(Clone)]
struct Shared {
    limiter: Arc<Limiter>,
    skip: PathSet,
    renderer: Option<Renderer>,
}

impl ConcurrencyLimitLayer {
    /// At most `limit` requests in flight (at least 1).
    pub fn fixed(limit: usize) -> Self {
        Self::with(Limiter::fixed(limit))
    }

    /// A limit that follows the service's latency, starting at 20 and staying
    /// between 1 and 1000; see [the adaptive limit](super#the-adaptive-limit).
    pub fn adaptive() -> Self {
        Self::adaptive_with(Adaptive::default())
    }

    /// An adaptive limit with other settings.
    pub fn adaptive_with(config: Adaptive) -> Self {
        Self::with(Limiter::adaptive(config))
    }

    /// No limit: every request passes (the default of [`Stack`](crate::stack::Stack)).
    pub fn off() -> Self {
        Self { shared: None }
    }

    fn with(limiter: Limiter) -> Self {
        Self {
            shared: Some(Arc::new(Shared {
                limiter: Arc::new(limiter),
                skip: PathSet::probes_and_admin(),
                renderer: None,
            })),
        }
    }

    /// Reads `CONCURRENCY_LIMIT` (a number, `adaptive`, or unset for off) and
    /// `CONCURRENCY_LIMIT_MAX` (the adaptive limit's ceiling, default 1000), and
    /// `ERROR_FORMAT` for the answer's format. An invalid value is an error that
    /// names the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let max = match var("CONCURRENCY_LIMIT_MAX", &mut errors) {
            None => Adaptive::default().max,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => n,
                _ => {
                    errors.push(
                        "CONCURRENCY_LIMIT_MAX",
                        &raw,
                        "a whole number from 1 to 1000000",
                    );
                    Adaptive::default().max
                }
            },
        };
        let layer = match var("CONCURRENCY_LIMIT", &mut errors).as_deref() {
            None => Self::off(),
            Some("adaptive") => Self::adaptive_with(Adaptive {
                max,
                ..Adaptive::default()
            }),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Self::fixed(n),
                _ => {
                    errors.push(
                        "CONCURRENCY_LIMIT",
                        raw,
                        "a whole number from 1 to 1000000, or adaptive",
                    );
                    Self::off()
                }
            },
        };
        let layer = match Renderer::from_env_if_set(&mut errors) {
            Some(renderer) => layer.renderer(renderer),
            None => layer,
        };
        errors.into_result(layer)
    }

    /// Paths that are never shed (default [`PathSet::probes_and_admin`]:
    /// `/health/*`, `/metrics` and `/admin/*`, so an overloaded service still
    /// tells its orchestrator so and an operator still gets through).
    pub fn skip_paths(self, paths: impl Into<PathSet>) -> Self {
        let paths = paths.into();
        self.map(|s| s.skip = paths)
    }

    /// Renders the 503 with `renderer` (default problem+json).
    pub fn renderer(self, renderer: Renderer) -> Self {
        self.map(|s| s.renderer = Some(renderer))
    }

    fn map(self, f: impl FnOnce(&mut Shared)) -> Self {
        Self {
            shared: self.shared.map(|shared| {
                let mut shared = Arc::unwrap_or_clone(shared);
                f(&mut shared);
                Arc::new(shared)
            }),
        }
    }

    /// Whether a limit is set.
    pub fn is_on(&self) -> bool {
        self.shared.is_some()
    }

    /// The current limit, `None` when off.
    pub fn limit(&self) -> Option<usize> {
        self.shared.as_ref().map(|s| s.limiter.limit())
    }

    /// Requests in flight now (0 when off: they are not counted).
    pub fn in_flight(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.limiter.in_flight())
    }

    /// Registers the gauge `http_server_concurrency_limit`, the current limit, in
    /// `registry`. Nothing is registered when the layer is off.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let Some(shared) = &self.shared else { return };
        let gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        registry.register(
            "http_server_concurrency_limit",
            "Requests the server admits at once before it sheds load",
            gauge.clone(),
        );
        shared.limiter.set_gauge(gauge);
    }
}

impl Default for ConcurrencyLimitLayer {
    fn default() -> Self {
        Self::off()
    }
}

impl fmt::Debug for ConcurrencyLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ConcurrencyLimitLayer");
        match &self.shared {
            None => d.field("limit", &"off"),
            Some(s) => d
                .field("limit", &s.limiter.limit())
                .field("adaptive", &s.limiter.is_adaptive())
                .field("in_flight", &s.limiter.in_flight())
                .field("skip_paths", &s.skip),
        };
        d.finish()
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

impl<S> crate::stack::Switchable<S> for ConcurrencyLimitLayer {
    fn off(inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            shared: None,
        }
    }
}

/// The service made by [`ConcurrencyLimitLayer`].
#[derive(Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    shared: Option<Arc<Shared>>,
}

impl<S> ConcurrencyLimit<S> {
    /// A layer with a fixed limit: [`ConcurrencyLimitLayer::fixed`].
    pub fn layer(limit: usize) -> ConcurrencyLimitLayer {
        ConcurrencyLimitLayer::fixed(limit)
    }

    define_inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for ConcurrencyLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ConcurrencyLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the inner service's: shedding is decided per request, so
        // a request over the limit is answered instead of waiting.
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some(shared) = &self.shared else {
            return ResponseFuture::inner(self.inner.call(req), None);
        };
        if shared.skip.contains(req.uri().path()) {
            return ResponseFuture::inner(self.inner.call(req), None);
        }
        match shared.limiter.try_acquire() {
            Some(permit) => ResponseFuture::inner(self.inner.call(req), Some(permit)),
            None => {
                let renderer = shared.renderer.clone().unwrap_or_default();
                ResponseFuture::shed(overloaded(&renderer.for_request(req.headers())))
            }
        }
    }
}

/// The answer to a request over the limit.
#[cold]
fn overloaded<B>(renderer: &Renderer) -> Response<ResponseBody<B>> {
    let problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .code(Code::OVERLOADED)
        .detail("the server is at its limit of requests in flight, retry in 1 s")
        .rejected_by("load_shed");
    let mut response = renderer.response(problem);
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

pin_project! {
    /// The response future of [`ConcurrencyLimit`]: holds the request's place
    /// among those in flight until the response is ready (or the future dropped).
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F, permit: Option<Permit> },
        // Boxed: shedding is the rare path, and a whole response would grow
        // every future by its size.
        Shed { response: Option<Box<Response<ResponseBody<B>>>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn inner(future: F, permit: Option<Permit>) -> Self {
        Self {
            kind: Kind::Inner { future, permit },
        }
    }

    fn shed(response: Response<ResponseBody<B>>) -> Self {
        Self {
            kind: Kind::Shed {
                response: Some(Box::new(response)),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, permit } => {
                let result = std::task::ready!(future.poll(cx));
                // The place is given back with the answer, not with its body.
                drop(permit.take());
                Poll::Ready(result.map(|r| r.map(ResponseBody::inner)))
            }
            KindProj::Shed { response } => {
                let response = response
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(*response))
            }
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
