use std::convert::Infallible;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::Renderer;
use super::future::{Failure, ResponseFuture};
use super::log::panic_message;
use crate::body::ResponseBody;
use crate::config::ConfigError;
use crate::request_id::RequestId;

/// A boxed error, as tower middleware produces them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Turns panics, service errors and plain error responses into [`Problem`]
/// responses. See the [module docs](super#the-error-layer).
///
/// [`Problem`]: super::Problem
#[derive(Clone, Debug, Default)]
pub struct ErrorLayer {
    renderer: Renderer,
}

impl ErrorLayer {
    /// A layer rendering RFC 9457 `application/problem+json`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renders with `renderer` instead (for example [`Renderer::wrapped`]).
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.renderer = renderer;
        self
    }

    /// Reads the format from `ERROR_FORMAT` (see [`Renderer::from_env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new().renderer(Renderer::from_env()?))
    }
}

impl<S> Layer<S> for ErrorLayer {
    type Service = ErrorService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorService {
            inner,
            renderer: self.renderer.clone(),
            failed: None,
        }
    }
}

/// The service made by [`ErrorLayer`].
///
/// Its error type is [`Infallible`]: unlike the other tower-ops layers, which keep
/// `Error = S::Error`, answering the inner service's errors is this layer's job.
/// That is what lets `Router::layer` (which requires `Infallible`) take it, with
/// tower's `TimeoutLayer` or `LoadShedLayer` inside and no `HandleErrorLayer`.
pub struct ErrorService<S> {
    inner: S,
    renderer: Renderer,
    /// `poll_ready` failed or panicked: the next call answers with that failure
    /// instead of calling the inner service.
    failed: Option<Failure>,
}

impl<S> ErrorService<S> {
    /// Wraps `inner` with the default settings.
    pub fn new(inner: S) -> Self {
        ErrorLayer::new().layer(inner)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for ErrorService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            renderer: self.renderer.clone(),
            // Readiness belongs to one instance; a clone starts unready.
            failed: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ErrorService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorService")
            .field("inner", &self.inner)
            .field("renderer", &self.renderer)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ErrorService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.failed.is_some() {
            return Poll::Ready(Ok(()));
        }
        let failure = match catch_unwind(AssertUnwindSafe(|| self.inner.poll_ready(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(()))) => return Poll::Ready(Ok(())),
            Ok(Poll::Ready(Err(error))) => Failure::Error(error.into()),
            Err(payload) => Failure::Panic(panic_message(&*payload).to_owned()),
        };
        self.failed = Some(failure);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let request_id = req.extensions().get::<RequestId>().cloned();
        if let Some(failure) = self.failed.take() {
            return ResponseFuture::failed(failure, self.renderer.clone(), request_id);
        }
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => ResponseFuture::new(future, self.renderer.clone(), request_id),
            Err(payload) => ResponseFuture::failed(
                Failure::Panic(panic_message(&*payload).to_owned()),
                self.renderer.clone(),
                request_id,
            ),
        }
    }
}
