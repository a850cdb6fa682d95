//! `TimeoutLayer` over a real loopback socket. Real time is used with a short
//! per-route timeout against a handler that would sleep for a minute; nothing
//! asserts on how long anything took (the paused-clock tests are in the crate).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use common::{get_request, raw, serve};

/// The request id every request here carries.
const ID: &str = "x-request-id: t-1\r\n";
use tower_ops::request_id::RequestIdLayer;
use tower_ops::timeout::TimeoutLayer;

struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

async fn start(dropped: Arc<AtomicUsize>) -> std::net::SocketAddr {
    let slow = move |Query(q): Query<HashMap<String, u64>>| {
        let guard = Guard(dropped.clone());
        async move {
            let ms = q.get("ms").copied().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            drop(guard);
            format!("slept {ms} ms")
        }
    };
    let app = Router::new()
        .route("/slow", get(slow.clone()))
        .route("/slow/short", get(slow))
        .layer(
            TimeoutLayer::new(Duration::from_secs(60))
                .route("/slow/short", Duration::from_millis(50)),
        )
        .layer(RequestIdLayer::new());
    serve(app).await
}

#[tokio::test]
async fn expiry_gives_the_504_problem_and_drops_the_handler() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let addr = start(dropped.clone()).await;
    let res = raw(addr, &get_request("/slow/short?ms=60000", ID)).await;
    assert_eq!(res.status, 504, "{res:?}");
    assert_eq!(res.first("content-type"), Some("application/problem+json"));
    assert_eq!(res.first("x-request-id"), Some("t-1"));
    let json = res.json();
    assert_eq!(json["code"], "TIMEOUT");
    assert_eq!(json["request_id"], "t-1");
    assert_eq!(json["detail"], "request did not complete within 50 ms");
    // The handler's future was dropped before the answer was written.
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn fast_requests_and_head() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let addr = start(dropped).await;
    let res = raw(addr, &get_request("/slow?ms=0", ID)).await;
    assert_eq!((res.status, res.body.as_slice()), (200, &b"slept 0 ms"[..]));
    let head = b"HEAD /slow/short?ms=60000 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let res = raw(addr, head).await;
    assert_eq!(res.status, 504);
    assert!(res.body.is_empty(), "HEAD answers carry no body");
    // Hostile query values are the handler's business, not the layer's.
    let res = raw(addr, &get_request("/slow/short?ms=-1", ID)).await;
    assert_eq!(res.status, 400);
}

#[tokio::test]
async fn concurrent_timeouts() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let addr = start(dropped.clone()).await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            tokio::spawn(async move {
                let path = if i % 2 == 0 {
                    "/slow/short?ms=600000"
                } else {
                    "/slow?ms=1"
                };
                (i, raw(addr, &get_request(path, ID)).await.status)
            })
        })
        .collect();
    for t in tasks {
        let (i, status) = t.await.unwrap();
        assert_eq!(status, if i % 2 == 0 { 504 } else { 200 }, "{i}");
    }
    // 20 timed-out handlers dropped, 20 finished ones dropped their guard too.
    assert_eq!(dropped.load(Ordering::SeqCst), 40);
}
