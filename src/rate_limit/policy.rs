use std::fmt;
use std::sync::Arc;

use http::{Extensions, HeaderMap, Method, Request, Uri};

use super::key::KeyBy;
use super::mode::Mode;
use super::quota::Quota;
use crate::paths::PathSet;

/// The parts of a request that predicates, cost functions and keys look at.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`.
    pub fn of<B>(request: &'a Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    /// The method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request extensions.
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

/// The path patterns of [`Policy::paths`]: a [`PathSet`], in the grammar every
/// layer shares.
#[deprecated(note = "use `tower_ops::paths::PathSet`: policies take the one path grammar")]
pub type PathPatterns = PathSet;

type CostFn = Arc<dyn Fn(&RequestHead<'_>) -> u32 + Send + Sync>;

/// One named limit: a quota, what it counts by, and which requests it applies to.
///
/// ```
/// use std::time::Duration;
/// use http::Method;
/// use tower_ops::rate_limit::{KeyBy, Policy, Quota};
///
/// let auth = Policy::new("auth", Quota::per(5, Duration::from_secs(15 * 60)))
///     .paths(["/auth/**", "/login"])
///     .methods([Method::POST])
///     .key(KeyBy::client_ip());
/// assert_eq!(auth.name(), "auth");
/// ```
#[derive(Clone)]
pub struct Policy {
    pub(crate) name: Arc<str>,
    pub(crate) quota: Quota,
    pub(crate) key: KeyBy,
    pub(crate) paths: Option<PathSet>,
    pub(crate) methods: Option<Arc<[Method]>>,
    pub(crate) cost: Option<CostFn>,
    pub(crate) warn_missing_key_after: u32,
    /// `None`: the layer's mode.
    pub(crate) mode: Option<Mode>,
}

/// How many requests a policy keyed by an extension or a closure may see without
/// a key before it warns ([`Policy::warn_missing_key_after`]).
const DEFAULT_MISSING_KEY_WARNING: u32 = 100;

impl Policy {
    /// A policy named `name` (the name shown in the `RateLimit` headers), applying
    /// to every request and keyed by client IP.
    ///
    /// Characters a structured-field string cannot hold (`"`, `\`, control and
    /// non-ASCII characters) are replaced by `_`.
    pub fn new(name: &str, quota: Quota) -> Self {
        let name: String = name
            .chars()
            .map(|c| match c {
                ' '..='~' if c != '"' && c != '\\' => c,
                _ => '_',
            })
            .collect();
        Self {
            name: name.into(),
            quota,
            key: KeyBy::client_ip(),
            paths: None,
            methods: None,
            cost: None,
            warn_missing_key_after: DEFAULT_MISSING_KEY_WARNING,
            mode: None,
        }
    }

    /// What the policy counts requests by (client IP by default).
    pub fn key(mut self, key: KeyBy) -> Self {
        self.key = key;
        self
    }

    /// Applies only to paths matching one of `patterns` (in the grammar of
    /// [`PathSet`]: `/auth/*` is `/auth` and everything below it).
    pub fn paths<I>(mut self, patterns: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.paths = Some(PathSet::new(patterns));
        self
    }

    /// Applies only to these methods.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// How many units of the quota a request costs (1 by default; 0 is read as 1).
    /// A request costing more than the burst size is always rejected.
    pub fn cost<F>(mut self, cost: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> u32 + Send + Sync + 'static,
    {
        self.cost = Some(Arc::new(cost));
        self
    }

    /// With a key from an extension or a closure ([`KeyBy::extension`],
    /// [`KeyBy::from_fn`]): after how many requests in this policy's scope without
    /// a key, and none with one, it logs a warning, once (100 by default; 0 never
    /// warns).
    ///
    /// A policy that never finds its key limits nothing. That is what happens when
    /// the layer that inserts the key (the application's authentication) runs
    /// after the rate limiter, so the warning names the policy and the key type. It
    /// also fires for a scope where no client sent a key in that many requests;
    /// raise the number, or set 0, where most requests are anonymous by design.
    /// Keys from the client IP, a header or the global bucket never warn.
    pub fn warn_missing_key_after(mut self, requests: u32) -> Self {
        self.warn_missing_key_after = requests;
        self
    }

    /// Whether this policy refuses requests over its limit ([`Mode::Enforce`]) or
    /// serves them and marks them ([`Mode::Shadow`]). Without it, the policy takes
    /// the layer's mode ([`RateLimitLayer::mode`](super::RateLimitLayer::mode), itself
    /// `RATE_LIMIT_MODE` with [`RateLimitLayer::from_env`](super::RateLimitLayer::from_env));
    /// with it, the policy keeps this mode whatever the layer's is.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_ops::rate_limit::{KeyBy, Mode, Policy, Quota, RateLimitLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Everything in shadow while the limits are tuned, except the login limit,
    /// // which already protects against brute force.
    /// let limits = RateLimitLayer::new()
    ///     .mode(Mode::Shadow)
    ///     .policy(Policy::new("default", Quota::per_minute(1)).key(KeyBy::global()))
    ///     .policy(
    ///         Policy::new("login", Quota::per_minute(1))
    ///             .paths(["/login"])
    ///             .key(KeyBy::global())
    ///             .mode(Mode::Enforce),
    ///     );
    /// let service = ServiceBuilder::new().layer(limits).service(service_fn(|_req: Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    /// }));
    /// let login = || Request::post("/login").body(());
    /// assert_eq!(service.clone().oneshot(login()?).await?.status(), 200);
    /// // Over both limits: the enforced one refuses.
    /// assert_eq!(service.clone().oneshot(login()?).await?.status(), 429);
    /// // Over the shadow limit only: served.
    /// assert_eq!(service.clone().oneshot(Request::new(())).await?.status(), 200);
    /// # Ok(())
    /// # }
    /// ```
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    #[inline]
    pub(crate) fn applies(&self, head: &RequestHead<'_>) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|m| m.contains(head.method))
            && self
                .paths
                .as_ref()
                .is_none_or(|p| p.contains(head.uri.path()))
    }

    #[inline]
    pub(crate) fn cost_of(&self, head: &RequestHead<'_>) -> u32 {
        self.cost.as_ref().map_or(1, |f| f(head).max(1))
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .field("key", &self.key)
            .field("paths", &self.paths)
            .field("methods", &self.methods)
            .field("cost", &self.cost.as_ref().map(|_| "fn"))
            .field("warn_missing_key_after", &self.warn_missing_key_after)
            .field("mode", &self.mode)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn paths_take_the_one_grammar() {
        let p = Policy::new("api", Quota::per_second(1)).paths(["/health/*", "/users/*/posts"]);
        let applies = |path: &str| {
            let req = Request::get(path).body(()).unwrap();
            p.applies(&RequestHead::of(&req))
        };
        for yes in ["/health", "/health/live", "/health/a/b", "/users/42/posts"] {
            assert!(applies(yes), "{yes}");
        }
        for no in ["/healthz", "/users/4/2/posts", "/other"] {
            assert!(!applies(no), "{no}");
        }
    }

    #[test]
    fn names_are_sf_strings() {
        let p = Policy::new("a\"b\\c\né", Quota::per_second(1));
        assert_eq!(p.name(), "a_b_c__");
    }

    #[test]
    fn scope() {
        let p = Policy::new("auth", Quota::per(5, Duration::from_secs(60)))
            .paths(["/login"])
            .methods([Method::POST])
            .cost(|h| if h.uri().query().is_some() { 3 } else { 0 });
        let req = Request::post("/login?x").body(()).unwrap();
        assert!(p.applies(&RequestHead::of(&req)));
        assert_eq!(p.cost_of(&RequestHead::of(&req)), 3);
        let req = Request::post("/login").body(()).unwrap();
        assert_eq!(p.cost_of(&RequestHead::of(&req)), 1);
        let req = Request::get("/login").body(()).unwrap();
        assert!(!p.applies(&RequestHead::of(&req)));
        let req = Request::post("/other").body(()).unwrap();
        assert!(!p.applies(&RequestHead::of(&req)));
    }
}
