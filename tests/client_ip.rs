//! Client IP resolution over a real loopback socket.
// The peer address comes from axum's `ConnectInfo`, read with the `axum` feature.
#![cfg(feature = "axum")]

mod common;

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use common::{get as http_get, serve};
use tower_ops::client_ip::{ClientIp, ClientIpLayer, ForwardedHeader};

async fn app(layer: ClientIpLayer) -> std::net::SocketAddr {
    let router = Router::new()
        .route(
            "/",
            get(|Extension(ip): Extension<ClientIp>| async move {
                format!("{} {:?}", ip.ip(), ip.source())
            }),
        )
        .layer(layer);
    serve(router).await
}

#[tokio::test]
async fn spoofed_headers_ignored_without_trusted_proxy() {
    let addr = app(ClientIpLayer::new()).await;
    for extra in [
        "",
        "X-Forwarded-For: 6.6.6.6\r\n",
        "X-Forwarded-For: 6.6.6.6, 7.7.7.7\r\nX-Forwarded-For: 8.8.8.8\r\n",
        "Forwarded: for=6.6.6.6\r\n",
        "X-Real-IP: 6.6.6.6\r\n",
    ] {
        let res = http_get(addr, "/", extra).await;
        assert_eq!(res.text(), "127.0.0.1 Peer", "{extra:?}");
    }
}

#[tokio::test]
async fn trusted_loopback_proxy_walks_the_chain() {
    let layer = ClientIpLayer::new().trusted_proxies([
        "127.0.0.0/8".parse().unwrap(),
        "10.0.0.0/8".parse().unwrap(),
        "fd00::/8".parse().unwrap(),
    ]);
    let addr = app(layer).await;
    let cases = [
        ("6.6.6.6, 203.0.113.9", "203.0.113.9 XForwardedFor"),
        (
            "6.6.6.6, 203.0.113.9, 10.1.2.3",
            "203.0.113.9 XForwardedFor",
        ),
        // `forged, trusted`: a left-to-right scan would stop at 10.9.9.9.
        ("10.9.9.9, 203.0.113.9", "203.0.113.9 XForwardedFor"),
        ("[2001:db8::7]:1234, fd00::1", "2001:db8::7 XForwardedFor"),
        ("2001:db8::8", "2001:db8::8 XForwardedFor"),
        ("::ffff:198.51.100.4", "198.51.100.4 XForwardedFor"),
        ("198.51.100.4:8080", "198.51.100.4 XForwardedFor"),
        ("garbage, 198.51.100.4", "198.51.100.4 XForwardedFor"),
        // Malformed entries reached by the walk fail closed to the peer.
        ("198.51.100.4, not-an-ip", "127.0.0.1 Peer"),
        ("198.51.100.4, 10.0.0.1, <script>", "127.0.0.1 Peer"),
        ("198.51.100.4, unknown", "127.0.0.1 Peer"),
    ];
    for (xff, want) in cases {
        let res = http_get(addr, "/", &format!("X-Forwarded-For: {xff}\r\n")).await;
        assert_eq!(res.text(), want, "{xff}");
    }
}

#[tokio::test]
async fn huge_and_long_headers() {
    let layer = ClientIpLayer::new().trusted_proxies(["127.0.0.1/32".parse().unwrap()]);
    let addr = app(layer).await;
    // 1,000 spoofed entries on the left: the right-most untrusted one still wins.
    let many = format!("{}, 203.0.113.9", vec!["6.6.6.6"; 1000].join(", "));
    assert!(many.len() > 8 * 1024);
    let res = http_get(addr, "/", &format!("X-Forwarded-For: {many}\r\n")).await;
    assert_eq!(res.text(), "203.0.113.9 XForwardedFor");
    // An 8 KiB single garbage entry.
    let garbage = "z".repeat(8 * 1024);
    let res = http_get(addr, "/", &format!("X-Forwarded-For: {garbage}\r\n")).await;
    assert_eq!(res.text(), "127.0.0.1 Peer");
}

#[tokio::test]
async fn forwarded_header_with_quotes_and_unknown() {
    let layer = ClientIpLayer::new()
        .trusted_proxies(["127.0.0.0/8".parse().unwrap()])
        .header(ForwardedHeader::Forwarded);
    let addr = app(layer).await;
    let cases = [
        (
            "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\"",
            "2001:db8:cafe::17 Forwarded",
        ),
        (
            "for=192.0.2.60;proto=http;by=203.0.113.43",
            "192.0.2.60 Forwarded",
        ),
        ("For=\"192.0.2.61:8080\"", "192.0.2.61 Forwarded"),
        ("for=192.0.2.60, for=unknown", "127.0.0.1 Peer"),
        ("for=192.0.2.60, for=_hidden", "127.0.0.1 Peer"),
        ("for=\"unterminated", "127.0.0.1 Peer"),
        ("proto=https", "127.0.0.1 Peer"),
    ];
    for (fwd, want) in cases {
        let res = http_get(addr, "/", &format!("Forwarded: {fwd}\r\n")).await;
        assert_eq!(res.text(), want, "{fwd}");
    }
}

#[tokio::test]
async fn hop_count_mode() {
    let addr = app(ClientIpLayer::new().trusted_hops(1)).await;
    let res = http_get(addr, "/", "X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\n").await;
    assert_eq!(res.text(), "203.0.113.9 XForwardedFor");
    let res = http_get(addr, "/", "").await;
    assert_eq!(res.text(), "127.0.0.1 Peer");
}

#[test]
fn from_env_lists_bad_values() {
    // Edition 2024 makes `set_var` unsafe and the crate forbids unsafe code, so the
    // checks run in a child process that inherits the variables.
    assert!(common::child_with_env(
        "env_child",
        &[("TRUSTED_PROXIES", "10.0.0.0/8, nonsense")]
    ));
    assert!(common::child_with_env(
        "env_child",
        &[("TRUSTED_PROXIES", "10.0.0.0/8 ::1")]
    ));
    assert!(common::child_with_env(
        "env_child",
        &[("TRUSTED_PROXIES", "")]
    ));
}

#[test]
#[ignore = "entry point of from_env_lists_bad_values, run in a child process"]
fn env_child() {
    let Ok(value) = std::env::var("TRUSTED_PROXIES") else {
        return;
    };
    match ClientIpLayer::from_env() {
        Ok(_) => assert!(!value.contains("nonsense")),
        Err(err) => {
            assert!(value.contains("nonsense"), "{err}");
            assert_eq!(err.problems().len(), 1);
            assert_eq!(err.problems()[0].variable, "TRUSTED_PROXIES");
            assert!(err.to_string().contains("\"nonsense\" is not one"), "{err}");
        }
    }
}
