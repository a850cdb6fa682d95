//! gRPC answers: a gRPC call rejected by a layer gets a gRPC status, not an HTTP
//! error.
//!
//! gRPC clients map HTTP statuses they do not expect to `UNAVAILABLE` (429 and
//! 413 included), which retry policies treat as "try again at once". A gRPC
//! request (`content-type: application/grpc` or `application/grpc+<codec>`) is
//! therefore answered "trailers-only": HTTP 200, `content-type: application/grpc`,
//! `grpc-status` and `grpc-message` in the headers and no body. gRPC-Web
//! (`application/grpc-web`) frames its status in the body and is left to the HTTP
//! answer.

use http::header::{CONTENT_TYPE, HeaderMap};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::error::{Code, Problem};
use crate::grpc::GRPC_STATUS;

static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The gRPC status code a problem is answered with.
///
/// The layers' own rejections: a timeout is 4 `DEADLINE_EXCEEDED`, a body or rate
/// limit 8 `RESOURCE_EXHAUSTED`, a 503 14 `UNAVAILABLE` and any other server error
/// (a panic among them) 13 `INTERNAL`. The client errors the error layer turns
/// into problems keep their meaning: 400 and 422 are 3 `INVALID_ARGUMENT`, 401 is
/// 16 `UNAUTHENTICATED`, 403 is 7 `PERMISSION_DENIED`, 404 and 405 are 12
/// `UNIMPLEMENTED` (no such method), 409 is 10 `ABORTED`; the rest are 2 `UNKNOWN`.
pub(crate) fn code(problem: &Problem) -> u8 {
    if problem.code == Code::TIMEOUT {
        return 4;
    }
    match problem.status {
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => 4,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        s if s.is_server_error() => 13,
        StatusCode::BAD_REQUEST
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::LENGTH_REQUIRED
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3,
        StatusCode::UNAUTHORIZED => 16,
        StatusCode::FORBIDDEN => 7,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => 12,
        StatusCode::CONFLICT => 10,
        _ => 2,
    }
}

/// Turns `headers` into those of a trailers-only answer for `problem`, whose
/// client-visible message is `message`. The caller sets HTTP status 200 and an
/// empty body.
pub(crate) fn write_head(headers: &mut HeaderMap, problem: &Problem, message: Option<&str>) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(
        GRPC_STATUS.clone(),
        HeaderValue::from(u16::from(code(problem))),
    );
    match message.and_then(|m| HeaderValue::from_str(&percent_encode(m)).ok()) {
        Some(message) => {
            headers.insert(GRPC_MESSAGE.clone(), message);
        }
        None => {
            headers.remove(&GRPC_MESSAGE);
        }
    }
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

    #[test]
    fn codes_of_the_layers_rejections() {
        let timeout = Problem::new(StatusCode::SERVICE_UNAVAILABLE).code(Code::TIMEOUT);
        assert_eq!(code(&timeout), 4);
        assert_eq!(code(&Problem::new(StatusCode::GATEWAY_TIMEOUT)), 4);
        assert_eq!(code(&Problem::new(StatusCode::PAYLOAD_TOO_LARGE)), 8);
        assert_eq!(code(&Problem::new(StatusCode::TOO_MANY_REQUESTS)), 8);
        assert_eq!(code(&Problem::new(StatusCode::SERVICE_UNAVAILABLE)), 14);
        assert_eq!(code(&Problem::new(StatusCode::INTERNAL_SERVER_ERROR)), 13);
        assert_eq!(code(&Problem::new(StatusCode::BAD_GATEWAY)), 13);
        assert_eq!(code(&Problem::new(StatusCode::BAD_REQUEST)), 3);
        assert_eq!(code(&Problem::new(StatusCode::UNAUTHORIZED)), 16);
        assert_eq!(code(&Problem::new(StatusCode::NOT_FOUND)), 12);
        assert_eq!(code(&Problem::new(StatusCode::IM_A_TEAPOT)), 2);
    }

    #[test]
    fn a_missing_or_unencodable_message_leaves_no_stale_header() {
        let mut headers = HeaderMap::new();
        headers.insert(&GRPC_MESSAGE, HeaderValue::from_static("old"));
        write_head(&mut headers, &Problem::new(StatusCode::NOT_FOUND), None);
        assert!(headers.get(&GRPC_MESSAGE).is_none());
        assert_eq!(headers[&GRPC_STATUS], "12");
        assert_eq!(headers[CONTENT_TYPE], "application/grpc");
    }
}
