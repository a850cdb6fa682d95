//! The route template of a response, for layers outside the router.
//!
//! Layers such as logging and metrics wrap the whole router, so they run before
//! routing and only see the raw path (`/users/8271`). Labelling by raw path lets a
//! scanner create unbounded series; labelling by template (`/users/{id}`) does not.
//!
//! [`MatchedRoute`] carries the template in **response** extensions. With axum,
//! [`CaptureRouteLayer`] copies axum's `MatchedPath` into it. It must run *after*
//! routing, so add it with `Router::layer` (which wraps each route), not around the
//! router:
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{Router, routing::get};
//! use tower_ops::route::CaptureRouteLayer;
//!
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(CaptureRouteLayer::new());
//! # }
//! ```
//!
//! A request that matched no route (the fallback, a 404) gets no `MatchedRoute`:
//! outer layers treat absence as "unmatched" and use one shared label for it. Other
//! frameworks can insert `MatchedRoute` themselves, for example from a
//! `&'static str` with [`MatchedRoute::from_static`].
//!
//! gRPC calls (`content-type: application/grpc*`, as tonic serves them) need
//! nothing: without a `MatchedRoute`, the log and metrics layers use the call's
//! method path, `/<package>.<Service>/<Method>`, as its route. Only paths of that
//! form count (identifiers of `[A-Za-z0-9_]`, a package, at most 256 bytes), and a
//! call the server answers with `UNIMPLEMENTED` (grpc-status 12, no such method)
//! stays unmatched, so clients cannot add routes of their own; the metrics layer's
//! series cap bounds the rest.

use std::fmt;
use std::sync::Arc;

/// The route template that served a response (`/users/{id}`).
#[derive(Clone)]
pub struct MatchedRoute(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
    #[cfg(feature = "axum")]
    Axum(axum::extract::MatchedPath),
    /// A gRPC method path, shared with the request's URI.
    Grpc(http::uri::PathAndQuery),
}

impl MatchedRoute {
    /// A route known at compile time.
    pub const fn from_static(route: &'static str) -> Self {
        Self(Repr::Static(route))
    }

    /// A route from a shared string.
    pub fn new(route: impl Into<Arc<str>>) -> Self {
        Self(Repr::Shared(route.into()))
    }

    /// The route as known from the request itself: a `MatchedRoute` request
    /// extension, or (feature `axum`) the `MatchedPath` axum sets before calling
    /// layers added with `Router::layer`. Layers use it for responses they produce
    /// themselves, which never reach [`CaptureRouteLayer`].
    pub fn from_extensions(extensions: &http::Extensions) -> Option<Self> {
        if let Some(route) = extensions.get::<MatchedRoute>() {
            return Some(route.clone());
        }
        #[cfg(feature = "axum")]
        if let Some(path) = extensions.get::<axum::extract::MatchedPath>() {
            return Some(Self(Repr::Axum(path.clone())));
        }
        None
    }

    /// The route of a request for the layers outside the router:
    /// [`from_extensions`](Self::from_extensions), else the method path of a
    /// gRPC call.
    pub(crate) fn of_request<B>(request: &http::Request<B>) -> Option<Self> {
        Self::from_extensions(request.extensions()).or_else(|| {
            crate::grpc::method_path(request.headers(), request.uri()).map(|p| Self(Repr::Grpc(p)))
        })
    }

    /// The route of a response: its own `MatchedRoute`, else the one known from
    /// the request, except for a gRPC `UNIMPLEMENTED` answer (unmatched).
    pub(crate) fn of_response<'a>(
        extensions: &'a http::Extensions,
        headers: &http::HeaderMap,
        from_request: Option<&'a MatchedRoute>,
    ) -> Option<&'a MatchedRoute> {
        if let Some(route) = extensions.get::<MatchedRoute>() {
            return Some(route);
        }
        from_request.filter(|_| !crate::grpc::is_unimplemented(headers))
    }

    /// The template as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
            #[cfg(feature = "axum")]
            Repr::Axum(p) => p.as_str(),
            Repr::Grpc(p) => p.path(),
        }
    }
}

impl PartialEq for MatchedRoute {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for MatchedRoute {}

impl std::hash::Hash for MatchedRoute {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for MatchedRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MatchedRoute").field(&self.as_str()).finish()
    }
}

impl fmt::Display for MatchedRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use self::capture::{CaptureRoute, CaptureRouteFuture, CaptureRouteLayer};

#[cfg(feature = "axum")]
mod capture {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use axum::extract::MatchedPath;
    use http::{Request, Response};
    use pin_project_lite::pin_project;
    use tower_layer::Layer;
    use tower_service::Service;

    use super::{MatchedRoute, Repr};

    /// Copies axum's `MatchedPath` into a [`MatchedRoute`] response extension.
    /// Add it with `Router::layer`; see the [module docs](super).
    #[derive(Clone, Copy, Debug, Default)]
    pub struct CaptureRouteLayer;

    impl CaptureRouteLayer {
        /// The layer.
        pub fn new() -> Self {
            Self
        }
    }

    impl<S> Layer<S> for CaptureRouteLayer {
        type Service = CaptureRoute<S>;

        fn layer(&self, inner: S) -> Self::Service {
            CaptureRoute { inner }
        }
    }

    /// The service made by [`CaptureRouteLayer`].
    #[derive(Clone, Copy, Debug)]
    pub struct CaptureRoute<S> {
        inner: S,
    }

    impl<S> CaptureRoute<S> {
        /// Wraps `inner`.
        pub fn new(inner: S) -> Self {
            Self { inner }
        }

        /// The layer: [`CaptureRouteLayer::new`].
        pub fn layer() -> CaptureRouteLayer {
            CaptureRouteLayer::new()
        }

        define_inner_service_accessors!();
    }

    impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CaptureRoute<S>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = CaptureRouteFuture<S::Future>;

        #[inline]
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
            let route = req.extensions().get::<MatchedPath>().cloned();
            CaptureRouteFuture {
                inner: self.inner.call(req),
                route,
            }
        }
    }

    pin_project! {
        /// The response future of [`CaptureRoute`].
        pub struct CaptureRouteFuture<F> {
            #[pin]
            inner: F,
            route: Option<MatchedPath>,
        }
    }

    impl<F, B, E> Future for CaptureRouteFuture<F>
    where
        F: Future<Output = Result<Response<B>, E>>,
    {
        type Output = F::Output;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.project();
            let mut response = std::task::ready!(this.inner.poll(cx))?;
            if let Some(route) = this.route.take() {
                response
                    .extensions_mut()
                    .insert(MatchedRoute(Repr::Axum(route)));
            }
            Poll::Ready(Ok(response))
        }
    }
}

#[cfg(all(test, feature = "axum"))]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::Request;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn captures_template_not_path() {
        let app = Router::new()
            .route("/users/{id}", get(|| async { "u" }))
            .nest(
                "/api",
                Router::new().route("/items/{item}", get(|| async { "i" })),
            )
            .layer(CaptureRouteLayer::new());
        for (path, want) in [
            ("/users/42", Some("/users/{id}")),
            ("/api/items/x", Some("/api/items/{item}")),
            ("/nope/../etc", None),
            ("/users/42/extra", None),
        ] {
            let res = app
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let got = res
                .extensions()
                .get::<MatchedRoute>()
                .map(|r| r.as_str().to_owned());
            assert_eq!(got.as_deref(), want, "{path}");
        }
    }

    #[test]
    fn constructors() {
        assert_eq!(MatchedRoute::from_static("/a").as_str(), "/a");
        assert_eq!(MatchedRoute::new("/b").to_string(), "/b");
        assert_eq!(MatchedRoute::new("/a"), MatchedRoute::new("/a"));
    }
}
