//! gRPC answers: a rejected gRPC call gets a gRPC status, not an HTTP error.
//!
//! gRPC clients map HTTP statuses they do not expect to `UNAVAILABLE` (429
//! included), which retry policies treat as "try again at once": the opposite of
//! what a rate limit asks for. A gRPC request (`content-type: application/grpc`
//! or `application/grpc+<codec>`) is therefore answered "trailers-only": HTTP 200,
//! `content-type: application/grpc`, `grpc-status` and `grpc-message` in the
//! headers and no body. gRPC-Web (`application/grpc-web`) frames its status in
//! the body and is left to the HTTP answer.

use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;
use crate::error::Problem;
use crate::grpc::GRPC_STATUS;

static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The gRPC status codes this layer answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GrpcCode {
    /// 8: the quota is spent.
    ResourceExhausted,
    /// 14: the shared backend is down and the failure mode is `closed`.
    Unavailable,
}

impl GrpcCode {
    fn value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::ResourceExhausted => "8",
            Self::Unavailable => "14",
        })
    }
}

pub(crate) use crate::grpc::is_grpc;

/// A trailers-only gRPC response for `problem`, which goes in the extensions so
/// the log and metrics layers still see the rejection.
pub(crate) fn response<B>(code: GrpcCode, problem: Problem) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS.clone(), code.value());
    if let Some(message) = problem
        .get_detail()
        .and_then(|d| HeaderValue::from_str(&percent_encode(d)).ok())
    {
        headers.insert(GRPC_MESSAGE.clone(), message);
    }
    response.extensions_mut().insert(problem);
    response
}

/// `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%`.
fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("retry in 3 s"), "retry in 3 s");
        assert_eq!(percent_encode("100% über"), "100%25 %C3%BCber");
        assert_eq!(percent_encode("a\r\nb"), "a%0D%0Ab");
    }
}
