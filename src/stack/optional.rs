//! A layer that can be switched off without changing the stack's type.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// Boxed error of an [`EitherBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `Some(layer)` applies the layer; `None` passes requests straight through.
///
/// ```
/// use tower_ops::stack::Optional;
/// use tower_ops::timeout::TimeoutLayer;
///
/// let on = Optional::new(Some(TimeoutLayer::new(std::time::Duration::from_secs(5))));
/// let off: Optional<TimeoutLayer> = Optional::new(None);
/// assert!(on.is_on() && !off.is_on());
/// ```
#[derive(Clone, Debug)]
pub struct Optional<L>(Option<L>);

impl<L> Optional<L> {
    /// Wraps an optional layer.
    pub fn new(layer: Option<L>) -> Self {
        Self(layer)
    }

    /// Whether the layer is applied.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The layer, when on.
    pub fn get(&self) -> Option<&L> {
        self.0.as_ref()
    }
}

impl<L, S> Layer<S> for Optional<L>
where
    L: Layer<S>,
{
    type Service = OptionalService<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => OptionalService::On {
                service: layer.layer(inner),
            },
            None => OptionalService::Off { service: inner },
        }
    }
}

/// The service made by [`Optional`].
#[derive(Clone, Debug)]
pub enum OptionalService<A, B> {
    /// The layer is applied.
    On {
        /// The layered service.
        service: A,
    },
    /// The layer is off.
    Off {
        /// The inner service, untouched.
        service: B,
    },
}

impl<A, B, ReqBody, ResA, ResB, E> Service<Request<ReqBody>> for OptionalService<A, B>
where
    A: Service<Request<ReqBody>, Response = Response<ResA>, Error = E>,
    B: Service<Request<ReqBody>, Response = Response<ResB>, Error = E>,
{
    type Response = Response<EitherBody<ResA, ResB>>;
    type Error = E;
    type Future = OptionalFuture<A::Future, B::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        match self {
            Self::On { service } => service.poll_ready(cx),
            Self::Off { service } => service.poll_ready(cx),
        }
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self {
            Self::On { service } => OptionalFuture {
                kind: FutureKind::On {
                    future: service.call(req),
                },
            },
            Self::Off { service } => OptionalFuture {
                kind: FutureKind::Off {
                    future: service.call(req),
                },
            },
        }
    }
}

pin_project! {
    /// The response future of [`OptionalService`].
    pub struct OptionalFuture<A, B> {
        #[pin]
        kind: FutureKind<A, B>,
    }
}

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<A, B> {
        On { #[pin] future: A },
        Off { #[pin] future: B },
    }
}

impl<A, B, ResA, ResB, E> Future for OptionalFuture<A, B>
where
    A: Future<Output = Result<Response<ResA>, E>>,
    B: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<EitherBody<ResA, ResB>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::On { future } => future.poll(cx).map(|r| {
                r.map(|res| {
                    res.map(|body| EitherBody {
                        kind: BodyKind::A { body },
                    })
                })
            }),
            FutureKindProj::Off { future } => future.poll(cx).map(|r| {
                r.map(|res| {
                    res.map(|body| EitherBody {
                        kind: BodyKind::B { body },
                    })
                })
            }),
        }
    }
}

pin_project! {
    /// The body of an [`OptionalService`] response: the layered service's or the
    /// inner service's.
    pub struct EitherBody<A, B> {
        #[pin]
        kind: BodyKind<A, B>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<A, B> {
        A { #[pin] body: A },
        B { #[pin] body: B },
    }
}

impl<A: std::fmt::Debug, B: std::fmt::Debug> std::fmt::Debug for EitherBody<A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            BodyKind::A { body } => f.debug_tuple("EitherBody::A").field(body).finish(),
            BodyKind::B { body } => f.debug_tuple("EitherBody::B").field(body).finish(),
        }
    }
}

impl<A, B> Body for EitherBody<A, B>
where
    A: Body<Data = Bytes>,
    A::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            BodyKindProj::A { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            BodyKindProj::B { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::A { body } => body.is_end_stream(),
            BodyKind::B { body } => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::A { body } => body.size_hint(),
            BodyKind::B { body } => body.size_hint(),
        }
    }
}
