//! The tower-ops stack on plain hyper 1 (no axum): a `tower::ServiceBuilder` in
//! the canonical order around a `service_fn`, a hand-written `/metrics` route,
//! and a graceful accept loop. Configured from the environment
//! (`REQUEST_TIMEOUT_MS`, `RATE_LIMIT_MAX_REQUESTS`, `BODY_LIMIT_BYTES`, ...).
//!
//! ```text
//! cargo run --example hyper_stack
//! curl -i -H 'x-request-id: hyper-1' localhost:3000/      # x-request-id, ratelimit headers
//! curl -i -d '{"a":1}' localhost:3000/echo                # echoed; over BODY_LIMIT_BYTES: 413
//! curl -i 'localhost:3000/slow?ms=40000'                  # 504 after REQUEST_TIMEOUT_MS
//! curl -s localhost:3000/metrics | grep http_server_request_duration_seconds_count
//! ```

use std::convert::Infallible;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ops::body::ResponseBody;
use tower_ops::body_limit::{BodyLimitLayer, Limited};
use tower_ops::error::ErrorLayer;
use tower_ops::log::RequestLogLayer;
use tower_ops::metrics::{MetricsExporter, MetricsLayer};
use tower_ops::paths::PathSet;
use tower_ops::rate_limit::RateLimitLayer;
use tower_ops::request_id::RequestIdLayer;
use tower_ops::shutdown::ShutdownBuilder;
use tower_ops::timeout::TimeoutLayer;

/// One body type for every answer, the exporter's included.
type Body = ResponseBody<Empty<Bytes>>;

async fn route(
    req: Request<Limited<hyper::body::Incoming>>,
    exporter: MetricsExporter,
) -> Result<Response<Body>, Infallible> {
    let text = |status: StatusCode, text: String| {
        let mut response = Response::new(Body::full(text));
        *response.status_mut() = status;
        Ok(response)
    };
    match req.uri().path() {
        "/metrics" => Ok(exporter.respond(req.method(), req.headers())),
        "/" => text(StatusCode::OK, "hello from hyper\n".into()),
        "/echo" => match req.into_body().collect().await {
            Ok(body) => Ok(Response::new(Body::full(body.to_bytes()))),
            // Over the limit: the body limit layer answers 413 in our place.
            Err(error) => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
        },
        "/slow" => {
            let ms = req.uri().query().and_then(|q| q.strip_prefix("ms="));
            let ms = ms.and_then(|ms| ms.parse::<u64>().ok()).unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
            text(StatusCode::OK, format!("slept {ms} ms\n"))
        }
        _ => text(StatusCode::NOT_FOUND, "no such route\n".into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _log = tower_ops::log::init_from_env()?;
    let (metrics, registry) = MetricsLayer::builder()
        .skip_paths(PathSet::probes())
        .build();
    let exporter = MetricsExporter::from_env(registry)?;
    // The canonical order, outermost first (client IP, security headers left out).
    let service = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(RequestLogLayer::from_env()?)
        .layer(metrics)
        .layer(ErrorLayer::from_env()?)
        .layer(TimeoutLayer::from_env()?)
        .layer(RateLimitLayer::from_env()?.skip_paths(PathSet::probes()))
        .layer(BodyLimitLayer::from_env()?)
        .service(service_fn(move |req| route(req, exporter.clone())));

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;

    let shutdown = ShutdownBuilder::from_env()?.build();
    let stop = shutdown.stop_accepting();
    let server = async move {
        let graceful = GracefulShutdown::new();
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, peer)) = accepted else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let service = service.clone();
                    // The rate limiter keys on the peer address, as an extension.
                    let hyper_service = hyper::service::service_fn(move |mut req: Request<_>| {
                        req.extensions_mut().insert(peer);
                        service.clone().oneshot(req)
                    });
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), hyper_service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                () = &mut stop => break,
            }
        }
        drop(listener);
        graceful.shutdown().await;
    };
    shutdown.run(server).await;
    Ok(())
}
