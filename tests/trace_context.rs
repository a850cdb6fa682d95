//! An incoming W3C `traceparent` over a real loopback socket, with no
//! OpenTelemetry layer installed: its trace id still reaches the request's log
//! line and its error envelopes; hostile values are ignored.
#![cfg(feature = "axum")]

#[path = "common/capture.rs"]
mod capture;
mod common;

use axum::Router;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::routing::get;
use capture::Capture;
use common::{get as http_get, serve};
use tower::ServiceBuilder;
use tower_ops::error::Problem;
use tower_ops::log::{JsonLayer, RequestLogLayer};
use tower_ops::request_id::RequestIdLayer;
use tower_ops::route::CaptureRouteLayer;
use tower_ops::trace_context::{TraceContext, TraceId};
use tracing_subscriber::layer::SubscriberExt;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn app() -> Router {
    Router::new()
        .route(
            "/fail",
            get(|| async {
                tracing::info!("about to fail");
                Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            }),
        )
        .route(
            "/ids",
            get(
                |tc: Option<Extension<TraceContext>>, id: Option<Extension<TraceId>>| async move {
                    format!(
                        "{} {}",
                        tc.map_or("-".to_owned(), |t| t.0.to_string()),
                        id.map_or("-".to_owned(), |t| t.0.to_string())
                    )
                },
            ),
        )
        .layer(CaptureRouteLayer::new())
        .layer(
            ServiceBuilder::new()
                .layer(RequestIdLayer::new())
                .layer(RequestLogLayer::new()),
        )
}

fn setup() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(JsonLayer::new(capture.clone()));
    (capture, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "current_thread")]
async fn a_valid_traceparent_reaches_lines_envelopes_and_extensions() {
    let (logs, _default) = setup();
    let server = serve(app()).await;
    let header = format!("traceparent: {VALID}\r\ntracestate: vendor=1\r\n");

    let failed = http_get(server, "/fail", &header).await;
    assert_eq!(failed.status, 503);
    assert_eq!(failed.json()["trace_id"], TRACE);

    let ids = http_get(server, "/ids", &header).await;
    assert_eq!(ids.text(), format!("{VALID} {TRACE}"));

    let lines = logs.lines();
    // The handler's own line carries the trace id (from the span) too.
    let handler = lines
        .iter()
        .find(|l| l["message"] == "about to fail")
        .unwrap();
    assert_eq!(handler["trace_id"], TRACE);
    let completed: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "request completed")
        .collect();
    assert_eq!(completed.len(), 2);
    assert!(completed.iter().all(|l| l["trace_id"] == TRACE));
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_traceparents_are_ignored() {
    let (logs, _default) = setup();
    let server = serve(app()).await;
    let cases = [
        format!("traceparent: ff-{TRACE}-00f067aa0ba902b7-01\r\n"),
        "traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n".to_owned(),
        format!("traceparent: 00-{TRACE}-0000000000000000-01\r\n"),
        format!(
            "traceparent: 00-{}-00f067aa0ba902b7-01\r\n",
            TRACE.to_uppercase()
        ),
        format!("traceparent: 00-{TRACE}-00f067aa0ba902bz-01\r\n"),
        format!("traceparent: 00-{TRACE}-00f067aa0ba902b-01\r\n"),
        format!("traceparent: {VALID}-extra\r\n"),
        format!(
            "traceparent: cc-{TRACE}-00f067aa0ba902b7-01-{}\r\n",
            "x".repeat(8192)
        ),
        format!("traceparent: {VALID}\r\ntraceparent: {VALID}\r\n"),
        format!("traceparent: {VALID}, {VALID}\r\n"),
        format!("traceparent: 00-{}-00f067aa0ba902b7-01\r\n", "é".repeat(16)),
    ];
    for case in &cases {
        let failed = http_get(server, "/fail", case).await;
        assert_eq!(failed.status, 503, "{case:.80}");
        assert!(failed.json().get("trace_id").is_none(), "{case:.80}");
        let ids = http_get(server, "/ids", case).await;
        assert_eq!(ids.text(), "- -", "{case:.80}");
    }
    let lines = logs.lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["message"] == "request completed")
            .count(),
        cases.len() * 2
    );
    assert!(lines.iter().all(|l| l.get("trace_id").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_keep_their_own_trace_ids() {
    // The envelope shows which id each request saw. A subscriber stays installed
    // so that the handler's callsite is never cached as disabled for the other
    // tests of this binary.
    let (_logs, _default) = setup();
    let server = serve(app()).await;
    let mut tasks = Vec::new();
    for i in 1..=64u32 {
        tasks.push(tokio::spawn(async move {
            let trace = format!("{i:032x}");
            let header = format!("traceparent: 00-{trace}-00f067aa0ba902b7-01\r\n");
            let failed = http_get(server, "/fail", &header).await;
            assert_eq!(failed.json()["trace_id"], trace.as_str());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Two services over loopback, no OpenTelemetry layer installed: the first calls
/// the second through `PropagateContextLayer` on a hyper client, and the second
/// receives the caller's `traceparent` unchanged, so the trace id survives.
#[cfg(feature = "otel")]
#[tokio::test(flavor = "current_thread")]
async fn propagate_context_forwards_the_incoming_traceparent_without_otel() {
    use axum::http::HeaderMap;
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower::{Service, ServiceExt};
    use tower_ops::otel::PropagateContextLayer;

    let (_logs, _default) = setup();
    let downstream = serve(Router::new().route(
        "/echo",
        get(|headers: HeaderMap| async move {
            headers
                .get("traceparent")
                .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned())
        }),
    ))
    .await;
    let upstream = serve(
        Router::new()
            .route(
                "/call",
                get(move || async move {
                    let client = Client::builder(TokioExecutor::new())
                        .build_http::<Empty<axum::body::Bytes>>();
                    let mut client = ServiceBuilder::new()
                        .layer(PropagateContextLayer::new())
                        .service(client);
                    let req = axum::http::Request::get(format!("http://{downstream}/echo"))
                        .body(Empty::new())
                        .unwrap();
                    let response = client.ready().await.unwrap().call(req).await.unwrap();
                    let body = http_body_util::BodyExt::collect(response.into_body())
                        .await
                        .unwrap()
                        .to_bytes();
                    String::from_utf8(body.to_vec()).unwrap()
                }),
            )
            .layer(
                ServiceBuilder::new()
                    .layer(RequestIdLayer::new())
                    .layer(RequestLogLayer::new()),
            ),
    )
    .await;
    let forwarded = http_get(upstream, "/call", &format!("traceparent: {VALID}\r\n")).await;
    assert_eq!(forwarded.status, 200);
    assert_eq!(forwarded.text(), VALID);
    // Nothing came in, nothing made up: no OpenTelemetry span to send either.
    let none = http_get(upstream, "/call", "").await;
    assert_eq!(none.text(), "-");
    // A hostile value is not forwarded.
    let bad = http_get(upstream, "/call", "traceparent: 00-zz-00-01\r\n").await;
    assert_eq!(bad.text(), "-");
}
