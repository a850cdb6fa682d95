//! What the layers need to know of gRPC calls: whether a request is one, and its
//! method path as a route.

use http::header::CONTENT_TYPE;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, Uri};

pub(crate) static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// Longest method path taken as a route. Real ones are far shorter
/// (`/google.cloud.bigquery.storage.v1.BigQueryRead/CreateReadSession` is 66).
const MAX_METHOD_PATH: usize = 256;

pub(crate) use crate::media::is_grpc;

/// The method path of a gRPC call, `/<package>.<Service>/<Method>`, to use as its
/// route: only for a gRPC request, without a query, whose path has exactly that
/// form (identifiers of `[A-Za-z0-9_]` not starting with a digit, at least one
/// package part, at most 256 bytes). Anything else a client sends (scanners'
/// paths, long or odd names) stays unmatched. A cheap clone of the request's
/// path: no allocation.
pub(crate) fn method_path(headers: &HeaderMap, uri: &Uri) -> Option<PathAndQuery> {
    let pq = uri.path_and_query()?;
    if pq.query().is_some() || !is_method_path(pq.path()) || !is_grpc(headers) {
        return None;
    }
    Some(pq.clone())
}

fn is_method_path(path: &str) -> bool {
    if path.len() > MAX_METHOD_PATH {
        return false;
    }
    let Some((service, method)) = path.strip_prefix('/').and_then(|rest| rest.split_once('/'))
    else {
        return false;
    };
    let mut parts = 0;
    for part in service.split('.') {
        if !is_identifier(part) {
            return false;
        }
        parts += 1;
    }
    parts >= 2 && is_identifier(method)
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether a response is a trailers-only gRPC `UNIMPLEMENTED` (status 12): the
/// server has no such method, so the path is only the client's word.
pub(crate) fn is_unimplemented(headers: &HeaderMap) -> bool {
    headers.get(&GRPC_STATUS).is_some_and(|v| v == "12")
        && headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn with_type(value: &'static [u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_bytes(value).unwrap());
        headers
    }

    #[test]
    fn recognises_grpc_content_types_only() {
        for yes in [
            &b"application/grpc"[..],
            b"application/grpc+proto",
            b"Application/GRPC+json",
            b"application/grpc;charset=utf-8",
        ] {
            assert!(is_grpc(&with_type(yes)), "{yes:?}");
        }
        for no in [
            &b"application/grpc-web"[..],
            b"application/grpc-web+proto",
            b"application/grpcx",
            b"application/json",
            b"application/grp",
            b"",
            b"\xffapplication/grpc",
        ] {
            assert!(!is_grpc(&with_type(no)), "{no:?}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn method_paths() {
        let grpc = with_type(b"application/grpc");
        let route = |path: &str| {
            let uri: Uri = path.parse().unwrap();
            method_path(&grpc, &uri).map(|p| p.as_str().to_owned())
        };
        for yes in [
            "/demo.Greeter/SayHello",
            "/grpc.health.v1.Health/Check",
            "/_a.b_2/C_3",
            "/google.cloud.bigquery.storage.v1.BigQueryRead/CreateReadSession",
        ] {
            assert_eq!(route(yes).as_deref(), Some(yes));
        }
        let long = format!("/a.{}/M", "b".repeat(MAX_METHOD_PATH));
        for no in [
            "/",
            "/Greeter/SayHello",
            "/demo.Greeter",
            "/demo.Greeter/",
            "/demo.Greeter/SayHello/",
            "/demo.Greeter/Say/Hello",
            "/demo..Greeter/SayHello",
            "/.Greeter/SayHello",
            "/demo.Greeter./SayHello",
            "/demo.1Greeter/SayHello",
            "/demo.Greeter/1Say",
            "/demo.Gre-eter/SayHello",
            "/demo.Greeter/Say%20Hello",
            "/demo.Greeter/SayHello?x=1",
            "//demo.Greeter/SayHello",
            "/admin.php/login.php",
            long.as_str(),
        ] {
            assert_eq!(route(no), None, "{no}");
        }
        let uri: Uri = "/demo.Greeter/SayHello".parse().unwrap();
        assert_eq!(method_path(&with_type(b"application/grpc-web"), &uri), None);
        assert_eq!(method_path(&HeaderMap::new(), &uri), None);
    }

    #[test]
    fn unimplemented_answers() {
        let mut headers = with_type(b"application/grpc");
        assert!(!is_unimplemented(&headers));
        headers.insert(&GRPC_STATUS, HeaderValue::from_static("12"));
        assert!(is_unimplemented(&headers));
        headers.insert(&GRPC_STATUS, HeaderValue::from_static("8"));
        assert!(!is_unimplemented(&headers));
        let mut http = HeaderMap::new();
        http.insert(&GRPC_STATUS, HeaderValue::from_static("12"));
        assert!(!is_unimplemented(&http), "not a gRPC answer");
    }

    proptest! {
        #[test]
        fn accepted_paths_are_bounded_and_plain(path in "/[a-zA-Z0-9_./%-]{0,300}") {
            if is_method_path(&path) {
                prop_assert!(path.len() <= MAX_METHOD_PATH);
                prop_assert_eq!(path.matches('/').count(), 2);
                prop_assert!(path.contains('.'));
                prop_assert!(path.bytes().all(|b| b.is_ascii_alphanumeric() || b"_./".contains(&b)));
            }
        }
    }
}
