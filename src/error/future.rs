use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::response::Parts;
use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use super::for_log;
use super::report::{Capture, Caught};
use super::{Code, Problem, Renderer};
use crate::BoxError;
use crate::body::{AnyBody, ResponseBody, ResponseMode};
use crate::error_chain::{joined, links};
use crate::media::{is_json, is_text_plain};
use crate::request_id::RequestId;

/// The largest plain-text error body read to become a problem's detail. Framework
/// rejection texts are far shorter; anything longer is not a message for a client.
pub(crate) const MAX_DETAIL_BODY: u64 = 1024;

/// A failure seen before the inner service produced a future.
pub(crate) enum Failure {
    Error(BoxError),
    Panic(Caught),
}

pin_project! {
    /// The response future of [`ErrorEnvelope`](super::ErrorEnvelope).
    pub struct ResponseFuture<F, B, M = AnyBody> {
        #[pin]
        kind: Kind<F, B>,
        _mode: PhantomData<fn() -> M>,
        renderer: Renderer,
        // Boxed: set only when no request id layer is in scope, which is rare, and
        // the future should stay small for the moves it goes through.
        request_id: Option<Box<RequestId>>,
        // Set only with a reporter: the request head, for a 5xx report.
        report: Option<Box<Capture>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Call { #[pin] future: F },
        // A short plain-text error body being read for the problem's detail.
        // Boxed: the success path should not carry the size of the rare states.
        Read { head: Box<(Option<Parts>, Vec<u8>)>, #[pin] body: B },
        Done { response: Option<Box<Response<ResponseBody<B>>>> },
    }
}

impl<F, B, M> ResponseFuture<F, B, M> {
    #[inline]
    pub(crate) fn new(
        future: F,
        renderer: Renderer,
        request_id: Option<Box<RequestId>>,
        report: Option<Box<Capture>>,
    ) -> Self {
        Self {
            kind: Kind::Call { future },
            renderer,
            request_id,
            report,
            _mode: PhantomData,
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn failed(
        failure: Failure,
        renderer: Renderer,
        request_id: Option<Box<RequestId>>,
        mut report: Option<Box<Capture>>,
    ) -> Self {
        let problem = match failure {
            Failure::Error(error) => error_problem(error, request_id.as_deref()),
            Failure::Panic(caught) => {
                let problem = panic_problem(&caught.message, request_id.as_deref());
                if let Some(report) = report.as_mut() {
                    report.panicked(caught);
                }
                problem
            }
        };
        let response = renderer.response(problem);
        Self {
            kind: done(response),
            renderer,
            request_id,
            report,
            _mode: PhantomData,
        }
    }
}

impl<F, B, E, M> Future for ResponseFuture<F, B, M>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body<Data = Bytes>,
    M: ResponseMode<B>,
{
    type Output = Result<Response<M::ResBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.kind.as_mut().project() {
                KindProj::Call { future } => {
                    match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        // The success path: nothing to look at, nothing to keep.
                        Ok(Poll::Ready(Ok(response))) if response.status().as_u16() < 400 => {
                            return Poll::Ready(Ok(M::response(response)));
                        }
                        Ok(Poll::Ready(Ok(response))) => {
                            match on_response(response, this.renderer, this.request_id.as_deref()) {
                                Step::Out(response) => {
                                    if let Some(report) = this.report.take() {
                                        report.finish(&response);
                                    }
                                    return Poll::Ready(Ok(M::response(response)));
                                }
                                Step::Then(next) => next,
                            }
                        }
                        Ok(Poll::Ready(Err(error))) => {
                            let problem = error_problem(error.into(), this.request_id.as_deref());
                            done(this.renderer.response(problem))
                        }
                        Err(payload) => {
                            let caught = Caught::new(&*payload);
                            let problem =
                                panic_problem(&caught.message, this.request_id.as_deref());
                            if let Some(report) = this.report.as_mut() {
                                report.panicked(caught);
                            }
                            done(this.renderer.response(problem))
                        }
                    }
                }
                KindProj::Read { head, mut body } => {
                    let (parts, buf) = &mut **head;
                    let polled =
                        catch_unwind(AssertUnwindSafe(|| read_bounded(body.as_mut(), buf, cx)));
                    let text = match polled {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(complete)) => {
                            complete.then(|| String::from_utf8_lossy(buf).into_owned())
                        }
                        // The response is abandoned anyway; the body's panic costs
                        // the client only the detail.
                        Err(_) => None,
                    };
                    let parts = parts.take().expect("read state always holds the head");
                    done(rewrite_plain(
                        this.renderer,
                        parts,
                        this.request_id.as_deref(),
                        text,
                    ))
                }
                KindProj::Done { response } => {
                    let response = *response.take().expect("polled after completion");
                    if let Some(report) = this.report.take() {
                        report.finish(&response);
                    }
                    return Poll::Ready(Ok(M::rejection(response)));
                }
            };
            this.kind.set(next);
        }
    }
}

enum Step<F, B> {
    /// The response goes out as it is.
    Out(Response<B>),
    /// The state that produces the response.
    Then(Kind<F, B>),
}

fn on_response<F, B: Body>(
    mut response: Response<B>,
    renderer: &Renderer,
    request_id: Option<&RequestId>,
) -> Step<F, B> {
    if response.status().is_server_error()
        && let Some(problem) = response.extensions_mut().get_mut::<Problem>()
    {
        log_source(problem);
    }
    match verdict(&response, renderer, request_id.is_some()) {
        Verdict::Keep => Step::Out(response),
        Verdict::Rerender => {
            let (mut parts, _body) = response.into_parts();
            Step::Then(done(match parts.extensions.remove::<Problem>() {
                Some(mut problem) => {
                    fill_request_id(&mut problem, request_id, &parts);
                    renderer.rewrite(parts, problem)
                }
                None => rewrite_plain(renderer, parts, request_id, None),
            }))
        }
        Verdict::Replace => {
            let (parts, _body) = response.into_parts();
            Step::Then(done(rewrite_plain(renderer, parts, request_id, None)))
        }
        Verdict::Read(len) => {
            let (parts, body) = response.into_parts();
            Step::Then(Kind::Read {
                head: Box::new((Some(parts), Vec::with_capacity(len))),
                body,
            })
        }
    }
}

fn done<F, B>(response: Response<ResponseBody<B>>) -> Kind<F, B> {
    Kind::Done {
        response: Some(Box::new(response)),
    }
}

/// Reads the body until its end into `buf`. `true` when it ended within
/// [`MAX_DETAIL_BODY`] bytes without error.
fn read_bounded<B: Body<Data = Bytes>>(
    mut body: Pin<&mut B>,
    buf: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> Poll<bool> {
    loop {
        match ready!(body.as_mut().poll_frame(cx)) {
            None => return Poll::Ready(true),
            Some(Err(_)) => return Poll::Ready(false),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() as u64 + data.len() as u64 > MAX_DETAIL_BODY {
                        return Poll::Ready(false);
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

enum Verdict {
    /// Not an error, already JSON, or a problem this renderer already wrote.
    Keep,
    /// A problem rendered differently (another format, or without the request id).
    Rerender,
    /// A plain error response, re-rendered without reading its body.
    Replace,
    /// A short plain-text error response whose body (this many bytes) is read first.
    Read(usize),
}

fn verdict<B: Body>(response: &Response<B>, renderer: &Renderer, knows_id: bool) -> Verdict {
    let status = response.status();
    if status.as_u16() < 400 {
        return Verdict::Keep;
    }
    // A gRPC client reads no HTTP error body: whatever answered it with one gets
    // a gRPC status instead.
    let grpc = renderer.answers_grpc();
    if let Some(problem) = response.extensions().get::<Problem>() {
        // A problem inserted by hand (never rendered) comes with its own body.
        return match problem.rendered {
            _ if grpc => Verdict::Rerender,
            Some(mark) if mark != renderer.mark() => Verdict::Rerender,
            Some(_) if problem.request_id.is_none() && knows_id => Verdict::Rerender,
            _ => Verdict::Keep,
        };
    }
    let headers = response.headers();
    if is_json(headers) && !grpc {
        return Verdict::Keep;
    }
    match response.body().size_hint().exact() {
        Some(len @ 1..=MAX_DETAIL_BODY) if is_text_plain(headers) => Verdict::Read(len as usize),
        _ => Verdict::Replace,
    }
}

/// `application/json` or any `application/*+json`, parameters ignored.
/// The envelope for a plain error response. `text` is its body when it was read.
fn rewrite_plain<B>(
    renderer: &Renderer,
    parts: Parts,
    request_id: Option<&RequestId>,
    text: Option<String>,
) -> Response<ResponseBody<B>> {
    let mut problem = Problem::new(parts.status).rejected_by("error");
    fill_request_id(&mut problem, request_id, &parts);
    let text = text.map(|t| clean_text(&t)).filter(|t| !t.is_empty());
    if let Some(text) = text {
        if parts.status.is_server_error() {
            // Hidden from the client: the log is the only place it survives.
            tracing::error!(
                status = parts.status.as_u16(),
                request_id = problem.get_request_id().map(RequestId::as_str),
                body = %for_log(&text),
                "plain error response replaced by a problem"
            );
            problem = problem.source(text);
            problem.logged = true;
        } else {
            problem = problem.detail(text);
        }
    }
    renderer.rewrite(parts, problem)
}

/// Control characters out, spaces trimmed; the text stays readable for the client.
fn clean_text(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cleaned.trim().to_owned()
}

fn fill_request_id(problem: &mut Problem, request_id: Option<&RequestId>, parts: &Parts) {
    if problem.request_id.is_none() {
        problem.request_id = request_id
            .or_else(|| parts.extensions.get::<RequestId>())
            .cloned();
    }
}

fn panic_problem(message: &str, request_id: Option<&RequestId>) -> Problem {
    let mut problem = Problem::new(StatusCode::INTERNAL_SERVER_ERROR).rejected_by("panic");
    if problem.request_id.is_none() {
        problem.request_id = request_id.cloned();
    }
    let message = for_log(message);
    // The logging set-up's panic hook has already made this panic its event.
    if !crate::panics::hook_installed() {
        tracing::error!(
            request_id = problem.get_request_id().map(RequestId::as_str),
            panic = %message,
            "request handler panicked"
        );
    }
    problem.logged = true;
    problem.source(message.into_owned())
}

fn error_problem(error: BoxError, request_id: Option<&RequestId>) -> Problem {
    let (status, code, detail) = if has_source::<tower::timeout::error::Elapsed>(&*error) {
        (
            StatusCode::GATEWAY_TIMEOUT,
            Code::TIMEOUT,
            "the request took too long",
        )
    } else if has_source::<tower::load_shed::error::Overloaded>(&*error) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Code::SERVICE_UNAVAILABLE,
            "the service is overloaded; retry later",
        )
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, Code::INTERNAL, "")
    };
    let mut problem = Problem::new(status).code(code).rejected_by("error");
    if problem.request_id.is_none() {
        problem.request_id = request_id.cloned();
    }
    let id = problem.get_request_id().map(RequestId::as_str);
    let text = joined(&*error);
    if detail.is_empty() {
        tracing::error!(request_id = id, error = %for_log(&text), "request failed");
    } else {
        // Timeouts and load shedding are expected under load, not bugs.
        tracing::warn!(request_id = id, error = %for_log(&text), "request failed");
        problem = problem.detail(detail);
    }
    problem.logged = true;
    problem.source(error)
}

/// Logs the source of a 5xx problem made further in (a handler's
/// `Problem::internal(err)`): the client never sees it, so the log must. Problems
/// made here are logged where they are made.
fn log_source(problem: &mut Problem) {
    if problem.logged {
        return;
    }
    problem.logged = true;
    if let Some(source) = problem.get_source() {
        tracing::error!(
            status = problem.status().as_u16(),
            code = problem.get_code().as_str(),
            rejected_by = problem.get_rejected_by(),
            request_id = problem.get_request_id().map(RequestId::as_str),
            error = %for_log(&joined(source)),
            "request failed"
        );
    }
}

/// Whether `error` or one of its sources is an `E`.
fn has_source<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    links(error).any(|e| e.is::<E>())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{HeaderValue, Request};
    use http_body_util::{BodyExt, Full};
    use proptest::prelude::*;
    use tower::{ServiceExt, service_fn};
    use tower_layer::Layer;

    use super::*;
    use crate::error::ErrorLayer;

    fn rewrite(status: u16, content_type: Option<String>, body: Vec<u8>) -> (Response<()>, Bytes) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            let svc = ErrorLayer::new().layer(service_fn(move |_: Request<()>| {
                let mut res = Response::new(Full::new(Bytes::from(body.clone())));
                *res.status_mut() = StatusCode::from_u16(status).unwrap();
                if let Some(ct) = content_type
                    .as_deref()
                    .and_then(|c| HeaderValue::from_str(c).ok())
                {
                    res.headers_mut().insert(http::header::CONTENT_TYPE, ct);
                }
                async move { Ok::<_, Infallible>(res) }
            }));
            let (parts, body) = svc.oneshot(Request::new(())).await.unwrap().into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            (Response::from_parts(parts, ()), body)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever a plain error response holds, the client gets a well-formed
        /// problem with the same status and the usual code, and 5xx text is hidden.
        #[test]
        fn any_plain_error_becomes_a_problem(
            status in 400_u16..600,
            content_type in proptest::option::of("(text/plain|text/html|application/octet-stream|[ -~]{0,30})"),
            body in proptest::collection::vec(any::<u8>(), 0..1500),
        ) {
            let is_json = content_type.as_deref().is_some_and(|c| c.contains("json"));
            prop_assume!(!is_json);
            let (res, out) = rewrite(status, content_type, body);
            prop_assert_eq!(res.status().as_u16(), status);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(v["status"].as_u64(), Some(u64::from(status)));
            let code = Code::for_status(res.status());
            prop_assert_eq!(v["code"].as_str(), Some(code.as_str()));
            if status >= 500 {
                prop_assert!(v.get("detail").is_none());
            }
            if let Some(detail) = v["detail"].as_str() {
                prop_assert!(!detail.chars().any(char::is_control));
                prop_assert!(detail.len() <= 3 * MAX_DETAIL_BODY as usize);
            }
        }
    }
}
