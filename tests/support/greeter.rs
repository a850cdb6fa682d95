//! `demo.Greeter`, the service of `examples/grpc.rs`, for tests: its messages,
//! a client call and (for in-process servers) the service itself.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// `message HelloRequest { string name = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `message HelloReply { string message = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

pub const SAY_HELLO: &str = "/demo.Greeter/SayHello";

/// Calls `path` with `name` as both the message and the request id, and waits
/// for the answer at most `patience`.
pub async fn call(
    grpc: &mut tonic::client::Grpc<Channel>,
    path: &str,
    name: &str,
    patience: Duration,
) -> Result<Response<HelloReply>, Status> {
    grpc.ready().await.unwrap();
    let mut request = Request::new(HelloRequest { name: name.into() });
    request
        .metadata_mut()
        .insert("x-request-id", name.parse().unwrap());
    let path: PathAndQuery = path.parse().unwrap();
    tokio::time::timeout(patience, grpc.unary(request, path, ProstCodec::default()))
        .await
        .expect("an answer in time")
}

struct SayHello;

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = std::future::Ready<Result<Response<HelloReply>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let message = format!("hello {}", request.into_inner().name);
        std::future::ready(Ok(Response::new(HelloReply { message })))
    }
}

/// `service demo.Greeter { rpc SayHello(HelloRequest) returns (HelloReply); }`,
/// as generated code would serve it: other methods are `UNIMPLEMENTED`.
#[derive(Clone)]
pub struct Greeter;

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
            Ok(Grpc::new(ProstCodec::default())
                .unary(SayHello, request)
                .await)
        })
    }
}
