use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::decision::{HeaderJob, ShadowMark, Shared, Verdict};
use crate::body::{AnyBody, ResponseBody, ResponseMode};

pub(super) struct Checking<S, ReqBody> {
    pub(super) check: Pin<Box<dyn Future<Output = Verdict> + Send>>,
    pub(super) service: Option<S>,
    pub(super) request: Option<Request<ReqBody>>,
    pub(super) shared: Arc<Shared>,
    /// Whether a rejection is answered with a gRPC status.
    pub(super) grpc: bool,
}

pin_project! {
    /// The future of [`RateLimit`](super::RateLimit): `F` is the inner service's
    /// future, `S` the service itself (kept while a shared backend decides).
    pub struct ResponseFuture<F, S, ReqBody, ResBody, M = AnyBody> {
        #[pin]
        kind: Kind<F, S, ReqBody, ResBody>,
        _mode: PhantomData<fn() -> M>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, S, ReqBody, ResBody> {
        Inner {
            #[pin]
            future: F,
            headers: Option<HeaderJob>,
            // Set when a policy in shadow mode would have refused the request.
            shadowed: Option<ShadowMark>,
        },
        // Boxed: the in-process path should not move a whole request around.
        Checking {
            state: Box<Checking<S, ReqBody>>,
        },
        // Boxed: a rejection is rarer than a pass, and a whole response would
        // grow every future by its size.
        Ready {
            response: Option<Box<Response<ResponseBody<ResBody>>>>,
        },
    }
}

impl<F, S, ReqBody, ResBody, M> ResponseFuture<F, S, ReqBody, ResBody, M> {
    #[inline]
    fn new(kind: Kind<F, S, ReqBody, ResBody>) -> Self {
        Self {
            kind,
            _mode: PhantomData,
        }
    }

    /// The inner service's future; `headers` and the `shadowed` mark go on its
    /// response.
    #[inline]
    pub(super) fn inner(
        future: F,
        headers: Option<HeaderJob>,
        shadowed: Option<ShadowMark>,
    ) -> Self {
        Self::new(Kind::Inner {
            future,
            headers,
            shadowed,
        })
    }

    /// Waits for the shared backend, then calls the service or answers.
    pub(super) fn checking(state: Checking<S, ReqBody>) -> Self {
        Self::new(Kind::Checking {
            state: Box::new(state),
        })
    }

    /// An answer of the layer's own.
    pub(super) fn ready(response: Response<ResponseBody<ResBody>>) -> Self {
        Self::new(Kind::Ready {
            response: Some(Box::new(response)),
        })
    }
}

impl<F, S, ReqBody, ResBody, M> Future for ResponseFuture<F, S, ReqBody, ResBody, M>
where
    F: Future<Output = Result<Response<ResBody>, S::Error>>,
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Future = F>,
    M: ResponseMode<ResBody>,
{
    type Output = Result<Response<M::ResBody>, S::Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().kind.project() {
                KindProj::Inner {
                    future,
                    headers,
                    shadowed,
                } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(job) = headers.take() {
                        job.write(response.headers_mut());
                    }
                    if let Some(mark) = shadowed.take() {
                        mark.write(response.extensions_mut());
                    }
                    return Poll::Ready(Ok(M::response(response)));
                }
                KindProj::Ready { response } => {
                    return match response.take() {
                        Some(r) => Poll::Ready(Ok(M::rejection(*r))),
                        None => panic!("ResponseFuture polled after completion"),
                    };
                }
                KindProj::Checking { state } => {
                    let Checking {
                        check,
                        service,
                        request,
                        shared,
                        grpc,
                    } = &mut **state;
                    let verdict = ready!(check.as_mut().poll(cx));
                    match (verdict, service.take(), request.take()) {
                        (Verdict::Pass { closest, shadowed }, Some(mut service), Some(request)) => {
                            let headers = closest
                                .filter(|_| shared.mode.any())
                                .map(|(i, o)| HeaderJob::new(shared, i, o));
                            Kind::Inner {
                                future: service.call(request),
                                headers,
                                shadowed,
                            }
                        }
                        (Verdict::Limited(index, outcome), _, _) => Kind::Ready {
                            response: Some(Box::new(shared.limited(index, &outcome, *grpc))),
                        },
                        (Verdict::Unavailable(secs), _, _) => Kind::Ready {
                            response: Some(Box::new(shared.unavailable(secs, *grpc))),
                        },
                        (Verdict::Pass { .. }, _, _) => {
                            panic!("ResponseFuture polled after completion")
                        }
                    }
                }
            };
            self.as_mut().project().kind.set(next);
        }
    }
}

impl<F, S, ReqBody, ResBody, M> fmt::Debug for ResponseFuture<F, S, ReqBody, ResBody, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
