//! The error layer and extractors over a real loopback socket.
#![cfg(feature = "axum")]

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::RawResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::service_fn;
use tower_layer::Layer;
use tower_ops::body::AxumBody;
use tower_ops::error::{ErrorLayer, Problem, Renderer};
use tower_ops::request_id::RequestIdLayer;

// ---------------------------------------------------------------- log capture

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every event of this test binary, as JSON lines.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    })
}

/// The captured events that mention `needle`.
fn events_with(needle: &str) -> Vec<Value> {
    let bytes = logs().0.lock().unwrap().clone();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ---------------------------------------------------------------- the app

#[derive(Deserialize)]
#[allow(dead_code)]
struct User {
    name: String,
    age: u8,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Page {
    page: u32,
}

/// Sends one chunk, then never ends.
struct FirstChunkThenNothing(bool);

impl http_body::Body for FirstChunkThenNothing {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if std::mem::replace(&mut self.0, true) {
            Poll::Pending
        } else {
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
                b"first-chunk",
            )))))
        }
    }
}

async fn async_panic() -> &'static str {
    tokio::task::yield_now().await;
    panic!("async panic secret=ASYNC-SECRET-2")
}

async fn panic_any() -> &'static str {
    std::panic::panic_any(42_u32)
}

async fn panic_multiline() -> &'static str {
    panic!("line one\n{{\"level\":\"INFO\",\"forged\":true}}")
}

fn app(layer: ErrorLayer) -> Router {
    routes().layer(layer).layer(RequestIdLayer::new())
}

/// The same application with the layer in axum body mode.
fn axum_app(layer: ErrorLayer<AxumBody>) -> Router {
    routes().layer(layer).layer(RequestIdLayer::new())
}

fn routes() -> Router {
    use axum::extract as ax;
    use tower_ops::error as ours;

    let sync_panic = service_fn(
        |_: Request<Body>| -> std::future::Ready<Result<Response, Infallible>> {
            panic!("sync panic secret=SYNC-SECRET-1")
        },
    );
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        // axum's own extractors: plain-text rejections the layer rewrites.
        .route(
            "/axum/json",
            post(|ax::Json(u): ax::Json<User>| async move { u.name }),
        )
        .route(
            "/axum/query",
            get(|ax::Query(p): ax::Query<Page>| async move { p.page.to_string() }),
        )
        .route(
            "/axum/form",
            post(|ax::Form(p): ax::Form<Page>| async move { p.page.to_string() }),
        )
        .route(
            "/axum/path/{id}",
            get(|ax::Path(id): ax::Path<u32>| async move { id.to_string() }),
        )
        // ours: rejections are problems with field errors.
        .route(
            "/json",
            post(|ours::Json(u): ours::Json<User>| async move { u.name }),
        )
        .route(
            "/query",
            get(|ours::Query(p): ours::Query<Page>| async move { p.page.to_string() }),
        )
        .route(
            "/form",
            post(|ours::Form(p): ours::Form<Page>| async move { p.page.to_string() }),
        )
        .route(
            "/path/{id}",
            get(|ours::Path(id): ours::Path<u32>| async move { id.to_string() }),
        )
        .route("/panic", get(async_panic))
        .route("/panic-any", get(panic_any))
        .route("/panic-multiline", get(panic_multiline))
        .route_service("/panic-sync", ErrorLayer::new().layer(sync_panic))
        .route(
            "/fail",
            get(|| async {
                Err::<String, _>(Problem::internal(std::io::Error::other(
                    "db connect failed: password=FAIL-SECRET-3",
                )))
            }),
        )
        .route(
            "/conflict",
            get(|| async { (StatusCode::CONFLICT, axum::Json(json!({"mine": true}))) }),
        )
        .route(
            "/teapot",
            get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout\r\n\u{1b}[2J") }),
        )
        .route(
            "/stream",
            get(|| async { Body::new(FirstChunkThenNothing(false)) }),
        )
        .route(
            "/stream-error",
            get(|| async {
                let mut res = Body::new(FirstChunkThenNothing(false)).into_response();
                *res.status_mut() = StatusCode::BAD_REQUEST;
                res
            }),
        )
        .layer(DefaultBodyLimit::max(64))
}

async fn serve(app: Router) -> SocketAddr {
    logs();
    common::serve(app).await
}

// ---------------------------------------------------------------- raw HTTP/1.1

type Reply = RawResponse;

trait ProblemReply {
    /// Asserts the reply is a problem of this status and code, echoing the id.
    fn problem(&self, status: u16, code: &str) -> Value;
}

impl ProblemReply for RawResponse {
    fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.first("content-type"), Some("application/problem+json"));
        let v = self.json();
        assert_eq!(v["status"], status);
        assert_eq!(v["code"], code, "{v}");
        assert_eq!(v["request_id"].as_str(), self.first("x-request-id"), "{v}");
        v
    }
}

/// Sends `head` (request line and headers, without the final blank line) and
/// `body`, with `Connection: close`, and reads the whole reply.
async fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    let mut request = format!("{head}\r\nhost: x\r\nconnection: close\r\n");
    if !body.is_empty() {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    common::raw(addr, &bytes).await
}

async fn get_(addr: SocketAddr, path: &str) -> Reply {
    send(addr, &format!("GET {path} HTTP/1.1"), b"").await
}

async fn post_(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Reply {
    send(
        addr,
        &format!("POST {path} HTTP/1.1\r\ncontent-type: {content_type}"),
        body,
    )
    .await
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn axum_rejections_become_problems() {
    let addr = serve(app(ErrorLayer::new())).await;
    let json = "application/json";
    let cases: Vec<(Reply, u16, &str)> = vec![
        (
            post_(addr, "/axum/json", "text/plain", b"{}").await,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            post_(addr, "/axum/json", json, b"{\"name\":").await,
            400,
            "BAD_REQUEST",
        ),
        (
            post_(addr, "/axum/json", json, br#"{"name":"a","age":999}"#).await,
            422,
            "VALIDATION_FAILED",
        ),
        (
            post_(addr, "/axum/json", json, &[b' '; 65]).await,
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (get_(addr, "/axum/query?page=x").await, 400, "BAD_REQUEST"),
        (
            post_(addr, "/axum/form", "text/plain", b"page=1").await,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            post_(
                addr,
                "/axum/form",
                "application/x-www-form-urlencoded",
                b"page=x",
            )
            .await,
            422,
            "VALIDATION_FAILED",
        ),
        (get_(addr, "/axum/path/abc").await, 400, "BAD_REQUEST"),
        (
            get_(addr, "/axum/path/99999999999").await,
            400,
            "BAD_REQUEST",
        ),
    ];
    for (reply, status, code) in cases {
        let v = reply.problem(status, code);
        // axum's rejection text survives as the detail of 4xx problems.
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    }
}

#[tokio::test]
async fn our_extractors_point_at_the_field() {
    let addr = serve(app(ErrorLayer::new())).await;
    let json = "application/json";

    let v = post_(addr, "/json", json, br#"{"name":"a","age":999}"#)
        .await
        .problem(422, "VALIDATION_FAILED");
    assert_eq!(v["errors"][0]["pointer"], "/age");
    let v = post_(addr, "/json", json, br#"{"age":1}"#)
        .await
        .problem(422, "VALIDATION_FAILED");
    assert_eq!(v["errors"][0]["pointer"], "/name");
    let v = post_(addr, "/json", json, b"{\"name\":")
        .await
        .problem(400, "BAD_REQUEST");
    assert!(v["detail"].as_str().unwrap().contains("line 1"));
    post_(addr, "/json", "application/jsonx", b"{}")
        .await
        .problem(415, "UNSUPPORTED_MEDIA_TYPE");
    post_(addr, "/json", json, &[b' '; 65])
        .await
        .problem(413, "PAYLOAD_TOO_LARGE");
    let ok = post_(
        addr,
        "/json",
        "application/json; charset=utf-8",
        br#"{"name":"ann","age":3}"#,
    )
    .await;
    assert_eq!((ok.status, ok.text().as_str()), (200, "ann"));

    let v = get_(addr, "/query?page=-1")
        .await
        .problem(400, "VALIDATION_FAILED");
    assert_eq!(v["errors"][0]["field"], "page");
    let v = get_(addr, "/query?nothing")
        .await
        .problem(400, "VALIDATION_FAILED");
    assert_eq!(v["errors"][0]["field"], "page");
    let form = "application/x-www-form-urlencoded";
    let v = post_(addr, "/form", form, b"page=%ZZ")
        .await
        .problem(422, "VALIDATION_FAILED");
    assert_eq!(v["errors"][0]["field"], "page");
    post_(addr, "/form", "multipart/form-data", b"page=1")
        .await
        .problem(415, "UNSUPPORTED_MEDIA_TYPE");
    let v = get_(addr, "/path/12ab")
        .await
        .problem(400, "VALIDATION_FAILED");
    assert_eq!(v["errors"][0]["field"], "id");
    assert_eq!(get_(addr, "/path/12").await.text(), "12");
}

#[tokio::test]
async fn unknown_route_and_wrong_method() {
    let addr = serve(app(ErrorLayer::new())).await;
    let v = get_(addr, "/no/such/route").await.problem(404, "NOT_FOUND");
    assert_eq!(v["title"], "Not Found");
    let reply = send(addr, "DELETE /ok HTTP/1.1", b"").await;
    reply.problem(405, "METHOD_NOT_ALLOWED");
    let allow = reply.first("allow").expect("Allow kept");
    assert!(allow.contains("GET"), "{allow}");
}

#[tokio::test]
async fn panics_become_500_without_the_secret() {
    let addr = serve(app(ErrorLayer::new())).await;
    for (path, secret) in [
        ("/panic-sync", "SYNC-SECRET-1"),
        ("/panic", "ASYNC-SECRET-2"),
    ] {
        let reply = get_(addr, path).await;
        let v = reply.problem(500, "INTERNAL");
        assert_eq!(v["title"], "Internal Server Error");
        assert!(!reply.text().contains(secret), "{}", reply.text());
        assert!(!reply.text().contains("panic"), "{}", reply.text());
        // Logged once, at error level, with the request id.
        let id = reply.first("x-request-id").unwrap();
        let events = events_with(id);
        let ours: Vec<_> = events
            .iter()
            .filter(|e| e["fields"]["request_id"] == id)
            .collect();
        assert_eq!(ours.len(), 1, "{events:?}");
        assert_eq!(ours[0]["level"], "ERROR");
        // The secret is redacted from the log too.
        assert!(events_with(secret).is_empty(), "{:?}", events_with(secret));
    }
    get_(addr, "/panic-any").await.problem(500, "INTERNAL");
}

#[tokio::test]
async fn panic_text_cannot_forge_log_lines() {
    let addr = serve(app(ErrorLayer::new())).await;
    let reply = get_(addr, "/panic-multiline").await;
    reply.problem(500, "INTERNAL");
    let id = reply.first("x-request-id").unwrap();
    let events = events_with(id);
    assert_eq!(events.len(), 1);
    let panic = events[0]["fields"]["panic"].as_str().unwrap();
    assert!(!panic.contains('\n'), "{panic}");
    assert!(events_with("\"forged\":true").is_empty());
}

#[tokio::test]
async fn handler_errors_are_logged_not_shown() {
    let addr = serve(app(ErrorLayer::new())).await;
    let reply = get_(addr, "/fail").await;
    reply.problem(500, "INTERNAL");
    assert!(!reply.text().contains("FAIL-SECRET-3"));
    assert!(!reply.text().contains("db connect"));
    let id = reply.first("x-request-id").unwrap();
    let events = events_with(id);
    let ours: Vec<_> = events
        .iter()
        .filter(|e| e["fields"]["request_id"] == id)
        .collect();
    assert_eq!(ours.len(), 1, "{events:?}");
    assert_eq!(ours[0]["level"], "ERROR");
    assert!(events_with("FAIL-SECRET-3").is_empty());
}

#[tokio::test]
async fn head_requests_get_no_body() {
    let addr = serve(app(ErrorLayer::new())).await;
    for path in ["/no/such/route", "/panic", "/axum/path/abc"] {
        let reply = send(addr, &format!("HEAD {path} HTTP/1.1"), b"").await;
        assert!(reply.status >= 400, "{path}");
        assert_eq!(
            reply.first("content-type"),
            Some("application/problem+json")
        );
        assert!(reply.body.is_empty(), "{path}: {}", reply.text());
    }
}

#[tokio::test]
async fn own_json_errors_and_success_are_untouched() {
    let addr = serve(app(ErrorLayer::new())).await;
    let reply = get_(addr, "/conflict").await;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.first("content-type"), Some("application/json"));
    assert_eq!(reply.json(), json!({"mine": true}));
    let reply = get_(addr, "/ok").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok"));
    assert_eq!(
        reply.first("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[tokio::test]
async fn plain_text_detail_is_cleaned() {
    let addr = serve(app(ErrorLayer::new())).await;
    let v = get_(addr, "/teapot").await.problem(418, "BAD_REQUEST");
    assert_eq!(v["detail"], "short and stout   [2J");
}

#[tokio::test]
async fn streaming_bodies_are_not_buffered() {
    let addr = serve(app(ErrorLayer::new())).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0_u8; 1024];
    // The body never ends: the first chunk must arrive on its own.
    tokio::time::timeout(Duration::from_secs(20), async {
        while !String::from_utf8_lossy(&seen).contains("first-chunk") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first chunk arrives");
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));

    // An endless *error* body is replaced without being read.
    get_(addr, "/stream-error")
        .await
        .problem(400, "BAD_REQUEST");
}

#[tokio::test]
async fn wrapped_format_everywhere() {
    let addr = serve(app(ErrorLayer::new().renderer(Renderer::wrapped()))).await;
    for (reply, code) in [
        (get_(addr, "/no/such/route").await, "NOT_FOUND"),
        (get_(addr, "/panic").await, "INTERNAL"),
        // Rendered as problem+json by the extractor, re-rendered by the layer.
        (
            post_(addr, "/json", "application/json", br#"{"name":1,"age":1}"#).await,
            "VALIDATION_FAILED",
        ),
    ] {
        assert_eq!(reply.first("content-type"), Some("application/json"));
        let v = reply.json();
        assert_eq!(v["success"], false);
        assert_eq!(v["error"]["code"], code);
        assert_eq!(
            v["error"]["requestId"].as_str(),
            reply.first("x-request-id")
        );
    }
}

/// `for_axum()` changes the body type only: every kind of answer is the same.
#[tokio::test]
async fn axum_body_mode_answers_the_same() {
    let addr = serve(axum_app(ErrorLayer::new().for_axum())).await;
    post_(addr, "/axum/json", "text/plain", b"{}")
        .await
        .problem(415, "UNSUPPORTED_MEDIA_TYPE");
    get_(addr, "/no/such/route").await.problem(404, "NOT_FOUND");
    let reply = send(addr, "DELETE /ok HTTP/1.1", b"").await;
    reply.problem(405, "METHOD_NOT_ALLOWED");
    assert!(reply.first("allow").is_some_and(|a| a.contains("GET")));
    for path in ["/panic-sync", "/panic"] {
        let reply = get_(addr, path).await;
        reply.problem(500, "INTERNAL");
        assert!(!reply.text().contains("SECRET"), "{}", reply.text());
    }
    let reply = get_(addr, "/fail").await;
    reply.problem(500, "INTERNAL");
    assert!(!reply.text().contains("FAIL-SECRET-3"));
    let v = get_(addr, "/teapot").await.problem(418, "BAD_REQUEST");
    assert_eq!(v["detail"], "short and stout   [2J");
    let reply = get_(addr, "/conflict").await;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.json(), json!({"mine": true}));
    let reply = get_(addr, "/ok").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok"));
    get_(addr, "/stream-error")
        .await
        .problem(400, "BAD_REQUEST");
    let reply = send(addr, "HEAD /no/such/route HTTP/1.1", b"").await;
    assert_eq!(reply.status, 404);
    assert!(reply.body.is_empty());

    let wrapped = ErrorLayer::new().renderer(Renderer::wrapped()).for_axum();
    let addr = serve(axum_app(wrapped)).await;
    let v = get_(addr, "/panic").await.json();
    assert_eq!(v["error"]["code"], "INTERNAL");
}

#[tokio::test]
async fn many_panics_at_once() {
    let addr = serve(app(ErrorLayer::new())).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            tokio::spawn(async move {
                let path = if i % 2 == 0 { "/panic" } else { "/panic-sync" };
                let head = format!("GET {path} HTTP/1.1\r\nx-request-id: burst-{i}");
                let reply = send(addr, &head, b"").await;
                reply.problem(500, "INTERNAL");
                reply.first("x-request-id").unwrap().to_owned()
            })
        })
        .collect();
    let mut ids = HashMap::new();
    for t in tasks {
        *ids.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(ids.len(), 64);
    assert!(ids.keys().all(|id| id.starts_with("burst-")));
    // The server still serves.
    assert_eq!(get_(addr, "/ok").await.status, 200);
}
