use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// Counts requests in flight, so the shutdown coordinator can log how many
/// remain while draining and how many it cut.
///
/// A request counts from the call of the service until its response future
/// completes (or is dropped); a streaming body still being sent after that is
/// not counted. Made by [`Shutdown::in_flight_layer`](super::Shutdown::in_flight_layer);
/// all clones share one counter. The cost is two atomic operations per request.
#[derive(Clone, Debug)]
pub struct InFlightLayer {
    counter: Arc<AtomicUsize>,
}

impl InFlightLayer {
    pub(crate) fn new(counter: Arc<AtomicUsize>) -> Self {
        Self { counter }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.counter.load(Ordering::Acquire)
    }
}

impl<S> Layer<S> for InFlightLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlight {
            inner,
            counter: self.counter.clone(),
        }
    }
}

/// The service made by [`InFlightLayer`].
#[derive(Clone, Debug)]
pub struct InFlight<S> {
    inner: S,
    counter: Arc<AtomicUsize>,
}

impl<S> InFlight<S> {
    define_inner_service_accessors!();
}

impl<S, Req> Service<Req> for InFlight<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.counter.fetch_add(1, Ordering::AcqRel);
        let guard = Guard(self.counter.clone());
        ResponseFuture {
            inner: self.inner.call(req),
            guard: Some(guard),
        }
    }
}

struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    /// The response future of [`InFlight`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        guard: Option<Guard>,
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        this.guard.take();
        Poll::Ready(out)
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
