//! The request log over a real loopback socket, captured as JSON lines.
#![cfg(feature = "axum")]

#[path = "common/capture.rs"]
mod capture;
mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::routing::get;
use capture::Capture;
use common::{get as http_get, serve};
use serde_json::Value;
use tower::ServiceBuilder;
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::error::Problem;
use tower_ops::log::{JsonLayer, LogFields, RequestLogLayer};
use tower_ops::request_id::RequestIdLayer;
use tower_ops::route::CaptureRouteLayer;
use tracing_subscriber::layer::SubscriberExt;

fn app() -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get(|Extension(fields): Extension<LogFields>| async move {
                tracing::info!(step = "lookup", "handler says hi");
                fields.insert("user_id", 42);
                fields.insert("status", "spoofed");
                "user"
            }),
        )
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "x") }),
        )
        .route(
            "/limited",
            get(|| async { Problem::new(StatusCode::TOO_MANY_REQUESTS).rejected_by("rate_limit") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "slow"
            }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "never"
            }),
        )
        .route(
            "/stream",
            get(|| async {
                let chunks = (0..10).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1000]));
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route("/health/live", get(|| async { "alive" }))
        .layer(CaptureRouteLayer::new())
}

async fn start(
    layer: RequestLogLayer,
) -> (
    std::net::SocketAddr,
    Capture,
    tracing::subscriber::DefaultGuard,
) {
    let cap = Capture::default();
    let sub = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(JsonLayer::new(cap.clone()));
    let guard = tracing::subscriber::set_default(sub);
    let stack = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(ClientIpLayer::new())
        .layer(layer.slow_after(Duration::from_millis(200)));
    let addr = serve(app().layer(stack)).await;
    (addr, cap, guard)
}

#[tokio::test]
async fn one_line_per_request_with_contract_fields() {
    let (addr, cap, _g) = start(RequestLogLayer::new()).await;
    let res = http_get(
        addr,
        "/users/42?token=s3cr3t-canary&page=2",
        "User-Agent: evil\"agent\\ {\"level\":\"ERROR\"}\r\nx-request-id: req-1\r\n",
    )
    .await;
    assert_eq!(res.status, 200);
    let lines = cap.wait_for(1).await;
    assert_eq!(lines.len(), 1, "{}", cap.text());
    let l = &lines[0];
    assert_eq!(l["level"], "INFO");
    assert_eq!(l["target"], "tower_ops::request");
    assert_eq!(l["method"], "GET");
    assert_eq!(l["route"], "/users/{id}");
    assert_eq!(l["status"], 200);
    assert_eq!(l["request_id"], "req-1");
    assert_eq!(l["client_ip"], "127.0.0.1");
    assert_eq!(l["user_agent"], "evil\"agent\\ {\"level\":\"ERROR\"}");
    assert_eq!(l["request_bytes"], 0);
    assert_eq!(l["response_bytes"], 4);
    assert!(l["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(l["user_id"], 42);
    let path = l["path"].as_str().unwrap();
    assert!(path.starts_with("/users/42?"), "{path}");
    assert!(path.contains("page=2"), "{path}");
    assert!(l.get("slow").is_none() && l.get("aborted").is_none() && l.get("code").is_none());
    // The handler's own event carries the request id at the root.
    let all = cap.lines();
    let hi = all
        .iter()
        .find(|l| l["message"] == "handler says hi")
        .unwrap();
    assert_eq!(hi["request_id"], "req-1");
    assert_eq!(hi["step"], "lookup");
    assert!(!cap.text().contains("s3cr3t-canary"), "{}", cap.text());
}

#[tokio::test]
async fn levels_problems_and_slow_requests() {
    let (addr, cap, _g) = start(RequestLogLayer::new()).await;
    assert_eq!(http_get(addr, "/boom", "").await.status, 500);
    assert_eq!(http_get(addr, "/nowhere", "").await.status, 404);
    assert_eq!(http_get(addr, "/limited", "").await.status, 429);
    assert_eq!(http_get(addr, "/slow", "").await.status, 200);
    assert_eq!(http_get(addr, "/health/live", "").await.status, 200);
    let lines = cap.wait_for(4).await;
    assert_eq!(lines.len(), 4, "probes stay out at info: {}", cap.text());
    assert_eq!(lines[0]["level"], "ERROR");
    assert_eq!(lines[1]["level"], "WARN");
    assert_eq!(lines[1]["route"], "unmatched");
    assert_eq!(lines[2]["code"], "RATE_LIMITED");
    assert_eq!(lines[2]["rejected_by"], "rate_limit");
    assert_eq!(lines[3]["level"], "WARN");
    assert_eq!(lines[3]["slow"], true);
}

#[tokio::test]
async fn streaming_bodies_counted_to_the_end() {
    let (addr, cap, _g) = start(RequestLogLayer::new()).await;
    let res = http_get(addr, "/stream", "").await;
    assert_eq!(res.body.len(), 10_000);
    let lines = cap.wait_for(1).await;
    assert_eq!(lines[0]["response_bytes"], 10_000);
}

#[tokio::test]
async fn client_disconnect_logged_once() {
    use tokio::io::AsyncWriteExt;
    let (addr, cap, _g) = start(RequestLogLayer::new()).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    let lines = cap.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(cap.completed().len(), 1);
    assert_eq!(lines[0]["aborted"], true);
    assert_eq!(lines[0]["route"], "unmatched");
    assert!(lines[0].get("status").is_none());
}

#[tokio::test]
async fn sampling_keeps_errors() {
    let (addr, cap, _g) = start(RequestLogLayer::new().sample_successes(0.0)).await;
    for _ in 0..5 {
        http_get(addr, "/users/1", "").await;
    }
    http_get(addr, "/boom", "").await;
    let lines = cap.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(cap.completed().len(), 1);
    assert_eq!(lines[0]["status"], 500);
}

#[tokio::test]
async fn headers_allow_list_is_redacted() {
    let layer = RequestLogLayer::new().headers([http::header::AUTHORIZATION, http::header::ACCEPT]);
    let (addr, cap, _g) = start(layer).await;
    http_get(
        addr,
        "/users/1",
        "Authorization: Bearer canary-token-123\r\nAccept: text/plain\r\nCookie: sid=canary\r\n",
    )
    .await;
    let lines = cap.wait_for(1).await;
    assert_eq!(lines[0]["headers"]["accept"], "text/plain");
    assert!(lines[0]["headers"].get("cookie").is_none());
    assert!(!cap.text().contains("canary"), "{}", cap.text());
}

#[tokio::test]
async fn concurrent_requests_each_logged_once() {
    let (addr, cap, _g) = start(RequestLogLayer::new()).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            tokio::spawn(async move {
                http_get(addr, "/users/1", &format!("x-request-id: c-{i}\r\n")).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    let lines = cap.wait_for(50).await;
    let mut ids: Vec<_> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
}

#[tokio::test(start_paused = true)]
async fn watchdog_reports_hung_requests_once() {
    use tower::{Service, ServiceExt};
    let cap = Capture::default();
    let sub = tracing_subscriber::registry().with(JsonLayer::new(cap.clone()));
    let _g = tracing::subscriber::set_default(sub);
    let mut svc = ServiceBuilder::new()
        .layer(RequestLogLayer::new().watchdog(Duration::from_secs(5)))
        .service(tower::service_fn(|_req: http::Request<String>| async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("late")))
        }));
    let fut = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(String::new()));
    let res = fut.await.unwrap();
    drop(res);
    let lines = cap.lines();
    let hung: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "request still in flight")
        .collect();
    assert_eq!(hung.len(), 1, "{}", cap.text());
    assert!(hung[0]["elapsed_ms"].as_f64().unwrap() >= 5000.0);
    let done = cap.completed();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["slow"], true);
}

#[test]
fn env_configuration_is_validated() {
    assert!(common::child_with_env(
        "env_child",
        &[
            ("SLOW_REQUEST_MS", "soon"),
            ("LOG_FORMAT", "xml"),
            ("LOG_LEVEL", "info,=[")
        ]
    ));
    assert!(common::child_with_env(
        "env_child",
        &[
            ("SLOW_REQUEST_MS", "250"),
            ("LOG_FORMAT", "JSON"),
            ("LOG_LEVEL", "debug")
        ]
    ));
}

#[test]
#[ignore = "entry point of env_configuration_is_validated, run in a child process"]
fn env_child() {
    let Ok(slow) = std::env::var("SLOW_REQUEST_MS") else {
        return;
    };
    let bad = slow == "soon";
    assert_eq!(RequestLogLayer::from_env().is_err(), bad);
    let builder = tower_ops::log::LogBuilder::from_env();
    if bad {
        let err = builder.unwrap_err();
        let vars: Vec<_> = err.problems().iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(vars, ["LOG_FORMAT", "LOG_LEVEL"], "{err}");
    } else {
        let guard = builder.unwrap().init().unwrap();
        tracing::info!("from the child");
        assert_eq!(guard.dropped_lines(), 0);
        // A second global subscriber is an error, not a panic.
        assert!(tower_ops::log::LogBuilder::new().init().is_err());
    }
}

#[tokio::test]
async fn captured_bodies_are_redacted_and_capped() {
    let cap = Capture::default();
    let sub = tracing_subscriber::registry().with(JsonLayer::new(cap.clone()));
    let _g = tracing::subscriber::set_default(sub);
    let router =
        Router::new()
            .route(
                "/echo",
                axum::routing::post(
                    |tower_ops::error::Json(v): tower_ops::error::Json<Value>| async move {
                        axum::Json(v)
                    },
                ),
            )
            .layer(RequestLogLayer::new().capture_bodies(512));
    let addr = serve(router).await;
    let body = r#"{"user":"ann","Pass-Word":"canary-1","nested":{"items":[{"apiKey":"canary-2"}]},"note":"{\"client_secret\":\"canary-3\"}","card":"4111 1111 1111 1111"}"#;
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let res = common::raw(addr, req.as_bytes()).await;
    assert_eq!(res.status, 200);
    let lines = cap.wait_for(1).await;
    let text = cap.text();
    for canary in ["canary-1", "canary-2", "canary-3", "4111 1111"] {
        assert!(!text.contains(canary), "{canary} leaked: {text}");
    }
    assert_eq!(lines[0]["request_body"]["user"], "ann");
    assert_eq!(lines[0]["response_body"]["user"], "ann");
    assert_eq!(lines[0]["response_body"]["Pass-Word"], "[REDACTED]");

    // Over the capture limit: a placeholder, never the raw text.
    let big = format!(r#"{{"password":"canary-4","pad":"{}"}}"#, "x".repeat(600));
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{big}",
        big.len()
    );
    common::raw(addr, req.as_bytes()).await;
    let lines = cap.wait_for(2).await;
    assert!(!cap.text().contains("canary-4"));
    let placeholder = lines[1]["request_body"].as_str().unwrap();
    assert!(placeholder.starts_with("<body of "), "{placeholder}");
}

/// One request through `RequestIdLayer` and `RequestLogLayer` under `JsonLayer`,
/// its handler adding `fields`; the raw request line.
async fn one_line(
    user_agent: &str,
    fields: &'static [(&'static str, &'static str)],
) -> (String, Value) {
    use tower::ServiceExt;
    let cap = Capture::default();
    let sub = tracing_subscriber::registry().with(JsonLayer::new(cap.clone()));
    let _g = tracing::subscriber::set_default(sub);
    let svc = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(RequestLogLayer::new())
        .service(tower::service_fn(
            move |req: http::Request<String>| async move {
                let log = req.extensions().get::<LogFields>().unwrap();
                for (k, v) in fields {
                    log.insert(*k, *v);
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
            },
        ));
    let req = http::Request::builder()
        .uri("/users/1")
        .header("user-agent", user_agent)
        .body(String::new())
        .unwrap();
    svc.oneshot(req).await.unwrap();
    let text = cap.text();
    let line = text
        .lines()
        .find(|l| l.contains("request completed"))
        .unwrap()
        .to_owned();
    let value = serde_json::from_str(&line).unwrap();
    (line, value)
}

#[tokio::test]
async fn huge_user_agent_is_cut_and_the_line_stays_small() {
    let agent = "A".repeat(400 * 1024);
    let (line, l) = one_line(&agent, &[]).await;
    assert!(line.len() < 4096, "{} bytes", line.len());
    assert_eq!(l["truncated"], true);
    assert_eq!(line.matches("\"truncated\"").count(), 1);
    let ua = l["user_agent"].as_str().unwrap();
    assert_eq!(ua, format!("{}…[truncated]", &agent[..1024]));
    assert_eq!(l["status"], 200);
}

#[tokio::test]
async fn control_characters_cannot_blow_up_the_line() {
    // Header values allow tabs; a handler field can hold anything.
    static FIELDS: &[(&str, &str)] = &[("note", "\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}")];
    let tabs = "\t".repeat(2000);
    let (line, l) = one_line(&format!("a{tabs}b"), FIELDS).await;
    assert!(line.len() < 4096, "{} bytes", line.len());
    assert_eq!(l["truncated"], true);
    assert!(l["user_agent"].as_str().unwrap().ends_with("…[truncated]"));
    assert_eq!(l["note"], "\u{1}".repeat(8));
}

#[tokio::test]
async fn hostile_handler_field_is_bounded() {
    let cap = Capture::default();
    let sub = tracing_subscriber::registry().with(JsonLayer::new(cap.clone()));
    let _g = tracing::subscriber::set_default(sub);
    let svc = tower::Layer::layer(
        &RequestLogLayer::new(),
        tower::service_fn(|req: http::Request<String>| async move {
            let log = req.extensions().get::<LogFields>().unwrap();
            log.insert("blob", "\u{0}".repeat(2000));
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }),
    );
    tower::ServiceExt::oneshot(svc, http::Request::new(String::new()))
        .await
        .unwrap();
    let text = cap.text();
    assert!(text.len() < 4096, "{} bytes", text.len());
    let l = &cap.completed()[0];
    assert_eq!(l["truncated"], true);
    let blob = l["blob"]
        .as_str()
        .unwrap()
        .strip_suffix("…[truncated]")
        .unwrap();
    assert_eq!(blob, "\u{0}".repeat(170), "six escaped bytes each");
}

#[tokio::test]
async fn handler_fields_are_typed_and_never_override() {
    let (addr, cap, _g) = start(RequestLogLayer::new()).await;
    http_get(addr, "/users/7", "").await;
    let lines = cap.wait_for(1).await;
    let l = &lines[0];
    assert_eq!(l["user_id"], 42, "a number stays a number: {l}");
    assert_eq!(l["status"], 200, "the handler's `status` does not win");
    assert!(
        l.get("fields").is_none() && l.get("log.fields").is_none(),
        "{l}"
    );
    let hi = cap
        .lines()
        .into_iter()
        .find(|l| l["message"] == "handler says hi")
        .unwrap();
    assert!(hi.get("user_id").is_none(), "only the request line: {hi}");
}

/// The application's own subscriber: tracing-subscriber's `fmt().json()`,
/// writing to a capture, as this thread's default.
fn fmt_json() -> (Capture, tracing::subscriber::DefaultGuard) {
    let cap = Capture::default();
    let sub = tracing_subscriber::fmt()
        .json()
        .with_writer(cap.clone())
        .finish();
    (cap, tracing::subscriber::set_default(sub))
}

#[tokio::test]
async fn own_subscriber_gets_handler_fields_as_real_fields() {
    let (cap, _g) = fmt_json();
    let addr = serve(app().layer(RequestLogLayer::new())).await;
    assert_eq!(http_get(addr, "/users/7", "").await.status, 200);
    let mut line = None;
    for _ in 0..200 {
        line = cap
            .lines()
            .into_iter()
            .find(|l| l["fields"]["message"] == "request completed");
        if line.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let line = line.unwrap_or_else(|| panic!("no request line: {}", cap.text()));
    // Real fields: the number stays a number, the line's own `status` wins.
    assert_eq!(line["fields"]["user_id"], 42, "{line}");
    assert_eq!(line["fields"]["status"], 200, "{line}");
    assert!(line["fields"].get("fields").is_none(), "{line}");
}

/// Under the app's own `fmt().json()` subscriber, a line logged in a task started
/// with `request_id::spawn` belongs to the request's span, so it carries the
/// request id as a line logged in the handler does.
#[tokio::test]
async fn own_subscriber_spawned_task_lines_carry_the_request_span() {
    let (cap, _g) = fmt_json();
    let router = Router::new().route(
        "/job",
        get(|| async {
            let (done, wait) = tokio::sync::oneshot::channel();
            tower_ops::request_id::spawn(async move {
                tracing::info!("in the task");
                let _ = done.send(());
            });
            let _ = wait.await;
            "queued"
        }),
    );
    let app = router.layer(
        ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .layer(RequestLogLayer::new()),
    );
    let addr = serve(app).await;
    let reply = http_get(addr, "/job", "x-request-id: job-42\r\n").await;
    assert_eq!(reply.status, 200);
    let line = cap
        .lines()
        .into_iter()
        .find(|l| l["fields"]["message"] == "in the task")
        .unwrap_or_else(|| panic!("no task line: {}", cap.text()));
    assert_eq!(line["span"]["request_id"], "job-42", "{line}");
}
