use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::Renderer;
use super::future::{Failure, ResponseFuture};
use super::report::{Capture, Caught, ErrorReporter};
use crate::body::{AnyBody, ResponseMode};
use crate::config::ConfigError;

use crate::BoxError;

/// Turns panics, service errors and plain error responses into [`Problem`]
/// responses. See the [module docs](super#the-error-layer).
///
/// `M` chooses the response body: [`AnyBody`] by default, which wraps the inner
/// body in a [`ResponseBody`](crate::body::ResponseBody), or
/// [`AxumBody`](crate::body::AxumBody) after [`for_axum`](Self::for_axum).
///
/// [`Problem`]: super::Problem
pub struct ErrorLayer<M = AnyBody> {
    renderer: Renderer,
    reporter: Option<ErrorReporter>,
    _mode: PhantomData<fn() -> M>,
}

impl<M> Clone for ErrorLayer<M> {
    fn clone(&self) -> Self {
        Self {
            renderer: self.renderer.clone(),
            reporter: self.reporter.clone(),
            _mode: PhantomData,
        }
    }
}

impl<M> fmt::Debug for ErrorLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorLayer")
            .field("renderer", &self.renderer)
            .field("reporter", &self.reporter)
            .finish()
    }
}

impl Default for ErrorLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorLayer {
    /// A layer rendering RFC 9457 `application/problem+json`.
    pub fn new() -> Self {
        Self {
            renderer: Renderer::default(),
            reporter: None,
            _mode: PhantomData,
        }
    }

    /// Reads the format from `ERROR_FORMAT` (see [`Renderer::from_env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new().renderer(Renderer::from_env()?))
    }
}

impl<M> ErrorLayer<M> {
    /// Renders with `renderer` instead (for example [`Renderer::wrapped`]).
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.renderer = renderer;
        self
    }

    /// Sends a report to `reporter` for every 5xx problem and every panic this
    /// layer answers (see [`ErrorReporter`] for what is reported and the
    /// contract of the hook). Give it to one error layer of the stack only, or
    /// each will report.
    pub fn reporter(mut self, reporter: ErrorReporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// Returns axum's own `Body` in responses, for `Router::layer`.
    ///
    /// The handler's response then passes through as it is, where the default
    /// mode wraps its body and axum boxes that wrapper again for every request;
    /// only the layer's own answers are boxed. Same behaviour otherwise.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower_ops::error::ErrorLayer;
    ///
    /// let app: Router = Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .layer(ErrorLayer::new().for_axum());
    /// ```
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn for_axum(self) -> ErrorLayer<crate::body::AxumBody> {
        ErrorLayer {
            renderer: self.renderer,
            reporter: self.reporter,
            _mode: PhantomData,
        }
    }
}

impl<S, M> Layer<S> for ErrorLayer<M> {
    type Service = ErrorEnvelope<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorEnvelope {
            inner,
            renderer: self.renderer.clone(),
            reporter: self.reporter.clone(),
            failed: None,
            _mode: PhantomData,
        }
    }
}

/// The service made by [`ErrorLayer`].
///
/// Its error type is [`Infallible`]: unlike the other tower-ops layers, which keep
/// `Error = S::Error`, answering the inner service's errors is this layer's job.
/// That is what lets `Router::layer` (which requires `Infallible`) take it, with
/// tower's `TimeoutLayer` or `LoadShedLayer` inside and no `HandleErrorLayer`.
pub struct ErrorEnvelope<S, M = AnyBody> {
    inner: S,
    renderer: Renderer,
    reporter: Option<ErrorReporter>,
    /// `poll_ready` failed or panicked: the next call answers with that failure
    /// instead of calling the inner service.
    failed: Option<Failure>,
    _mode: PhantomData<fn() -> M>,
}

impl<S> ErrorEnvelope<S> {
    /// Wraps `inner` with the default settings.
    pub fn new(inner: S) -> Self {
        ErrorLayer::new().layer(inner)
    }

    /// A layer with the defaults: [`ErrorLayer::new`].
    pub fn layer() -> ErrorLayer {
        ErrorLayer::new()
    }
}

impl<S, M> ErrorEnvelope<S, M> {
    define_inner_service_accessors!();
}

impl<S: Clone, M> Clone for ErrorEnvelope<S, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            renderer: self.renderer.clone(),
            reporter: self.reporter.clone(),
            // Readiness belongs to one instance; a clone starts unready.
            failed: None,
            _mode: PhantomData,
        }
    }
}

impl<S: fmt::Debug, M> fmt::Debug for ErrorEnvelope<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorEnvelope")
            .field("inner", &self.inner)
            .field("renderer", &self.renderer)
            .finish_non_exhaustive()
    }
}

impl<S, M, ReqBody, ResBody> Service<Request<ReqBody>> for ErrorEnvelope<S, M>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    M: ResponseMode<ResBody>,
{
    type Response = Response<M::ResBody>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future, ResBody, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.failed.is_some() {
            return Poll::Ready(Ok(()));
        }
        let failure = match catch_unwind(AssertUnwindSafe(|| self.inner.poll_ready(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(()))) => return Poll::Ready(Ok(())),
            Ok(Poll::Ready(Err(error))) => Failure::Error(error.into()),
            Err(payload) => Failure::Panic(Caught::new(&*payload)),
        };
        self.failed = Some(failure);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Kept for answers made without a response (panics, errors). Problems pick
        // up the id of the request in scope themselves; copy it only when that is
        // missing, which spares the copy in the canonical stack.
        let request_id = crate::context::request_id_for_later(req.extensions()).map(Box::new);
        // The head is gone with the request once the inner service has it.
        let report = self.reporter.as_ref().map(|r| Capture::new(r, &req));
        // A gRPC call is answered with a gRPC status.
        let renderer = self.renderer.clone().for_request(req.headers());
        if let Some(failure) = self.failed.take() {
            return ResponseFuture::failed(failure, renderer, request_id, report);
        }
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => ResponseFuture::new(future, renderer, request_id, report),
            Err(payload) => ResponseFuture::failed(
                Failure::Panic(Caught::new(&*payload)),
                renderer,
                request_id,
                report,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderValue, StatusCode};
    use http_body_util::{BodyExt, Full};
    use serde_json::Value;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;
    use crate::body::ResponseBody;
    use crate::error::{Code, Problem};
    use crate::request_id::RequestId;

    type Res = Response<Full<Bytes>>;

    fn with_id() -> Request<()> {
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(RequestId::new("req-7").unwrap());
        req
    }

    async fn run<S, B>(svc: S, req: Request<()>) -> (Response<()>, Bytes)
    where
        S: Service<Request<()>, Response = Response<ResponseBody<B>>, Error = Infallible>,
        B: Body<Data = Bytes>,
        B::Error: std::fmt::Debug,
    {
        let res = svc.oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (Response::from_parts(parts, ()), body)
    }

    fn json(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    fn problem(res: &Response<()>) -> &Problem {
        res.extensions().get::<Problem>().expect("a problem")
    }

    fn plain(status: u16, content_type: Option<&'static str>, body: &'static str) -> Res {
        let mut res = Response::new(Full::from(body));
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some(ct) = content_type {
            res.headers_mut()
                .insert("content-type", HeaderValue::from_static(ct));
        }
        res
    }

    #[tokio::test]
    async fn success_passes_untouched() {
        let svc = ErrorLayer::new().layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(plain(200, Some("text/plain"), "hello"))
        }));
        let (res, body) = run(svc, with_id()).await;
        assert_eq!(res.status(), 200);
        assert_eq!(body, "hello");
        assert!(res.extensions().get::<Problem>().is_none());
    }

    #[tokio::test]
    async fn panics_in_call_and_in_future() {
        let sync = ErrorLayer::new().layer(service_fn(
            |_: Request<()>| -> std::future::Ready<Result<Res, Infallible>> {
                panic!("sync secret=hunter2")
            },
        ));
        let asynchronous = ErrorLayer::new().layer(service_fn(|_: Request<()>| async {
            if true {
                panic!("{}", String::from("async secret=hunter2"));
            }
            Ok::<Res, Infallible>(plain(200, None, ""))
        }));
        for (res, body) in [
            run(sync, with_id()).await,
            run(asynchronous, with_id()).await,
        ] {
            assert_eq!(res.status(), 500);
            assert!(!String::from_utf8_lossy(&body).contains("hunter2"));
            let v = json(&body);
            assert_eq!(v["code"], "INTERNAL");
            assert_eq!(v["request_id"], "req-7");
            assert_eq!(problem(&res).get_rejected_by(), Some("panic"));
            assert!(
                problem(&res)
                    .get_source()
                    .unwrap()
                    .to_string()
                    .contains("secret=[REDACTED]")
            );
        }
    }

    #[tokio::test]
    async fn dev_switch_shows_the_panic() {
        let layer = ErrorLayer::new().renderer(Renderer::default().expose_internal(true));
        let svc = layer.layer(service_fn(|_: Request<()>| async {
            if true {
                panic!("visible in dev");
            }
            Ok::<Res, Infallible>(plain(200, None, ""))
        }));
        let (_, body) = run(svc, Request::new(())).await;
        assert!(
            json(&body)["detail"]
                .as_str()
                .unwrap()
                .contains("visible in dev")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tower_errors_become_responses() {
        let slow = ServiceBuilder::new()
            .layer(ErrorLayer::new())
            .timeout(Duration::from_secs(1))
            .service_fn(|_: Request<()>| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<Res, Infallible>(plain(200, None, ""))
            });
        let (res, body) = run(slow, with_id()).await;
        assert_eq!(res.status(), 504);
        assert_eq!(json(&body)["code"], "TIMEOUT");
        assert_eq!(problem(&res).get_rejected_by(), Some("error"));

        let (res, body) = run(
            ErrorLayer::new().layer(service_fn(|_: Request<()>| async {
                Err::<Res, BoxError>(Box::new(tower::load_shed::error::Overloaded::new()))
            })),
            with_id(),
        )
        .await;
        assert_eq!(res.status(), 503);
        assert_eq!(json(&body)["code"], "SERVICE_UNAVAILABLE");

        let failing = ErrorLayer::new().layer(service_fn(|_: Request<()>| async {
            Err::<Res, _>(std::io::Error::other("db password=hunter2 refused"))
        }));
        let (res, body) = run(failing, with_id()).await;
        assert_eq!(res.status(), 500);
        assert!(!String::from_utf8_lossy(&body).contains("hunter2"));
        assert_eq!(json(&body)["request_id"], "req-7");
    }

    /// A service that is never ready without an error.
    #[derive(Clone)]
    struct Broken(bool);

    impl Service<Request<()>> for Broken {
        type Response = Res;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Res, BoxError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            if self.0 {
                panic!("poll_ready panicked");
            }
            Poll::Ready(Err("backend gone".into()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            unreachable!("never ready")
        }
    }

    #[tokio::test]
    async fn poll_ready_failures_are_answered() {
        for panics in [false, true] {
            let (res, _) = run(ErrorLayer::new().layer(Broken(panics)), with_id()).await;
            assert_eq!(res.status(), 500);
            let expected = if panics { "panic" } else { "error" };
            assert_eq!(problem(&res).get_rejected_by(), Some(expected));
        }
    }

    async fn rewrite(res: fn() -> Res) -> (Response<()>, Bytes) {
        let svc = ErrorLayer::new().layer(service_fn(move |_: Request<()>| async move {
            Ok::<_, Infallible>(res())
        }));
        run(svc, with_id()).await
    }

    #[tokio::test]
    async fn plain_errors_are_rewritten() {
        let (res, body) = rewrite(|| plain(404, None, "")).await;
        assert_eq!(res.status(), 404);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let v = json(&body);
        assert_eq!(
            (v["code"].as_str(), v["request_id"].as_str()),
            (Some("NOT_FOUND"), Some("req-7"))
        );
        assert!(v.get("detail").is_none());

        let (res, body) = rewrite(|| {
            let mut r = plain(405, None, "");
            r.headers_mut()
                .insert("allow", HeaderValue::from_static("GET,HEAD"));
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("3"));
            r.headers_mut()
                .insert("content-length", HeaderValue::from_static("0"));
            r
        })
        .await;
        assert_eq!(res.headers()["allow"], "GET,HEAD");
        assert_eq!(res.headers()["retry-after"], "3");
        assert!(res.headers().get("content-length").is_none());
        assert_eq!(json(&body)["code"], "METHOD_NOT_ALLOWED");

        let (_, body) = rewrite(|| {
            plain(
                422,
                Some("text/plain; charset=utf-8"),
                "missing field `x`\n\u{1b}",
            )
        })
        .await;
        let v = json(&body);
        assert_eq!(v["detail"], "missing field `x`");
        assert_eq!(v["code"], Code::VALIDATION_FAILED.as_str());

        let (res, body) =
            rewrite(|| plain(502, Some("text/plain"), "upstream 10.0.0.3 refused")).await;
        assert!(!String::from_utf8_lossy(&body).contains("10.0.0.3"));
        assert!(problem(&res).get_source().is_some());

        let (_, body) = rewrite(|| plain(413, Some("text/html"), "<h1>too big</h1>")).await;
        let v = json(&body);
        assert_eq!(
            (v["code"].as_str(), v.get("detail")),
            (Some("PAYLOAD_TOO_LARGE"), None)
        );
    }

    #[tokio::test]
    async fn long_or_streaming_error_bodies_are_not_read() {
        let (_, body) = rewrite(|| {
            plain(
                400,
                Some("text/plain"),
                include_str!("../respond/render.rs"),
            )
        })
        .await;
        assert!(json(&body).get("detail").is_none());

        let svc = ErrorLayer::new().layer(service_fn(|_: Request<()>| async {
            // Never ends: reading it would hang the test.
            let mut res = Response::new(Endless);
            *res.status_mut() = StatusCode::BAD_REQUEST;
            res.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/plain"));
            Ok::<_, Infallible>(res)
        }));
        let (res, body) = run(svc, with_id()).await;
        assert_eq!(res.status(), 400);
        assert_eq!(json(&body)["code"], "BAD_REQUEST");
    }

    /// A body that never ends and has no exact size.
    struct Endless;

    impl Body for Endless {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"x")))))
        }
    }

    #[tokio::test]
    async fn json_errors_and_own_problems() {
        let (_, body) = rewrite(|| plain(409, Some("application/json"), r#"{"mine":true}"#)).await;
        assert_eq!(body, r#"{"mine":true}"#);
        let (_, body) = rewrite(|| plain(400, Some("application/vnd.api+json"), "{}")).await;
        assert_eq!(body, "{}");

        // Rendered by this layer's format and with an id: untouched.
        let svc = ErrorLayer::new().layer(service_fn(|_: Request<()>| async {
            let p = Problem::new(StatusCode::CONFLICT)
                .request_id(RequestId::new("own").unwrap())
                .detail("taken");
            Ok::<_, Infallible>(Renderer::default().response::<Full<Bytes>>(p))
        }));
        let (_, body) = run(svc, with_id()).await;
        assert_eq!(
            (
                json(&body)["detail"].as_str(),
                json(&body)["request_id"].as_str()
            ),
            (Some("taken"), Some("own"))
        );

        // Rendered by the default format, layer wraps: re-rendered, rejected_by kept.
        let svc = ErrorLayer::new()
            .renderer(Renderer::wrapped())
            .layer(service_fn(|_: Request<()>| async {
                let p = Problem::new(StatusCode::TOO_MANY_REQUESTS).rejected_by("rate_limit");
                let mut res = Renderer::default().response::<Full<Bytes>>(p);
                res.headers_mut()
                    .insert("ratelimit", HeaderValue::from_static("\"default\";r=0;t=3"));
                Ok::<_, Infallible>(res)
            }));
        let (res, body) = run(svc, with_id()).await;
        let v = json(&body);
        assert_eq!(v["success"], false);
        assert_eq!(v["error"]["code"], "RATE_LIMITED");
        assert_eq!(v["error"]["requestId"], "req-7");
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(res.headers()["ratelimit"], "\"default\";r=0;t=3");
        assert_eq!(problem(&res).get_rejected_by(), Some("rate_limit"));
    }

    #[cfg(feature = "axum")]
    #[test]
    fn fits_axum_without_handle_error() {
        fn assert_router(_: axum::Router) {}
        let stack = ServiceBuilder::new()
            .layer(ErrorLayer::new())
            .load_shed()
            .concurrency_limit(64)
            .timeout(Duration::from_secs(1));
        let router = axum::Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .layer(stack);
        assert_router(router.layer(ErrorLayer::new()));
    }
}
