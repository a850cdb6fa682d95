use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{Value, json};
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

use super::*;
use crate::client_ip::ClientIp;
use crate::error::{Problem, Renderer};
use crate::log::{LogFilter, LogFilterLayer};

const TOKEN: &str = "test-token-0123456789";

/// Routes on a filter of their own, under a subscriber made current for the
/// test's thread (the tests run on a current-thread runtime).
fn setup(directives: &str) -> (AdminRoutes, LogFilter, tracing::subscriber::DefaultGuard) {
    let layer = LogFilterLayer::new(directives).unwrap();
    let filter = layer.handle();
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    (
        AdminRoutes::new(TOKEN).filter(filter.clone()),
        filter,
        guard,
    )
}

fn request(method: Method, auth: Option<&str>, body: &str) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(LOG_LEVEL_PATH)
        .header("content-type", "application/json");
    if let Some(auth) = auth {
        builder = builder.header("authorization", auth);
    }
    builder.body(Full::from(body.to_owned())).unwrap()
}

fn put(body: &str) -> Request<Full<Bytes>> {
    request(Method::PUT, Some(&format!("Bearer {TOKEN}")), body)
}

fn get() -> Request<Full<Bytes>> {
    request(Method::GET, Some(&format!("Bearer {TOKEN}")), "")
}

async fn send<B>(routes: &AdminRoutes, req: Request<B>) -> (Response<()>, Value)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    let response = routes.clone().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (Response::from_parts(parts, ()), value)
}

fn problem(response: &Response<()>) -> &Problem {
    response.extensions().get::<Problem>().expect("a problem")
}

#[tokio::test(flavor = "current_thread")]
async fn get_answers_the_filter_in_force() {
    let (routes, _filter, _guard) = setup("info,my_app=debug");
    let (response, body) = send(&routes, get()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(body, json!({"filter": "info,my_app=debug"}));
    assert!(response.extensions().get::<Problem>().is_none());

    let head = request(Method::HEAD, Some(&format!("bearer {TOKEN}")), "");
    let (response, body) = send(&routes, head).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body, Value::Null);
}

#[tokio::test(flavor = "current_thread")]
async fn put_changes_the_filter_at_once() {
    let (routes, filter, _guard) = setup("info");
    assert!(!tracing::enabled!(target: "my_app", tracing::Level::DEBUG));
    let (response, body) = send(&routes, put(r#"{"filter":" warn,my_app=debug "}"#)).await;
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"filter": "warn,my_app=debug", "previous": "info"})
    );
    assert_eq!(filter.current(), "warn,my_app=debug");
    assert!(tracing::enabled!(target: "my_app", tracing::Level::DEBUG));
    assert!(!tracing::enabled!(target: "other", tracing::Level::INFO));
    let (_, body) = send(&routes, get()).await;
    assert_eq!(body, json!({"filter": "warn,my_app=debug"}));
}

#[tokio::test(flavor = "current_thread")]
async fn a_missing_or_wrong_token_is_401_before_anything_else() {
    let (routes, filter, _guard) = setup("info");
    let wrong = format!("Bearer {TOKEN}x");
    let basic = format!("Basic {TOKEN}");
    for auth in [
        None,
        Some(wrong.as_str()),
        Some(basic.as_str()),
        Some("Bearer"),
    ] {
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let (response, body) = send(
                &routes,
                request(method.clone(), auth, r#"{"filter":"trace"}"#),
            )
            .await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{auth:?} {method}"
            );
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            assert_eq!(body["code"], "UNAUTHORIZED");
            assert_eq!(problem(&response).get_rejected_by(), Some("admin"));
            assert!(!body.to_string().contains(TOKEN), "{body}");
        }
    }
    // Two headers, one of them right: refused.
    let mut twice = get();
    twice
        .headers_mut()
        .append("authorization", "Bearer nope".parse().unwrap());
    let (response, _) = send(&routes, twice).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(filter.current(), "info");
}

#[tokio::test(flavor = "current_thread")]
async fn invalid_directives_are_a_validation_failure_on_filter() {
    let (routes, filter, _guard) = setup("info");
    let (response, body) = send(&routes, put(r#"{"filter":"info,my_app=loud"}"#)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(body["code"], "VALIDATION_FAILED", "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/filter", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("my_app=loud"), "{message}");
    assert_eq!(problem(&response).get_rejected_by(), Some("admin"));
    assert_eq!(filter.current(), "info");

    let (response, body) = send(&routes, put(r#"{"filter":"  "}"#)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["pointer"], "/filter", "{body}");
}

#[tokio::test(flavor = "current_thread")]
async fn bodies_that_are_not_one_string_filter_are_refused() {
    let (routes, filter, _guard) = setup("info");
    let (response, body) = send(&routes, put(r#"{"filter":"debug""#)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "BAD_REQUEST", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );

    for (sent, pointers) in [
        (r#"["debug"]"#, vec![""]),
        (r#"{}"#, vec!["/filter"]),
        (r#"{"filter":3}"#, vec!["/filter"]),
        (r#"{"filter":"debug","ttl":60}"#, vec!["/ttl"]),
        (
            r#"{"level":"debug","a/b":1}"#,
            vec!["/a~1b", "/filter", "/level"],
        ),
    ] {
        let (response, body) = send(&routes, put(sent)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{sent}");
        assert_eq!(body["code"], "VALIDATION_FAILED", "{sent}: {body}");
        let mut found: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        found.sort_unstable();
        assert_eq!(found, pointers, "{sent}: {body}");
    }
    assert_eq!(filter.current(), "info");
}

#[tokio::test(flavor = "current_thread")]
async fn bodies_over_4_kib_are_413_declared_or_streamed() {
    let (routes, filter, _guard) = setup("info");
    let big = format!(r#"{{"filter":"{}"}}"#, "a".repeat(MAX_BODY_BYTES));
    let (response, body) = send(&routes, put(&big)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");

    // A declared length over the cap is refused before the body is read.
    let mut declared = put(r#"{"filter":"debug"}"#);
    declared
        .headers_mut()
        .insert("content-length", "4097".parse().unwrap());
    let (response, _) = send(&routes, declared).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(filter.current(), "info");

    // No length given: cut while reading.
    let chunks = (0..5).map(|_| {
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b' '; 1024])))
    });
    let mut streamed = Request::put(LOG_LEVEL_PATH)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    streamed.headers_mut().remove("content-length");
    let (response, _) = send(&routes, streamed).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Exactly the limit is fine.
    let padding = MAX_BODY_BYTES - r#"{"filter":"debug"}"#.len();
    let exact = format!(r#"{{"filter":"debug"}}{}"#, " ".repeat(padding));
    assert_eq!(exact.len(), MAX_BODY_BYTES);
    let (response, _) = send(&routes, put(&exact)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(filter.current(), "debug");
}

#[tokio::test(flavor = "current_thread")]
async fn a_put_that_is_not_json_is_415() {
    let (routes, filter, _guard) = setup("info");
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut req = put(r#"{"filter":"debug"}"#);
        match content_type {
            Some(ct) => req
                .headers_mut()
                .insert("content-type", ct.parse().unwrap()),
            None => req.headers_mut().remove("content-type"),
        };
        let (response, body) = send(&routes, req).await;
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(body["code"], "UNSUPPORTED_MEDIA_TYPE");
    }
    let mut req = put(r#"{"filter":"debug"}"#);
    req.headers_mut().insert(
        "content-type",
        "application/json; charset=utf-8".parse().unwrap(),
    );
    assert_eq!(send(&routes, req).await.0.status(), StatusCode::OK);
    assert_eq!(filter.current(), "debug");
}

#[tokio::test(flavor = "current_thread")]
async fn other_methods_are_405_with_allow() {
    let (routes, _filter, _guard) = setup("info");
    for method in [Method::POST, Method::DELETE, Method::PATCH, Method::OPTIONS] {
        let req = request(method.clone(), Some(&format!("Bearer {TOKEN}")), "");
        let (response, body) = send(&routes, req).await;
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
        assert_eq!(response.headers()["allow"], "GET, HEAD, PUT");
        assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn other_paths_are_404() {
    let (routes, _filter, _guard) = setup("info");
    let mut req = get();
    *req.uri_mut() = "/admin/other".parse().unwrap();
    let (response, body) = send(&routes, req).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "NOT_FOUND");
}

#[tokio::test(flavor = "current_thread")]
async fn a_filter_whose_subscriber_is_gone_is_503() {
    let layer = LogFilterLayer::new("info").unwrap();
    let routes = AdminRoutes::new(TOKEN).filter(layer.handle());
    drop(layer);
    let (response, body) = send(&routes, put(r#"{"filter":"debug"}"#)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "SERVICE_UNAVAILABLE");
    // Reading still answers the text of the last filter.
    let (response, body) = send(&routes, get()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body, json!({"filter": "info"}));
}

#[tokio::test(flavor = "current_thread")]
async fn the_renderer_is_used_for_problems() {
    let (routes, _filter, _guard) = setup("info");
    let routes = routes.renderer(Renderer::wrapped());
    let (response, body) = send(&routes, request(Method::GET, None, "")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
}

/// Collects the WARN lines of `tower_ops::admin` as JSON.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn parsed(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn each_change_is_logged_with_old_new_and_client() {
    let layer = LogFilterLayer::new("info").unwrap();
    let filter = layer.handle();
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(crate::log::JsonLayer::new(move || writer.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);
    let routes = AdminRoutes::new(TOKEN).filter(filter);

    // The resolved client wins over the peer.
    let mut req = put(r#"{"filter":"error"}"#);
    req.extensions_mut()
        .insert(SocketAddr::from(([10, 0, 0, 5], 4000)));
    req.extensions_mut()
        .insert(ClientIp::from_peer([203, 0, 113, 9].into()));
    assert_eq!(send(&routes, req).await.0.status(), StatusCode::OK);
    // From `error` back to `info`: written under the new filter.
    let mut req = put(r#"{"filter":"info"}"#);
    req.extensions_mut()
        .insert(SocketAddr::from(([10, 0, 0, 5], 4000)));
    assert_eq!(send(&routes, req).await.0.status(), StatusCode::OK);
    // Neither address known.
    assert_eq!(
        send(&routes, put(r#"{"filter":"warn"}"#)).await.0.status(),
        StatusCode::OK
    );

    let lines = lines.parsed();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "tower_ops::admin");
        assert_eq!(line["message"], "log filter changed");
    }
    assert_eq!(lines[0]["old_filter"], "info");
    assert_eq!(lines[0]["new_filter"], "error");
    assert_eq!(lines[0]["client_ip"], "203.0.113.9");
    assert_eq!(lines[1]["old_filter"], "error");
    assert_eq!(lines[1]["new_filter"], "info");
    assert_eq!(lines[1]["client_ip"], "10.0.0.5");
    assert!(lines[2].get("client_ip").is_none(), "{}", lines[2]);
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains(TOKEN), "{text}");
}

#[test]
fn tokens_must_be_long_and_printable() {
    for bad in [
        "",
        "short",
        "0123456789abcde",
        "0123456789 abcdef",
        "0123456789abcdéf",
    ] {
        let outcome = std::panic::catch_unwind(|| AdminRoutes::new(bad));
        let message = *outcome.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("at least 16"), "{message}");
        if !bad.is_empty() {
            assert!(!message.contains(bad), "{message}");
        }
    }
    let _ = AdminRoutes::new("0123456789abcdef");
}

#[test]
fn debug_hides_the_token() {
    let routes = AdminRoutes::new(TOKEN);
    let text = format!("{routes:?}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
    assert!(text.contains("<installed>"), "{text}");
    let routes = routes.filter(LogFilterLayer::new("warn").unwrap().handle());
    assert!(format!("{routes:?}").contains(r#"current: "warn""#));
}
