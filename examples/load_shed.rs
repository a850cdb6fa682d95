//! Load shedding: at most `CONCURRENCY_LIMIT` requests in flight (4 here unless
//! the variable says otherwise; `adaptive` follows the latency); the ones above
//! get 503 `OVERLOADED` with `Retry-After: 1` at once, while the probes keep
//! answering and the gauge `http_server_concurrency_limit` shows the limit.
//!
//! ```text
//! cargo run --example load_shed
//! for i in $(seq 8); do curl -s -o /dev/null -w '%{http_code}\n' 'localhost:3000/slow?ms=2000' & done; wait
//! # four 200s, four 503s
//! curl -i localhost:3000/health/live        # 200 while the slow requests run
//! curl -s localhost:3000/metrics | grep concurrency_limit
//! CONCURRENCY_LIMIT=adaptive cargo run --example load_shed
//! ```

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use serde::Deserialize;
use tower_ops::error::ErrorLayer;
use tower_ops::load_shed::ConcurrencyLimitLayer;
use tower_ops::metrics::MetricsExporter;

#[derive(Deserialize)]
struct Sleep {
    ms: u64,
}

async fn sleep(Query(q): Query<Sleep>) -> String {
    tokio::time::sleep(Duration::from_millis(q.ms.min(60_000))).await;
    format!("slept {} ms\n", q.ms)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limit = match std::env::var("CONCURRENCY_LIMIT") {
        Ok(_) => ConcurrencyLimitLayer::from_env()?,
        Err(_) => ConcurrencyLimitLayer::fixed(4),
    };
    let mut registry = prometheus_client::registry::Registry::default();
    limit.register(&mut registry);
    let exporter = MetricsExporter::new(registry);

    let app = Router::new()
        .route("/slow", get(sleep))
        .route("/health/live", get(|| async { r#"{"status":"alive"}"# }))
        .route_service("/metrics", exporter)
        // Inside the error layer, as in the canonical order.
        .layer(limit)
        .layer(ErrorLayer::new());

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let shutdown = tower_ops::shutdown::ShutdownBuilder::from_env()?.build();
    tower_ops::serve::serve(listener, app)
        .with_shutdown(shutdown)
        .await?;
    Ok(())
}
