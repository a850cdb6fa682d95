//! How [`BodyLimit`](super::BodyLimit) hands bodies to the inner service and back.

use super::body::Limited;
#[cfg(feature = "axum")]
use crate::body::AxumBody;
use crate::body::{AnyBody, sealed};

/// The request body a [`BodyLimit`](super::BodyLimit) hands to its inner service,
/// per mode: [`AnyBody`] (the default) or, with the `axum` feature, [`AxumBody`].
///
/// [`AxumBody`]: crate::body::AxumBody
///
/// Sealed: the two modes are the only ones.
pub trait RequestMode<B>: sealed::Sealed {
    /// The request body the inner service sees.
    type ReqBody;

    #[doc(hidden)]
    fn request(body: Limited<B>, needs_counting: bool) -> Self::ReqBody;
}

impl<B> RequestMode<B> for AnyBody {
    type ReqBody = Limited<B>;

    #[inline]
    fn request(body: Limited<B>, _needs_counting: bool) -> Self::ReqBody {
        body
    }
}

#[cfg(feature = "axum")]
impl<B> RequestMode<B> for AxumBody
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    type ReqBody = axum::body::Body;

    #[inline]
    fn request(body: Limited<B>, needs_counting: bool) -> Self::ReqBody {
        if needs_counting {
            axum::body::Body::new(body)
        } else {
            // `Body::new` of a `Body` is the body itself: no allocation.
            axum::body::Body::new(body.into_inner())
        }
    }
}
