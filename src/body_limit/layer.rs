use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::body::{Limited, Shared};
use super::future::ResponseFuture;
use super::mode::RequestMode;
use crate::body::{AnyBody, ResponseMode};
use crate::config::{self, ConfigError};
use crate::error::Renderer;
use crate::paths::PathRules;

/// The default limit: 1 MiB.
pub const DEFAULT_LIMIT: u64 = 1 << 20;

/// Cloned into every service and, by axum, on every request: the common
/// configuration (one limit, the default renderer) clones without touching a
/// reference count.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    default: u64,
    routes: Option<Arc<PathRules<u64>>>,
    /// `None` is the default problem+json renderer, made only when rejecting.
    pub(crate) renderer: Option<Renderer>,
}

impl Config {
    #[inline]
    fn limit_for(&self, path: &str) -> u64 {
        match &self.routes {
            Some(routes) => routes.get(path).unwrap_or(self.default),
            None => self.default,
        }
    }
}

/// Limits the size of request bodies, answering 413 with a Problem.
/// See the [module docs](super).
///
/// `M` chooses the body types seen by the inner service: [`AnyBody`] by default,
/// or [`AxumBody`](super::AxumBody) after [`for_axum`](Self::for_axum).
pub struct BodyLimitLayer<M = AnyBody> {
    config: Config,
    _mode: PhantomData<fn() -> M>,
}

impl<M> Clone for BodyLimitLayer<M> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            _mode: PhantomData,
        }
    }
}

impl<M> std::fmt::Debug for BodyLimitLayer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyLimitLayer")
            .field("config", &self.config)
            .field("mode", &std::any::type_name::<M>())
            .finish()
    }
}

impl BodyLimitLayer {
    /// A layer allowing bodies of at most `limit` bytes on every route.
    pub fn new(limit: u64) -> Self {
        Self {
            config: Config {
                default: limit,
                routes: None,
                renderer: None,
            },
            _mode: PhantomData,
        }
    }

    /// Reads `BODY_LIMIT_BYTES` (a whole number of bytes; default 1048576) and
    /// `ERROR_FORMAT` (see [`Renderer::from_env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let value = config::var("BODY_LIMIT_BYTES", &mut errors);
        let limit = limit_from(value.as_deref(), &mut errors);
        let mut layer = Self::new(limit);
        layer.config.renderer = Renderer::from_env_if_set(&mut errors);
        errors.into_result(layer)
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<M> BodyLimitLayer<M> {
    /// Hands `axum::body::Body` to the inner service and returns axum responses
    /// untouched. Same behaviour, less work under `Router::layer`: axum no longer
    /// boxes every request and response body that passes the layer.
    pub fn for_axum(self) -> BodyLimitLayer<super::AxumBody> {
        BodyLimitLayer {
            config: self.config,
            _mode: PhantomData,
        }
    }
}

impl<M> BodyLimitLayer<M> {
    /// A different limit for requests whose path matches `pattern`.
    ///
    /// `pattern` is an exact path (`/upload`) or a prefix ending in `/*`
    /// (`/files/*` matches `/files` and everything under it). Paths are compared
    /// byte for byte with the request path as this layer sees it (inside a
    /// nested router, without the nest prefix); the first matching rule wins, in
    /// the order added.
    pub fn route(mut self, pattern: &str, limit: u64) -> Self {
        Arc::make_mut(self.config.routes.get_or_insert_with(Arc::default)).push(pattern, limit);
        self
    }

    /// Renders rejections with `renderer` instead of problem+json.
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.config.renderer = Some(renderer);
        self
    }

    /// The limit for requests that match no route rule.
    pub fn limit(&self) -> u64 {
        self.config.default
    }
}

impl Default for BodyLimitLayer {
    /// A 1 MiB limit.
    fn default() -> Self {
        Self::new(DEFAULT_LIMIT)
    }
}

impl<S, M> Layer<S> for BodyLimitLayer<M> {
    type Service = BodyLimit<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            config: self.config.clone(),
            _mode: PhantomData,
        }
    }
}

/// The service made by [`BodyLimitLayer`].
pub struct BodyLimit<S, M = AnyBody> {
    inner: S,
    config: Config,
    _mode: PhantomData<fn() -> M>,
}

impl<S: Clone, M> Clone for BodyLimit<S, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
            _mode: PhantomData,
        }
    }
}

impl<S: std::fmt::Debug, M> std::fmt::Debug for BodyLimit<S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyLimit")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S> BodyLimit<S> {
    /// Wraps `inner` with a limit of `limit` bytes.
    pub fn new(inner: S, limit: u64) -> Self {
        BodyLimitLayer::new(limit).layer(inner)
    }

    /// A [`BodyLimitLayer`] with a limit of `limit` bytes.
    pub fn layer(limit: u64) -> BodyLimitLayer {
        BodyLimitLayer::new(limit)
    }
}

impl<S, M> BodyLimit<S, M> {
    define_inner_service_accessors!();
}

impl<S, M, B, ResBody> Service<Request<B>> for BodyLimit<S, M>
where
    M: RequestMode<B> + ResponseMode<ResBody>,
    S: Service<Request<M::ReqBody>, Response = Response<ResBody>>,
    B: Body,
{
    type Response = Response<<M as ResponseMode<ResBody>>::ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, M>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let limit = self.config.limit_for(req.uri().path());
        let request_id = || crate::context::request_id_for_later(req.extensions());
        let declared = match declared_length(req.headers()) {
            Ok(Some(length)) if length > limit => {
                return ResponseFuture::too_large(
                    &self.config,
                    req.headers(),
                    length,
                    limit,
                    request_id(),
                );
            }
            Ok(declared) => declared,
            Err(problem) => {
                return ResponseFuture::bad_length(
                    &self.config,
                    req.headers(),
                    problem,
                    request_id(),
                );
            }
        };
        let body = req.body();
        // A body needs counting unless it is empty, or it declared a length within
        // the limit and its own exact size agrees: `http_body` makes an exact size
        // hint a promise, and hyper enforces Content-Length on HTTP/1 and HTTP/2.
        let needs_counting =
            !(body.is_end_stream() || declared.is_some() && body.size_hint().exact() == declared);
        // Only a body without a declared length can go over the limit while the
        // handler reads it, so only then is the flag shared with the response
        // future (and allocated). A body longer than its own Content-Length is
        // still cut at the limit, but the handler decides the answer.
        let shared =
            (needs_counting && declared.is_none()).then(|| Shared::new(limit, request_id()));
        let watch = shared
            .clone()
            .map(|s| (s, super::future::renderer(&self.config, req.headers())));
        let req = req.map(|body| M::request(Limited::new(body, limit, shared), needs_counting));
        ResponseFuture::inner(self.inner.call(req), watch)
    }
}

/// Why a `Content-Length` cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LengthProblem {
    /// Not a decimal number of bytes that fits in 64 bits.
    Invalid,
    /// Several different values.
    Conflicting,
}

/// The declared body length: every `Content-Length` header and every element of
/// a comma list must be the same non-negative decimal number (RFC 9110 §8.6).
#[inline]
pub(crate) fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, LengthProblem> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    // The common case: one plain number.
    if values.next().is_none()
        && let Some(n) = parse_digits(first.as_bytes())
    {
        return Ok(Some(n));
    }
    declared_length_slow(headers)
}

/// Several headers, comma lists, spaces, or an invalid value.
#[cold]
#[inline(never)]
fn declared_length_slow(headers: &HeaderMap) -> Result<Option<u64>, LengthProblem> {
    let mut found: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = parse_digits(trim_ows(part)).ok_or(LengthProblem::Invalid)?;
            match found {
                Some(m) if m != n => return Err(LengthProblem::Conflicting),
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// `1*DIGIT` as a `u64`; no sign, no overflow. (`u64::from_str` accepts `+5`.)
pub(crate) fn parse_digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn limit_from(value: Option<&str>, errors: &mut ConfigError) -> u64 {
    match value {
        None => DEFAULT_LIMIT,
        Some(text) => parse_whole(text).unwrap_or_else(|| {
            errors.push(
                "BODY_LIMIT_BYTES",
                text,
                "a whole number of bytes, such as 1048576",
            );
            DEFAULT_LIMIT
        }),
    }
}

fn parse_whole(text: &str) -> Option<u64> {
    parse_digits(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn length(values: &[&[u8]]) -> Result<Option<u64>, LengthProblem> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CONTENT_LENGTH, HeaderValue::from_bytes(v).unwrap());
        }
        declared_length(&h)
    }

    #[test]
    fn content_length_rules() {
        use LengthProblem::*;
        assert_eq!(length(&[]), Ok(None));
        assert_eq!(length(&[b"0"]), Ok(Some(0)));
        assert_eq!(length(&[b"42"]), Ok(Some(42)));
        assert_eq!(length(&[b"42", b"42"]), Ok(Some(42)));
        assert_eq!(length(&[b"42 , 42"]), Ok(Some(42)));
        assert_eq!(length(&[b"18446744073709551615"]), Ok(Some(u64::MAX)));
        assert_eq!(length(&[b"007"]), Ok(Some(7)));
        for bad in [
            &b"abc"[..],
            b"-1",
            b"+5",
            b"",
            b"1.0",
            b"0x10",
            b"18446744073709551616",
            b"99999999999999999999999",
            b"5,",
            b"5,,5",
            b"\xff",
        ] {
            assert_eq!(length(&[bad]), Err(Invalid), "{bad:?}");
        }
        assert_eq!(length(&[b"1", b"2"]), Err(Conflicting));
        assert_eq!(length(&[b"1, 2"]), Err(Conflicting));
        assert_eq!(length(&[b"1", b"x"]), Err(Invalid));
    }

    proptest::proptest! {
        /// The one-plain-number shortcut never disagrees with the full rules.
        #[test]
        fn shortcut_agrees_with_the_full_rules(
            values in proptest::collection::vec("[0-9 ,+a-]{0,24}", 0..4),
        ) {
            let mut h = HeaderMap::new();
            for v in &values {
                h.append(CONTENT_LENGTH, HeaderValue::from_str(v).unwrap());
            }
            proptest::prop_assert_eq!(declared_length(&h), declared_length_slow(&h));
        }
    }

    #[test]
    fn env_values() {
        let mut errors = ConfigError::default();
        assert_eq!(limit_from(None, &mut errors), DEFAULT_LIMIT);
        assert_eq!(limit_from(Some("10485760"), &mut errors), 10 << 20);
        assert_eq!(limit_from(Some("0"), &mut errors), 0);
        assert!(errors.problems().is_empty());
        for bad in ["1MB", "-1", "1e6", "18446744073709551616"] {
            assert_eq!(limit_from(Some(bad), &mut errors), DEFAULT_LIMIT);
        }
        assert_eq!(errors.problems().len(), 4);
        assert!(
            errors
                .to_string()
                .contains("BODY_LIMIT_BYTES=\"1MB\": expected a whole number of bytes")
        );
    }
}
