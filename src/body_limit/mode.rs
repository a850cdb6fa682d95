//! How [`BodyLimit`](super::BodyLimit) hands bodies to the inner service and back.

use http::Response;

use super::body::Limited;
use crate::body::ResponseBody;

mod sealed {
    pub trait Sealed {}
}

/// The request body a [`BodyLimit`](super::BodyLimit) hands to its inner service,
/// per mode: [`AnyBody`] (the default) or, with the `axum` feature, [`AxumBody`].
///
/// Sealed: the two modes are the only ones.
pub trait RequestMode<B>: sealed::Sealed {
    /// The request body the inner service sees.
    type ReqBody;

    #[doc(hidden)]
    fn request(body: Limited<B>, needs_counting: bool) -> Self::ReqBody;
}

/// The response body a [`BodyLimit`](super::BodyLimit) returns, per mode.
///
/// Sealed: the two modes are the only ones.
pub trait ResponseMode<ResBody>: sealed::Sealed {
    /// The response body the layer returns.
    type ResBody;

    #[doc(hidden)]
    fn response(response: Response<ResBody>) -> Response<Self::ResBody>;

    #[doc(hidden)]
    fn rejection(response: Response<ResponseBody<ResBody>>) -> Response<Self::ResBody>;
}

/// Works with any body: the inner service sees `Request<Limited<B>>` and the layer
/// returns `Response<ResponseBody<ResBody>>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnyBody;

impl sealed::Sealed for AnyBody {}

impl<B> RequestMode<B> for AnyBody {
    type ReqBody = Limited<B>;

    #[inline]
    fn request(body: Limited<B>, _needs_counting: bool) -> Self::ReqBody {
        body
    }
}

impl<ResBody> ResponseMode<ResBody> for AnyBody {
    type ResBody = ResponseBody<ResBody>;

    #[inline]
    fn response(response: Response<ResBody>) -> Response<Self::ResBody> {
        response.map(ResponseBody::inner)
    }

    #[inline]
    fn rejection(response: Response<ResponseBody<ResBody>>) -> Response<Self::ResBody> {
        response
    }
}

/// axum's own body on both sides: the inner service sees
/// `Request<axum::body::Body>` and the layer returns `Response<axum::body::Body>`.
///
/// Under `Router::layer` this saves the boxing axum would otherwise do on every
/// request and response: the handler's response passes through as it is, and so
/// does a request body that cannot go over the limit: an empty one, or one whose
/// exact size equals its declared `Content-Length` (within the limit). Every
/// other body is counted by a [`Limited`] wrapper. The default [`AnyBody`]
/// mode counts every body.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct AxumBody;

#[cfg(feature = "axum")]
impl sealed::Sealed for AxumBody {}

#[cfg(feature = "axum")]
impl<B> RequestMode<B> for AxumBody
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<super::BoxError>,
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

#[cfg(feature = "axum")]
impl<ResBody> ResponseMode<ResBody> for AxumBody
where
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<super::BoxError>,
{
    type ResBody = axum::body::Body;

    #[inline]
    fn response(response: Response<ResBody>) -> Response<Self::ResBody> {
        response.map(axum::body::Body::new)
    }

    #[inline]
    fn rejection(response: Response<ResponseBody<ResBody>>) -> Response<Self::ResBody> {
        response.map(axum::body::Body::new)
    }
}
