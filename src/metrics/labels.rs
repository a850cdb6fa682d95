//! Label sets, method normalisation and path patterns.

use std::fmt;
use std::sync::Arc;

use http::Method;
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};

/// The methods of RFC 9110 plus PATCH, then `_OTHER` for everything else.
pub(crate) const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER",
];

/// Index into [`METHODS`]. Comparison is case-sensitive, as the semantic conventions
/// require: `get` is not `GET`.
#[inline]
pub(crate) fn method_index(method: &Method) -> u8 {
    match method.as_str() {
        "GET" => 0,
        "HEAD" => 1,
        "POST" => 2,
        "PUT" => 3,
        "DELETE" => 4,
        "CONNECT" => 5,
        "OPTIONS" => 6,
        "TRACE" => 7,
        "PATCH" => 8,
        _ => 9,
    }
}

/// Labels of the request duration and body size histograms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct HttpLabels {
    pub(crate) method: &'static str,
    pub(crate) route: Arc<str>,
    pub(crate) status: u16,
}

impl EncodeLabelSet for HttpLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        ("http_request_method", self.method).encode(encoder.encode_label())?;
        ("http_route", &*self.route).encode(encoder.encode_label())?;
        ("http_response_status_code", self.status).encode(encoder.encode_label())
    }
}

/// Labels of the active requests gauge.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MethodLabel(pub(crate) &'static str);

impl EncodeLabelSet for MethodLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        ("http_request_method", self.0).encode(encoder.encode_label())
    }
}

/// Labels of the rejections counter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RejectionLabels {
    pub(crate) rejected_by: Arc<str>,
    pub(crate) code: Arc<str>,
}

impl EncodeLabelSet for RejectionLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        ("rejected_by", &*self.rejected_by).encode(encoder.encode_label())?;
        ("code", &*self.code).encode(encoder.encode_label())
    }
}

/// The exemplar label set: one `trace_id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TraceLabel(pub(crate) String);

impl EncodeLabelSet for TraceLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        ("trace_id", self.0.as_str()).encode(encoder.encode_label())
    }
}

/// Longest trace id accepted as an exemplar. OpenMetrics caps an exemplar's label
/// set at 128 UTF-8 characters; W3C trace ids are 32.
pub(crate) const MAX_TRACE_ID: usize = 64;

/// A trace id fit for an exemplar: 1 to 64 characters of `[A-Za-z0-9_-]`.
pub(crate) fn valid_trace_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TRACE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A label value safe for every exposition parser: control characters other than
/// newline (which the encoder escapes) become U+FFFD.
pub(crate) fn label_text(value: &str) -> Arc<str> {
    if value.chars().any(|c| c.is_control() && c != '\n') {
        value
            .chars()
            .map(|c| {
                if c.is_control() && c != '\n' {
                    '\u{FFFD}'
                } else {
                    c
                }
            })
            .collect::<String>()
            .into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_normalise() {
        for (m, want) in [
            (Method::GET, "GET"),
            (Method::PATCH, "PATCH"),
            (Method::CONNECT, "CONNECT"),
            (Method::from_bytes(b"get").unwrap(), "_OTHER"),
            (Method::from_bytes(b"PROPFIND").unwrap(), "_OTHER"),
            (Method::from_bytes(b"QUERY").unwrap(), "_OTHER"),
        ] {
            assert_eq!(METHODS[method_index(&m) as usize], want, "{m}");
        }
    }

    #[test]
    fn trace_ids() {
        assert!(valid_trace_id("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(!valid_trace_id(""));
        assert!(!valid_trace_id("a\"b"));
        assert!(!valid_trace_id(&"a".repeat(65)));
        assert!(!valid_trace_id("é"));
    }
}
