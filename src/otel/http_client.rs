//! The OTLP/HTTP client: hyper on the export runtime, plain HTTP only.
//!
//! `opentelemetry-http`'s own hyper client (feature `hyper`) awaits the request
//! on whatever polls it. The SDK's batch processor polls exports from its own
//! thread with a plain executor, where hyper and tokio's timers have no reactor,
//! so that client would fail every export. This one hands the exchange to the
//! runtime `otel::init` keeps for export and only carries the answer back;
//! everything else (the `HttpClient` trait, errors, propagation) is
//! `opentelemetry-http`'s.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError};
use tokio::runtime::Handle;

/// Largest collector response read (they are tiny).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct HyperClient {
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: Handle,
    timeout: Duration,
}

impl HyperClient {
    pub(crate) fn new(runtime: Handle, timeout: Duration) -> Self {
        let _enter = runtime.enter();
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            client,
            runtime,
            timeout,
        }
    }
}

impl HttpClient for HyperClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.client.clone();
        let timeout = self.timeout;
        // The caller polls with a plain executor: the work runs on the export
        // runtime and the join handle carries the answer back.
        let task = self.runtime.spawn(async move {
            let request = request.map(Full::new);
            let exchange = async {
                let response = client.request(request).await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(HttpError::from("OTLP/HTTP export timed out")),
            }
        });
        Box::pin(async move {
            match task.await {
                Ok(result) => result,
                Err(e) => Err(HttpError::from(format!(
                    "OTLP/HTTP export task failed: {e}"
                ))),
            }
        })
    }
}
