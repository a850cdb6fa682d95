//! Limits request bodies, answering 413 `PAYLOAD_TOO_LARGE` with a [`Problem`].
//!
//! [`BodyLimitLayer`] checks a body twice:
//!
//! - **Up front**, from `Content-Length`: a declared length over the limit is
//!   answered with 413 without calling the inner service. A `Content-Length` that
//!   is not a plain decimal number of bytes (`abc`, `-1`, `+5`, a value past
//!   `u64::MAX`), or that carries different values (two headers, or a comma list
//!   such as `1, 2`) is answered with 400 `BAD_REQUEST`. Repeated identical values
//!   are accepted, as RFC 9110 allows.
//! - **As it streams**, for bodies without a length (HTTP/1.1 chunked, HTTP/2):
//!   the inner service gets a [`Limited`] body that never passes on more than the
//!   limit; the frame that would cross it becomes a [`LengthLimitError`]. The
//!   layer remembers that the limit was hit and replaces whatever the handler
//!   answered (axum's own rejection, a 500, or a 200 built from
//!   `unwrap_or_default()`) with the 413 Problem. So a client gets the same 413
//!   whether the handler used axum's `Json`, `Bytes` or `String` extractors or
//!   collected the body with `http_body_util`.
//!
//! A body of exactly the limit passes; requests without a body (most `GET` and
//! `HEAD`) are untouched. Every rejection carries the [`Problem`] in its response
//! extensions with `rejected_by` = `"body_limit"`, its `detail` states the limit,
//! and the request id is taken from the request's [`RequestId`] extension.
//!
//! Over a real socket, hyper's HTTP/1 parser sees `Content-Length` first: it
//! answers malformed, overflowing or conflicting values with its own bare 400
//! (and `u64::MAX` with a 431) and closes the connection before any service
//! runs; a declared length it accepts but this layer finds too large gets the
//! 413 Problem. The 400 Problem of this layer is for what reaches it through
//! other servers, proxies, tests and `oneshot`.
//!
//! # Where to put it
//!
//! By default the inner service sees `Request<Limited<B>>` and the layer returns
//! `Response<ResponseBody<_>>`, which works with any tower service. axum's
//! `Router` and `Route` accept any body whose error converts into a boxed error,
//! so this works both inside a router (`Router::layer`) and around one
//! (`ServiceBuilder`). With axum, prefer [`BodyLimitLayer::for_axum`]: the inner
//! service then sees `axum::body::Body` and responses pass through as they are,
//! which spares axum a boxing of every request and response body.
//! The body is never read after the handler answered: a handler that hands the
//! body to a background task and answers first is not corrected.
//!
//! # Per-route limits
//!
//! [`BodyLimitLayer::route`] sets another limit for a path: an exact path
//! (`/upload`) or a prefix ending in `/*` (`/files/*`). Matching is byte for byte
//! on the request path, like axum's router; the first matching rule wins.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, body::Bytes, routing::post};
//! use http::{Request, StatusCode};
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use tower_ops::body_limit::BodyLimitLayer;
//! use tower_ops::error::Problem;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = BodyLimitLayer::new(16).route("/upload", 1024);
//! // With the `axum` feature (on by default), spare axum a boxing per request:
//! #[cfg(feature = "axum")]
//! let layer = layer.for_axum();
//! let app = Router::new()
//!     .route("/echo", post(|body: Bytes| async move { body }))
//!     .route("/upload", post(|body: Bytes| async move { body.len().to_string() }))
//!     .layer(layer);
//!
//! // A declared length over the limit never reaches the handler.
//! let request = Request::post("/echo")
//!     .header("content-length", "17")
//!     .body(Body::from("x".repeat(17)))?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! let problem = response.extensions().get::<Problem>().unwrap();
//! assert_eq!(problem.get_rejected_by(), Some("body_limit"));
//! let json: serde_json::Value =
//!     serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
//! assert_eq!(json["code"], "PAYLOAD_TOO_LARGE");
//! assert_eq!(json["detail"], "request body of 17 bytes exceeds the limit of 16 bytes");
//!
//! // A streamed body (no Content-Length) is counted as it arrives.
//! let parts = ["0123456789", "0123456789"].map(Ok::<_, std::convert::Infallible>);
//! let chunked = Body::from_stream(futures_util::stream::iter(parts));
//! let response = app.clone().oneshot(Request::post("/echo").body(chunked)?).await?;
//! assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
//!
//! // The per-route limit applies to /upload.
//! let request = Request::post("/upload").body(Body::from("x".repeat(100)))?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! [`Problem`]: crate::error::Problem
//! [`RequestId`]: crate::request_id::RequestId

mod body;
mod future;
pub(crate) mod layer;
mod mode;

pub use self::body::{LengthLimitError, Limited};
pub use self::future::ResponseFuture;
pub use self::layer::{BodyLimit, BodyLimitLayer, DEFAULT_LIMIT};
pub use self::mode::RequestMode;
#[cfg(feature = "axum")]
pub use crate::body::AxumBody;
pub use crate::body::{AnyBody, ResponseMode};

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::routing::{get, post};
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt};
    use tower_layer::Layer;

    use super::*;
    use crate::error::Problem;
    use crate::request_id::RequestId;

    const LIMIT: u64 = 64;

    fn handlers(calls: Arc<AtomicUsize>) -> Router {
        let count = move || {
            calls.fetch_add(1, Ordering::SeqCst);
        };
        let c = count.clone();
        let c2 = count.clone();
        let c3 = count.clone();
        let c4 = count;
        Router::new()
            .route(
                "/bytes",
                post(move |b: Bytes| async move {
                    c();
                    b.len().to_string()
                }),
            )
            .route(
                "/string",
                post(move |s: String| async move {
                    c2();
                    s.len().to_string()
                }),
            )
            .route(
                "/json",
                post(
                    move |axum::Json(v): axum::Json<serde_json::Value>| async move {
                        c3();
                        v.to_string()
                    },
                ),
            )
            // Raw collection that swallows the error: without the layer's flag,
            // the client would get a 200 with an empty body.
            .route(
                "/lenient",
                post(move |req: Request<Body>| async move {
                    c4();
                    let bytes = req
                        .into_body()
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    bytes.len().to_string()
                }),
            )
            .route(
                "/strict",
                post(|req: Request<Body>| async move {
                    match req.into_body().collect().await {
                        Ok(c) => (StatusCode::OK, c.to_bytes().len().to_string()),
                        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    }
                }),
            )
            .route("/", get(|| async { "hi" }).head(|| async { "" }))
    }

    fn chunked(sizes: &[usize]) -> Body {
        let parts: Vec<_> = sizes
            .iter()
            .map(|&n| Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'x'; n])))
            .collect();
        Body::from_stream(futures_util::stream::iter(parts))
    }

    fn json_chunked(total: usize) -> Body {
        // A valid JSON string of `total` bytes, sent in 7-byte chunks.
        let text = format!("\"{}\"", "a".repeat(total - 2));
        let parts: Vec<_> = text
            .into_bytes()
            .chunks(7)
            .map(|c| Ok::<_, std::convert::Infallible>(Bytes::copy_from_slice(c)))
            .collect();
        Body::from_stream(futures_util::stream::iter(parts))
    }

    async fn problem_of(res: http::Response<Body>) -> (StatusCode, serde_json::Value) {
        let status = res.status();
        let rejected = res
            .extensions()
            .get::<Problem>()
            .and_then(Problem::get_rejected_by);
        assert_eq!(rejected, Some("body_limit"));
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// Both ways of mounting the layer, as `Router`s.
    fn apps(calls: &Arc<AtomicUsize>) -> Vec<(&'static str, Router)> {
        let inside = handlers(calls.clone()).layer(BodyLimitLayer::new(LIMIT));
        let around = ServiceBuilder::new()
            .layer(BodyLimitLayer::new(LIMIT))
            .service(handlers(calls.clone()));
        #[allow(unused_mut)]
        let mut apps = vec![
            ("Router::layer", inside),
            ("around", Router::new().fallback_service(around)),
        ];
        #[cfg(feature = "axum")]
        {
            let inside = handlers(calls.clone()).layer(BodyLimitLayer::new(LIMIT).for_axum());
            let around = ServiceBuilder::new()
                .layer(BodyLimitLayer::new(LIMIT).for_axum())
                .service(handlers(calls.clone()));
            apps.push(("Router::layer for_axum", inside));
            apps.push(("around for_axum", Router::new().fallback_service(around)));
        }
        apps
    }

    #[tokio::test]
    async fn streaming_over_the_limit_is_413_whatever_the_handler_does() {
        let calls = Arc::new(AtomicUsize::new(0));
        for (how, app) in apps(&calls) {
            for path in ["/bytes", "/string", "/lenient", "/strict", "/json"] {
                let over = if path == "/json" {
                    json_chunked(LIMIT as usize + 1)
                } else {
                    chunked(&[30, 30, 5])
                };
                let mut req = Request::post(path)
                    .header("content-type", "application/json")
                    .body(over)
                    .unwrap();
                req.extensions_mut()
                    .insert(RequestId::new("rid-1").unwrap());
                let res = app.clone().oneshot(req).await.unwrap();
                let (status, json) = problem_of(res).await;
                assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{how} {path}");
                assert_eq!(json["code"], "PAYLOAD_TOO_LARGE");
                assert_eq!(json["request_id"], "rid-1");
                assert_eq!(json["detail"], "request body exceeds the limit of 64 bytes");

                let exact = if path == "/json" {
                    json_chunked(LIMIT as usize)
                } else {
                    chunked(&[30, 30, 4])
                };
                let req = Request::post(path)
                    .header("content-type", "application/json")
                    .body(exact)
                    .unwrap();
                let res = app.clone().oneshot(req).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK, "{how} {path} at the limit");
                assert!(res.extensions().get::<Problem>().is_none());
            }
        }
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_never_calls_the_handler() {
        let calls = Arc::new(AtomicUsize::new(0));
        for (how, app) in apps(&calls) {
            let req = Request::post("/bytes")
                .header("content-length", "65")
                .body(Body::from(vec![b'x'; 65]))
                .unwrap();
            let (status, json) = problem_of(app.clone().oneshot(req).await.unwrap()).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{how}");
            assert_eq!(
                json["detail"],
                "request body of 65 bytes exceeds the limit of 64 bytes"
            );
            // A declared length is rejected even if the body is shorter.
            let req = Request::post("/bytes")
                .header("content-length", "1000000")
                .body(Body::empty())
                .unwrap();
            assert_eq!(
                app.clone().oneshot(req).await.unwrap().status(),
                StatusCode::PAYLOAD_TOO_LARGE
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn bad_content_length_is_400() {
        let calls = Arc::new(AtomicUsize::new(0));
        for (_, app) in apps(&calls) {
            for values in [
                &["abc"][..],
                &["-1"],
                &["18446744073709551616"],
                &["1", "2"],
                &["3, 4"],
                &["+3"],
                &[""],
            ] {
                let mut req = Request::post("/bytes");
                for v in values {
                    req = req.header("content-length", *v);
                }
                let res = app
                    .clone()
                    .oneshot(req.body(Body::from("abc")).unwrap())
                    .await
                    .unwrap();
                let (status, json) = problem_of(res).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{values:?}");
                assert_eq!(json["code"], "BAD_REQUEST");
            }
            // Identical repeated values are one length.
            let req = Request::post("/bytes")
                .header("content-length", "3")
                .header("content-length", "3, 3")
                .body(Body::from("abc"))
                .unwrap();
            assert_eq!(
                app.clone().oneshot(req).await.unwrap().status(),
                StatusCode::OK
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), apps(&calls).len());
    }

    #[tokio::test]
    async fn bodiless_requests_and_per_route_limits() {
        let calls = Arc::new(AtomicUsize::new(0));
        let app = handlers(calls.clone()).layer(
            BodyLimitLayer::new(0)
                .route("/bytes", 10)
                .route("/lenient/*", 1),
        );
        for method in ["GET", "HEAD"] {
            let req = Request::builder()
                .method(method)
                .uri("/")
                .body(Body::empty())
                .unwrap();
            assert_eq!(
                app.clone().oneshot(req).await.unwrap().status(),
                StatusCode::OK
            );
        }
        let req = Request::post("/bytes").body(chunked(&[10])).unwrap();
        assert_eq!(
            app.clone().oneshot(req).await.unwrap().status(),
            StatusCode::OK
        );
        let req = Request::post("/bytes").body(chunked(&[10, 1])).unwrap();
        let (_, json) = problem_of(app.clone().oneshot(req).await.unwrap()).await;
        assert_eq!(json["detail"], "request body exceeds the limit of 10 bytes");
        let req = Request::post("/lenient").body(chunked(&[2])).unwrap();
        assert_eq!(
            app.clone().oneshot(req).await.unwrap().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let req = Request::post("/string").body(chunked(&[1])).unwrap();
        assert_eq!(
            app.clone().oneshot(req).await.unwrap().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let req = Request::post("/string").body(Body::empty()).unwrap();
        assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn wrapped_renderer_and_service_errors() {
        let svc = BodyLimitLayer::new(4)
            .renderer(crate::error::Renderer::wrapped())
            .layer(tower::service_fn(
                |req: Request<Limited<Body>>| async move {
                    // The handler fails with a service error after reading too much.
                    let _ = req.into_body().collect().await;
                    Err::<http::Response<Body>, _>("handler failed")
                },
            ));
        let res = svc
            .oneshot(Request::post("/").body(chunked(&[5])).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(res.headers()["content-type"], "application/json");
        let svc =
            BodyLimitLayer::new(4).layer(tower::service_fn(|_: Request<Limited<Body>>| async {
                Err::<http::Response<Body>, _>("boom")
            }));
        assert_eq!(
            svc.oneshot(Request::post("/").body(chunked(&[1])).unwrap())
                .await
                .unwrap_err(),
            "boom"
        );
    }

    /// A body that promises 3 bytes and sends more.
    struct Lying(body::tests::Chunks);

    impl http_body::Body for Lying {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::pin::Pin::new(&mut self.0).poll_frame(cx)
        }

        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(3)
        }
    }

    #[tokio::test]
    async fn the_generic_mode_counts_even_a_body_that_breaks_its_promise() {
        let svc = BodyLimitLayer::new(4).layer(tower::service_fn(
            |req: Request<Limited<Lying>>| async move {
                let seen = req.into_body().collect().await.map(|c| c.to_bytes().len());
                Ok::<_, std::convert::Infallible>(http::Response::new(format!("{seen:?}")))
            },
        ));
        let req = Request::post("/")
            .header("content-length", "3")
            .body(Lying(body::tests::Chunks::new(&[3, 7])))
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        // The length was declared, so the handler answers; it never saw more
        // than the limit.
        assert_eq!(res.status(), StatusCode::OK);
        let text = res.into_body().collect().await.unwrap().to_bytes();
        assert!(text.starts_with(b"Err("), "{text:?}");
    }
}
