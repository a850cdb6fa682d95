//! Correlation ids: validate the client's, make one when it is missing, echo it on
//! every response and make it available anywhere in the request's task.
//!
//! [`RequestIdLayer`] reads `x-request-id` (and `x-correlation-id` as an alias). An
//! incoming id is used only if it is 1 to 128 characters of `[A-Za-z0-9._:@/+=-]`;
//! anything else (empty, too long, spaces, control characters, non-ASCII, several
//! different values) is discarded without being echoed and a new id is made. The
//! default maker produces time-ordered UUIDv7 ids.
//!
//! The effective id is then:
//! - written to the request's `x-request-id` header and inserted as a [`RequestId`]
//!   request extension, so inner layers and handlers see the same value;
//! - available from [`current()`] in any code running inside the request's future,
//!   across `.await`, without passing it around (use [`spawn`] or [`scope`] to carry it
//!   into tasks you start);
//! - set as `x-request-id` and as a [`RequestId`] extension on every response that
//!   passes back through the layer, whichever inner layer produced it.
//!
//! Place it outermost, so that rejections made by every other layer carry the id.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ops::request_id::{self, RequestId, RequestIdLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new())
//!     .service(service_fn(|_req: Request<Full<Bytes>>| async {
//!         // No plumbing: the id of the request being served.
//!         let id = request_id::current().expect("inside a request");
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::from(id.to_string())))
//!     }));
//!
//! // A valid incoming id is kept and echoed.
//! let request = Request::builder()
//!     .header("x-request-id", "order-42")
//!     .body(Full::default())?;
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.headers()["x-request-id"], "order-42");
//!
//! // A hostile one is replaced by a fresh UUIDv7 and never echoed.
//! let request = Request::builder()
//!     .header("x-request-id", "x\" injected=1")
//!     .body(Full::default())?;
//! let response = service.oneshot(request).await?;
//! let id = response.extensions().get::<RequestId>().unwrap();
//! assert_eq!(id.as_str().len(), 36);
//! assert_eq!(response.headers()["x-request-id"], id.as_str());
//! # Ok(())
//! # }
//! ```
//!
//! # Keeping the client's id apart
//!
//! Some teams never let a client choose the server-side id. With
//! [`IncomingPolicy::GenerateAndKeep`] the layer always makes a new id and, when the
//! client sent a valid one, stores it as a [`ClientRequestId`] request extension (the
//! request log records it as `client_request_id`).

pub(crate) mod layer;
mod make;
mod scoped;

use std::fmt;

use http::HeaderValue;
use http::header::HeaderName;

pub use self::layer::{RequestIdLayer, ResponseFuture, SetRequestId};

/// The old name of [`SetRequestId`].
#[deprecated(note = "renamed to `SetRequestId`, after the `X<S>` naming of the other services")]
pub type RequestIdService<S, M = MakeUuidV7> = SetRequestId<S, M>;
pub use self::make::{MakeRequestId, MakeUuidV7};
pub use self::scoped::{current, scope, spawn};
pub use crate::context::Scoped;

/// The canonical request id header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Accepted in place of `x-request-id` on incoming requests when that is absent.
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// The longest id accepted from a client, in bytes.
pub const MAX_LEN: usize = 128;

/// The effective id of a request.
///
/// Present in request and response extensions when [`RequestIdLayer`] is in the stack.
/// Its text is always 1 to 128 characters of `[A-Za-z0-9._:@/+=-]`, so it can be
/// written into headers, logs and JSON without escaping. Cloning is cheap.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Validates `id` and wraps it; `None` when it breaks the rules above.
    pub fn new(id: impl AsRef<str>) -> Option<Self> {
        let id = id.as_ref();
        is_valid(id.as_bytes()).then(|| Self(HeaderValue::from_str(id).expect("checked")))
    }

    /// Validates a header value and wraps it; `None` when it breaks the rules above.
    pub fn from_header_value(value: &HeaderValue) -> Option<Self> {
        is_valid(value.as_bytes()).then(|| Self(value.clone()))
    }

    pub(crate) fn from_valid(value: HeaderValue) -> Self {
        debug_assert!(is_valid(value.as_bytes()));
        Self(value)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only validated ASCII is ever stored.
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// The valid id the client sent, kept apart from the server's id.
///
/// Inserted into request extensions only under [`IncomingPolicy::GenerateAndKeep`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientRequestId(pub RequestId);

impl ClientRequestId {
    /// The client's id as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// What to do with an id the client sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IncomingPolicy {
    /// Use a valid incoming id; make one otherwise (the default).
    #[default]
    UseValid,
    /// Always make a new id and ignore the client's.
    AlwaysGenerate,
    /// Always make a new id; keep the client's valid id as a [`ClientRequestId`].
    GenerateAndKeep,
}

/// Whether `bytes` is an acceptable id: 1 to 128 bytes of `[A-Za-z0-9._:@/+=-]`.
pub fn is_valid(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'_' | b':' | b'@' | b'/' | b'+' | b'=' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rules() {
        assert!(is_valid(b"a"));
        assert!(is_valid(b"Az09._:@/+=-"));
        assert!(is_valid(&[b'x'; 128]));
        assert!(!is_valid(&[b'x'; 129]));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"a b"));
        assert!(!is_valid(b"a\tb"));
        assert!(!is_valid(b"a\x00b"));
        assert!(!is_valid(b"a\"b"));
        assert!(!is_valid(b"a,b"));
        assert!(!is_valid("é".as_bytes()));
        assert!(!is_valid(b"\xff\xfe"));
    }

    #[test]
    fn constructors_validate() {
        assert!(RequestId::new("ok-1").is_some());
        assert!(RequestId::new("not ok").is_none());
        let v = HeaderValue::from_bytes(b"\xe9t\xe9").unwrap();
        assert!(RequestId::from_header_value(&v).is_none());
        assert_eq!(
            format!("{:?}", RequestId::new("x").unwrap()),
            "RequestId(\"x\")"
        );
    }

    #[tokio::test]
    async fn current_outside_and_inside_scope() {
        assert!(current().is_none());
        let id = RequestId::new("abc").unwrap();
        let got = scope(id.clone(), async {
            tokio::task::yield_now().await;
            current()
        })
        .await;
        assert_eq!(got, Some(id));
        assert!(spawn(async { current() }).await.unwrap().is_none());
    }
}
