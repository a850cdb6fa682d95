//! Request body limits: a declared `Content-Length` over the limit is refused up
//! front, a streamed (chunked) body is counted as it arrives; both get the same
//! 413 `PAYLOAD_TOO_LARGE` problem. `BODY_LIMIT_BYTES` sets the default (1 MiB);
//! here 1 KiB, and 1 MiB on `/upload`.
//!
//! ```text
//! cargo run --example body_limit
//! curl -i -d '{"hello":"world"}' localhost:3000/echo                   # 200, echoed
//! head -c 2000 /dev/zero | curl -i --data-binary @- localhost:3000/echo # 413
//! head -c 2000 /dev/zero | curl -i -H 'transfer-encoding: chunked' --data-binary @- localhost:3000/echo
//! head -c 2000 /dev/zero | curl -i --data-binary @- localhost:3000/upload  # 200: 1 MiB here
//! ```

use std::io::Write;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use tower_ops::body_limit::BodyLimitLayer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limits = BodyLimitLayer::new(1024)
        .route("/upload", 1024 * 1024)
        // The inner service keeps axum's own body type.
        .for_axum();
    let app = Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/upload",
            post(|body: Bytes| async move { format!("received {} bytes\n", body.len()) }),
        )
        .layer(limits);

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
