//! Error reports for a tracker: every 5xx and every panic the stack answers is
//! handed to a hook of yours, off the request path, with the problem, the
//! redacted request, the error chain and the panic location. This stand-in
//! reporter writes one JSON line per report to stderr; a real one would send it
//! to Sentry, Honeybadger or your own collector.
//!
//! ```text
//! cargo run --example error_reporting
//! curl -i localhost:3000/users/7                 # 200, no report
//! curl -i localhost:3000/users/0                 # 404, no report
//! curl -i 'localhost:3000/fail?token=s3cret'     # 500, one report (token redacted)
//! curl -i localhost:3000/panic                   # 500, one report with the panic location
//! ```

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use axum::{Router, routing::get};
use serde_json::{Value, json};
use tower_ops::error::{ErrorReport, ErrorReporter, Path, Problem};
use tower_ops::route::CaptureRouteLayer;
use tower_ops::shutdown::ShutdownBuilder;
use tower_ops::stack::Stack;

/// Stands in for a tracker's client: one JSON object per report, on stderr.
fn send_to_tracker(report: &ErrorReport) {
    let problem = report.problem();
    let head = report.request();
    let headers: serde_json::Map<String, Value> = head
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), Value::String(value))
        })
        .collect();
    let panic = report.panic().map(|p| {
        json!({
            "message": p.message(),
            "location": p.location().map(ToString::to_string),
        })
    });
    let event = json!({
        "status": problem.status().as_u16(),
        "code": problem.get_code().as_str(),
        "rejected_by": problem.get_rejected_by(),
        "request_id": report.request_id().map(|id| id.as_str()),
        "trace_id": problem.get_trace_id(),
        "timestamp_ms": problem.timestamp().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()),
        "method": head.method().as_str(),
        "uri": head.uri(),
        "route": report.route(),
        "client_ip": head.client_ip().map(|ip| ip.to_string()),
        "headers": headers,
        "error_chain": report.error_chain(),
        "panic": panic,
    });
    let line = format!("error report {event}\n");
    // One write per report, so lines never interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

async fn user(Path(id): Path<u64>) -> Result<String, Problem> {
    match id {
        0 => Err(Problem::not_found().detail("no user 0")),
        id => Ok(format!("user {id}\n")),
    }
}

async fn fail() -> Result<&'static str, Problem> {
    let cause = std::io::Error::other("connect to postgres://app:hunter2@db/app refused");
    Err(Problem::internal(cause))
}

async fn panics() -> &'static str {
    panic!("invariant broken for token=abc123")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The logging set-up's panic hook also notes where each panic happened.
    let _log = tower_ops::log::init_from_env()?;
    let reporter = ErrorReporter::new(|report: ErrorReport| send_to_tracker(&report));
    let stack = Stack::from_env()?
        .error_reporter(reporter.clone())
        .for_axum();
    let shutdown = ShutdownBuilder::from_env()?
        .readiness(stack.health_registry().readiness().clone())
        .build();
    // Reports still queued at SIGTERM are delivered before the process exits.
    shutdown.hook(
        "error reports",
        Duration::from_secs(5),
        move || async move {
            let flushed =
                tokio::task::spawn_blocking(move || reporter.flush(Duration::from_secs(5)));
            let _ = flushed.await;
        },
    );
    let app = Router::new()
        .route("/users/{id}", get(user))
        .route("/fail", get(fail))
        .route("/panic", get(panics))
        .merge(stack.routes())
        .layer(CaptureRouteLayer::new())
        .layer(stack);

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    tower_ops::serve::serve(listener, app)
        .with_shutdown(shutdown)
        .await?;
    Ok(())
}
