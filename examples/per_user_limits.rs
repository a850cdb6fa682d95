//! Rate limits per user, with the whole stack: a stand-in authentication reads
//! `Authorization: Bearer user-<id>` and inserts a `UserId`, in the stack's auth
//! slot, so the rate limiter sees it. `GET /me` has a `user` policy of 5 requests
//! a minute per user; every request also counts against the per-IP `default`
//! policy (`RATE_LIMIT_MAX_REQUESTS` per `RATE_LIMIT_WINDOW_MS`).
//!
//! ```text
//! cargo run --example per_user_limits
//! curl -i -H 'authorization: Bearer user-42' localhost:3000/me   # ratelimit: "user";r=4;t=12
//! for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code}\n' -H 'authorization: Bearer user-42' localhost:3000/me; done  # ... 429
//! curl -i -H 'authorization: Bearer user-43' localhost:3000/me   # 200: another user
//! curl -i localhost:3000/me                                      # 401, counted per IP
//! ```

use std::io::Write;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tower_ops::paths::PathSet;
use tower_ops::rate_limit::{KeyBy, Policy, Quota, RateLimitLayer};
use tower_ops::route::CaptureRouteLayer;
use tower_ops::shutdown::ShutdownBuilder;
use tower_ops::stack::Stack;

/// Who is calling; the key of the `user` policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct UserId(u64);

/// Stand-in authentication: `Bearer user-<id>` is user `<id>`. It only
/// identifies; requests without valid credentials go on without a `UserId`, so
/// the per-IP limit still counts them, and handlers that need a user say 401.
async fn authenticate(mut request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer user-"))
        .and_then(|id| id.parse().ok())
        .map(UserId);
    if let Some(user) = user {
        request.extensions_mut().insert(user);
    }
    next.run(request).await
}

async fn me(user: Option<Extension<UserId>>) -> Response {
    match user {
        Some(Extension(UserId(id))) => format!("user {id}\n").into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _log = tower_ops::log::init_from_env()?;
    // The per-IP default from the environment, then 5 a minute per user on /me.
    let limits = RateLimitLayer::from_env()?
        .skip_paths(PathSet::probes())
        .policy(
            Policy::new("user", Quota::per_minute(5))
                .paths(["/me"])
                .key(KeyBy::extension::<UserId>()),
        );
    let stack = Stack::from_env()?
        .rate_limit(Some(limits))
        .auth(from_fn(authenticate))
        .for_axum();
    let shutdown = ShutdownBuilder::from_env()?
        .readiness(stack.health_registry().readiness().clone())
        .build();
    let app = Router::new()
        .route("/me", get(me))
        .merge(stack.routes())
        .layer(CaptureRouteLayer::new())
        .layer(stack);

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    // Ready as serving starts; draining on SIGTERM.
    tower_ops::serve::serve(listener, app)
        .with_shutdown(shutdown)
        .await?;
    Ok(())
}
