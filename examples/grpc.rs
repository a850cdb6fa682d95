//! A tonic gRPC server with request ids, client IPs, request logs, RED metrics
//! and rate limiting (feature `tonic`). Calls are logged and measured with their
//! method path as the route (`/demo.Greeter/SayHello`). A call over the quota
//! gets the gRPC status `RESOURCE_EXHAUSTED` (code 8, trailers-only, with
//! `grpc-message` and the `RateLimit` and `Retry-After` headers), not an HTTP
//! 429 that gRPC clients would read as `UNAVAILABLE` and retry at once; it is
//! logged at WARN. Here: 3 calls a minute per client IP. The message types are
//! written by hand with `prost`: no `.proto`, no build script.
//!
//! ```text
//! cargo run --features tonic --example grpc
//! cargo run --features tonic --example grpc -- --client http://127.0.0.1:3000 5   # OK x3, then code 8
//! grpcurl -plaintext -proto greeter.proto -d '{"name":"ada"}' 127.0.0.1:3000 demo.Greeter/SayHello
//! ```
//!
//! `greeter.proto`, for grpcurl: `syntax = "proto3"; package demo;
//! service Greeter { rpc SayHello(HelloRequest) returns (HelloReply); }
//! message HelloRequest { string name = 1; } message HelloReply { string message = 1; }`
//!
//! The server writes its metrics (OpenMetrics text) to stderr when it stops.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use tower::ServiceBuilder;
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::log::RequestLogLayer;
use tower_ops::metrics::{MetricsExporter, MetricsLayer};
use tower_ops::rate_limit::{Policy, Quota, RateLimitLayer};
use tower_ops::request_id::{self, RequestIdLayer};
use tower_ops::shutdown::ShutdownBuilder;

/// `message HelloRequest { string name = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

/// `message HelloReply { string message = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

const SAY_HELLO: &str = "/demo.Greeter/SayHello";

/// The handler of `rpc SayHello(HelloRequest) returns (HelloReply)`.
struct SayHello;

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = std::future::Ready<Result<Response<HelloReply>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let id = request_id::current()
            .map(|id| id.to_string())
            .unwrap_or_default();
        tracing::info!(name = %request.get_ref().name, "saying hello");
        let message = format!("hello {} (request {id})", request.into_inner().name);
        std::future::ready(Ok(Response::new(HelloReply { message })))
    }
}

/// `service demo.Greeter`: what `tonic-build` would generate, by hand.
#[derive(Clone)]
struct Greeter;

impl NamedService for Greeter {
    const NAME: &'static str = "demo.Greeter";
}

impl tower::Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            if request.uri().path() != SAY_HELLO {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            // The log and metrics layers label the call with its method path.
            Ok(Grpc::new(ProstCodec::default())
                .unary(SayHello, request)
                .await)
        })
    }
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let _log = tower_ops::log::init_from_env()?;
    let (metrics, registry) = MetricsLayer::builder().build();
    let exporter = MetricsExporter::new(registry);
    let limits =
        RateLimitLayer::new().policy(Policy::new("calls", Quota::per(3, Duration::from_secs(60))));
    let stack = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        // The peer comes from tonic's `TcpConnectInfo` (feature `tonic`): each
        // client has its own quota.
        .layer(ClientIpLayer::from_env()?)
        .layer(RequestLogLayer::from_env()?)
        .layer(metrics)
        // gRPC calls over the quota get grpc-status 8 (`RateLimitLayer::grpc`, on by default).
        .layer(limits)
        .into_inner();

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    // SIGTERM or ctrl-c: stop accepting, let calls finish (SHUTDOWN_TIMEOUT_MS at most).
    let shutdown = ShutdownBuilder::from_env()?.build();
    let server = tonic::transport::Server::builder()
        .layer(stack)
        .add_service(Greeter)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown.stop_accepting());
    if let Some(Err(error)) = shutdown.run(server).await {
        return Err(error.into());
    }
    let metrics = exporter.respond(&http::Method::GET, &http::HeaderMap::new());
    let text = metrics.into_body().collect().await?.to_bytes();
    eprintln!("{}", String::from_utf8_lossy(&text));
    Ok(())
}

/// `--client ADDR N`: makes N calls and prints the status of each.
async fn client(addr: String, calls: u32) -> Result<(), Box<dyn std::error::Error>> {
    let channel = tonic::transport::Endpoint::from_shared(addr)?
        .connect()
        .await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    for i in 1..=calls {
        grpc.ready().await?;
        let request = Request::new(HelloRequest {
            name: format!("caller {i}"),
        });
        let path = PathAndQuery::from_static(SAY_HELLO);
        let reply: Result<Response<HelloReply>, Status> =
            grpc.unary(request, path, ProstCodec::default()).await;
        match reply {
            Ok(reply) => println!("call {i}: OK {}", reply.get_ref().message),
            Err(status) => {
                let code = status.code();
                println!(
                    "call {i}: {code:?} (code {}): {}",
                    code as i32,
                    status.message()
                );
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--client") => {
            let addr = args
                .get(1)
                .cloned()
                .unwrap_or_else(|| "http://127.0.0.1:3000".into());
            let calls = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5);
            client(addr, calls).await
        }
        _ => serve().await,
    }
}
