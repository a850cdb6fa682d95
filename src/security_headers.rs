//! Adds security response headers, with presets for APIs and for web pages.
//!
//! [`SecurityHeadersLayer`] sets each header of its preset **only when the handler
//! did not set it**, so a route can still send its own `Content-Security-Policy`
//! or `Cache-Control`. It removes `Server` and `X-Powered-By`, which tell attackers
//! what to look for.
//!
//! | header | [`api()`](SecurityHeadersLayer::api) (default) | [`web()`](SecurityHeadersLayer::web) (helmet 8) |
//! |---|---|---|
//! | `Content-Security-Policy` | `default-src 'none'; frame-ancestors 'none'` | helmet's default policy (`default-src 'self'; ...`) |
//! | `Cross-Origin-Opener-Policy` | `same-origin` | `same-origin` |
//! | `Cross-Origin-Resource-Policy` | `same-origin` | `same-origin` |
//! | `Referrer-Policy` | `no-referrer` | `no-referrer` |
//! | `X-Content-Type-Options` | `nosniff` | `nosniff` |
//! | `X-Frame-Options` | `DENY` | `SAMEORIGIN` |
//! | `Cache-Control` | `no-store` | |
//! | `Origin-Agent-Cluster` | | `?1` |
//! | `X-DNS-Prefetch-Control` | | `off` |
//! | `X-Download-Options` | | `noopen` |
//! | `X-Permitted-Cross-Domain-Policies` | | `none` |
//! | `X-XSS-Protection` | | `0` |
//! | `Strict-Transport-Security` | over HTTPS only | over HTTPS only |
//!
//! `Strict-Transport-Security: max-age=31536000; includeSubDomains` is sent only
//! when the request came over HTTPS: an `https` request URI, or an
//! `X-Forwarded-Proto: https` written by a trusted proxy (the [`ClientIp`]
//! extension says [`via_trusted_proxy`](ClientIp::via_trusted_proxy); put
//! [`ClientIpLayer`](crate::client_ip::ClientIpLayer) outside this layer). Sending
//! it over plain HTTP would pin browsers on `localhost` to HTTPS.
//!
//! Custom values are validated when the layer is built
//! ([`try_header`](SecurityHeadersLayer::try_header),
//! [`try_hsts`](SecurityHeadersLayer::try_hsts)); nothing is parsed or allocated
//! per request: the values are made once and shared.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, header};
//! use tower::ServiceExt;
//! use tower_ops::security_headers::SecurityHeadersLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = SecurityHeadersLayer::api()
//!     .try_header("permissions-policy", "geolocation=()")?
//!     .remove(header::X_FRAME_OPTIONS);
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/cached", get(|| async { ([(header::CACHE_CONTROL, "max-age=60")], "hi") }))
//!     .layer(layer);
//!
//! let response = app.clone().oneshot(Request::get("/").body(Body::empty())?).await?;
//! let headers = response.headers();
//! assert_eq!(headers["x-content-type-options"], "nosniff");
//! assert_eq!(headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
//! assert_eq!(headers["cache-control"], "no-store");
//! assert_eq!(headers["permissions-policy"], "geolocation=()");
//! assert!(headers.get("x-frame-options").is_none());
//! // Plain HTTP: no HSTS.
//! assert!(headers.get("strict-transport-security").is_none());
//!
//! // The handler's own value wins.
//! let response = app.clone().oneshot(Request::get("/cached").body(Body::empty())?).await?;
//! assert_eq!(response.headers()["cache-control"], "max-age=60");
//!
//! // An https request gets HSTS.
//! let response = app.oneshot(Request::get("https://api.example/").body(Body::empty())?).await?;
//! assert_eq!(response.headers()["strict-transport-security"], "max-age=31536000; includeSubDomains");
//!
//! // Invalid values fail when the layer is built, saying why.
//! let err = SecurityHeadersLayer::web()
//!     .try_header("content-security-policy", "default-src self")
//!     .unwrap_err();
//! assert!(err.to_string().contains("'self'"));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use http::header::{self, Entry, HeaderName};
use http::uri::Scheme;
use http::{HeaderMap, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::client_ip::ClientIp;
use crate::config::{self, ConfigError};

type Pair = (HeaderName, HeaderValue);

const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The HSTS value of both presets: one year, subdomains included, no preload.
pub const DEFAULT_HSTS: HeaderValue =
    HeaderValue::from_static("max-age=31536000; includeSubDomains");

static API: [Pair; 7] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    ),
];

static WEB: [Pair; 11] = [
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; base-uri 'self'; font-src 'self' https: data:; \
             form-action 'self'; frame-ancestors 'self'; img-src 'self' data:; \
             object-src 'none'; script-src 'self'; script-src-attr 'none'; \
             style-src 'self' https: 'unsafe-inline'; upgrade-insecure-requests",
        ),
    ),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("origin-agent-cluster"),
        HeaderValue::from_static("?1"),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (
        header::X_DNS_PREFETCH_CONTROL,
        HeaderValue::from_static("off"),
    ),
    (
        HeaderName::from_static("x-download-options"),
        HeaderValue::from_static("noopen"),
    ),
    (
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    ),
    (
        HeaderName::from_static("x-permitted-cross-domain-policies"),
        HeaderValue::from_static("none"),
    ),
    (header::X_XSS_PROTECTION, HeaderValue::from_static("0")),
];

/// The headers to set: a preset borrowed from a `static`, or a customised copy
/// shared by every clone of the layer.
#[derive(Clone, Debug)]
enum Set {
    Static(&'static [Pair]),
    Shared(Arc<[Pair]>),
}

impl Set {
    #[inline]
    fn as_slice(&self) -> &[Pair] {
        match self {
            Set::Static(s) => s,
            Set::Shared(s) => s,
        }
    }

    fn edit(&mut self, f: impl FnOnce(&mut Vec<Pair>)) {
        let mut pairs = self.as_slice().to_vec();
        f(&mut pairs);
        *self = Set::Shared(pairs.into());
    }
}

/// The presets of `SECURITY_HEADERS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Preset {
    /// [`SecurityHeadersLayer::api`] (the default).
    #[default]
    Api,
    /// [`SecurityHeadersLayer::web`].
    Web,
    /// [`SecurityHeadersLayer::off`].
    Off,
}

/// A custom header rejected when the layer was built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidHeader {
    name: String,
    problem: String,
}

impl InvalidHeader {
    fn new(name: &str, problem: impl Into<String>) -> Self {
        Self {
            name: name.chars().take(100).collect(),
            problem: problem.into(),
        }
    }

    /// The header name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid security header {:?}: {}",
            self.name, self.problem
        )
    }
}

impl std::error::Error for InvalidHeader {}

/// Sets security headers on responses. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct SecurityHeadersLayer {
    set: Set,
    hsts: Option<HeaderValue>,
    strip: bool,
}

impl Default for SecurityHeadersLayer {
    /// The [`api()`](Self::api) preset.
    fn default() -> Self {
        Self::api()
    }
}

impl SecurityHeadersLayer {
    /// The OWASP REST preset for JSON APIs (see the table in the module docs).
    pub fn api() -> Self {
        Self {
            set: Set::Static(&API),
            hsts: Some(DEFAULT_HSTS),
            strip: true,
        }
    }

    /// helmet 8's defaults, for services that serve HTML.
    pub fn web() -> Self {
        Self {
            set: Set::Static(&WEB),
            hsts: Some(DEFAULT_HSTS),
            strip: true,
        }
    }

    /// Sets and removes nothing; add headers with [`header`](Self::header).
    pub fn off() -> Self {
        Self {
            set: Set::Static(&[]),
            hsts: None,
            strip: false,
        }
    }

    /// One of the presets.
    pub fn preset(preset: Preset) -> Self {
        match preset {
            Preset::Api => Self::api(),
            Preset::Web => Self::web(),
            Preset::Off => Self::off(),
        }
    }

    /// Reads `SECURITY_HEADERS` (`api`, `web` or `off`; default `api`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let value = config::var("SECURITY_HEADERS", &mut errors);
        let preset = parse_preset(value.as_deref(), &mut errors);
        errors.into_result(Self::preset(preset))
    }

    /// Adds a header, or replaces the preset's value for it. Like the preset's
    /// headers, it is set only when the handler did not set it.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        if name == header::STRICT_TRANSPORT_SECURITY {
            self.hsts = Some(value);
            return self;
        }
        self.set
            .edit(|pairs| match pairs.iter_mut().find(|(n, _)| *n == name) {
                Some(pair) => pair.1 = value,
                None => pairs.push((name, value)),
            });
        self
    }

    /// Like [`header`](Self::header), from text, checked now: the name must be a
    /// valid header name, the value visible ASCII, and a `Content-Security-Policy`
    /// must quote its keywords (`'self'`, not `self`), as helmet 8 requires.
    pub fn try_header(self, name: &str, value: &str) -> Result<Self, InvalidHeader> {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| InvalidHeader::new(name, "not a valid header name"))?;
        let header_value = checked_value(name, value)?;
        if header_name == header::CONTENT_SECURITY_POLICY
            || header_name == header::CONTENT_SECURITY_POLICY_REPORT_ONLY
        {
            check_csp(name, value)?;
        }
        if header_name == header::STRICT_TRANSPORT_SECURITY {
            check_hsts(name, value)?;
        }
        Ok(self.header(header_name, header_value))
    }

    /// Stops setting a header of the preset (or `Strict-Transport-Security`); the
    /// name is compared without regard to case. Unknown names change nothing.
    pub fn remove(mut self, name: impl AsRef<str>) -> Self {
        let name = name.as_ref();
        if name.eq_ignore_ascii_case(header::STRICT_TRANSPORT_SECURITY.as_str()) {
            self.hsts = None;
            return self;
        }
        self.set
            .edit(|pairs| pairs.retain(|(n, _)| !n.as_str().eq_ignore_ascii_case(name)));
        self
    }

    /// The `Strict-Transport-Security` value sent over HTTPS, checked now: it
    /// must carry `max-age=<seconds>`.
    pub fn try_hsts(self, value: &str) -> Result<Self, InvalidHeader> {
        self.try_header("strict-transport-security", value)
    }

    /// Never sends `Strict-Transport-Security` (for example when a proxy sets it).
    pub fn no_hsts(self) -> Self {
        self.remove(header::STRICT_TRANSPORT_SECURITY)
    }

    /// Whether `Server` and `X-Powered-By` are removed (on for the presets).
    pub fn strip_server_headers(mut self, strip: bool) -> Self {
        self.strip = strip;
        self
    }

    /// The headers set on every response (without HSTS), in order.
    pub fn headers(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.set.as_slice().iter().map(|(n, v)| (n, v))
    }
}

fn parse_preset(value: Option<&str>, errors: &mut ConfigError) -> Preset {
    match value {
        None | Some("api") => Preset::Api,
        Some("web") => Preset::Web,
        Some("off") => Preset::Off,
        Some(other) => {
            errors.push("SECURITY_HEADERS", other, "api, web or off");
            Preset::Api
        }
    }
}

fn checked_value(name: &str, value: &str) -> Result<HeaderValue, InvalidHeader> {
    if value.trim().is_empty() {
        return Err(InvalidHeader::new(name, "the value is empty"));
    }
    let ascii = value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
    let value = ascii
        .then(|| HeaderValue::from_str(value).ok())
        .flatten()
        .ok_or_else(|| {
            InvalidHeader::new(
                name,
                "the value may hold only visible ASCII, spaces and tabs (no control characters)",
            )
        })?;
    // A value made from text is a promotable buffer; cloning it once now turns it
    // into a shared one, so per-request clones are a reference count, not a copy.
    drop(value.clone());
    Ok(value)
}

fn check_csp(name: &str, value: &str) -> Result<(), InvalidHeader> {
    const KEYWORDS: [&str; 8] = [
        "self",
        "none",
        "unsafe-inline",
        "unsafe-eval",
        "unsafe-hashes",
        "strict-dynamic",
        "report-sample",
        "wasm-unsafe-eval",
    ];
    for directive in value.split(';') {
        // The first token names the directive; the others are sources.
        for source in directive.split_ascii_whitespace().skip(1) {
            if let Some(k) = KEYWORDS.iter().find(|k| source.eq_ignore_ascii_case(k)) {
                return Err(InvalidHeader::new(
                    name,
                    format!("the keyword {k} must be quoted: '{k}'"),
                ));
            }
        }
    }
    Ok(())
}

fn check_hsts(name: &str, value: &str) -> Result<(), InvalidHeader> {
    let has_max_age = value.split(';').any(|d| {
        let d = d.trim();
        d.get(..8)
            .is_some_and(|k| k.eq_ignore_ascii_case("max-age="))
            && d[8..].trim_matches('"').bytes().all(|b| b.is_ascii_digit())
            && !d[8..].trim_matches('"').is_empty()
    });
    if has_max_age {
        Ok(())
    } else {
        Err(InvalidHeader::new(
            name,
            "expected max-age=<seconds>, such as max-age=31536000",
        ))
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders {
            inner,
            template: Template::of(&self.set),
            hsts: self.hsts.clone(),
            strip: self.strip,
        }
    }
}

/// The service made by [`SecurityHeadersLayer`].
#[derive(Clone, Debug)]
pub struct SecurityHeaders<S> {
    inner: S,
    /// Sent only to requests that came over HTTPS.
    hsts: Option<HeaderValue>,
    /// Whether `Server` and `X-Powered-By` are removed.
    strip: bool,
    /// The headers as a map, built once, that a response with fewer headers of
    /// its own starts from (see [`apply`]).
    template: Template,
}

/// The map of a header set. The presets' maps are built once per process and
/// borrowed for good, so that cloning the service (axum does, per request) and
/// handing the map to each response future count no references; any other set
/// gets its own map, shared by reference count.
#[derive(Clone, Debug)]
enum Template {
    Static(&'static HeaderMap),
    Shared(Arc<HeaderMap>),
}

impl Template {
    fn of(set: &Set) -> Self {
        static API_MAP: LazyLock<HeaderMap> = LazyLock::new(|| template(&API));
        static WEB_MAP: LazyLock<HeaderMap> = LazyLock::new(|| template(&WEB));
        match set {
            Set::Static(pairs) if std::ptr::eq(*pairs, API.as_slice()) => Self::Static(&API_MAP),
            Set::Static(pairs) if std::ptr::eq(*pairs, WEB.as_slice()) => Self::Static(&WEB_MAP),
            _ => Self::Shared(Arc::new(template(set.as_slice()))),
        }
    }
}

impl std::ops::Deref for Template {
    type Target = HeaderMap;

    #[inline]
    fn deref(&self) -> &HeaderMap {
        match self {
            Self::Static(map) => map,
            Self::Shared(map) => map,
        }
    }
}

impl<S> SecurityHeaders<S> {
    /// Wraps `inner` with the [`api()`](SecurityHeadersLayer::api) preset.
    pub fn new(inner: S) -> Self {
        SecurityHeadersLayer::api().layer(inner)
    }

    /// A layer with the [`api()`](SecurityHeadersLayer::api) preset.
    pub fn layer() -> SecurityHeadersLayer {
        SecurityHeadersLayer::api()
    }

    define_inner_service_accessors!();
}

/// Whether the request came over HTTPS, directly or through a trusted proxy.
fn is_https<B>(req: &Request<B>) -> bool {
    if req.uri().scheme() == Some(&Scheme::HTTPS) {
        return true;
    }
    let trusted = req
        .extensions()
        .get::<ClientIp>()
        .is_some_and(ClientIp::via_trusted_proxy);
    // The nearest proxy's word is the last element of the last header.
    trusted
        && req
            .headers()
            .get_all(X_FORWARDED_PROTO)
            .iter()
            .next_back()
            .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
            .is_some_and(|proto| proto.trim_ascii().eq_ignore_ascii_case(b"https"))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecurityHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let hsts = match &self.hsts {
            Some(value) if is_https(&req) => Some(value.clone()),
            _ => None,
        };
        ResponseFuture {
            inner: self.inner.call(req),
            template: self.template.clone(),
            hsts,
            strip: self.strip,
        }
    }
}

pin_project! {
    /// The response future of [`SecurityHeaders`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        template: Template,
        hsts: Option<HeaderValue>,
        strip: bool,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        apply(
            response.headers_mut(),
            this.template,
            this.hsts.take(),
            *this.strip,
        );
        Poll::Ready(Ok(response))
    }
}

/// `set` as a map with room for as many headers again, so that a response's
/// own headers go in without the map growing.
fn template(set: &[Pair]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(set.len() * 2 + 1);
    for (name, value) in set {
        map.append(name.clone(), value.clone());
    }
    map
}

#[inline]
fn apply(headers: &mut HeaderMap, template: &HeaderMap, hsts: Option<HeaderValue>, strip: bool) {
    if headers.len() < template.len() {
        // Fewer headers of its own than we add (the usual API response): start
        // from a copy of ours, which costs no hashing, and put the response's
        // headers over it, so that a header the handler set wins.
        let own = std::mem::replace(headers, template.clone());
        merge(headers, own, strip);
    } else {
        add_missing(headers, template, strip);
    }
    if let Some(value) = hsts
        && let Entry::Vacant(slot) = headers.entry(header::STRICT_TRANSPORT_SECURITY)
    {
        slot.insert(value);
    }
}

/// Puts `own` (the response's headers, every value in order) over `headers`.
fn merge(headers: &mut HeaderMap, own: HeaderMap, strip: bool) {
    let mut current: Option<HeaderName> = None;
    for (name, value) in own {
        match name {
            Some(name) => {
                if strip && (name == header::SERVER || name == X_POWERED_BY) {
                    current = None;
                    continue;
                }
                headers.insert(&name, value);
                current = Some(name);
            }
            // Another value of the same header.
            None => {
                if let Some(name) = &current {
                    headers.append(name, value);
                }
            }
        }
    }
}

/// Adds each header of `set` the response does not have.
fn add_missing(headers: &mut HeaderMap, set: &HeaderMap, strip: bool) {
    if strip {
        headers.remove(header::SERVER);
        headers.remove(X_POWERED_BY);
    }
    // One growth of the map at most, instead of one per header.
    headers.reserve(set.len() + 1);
    for (name, value) in set {
        if let Entry::Vacant(slot) = headers.entry(name) {
            slot.insert(value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::{IpAddr, SocketAddr};

    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::client_ip::ClientIpLayer;

    #[test]
    fn presets_borrow_one_map_and_custom_sets_get_their_own() {
        let map = |layer: &SecurityHeadersLayer| layer.layer(()).template;
        for (layer, pairs) in [
            (SecurityHeadersLayer::api(), &API[..]),
            (SecurityHeadersLayer::web(), &WEB[..]),
        ] {
            let (a, b) = (map(&layer), map(&layer.clone()));
            match (&a, &b) {
                (Template::Static(a), Template::Static(b)) => assert!(std::ptr::eq(*a, *b)),
                other => panic!("a preset got its own map: {other:?}"),
            }
            assert_eq!(*a, template(pairs));
        }
        let custom = SecurityHeadersLayer::api().header(
            HeaderName::from_static("x-custom"),
            HeaderValue::from_static("1"),
        );
        let own = map(&custom);
        assert!(matches!(own, Template::Shared(_)));
        assert_eq!(own.get("x-custom").unwrap(), "1");
        assert_eq!(own.len(), API.len() + 1);
        assert!(matches!(
            map(&SecurityHeadersLayer::off()),
            Template::Shared(_)
        ));
    }

    async fn run(
        layer: SecurityHeadersLayer,
        req: Request<()>,
        inner: &[(&'static str, &'static str)],
    ) -> HeaderMap {
        let inner: Vec<_> = inner.to_vec();
        let svc = layer.layer(service_fn(move |_: Request<()>| {
            let mut res = Response::new(());
            for (n, v) in &inner {
                res.headers_mut().append(*n, HeaderValue::from_static(v));
            }
            async move { Ok::<_, Infallible>(res) }
        }));
        svc.oneshot(req).await.unwrap().headers().clone()
    }

    fn get(uri: &str) -> Request<()> {
        Request::get(uri).body(()).unwrap()
    }

    #[tokio::test]
    async fn api_preset() {
        let h = run(
            SecurityHeadersLayer::api(),
            get("/"),
            &[("server", "hyper"), ("x-powered-by", "x")],
        )
        .await;
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(
            h["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["cross-origin-opener-policy"], "same-origin");
        assert_eq!(h["cross-origin-resource-policy"], "same-origin");
        assert!(h.get("server").is_none() && h.get("x-powered-by").is_none());
        assert!(h.get("strict-transport-security").is_none());
        assert_eq!(h.len(), 7);
    }

    #[tokio::test]
    async fn web_preset_is_helmet_8() {
        let h = run(SecurityHeadersLayer::web(), get("https://x/"), &[]).await;
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'; base-uri 'self';")
        );
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .ends_with("upgrade-insecure-requests")
        );
        assert_eq!(h["origin-agent-cluster"], "?1");
        assert_eq!(h["x-frame-options"], "SAMEORIGIN");
        assert_eq!(h["x-xss-protection"], "0");
        assert_eq!(h["x-dns-prefetch-control"], "off");
        assert_eq!(h["x-download-options"], "noopen");
        assert_eq!(h["x-permitted-cross-domain-policies"], "none");
        assert_eq!(
            h["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        assert!(h.get("cross-origin-embedder-policy").is_none());
        assert!(h.get("cache-control").is_none());
        assert_eq!(h.len(), 12);
    }

    #[tokio::test]
    async fn off_does_nothing() {
        let h = run(
            SecurityHeadersLayer::off(),
            get("https://x/"),
            &[("server", "s")],
        )
        .await;
        assert_eq!(h.len(), 1);
    }

    #[tokio::test]
    async fn handler_values_win_and_are_not_duplicated() {
        let inner = [
            ("cache-control", "max-age=5"),
            ("content-security-policy", "img-src 'self'"),
            ("strict-transport-security", "max-age=5"),
        ];
        let h = run(SecurityHeadersLayer::api(), get("https://x/"), &inner).await;
        assert_eq!(h["cache-control"], "max-age=5");
        assert_eq!(h.get_all("content-security-policy").iter().count(), 1);
        assert_eq!(h["content-security-policy"], "img-src 'self'");
        assert_eq!(h["strict-transport-security"], "max-age=5");
    }

    /// Both ways of adding headers (starting from ours when the response has
    /// fewer, adding ours when it has more) give the same result: every value
    /// of the handler's headers kept in order, ours only where it set none,
    /// `Server` and `X-Powered-By` gone in every copy.
    #[tokio::test]
    async fn few_or_many_handler_headers_give_the_same_rules() {
        let few: &[(&str, &str)] = &[
            ("set-cookie", "a=1"),
            ("server", "hyper"),
            ("set-cookie", "b=2"),
            ("server", "again"),
            ("x-frame-options", "SAMEORIGIN"),
            ("vary", "accept"),
            ("vary", "origin"),
        ];
        let mut many = few.to_vec();
        for extra in ["x-a", "x-b", "x-c", "x-d", "x-e", "x-f", "x-g", "x-h"] {
            many.push((extra, "1"));
        }
        // 3 and 6 headers take the first way, 7 and 15 the second.
        for inner in [&few[..3], &few[..6], few, &many[..]] {
            let h = run(SecurityHeadersLayer::api(), get("/"), inner).await;
            let all = |name: &str| -> Vec<&str> {
                h.get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect()
            };
            assert!(h.get("server").is_none(), "{inner:?}");
            for (name, _) in inner.iter().filter(|(n, _)| *n != "server") {
                let sent: Vec<&str> = inner
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| *v)
                    .collect();
                assert_eq!(all(name), sent, "{name} of {inner:?}");
            }
            if !inner.iter().any(|(n, _)| *n == "x-frame-options") {
                assert_eq!(all("x-frame-options"), ["DENY"]);
            }
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert_eq!(h["cross-origin-resource-policy"], "same-origin");
            let ours = 7;
            let theirs = inner.iter().filter(|(n, _)| *n != "server").count();
            let overlap = usize::from(inner.iter().any(|(n, _)| *n == "x-frame-options"));
            assert_eq!(h.len(), ours + theirs - overlap, "{h:?}");
        }
    }

    #[tokio::test]
    async fn hsts_only_over_https_from_a_trusted_proxy() {
        let via = |proxy: &str, proto: &[&'static str]| {
            let mut req = get("/");
            for p in proto {
                req.headers_mut()
                    .append("x-forwarded-proto", HeaderValue::from_static(p));
            }
            req.extensions_mut()
                .insert(proxy.parse::<SocketAddr>().unwrap());
            let ip = ClientIpLayer::new()
                .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
                .resolve(&req)
                .unwrap();
            req.extensions_mut().insert(ip);
            req
        };
        let hsts = |h: HeaderMap| h.contains_key("strict-transport-security");
        let l = SecurityHeadersLayer::api;
        assert!(hsts(run(l(), via("10.0.0.1:1", &["https"]), &[]).await));
        assert!(hsts(run(l(), via("10.0.0.1:1", &["HTTPS "]), &[]).await));
        assert!(hsts(
            run(l(), via("10.0.0.1:1", &["http, https"]), &[]).await
        ));
        assert!(!hsts(
            run(l(), via("10.0.0.1:1", &["https, http"]), &[]).await
        ));
        assert!(!hsts(
            run(l(), via("10.0.0.1:1", &["https", "http"]), &[]).await
        ));
        assert!(!hsts(run(l(), via("10.0.0.1:1", &[]), &[]).await));
        // A client writing the header itself is not believed.
        assert!(!hsts(run(l(), via("203.0.113.5:1", &["https"]), &[]).await));
        let mut untrusted = get("/");
        untrusted
            .headers_mut()
            .insert("x-forwarded-proto", HeaderValue::from_static("https"));
        untrusted
            .extensions_mut()
            .insert(ClientIp::from_peer(IpAddr::from([127, 0, 0, 1])));
        assert!(!hsts(run(l(), untrusted, &[]).await));
        assert!(!hsts(run(l().no_hsts(), get("https://x/"), &[]).await));
        let custom = l().try_hsts("max-age=60; preload").unwrap();
        assert_eq!(
            run(custom, get("https://x/"), &[]).await["strict-transport-security"],
            "max-age=60; preload"
        );
    }

    #[tokio::test]
    async fn builder_adds_overrides_and_removes() {
        let layer = SecurityHeadersLayer::api()
            .try_header("X-Frame-Options", "SAMEORIGIN")
            .unwrap()
            .try_header("permissions-policy", "camera=()")
            .unwrap()
            .remove(header::CACHE_CONTROL)
            .strip_server_headers(false);
        let h = run(layer.clone(), get("/"), &[("server", "s")]).await;
        assert_eq!(h["x-frame-options"], "SAMEORIGIN");
        assert_eq!(h["permissions-policy"], "camera=()");
        assert!(h.get("cache-control").is_none());
        assert_eq!(h["server"], "s");
        assert_eq!(layer.headers().count(), 7);
        // The presets themselves are untouched.
        assert_eq!(
            run(SecurityHeadersLayer::api(), get("/"), &[]).await["x-frame-options"],
            "DENY"
        );
    }

    #[test]
    fn invalid_values_are_rejected_at_build_time() {
        let l = SecurityHeadersLayer::api;
        for (name, value, needle) in [
            ("bad name", "x", "header name"),
            ("x-a", "line\r\nbreak", "control"),
            ("x-a", "é", "visible ASCII"),
            ("x-a", "  ", "empty"),
            ("content-security-policy", "default-src self", "'self'"),
            (
                "content-security-policy",
                "script-src 'self' unsafe-inline",
                "'unsafe-inline'",
            ),
            (
                "Content-Security-Policy-Report-Only",
                "default-src NONE",
                "'none'",
            ),
            ("strict-transport-security", "includeSubDomains", "max-age"),
            ("strict-transport-security", "max-age=-1", "max-age"),
        ] {
            let err = l().try_header(name, value).unwrap_err();
            assert!(err.to_string().contains(needle), "{name}: {err}");
        }
        // Host names and hashes that merely contain a keyword are fine.
        l().try_header(
            "content-security-policy",
            "default-src 'self' self.example.com; img-src 'none'",
        )
        .unwrap();
        assert!(l().try_hsts("max-age=\"31536000\"").is_ok());
    }

    #[test]
    fn env_values() {
        let mut errors = ConfigError::default();
        for (v, p, n) in [
            (None, Preset::Api, 7),
            (Some("api"), Preset::Api, 7),
            (Some("web"), Preset::Web, 11),
            (Some("off"), Preset::Off, 0),
        ] {
            assert_eq!(parse_preset(v, &mut errors), p);
            assert_eq!(SecurityHeadersLayer::preset(p).headers().count(), n);
        }
        assert!(errors.problems().is_empty());
        assert_eq!(parse_preset(Some("strict"), &mut errors), Preset::Api);
        assert!(
            errors
                .to_string()
                .contains("SECURITY_HEADERS=\"strict\": expected api, web or off")
        );
    }
}
