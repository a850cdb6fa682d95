//! The request id in scope: a thread-local slot that holds the id only while the
//! future (or call) it belongs to runs on this thread.
//!
//! The id lives in its future and is moved into the slot for each poll and back
//! out after it, so entering a scope clones nothing (a clone of a pooled id is an
//! atomic operation) and the slot never outlives the poll that filled it.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::RequestId;

thread_local! {
    static CURRENT: Cell<Option<RequestId>> = const { Cell::new(None) };
}

/// The id of the request whose future is running, if any.
///
/// Works in handler code and in everything it awaits, because
/// [`RequestIdLayer`](super::RequestIdLayer) calls and polls the inner service
/// inside a scope. Code in a task started with `tokio::spawn` is outside that
/// scope: start it with [`spawn`] instead, or wrap its future with [`scope`].
pub fn current() -> Option<RequestId> {
    peek(|id| id.cloned()).flatten()
}

/// Whether a request id is in scope, without copying it.
pub(crate) fn in_scope() -> bool {
    peek(|id| id.is_some()).unwrap_or(false)
}

/// Looks at the slot without taking the id out for good; `None` while the
/// thread's locals are torn down.
fn peek<R>(f: impl FnOnce(Option<&RequestId>) -> R) -> Option<R> {
    CURRENT
        .try_with(|slot| {
            let id = slot.take();
            let seen = f(id.as_ref());
            slot.set(id);
            seen
        })
        .ok()
}

/// A copy of the request's id for an answer made later, when no scope will
/// provide it (no [`RequestIdLayer`](super::RequestIdLayer) outside the caller).
/// Inside such a scope, answers pick the id up themselves and nothing is copied.
pub(crate) fn for_later(extensions: &http::Extensions) -> Option<RequestId> {
    // No extensions at all (a bare service) is the cheapest check, then the scope.
    if extensions.is_empty() || in_scope() {
        return None;
    }
    extensions.get::<RequestId>().cloned()
}

/// Runs `f` with the id in `slot` (if any) as the [`current()`] one, then puts it
/// back in `slot` and restores the previous one, even if `f` panics.
pub(crate) fn enter<R>(slot: &mut Option<RequestId>, f: impl FnOnce() -> R) -> R {
    struct Restore<'a> {
        slot: &'a mut Option<RequestId>,
        previous: Option<RequestId>,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let previous = self.previous.take();
            if let Ok(ours) = CURRENT.try_with(|c| c.replace(previous)) {
                *self.slot = ours;
            }
        }
    }
    if slot.is_none() {
        return f();
    }
    // The closure takes the id only if the thread's locals are still there
    // (they are not while the thread is torn down: then run without a scope).
    let Ok(previous) = CURRENT.try_with(|c| c.replace(slot.take())) else {
        return f();
    };
    let _restore = Restore { slot, previous };
    f()
}

/// Runs `future` with `id` as the [`current()`] request id.
pub fn scope<F: Future>(id: RequestId, future: F) -> Scoped<F> {
    Scoped::with_slot(future, Some(id))
}

pin_project! {
    /// A future that runs with a request id in scope; made by [`scope`].
    pub struct Scoped<F> {
        #[pin]
        future: F,
        id: Option<RequestId>,
    }
}

impl<F> Scoped<F> {
    /// `future` with `id` (the slot [`enter`] lent during its call, if any).
    pub(crate) fn with_slot(future: F, id: Option<RequestId>) -> Self {
        Self { future, id }
    }

    /// The id, once the future is done with it.
    pub(crate) fn take_id(self: Pin<&mut Self>) -> Option<RequestId> {
        self.project().id.take()
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let future = this.future;
        enter(this.id, || future.poll(cx))
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
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
    match current() {
        Some(id) => tokio::spawn(scope(id, future).instrument(span)),
        None => tokio::spawn(future.instrument(span)),
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use super::*;

    fn id(s: &str) -> RequestId {
        RequestId::new(s).unwrap()
    }

    #[test]
    fn enter_lends_the_id_and_takes_it_back() {
        assert!(current().is_none() && !in_scope());
        let mut slot = Some(id("outer"));
        let seen = enter(&mut slot, || {
            let mut inner = Some(id("inner"));
            let nested = enter(&mut inner, current);
            assert_eq!(
                inner,
                Some(id("inner")),
                "the nested id is back in its slot"
            );
            (current(), nested, in_scope())
        });
        assert_eq!(seen, (Some(id("outer")), Some(id("inner")), true));
        assert_eq!(slot, Some(id("outer")));
        assert!(current().is_none() && !in_scope());
    }

    #[test]
    fn a_panic_restores_the_previous_scope_and_the_slot() {
        let mut outer = Some(id("outer"));
        enter(&mut outer, || {
            let mut inner = Some(id("inner"));
            let caught = catch_unwind(AssertUnwindSafe(|| {
                enter(&mut inner, || panic!("in scope"));
            }));
            assert!(caught.is_err());
            assert_eq!(inner, Some(id("inner")));
            assert_eq!(current(), Some(id("outer")));
        });
        assert!(current().is_none());
    }

    #[test]
    fn an_empty_slot_leaves_the_scope_as_it_is() {
        let mut outer = Some(id("outer"));
        let seen = enter(&mut outer, || enter(&mut None, current));
        assert_eq!(seen, Some(id("outer")));
    }

    #[test]
    fn for_later_copies_only_without_a_scope() {
        let mut extensions = http::Extensions::new();
        extensions.insert(id("req-1"));
        assert_eq!(for_later(&extensions), Some(id("req-1")));
        assert_eq!(for_later(&http::Extensions::new()), None);
        let mut slot = Some(id("scoped"));
        assert_eq!(enter(&mut slot, || for_later(&extensions)), None);
    }

    #[tokio::test]
    async fn scoped_futures_keep_their_id_across_polls_and_tasks() {
        let a = scope(id("a"), async {
            tokio::task::yield_now().await;
            let first = current();
            tokio::task::yield_now().await;
            (first, current())
        });
        let b = scope(id("b"), async {
            tokio::task::yield_now().await;
            current()
        });
        // Interleaved on one thread: each poll sees its own future's id.
        let ((a1, a2), b1) = tokio::join!(a, b);
        assert_eq!((a1, a2, b1), (Some(id("a")), Some(id("a")), Some(id("b"))));
        assert!(current().is_none());
        let spawned = scope(id("c"), async { spawn(async { current() }).await.unwrap() }).await;
        assert_eq!(spawned, Some(id("c")));
        assert!(tokio::spawn(async { current() }).await.unwrap().is_none());
    }
}
