use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::request_id::RequestId;

use crate::BoxError;

/// What the request body wrapper and the response future share: whether the limit
/// was hit, and what the 413 must say.
#[derive(Debug)]
pub(crate) struct Shared {
    hit: AtomicBool,
    pub(crate) limit: u64,
    pub(crate) request_id: Option<RequestId>,
}

impl Shared {
    pub(crate) fn new(limit: u64, request_id: Option<RequestId>) -> Arc<Self> {
        Arc::new(Self {
            hit: AtomicBool::new(false),
            limit,
            request_id,
        })
    }

    pub(crate) fn was_hit(&self) -> bool {
        // The body is read by the handler before it answers (same task or a task
        // it awaited), so the store happens-before this load under Acquire/Release.
        self.hit.load(Ordering::Acquire)
    }
}

/// The error a [`Limited`] body gives once more than the limit was sent.
///
/// Handlers usually never see the consequence: the layer answers 413 itself,
/// whatever the handler returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthLimitError {
    limit: u64,
}

impl LengthLimitError {
    /// The limit, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl fmt::Display for LengthLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body exceeds the limit of {} bytes", self.limit)
    }
}

impl std::error::Error for LengthLimitError {}

pin_project! {
    /// The request body seen by the service inside a
    /// [`BodyLimitLayer`](super::BodyLimitLayer): the client's body, counted as it
    /// streams.
    ///
    /// A data frame that would take the total over the limit is never passed on:
    /// the body reports a [`LengthLimitError`] instead (as a [`BoxError`], so axum
    /// extractors and `http_body_util` accept it), and keeps doing so if polled again.
    pub struct Limited<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
        failed: bool,
        shared: Option<Arc<Shared>>,
    }
}

impl<B> Limited<B> {
    pub(crate) fn new(inner: B, limit: u64, shared: Option<Arc<Shared>>) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            failed: false,
            shared,
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the body.
    pub fn into_inner(self) -> B {
        self.inner
    }

    /// How many more bytes may still arrive.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

impl<B: fmt::Debug> fmt::Debug for Limited<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limited")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl<B> Body for Limited<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(Some(Err(Box::new(LengthLimitError { limit: *this.limit }))));
        }
        match std::task::ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.remaining() as u64;
                    if len > *this.remaining {
                        *this.failed = true;
                        *this.remaining = 0;
                        if let Some(shared) = this.shared {
                            shared.hit.store(true, Ordering::Release);
                        }
                        return Poll::Ready(Some(Err(Box::new(LengthLimitError {
                            limit: *this.limit,
                        }))));
                    }
                    *this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.failed && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        // Never promise more than may still arrive: a smaller upper bound lets
        // collectors size their buffers without trusting the client.
        match inner.upper() {
            Some(upper) if upper <= self.remaining => inner,
            _ if inner.lower() <= self.remaining => {
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower());
                hint.set_upper(self.remaining);
                hint
            }
            _ => SizeHint::with_exact(self.remaining),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use proptest::prelude::*;

    use super::*;

    /// A body of the given chunks, with no declared length.
    pub(crate) struct Chunks(pub(crate) VecDeque<Bytes>);

    impl Chunks {
        pub(crate) fn new(sizes: &[usize]) -> Self {
            Self(sizes.iter().map(|&n| Bytes::from(vec![b'x'; n])).collect())
        }
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    /// Polls every frame, returning the bytes delivered and whether an error came.
    async fn drain(mut body: Limited<Chunks>) -> (u64, bool) {
        let mut seen = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => seen += f.into_data().map_or(0, |d| d.len() as u64),
                Err(e) => {
                    assert!(e.downcast_ref::<LengthLimitError>().is_some());
                    // Polling again keeps failing instead of resuming the stream.
                    assert!(body.frame().await.unwrap().is_err());
                    return (seen, true);
                }
            }
        }
        (seen, false)
    }

    #[tokio::test]
    async fn exact_limit_passes_and_one_more_fails() {
        let shared = Shared::new(10, None);
        let (seen, err) = drain(Limited::new(Chunks::new(&[4, 6]), 10, Some(shared.clone()))).await;
        assert_eq!((seen, err), (10, false));
        assert!(!shared.was_hit());
        let (seen, err) = drain(Limited::new(
            Chunks::new(&[4, 6, 1]),
            10,
            Some(shared.clone()),
        ))
        .await;
        assert_eq!((seen, err), (10, true));
        assert!(shared.was_hit());
    }

    #[test]
    fn size_hint_is_capped() {
        let body = Limited::new(
            http_body_util::Full::new(Bytes::from_static(b"abc")),
            2,
            None,
        );
        assert_eq!(body.size_hint().exact(), Some(2));
        let body = Limited::new(
            http_body_util::Full::new(Bytes::from_static(b"abc")),
            9,
            None,
        );
        assert_eq!(body.size_hint().exact(), Some(3));
        let body = Limited::new(Chunks::new(&[1]), 9, None);
        assert_eq!(body.size_hint().upper(), Some(9));
    }

    proptest! {
        /// Whatever the chunking, at most `limit` bytes are delivered, the error
        /// comes exactly when the total exceeds the limit, and the flag says so.
        #[test]
        fn never_more_than_the_limit(
            sizes in proptest::collection::vec(0usize..300, 0..40),
            limit in 0u64..4000,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let total: u64 = sizes.iter().map(|&n| n as u64).sum();
            let shared = Shared::new(limit, None);
            let (seen, err) = rt.block_on(drain(Limited::new(Chunks::new(&sizes), limit, Some(shared.clone()))));
            prop_assert!(seen <= limit);
            prop_assert_eq!(err, total > limit);
            prop_assert_eq!(shared.was_hit(), total > limit);
            if total <= limit {
                prop_assert_eq!(seen, total);
            }
        }
    }
}
