//! The load shedder over a real loopback socket: a fixed limit admits exactly
//! its number, sheds the rest with 503 `OVERLOADED` at once, never sheds probes,
//! gives gRPC calls `UNAVAILABLE`, and lets go of a place when a request ends.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use common::{get_request, raw, serve};
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tower_ops::error::ErrorLayer;
use tower_ops::load_shed::ConcurrencyLimitLayer;

const PATIENCE: Duration = Duration::from_secs(10);

/// `/slow` waits until the test hands out permits on `gate`; probes and the
/// stand-in admin route answer at once.
fn app(layer: ConcurrencyLimitLayer, gate: Arc<Semaphore>) -> Router {
    Router::new()
        .route(
            "/slow",
            get(move || {
                let gate = gate.clone();
                async move {
                    let _permit = gate.acquire().await.unwrap();
                    "done"
                }
            }),
        )
        .route("/health/live", get(|| async { r#"{"status":"alive"}"# }))
        .route("/admin/log-level", get(|| async { r#"{"filter":"info"}"# }))
        .layer(layer)
        .layer(ErrorLayer::new())
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_limit_of_four_serves_four_of_thirty_and_probes_keep_answering() {
    let layer = ConcurrencyLimitLayer::fixed(4);
    let gate = Arc::new(Semaphore::new(0));
    let addr = serve(app(layer.clone(), gate.clone())).await;

    let requests: Vec<_> = (0..30)
        .map(|_| tokio::spawn(async move { raw(addr, &get_request("/slow", "")).await }))
        .collect();
    // Four are held by the gate; the other 26 come back at once.
    wait_until("four requests in flight", || layer.in_flight() == 4).await;
    wait_until("26 answers", || {
        requests.iter().filter(|r| r.is_finished()).count() >= 26
    })
    .await;
    // Give a fifth answer, if there were one, the time to arrive.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (done, pending): (Vec<_>, Vec<_>) = requests.into_iter().partition(|r| r.is_finished());
    let mut finished = Vec::new();
    for request in done {
        finished.push(request.await.unwrap());
    }
    assert_eq!(pending.len(), 4, "exactly four are still being served");
    for shed in &finished {
        assert_eq!(shed.status, 503, "{}", shed.text());
        assert_eq!(shed.header("retry-after"), "1");
        assert_eq!(shed.header("content-type"), "application/problem+json");
        let problem = shed.json();
        assert_eq!(problem["code"], "OVERLOADED", "{problem}");
        assert_eq!(problem["status"], 503);
    }
    // The service is at its limit, and its probes and operator routes still
    // answer.
    for _ in 0..5 {
        let probe = raw(addr, &get_request("/health/live", "")).await;
        assert_eq!(probe.status, 200, "{}", probe.text());
        let admin = raw(addr, &get_request("/admin/log-level", "")).await;
        assert_eq!(admin.status, 200, "{}", admin.text());
    }
    assert_eq!(layer.in_flight(), 4);

    gate.add_permits(100);
    for served in pending {
        let served = tokio::time::timeout(PATIENCE, served)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(served.status, 200);
        assert_eq!(served.text(), "done");
    }
    // Every place is given back: the next request is served.
    wait_until("no request in flight", || layer.in_flight() == 0).await;
    assert_eq!(raw(addr, &get_request("/slow", "")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_over_the_limit_get_unavailable() {
    let layer = ConcurrencyLimitLayer::fixed(1);
    let gate = Arc::new(Semaphore::new(0));
    let addr = serve(app(layer.clone(), gate.clone())).await;
    let held = tokio::spawn(async move { raw(addr, &get_request("/slow", "")).await });
    wait_until("one request in flight", || layer.in_flight() == 1).await;

    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let call = Request::post(format!("http://{addr}/slow"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::default())
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, h2.request(call))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200, "trailers-only");
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(response.headers()["retry-after"], "1");

    gate.add_permits(1);
    assert_eq!(held.await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hammering_a_full_server_never_get_past_the_limit() {
    let layer = ConcurrencyLimitLayer::fixed(3);
    let gate = Arc::new(Semaphore::new(0));
    let addr = serve(app(layer.clone(), gate.clone())).await;
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // A flood of connections, some cut before their answer: the count never
    // passes the limit, and places come back as requests end.
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let peak = peak.clone();
            let layer = layer.clone();
            tokio::spawn(async move {
                let bytes = get_request("/slow", "");
                let request = raw(addr, &bytes);
                if i % 4 == 0 {
                    let _ = tokio::time::timeout(Duration::from_millis(20), request).await;
                } else {
                    request.await;
                }
                peak.fetch_max(layer.in_flight(), std::sync::atomic::Ordering::Relaxed);
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.add_permits(10_000);
    for task in flood {
        tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    }
    assert!(peak.load(std::sync::atomic::Ordering::Relaxed) <= 3);
    wait_until("no request in flight", || layer.in_flight() == 0).await;
}

#[test]
fn invalid_values_stop_start_up_and_name_the_variable() {
    // Edition 2024 makes `set_var` unsafe and the crate forbids unsafe code, so
    // each reading runs in a child process that inherits the variables.
    let cases: [(&[(&str, &str)], &str); 10] = [
        (&[], "off"),
        (&[("CONCURRENCY_LIMIT", "16")], "16"),
        (
            &[
                ("CONCURRENCY_LIMIT", "adaptive"),
                ("CONCURRENCY_LIMIT_MAX", "50"),
            ],
            "20",
        ),
        (&[("CONCURRENCY_LIMIT", "0")], "error CONCURRENCY_LIMIT"),
        (&[("CONCURRENCY_LIMIT", "lots")], "error CONCURRENCY_LIMIT"),
        (&[("CONCURRENCY_LIMIT", "-3")], "error CONCURRENCY_LIMIT"),
        (
            &[("CONCURRENCY_LIMIT", "Adaptive ")],
            "error CONCURRENCY_LIMIT",
        ),
        (
            &[
                ("CONCURRENCY_LIMIT", "adaptive"),
                ("CONCURRENCY_LIMIT_MAX", "0"),
            ],
            "error CONCURRENCY_LIMIT_MAX",
        ),
        (
            &[
                ("CONCURRENCY_LIMIT", "adaptive"),
                ("CONCURRENCY_LIMIT_MAX", "99999999999999999999"),
            ],
            "error CONCURRENCY_LIMIT_MAX",
        ),
        (
            &[("ERROR_FORMAT", "xml"), ("CONCURRENCY_LIMIT", "4")],
            "error ERROR_FORMAT",
        ),
    ];
    for (vars, expect) in cases {
        let mut vars = vars.to_vec();
        vars.push(("EXPECT_LOAD_SHED", expect));
        assert!(common::child_with_env("env_child", &vars), "{vars:?}");
    }
}

#[test]
#[ignore = "entry point of invalid_values_stop_start_up_and_name_the_variable, run in a child process"]
fn env_child() {
    let Ok(expect) = std::env::var("EXPECT_LOAD_SHED") else {
        return;
    };
    let read = ConcurrencyLimitLayer::from_env();
    match expect.strip_prefix("error ") {
        Some(variable) => {
            let error = read.expect_err("an invalid value is an error").to_string();
            assert!(error.contains(variable), "{error}");
        }
        None if expect == "off" => assert!(!read.unwrap().is_on()),
        None => assert_eq!(read.unwrap().limit().map(|l| l.to_string()), Some(expect)),
    }
}
