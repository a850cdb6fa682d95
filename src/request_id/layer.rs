use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::ConfigError;
use crate::context::RequestContext;

use super::{
    ClientRequestId, IncomingPolicy, MakeRequestId, MakeUuidV7, RequestId, Scoped,
    X_CORRELATION_ID, X_REQUEST_ID,
};

/// Sets, validates and echoes the request id. See the [module docs](super).
#[derive(Clone, Debug, Default)]
pub struct RequestIdLayer<M = MakeUuidV7> {
    maker: M,
    policy: IncomingPolicy,
}

impl RequestIdLayer {
    /// A layer that keeps valid incoming ids and makes UUIDv7 ids otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// The layer [`Stack::from_env`](crate::stack::Stack::from_env) uses, built
    /// the way every other layer is. No variable changes it: incoming ids are
    /// always validated and new ones are UUIDv7, so this never fails today.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new())
    }
}

impl<M> RequestIdLayer<M> {
    /// Chooses what happens to ids sent by clients.
    pub fn policy(mut self, policy: IncomingPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Swaps the id maker, for example for a closure.
    ///
    /// Made ids are trusted as they are: build them with [`RequestId::new`], which
    /// validates them.
    pub fn with_maker<M2>(self, maker: M2) -> RequestIdLayer<M2> {
        RequestIdLayer {
            maker,
            policy: self.policy,
        }
    }
}

impl<S, M: Clone> Layer<S> for RequestIdLayer<M> {
    type Service = SetRequestId<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        SetRequestId {
            inner,
            maker: self.maker.clone(),
            policy: self.policy,
        }
    }
}

/// The service made by [`RequestIdLayer`].
#[derive(Clone, Debug)]
pub struct SetRequestId<S, M = MakeUuidV7> {
    inner: S,
    maker: M,
    policy: IncomingPolicy,
}

impl<S> SetRequestId<S> {
    /// Wraps `inner` with the default settings.
    pub fn new(inner: S) -> Self {
        RequestIdLayer::new().layer(inner)
    }

    /// A layer with the defaults: [`RequestIdLayer::new`].
    pub fn layer() -> RequestIdLayer {
        RequestIdLayer::new()
    }
}

impl<S, M> SetRequestId<S, M> {
    define_inner_service_accessors!();
}

/// The id the client sent, if it is usable.
///
/// `x-request-id` wins over `x-correlation-id`; the alias is read only when the
/// canonical header is absent. A header sent several times with different values is
/// ambiguous and counts as invalid.
pub(crate) fn incoming(headers: &HeaderMap) -> Option<RequestId> {
    let mut values = headers.get_all(X_REQUEST_ID).iter();
    let mut first = values.next();
    if first.is_none() {
        values = headers.get_all(X_CORRELATION_ID).iter();
        first = values.next();
    }
    let first = first?;
    if values.any(|other| other != first) {
        return None;
    }
    let id = RequestId::from_header_value(first);
    if id.is_none() {
        tracing::debug!(
            len = first.len(),
            "incoming request id rejected; a new one was made"
        );
    }
    id
}

impl<S, M, ReqBody, ResBody> Service<Request<ReqBody>> for SetRequestId<S, M>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    M: MakeRequestId<ReqBody>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let id = match self.policy {
            IncomingPolicy::UseValid => {
                incoming(req.headers()).unwrap_or_else(|| self.maker.make_request_id(&req))
            }
            IncomingPolicy::AlwaysGenerate => self.maker.make_request_id(&req),
            IncomingPolicy::GenerateAndKeep => {
                if let Some(client) = incoming(req.headers()) {
                    req.extensions_mut().insert(ClientRequestId(client));
                }
                self.maker.make_request_id(&req)
            }
        };
        req.headers_mut()
            .insert(X_REQUEST_ID, id.header_value().clone());
        req.extensions_mut().insert(id.clone());
        // The id goes with the future and is in the request's context while it
        // is called and polled, so that handlers read it with `current()`.
        let context = RequestContext::current().with_request_id(id);
        let inner = &mut self.inner;
        let future = context.clone().sync_scope(|| inner.call(req));
        ResponseFuture {
            inner: context.scope(future),
        }
    }
}

pin_project! {
    /// The response future of [`SetRequestId`].
    pub struct ResponseFuture<F> {
        // The id is in scope while the inner future is polled, then goes on
        // the response.
        #[pin]
        inner: Scoped<F>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = self.project().inner;
        let mut response = std::task::ready!(inner.as_mut().poll(cx))?;
        if let Some(id) = inner.take_context().and_then(|c| c.request_id) {
            response
                .headers_mut()
                .insert(X_REQUEST_ID, id.header_value().clone());
            response.extensions_mut().insert(id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::HeaderValue;
    use tower::{ServiceExt, service_fn};

    use super::*;

    async fn echo(req: Request<()>) -> Result<Response<String>, Infallible> {
        let ext = req.extensions().get::<RequestId>().unwrap().to_string();
        let header = req.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
        assert_eq!(ext, header);
        assert_eq!(super::super::current().unwrap().as_str(), ext);
        let client = req
            .extensions()
            .get::<ClientRequestId>()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default();
        Ok(Response::new(client))
    }

    async fn run(layer: RequestIdLayer, headers: &[(&str, &[u8])]) -> (String, String) {
        let mut req = Request::builder();
        for (name, value) in headers {
            req = req.header(*name, HeaderValue::from_bytes(value).unwrap());
        }
        let res = layer
            .layer(service_fn(echo))
            .oneshot(req.body(()).unwrap())
            .await
            .unwrap();
        let header = res.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
        assert_eq!(
            res.extensions().get::<RequestId>().unwrap().as_str(),
            header
        );
        assert_eq!(res.headers().get_all(X_REQUEST_ID).iter().count(), 1);
        (header, res.into_body())
    }

    fn is_generated(id: &str) -> bool {
        uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7)
    }

    #[tokio::test]
    async fn keeps_valid_and_replaces_invalid() {
        let l = RequestIdLayer::new;
        assert_eq!(run(l(), &[("x-request-id", b"abc-1")]).await.0, "abc-1");
        assert_eq!(run(l(), &[("x-correlation-id", b"corr")]).await.0, "corr");
        assert!(is_generated(&run(l(), &[]).await.0));
        let long = [b'a'; 129];
        for bad in [&long[..], b"", b"a b", b"a\tb", b"\xc3\xa9", b"a;b=c"] {
            let (id, _) = run(l(), &[("x-request-id", bad)]).await;
            assert!(is_generated(&id), "{bad:?} gave {id}");
        }
        assert_eq!(
            run(l(), &[("x-request-id", &[b'a'; 128])]).await.0.len(),
            128
        );
    }

    #[tokio::test]
    async fn duplicates_and_aliases() {
        let l = RequestIdLayer::new;
        let dup = [("x-request-id", &b"a"[..]), ("x-request-id", b"b")];
        assert!(is_generated(&run(l(), &dup).await.0));
        let same = [("x-request-id", &b"a"[..]), ("x-request-id", b"a")];
        assert_eq!(run(l(), &same).await.0, "a");
        let both = [("x-correlation-id", &b"c"[..]), ("x-request-id", b"r")];
        assert_eq!(run(l(), &both).await.0, "r");
        // An invalid canonical header is not rescued by the alias.
        let bad_canonical = [("x-correlation-id", &b"c"[..]), ("x-request-id", b"r r")];
        assert!(is_generated(&run(l(), &bad_canonical).await.0));
    }

    #[tokio::test]
    async fn policies() {
        let always = RequestIdLayer::new().policy(IncomingPolicy::AlwaysGenerate);
        let (id, client) = run(always, &[("x-request-id", b"mine")]).await;
        assert!(is_generated(&id));
        assert_eq!(client, "");
        let keep = RequestIdLayer::new().policy(IncomingPolicy::GenerateAndKeep);
        let (id, client) = run(keep.clone(), &[("x-request-id", b"mine")]).await;
        assert!(is_generated(&id));
        assert_eq!(client, "mine");
        let (_, client) = run(keep, &[("x-request-id", b"not mine")]).await;
        assert_eq!(client, "");
    }

    #[tokio::test]
    async fn custom_maker_and_overwrites_inner_header() {
        let layer =
            RequestIdLayer::new().with_maker(|_: &Request<()>| RequestId::new("made").unwrap());
        let svc = layer.layer(service_fn(|_req: Request<()>| async {
            let mut res = Response::new(());
            res.headers_mut()
                .insert(X_REQUEST_ID, HeaderValue::from_static("inner"));
            Ok::<_, Infallible>(res)
        }));
        let res = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID], "made");
    }

    #[tokio::test]
    async fn inner_error_passes_through() {
        let svc = RequestIdLayer::new().layer(service_fn(|_req: Request<()>| async {
            Err::<Response<()>, _>("boom")
        }));
        assert_eq!(svc.oneshot(Request::new(())).await.unwrap_err(), "boom");
    }
}
