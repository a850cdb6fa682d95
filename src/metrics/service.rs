//! The service, its response future and the measuring response body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Request, Response, header::CONTENT_LENGTH};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::labels::method_index;
use super::layer::{MetricsLayer, Series, Shared};
use crate::error::{Problem, ShadowRejection};
use crate::route::MatchedRoute;

/// The service made by [`MetricsLayer`].
#[derive(Clone)]
pub struct Metrics<S> {
    inner: S,
    /// `None`: switched off ([`Switchable`](crate::stack::Switchable)).
    shared: Option<Arc<Shared>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Metrics<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Metrics<S> {
    /// Wraps `inner`, recording into the metrics of `layer`.
    pub fn new(inner: S, layer: &MetricsLayer) -> Self {
        Self::from_shared(inner, Some(layer.shared().clone()))
    }

    /// A layer registering its metrics in `registry`: [`MetricsLayer::new`].
    pub fn layer(registry: &mut prometheus_client::registry::Registry) -> MetricsLayer {
        MetricsLayer::new(registry)
    }

    pub(crate) fn from_shared(inner: S, shared: Option<Arc<Shared>>) -> Self {
        Self { inner, shared }
    }

    define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Metrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Response = Response<MetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = match &self.shared {
            Some(shared) if !shared.skips(req.uri().path()) => shared,
            _ => {
                return ResponseFuture {
                    inner: self.inner.call(req),
                    pending: None,
                };
            }
        };
        let start = Instant::now();
        let method = method_index(req.method());
        let request_bytes = request_size(&req);
        let (req, trace_id) = if shared.wants_exemplars() {
            let (parts, body) = req.into_parts();
            let id = shared.trace_id(&parts);
            (Request::from_parts(parts, body), id)
        } else {
            (req, None)
        };
        let active = ActiveGuard::new(shared.clone(), method);
        let route = MatchedRoute::of_request(&req);
        ResponseFuture {
            inner: self.inner.call(req),
            pending: Some(Pending {
                active,
                start,
                request_bytes,
                trace_id,
                route,
            }),
        }
    }
}

/// The exact size of the request body when known up front: the body's own size
/// hint, else a well-formed `Content-Length`.
fn request_size<B: Body>(req: &Request<B>) -> Option<u64> {
    req.body().size_hint().exact().or_else(|| {
        req.headers()
            .get(CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    })
}

/// Decrements the active requests gauge when dropped, whatever ends the request:
/// the end of the body, a client disconnect, a timeout or a panic.
struct ActiveGuard {
    shared: Arc<Shared>,
    method: u8,
}

impl ActiveGuard {
    fn new(shared: Arc<Shared>, method: u8) -> Self {
        shared.active(method).inc();
        Self { shared, method }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.shared.active(self.method).dec();
    }
}

/// What is known before the response.
struct Pending {
    active: ActiveGuard,
    start: Instant,
    request_bytes: Option<u64>,
    trace_id: Option<String>,
    /// The route known before the response, for responses that an inner layer
    /// produced without reaching the route capture.
    route: Option<MatchedRoute>,
}

impl Pending {
    fn respond<B>(self, response: &Response<B>) -> Recorder {
        let shared = &self.active.shared;
        let problem = response.extensions().get::<Problem>();
        if let Some(problem) = problem
            && let Some(by) = problem.get_rejected_by()
        {
            shared.reject(by, problem.get_code());
        }
        if let Some(mark) = response.extensions().get::<ShadowRejection>() {
            shared.shadow_reject(mark.rejected_by(), mark.code());
        }
        let trace_id = match self.trace_id {
            None if shared.wants_exemplars() => problem
                .and_then(Problem::get_trace_id)
                .filter(|id| super::labels::valid_trace_id(id))
                .map(str::to_owned),
            id => id,
        };
        let series = shared.series(
            self.active.method,
            MatchedRoute::of_response(
                response.extensions(),
                response.headers(),
                self.route.as_ref(),
            ),
            response.status().as_u16(),
        );
        Recorder {
            series,
            start: self.start,
            request_bytes: self.request_bytes,
            response_bytes: 0,
            trace_id,
            _active: self.active,
        }
    }
}

/// Observes the request when dropped: at the end of the response body, or when the
/// body is dropped early (the client went away mid-stream).
struct Recorder {
    series: Arc<Series>,
    start: Instant,
    request_bytes: Option<u64>,
    response_bytes: u64,
    trace_id: Option<String>,
    _active: ActiveGuard,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.series.observe(
            self.start.elapsed().as_secs_f64(),
            self.trace_id.take(),
            self.request_bytes,
            self.response_bytes,
        );
    }
}

pin_project! {
    /// The response future of [`Metrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<MetricsBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // On `Err` the pending state is dropped: the gauge goes down, and no
        // duration is recorded for a request that got no status.
        let response = ready!(this.inner.poll(cx))?;
        let recorder = this.pending.take().map(|p| p.respond(&response));
        Poll::Ready(Ok(response.map(|body| MetricsBody {
            inner: body,
            recorder,
        })))
    }
}

pin_project! {
    /// The response body of [`Metrics`]: counts the bytes sent and records the
    /// request when the body ends or is dropped.
    pub struct MetricsBody<B> {
        #[pin]
        inner: B,
        recorder: Option<Recorder>,
    }
}

/// A body that records nothing, for layers that answer without calling the inner
/// service (tower-http's `Cors` answers preflights with `Default`).
impl<B: Default> Default for MetricsBody<B> {
    fn default() -> Self {
        Self {
            inner: B::default(),
            recorder: None,
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for MetricsBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let (Some(data), Some(rec)) = (frame.data_ref(), this.recorder.as_mut()) {
                    rec.response_bytes += bytes::Buf::remaining(data) as u64;
                }
                if this.inner.is_end_stream() {
                    *this.recorder = None;
                }
            }
            Some(Err(_)) | None => *this.recorder = None,
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
