//! The `/metrics` endpoint.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use tower_service::Service;

use crate::bearer;
use crate::body::{EndpointBody, ResponseBody};
use crate::config::{self, ConfigError};
use crate::error::{Problem, Renderer};

/// The content type of OpenMetrics text 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The body of [`MetricsExporter`] responses: [`EndpointBody`], the same type as
/// the health probes' [`HealthBody`](crate::health::HealthBody).
pub type ExporterBody = EndpointBody;

/// A service answering `GET /metrics` with the OpenMetrics text of a registry.
///
/// With a bearer token ([`bearer_token`](Self::bearer_token) or `METRICS_TOKEN`
/// through [`from_env`](Self::from_env)), requests must carry
/// `Authorization: Bearer <token>` (scheme in any case, token compared in constant
/// time); others get a 401 problem with `WWW-Authenticate: Bearer`. Methods other
/// than `GET` and `HEAD` get a 405 problem. It answers on any path: mount it where
/// the scraper expects it.
#[derive(Clone)]
pub struct MetricsExporter {
    registry: Arc<Registry>,
    token: Option<Arc<[u8]>>,
    renderer: Renderer,
}

impl fmt::Debug for MetricsExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsExporter")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("renderer", &self.renderer)
            .finish_non_exhaustive()
    }
}

impl MetricsExporter {
    /// Exposes `registry` without authentication.
    pub fn new(registry: impl Into<Arc<Registry>>) -> Self {
        Self {
            registry: registry.into(),
            token: None,
            renderer: Renderer::default(),
        }
    }

    /// Exposes `registry`, requiring the bearer token of `METRICS_TOKEN` when it is
    /// set, and rendering problems as `ERROR_FORMAT` says.
    pub fn from_env(registry: impl Into<Arc<Registry>>) -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let renderer = Renderer::from_env().unwrap_or_else(|e| {
            errors.merge(e);
            Renderer::default()
        });
        let token = config::var("METRICS_TOKEN", &mut errors);
        if let Some(t) = &token
            && !bearer::valid_token(t.as_bytes())
        {
            errors.push(
                "METRICS_TOKEN",
                "<redacted>",
                "visible ASCII characters without spaces",
            );
        }
        let mut exporter = Self::new(registry).renderer(renderer);
        exporter.token = token.map(|t| t.into_bytes().into());
        errors.into_result(exporter)
    }

    /// Requires `Authorization: Bearer <token>`. A token with spaces or non-ASCII
    /// characters can never match.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into().into_bytes().into());
        self
    }

    /// How the 401 and 405 problems are rendered.
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.renderer = renderer;
        self
    }

    /// The exposed registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The exposed registry, to register metrics of your own, while this
    /// exporter is its only owner.
    ///
    /// `None` once the exporter has been cloned: a router serving it
    /// (`into_router`, `Stack::routes`) holds a clone, so nothing can be added to a
    /// registry that may already be scraped, and every scrape shows the same set
    /// of families. Register everything before mounting the exporter.
    ///
    /// ```
    /// use tower_ops::metrics::MetricsExporter;
    /// use tower_ops::metrics::prometheus_client::metrics::counter::Counter;
    /// use tower_ops::metrics::prometheus_client::registry::Registry;
    ///
    /// let mut exporter = MetricsExporter::new(Registry::default());
    /// let orders = Counter::<u64>::default();
    /// let registry = exporter.registry_mut().expect("not shared yet");
    /// registry.register("orders", "Orders placed", orders.clone());
    ///
    /// let serving = exporter.clone(); // what mounting it does
    /// assert!(exporter.registry_mut().is_none());
    /// # drop(serving);
    /// ```
    pub fn registry_mut(&mut self) -> Option<&mut Registry> {
        Arc::get_mut(&mut self.registry)
    }

    /// Answers one request (the work of [`Service::call`]).
    pub fn respond(&self, method: &Method, headers: &HeaderMap) -> Response<ExporterBody> {
        if let Some(token) = &self.token
            && !bearer::authorized(headers, token)
        {
            return bearer::unauthorized(&self.renderer, "metrics");
        }
        if method != Method::GET && method != Method::HEAD {
            let mut res = self
                .renderer
                .response(Problem::new(StatusCode::METHOD_NOT_ALLOWED).rejected_by("metrics"));
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        let mut text = String::with_capacity(8 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "encoding the metrics registry failed");
            return self
                .renderer
                .response(Problem::internal(e).rejected_by("metrics"));
        }
        let body = if method == Method::HEAD {
            ResponseBody::empty()
        } else {
            ResponseBody::full(text)
        };
        let mut res = Response::new(body);
        let headers = res.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    /// A router serving this exporter at `/metrics`, to merge into an app.
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn into_router<S>(self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        axum::Router::new().route_service("/metrics", self)
    }
}

impl<B> Service<Request<B>> for MetricsExporter {
    type Response = Response<ExporterBody>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(req.method(), req.headers())))
    }
}
