//! `Content-Length`: a number is accepted only when it is plain decimal digits
//! that fit in 64 bits, and then equals their value; several headers and comma
//! lists give one length only when every element is that same number.

#![no_main]

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_ops::__fuzz::{self, LengthError};

/// The decimal value of `bytes`, computed wide; `None` unless all digits.
fn decimal(bytes: &[u8]) -> Option<u128> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Over 39 digits cannot fit in a u128, let alone a u64: saturate.
    Some(bytes.iter().fold(0u128, |acc, &b| {
        acc.saturating_mul(10).saturating_add(u128::from(b - b'0'))
    }))
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

fuzz_target!(|data: &[u8]| {
    let n = __fuzz::content_length_digits(data);
    let expected = decimal(data).and_then(|wide| u64::try_from(wide).ok());
    assert_eq!(n, expected);
    if let Some(n) = n {
        let text = std::str::from_utf8(data).unwrap();
        assert_eq!(text.parse::<u64>(), Ok(n));
        let significant = text.trim_start_matches('0');
        assert_eq!(
            n.to_string(),
            if significant.is_empty() {
                "0"
            } else {
                significant
            }
        );
    }

    // Lines as repeated headers, each possibly a comma list.
    let values: Vec<HeaderValue> = data
        .split(|&b| b == b'\n')
        .take(4)
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect();
    let mut headers = HeaderMap::new();
    for value in &values {
        headers.append(CONTENT_LENGTH, value.clone());
    }
    let elements: Vec<Option<u64>> = values
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|element| decimal(trim_ows(element)).and_then(|wide| u64::try_from(wide).ok()))
        .collect();
    let got = __fuzz::declared_length(&headers);
    if values.is_empty() {
        assert_eq!(got, Ok(None));
    } else if elements.iter().any(Option::is_none) {
        assert!(got.is_err(), "{got:?} from a list with an invalid element");
    } else if elements.windows(2).all(|w| w[0] == w[1]) {
        assert_eq!(got, Ok(elements[0]));
    } else {
        assert_eq!(got, Err(LengthError::Conflicting));
    }
    if got == Err(LengthError::Invalid) {
        assert!(elements.iter().any(Option::is_none));
    }
});
