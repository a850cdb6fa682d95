//! The correlation id over a real loopback socket.

mod common;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use common::{get as http_get, raw, serve};
use tower_ops::request_id::{self, IncomingPolicy, RequestIdLayer};

async fn app(layer: RequestIdLayer) -> std::net::SocketAddr {
    let router = Router::new()
        .route(
            "/",
            get(|| async {
                // Read inside the handler, across an await and in a spawned task.
                tokio::task::yield_now().await;
                let here = request_id::current().unwrap();
                let spawned = request_id::spawn(async { request_id::current() })
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(here, spawned);
                here.to_string()
            }),
        )
        .route(
            "/error",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "inner failure") }),
        )
        .layer(layer);
    serve(router).await
}

fn is_v7(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7)
}

#[tokio::test]
async fn valid_ids_are_kept_everywhere() {
    let addr = app(RequestIdLayer::new()).await;
    let res = http_get(addr, "/", "x-request-id: abc.DEF_1:2@3/4+5=6-7\r\n").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-request-id"), "abc.DEF_1:2@3/4+5=6-7");
    assert_eq!(res.text(), "abc.DEF_1:2@3/4+5=6-7");

    let res = http_get(addr, "/", "x-correlation-id: corr-9\r\n").await;
    assert_eq!(res.header("x-request-id"), "corr-9");
    let max = "a".repeat(128);
    let res = http_get(addr, "/", &format!("x-request-id: {max}\r\n")).await;
    assert_eq!(res.header("x-request-id"), max);
}

#[tokio::test]
async fn missing_id_is_generated_and_echoed_on_errors() {
    let addr = app(RequestIdLayer::new()).await;
    let res = http_get(addr, "/error", "").await;
    assert_eq!(res.status, 500);
    assert!(is_v7(res.header("x-request-id")));
    // Axum's own 404 for an unknown route is echoed too.
    let res = http_get(addr, "/nowhere", "").await;
    assert_eq!(res.status, 404);
    assert!(is_v7(res.header("x-request-id")));
}

#[tokio::test]
async fn hostile_ids_are_replaced_and_never_echoed() {
    let addr = app(RequestIdLayer::new()).await;
    let long = "b".repeat(129);
    let cases: Vec<Vec<u8>> = vec![
        format!("x-request-id: {long}\r\n").into_bytes(),
        b"x-request-id: \r\n".to_vec(),
        b"x-request-id: two words\r\n".to_vec(),
        b"x-request-id: tab\there\r\n".to_vec(),
        b"x-request-id: ctl\x7fchar\r\n".to_vec(),
        b"x-request-id: caf\xc3\xa9\r\n".to_vec(),
        b"x-request-id: \xff\xfe\r\n".to_vec(),
        b"x-request-id: evil\"}{\"admin\":true\r\n".to_vec(),
        b"x-request-id: one\r\nx-request-id: two\r\n".to_vec(),
    ];
    for extra in cases {
        let mut req = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".to_vec();
        req.extend_from_slice(&extra);
        req.extend_from_slice(b"\r\n");
        let res = raw(addr, &req).await;
        if res.status == 400 {
            // hyper refuses some control bytes before any service runs; the value is
            // still not echoed.
            assert!(res.all("x-request-id").is_empty());
            assert!(!res.text().contains("ctl"));
            continue;
        }
        assert_eq!(res.status, 200, "{:?}", String::from_utf8_lossy(&extra));
        let id = res.header("x-request-id");
        assert!(is_v7(id), "{:?} gave {id}", String::from_utf8_lossy(&extra));
        assert_eq!(res.text(), id);
    }
    // Both aliases with different values: the canonical header wins.
    let res = http_get(
        addr,
        "/",
        "x-correlation-id: alias\r\nx-request-id: canonical\r\n",
    )
    .await;
    assert_eq!(res.header("x-request-id"), "canonical");
}

#[tokio::test]
async fn client_id_kept_apart_when_asked() {
    let addr = app(RequestIdLayer::new().policy(IncomingPolicy::GenerateAndKeep)).await;
    let res = http_get(addr, "/", "x-request-id: client-chosen\r\n").await;
    assert!(is_v7(res.header("x-request-id")));
}

#[tokio::test]
async fn concurrent_requests_keep_their_own_ids() {
    let addr = app(RequestIdLayer::new()).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            tokio::spawn(async move {
                let res = http_get(addr, "/", &format!("x-request-id: req-{i}\r\n")).await;
                assert_eq!(res.header("x-request-id"), format!("req-{i}"));
                assert_eq!(res.text(), format!("req-{i}"));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}
