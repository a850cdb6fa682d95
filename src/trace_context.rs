//! W3C trace context: the incoming `traceparent`, parsed strictly, and the trace id
//! of the request in flight.
//!
//! [`RequestLogLayer`](crate::log::RequestLogLayer) reads the `traceparent` header of
//! every request with [`TraceContext::from_headers`]. When it is valid, the request's
//! span and its `request completed` line carry its `trace_id`, and so do the
//! [`Problem`](crate::error::Problem) envelopes made while the request runs, with or
//! without the `otel` feature and with or without an exporter. Inner layers and
//! handlers find two request extensions:
//!
//! - [`TraceContext`]: the incoming parent, when the header was valid;
//! - [`TraceId`]: the effective trace id of the request (the incoming one, or with
//!   the `otel` feature one freshly started), for example for metric exemplars.
//!
//! Parsing follows the W3C Trace Context rules: version `00` values are exactly 55
//! characters, lowercase hex only; a higher version may be longer only when a `-`
//! follows the flags; version `ff`, all-zero ids, uppercase or non-hex digits,
//! repeated `traceparent` headers and values over 512 bytes are ignored, and the
//! request starts a fresh trace. Nothing is allocated when the header is absent.
//!
//! ```
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ops::log::RequestLogLayer;
//! use tower_ops::trace_context::{self, TraceId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(RequestLogLayer::new())
//!     .service(service_fn(|req: Request<String>| async move {
//!         // The extension and `current()` agree while the request runs.
//!         let id = req.extensions().get::<TraceId>().copied();
//!         assert_eq!(id, trace_context::current());
//!         let body = id.map(|id| id.to_string()).unwrap_or_default();
//!         Ok::<_, std::convert::Infallible>(Response::new(body))
//!     }));
//! let request = Request::builder()
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(String::new())
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, "4bf92f3577b34da6a3ce929d0e0e4736");
//! # }
//! ```

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::context;

/// The `traceparent` header name.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header name.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Longest `traceparent` value looked at; longer ones are ignored.
const MAX_LEN: usize = 512;
/// Length of a version `00` value.
const V00_LEN: usize = 55;

/// A 16-byte trace id, never all zeros; displayed as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// The id from its bytes; `None` for all zeros (an invalid id).
    pub fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        (bytes != [0; 16]).then_some(Self(bytes))
    }

    /// Parses exactly 32 lowercase hex digits, not all zero.
    pub fn parse(hex: &str) -> Option<Self> {
        let mut bytes = [0; 16];
        decode_hex(hex.as_bytes(), &mut bytes)?;
        Self::from_bytes(bytes)
    }

    /// The raw bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// Writes the 32 hex digits into `buf` and returns them, without allocating.
    pub fn encode(self, buf: &mut [u8; 32]) -> &str {
        encode_hex(&self.0, buf)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encode(&mut [0; 32]))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// An 8-byte span id, never all zeros; displayed as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

impl SpanId {
    /// The id from its bytes; `None` for all zeros (an invalid id).
    pub fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        (bytes != [0; 8]).then_some(Self(bytes))
    }

    /// Parses exactly 16 lowercase hex digits, not all zero.
    pub fn parse(hex: &str) -> Option<Self> {
        let mut bytes = [0; 8];
        decode_hex(hex.as_bytes(), &mut bytes)?;
        Self::from_bytes(bytes)
    }

    /// The raw bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0; 16];
        f.write_str(encode_hex(&self.0, &mut buf))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// A valid `traceparent`: trace id, parent span id and trace flags.
///
/// Inserted as a request extension by [`RequestLogLayer`](crate::log::RequestLogLayer)
/// when the incoming header is valid.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: TraceId,
    parent_id: SpanId,
    flags: u8,
}

impl TraceContext {
    /// A context from its parts (for an outgoing `traceparent`).
    pub fn new(trace_id: TraceId, parent_id: SpanId, flags: u8) -> Self {
        Self {
            trace_id,
            parent_id,
            flags,
        }
    }

    /// Parses one `traceparent` value; `None` when it breaks any rule of the
    /// [module docs](self).
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < V00_LEN || value.len() > MAX_LEN {
            return None;
        }
        let mut version = [0; 1];
        decode_hex(&value[0..2], &mut version)?;
        match version[0] {
            0xff => return None,
            0x00 if value.len() != V00_LEN => return None,
            // A later version may append fields, after a `-`.
            _ if value.len() > V00_LEN && value[V00_LEN] != b'-' => return None,
            _ => {}
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let mut trace = [0; 16];
        decode_hex(&value[3..35], &mut trace)?;
        let mut parent = [0; 8];
        decode_hex(&value[36..52], &mut parent)?;
        let mut flags = [0; 1];
        decode_hex(&value[53..55], &mut flags)?;
        Some(Self {
            trace_id: TraceId::from_bytes(trace)?,
            parent_id: SpanId::from_bytes(parent)?,
            flags: flags[0],
        })
    }

    /// Reads the `traceparent` header: `None` when it is absent, invalid or repeated.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        Self::parse(value.as_bytes())
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The id of the caller's span (the parent of ours).
    pub fn parent_id(&self) -> SpanId {
        self.parent_id
    }

    /// The trace flags byte.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller sampled this trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The version `00` header value.
    pub fn to_header_value(&self) -> HeaderValue {
        let mut buf = [0u8; V00_LEN];
        buf[0..3].copy_from_slice(b"00-");
        encode_hex(&self.trace_id.0, &mut buf[3..35]);
        buf[35] = b'-';
        encode_hex(&self.parent_id.0, &mut buf[36..52]);
        buf[52] = b'-';
        encode_hex(&[self.flags], &mut buf[53..55]);
        HeaderValue::from_bytes(&buf).expect("hex digits and dashes")
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("trace_id", &self.trace_id)
            .field("parent_id", &self.parent_id)
            .field("flags", &self.flags)
            .finish()
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// Decodes lowercase hex into `out`; `None` unless `hex` is exactly twice as long.
fn decode_hex(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Writes `bytes` as lowercase hex into `buf` (twice as long) and returns it.
fn encode_hex<'a>(bytes: &[u8], buf: &'a mut [u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in buf.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
    std::str::from_utf8(buf).unwrap_or_default()
}

/// The trace id of the request being processed, if known.
///
/// Part of the request context that [`RequestLogLayer`](crate::log::RequestLogLayer)
/// sets while it calls and polls the inner service; with the `otel` feature,
/// falls back to the trace of the current `tracing` span (so spawned tasks
/// instrumented with a request's span find it too).
/// [`Problem::new`](crate::error::Problem::new) reads it.
pub fn current() -> Option<TraceId> {
    context::read(|c| c.trace_id).flatten().or_else(fallback)
}

#[cfg(feature = "otel")]
pub(crate) fn fallback() -> Option<TraceId> {
    crate::otel::current_span_trace_id()
}

#[cfg(not(feature = "otel"))]
pub(crate) fn fallback() -> Option<TraceId> {
    None
}

/// The valid `traceparent` the current request came with, while its trace is
/// the [`current()`] one: what an outgoing request forwards when no
/// OpenTelemetry span stands in between.
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) fn incoming() -> Option<TraceContext> {
    context::read(|c| c.incoming).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse(s: &str) -> Option<TraceContext> {
        TraceContext::parse(s.as_bytes())
    }

    #[test]
    fn parses_a_valid_value() {
        let tc = parse(VALID).expect("valid");
        assert_eq!(
            tc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(tc.parent_id().to_string(), "00f067aa0ba902b7");
        assert!(tc.sampled());
        assert_eq!(tc.to_string(), VALID);
        assert_eq!(tc.to_header_value(), VALID);
        let unsampled = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert!(!unsampled.expect("valid").sampled());
    }

    #[test]
    fn rejects_hostile_values() {
        let cases = [
            // version ff is invalid
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // bad hex, uppercase hex
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0X",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "+0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // wrong lengths
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "",
            // wrong separators
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            // extra fields are not allowed in version 00
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
            // a later version must separate its extra data with `-`
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // two values joined by a proxy
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01, 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for case in cases {
            assert_eq!(parse(case), None, "{case:?}");
        }
    }

    #[test]
    fn accepts_later_versions_per_spec() {
        let tc =
            parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-holds")
                .expect("future version with extra fields");
        assert_eq!(
            tc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(tc.flags(), 9);
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
    }

    #[test]
    fn ignores_oversized_values() {
        let long = format!(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-{}",
            "a".repeat(8192)
        );
        assert_eq!(parse(&long), None);
        let at_limit = format!(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-{}",
            "a".repeat(MAX_LEN - 56)
        );
        assert_eq!(at_limit.len(), MAX_LEN);
        assert!(parse(&at_limit).is_some());
    }

    #[test]
    fn repeated_or_absent_headers_give_nothing() {
        let mut headers = HeaderMap::new();
        assert_eq!(TraceContext::from_headers(&headers), None);
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        assert!(TraceContext::from_headers(&headers).is_some());
        headers.append(TRACEPARENT, HeaderValue::from_static(VALID));
        assert_eq!(TraceContext::from_headers(&headers), None);
    }

    #[test]
    fn ids_parse_and_reject() {
        assert!(TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").is_some());
        assert!(TraceId::parse("00000000000000000000000000000000").is_none());
        assert!(TraceId::parse("4bf92f3577b34da6a3ce929d0e0e473").is_none());
        assert!(SpanId::parse("00f067aa0ba902b7").is_some());
        assert!(SpanId::parse("0000000000000000").is_none());
        assert!(SpanId::parse("é0f067aa0ba902b").is_none());
    }

    #[test]
    fn scope_sets_and_restores() {
        use crate::context::RequestContext;
        fn scope<R>(id: Option<TraceId>, tc: Option<TraceContext>, f: impl FnOnce() -> R) -> R {
            match id {
                Some(id) => RequestContext::current().with_trace(id, tc).sync_scope(f),
                None => f(),
            }
        }
        fn in_scope() -> Option<TraceId> {
            context::read(|c| c.trace_id).flatten()
        }
        let a = TraceId::from_bytes([1; 16]);
        let b = TraceId::from_bytes([2; 16]);
        assert_eq!(in_scope(), None);
        let span = SpanId::from_bytes([3; 8]).unwrap();
        let from_a = TraceContext::new(a.unwrap(), span, 1);
        scope(a, Some(from_a), || {
            assert_eq!(current(), a);
            assert_eq!(incoming(), Some(from_a));
            // A context of another trace than the scope's is not forwarded.
            scope(b, Some(from_a), || {
                assert_eq!(current(), b);
                assert_eq!(incoming(), None);
            });
            assert_eq!(current(), a);
            assert_eq!(incoming(), Some(from_a));
            scope(None, None, || assert_eq!(current(), a));
        });
        assert_eq!(in_scope(), None);
        assert_eq!(incoming(), None);
        let caught = std::panic::catch_unwind(|| scope(a, Some(from_a), || panic!("boom")));
        assert!(caught.is_err());
        assert_eq!(in_scope(), None);
        assert_eq!(incoming(), None);
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Some(tc) = TraceContext::parse(&bytes) {
                let again = TraceContext::parse(tc.to_string().as_bytes());
                prop_assert_eq!(again, Some(tc));
            }
        }

        #[test]
        fn valid_parts_always_parse(trace in any::<[u8; 16]>(), span in any::<[u8; 8]>(), flags in any::<u8>()) {
            let (Some(t), Some(s)) = (TraceId::from_bytes(trace), SpanId::from_bytes(span)) else {
                return Ok(());
            };
            let tc = TraceContext::new(t, s, flags);
            prop_assert_eq!(TraceContext::parse(tc.to_header_value().as_bytes()), Some(tc));
            prop_assert_eq!(TraceId::parse(&t.to_string()), Some(t));
        }
    }
}
