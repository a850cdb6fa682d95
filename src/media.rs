//! The one reading of `content-type` every layer uses: which media type a
//! message says it carries.

use http::HeaderMap;
use http::header::CONTENT_TYPE;

/// The type and subtype of the `content-type` header, parameters dropped and
/// case kept (compare with `eq_ignore_ascii_case`).
pub(crate) fn media_type(headers: &HeaderMap) -> Option<(&str, &str)> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim();
    let (ty, sub) = essence.split_once('/')?;
    (!ty.is_empty() && !sub.is_empty()).then_some((ty, sub))
}

/// `application/json` or a structured `application/<name>+json`.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|(ty, sub)| {
        ty.eq_ignore_ascii_case("application")
            && (sub.eq_ignore_ascii_case("json") || ends_with_ignore_case(sub, "+json"))
    })
}

/// `text/plain`, any charset.
pub(crate) fn is_text_plain(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|(ty, sub)| {
        ty.eq_ignore_ascii_case("text") && sub.eq_ignore_ascii_case("plain")
    })
}

/// `application/grpc` or `application/grpc+<codec>`.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|(ty, sub)| {
        ty.eq_ignore_ascii_case("application")
            && (sub.eq_ignore_ascii_case("grpc") || starts_with_ignore_case(sub, "grpc+"))
    })
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn media_types() {
        let mut h = HeaderMap::new();
        assert_eq!(media_type(&h), None);
        for (ct, json, text, grpc) in [
            ("application/json", true, false, false),
            ("Application/JSON; charset=utf-8", true, false, false),
            ("application/problem+json", true, false, false),
            ("application/+json", true, false, false),
            ("text/x+json", false, false, false),
            ("application/jsonp", false, false, false),
            ("text/plain;charset=utf-8", false, true, false),
            ("TEXT/PLAIN", false, true, false),
            ("text/plain-ish", false, false, false),
            ("application/grpc", false, false, true),
            ("application/GRPC+proto", false, false, true),
            ("application/grpc-web", false, false, false),
            ("application/grpcx", false, false, false),
            ("json", false, false, false),
            ("/", false, false, false),
            ("/json", false, false, false),
            ("application/", false, false, false),
        ] {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            let got = (is_json(&h), is_text_plain(&h), is_grpc(&h));
            assert_eq!(got, (json, text, grpc), "{ct}");
        }
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_bytes(b"application/json\xff").unwrap(),
        );
        assert_eq!(media_type(&h), None, "not visible ASCII");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any header value: no panic, at most one of the three, and the parts
        /// found are pieces of the value.
        #[test]
        fn any_value(value in proptest::collection::vec(any::<u8>(), 0..64)) {
            let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, value.clone());
            let hits = [is_json(&h), is_text_plain(&h), is_grpc(&h)];
            prop_assert!(hits.iter().filter(|x| **x).count() <= 1);
            if let Some((ty, sub)) = media_type(&h) {
                let text = value.to_str().unwrap();
                prop_assert!(text.contains(ty) && text.contains(sub));
                prop_assert!(!ty.is_empty() && !sub.is_empty());
            }
        }
    }
}
