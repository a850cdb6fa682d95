//! The request id in scope: the id part of the [request context](crate::context).

use std::future::Future;

use super::RequestId;
use crate::context::{self, RequestContext, Scoped};

/// The id of the request whose future is running, if any.
///
/// Works in handler code and in everything it awaits, because
/// [`RequestIdLayer`](super::RequestIdLayer) calls and polls the inner service
/// with the id in the request's context. Code in a task started with
/// `tokio::spawn` is outside that context: start it with [`spawn`] instead, or
/// wrap its future with [`scope`].
pub fn current() -> Option<RequestId> {
    context::read(|c| c.request_id.clone()).flatten()
}

/// Runs `future` with `id` as the [`current()`] request id (and the rest of the
/// context in scope when it is made, such as the trace id).
pub fn scope<F: Future>(id: RequestId, future: F) -> Scoped<F> {
    RequestContext::current().with_request_id(id).scope(future)
}

/// `tokio::spawn`, carrying the current request id (if any) and the current
/// tracing span into the new task.
///
/// Lines logged in the task then belong to the request's span, so they carry
/// its fields (`request_id`, `trace_id`) under any subscriber, as lines logged
/// in the handler do. As with [`tracing::Instrument`], the span stays open until
/// the task ends too; with OpenTelemetry, the request's server span is exported
/// then.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tower_ops::request_id::{self, RequestId};
///
/// let id = RequestId::new("job-7").unwrap();
/// let seen = request_id::scope(id, async {
///     request_id::spawn(async { request_id::current() }).await.unwrap()
/// })
/// .await;
/// assert_eq!(seen.unwrap().as_str(), "job-7");
/// # }
/// ```
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument;
    let span = tracing::Span::current();
    match context::read(RequestContext::clone) {
        Some(context) => tokio::spawn(context.scope(future).instrument(span)),
        None => tokio::spawn(future.instrument(span)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> RequestId {
        RequestId::new(s).unwrap()
    }

    #[tokio::test]
    async fn scopes_and_spawned_tasks_see_the_id() {
        assert!(current().is_none());
        let seen = scope(id("a"), async {
            tokio::task::yield_now().await;
            current()
        })
        .await;
        assert_eq!(seen, Some(id("a")));
        let spawned = scope(id("c"), async { spawn(async { current() }).await.unwrap() }).await;
        assert_eq!(spawned, Some(id("c")));
        assert!(tokio::spawn(async { current() }).await.unwrap().is_none());
    }
}
