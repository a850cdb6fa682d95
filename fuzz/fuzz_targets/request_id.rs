//! The request-id check: an id is kept only when it is 1 to 128 bytes of
//! `[A-Za-z0-9._:@/+=-]`, and only when the client sent one unambiguous value.

#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_ops::__fuzz;
use tower_ops::request_id::{self, MAX_LEN, RequestId, X_CORRELATION_ID, X_REQUEST_ID};

/// The documented rule, written out independently of the crate.
fn documented(bytes: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&bytes.len())
        && bytes.iter().all(|&b| {
            matches!(b,
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9'
                | b'.' | b'_' | b':' | b'@' | b'/' | b'+' | b'=' | b'-')
        })
}

fuzz_target!(|data: &[u8]| {
    // The whole input as one id, through every constructor.
    let valid = request_id::is_valid(data);
    assert_eq!(valid, documented(data), "is_valid disagrees with the docs");
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let id = RequestId::from_header_value(&value);
        assert_eq!(id.is_some(), valid);
        if let Some(id) = id {
            assert_eq!(id.as_str().as_bytes(), data);
            assert_eq!(id.header_value(), &value);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let id = RequestId::new(text);
        assert_eq!(id.is_some(), valid);
        if let Some(id) = id {
            assert_eq!(id.as_str(), text);
            assert_eq!(id.to_string(), text);
        }
    }

    // Lines as header values; the bits of the first byte send each line to the
    // canonical header or to the alias.
    let Some((&route, rest)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let mut canonical = Vec::new();
    let mut alias = Vec::new();
    for (i, line) in rest.split(|&b| b == b'\n').take(8).enumerate() {
        let Ok(value) = HeaderValue::from_bytes(line) else {
            continue;
        };
        if route >> i & 1 == 0 {
            headers.append(X_REQUEST_ID, value.clone());
            canonical.push(value);
        } else {
            headers.append(X_CORRELATION_ID, value.clone());
            alias.push(value);
        }
    }
    // `x-request-id` wins; the alias counts only when it is absent. Repeated
    // values must all be the same.
    let sent = if canonical.is_empty() {
        &alias
    } else {
        &canonical
    };
    let expected = match sent.split_first() {
        Some((first, others))
            if others.iter().all(|o| o == first) && documented(first.as_bytes()) =>
        {
            Some(first.as_bytes())
        }
        _ => None,
    };
    let kept = __fuzz::incoming_request_id(&headers);
    assert_eq!(kept.as_ref().map(|id| id.as_str().as_bytes()), expected);
});
