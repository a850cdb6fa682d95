//! gRPC clients get gRPC statuses from every layer that answers by itself, over
//! h2c on a real socket: a tonic client calls through `tower_ops::serve`, the
//! error, timeout and body limit layers, and a backend that serves
//! `demo.Greeter` plus a few misbehaving methods. HTTP clients of the same stack
//! still get problem+json.

#[path = "support/greeter.rs"]
mod greeter;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use greeter::{Greeter, SAY_HELLO};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_ops::body_limit::BodyLimitLayer;
use tower_ops::error::ErrorLayer;
use tower_ops::serve::serve;
use tower_ops::timeout::TimeoutLayer;

const PATIENCE: Duration = Duration::from_secs(10);

/// `demo.Greeter/SayHello`, and methods that stall, panic or fail the way a
/// handler outside tonic's control would.
async fn backend(
    request: Request<tonic::body::Body>,
) -> Result<Response<tonic::body::Body>, Infallible> {
    let plain = |status: StatusCode, text: &'static str| {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .body(tonic::body::Body::new(Full::new(Bytes::from_static(
                text.as_bytes(),
            ))))
            .unwrap()
    };
    match request.uri().path() {
        "/demo.Greeter/Stall" => {
            tokio::time::sleep(PATIENCE * 2).await;
            Ok(plain(StatusCode::OK, "too late"))
        }
        "/demo.Greeter/Panic" => panic!("boom: secret=hunter2"),
        "/demo.Greeter/Busy" => Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "try later")),
        "/demo.Greeter/Broken" => Ok(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "db refused password=hunter2",
        )),
        _ => Greeter.ready().await?.call(request).await,
    }
}

/// The backend behind the error, timeout (200 ms) and body limit (64 bytes)
/// layers, served on a loopback port.
async fn start() -> SocketAddr {
    let service = ServiceBuilder::new()
        .map_request(|r: Request<Incoming>| r.map(tonic::body::Body::new))
        .layer(ErrorLayer::new())
        .layer(TimeoutLayer::new(Duration::from_millis(200)))
        .layer(BodyLimitLayer::new(64))
        .map_request(|r: Request<_>| r.map(tonic::body::Body::new))
        .service_fn(backend);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, service).into_future());
    addr
}

async fn client(addr: SocketAddr) -> tonic::client::Grpc<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(PATIENCE)
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

/// Calls `path` and returns the status it failed with.
async fn status(addr: SocketAddr, path: &str, name: &str) -> tonic::Status {
    let mut grpc = client(addr).await;
    greeter::call(&mut grpc, path, name, PATIENCE)
        .await
        .expect_err("the call is rejected")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_still_serves_grpc_calls() {
    let addr = start().await;
    let mut grpc = client(addr).await;
    let reply = greeter::call(&mut grpc, SAY_HELLO, "ok-1", PATIENCE)
        .await
        .unwrap();
    assert_eq!(reply.get_ref().message, "hello ok-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_deadline_exceeded() {
    let addr = start().await;
    let status = status(addr, "/demo.Greeter/Stall", "t-1").await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.message(), "request did not complete within 200 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_over_the_limit_is_resource_exhausted() {
    let addr = start().await;
    // tonic streams its messages without a Content-Length: the limit is hit
    // while the handler reads.
    let status = status(addr, SAY_HELLO, &"x".repeat(200)).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "request body exceeds the limit of 64 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_resource_exhausted_at_once() {
    let addr = start().await;
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let request = Request::post(format!("http://{addr}{SAY_HELLO}"))
        .header("content-type", "application/grpc+proto")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(vec![0; 1000])))
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, h2.request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200, "trailers-only answers are HTTP 200");
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/grpc");
    assert_eq!(headers["grpc-status"], "8");
    assert_eq!(
        headers["grpc-message"],
        "request body of 1000 bytes exceeds the limit of 64 bytes"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty(), "{body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_internal_and_tells_nothing() {
    let addr = start().await;
    let status = status(addr, "/demo.Greeter/Panic", "p-1").await;
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(status.message(), "Internal Server Error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_500_is_internal_and_a_503_unavailable() {
    let addr = start().await;
    let broken = status(addr, "/demo.Greeter/Broken", "e-1").await;
    assert_eq!(broken.code(), Code::Internal, "{broken:?}");
    assert!(!broken.message().contains("hunter2"), "{broken:?}");
    let busy = status(addr, "/demo.Greeter/Busy", "e-2").await;
    assert_eq!(busy.code(), Code::Unavailable, "{busy:?}");
    // A server error's text stays in the log, as for HTTP clients.
    assert_eq!(busy.message(), "Service Unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_clients_of_the_same_stack_get_problem_json() {
    let addr = start().await;
    let h1 = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (path, status, code) in [
        ("/demo.Greeter/Stall", 504, "TIMEOUT"),
        ("/demo.Greeter/Panic", 500, "INTERNAL"),
        ("/demo.Greeter/Busy", 503, "SERVICE_UNAVAILABLE"),
    ] {
        let request = Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let response = tokio::time::timeout(PATIENCE, h1.request(request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["code"], code, "{path}: {problem}");
    }
}
