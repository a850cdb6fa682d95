//! Health checks over your own resources: a database check written as a
//! closure over the application's pool, a non-critical TCP check, memory and
//! disk thresholds, and the three probe routes.
//!
//! ```text
//! cargo run --example health
//! curl -i localhost:3000/health
//! ```
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::{Router, routing::get};
use tower_ops::health::{HealthRegistryBuilder, TcpCheck, check_fn};

/// Stands in for your own pool (sqlx, deadpool, bb8...).
#[derive(Clone, Default)]
struct Pool {
    broken: Arc<AtomicBool>,
}

impl Pool {
    async fn ping(&self) -> Result<(), std::io::Error> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("connection reset by peer"));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let pool = Pool::default();

    let db = {
        let pool = pool.clone();
        check_fn("db", move || {
            let pool = pool.clone();
            async move { pool.ping().await }
        })
        .timeout(Duration::from_millis(500))
        .failure_threshold(2)
    };
    let mut health = HealthRegistryBuilder::from_env()?
        .check(db)
        .check(TcpCheck::new("search", "127.0.0.1:9200").critical(false));
    #[cfg(target_os = "linux")]
    {
        use tower_ops::health::{DiskCheck, MemoryCheck};
        health = health
            .check(MemoryCheck::new().min_available_ratio(0.05))
            .check(DiskCheck::new("/").min_free_ratio(0.05));
    }
    let health = health.build();

    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/break-db",
            get(move || async move {
                pool.broken.store(true, Ordering::Relaxed);
                "the fake database now fails its pings"
            }),
        )
        .merge(health.router());

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    // Readiness answers from the checks once serving starts, and turns to
    // draining on SIGTERM.
    let shutdown = tower_ops::shutdown::ShutdownBuilder::from_env()?
        .readiness(health.readiness().clone())
        .build();
    tower_ops::serve::serve(listener, app)
        .with_shutdown(shutdown)
        .await?;
    Ok(())
}
