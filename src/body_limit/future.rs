use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Response, StatusCode};
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
            rejection: Option<Box<(Problem, Renderer)>>,
        },
        Inner {
            #[pin]
            future: F,
            watch: Option<(Arc<Shared>, Renderer)>,
        },
    }
}

impl<F, M> ResponseFuture<F, M> {
    pub(crate) fn too_large(
        config: &Config,
        headers: &HeaderMap,
        length: u64,
        limit: u64,
        id: Option<RequestId>,
    ) -> Self {
        let detail = format!("request body of {length} bytes exceeds the limit of {limit} bytes");
        Self::reject(config, headers, too_large(limit, id).detail(detail))
    }

    pub(crate) fn bad_length(
        config: &Config,
        headers: &HeaderMap,
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
        Self::reject(config, headers, problem)
    }

    fn reject(config: &Config, headers: &HeaderMap, problem: Problem) -> Self {
        Self {
            kind: Kind::Reject {
                rejection: Some(Box::new((problem, renderer(config, headers)))),
            },
            _mode: PhantomData,
        }
    }

    /// The inner service's future; with `watch`, the shared flag of a body that
    /// may still go over the limit and the renderer for that answer.
    pub(crate) fn inner(future: F, watch: Option<(Arc<Shared>, Renderer)>) -> Self {
        Self {
            kind: Kind::Inner { future, watch },
            _mode: PhantomData,
        }
    }
}

/// The renderer for a rejection of the request with `headers`.
pub(crate) fn renderer(config: &Config, headers: &HeaderMap) -> Renderer {
    config
        .renderer
        .clone()
        .unwrap_or_default()
        .for_request(headers)
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
                Poll::Ready(Ok(M::rejection(renderer.response(problem))))
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
                    return Poll::Ready(Ok(M::rejection(renderer.response(problem))));
                }
                Poll::Ready(result.map(M::response))
            }
        }
    }
}
