//! Log sampling over a real loopback socket: which requests get a line, what
//! the handler sees of the decision, and that metrics still count them all.
#![cfg(all(feature = "axum", feature = "metrics"))]

#[path = "common/capture.rs"]
mod capture;
mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use capture::Capture;
use common::{get as http_get, serve};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tower::ServiceBuilder;
use tower_ops::error::{Code, Problem, ShadowRejection};
use tower_ops::log::{JsonLayer, LogFields, LogSample, RequestLogLayer};
use tower_ops::metrics::MetricsLayer;
use tower_ops::request_id::RequestIdLayer;
use tower_ops::route::CaptureRouteLayer;
use tracing_subscriber::layer::SubscriberExt;

fn app() -> Router {
    Router::new()
        .route(
            "/decision",
            // The handler sees the decision before it answers.
            get(
                |sample: LogSample, Extension(fields): Extension<LogFields>| async move {
                    if sample.is_logged() {
                        fields.insert("built_for_the_line", true);
                    }
                    format!("{} {}", sample.is_logged(), sample.rate())
                },
            ),
        )
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "x") }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(250)).await;
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
            // A 200 that carries a problem (as a gRPC rejection does).
            "/problem-200",
            get(|| async {
                let mut response = "ok".into_response();
                response
                    .extensions_mut()
                    .insert(Problem::new(StatusCode::OK).code(Code::new("NOTE")));
                response
            }),
        )
        .route(
            // What a limiter in shadow mode leaves on a response it let through.
            "/shadowed",
            get(|| async {
                let mut response = "served".into_response();
                response
                    .extensions_mut()
                    .insert(ShadowRejection::new("rate_limit", Code::RATE_LIMITED).policy("user"));
                response
            }),
        )
        .layer(CaptureRouteLayer::new())
}

struct Server {
    addr: std::net::SocketAddr,
    cap: Capture,
    registry: std::sync::Arc<prometheus_client::registry::Registry>,
    _guard: tracing::subscriber::DefaultGuard,
}

async fn start(rate: f64) -> Server {
    let cap = Capture::default();
    let sub = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(JsonLayer::new(cap.clone()));
    let guard = tracing::subscriber::set_default(sub);
    let (metrics, registry) = MetricsLayer::builder().build();
    let registry = std::sync::Arc::new(registry);
    let stack = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(
            RequestLogLayer::new()
                .sample_successes(rate)
                .slow_after(Duration::from_millis(200)),
        )
        .layer(metrics);
    let addr = serve(app().layer(stack)).await;
    Server {
        addr,
        cap,
        registry,
        _guard: guard,
    }
}

/// Lets the last lines reach the capture.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn the_handler_sees_the_decision_its_line_follows() {
    let s = start(0.5).await;
    let mut answers = HashMap::new();
    for i in 0..200 {
        let id = format!("req-{i}");
        let res = http_get(s.addr, "/decision", &format!("x-request-id: {id}\r\n")).await;
        assert_eq!(res.status, 200);
        answers.insert(id, res.text());
    }
    settle().await;
    let lines = s.cap.completed();
    let logged: HashMap<String, &Value> = lines
        .iter()
        .map(|l| (l["request_id"].as_str().unwrap().to_owned(), l))
        .collect();
    assert_eq!(logged.len(), lines.len(), "one line per request at most");
    for (id, answer) in &answers {
        let (is_logged, rate) = answer.split_once(' ').unwrap();
        assert_eq!(rate, "0.5");
        let line = logged.get(id);
        assert_eq!(line.is_some(), is_logged == "true", "{id}: {answer}");
        if let Some(line) = line {
            assert_eq!(line["sample_rate"], 0.5);
            // The field the handler built only because the line would be written.
            assert_eq!(line["built_for_the_line"], true);
        }
    }
    // Binomial(200, 0.5): sd ~7; 5 sd either side.
    assert!((65..=135).contains(&lines.len()), "{} of 200", lines.len());
}

#[tokio::test]
async fn only_ordinary_successes_are_sampled() {
    let s = start(0.0).await;
    for _ in 0..20 {
        http_get(s.addr, "/ok", "").await;
    }
    http_get(s.addr, "/boom", "").await;
    http_get(s.addr, "/missing", "").await;
    http_get(s.addr, "/slow", "").await;
    http_get(s.addr, "/problem-200", "").await;
    http_get(s.addr, "/shadowed", "").await;
    // A client that goes away: aborted requests are always logged.
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(&common::get_request("/hang", ""))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(stream);
    let lines = s.cap.wait_for(6).await;
    settle().await;
    let lines = if lines.len() == 6 {
        s.cap.completed()
    } else {
        lines
    };
    let mut paths: Vec<&str> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/boom",
            "/hang",
            "/missing",
            "/problem-200",
            "/shadowed",
            "/slow"
        ],
        "{}",
        s.cap.text()
    );
    for line in &lines {
        // Lines that were not sampled say nothing of a rate.
        assert!(line.get("sample_rate").is_none(), "{line}");
    }
    let by_path = |p: &str| lines.iter().find(|l| l["path"] == p).unwrap();
    assert_eq!(by_path("/hang")["aborted"], true);
    assert_eq!(by_path("/slow")["slow"], true);
    assert_eq!(by_path("/problem-200")["code"], "NOTE");
    let shadowed = by_path("/shadowed");
    assert_eq!(shadowed["status"], 200);
    assert_eq!(shadowed["shadow_rejected_by"], "rate_limit");
    assert_eq!(shadowed["shadow_policy"], "user");
    assert!(shadowed.get("rejected_by").is_none(), "{shadowed}");
}

#[tokio::test]
async fn metrics_count_every_request_sampled_or_not() {
    let s = start(0.0).await;
    for _ in 0..25 {
        assert_eq!(http_get(s.addr, "/ok", "").await.status, 200);
    }
    settle().await;
    assert!(s.cap.completed().is_empty(), "{}", s.cap.text());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &s.registry).unwrap();
    let count = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains("http_route=\"/ok\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(count.ends_with(" 25"), "{count}");
}

#[tokio::test]
async fn a_rate_of_one_logs_every_line_without_a_rate() {
    let s = start(1.0).await;
    for _ in 0..10 {
        let res = http_get(s.addr, "/decision", "").await;
        assert_eq!(res.text(), "true 1");
    }
    let lines = s.cap.wait_for(10).await;
    settle().await;
    assert_eq!(s.cap.completed().len(), 10);
    assert!(lines.iter().all(|l| l.get("sample_rate").is_none()));
}

#[tokio::test]
async fn concurrent_sampled_requests_get_at_most_one_line_each() {
    let s = start(0.3).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let addr = s.addr;
            tokio::spawn(async move {
                http_get(addr, "/ok", &format!("x-request-id: c-{i}\r\n"))
                    .await
                    .status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    settle().await;
    let lines = s.cap.completed();
    let mut ids: Vec<&str> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), lines.len());
    // Binomial(100, 0.3): sd ~4.6; 5 sd either side.
    assert!((7..=53).contains(&lines.len()), "{}", lines.len());
    assert!(lines.iter().all(|l| l["sample_rate"] == 0.3));
}

#[test]
fn log_sample_rate_is_read_and_checked() {
    for bad in ["1.5", "-0.1", "half", "NaN"] {
        assert!(
            common::child_with_env("env_child", &[("LOG_SAMPLE_RATE", bad)]),
            "{bad:?}"
        );
    }
    for good in ["0", "0.25", "1", "1.0"] {
        assert!(
            common::child_with_env("env_child", &[("LOG_SAMPLE_RATE", good)]),
            "{good:?}"
        );
    }
}

#[test]
#[ignore = "entry point of log_sample_rate_is_read_and_checked, run in a child process"]
fn env_child() {
    let Ok(raw) = std::env::var("LOG_SAMPLE_RATE") else {
        return;
    };
    let valid = raw.parse::<f64>().is_ok_and(|r| (0.0..=1.0).contains(&r));
    match tower_ops::log::RequestLogLayer::from_env() {
        Ok(layer) => {
            assert!(valid, "{raw:?} accepted");
            let debug = format!("{layer:?}");
            let rate: f64 = raw.parse().unwrap();
            assert!(
                debug.contains(&format!("success_sample: {rate:?}")),
                "{debug}"
            );
        }
        Err(err) => {
            assert!(!valid, "{raw:?} refused: {err}");
            let vars: Vec<_> = err.problems().iter().map(|p| p.variable.as_str()).collect();
            assert_eq!(vars, ["LOG_SAMPLE_RATE"], "{err}");
        }
    }
    // The whole stack reports it too.
    assert_eq!(tower_ops::stack::Stack::from_env().is_ok(), valid);
}
