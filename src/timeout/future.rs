use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::layer::Config;
use crate::body::ResponseBody;
use crate::error::{Code, Problem, Renderer};
use crate::request_id::RequestId;

pin_project! {
    /// The response future of [`Timeout`](super::Timeout).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Option<Instant>,
        timeout: Duration,
        request_id: Option<RequestId>,
        status: StatusCode,
        renderer: Option<Renderer>,
        // A gRPC call: the timeout is answered with `DEADLINE_EXCEEDED`.
        grpc: bool,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<F> {
        Running { #[pin] inner: F },
        Done,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        deadline: Option<Instant>,
        timeout: Duration,
        request_id: Option<RequestId>,
        grpc: bool,
        config: &Config,
    ) -> Self {
        Self {
            state: State::Running { inner },
            sleep: None,
            deadline,
            timeout,
            request_id,
            status: config.status,
            renderer: config.renderer.clone(),
            grpc,
        }
    }

    /// A future without a deadline: the inner response, as it comes.
    pub(crate) fn unlimited(inner: F) -> Self {
        Self {
            state: State::Running { inner },
            sleep: None,
            deadline: None,
            timeout: Duration::MAX,
            request_id: None,
            status: StatusCode::GATEWAY_TIMEOUT,
            renderer: None,
            grpc: false,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let StateProj::Running { inner } = this.state.as_mut().project() else {
            panic!("ResponseFuture polled after completion");
        };
        // The response wins a tie with the timer.
        if let Poll::Ready(result) = inner.poll(cx) {
            this.state.project_replace(State::Done);
            return Poll::Ready(result.map(|res| res.map(ResponseBody::inner)));
        }
        let Some(deadline) = *this.deadline else {
            // A timeout too long to represent never expires.
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            std::task::ready!(sleep.poll(cx));
        }
        // Drop the handler's future now, not when our own future is dropped:
        // whatever it holds (connections, locks, permits) is released at once.
        this.state.project_replace(State::Done);
        let mut problem = Problem::new(*this.status)
            .code(Code::TIMEOUT)
            .detail(format!(
                "request did not complete within {}",
                human(*this.timeout)
            ))
            .rejected_by("timeout");
        if let Some(id) = this.request_id.take() {
            problem = problem.request_id(id);
        }
        tracing::debug!(
            timeout_ms = this.timeout.as_millis() as u64,
            "request timed out"
        );
        let renderer = this.renderer.take().unwrap_or_default().grpc(*this.grpc);
        Poll::Ready(Ok(renderer.response(problem)))
    }
}

/// `30 s`, `1.5 s`, `250 ms`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else if ms >= 1000 {
        format!("{} s", d.as_secs_f64())
    } else if ms > 0 {
        format!("{ms} ms")
    } else {
        format!("{} us", d.as_micros())
    }
}
