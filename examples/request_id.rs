//! Correlation ids: a valid incoming `x-request-id` is kept, anything else is
//! replaced by a fresh UUIDv7; the id is echoed on every response (404s
//! included) and handlers read it with `request_id::current()`, no plumbing.
//!
//! ```text
//! cargo run --example request_id
//! curl -i localhost:3000/                                  # a new UUIDv7 id
//! curl -i -H 'x-request-id: order-42' localhost:3000/      # kept and echoed
//! curl -i -H 'x-request-id: bad id"!' localhost:3000/      # replaced, never echoed
//! curl -i localhost:3000/missing                           # the 404 carries it too
//! ```

use std::io::Write;

use axum::Router;
use axum::routing::get;
use tower_ops::request_id::{self, RequestIdLayer};

async fn hello() -> String {
    // The id of the request being served, wherever this code runs in its task.
    let id = request_id::current().map(|id| id.to_string());
    format!("your request id is {}\n", id.unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new()
        .route("/", get(hello))
        // Outermost, so every response below it carries the id.
        .layer(RequestIdLayer::new());

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
