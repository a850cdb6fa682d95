//! The request context: what code running for a request reads without being
//! handed it, the request id and the trace id, in one `tokio::task_local!`.
//!
//! Each layer that knows a part of it ([`RequestIdLayer`](crate::request_id::RequestIdLayer)
//! the id, [`RequestLogLayer`](crate::log::RequestLogLayer) the trace) takes the
//! context in scope, adds its part, and calls and polls the inner service inside
//! the result; [`request_id::current`](crate::request_id::current),
//! [`trace_context::current`](crate::trace_context::current) and
//! [`Problem::new`](crate::error::Problem::new) read it. The context lives in the
//! request's future and is lent to the thread for each poll only, so it never
//! outlives the poll that set it, and a task started with `tokio::spawn` is
//! outside it unless it is carried over
//! ([`request_id::spawn`](crate::request_id::spawn)).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;

use crate::request_id::RequestId;
use crate::trace_context::{TraceContext, TraceId};

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// What is known of the request being processed.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestContext {
    pub(crate) request_id: Option<RequestId>,
    pub(crate) trace_id: Option<TraceId>,
    /// The request's valid incoming `traceparent`, kept only while its trace is
    /// `trace_id`: what an outgoing call forwards when no span stands between.
    pub(crate) incoming: Option<TraceContext>,
}

impl RequestContext {
    /// The context in scope, empty outside any: the base a layer adds its part to.
    pub(crate) fn current() -> Self {
        CURRENT.try_with(Clone::clone).unwrap_or_default()
    }

    /// This context with `id` as the request id.
    pub(crate) fn with_request_id(mut self, id: RequestId) -> Self {
        self.request_id = Some(id);
        self
    }

    /// This context with `id` as the trace id and `incoming` as the caller's
    /// context (dropped when it belongs to another trace).
    pub(crate) fn with_trace(mut self, id: TraceId, incoming: Option<TraceContext>) -> Self {
        self.trace_id = Some(id);
        self.incoming = incoming.filter(|tc| tc.trace_id() == id);
        self
    }

    /// Runs `f` with this context in scope, restoring the previous one after,
    /// even if `f` panics.
    pub(crate) fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// `future`, polled with this context in scope.
    pub(crate) fn scope<F: Future>(self, future: F) -> Scoped<F> {
        Scoped {
            kind: Kind::Scoped {
                future: CURRENT.scope(self, future),
            },
        }
    }
}

/// Reads the context in scope; `None` outside any.
pub(crate) fn read<R>(f: impl FnOnce(&RequestContext) -> R) -> Option<R> {
    CURRENT.try_with(f).ok()
}

/// A copy of the request's id for an answer made later, when no context will
/// provide it (no [`RequestIdLayer`](crate::request_id::RequestIdLayer) outside
/// the caller, and an id inserted by hand). Inside such a context, problems pick
/// the id up themselves and nothing is copied.
pub(crate) fn request_id_for_later(extensions: &http::Extensions) -> Option<RequestId> {
    // No extensions at all (a bare service) is the cheapest check, then the scope.
    if extensions.is_empty() || read(|c| c.request_id.is_some()).unwrap_or(false) {
        return None;
    }
    extensions.get::<RequestId>().cloned()
}

pin_project! {
    /// A future that runs with a request context in scope: made by
    /// [`request_id::scope`](crate::request_id::scope), and by the layers around
    /// their inner service's future.
    pub struct Scoped<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Scoped { #[pin] future: TaskLocalFuture<RequestContext, F> },
        // Nothing to add: the future runs in whatever context polls it.
        Plain { #[pin] future: F },
    }
}

impl<F> Scoped<F> {
    /// `future` with no context of its own.
    pub(crate) fn plain(future: F) -> Self {
        Self {
            kind: Kind::Plain { future },
        }
    }

    /// The context, once the future is done with it.
    pub(crate) fn take_context(self: Pin<&mut Self>) -> Option<RequestContext> {
        match self.project().kind.project() {
            KindProj::Scoped { future } => future.take_value(),
            KindProj::Plain { .. } => None,
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Scoped { future } => future.poll(cx),
            KindProj::Plain { future } => future.poll(cx),
        }
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use super::*;

    fn id(s: &str) -> RequestId {
        RequestId::new(s).unwrap()
    }

    fn current_id() -> Option<RequestId> {
        read(|c| c.request_id.clone()).flatten()
    }

    #[test]
    fn sync_scopes_nest_and_restore_even_on_panic() {
        assert!(current_id().is_none());
        RequestContext::default()
            .with_request_id(id("outer"))
            .sync_scope(|| {
                let nested = RequestContext::current()
                    .with_request_id(id("inner"))
                    .sync_scope(current_id);
                assert_eq!(nested, Some(id("inner")));
                assert_eq!(current_id(), Some(id("outer")));
                let caught = catch_unwind(AssertUnwindSafe(|| {
                    RequestContext::default()
                        .with_request_id(id("panics"))
                        .sync_scope(|| panic!("in scope"))
                }));
                assert!(caught.is_err());
                assert_eq!(current_id(), Some(id("outer")));
            });
        assert!(current_id().is_none());
    }

    #[test]
    fn a_layer_adds_its_part_to_the_context_in_scope() {
        let trace = TraceId::from_bytes([7; 16]).unwrap();
        let seen = RequestContext::default()
            .with_request_id(id("r-1"))
            .sync_scope(|| {
                RequestContext::current()
                    .with_trace(trace, None)
                    .sync_scope(RequestContext::current)
            });
        assert_eq!(seen.request_id, Some(id("r-1")));
        assert_eq!(seen.trace_id, Some(trace));
    }

    #[test]
    fn an_id_is_copied_for_later_only_outside_a_context() {
        let mut extensions = http::Extensions::new();
        extensions.insert(id("req-1"));
        assert_eq!(request_id_for_later(&extensions), Some(id("req-1")));
        assert_eq!(request_id_for_later(&http::Extensions::new()), None);
        let inside = RequestContext::default()
            .with_request_id(id("scoped"))
            .sync_scope(|| request_id_for_later(&extensions));
        assert_eq!(inside, None);
    }

    #[tokio::test]
    async fn scoped_futures_keep_their_context_across_polls_and_give_it_back() {
        let a = RequestContext::default()
            .with_request_id(id("a"))
            .scope(async {
                tokio::task::yield_now().await;
                let first = current_id();
                tokio::task::yield_now().await;
                (first, current_id())
            });
        let b = RequestContext::default()
            .with_request_id(id("b"))
            .scope(async {
                tokio::task::yield_now().await;
                current_id()
            });
        // Interleaved on one thread: each poll sees its own future's context.
        let ((a1, a2), b1) = tokio::join!(a, b);
        assert_eq!((a1, a2, b1), (Some(id("a")), Some(id("a")), Some(id("b"))));
        assert!(current_id().is_none());

        let mut done = std::pin::pin!(
            RequestContext::default()
                .with_request_id(id("c"))
                .scope(async {})
        );
        done.as_mut().await;
        let back = done.as_mut().take_context().unwrap();
        assert_eq!(back.request_id, Some(id("c")));
        let mut plain = std::pin::pin!(Scoped::plain(async {}));
        plain.as_mut().await;
        assert!(plain.take_context().is_none());
    }
}
