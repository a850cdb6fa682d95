use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::decision::{HeaderJob, Shared, Verdict, decide_remote};
use super::future::{Checking, ResponseFuture};
use super::layer::RateLimitLayer;
use super::policy::RequestHead;
use super::quota::Quota;
use crate::body::{AnyBody, ResponseMode};

/// The service of [`RateLimitLayer`]; `M` is its layer's response mode
/// ([`AnyBody`] by default, [`AxumBody`](crate::body::AxumBody) after
/// [`RateLimitLayer::for_axum`]).
pub struct RateLimit<S, M = AnyBody> {
    inner: S,
    /// `None`: switched off ([`Switchable`](crate::stack::Switchable)).
    shared: Option<Arc<Shared>>,
    _mode: PhantomData<fn() -> M>,
}

impl<S: Clone, M> Clone for RateLimit<S, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            _mode: PhantomData,
        }
    }
}

impl<S> RateLimit<S> {
    /// A layer: [`RateLimitLayer::with_quota`].
    pub fn layer(quota: Quota) -> RateLimitLayer {
        RateLimitLayer::with_quota(quota)
    }
}

impl<S, M> RateLimit<S, M> {
    /// `inner` checked against `shared`, or (with `None`) switched off.
    pub(super) fn with_shared(inner: S, shared: Option<Arc<Shared>>) -> Self {
        Self {
            inner,
            shared,
            _mode: PhantomData,
        }
    }

    /// Wraps `inner` with the policies of `layer`.
    pub fn new(inner: S, layer: &RateLimitLayer<M>) -> Self {
        layer.layer(inner)
    }

    define_inner_service_accessors!();
}

impl<S, M> fmt::Debug for RateLimit<S, M>
where
    S: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, M, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, M>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    M: ResponseMode<ResBody>,
{
    type Response = Response<M::ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody, ResBody, M>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some(shared) = &self.shared else {
            return ResponseFuture::inner(self.inner.call(request), None, None);
        };
        shared.start_cleanup();
        let head = RequestHead::of(&request);
        // One call site for the inner service, so the request is moved only once.
        let (headers, shadowed) = if shared
            .skip_paths
            .as_ref()
            .is_some_and(|set| set.contains(head.uri.path()))
            || shared.skip.as_ref().is_some_and(|f| f(&head))
        {
            (None, None)
        } else if let Some(remote) = &shared.remote {
            let checks = shared.remote_checks(&head, &remote.secret);
            if !checks.is_empty() {
                // Keep the readied service for this request; leave a clone behind.
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                return ResponseFuture::checking(Checking {
                    check: Box::pin(decide_remote(shared.clone(), checks)),
                    service: Some(service),
                    grpc: shared.answers_grpc(&head),
                    request: Some(request),
                    shared: shared.clone(),
                });
            }
            (None, None)
        } else {
            match shared.decide_local(&head) {
                Verdict::Pass { closest, shadowed } => (
                    closest.map(|(index, outcome)| HeaderJob::new(shared, index, outcome)),
                    shadowed,
                ),
                Verdict::Limited(index, outcome) => {
                    let grpc = shared.answers_grpc(&head);
                    return ResponseFuture::ready(shared.limited(index, &outcome, grpc));
                }
                Verdict::Unavailable(secs) => {
                    let grpc = shared.answers_grpc(&head);
                    return ResponseFuture::ready(shared.unavailable(secs, grpc));
                }
            }
        };
        ResponseFuture::inner(self.inner.call(request), headers, shadowed)
    }
}
