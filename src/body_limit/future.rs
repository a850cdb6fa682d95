use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::body::Shared;
use super::layer::{Config, LengthProblem};
use crate::body::{AnyBody, ResponseMode};
use crate::error::Renderer;
use crate::error::{Code, Problem};
use crate::request_id::RequestId;

pin_project! {
    /// The response future of [`BodyLimit`](super::BodyLimit).
    pub struct ResponseFuture<F, M = AnyBody> {
        #[pin]
        kind: Kind<F>,
        _mode: PhantomData<fn() -> M>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        // Boxed: rejections are rare, and a small future is cheaper to move on
        // the path every request takes.
        Reject {
            rejection: Option<Box<(Problem, Option<Renderer>)>>,
        },
        Inner {
            #[pin]
            future: F,
            watch: Option<(Arc<Shared>, Option<Renderer>)>,
        },
    }
}

impl<F, M> ResponseFuture<F, M> {
    pub(crate) fn too_large(
        config: &Config,
        length: u64,
        limit: u64,
        id: Option<RequestId>,
    ) -> Self {
        let detail = format!("request body of {length} bytes exceeds the limit of {limit} bytes");
        Self::reject(config, too_large(limit, id).detail(detail))
    }

    pub(crate) fn bad_length(
        config: &Config,
        problem: LengthProblem,
        id: Option<RequestId>,
    ) -> Self {
        let detail = match problem {
            LengthProblem::Invalid => "Content-Length is not a valid number of bytes",
            LengthProblem::Conflicting => "Content-Length has conflicting values",
        };
        let problem = with_id(Problem::new(StatusCode::BAD_REQUEST), id)
            .code(Code::BAD_REQUEST)
            .detail(detail)
            .rejected_by("body_limit");
        Self::reject(config, problem)
    }

    fn reject(config: &Config, problem: Problem) -> Self {
        Self {
            kind: Kind::Reject {
                rejection: Some(Box::new((problem, config.renderer.clone()))),
            },
            _mode: PhantomData,
        }
    }

    pub(crate) fn inner(future: F, shared: Option<Arc<Shared>>, config: &Config) -> Self {
        Self {
            kind: Kind::Inner {
                future,
                watch: shared.map(|s| (s, config.renderer.clone())),
            },
            _mode: PhantomData,
        }
    }
}

fn render<B>(
    renderer: Option<Renderer>,
    problem: Problem,
) -> Response<crate::body::ResponseBody<B>> {
    renderer.unwrap_or_default().response(problem)
}

fn with_id(problem: Problem, id: Option<RequestId>) -> Problem {
    match id {
        Some(id) => problem.request_id(id),
        None => problem,
    }
}

fn too_large(limit: u64, id: Option<RequestId>) -> Problem {
    with_id(Problem::new(StatusCode::PAYLOAD_TOO_LARGE), id)
        .code(Code::PAYLOAD_TOO_LARGE)
        .detail(format!("request body exceeds the limit of {limit} bytes"))
        .rejected_by("body_limit")
}

impl<F, M, B, E> Future for ResponseFuture<F, M>
where
    F: Future<Output = Result<Response<B>, E>>,
    M: ResponseMode<B>,
{
    type Output = Result<Response<M::ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Reject { rejection } => {
                let (problem, renderer) = *rejection
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(M::rejection(render(renderer, problem))))
            }
            KindProj::Inner { future, watch } => {
                let result = std::task::ready!(future.poll(cx));
                if let Some((shared, renderer)) = watch.take()
                    && shared.was_hit()
                {
                    // Whatever the handler made of the body error (a 400, a
                    // 500, a 200 with an empty default, or a service error),
                    // the client is told the truth: the body was too large.
                    let problem = too_large(shared.limit, shared.request_id.clone());
                    return Poll::Ready(Ok(M::rejection(render(renderer, problem))));
                }
                Poll::Ready(result.map(M::response))
            }
        }
    }
}
