//! The error-report hook over a real loopback socket: one report per 5xx and per
//! panic, none for 4xx, redacted, and a hook that panics, blocks or is flooded
//! never changes what clients get.
#![cfg(feature = "axum")]

mod common;

use std::fmt;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{RawResponse, get as http_get, serve};
use tower::ServiceBuilder;
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::error::{ErrorLayer, ErrorReport, ErrorReporter, Problem};
use tower_ops::request_id::RequestIdLayer;
use tower_ops::route::CaptureRouteLayer;
use tower_ops::timeout::TimeoutLayer;

const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct HandlerError(std::io::Error);

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("loading the order failed")
    }
}

impl std::error::Error for HandlerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

const PANIC_LINE: u32 = line!() + 3;

async fn panics() -> &'static str {
    panic!("charging card 4242 4242 4242 4242 failed")
}

async fn fail() -> Result<&'static str, Problem> {
    Err(Problem::internal(HandlerError(std::io::Error::other(
        "postgres://app:hunter2@db/orders refused",
    ))))
}

fn app(reporter: ErrorReporter) -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/bad",
            get(|| async { Err::<&str, _>(Problem::bad_request("no such order")) }),
        )
        .route("/fail", get(fail))
        .route("/panic", get(panics))
        .route("/hang", get(std::future::pending::<&'static str>))
        .layer(CaptureRouteLayer::new())
        .layer(
            ServiceBuilder::new()
                .layer(RequestIdLayer::new())
                .layer(ClientIpLayer::new())
                .layer(ErrorLayer::new().for_axum().reporter(reporter))
                // Its 504 is a problem made inside the error layer: reported too.
                .layer(TimeoutLayer::new(WAIT).route("/hang", Duration::from_millis(200))),
        )
}

/// A reporter whose reports arrive on the returned channel.
fn collecting() -> (ErrorReporter, Receiver<ErrorReport>) {
    let (tx, rx) = mpsc::channel();
    let reporter = ErrorReporter::new(move |report: ErrorReport| {
        let _ = tx.send(report);
    });
    (reporter, rx)
}

async fn with_id(addr: std::net::SocketAddr, path: &str, id: &str) -> RawResponse {
    http_get(addr, path, &format!("x-request-id: {id}\r\n")).await
}

fn assert_internal(res: &RawResponse) {
    assert_eq!(res.status, 500, "{}", res.text());
    assert_eq!(res.json()["code"], "INTERNAL");
}

#[tokio::test]
async fn one_report_per_server_error_and_panic_and_none_for_client_errors() {
    tower_ops::error::capture_panic_locations();
    let (reporter, reports) = collecting();
    let addr = serve(app(reporter.clone())).await;

    assert_eq!(with_id(addr, "/ok", "ok-1").await.status, 200);
    assert_eq!(with_id(addr, "/bad", "bad-1").await.status, 400);
    assert_eq!(with_id(addr, "/nowhere", "gone-1").await.status, 404);
    let fail = http_get(
        addr,
        "/fail?token=s3cret&page=2",
        "x-request-id: fail-1\r\nauthorization: Bearer abc.def.ghi\r\ncookie: sid=s3cret\r\n",
    )
    .await;
    assert_internal(&fail);
    assert!(!fail.text().contains("hunter2"));
    let panic = with_id(addr, "/panic", "panic-1").await;
    assert_internal(&panic);
    assert!(!panic.text().contains("4242"));
    let hang = with_id(addr, "/hang", "hang-1").await;
    assert_eq!(hang.status, 504, "{}", hang.text());

    assert!(reporter.flush(WAIT));
    let got: Vec<ErrorReport> = reports.try_iter().collect();
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.request_id().map(|id| id.as_str().to_owned()))
        .collect();
    assert_eq!(
        ids,
        [
            Some("fail-1".to_owned()),
            Some("panic-1".to_owned()),
            Some("hang-1".to_owned())
        ],
        "{got:?}"
    );

    let failed = &got[0];
    assert_eq!(failed.problem().status(), 500);
    assert_eq!(failed.problem().get_code().as_str(), "INTERNAL");
    assert!(failed.panic().is_none());
    assert_eq!(failed.route(), Some("/fail"));
    let head = failed.request();
    assert_eq!(head.method(), "GET");
    assert_eq!(head.uri(), "/fail?token=[REDACTED]&page=2");
    assert_eq!(head.headers()["authorization"], "Bearer [REDACTED]");
    assert!(!format!("{:?}", head.headers()).contains("s3cret"));
    assert_eq!(head.client_ip(), Some([127, 0, 0, 1].into()));
    let chain = failed.error_chain();
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert_eq!(chain[0], "loading the order failed");
    assert!(chain[1].contains("refused") && !chain[1].contains("hunter2"));
    // The error object itself is handed over for trackers that read it.
    let source = failed.problem().get_source().expect("a source");
    assert!(source.downcast_ref::<HandlerError>().is_some());
    assert!(!format!("{failed:?}").contains("hunter2"));

    let panicked = &got[1];
    assert_eq!(panicked.problem().get_rejected_by(), Some("panic"));
    let info = panicked.panic().expect("a panic report");
    assert!(info.message().starts_with("charging card"), "{info:?}");
    assert!(!info.message().contains("4242"), "{info:?}");
    let location = info.location().expect("a location");
    assert!(location.file().ends_with("error_report.rs"), "{location}");
    assert_eq!(location.line(), PANIC_LINE);

    let timed_out = &got[2];
    assert_eq!(timed_out.problem().get_code().as_str(), "TIMEOUT");
    assert_eq!(timed_out.problem().get_rejected_by(), Some("timeout"));
    assert!(timed_out.panic().is_none());
    assert_eq!(reporter.dropped(), 0);
}

#[tokio::test]
async fn a_panicking_hook_loses_only_its_own_report() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let reporter = ErrorReporter::new(move |report: ErrorReport| {
        let id = report.request_id().unwrap().as_str().to_owned();
        if id == "boom" {
            panic!("the tracker client broke");
        }
        sink.lock().unwrap().push(id);
    });
    let addr = serve(app(reporter.clone())).await;
    assert_internal(&with_id(addr, "/fail", "boom").await);
    assert_internal(&with_id(addr, "/panic", "after-1").await);
    assert_eq!(with_id(addr, "/ok", "ok").await.status, 200);
    assert_internal(&with_id(addr, "/fail", "after-2").await);
    assert!(reporter.flush(WAIT));
    assert_eq!(*seen.lock().unwrap(), ["after-1", "after-2"]);
}

#[tokio::test]
async fn a_blocked_hook_holds_no_response_and_a_full_queue_drops() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let done = Arc::new(Mutex::new(Vec::new()));
    let sink = done.clone();
    let reporter = ErrorReporter::with_capacity(1, move |report: ErrorReport| {
        let _ = entered_tx.send(());
        // Blocks until the test lets it go (or drops the sender).
        let _ = released.recv();
        let id = report.request_id().unwrap().as_str().to_owned();
        sink.lock().unwrap().push(id);
    });
    let addr = serve(app(reporter.clone())).await;

    assert_internal(&with_id(addr, "/fail", "first").await);
    entered
        .recv_timeout(WAIT)
        .expect("the hook got the first report");
    // The hook is stuck on the first report; clients still get their answers.
    assert_internal(&with_id(addr, "/panic", "queued").await);
    for i in 0..3 {
        assert_internal(&with_id(addr, "/fail", &format!("dropped-{i}")).await);
    }
    assert_eq!(with_id(addr, "/ok", "ok").await.status, 200);
    assert_eq!(reporter.dropped(), 3);
    assert!(
        !reporter.flush(Duration::from_millis(50)),
        "the hook has not returned"
    );
    assert!(done.lock().unwrap().is_empty());

    drop(release);
    assert!(reporter.flush(WAIT));
    assert_eq!(*done.lock().unwrap(), ["first", "queued"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_errors_are_each_reported_once() {
    let (reporter, reports) = collecting();
    let addr = serve(app(reporter.clone())).await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            tokio::spawn(async move {
                let path = match i % 4 {
                    0 => "/fail",
                    1 => "/panic",
                    2 => "/bad",
                    _ => "/ok",
                };
                with_id(addr, path, &format!("c-{i}")).await.status
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let expected = [500, 500, 400, 200][i % 4];
        assert_eq!(task.await.unwrap(), expected);
    }
    assert!(reporter.flush(WAIT));
    let mut ids: Vec<String> = reports
        .try_iter()
        .map(|r| r.request_id().unwrap().as_str().to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = (0..40)
        .filter(|i| i % 4 < 2)
        .map(|i| format!("c-{i}"))
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
}
