//! The whole canonical stack as one value.
//!
//! [`Stack`] applies every tower-ops layer in the canonical order (outermost
//! first): request id, client IP, request log, metrics, security headers, error
//! envelopes, load shedding (off unless asked for), timeout, your authentication ([`Stack::auth`], none by default),
//! rate limit, body limit. Each layer can be replaced or, for the optional ones,
//! switched off, and [`Stack::from_env`] reads every variable of the README's
//! environment table, reporting all invalid values at once.
//!
//! ```
//! # #[cfg(all(feature = "axum", feature = "metrics", feature = "rate-limit"))] {
//! use axum::{Router, routing::get};
//! use tower_ops::route::CaptureRouteLayer;
//! use tower_ops::stack::Stack;
//!
//! # fn build() -> Result<Router, tower_ops::config::ConfigError> {
//! let stack = Stack::from_env()?.for_axum();
//! let app = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .merge(stack.routes()) // /health, /health/live, /health/ready, /metrics (+ /admin/log-level with ADMIN_TOKEN)
//!     .layer(CaptureRouteLayer::new())
//!     .layer(stack);
//! # Ok(app)
//! # }
//! # build().unwrap();
//! # }
//! ```
//!
//! `/health/ready` answers 503 `starting` until serving starts. Serve through
//! [`serve`](crate::serve::serve)`(..).with_shutdown(..)` or
//! [`Shutdown::run`](crate::shutdown::Shutdown::run), with a shutdown built with the stack's
//! readiness (`ShutdownBuilder::from_env()?.readiness(stack.health_registry().readiness().clone())`),
//! and it turns ready as the server starts, then draining on SIGTERM;
//! `examples/stack_from_env.rs` is the whole program. The registries take
//! entries of your own before [`routes`](Stack::routes) hands them out:
//! [`Stack::health_check`] and [`Stack::metrics_registry_mut`]; and
//! [`Stack::error_reporter`] sends each 5xx and panic to an error tracker.
//!
//! Layers that are off cost one branch per request: a switched-off layer keeps
//! its service, in pass-through mode ([`Switchable`]), so the stack's type names
//! the inner service once and the compiler checks code around the stack as
//! quickly as the same layers listed by hand.
//!
//! Every response body of the stack implements `Default`, so tower-http layers
//! compose on either side of it, in one `ServiceBuilder`: `CorsLayer` and
//! `CompressionLayer` outermost (then 413 and 429 answers carry CORS headers, and
//! browsers can read them), `TraceLayer` or the application's own middleware
//! inside.
//!
//! ```
//! # #[cfg(all(feature = "axum", feature = "metrics", feature = "rate-limit"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use axum::{Router, body::Body, routing::post};
//! use http::Request;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http::cors::CorsLayer;
//! use tower_ops::body_limit::BodyLimitLayer;
//! use tower_ops::route::CaptureRouteLayer;
//! use tower_ops::stack::Stack;
//!
//! let stack = Stack::new().body_limit(BodyLimitLayer::new(8)).for_axum();
//! let app: Router = Router::new()
//!     .route("/echo", post(|body: String| async move { body }))
//!     .merge(stack.routes())
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(CorsLayer::permissive())
//!             .layer(stack)
//!             .layer(CaptureRouteLayer::new()),
//!     );
//! let request = Request::post("/echo")
//!     .header("origin", "https://app.example")
//!     .header("content-length", "12")
//!     .body(Body::from("twelve bytes"))
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 413);
//! assert_eq!(response.headers()["access-control-allow-origin"], "*");
//! # }
//! # #[cfg(not(all(feature = "axum", feature = "metrics", feature = "rate-limit")))]
//! # fn main() {}
//! ```

mod optional;

use tower_layer::{Identity, Layer, Stack as Pair};

pub use self::optional::{Optional, Switchable};
use crate::admin::AdminRoutes;
#[cfg(feature = "axum")]
use crate::body_limit::AxumBody;
use crate::body_limit::{AnyBody, BodyLimitLayer};
use crate::client_ip::ClientIpLayer;
use crate::config::ConfigError;
use crate::error::{ErrorLayer, ErrorReporter};
use crate::health::{HealthCheck, HealthRegistry, HealthRegistryBuilder};
use crate::load_shed::ConcurrencyLimitLayer;
use crate::log::RequestLogLayer;
#[cfg(feature = "metrics")]
use crate::metrics::{MetricsExporter, MetricsLayer};
#[cfg(any(feature = "metrics", feature = "rate-limit"))]
use crate::paths::PathSet;
#[cfg(feature = "rate-limit")]
use crate::rate_limit::RateLimitLayer;
use crate::request_id::RequestIdLayer;
use crate::security_headers::SecurityHeadersLayer;
use crate::timeout::TimeoutLayer;

#[cfg(feature = "metrics")]
type MetricsSlot = Optional<MetricsLayer>;
#[cfg(not(feature = "metrics"))]
type MetricsSlot = Identity;

#[cfg(feature = "rate-limit")]
type RateLimitSlot = Optional<RateLimitLayer>;
#[cfg(not(feature = "rate-limit"))]
type RateLimitSlot = Identity;

/// The layers in canonical order, as `tower_layer::Stack` pairs (inner, outer);
/// `A` is the application's authentication ([`Stack::auth`]), `Identity` when
/// there is none.
pub type Layers<M, A = Identity> = Pair<
    BodyLimitLayer<M>,
    Pair<
        RateLimitSlot,
        Pair<
            A,
            Pair<
                Optional<TimeoutLayer>,
                Pair<
                    ConcurrencyLimitLayer,
                    Pair<
                        ErrorLayer,
                        Pair<
                            SecurityHeadersLayer,
                            Pair<
                                MetricsSlot,
                                Pair<
                                    Optional<RequestLogLayer>,
                                    Pair<ClientIpLayer, Pair<RequestIdLayer, Identity>>,
                                >,
                            >,
                        >,
                    >,
                >,
            >,
        >,
    >,
>;

/// Every tower-ops layer in the canonical order; see the [module docs](self).
///
/// `M` is the request body mode ([`Stack::for_axum`]) and `A` the application's
/// authentication layer ([`Stack::auth`]; `Identity`, no layer, by default).
#[derive(Clone, Debug)]
pub struct Stack<M = AnyBody, A = Identity> {
    request_id: RequestIdLayer,
    client_ip: ClientIpLayer,
    log: Option<RequestLogLayer>,
    #[cfg(feature = "metrics")]
    metrics: Option<(MetricsLayer, MetricsExporter)>,
    security_headers: SecurityHeadersLayer,
    error: ErrorLayer,
    load_shed: ConcurrencyLimitLayer,
    timeout: Option<TimeoutLayer>,
    #[cfg(feature = "rate-limit")]
    rate_limit: Option<RateLimitLayer>,
    auth: A,
    body_limit: BodyLimitLayer<M>,
    health: HealthRegistry,
    admin: Option<AdminRoutes>,
}

impl Default for Stack {
    fn default() -> Self {
        Self::new()
    }
}

impl Stack {
    /// Every layer with its defaults: probes (`/health/*`, `/metrics`) are not
    /// measured or limited, rate limit 100 requests a minute per client, body
    /// limit 1 MiB, timeout 30 s, `api()` security headers, a health registry
    /// without checks.
    pub fn new() -> Self {
        Self {
            request_id: RequestIdLayer::new(),
            client_ip: ClientIpLayer::new(),
            log: Some(RequestLogLayer::new()),
            #[cfg(feature = "metrics")]
            metrics: Some(default_metrics(None)),
            security_headers: SecurityHeadersLayer::api(),
            error: ErrorLayer::new(),
            load_shed: ConcurrencyLimitLayer::off(),
            timeout: Some(TimeoutLayer::new(crate::timeout::DEFAULT_TIMEOUT)),
            #[cfg(feature = "rate-limit")]
            rate_limit: Some(
                RateLimitLayer::with_quota(crate::rate_limit::Quota::per_minute(100))
                    .skip_paths(PathSet::probes()),
            ),
            auth: Identity::new(),
            body_limit: BodyLimitLayer::new(crate::body_limit::DEFAULT_LIMIT),
            health: HealthRegistry::builder().build(),
            admin: None,
        }
    }

    /// Reads every variable of the environment table (`TRUSTED_PROXIES`,
    /// `SLOW_REQUEST_MS`, `LOG_FORMAT`, `LOG_LEVEL`, `METRICS_TOKEN`,
    /// `SECURITY_HEADERS`, `ERROR_FORMAT`, `CONCURRENCY_LIMIT`,
    /// `CONCURRENCY_LIMIT_MAX`, `REQUEST_TIMEOUT_MS`, `RATE_LIMIT_*` (with
    /// `RATE_LIMIT_MODE`), `REDIS_URL`, `BODY_LIMIT_BYTES`, `HEALTH_*`,
    /// `SHUTDOWN_*`, `LOG_SAMPLE_RATE`, `ADMIN_TOKEN`) and lists every
    /// invalid value, with the variable, the value and what was expected.
    ///
    /// Logging itself is set up by [`crate::log::init_from_env`], shutdown by
    /// [`crate::shutdown::ShutdownBuilder::from_env`], the server's limits
    /// (`HEADER_READ_TIMEOUT_MS`, `MAX_HEADER_BYTES`, `IDLE_TIMEOUT_MS`,
    /// `MAX_CONNECTIONS`) by [`crate::serve::ServeConfig::from_env`] and OpenTelemetry by
    /// `otel::init_from_env` (feature `otel`); their variables are checked here
    /// too, so one call reports every problem.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let defaults = Self::new();
        let client_ip = errors.take(ClientIpLayer::from_env());
        let log = errors.take(RequestLogLayer::from_env());
        errors.take(crate::log::LogBuilder::from_env());
        errors.take(crate::shutdown::ShutdownBuilder::from_env());
        errors.take(crate::serve::ServeConfig::from_env());
        #[cfg(feature = "otel")]
        errors.take(crate::otel::OtelBuilder::from_env());
        let load_shed = errors.take(ConcurrencyLimitLayer::from_env());
        #[cfg(feature = "metrics")]
        let metrics = {
            let (layer, mut registry) = metrics_parts();
            if let Some(load_shed) = &load_shed {
                load_shed.register(&mut registry);
            }
            errors
                .take(MetricsExporter::from_env(registry))
                .map(|exporter| (layer, exporter))
        };
        let security_headers = errors.take(SecurityHeadersLayer::from_env());
        let error = errors.take(ErrorLayer::from_env());
        let timeout = errors.take(TimeoutLayer::from_env());
        #[cfg(feature = "rate-limit")]
        let rate_limit = errors
            .take(RateLimitLayer::from_env())
            .map(|l| l.skip_paths(PathSet::probes()));
        let body_limit = errors.take(BodyLimitLayer::from_env());
        let health = errors
            .take(HealthRegistryBuilder::from_env())
            .map(|b| b.build());
        let admin = errors.take(AdminRoutes::from_env()).flatten();
        if !errors.problems().is_empty() {
            return Err(errors);
        }
        Ok(Self {
            request_id: defaults.request_id,
            client_ip: client_ip.unwrap_or(defaults.client_ip),
            log: log.or(defaults.log),
            #[cfg(feature = "metrics")]
            metrics: metrics.or(defaults.metrics),
            security_headers: security_headers.unwrap_or(defaults.security_headers),
            error: error.unwrap_or(defaults.error),
            load_shed: load_shed.unwrap_or(defaults.load_shed),
            timeout: timeout.or(defaults.timeout),
            #[cfg(feature = "rate-limit")]
            rate_limit: rate_limit.or(defaults.rate_limit),
            auth: defaults.auth,
            body_limit: body_limit.unwrap_or(defaults.body_limit),
            health: health.unwrap_or(defaults.health),
            admin,
        })
    }
}

impl<A> Stack<AnyBody, A> {
    /// Hands the inner service `axum::body::Body` request bodies, so the stack
    /// can be added with `Router::layer` (feature `axum`).
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn for_axum(self) -> Stack<AxumBody, A> {
        self.rebuild(BodyLimitLayer::for_axum, |auth| auth)
    }
}

#[cfg(feature = "metrics")]
fn metrics_parts() -> (MetricsLayer, prometheus_client::registry::Registry) {
    MetricsLayer::builder()
        .skip_paths(PathSet::probes())
        .trace_exemplars()
        .build()
}

#[cfg(feature = "metrics")]
fn default_metrics(token: Option<String>) -> (MetricsLayer, MetricsExporter) {
    let (layer, registry) = metrics_parts();
    let exporter = MetricsExporter::new(registry);
    let exporter = match token {
        Some(t) => exporter.bearer_token(t),
        None => exporter,
    };
    (layer, exporter)
}

impl<M, A> Stack<M, A> {
    /// Replaces the request id layer.
    pub fn request_id(mut self, layer: RequestIdLayer) -> Self {
        self.request_id = layer;
        self
    }

    /// Replaces the client IP layer (trusted proxies).
    pub fn client_ip(mut self, layer: ClientIpLayer) -> Self {
        self.client_ip = layer;
        self
    }

    /// Replaces the request log layer; `None` switches it off.
    pub fn log(mut self, layer: Option<RequestLogLayer>) -> Self {
        self.log = layer;
        self
    }

    /// Replaces the metrics layer and its exporter (for a registry of your own);
    /// `None` switches metrics off.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, metrics: Option<(MetricsLayer, MetricsExporter)>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Replaces the security headers layer (`SecurityHeadersLayer::off()` adds none).
    pub fn security_headers(mut self, layer: SecurityHeadersLayer) -> Self {
        self.security_headers = layer;
        self
    }

    /// Replaces the error layer.
    pub fn error(mut self, layer: ErrorLayer) -> Self {
        self.error = layer;
        self
    }

    /// Reports every 5xx problem and every panic the stack's error layer answers
    /// to `reporter` (see [`ErrorReporter`] for the contract). Call it after
    /// [`error`](Self::error), which replaces the layer and its reporter.
    pub fn error_reporter(mut self, reporter: ErrorReporter) -> Self {
        self.error = self.error.reporter(reporter);
        self
    }

    /// Sets the load shedder, right inside the error layer (off by default; see
    /// [`load_shed`](crate::load_shed)). With metrics on, its gauge
    /// `http_server_concurrency_limit` joins the stack's registry when that
    /// registry is still the stack's alone (before [`routes`](Self::routes)
    /// hands the exporter out).
    pub fn load_shed(mut self, layer: ConcurrencyLimitLayer) -> Self {
        #[cfg(feature = "metrics")]
        if let Some(registry) = self
            .metrics
            .as_mut()
            .and_then(|(_, exporter)| exporter.registry_mut())
        {
            layer.register(registry);
        }
        self.load_shed = layer;
        self
    }

    /// Replaces the timeout layer; `None` switches it off.
    pub fn timeout(mut self, layer: Option<TimeoutLayer>) -> Self {
        self.timeout = layer;
        self
    }

    /// Replaces the rate limiter; `None` switches it off.
    #[cfg(feature = "rate-limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    pub fn rate_limit(mut self, layer: Option<RateLimitLayer>) -> Self {
        self.rate_limit = layer;
        self
    }

    /// Puts the application's authentication layer in its slot: inside the
    /// timeout, just outside the rate limiter (9 in the canonical order), where it
    /// sees the [`ClientIp`](crate::client_ip::ClientIp) and the request id, and
    /// the limiter sees what it inserts.
    ///
    /// This is the place for a layer that inserts who is calling (a `UserId`
    /// extension) when limits are keyed by user: outside the limiter, a
    /// [`KeyBy::extension`](crate::rate_limit::KeyBy::extension) policy finds its
    /// key (inside the router it would run after the limiter, and the policy would
    /// limit nothing). The layer is still inside the request log, metrics and
    /// error layers, so its own answers (401, 403) are logged, counted and turned
    /// into problem envelopes with the request id, `WWW-Authenticate` kept.
    ///
    /// Requests it answers by itself never reach the limiter, so no policy counts
    /// them: prefer a layer that only identifies (inserts the user when the
    /// credentials are valid, lets other requests through without one) and reject
    /// in the handler or an extractor, so that failed attempts still count
    /// against the per-IP limit. It runs for every request, unmatched paths and
    /// probes included.
    ///
    /// Any layer fits whose service keeps the inner error type, for example
    /// `axum::middleware::from_fn(authenticate)` or a `tower` layer of your own.
    /// Calling it again replaces the previous one; `Identity` (the default) means
    /// no layer. `examples/per_user_limits.rs` shows a whole service.
    ///
    /// ```
    /// # #[cfg(all(feature = "axum", feature = "rate-limit"))] {
    /// use axum::extract::Request;
    /// use axum::middleware::{Next, from_fn};
    /// use axum::response::Response;
    /// use axum::{Router, routing::get};
    /// use tower_ops::rate_limit::{KeyBy, Policy, Quota, RateLimitLayer};
    /// use tower_ops::route::CaptureRouteLayer;
    /// use tower_ops::stack::Stack;
    ///
    /// #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    /// struct UserId(u64);
    ///
    /// /// Identifies the caller; requests without valid credentials go on without a user.
    /// async fn authenticate(mut request: Request, next: Next) -> Response {
    ///     let user = request
    ///         .headers()
    ///         .get("authorization")
    ///         .and_then(|v| v.to_str().ok()?.strip_prefix("Bearer user-")?.parse().ok());
    ///     if let Some(id) = user {
    ///         request.extensions_mut().insert(UserId(id));
    ///     }
    ///     next.run(request).await
    /// }
    ///
    /// let limits = RateLimitLayer::with_quota(Quota::per_minute(100)) // per IP
    ///     .policy(Policy::new("user", Quota::per_minute(5)).key(KeyBy::extension::<UserId>()));
    /// let stack = Stack::new()
    ///     .rate_limit(Some(limits))
    ///     .auth(from_fn(authenticate))
    ///     .for_axum();
    /// let app: Router = Router::new()
    ///     .route("/me", get(|| async { "me" }))
    ///     .layer(CaptureRouteLayer::new())
    ///     .layer(stack);
    /// # }
    /// ```
    pub fn auth<L>(self, layer: L) -> Stack<M, L> {
        self.rebuild(|body_limit| body_limit, |_| layer)
    }

    /// The same stack with the two layers that set its type parameters
    /// replaced: the one place every field is moved across.
    fn rebuild<M2, A2>(
        self,
        body_limit: impl FnOnce(BodyLimitLayer<M>) -> BodyLimitLayer<M2>,
        auth: impl FnOnce(A) -> A2,
    ) -> Stack<M2, A2> {
        Stack {
            request_id: self.request_id,
            client_ip: self.client_ip,
            log: self.log,
            #[cfg(feature = "metrics")]
            metrics: self.metrics,
            security_headers: self.security_headers,
            error: self.error,
            load_shed: self.load_shed,
            timeout: self.timeout,
            #[cfg(feature = "rate-limit")]
            rate_limit: self.rate_limit,
            auth: auth(self.auth),
            body_limit: body_limit(self.body_limit),
            health: self.health,
            admin: self.admin,
        }
    }

    /// Replaces the body limit. It cannot be switched off, because it decides the
    /// request body type the inner service sees; `BodyLimitLayer::new(u64::MAX)`
    /// limits nothing.
    pub fn body_limit(mut self, layer: BodyLimitLayer<M>) -> Self {
        self.body_limit = layer;
        self
    }

    /// Replaces the health registry served by [`routes`](Self::routes).
    pub fn health(mut self, registry: HealthRegistry) -> Self {
        self.health = registry;
        self
    }

    /// Adds a health check to the stack's registry, the one
    /// [`routes`](Self::routes) serves (critical checks also decide
    /// `/health/ready`). Works the same after [`Stack::new`], [`Stack::from_env`]
    /// (whose `HEALTH_*` settings stay) and [`health`](Self::health).
    ///
    /// ```
    /// use tower_ops::health::check_fn;
    /// use tower_ops::stack::Stack;
    ///
    /// # fn build() -> Result<(), tower_ops::config::ConfigError> {
    /// let stack = Stack::from_env()?
    ///     .health_check(check_fn("db", || async { Ok::<_, std::io::Error>(()) }))
    ///     .health_check(check_fn("cache", || async { Ok::<_, std::io::Error>(()) }).non_critical());
    /// # let _ = stack;
    /// # Ok(())
    /// # }
    /// # build().unwrap();
    /// ```
    ///
    /// # Panics
    /// When a check of that name is already registered, or when the registry
    /// has already been handed out (after [`routes`](Self::routes), a clone of
    /// the stack or of [`health_registry`](Self::health_registry)): that copy
    /// would keep serving without the check. Add checks first.
    pub fn health_check(mut self, check: impl HealthCheck) -> Self {
        assert!(
            self.health.is_unshared(),
            "Stack::health_check called after the health registry was handed out \
             (Stack::routes, or a clone); add checks before that"
        );
        self.health = self.health.to_builder().check(check).build();
        self
    }

    /// Serves the operator routes (`/admin/log-level`) from [`routes`](Self::routes);
    /// `None` (the default, and [`Stack::from_env`] without `ADMIN_TOKEN`) serves
    /// none, so `/admin/*` answers 404 like any unknown path.
    ///
    /// ```
    /// use tower_ops::admin::AdminRoutes;
    /// use tower_ops::stack::Stack;
    ///
    /// let stack = Stack::new().admin(Some(AdminRoutes::new("a-long-random-operator-token")));
    /// # let _ = stack;
    /// ```
    pub fn admin(mut self, routes: Option<AdminRoutes>) -> Self {
        self.admin = routes;
        self
    }

    /// The health registry. Give its readiness to
    /// [`ShutdownBuilder::readiness`](crate::shutdown::ShutdownBuilder::readiness):
    /// [`Shutdown::run`](crate::shutdown::Shutdown::run) then marks it ready as
    /// serving starts and draining on SIGTERM.
    pub fn health_registry(&self) -> &HealthRegistry {
        &self.health
    }

    /// The metrics registry behind `/metrics`, to register metrics of your own
    /// (with the re-exported [`metrics::prometheus_client`](crate::metrics::prometheus_client)).
    ///
    /// `None` when metrics are off, or once the exporter has been handed out
    /// ([`routes`](Self::routes), a clone of the stack or of
    /// [`metrics_exporter`](Self::metrics_exporter)): from then on the registry
    /// may be scraped, and it no longer changes. Register before building the
    /// routes.
    ///
    /// ```
    /// use tower_ops::metrics::prometheus_client::metrics::counter::Counter;
    /// use tower_ops::stack::Stack;
    ///
    /// let mut stack = Stack::new();
    /// let orders = Counter::<u64>::default();
    /// if let Some(registry) = stack.metrics_registry_mut() {
    ///     registry.register("orders", "Orders placed", orders.clone());
    /// }
    /// # #[cfg(feature = "axum")]
    /// let routes: axum::Router = stack.routes(); // /metrics now shows orders_total
    /// # #[cfg(feature = "axum")]
    /// assert!(stack.metrics_registry_mut().is_none());
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics_registry_mut(&mut self) -> Option<&mut prometheus_client::registry::Registry> {
        self.metrics.as_mut()?.1.registry_mut()
    }

    /// The `/metrics` exporter, when metrics are on.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics_exporter(&self) -> Option<&MetricsExporter> {
        self.metrics.as_ref().map(|(_, e)| e)
    }

    /// The probe and operator routes: `/health`, `/health/live`, `/health/ready`,
    /// `/metrics` when metrics are on, and `/admin/log-level` when admin routes
    /// are set ([`admin`](Self::admin), `ADMIN_TOKEN`) (feature `axum`).
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn routes<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let router = self.health.router();
        #[cfg(feature = "metrics")]
        let router = match &self.metrics {
            Some((_, exporter)) => router.merge(exporter.clone().into_router()),
            None => router,
        };
        match &self.admin {
            Some(admin) => router.merge(admin.clone().into_router()),
            None => router,
        }
    }
}

impl<M: Clone, A: Clone> Stack<M, A> {
    /// The layers as one `tower_layer::Stack` value, canonical order.
    pub fn layers(&self) -> Layers<M, A> {
        let outer = Pair::new(self.request_id.clone(), Identity::new());
        let outer = Pair::new(self.client_ip.clone(), outer);
        let outer = Pair::new(Optional::new(self.log.clone()), outer);
        #[cfg(feature = "metrics")]
        let metrics = Optional::new(self.metrics.as_ref().map(|(l, _)| l.clone()));
        #[cfg(not(feature = "metrics"))]
        let metrics = Identity::new();
        let outer = Pair::new(metrics, outer);
        let outer = Pair::new(self.security_headers.clone(), outer);
        let outer = Pair::new(self.error.clone(), outer);
        let outer = Pair::new(self.load_shed.clone(), outer);
        let outer = Pair::new(Optional::new(self.timeout.clone()), outer);
        let outer = Pair::new(self.auth.clone(), outer);
        #[cfg(feature = "rate-limit")]
        let rate_limit = Optional::new(self.rate_limit.clone());
        #[cfg(not(feature = "rate-limit"))]
        let rate_limit = Identity::new();
        let outer = Pair::new(rate_limit, outer);
        Pair::new(self.body_limit.clone(), outer)
    }
}

impl<S, M: Clone, A: Clone> Layer<S> for Stack<M, A>
where
    Layers<M, A>: Layer<S>,
{
    type Service = <Layers<M, A> as Layer<S>>::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.layers().layer(inner)
    }
}
