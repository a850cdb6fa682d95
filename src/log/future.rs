//! The response future and body, which end the record and write its line.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::line::*;
use super::service::*;
use crate::context::Scoped;
use crate::error::{Problem, ShadowRejection};
use crate::request_id::RequestId;
use crate::route::MatchedRoute;

pin_project! {
    /// The response future of [`RequestLog`].
    pub struct ResponseFuture<F> {
        #[pin]
        pub(super) inner: Scoped<F>,
        pub(super) record: Option<Box<Record>>,
        pub(super) watchdog: Option<Pin<Box<tokio::time::Sleep>>>,
        // The layer is switched off: the response passes through unlogged.
        pub(super) off: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                // Dropped before a response: the client went away (or an outer
                // timeout fired).
                emit(&record.pending, None, Outcome::Aborted);
            }
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    E: fmt::Display,
{
    type Output = Result<Response<LogBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if *this.off {
            return this.inner.poll(cx).map_ok(|response| {
                response.map(|inner| LogBody {
                    inner,
                    record: None,
                })
            });
        }
        let Some(pending) = this.record.as_ref().map(|r| &r.pending) else {
            return Poll::Pending;
        };
        let result = {
            let _enter = pending.span.enter();
            this.inner.poll(cx)
        };
        let result = match result {
            Poll::Ready(r) => r,
            Poll::Pending => {
                if let Some(w) = this.watchdog.as_mut()
                    && w.as_mut().poll(cx).is_ready()
                {
                    *this.watchdog = None;
                    let elapsed = pending.start.elapsed();
                    tracing::warn!(
                        target: "tower_ops::request",
                        parent: &pending.span,
                        method = pending.method.as_str(),
                        path = &*pending.config.redactor.redact_path_and_query(&pending.uri),
                        elapsed_ms = elapsed.as_micros() as f64 / 1000.0,
                        "request still in flight"
                    );
                }
                return Poll::Pending;
            }
        };
        let mut record = this.record.take().expect("checked above");
        match result {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let pending = &mut record.pending;
                if pending.request_id.is_none() {
                    pending.request_id = parts.extensions.get::<RequestId>().cloned();
                }
                record.done = Some(Done {
                    status: parts.status,
                    route: MatchedRoute::of_response(
                        &parts.extensions,
                        &parts.headers,
                        pending.route.as_ref(),
                    )
                    .cloned(),
                    problem: parts.extensions.get::<Problem>().cloned(),
                    shadow: parts.extensions.get::<ShadowRejection>().cloned(),
                    response_bytes: 0,
                    response_body: pending
                        .config
                        .capture
                        .filter(|_| crate::media::is_json(&parts.headers))
                        .map(|_| Vec::new()),
                });
                let body = if body.is_end_stream() {
                    emit(&record.pending, record.done.as_ref(), Outcome::Completed);
                    LogBody {
                        inner: body,
                        record: None,
                    }
                } else {
                    LogBody {
                        inner: body,
                        record: Some(record),
                    }
                };
                Poll::Ready(Ok(Response::from_parts(parts, body)))
            }
            Err(error) => {
                emit(&record.pending, None, Outcome::Failed(&error));
                Poll::Ready(Err(error))
            }
        }
    }
}

pin_project! {
    /// The response body of [`RequestLog`]: counts bytes and logs the request when
    /// the body ends, or when it is dropped before its end (`aborted: true`).
    pub struct LogBody<B> {
        #[pin]
        pub(super) inner: B,
        pub(super) record: Option<Box<Record>>,
    }

    impl<B> PinnedDrop for LogBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                emit(&record.pending, record.done.as_ref(), Outcome::Aborted);
            }
        }
    }
}

/// An empty body that logs nothing, for layers that answer without calling the
/// inner service (tower-http's `Cors` answers preflights with `Default`).
impl<B: Default> Default for LogBody<B> {
    fn default() -> Self {
        Self {
            inner: B::default(),
            record: None,
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for LogBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B> Body for LogBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(record), Some(data)) = (this.record.as_mut(), f.data_ref())
                    && let Some(done) = record.done.as_mut()
                {
                    done.response_bytes += data.len() as u64;
                    let limit = record.pending.config.capture.unwrap_or(0);
                    if let Some(copy) = done.response_body.as_mut()
                        && copy.len() + data.len() <= limit
                    {
                        copy.extend_from_slice(data);
                    }
                }
                // Servers stop polling once `is_end_stream` says so, without
                // waiting for a final `None`: the body is complete here.
                if this.inner.is_end_stream()
                    && let Some(record) = this.record.take()
                {
                    emit(&record.pending, record.done.as_ref(), Outcome::Completed);
                }
            }
            Some(Err(error)) => {
                if let Some(record) = this.record.take() {
                    let message = error.to_string();
                    emit(
                        &record.pending,
                        record.done.as_ref(),
                        Outcome::BodyFailed(&message),
                    );
                }
            }
            None => {
                if let Some(record) = this.record.take() {
                    emit(&record.pending, record.done.as_ref(), Outcome::Completed);
                }
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
