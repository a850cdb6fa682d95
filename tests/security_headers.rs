//! `SecurityHeadersLayer` over a real loopback socket.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use common::{get_request, raw, serve};
use http::Request;
use http::header;
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::security_headers::SecurityHeadersLayer;

fn app(layer: SecurityHeadersLayer, trusted: bool) -> Router {
    let client_ip = if trusted {
        ClientIpLayer::new().trusted_proxies(["127.0.0.1/32".parse().unwrap()])
    } else {
        ClientIpLayer::new()
    };
    Router::new()
        .route("/", get(|| async { "hi" }))
        .route(
            "/own",
            get(|| async {
                (
                    [
                        (header::CACHE_CONTROL, "max-age=60"),
                        (header::SERVER, "leaky/1.0"),
                        (header::HeaderName::from_static("x-powered-by"), "php"),
                    ],
                    "own",
                )
            }),
        )
        .layer(layer)
        .layer(client_ip)
        // The peer address as a plain extension, so `ClientIpLayer` finds it with
        // or without its `axum` feature (which reads `ConnectInfo` itself).
        .layer(tower::util::MapRequestLayer::new(
            |mut req: Request<Body>| {
                if let Some(ConnectInfo(peer)) =
                    req.extensions().get::<ConnectInfo<SocketAddr>>().copied()
                {
                    req.extensions_mut().insert(peer);
                }
                req
            },
        ))
}

const HSTS: &str = "strict-transport-security";

#[tokio::test]
async fn api_preset_on_the_wire() {
    let addr = serve(app(SecurityHeadersLayer::api(), false)).await;
    let res = raw(addr, &get_request("/", "")).await;
    assert_eq!(res.status, 200);
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        assert_eq!(res.all(name), vec![value.to_owned()], "{name}");
    }
    assert!(res.first(HSTS).is_none(), "plain HTTP must not pin HSTS");
    let res = raw(addr, &get_request("/own", "")).await;
    assert_eq!(res.all("cache-control"), vec!["max-age=60".to_owned()]);
    assert!(res.first("server").is_none() && res.first("x-powered-by").is_none());
}

#[tokio::test]
async fn hsts_needs_a_trusted_proxy_saying_https() {
    // Untrusted peer: the client's own X-Forwarded-Proto is ignored.
    let addr = serve(app(SecurityHeadersLayer::web(), false)).await;
    let res = raw(addr, &get_request("/", "x-forwarded-proto: https\r\n")).await;
    assert!(res.first(HSTS).is_none());
    assert_eq!(res.first("x-frame-options"), Some("SAMEORIGIN"));

    let addr = serve(app(SecurityHeadersLayer::web(), true)).await;
    let res = raw(addr, &get_request("/", "x-forwarded-proto: https\r\n")).await;
    assert_eq!(
        res.all(HSTS),
        vec!["max-age=31536000; includeSubDomains".to_owned()]
    );
    for hostile in [
        "x-forwarded-proto: http\r\n".to_owned(),
        "x-forwarded-proto: https, http\r\n".to_owned(),
        "x-forwarded-proto: httpsx\r\n".to_owned(),
        format!("x-forwarded-proto: {}\r\n", "h".repeat(8000)),
        "x-forwarded-proto: \r\n".to_owned(),
    ] {
        let res = raw(addr, &get_request("/", &hostile)).await;
        assert_eq!(res.status, 200);
        assert!(
            res.first(HSTS).is_none(),
            "{}",
            &hostile[..hostile.len().min(40)]
        );
    }
}

#[tokio::test]
async fn off_and_concurrency() {
    let addr = serve(app(SecurityHeadersLayer::off(), false)).await;
    let res = raw(addr, &get_request("/own", "")).await;
    assert_eq!(res.first("server"), Some("leaky/1.0"));
    assert!(res.first("x-content-type-options").is_none());

    let layer = SecurityHeadersLayer::api()
        .try_header("permissions-policy", "camera=()")
        .unwrap();
    let addr = serve(app(layer, true)).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            tokio::spawn(async move {
                let extra = if i % 2 == 0 {
                    "x-forwarded-proto: https\r\n"
                } else {
                    ""
                };
                (i, raw(addr, &get_request("/", extra)).await)
            })
        })
        .collect();
    for t in tasks {
        let (i, res) = t.await.unwrap();
        assert_eq!(res.all("permissions-policy"), vec!["camera=()".to_owned()]);
        assert_eq!(res.all("x-content-type-options").len(), 1);
        assert_eq!(res.first(HSTS).is_some(), i % 2 == 0, "{i}");
    }
}
