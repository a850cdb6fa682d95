//! The one bearer-token check of the endpoints tower-ops serves itself: the
//! `/metrics` exporter (`METRICS_TOKEN`) and the admin routes (`ADMIN_TOKEN`).

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::body::ResponseBody;
use crate::error::{Code, Problem, Renderer};

/// Whether a token can ever match: visible ASCII without spaces, since
/// [`authorized`] trims the credentials and splits the scheme at a space.
pub(crate) fn valid_token(token: &[u8]) -> bool {
    !token.is_empty() && token.iter().all(u8::is_ascii_graphic)
}

/// One `Authorization` header, scheme `Bearer` in any case, then `token`,
/// compared in constant time. A repeated header is refused: which of the two a
/// proxy or a framework would read is not ours to guess.
pub(crate) fn authorized(headers: &HeaderMap, token: &[u8]) -> bool {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let value = value.as_bytes();
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    constant_time_eq(rest.trim_ascii(), token)
}

/// Compares in a time that depends only on the expected token's length, so the
/// time taken does not tell an attacker how much of a guess was right.
pub(crate) fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u64::from(given.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= u64::from(g ^ e);
    }
    std::hint::black_box(diff) == 0
}

/// The 401 problem, with `WWW-Authenticate: Bearer`.
pub(crate) fn unauthorized<B>(
    renderer: &Renderer,
    rejected_by: &'static str,
) -> http::Response<ResponseBody<B>> {
    let mut response = renderer.response(
        Problem::new(StatusCode::UNAUTHORIZED)
            .code(Code::UNAUTHORIZED)
            .detail("a valid bearer token is required")
            .rejected_by(rejected_by),
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_parsing() {
        let t = b"s3cr3t";
        assert!(authorized(&headers(&["Bearer s3cr3t"]), t));
        assert!(authorized(&headers(&["bearer s3cr3t"]), t));
        assert!(authorized(&headers(&["BEARER   s3cr3t "]), t));
        for bad in [
            "Bearer s3cr3T",
            "Bearer s3cr3",
            "Bearer s3cr3tt",
            "Bearer",
            "Bearer ",
            "Basic s3cr3t",
            "Bearers3cr3t",
            "s3cr3t",
            "",
        ] {
            assert!(!authorized(&headers(&[bad]), t), "{bad:?}");
        }
        assert!(!authorized(&headers(&[]), t));
        assert!(!authorized(
            &headers(&["Bearer s3cr3t", "Bearer s3cr3t"]),
            t
        ));
    }

    #[test]
    fn compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn tokens_that_can_match() {
        assert!(valid_token(b"0123456789abcdef"));
        assert!(valid_token(b"a-b_c.d~e+f/g="));
        for bad in [
            &b""[..],
            b"with space",
            b"tab\there",
            b"caf\xc3\xa9",
            b"nl\n",
        ] {
            assert!(!valid_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_401_asks_for_a_bearer_token() {
        let response = unauthorized::<()>(&Renderer::default(), "admin");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
        let problem = response.extensions().get::<Problem>().unwrap();
        assert_eq!(problem.get_code(), &Code::UNAUTHORIZED);
        assert_eq!(problem.get_rejected_by(), Some("admin"));
    }
}
