//! Request timeouts: a handler that takes too long is dropped and the client gets
//! a 504 `TIMEOUT` problem (`REQUEST_TIMEOUT_MS` sets the default, 30 s); one
//! route gets a longer budget of its own.
//!
//! ```text
//! cargo run --example timeout
//! curl -i 'localhost:3000/slow?ms=200'       # 200 within the 1 s budget
//! curl -i 'localhost:3000/slow?ms=3000'      # 504 application/problem+json
//! curl -i 'localhost:3000/report?ms=3000'    # 200: this route may take 5 s
//! ```

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use serde::Deserialize;
use tower_ops::timeout::TimeoutLayer;

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
    let timeouts =
        TimeoutLayer::new(Duration::from_secs(1)).route("/report", Duration::from_secs(5));
    let app = Router::new()
        .route("/slow", get(sleep))
        .route("/report", get(sleep))
        .layer(timeouts);

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
