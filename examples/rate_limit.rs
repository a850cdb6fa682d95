//! Rate limiting per client IP (GCRA): every response carries
//! `RateLimit-Policy` and `RateLimit`; over the quota the handler is not called
//! and the client gets a 429 `RATE_LIMITED` problem with `Retry-After`. Here 5
//! requests a minute, and 2 a minute for `POST /login`, listed first because it is
//! the stricter one.
//!
//! ```text
//! cargo run --example rate_limit
//! curl -i localhost:3000/                    # ratelimit: "default";r=4;t=12
//! for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code}\n' localhost:3000/; done  # ... 429
//! curl -i -X POST localhost:3000/login       # "login" policy: 2 a minute
//! curl -i localhost:3000/health/live         # never limited
//! ```

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use http::Method;
use tower_ops::paths::PathSet;
use tower_ops::rate_limit::{Policy, Quota, RateLimitLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let minute = Duration::from_secs(60);
    let limits = RateLimitLayer::new()
        .policy(
            Policy::new("login", Quota::per(2, minute))
                .paths(["/login"])
                .methods([Method::POST]),
        )
        .policy(Policy::new("default", Quota::per(5, minute)))
        .skip_paths(PathSet::probes());
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/login", post(|| async { "welcome\n" }))
        .route("/health/live", get(|| async { "ok\n" }))
        .layer(limits);

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    // Keys come from the peer address (put ClientIpLayer outside behind proxies).
    // SIGINT or SIGTERM: stop accepting, finish what is in flight, return.
    let shutdown = tower_ops::shutdown::ShutdownBuilder::from_env()?.build();
    tower_ops::serve::serve(listener, app)
        .with_shutdown(shutdown)
        .await?;
    Ok(())
}
