//! One error format everywhere: handlers return `Problem`s, the crate's `Json`
//! and `Path` extractors reject bad input with problems (with a JSON pointer to
//! the field), and `ErrorLayer` turns panics, service errors and axum's plain
//! 404/405 into RFC 9457 `application/problem+json` (`ERROR_FORMAT=wrapped` for
//! `{"success":false,"error":{...}}`). 5xx details stay in the log.
//!
//! ```text
//! cargo run --example errors
//! curl -i localhost:3000/users/abc                                             # 400, field id
//! curl -i -H 'content-type: application/json' -d '{"email":"x","age":300}' localhost:3000/users  # 422, pointer /age
//! curl -i -H 'content-type: application/json' -d '{"email":"x","age":30}' localhost:3000/users   # 422, pointer /email
//! curl -i localhost:3000/panic                                                 # 500, no panic message
//! ```

use std::io::Write;

use axum::Router;
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use tower_ops::error::{ErrorLayer, FieldError, Json, Path, Problem};

#[derive(Deserialize)]
struct NewUser {
    email: String,
    age: u8,
}

async fn create(Json(user): Json<NewUser>) -> Result<(StatusCode, String), Problem> {
    if !user.email.contains('@') {
        return Err(Problem::validation([FieldError::pointer(
            "/email",
            "must be an email address",
        )]));
    }
    Ok((
        StatusCode::CREATED,
        format!("created {}, {} years old\n", user.email, user.age),
    ))
}

async fn user(Path(id): Path<u64>) -> Result<String, Problem> {
    match id {
        1 => Ok("user 1\n".to_owned()),
        _ => Err(Problem::not_found().detail(format!("no user {id}"))),
    }
}

async fn panics() -> &'static str {
    panic!("invariant broken: token=abc123")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new()
        .route("/users", post(create))
        .route("/users/{id}", get(user))
        .route("/panic", get(panics))
        .layer(ErrorLayer::from_env()?);

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
