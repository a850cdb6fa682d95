//! The bodies shared by the layers: the response body of layers that may answer
//! on their own, and the request body kept for the log line.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Either the inner service's body, untouched, or a complete body written by a
    /// tower-ops layer (an error envelope, a probe answer).
    ///
    /// Every tower-ops layer that can answer by itself uses this one type, so stacking
    /// several of them nests cheaply and the data type stays `Bytes`.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A complete body.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        Self {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Full { data: None },
        }
    }
}

/// An empty body, whatever the inner body type: layers that answer without
/// calling the inner service (tower-http's `Cors`, for preflights) ask for
/// `Default`, and the inner body need not have it (tower-http's `TraceLayer`
/// body does not).
impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { body } => f.debug_tuple("ResponseBody::Inner").field(body).finish(),
            Kind::Full { data } => f.debug_tuple("ResponseBody::Full").field(data).finish(),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// The body of the endpoints tower-ops serves itself: the health probes
/// ([`HealthBody`](crate::health::HealthBody)) and the `/metrics` exporter
/// (`ExporterBody`, feature `metrics`) are this one type, so a plain-hyper
/// service can answer both (and its own routes, with [`ResponseBody::full`])
/// from one `match`, without boxing.
///
/// ```
/// use bytes::Bytes;
/// use http::Response;
/// use tower_ops::body::EndpointBody;
/// use tower_ops::health::HealthBody;
///
/// fn own_route() -> Response<EndpointBody> {
///     Response::new(EndpointBody::full(Bytes::from_static(b"hello")))
/// }
/// let _: Response<HealthBody> = own_route();
/// # #[cfg(feature = "metrics")]
/// let _: Response<tower_ops::metrics::ExporterBody> = own_route();
/// ```
pub type EndpointBody = ResponseBody<http_body_util::Empty<Bytes>>;

/// The future of the endpoints tower-ops serves itself (the health probes, the
/// admin routes): an answer ready at once, or one that waits for something (the
/// health checks, a request body).
pub struct EndpointFuture {
    kind: EndpointKind,
}

enum EndpointKind {
    Ready(Option<Response<EndpointBody>>),
    Waiting(std::pin::Pin<Box<dyn std::future::Future<Output = Response<EndpointBody>> + Send>>),
}

impl EndpointFuture {
    /// The answer, ready at once.
    pub(crate) fn ready(response: Response<EndpointBody>) -> Self {
        Self {
            kind: EndpointKind::Ready(Some(response)),
        }
    }

    /// The answer `future` makes.
    pub(crate) fn waiting(
        future: impl std::future::Future<Output = Response<EndpointBody>> + Send + 'static,
    ) -> Self {
        Self {
            kind: EndpointKind::Waiting(Box::pin(future)),
        }
    }
}

impl std::future::Future for EndpointFuture {
    type Output = Result<Response<EndpointBody>, std::convert::Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.kind {
            EndpointKind::Ready(response) => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    // Polled again after completion: answer something harmless.
                    let mut response = Response::new(EndpointBody::default());
                    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    response
                })))
            }
            EndpointKind::Waiting(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

impl fmt::Debug for EndpointFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointFuture").finish_non_exhaustive()
    }
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// The response body a layer that may answer on its own returns, per mode:
/// [`AnyBody`] (the default) or, with the `axum` feature, [`AxumBody`].
///
/// Sealed: the two modes are the only ones.
pub trait ResponseMode<ResBody>: sealed::Sealed {
    /// The response body the layer returns.
    type ResBody;

    #[doc(hidden)]
    fn response(response: Response<ResBody>) -> Response<Self::ResBody>;

    #[doc(hidden)]
    fn rejection(response: Response<ResponseBody<ResBody>>) -> Response<Self::ResBody>;
}

/// Works with any body: the layer returns `Response<ResponseBody<ResBody>>` (and
/// [`BodyLimitLayer`](crate::body_limit::BodyLimitLayer) hands
/// `Request<Limited<B>>` to the inner service).
#[derive(Clone, Copy, Debug, Default)]
pub struct AnyBody;

impl sealed::Sealed for AnyBody {}

impl<ResBody> ResponseMode<ResBody> for AnyBody {
    type ResBody = ResponseBody<ResBody>;

    #[inline]
    fn response(response: Response<ResBody>) -> Response<Self::ResBody> {
        response.map(ResponseBody::inner)
    }

    #[inline]
    fn rejection(response: Response<ResponseBody<ResBody>>) -> Response<Self::ResBody> {
        response
    }
}

/// axum's own body: the layer returns `Response<axum::body::Body>` (and
/// [`BodyLimitLayer`](crate::body_limit::BodyLimitLayer) also hands
/// `Request<axum::body::Body>` to the inner service).
///
/// Under `Router::layer` this saves the boxing axum would otherwise do on every
/// request and response: the handler's response passes through as it is (axum's
/// `Body::new` of a `Body` is the body itself), and only the layer's own answers
/// are boxed. The body limit also passes through a request body that cannot go
/// over the limit: an empty one, or one whose exact size equals its declared
/// `Content-Length` (within the limit); every other body is counted by a
/// [`Limited`](crate::body_limit::Limited) wrapper.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct AxumBody;

#[cfg(feature = "axum")]
impl sealed::Sealed for AxumBody {}

#[cfg(feature = "axum")]
impl<ResBody> ResponseMode<ResBody> for AxumBody
where
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type ResBody = axum::body::Body;

    #[inline]
    fn response(response: Response<ResBody>) -> Response<Self::ResBody> {
        response.map(axum::body::Body::new)
    }

    #[inline]
    fn rejection(response: Response<ResponseBody<ResBody>>) -> Response<Self::ResBody> {
        response.map(axum::body::Body::new)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    #[tokio::test]
    async fn both_kinds() {
        let full: ResponseBody<Full<Bytes>> = ResponseBody::full("abc");
        assert_eq!(full.size_hint().exact(), Some(3));
        assert_eq!(full.collect().await.unwrap().to_bytes(), "abc");
        let inner = ResponseBody::inner(Full::new(Bytes::from_static(b"xy")));
        assert_eq!(inner.collect().await.unwrap().to_bytes(), "xy");
        let empty: ResponseBody<Full<Bytes>> = ResponseBody::empty();
        assert!(empty.is_end_stream());
    }
}

/// The request body, kept for the log line when body capture is on.
///
/// [`RequestLogLayer::capture_bodies`](crate::log::RequestLogLayer::capture_bodies) puts one in the request extensions; the
/// crate's [`Json`](crate::error::Json) extractor records the bytes it read into it,
/// and so can any extractor of yours. The log line gets the body redacted and
/// capped as `request_body`. Cheap to clone; recording keeps a reference to the
/// bytes, not a copy.
#[derive(Clone, Default)]
pub struct BodyCapture(Arc<Mutex<Option<Bytes>>>);

impl BodyCapture {
    /// Records the request body (the last call wins).
    pub fn record(&self, body: Bytes) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
    }

    pub(crate) fn take(&self) -> Option<Bytes> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl fmt::Debug for BodyCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self
            .0
            .lock()
            .map(|b| b.as_ref().map(Bytes::len))
            .unwrap_or(None);
        f.debug_struct("BodyCapture").field("len", &len).finish()
    }
}
