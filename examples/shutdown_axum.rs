//! Graceful shutdown with axum: on SIGTERM or SIGINT readiness turns 503, the
//! server keeps serving for the drain delay, then drains within the timeout and
//! runs the clean-up hooks.
//!
//! ```text
//! SHUTDOWN_DRAIN_DELAY_MS=5000 cargo run --example shutdown_axum
//! curl 'localhost:3000/slow?ms=8000' & kill -TERM <pid>
//! ```
use std::time::Duration;

use axum::{Router, extract::Query, routing::get};
use tower_ops::health::HealthRegistryBuilder;
use tower_ops::shutdown::ShutdownBuilder;

#[derive(serde::Deserialize)]
struct Slow {
    ms: u64,
}

async fn slow(Query(Slow { ms }): Query<Slow>) -> &'static str {
    tracing::info!(ms, "slow request started");
    tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
    "done"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let health = HealthRegistryBuilder::from_env()?.build();
    let shutdown = ShutdownBuilder::from_env()?
        .readiness(health.readiness().clone())
        .build();
    shutdown.hook("flush telemetry", Duration::from_secs(2), || async {
        tracing::info!("telemetry flushed");
    });

    let app = Router::new()
        .route("/slow", get(slow))
        .merge(health.router())
        .layer(shutdown.in_flight_layer());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    tower_ops::serve::serve(listener, app)
        .config(tower_ops::serve::ServeConfig::from_env()?)
        .with_shutdown(shutdown)
        .await?;
    Ok(())
}
