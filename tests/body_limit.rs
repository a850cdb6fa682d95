//! `BodyLimitLayer` over a real loopback socket: what a client actually receives.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use common::{chunked_post, raw, serve};
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceBuilder;
use tower_ops::body_limit::BodyLimitLayer;
use tower_ops::request_id::RequestIdLayer;

const LIMIT: usize = 1000;

fn app(calls: Arc<AtomicUsize>) -> Router {
    let c1 = calls.clone();
    let c2 = calls;
    Router::new()
        .route(
            "/echo",
            post(move |b: Bytes| async move {
                c1.fetch_add(1, Ordering::SeqCst);
                b.len().to_string()
            }),
        )
        .route(
            "/lenient",
            post(move |req: Request<Body>| async move {
                c2.fetch_add(1, Ordering::SeqCst);
                let b = req
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                b.len().to_string()
            }),
        )
        .route("/", get(|| async { "hello" }))
}

/// The layer in axum mode when the feature is on.
#[cfg(feature = "axum")]
fn limit() -> BodyLimitLayer<tower_ops::body_limit::AxumBody> {
    BodyLimitLayer::new(LIMIT as u64).for_axum()
}

#[cfg(not(feature = "axum"))]
fn limit() -> BodyLimitLayer {
    BodyLimitLayer::new(LIMIT as u64)
}

/// The app with the layer in axum mode; `start_any` uses the generic mode.
async fn start() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = app(calls.clone())
        .layer(limit())
        .layer(RequestIdLayer::new());
    (serve(router).await, calls)
}

async fn start_any() -> std::net::SocketAddr {
    let router = app(Arc::default())
        .layer(BodyLimitLayer::new(LIMIT as u64))
        .layer(RequestIdLayer::new());
    serve(router).await
}

fn assert_413(res: &common::RawResponse, what: &str) {
    assert_eq!(res.status, 413, "{what}: {res:?}");
    assert_eq!(res.first("content-type"), Some("application/problem+json"));
    let json = res.json();
    assert_eq!(json["code"], "PAYLOAD_TOO_LARGE", "{what}");
    assert_eq!(json["status"], 413);
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("limit of 1000 bytes")
    );
    // The request id layer outside stamps the same id on header and body.
    assert_eq!(
        json["request_id"].as_str(),
        res.first("x-request-id"),
        "{what}"
    );
}

#[tokio::test]
async fn chunked_upload_over_the_limit_gets_the_413_problem() {
    let (axum_mode, _) = start().await;
    for (addr, path) in [
        (axum_mode, "/echo"),
        (axum_mode, "/lenient"),
        (start_any().await, "/lenient"),
    ] {
        for chunk in [1, 7, 100, LIMIT + 1] {
            let res = raw(addr, &chunked_post(path, LIMIT + 1, chunk, "")).await;
            assert_413(&res, &format!("{path} chunk {chunk}"));
        }
    }
}

#[tokio::test]
async fn chunked_upload_of_exactly_the_limit_passes() {
    let (axum_mode, _) = start().await;
    for (addr, path) in [
        (axum_mode, "/echo"),
        (axum_mode, "/lenient"),
        (start_any().await, "/echo"),
    ] {
        for chunk in [1, 100, LIMIT] {
            let res = raw(addr, &chunked_post(path, LIMIT, chunk, "")).await;
            assert_eq!(res.status, 200, "{path} {res:?}");
            assert_eq!(res.body, b"1000");
        }
    }
}

#[tokio::test]
async fn declared_length_over_the_limit_is_rejected_before_the_handler() {
    let (addr, calls) = start().await;
    // Only the head is sent: the answer comes without waiting for the body.
    let res = raw(
        addr,
        b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 1001\r\n\r\n",
    )
    .await;
    assert_413(&res, "declared");
    assert_eq!(
        res.json()["detail"],
        "request body of 1001 bytes exceeds the limit of 1000 bytes"
    );
    let huge = b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 1000000000000\r\n\r\n";
    assert_413(&raw(addr, huge).await, "a terabyte");
    // hyper keeps u64::MAX for itself and answers 431 on its own.
    let max = b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 18446744073709551615\r\n\r\n";
    assert_eq!(raw(addr, max).await.status, 431);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// hyper's HTTP/1 parser reads `Content-Length` before any service: malformed,
/// negative, overflowing and conflicting values get hyper's own 400 and the
/// connection is closed. The layer's 400 Problem covers what gets past other
/// servers (see the unit tests, which go through `oneshot`).
#[tokio::test]
async fn malformed_content_length_never_reaches_the_handler() {
    let (addr, calls) = start().await;
    for headers in [
        "content-length: abc\r\n",
        "content-length: -1\r\n",
        "content-length: 18446744073709551616\r\n",
        "content-length: 3\r\ncontent-length: 4\r\n",
        "content-length: 3, 4\r\n",
        "content-length: +3\r\n",
    ] {
        let req =
            format!("POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{headers}\r\nabcd");
        let res = raw(addr, req.as_bytes()).await;
        assert_eq!(res.status, 400, "{headers:?}: {res:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Identical repeated values are one length (RFC 9110 §8.6), for hyper and the layer.
    let req = b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\nabc";
    let res = raw(addr, req).await;
    assert_eq!((res.status, res.body.as_slice()), (200, &b"3"[..]));
}

#[tokio::test]
async fn get_and_head_are_untouched() {
    let (addr, _) = start().await;
    let res = raw(
        addr,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((res.status, res.body.as_slice()), (200, &b"hello"[..]));
    let res = raw(
        addr,
        b"HEAD / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200);
    assert!(res.body.is_empty());
    assert_eq!(res.first("content-length"), Some("5"));
}

#[tokio::test]
async fn around_a_router_with_service_builder() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(BodyLimitLayer::new(LIMIT as u64))
        .service(app(calls));
    let addr = serve(Router::new().fallback_service(svc)).await;
    assert_eq!(
        raw(addr, &chunked_post("/echo", LIMIT, 50, ""))
            .await
            .status,
        200
    );
    assert_eq!(
        raw(addr, &chunked_post("/lenient", LIMIT + 1, 50, ""))
            .await
            .status,
        413
    );
}

#[tokio::test]
async fn concurrent_uploads_are_limited_independently() {
    let (addr, _) = start().await;
    let mut tasks = Vec::new();
    for i in 0..64usize {
        let size = if i % 2 == 0 { LIMIT } else { LIMIT + 1 + i };
        let path = if i % 4 < 2 { "/echo" } else { "/lenient" };
        tasks.push(tokio::spawn(async move {
            (i, raw(addr, &chunked_post(path, size, 1 + i * 3, "")).await)
        }));
    }
    for t in tasks {
        let (i, res) = t.await.unwrap();
        if i % 2 == 0 {
            assert_eq!(
                (res.status, res.body.as_slice()),
                (200, &b"1000"[..]),
                "{i}"
            );
        } else {
            assert_413(&res, &format!("concurrent {i}"));
        }
    }
}
