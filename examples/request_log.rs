//! One structured line per request (`request completed`), with the route
//! template, status, duration, request id and client IP at the root of the JSON
//! line; the query string is redacted; slow requests are flagged and logged at
//! warn. Logs go to stdout: JSON unless stdout is a terminal (`LOG_FORMAT`,
//! `LOG_LEVEL`, `RUST_LOG`, `SLOW_REQUEST_MS`).
//!
//! ```text
//! LOG_FORMAT=json cargo run --example request_log
//! curl -H 'x-request-id: log-1' 'localhost:3000/users/42?token=s3cret'  # route /users/{id}, token=[REDACTED]
//! curl 'localhost:3000/slow?ms=300'                                     # "slow":true, level WARN
//! curl localhost:3000/missing                                           # status 404, level WARN
//! ```

use std::io::Write;
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::log::{LogFields, RequestLogLayer};
use tower_ops::request_id::RequestIdLayer;
use tower_ops::route::CaptureRouteLayer;

async fn user(Path(id): Path<u64>, Extension(fields): Extension<LogFields>) -> String {
    // A field of our own on this request's line, and an event that carries
    // request_id at its root too.
    fields.insert("user_id", id);
    tracing::info!(id, "looking the user up");
    format!("user {id}\n")
}

#[derive(Deserialize)]
struct Sleep {
    ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Keep the guard: dropping it flushes and stops the non-blocking writer.
    let _log = tower_ops::log::init_from_env()?;
    let stack = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(ClientIpLayer::from_env()?)
        .layer(RequestLogLayer::from_env()?.slow_after(Duration::from_millis(250)));
    let app = Router::new()
        .route("/users/{id}", get(user))
        .route(
            "/slow",
            get(|Query(q): Query<Sleep>| async move {
                tokio::time::sleep(Duration::from_millis(q.ms.min(10_000))).await;
                "done\n"
            }),
        )
        // Inside the router: gives the log line its route template.
        .layer(CaptureRouteLayer::new())
        .layer(stack);

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    // SIGINT or SIGTERM: stop accepting, finish what is in flight, return.
    let shutdown = tower_ops::shutdown::ShutdownBuilder::from_env()?.build();
    tower_ops::serve::serve(listener, app)
        .with_shutdown(shutdown)
        .await?;
    Ok(())
}
