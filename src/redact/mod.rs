//! Secrets out of logs: a [`Redactor`] that censors headers, query strings, JSON
//! bodies and free text before they are written anywhere.
//!
//! Rules are compiled once, when the redactor is built; the redactor is then a
//! cheap handle (an `Arc`) to clone into every layer that logs. It never changes
//! what it is given: it returns a new rendering, and borrows the input
//! ([`Cow::Borrowed`]) when there was nothing to censor, so the common case does
//! not allocate.
//!
//! What is censored, by default:
//! - **Headers** `authorization`, `proxy-authorization`, `cookie`, `set-cookie`,
//!   `x-api-key`, `x-auth-token`, `x-csrf-token`, `x-xsrf-token` and the like, plus
//!   every header whose name matches a key rule (`x-my-secret`). Each value of a
//!   repeated header is censored on its own; the authentication scheme, cookie
//!   names and `Set-Cookie` attributes stay readable.
//! - **Keys** of query parameters and JSON members, at any depth. Names are
//!   compared case-insensitively with `-` and `_` ignored (and percent-decoded in
//!   queries), so `password`, `Pass-Word`, `API_KEY`, `apiKey` and `api-key` all
//!   match. A key matches when it is one of the names (`pwd`, `pin`, `ssn`, `cvv`,
//!   `card_number`, `session`, `cookie`, `access_token`, `id_token`, ...) or
//!   contains one of the fragments (`password`, `passwd`, `passphrase`, `secret`,
//!   `token`, `apikey`, `privatekey`, `accesskey`, `credential`, `authorization`).
//!   Query strings also censor `code` (OAuth), `sig` and presigned-URL signatures.
//! - **Values** of every other string, whatever the key, when they look like a
//!   secret ([`ValuePattern`]): JWTs, `Bearer` and `Basic` credentials, AWS access
//!   key ids, PEM private keys, payment card numbers confirmed by Luhn, well-known
//!   token prefixes, `password=...` pairs and URL passwords. JSON held inside a JSON
//!   string is parsed and redacted too.
//!
//! `null`, `true`, `false` and `""` are kept under sensitive keys: they carry no
//! secret and say something useful ("no password was sent").
//!
//! # Example
//!
//! ```
//! use http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
//! use tower_ops::redact::Redactor;
//!
//! let redactor = Redactor::default();
//!
//! // Query strings, from a request's URI.
//! let uri: Uri = "/login/callback?code=0x5ecret&state=abc&apiKey=k-1".parse().unwrap();
//! assert_eq!(
//!     redactor.redact_path_and_query(&uri),
//!     "/login/callback?code=[REDACTED]&state=abc&apiKey=[REDACTED]"
//! );
//!
//! // JSON bodies: compact, valid JSON with the secrets censored, at any depth.
//! let body = br#"{"user": "ada", "Pass-Word": "hunter2", "cards": [{"cvv": 123}]}"#;
//! assert_eq!(
//!     redactor.redact_json_bytes(body).to_string(),
//!     r#"{"user":"ada","Pass-Word":"[REDACTED]","cards":[{"cvv":"[REDACTED]"}]}"#
//! );
//! // Anything that is not JSON is never echoed.
//! assert_eq!(redactor.redact_json_bytes(b"password=hunter2").to_string(), "<unparsed body: 16 bytes>");
//!
//! // Headers, through an allow-list.
//! let mut headers = HeaderMap::new();
//! headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc.def"));
//! headers.insert(header::USER_AGENT, HeaderValue::from_static("curl/8"));
//! headers.insert(header::HOST, HeaderValue::from_static("api.internal"));
//! let allow = [header::AUTHORIZATION, header::USER_AGENT];
//! let logged: Vec<(&HeaderName, String)> = redactor
//!     .redact_headers(&headers, &allow)
//!     .map(|(name, value)| (name, value.into_owned()))
//!     .collect();
//! assert_eq!(
//!     logged,
//!     [(&header::AUTHORIZATION, "Bearer [REDACTED]".to_owned()), (&header::USER_AGENT, "curl/8".to_owned())]
//! );
//!
//! // Free text, such as an error chain or a panic message.
//! let message = "connect postgres://app:s3cret@db/x failed; token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.sig";
//! assert_eq!(
//!     redactor.redact_text(message),
//!     "connect postgres://app:[REDACTED]@db/x failed; token=[REDACTED]"
//! );
//! ```
//!
//! # Your own rules
//!
//! Rules are fixed in code when the redactor is built, never read from requests.
//!
//! ```
//! use http::HeaderName;
//! use tower_ops::redact::{Censor, Redactor, ValuePattern};
//!
//! let redactor = Redactor::builder()
//!     .key("tenant_pin")                 // an exact name, normalised like the rest
//!     .key_containing("iban")            // any key containing it
//!     .without_key("token")              // drop a default fragment: `max_tokens` stays
//!     .header(HeaderName::from_static("x-internal-auth"))
//!     .token_prefix("acme_live_")        // a value pattern for your own tokens
//!     .without_pattern(ValuePattern::PaymentCard)
//!     .censor(Censor::Remove)
//!     .build();
//!
//! let out = redactor.redact_json_bytes(br#"{"Tenant-PIN": 1234, "max_tokens": 50, "access_token": "t"}"#);
//! assert_eq!(out.as_json(), Some(r#"{"max_tokens":50}"#));
//! assert_eq!(
//!     redactor.redact_text("key acme_live_0123456789abcdefXYZ"),
//!     "key [REDACTED]"
//! );
//! ```
//!
//! # Hostile bodies
//!
//! [`Redactor::redact_json_bytes`] walks the body iteratively (deep nesting cannot
//! overflow the stack) and gives up with a placeholder, never the raw text, when
//! the body is over the byte cap (1 MiB), nested deeper than 128 levels, has more
//! than 100,000 values, is not UTF-8 or is not JSON. See [`RedactorBuilder::max_body_bytes`],
//! [`RedactorBuilder::max_depth`] and [`RedactorBuilder::max_nodes`].

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use http::Uri;
use http::header::{HeaderMap, HeaderName, HeaderValue};

mod censor;
mod header;
mod json;
mod query;
mod rewrite;
mod rules;
mod text;

pub use censor::{Censor, HashKey, REDACTED};
pub use text::ValuePattern;

use rules::KeyRules;
use text::Patterns;

/// Censors secrets in headers, query strings, JSON bodies and free text.
///
/// Build one with [`Redactor::default`] or [`Redactor::builder`], then clone it
/// freely: clones share the compiled rules. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Redactor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    headers: Vec<HeaderName>,
    not_headers: Vec<HeaderName>,
    keys: KeyRules,
    query_keys: KeyRules,
    patterns: Patterns,
    censor: censor::Compiled,
    limits: Limits,
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    max_body_bytes: usize,
    max_depth: usize,
    max_nodes: usize,
}

impl Inner {
    /// Whether a raw key (not yet normalised) is sensitive; `in_query` adds the
    /// names that only count as query parameters.
    fn key_matches(&self, key: &[u8], in_query: bool) -> bool {
        self.keys.matches(key) || (in_query && self.query_keys.matches(key))
    }
}

impl Default for Redactor {
    /// The default rules (see the [module docs](self)), compiled once per process.
    fn default() -> Self {
        static DEFAULT: OnceLock<Redactor> = OnceLock::new();
        DEFAULT
            .get_or_init(|| RedactorBuilder::new().build())
            .clone()
    }
}

/// The redactor installed for the process, if any ([`Redactor::install`]).
static INSTALLED: RwLock<Option<Redactor>> = RwLock::new(None);

impl Redactor {
    /// Makes this the process's redactor: the one every output without a
    /// redactor of its own uses. That is the error layer's logged error texts
    /// and panics, error reports, health check messages, and the default of
    /// [`RequestLogLayer`](crate::log::RequestLogLayer) (built after the call;
    /// [`RequestLogLayer::redactor`](crate::log::RequestLogLayer::redactor)
    /// still sets one layer's own). Configure redaction once, at start-up:
    ///
    /// ```
    /// use tower_ops::redact::Redactor;
    ///
    /// Redactor::builder().key("pin").build().install();
    /// let text = Redactor::installed().redact_text("pin=1234 refused");
    /// assert_eq!(text, "pin=[REDACTED] refused");
    /// ```
    pub fn install(self) {
        *INSTALLED.write().unwrap_or_else(PoisonError::into_inner) = Some(self);
    }

    /// The process's redactor: the one [installed](Self::install), or the
    /// default rules.
    pub fn installed() -> Self {
        INSTALLED
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }

    /// A builder that starts from the default rules.
    pub fn builder() -> RedactorBuilder {
        RedactorBuilder::new()
    }

    /// Whether values of the header `name` are censored whole.
    pub fn is_sensitive_header(&self, name: &HeaderName) -> bool {
        let inner = &*self.inner;
        if inner.headers.contains(name) {
            return true;
        }
        !inner.not_headers.contains(name) && inner.keys.matches(name.as_str().as_bytes())
    }

    /// Whether a query parameter name or JSON key is sensitive (compared
    /// case-insensitively, `-` and `_` ignored).
    ///
    /// ```
    /// let redactor = tower_ops::redact::Redactor::default();
    /// assert!(redactor.is_sensitive_key("Client-Secret"));
    /// assert!(!redactor.is_sensitive_key("client_id"));
    /// ```
    pub fn is_sensitive_key(&self, name: &str) -> bool {
        self.inner.keys.matches(name.as_bytes())
    }

    /// One header value, ready to log.
    ///
    /// Values of sensitive headers are censored (keeping the `Authorization`
    /// scheme, cookie names and `Set-Cookie` attributes); other values go through
    /// the value patterns. Bytes that are not UTF-8 are replaced by U+FFFD.
    /// [`Censor::Remove`] cannot remove a lone value and writes [`REDACTED`].
    ///
    /// ```
    /// use http::{HeaderValue, header};
    /// let redactor = tower_ops::redact::Redactor::default();
    /// let cookie = HeaderValue::from_static("sid=abc123; theme=dark");
    /// assert_eq!(redactor.redact_header(&header::COOKIE, &cookie), "sid=[REDACTED]; theme=[REDACTED]");
    /// let set_cookie = HeaderValue::from_static("sid=abc123; Path=/; HttpOnly");
    /// assert_eq!(redactor.redact_header(&header::SET_COOKIE, &set_cookie), "sid=[REDACTED]; Path=/; HttpOnly");
    /// let referer = HeaderValue::from_static("https://app.example/reset?token=t0k3n");
    /// assert_eq!(redactor.redact_header(&header::REFERER, &referer), "https://app.example/reset?token=[REDACTED]");
    /// ```
    pub fn redact_header<'v>(&self, name: &HeaderName, value: &'v HeaderValue) -> Cow<'v, str> {
        if self.is_sensitive_header(name) {
            Cow::Owned(header::censor_sensitive(&self.inner, name, value))
        } else {
            header::scan(&self.inner, value)
        }
    }

    /// The headers named in `allow`, each value redacted by
    /// [`redact_header`](Self::redact_header), in the order of `allow` and then of
    /// the values. Headers not in `allow` are left out; with [`Censor::Remove`] so
    /// are sensitive ones.
    pub fn redact_headers<'a>(
        &'a self,
        headers: &'a HeaderMap,
        allow: &'a [HeaderName],
    ) -> impl Iterator<Item = (&'a HeaderName, Cow<'a, str>)> + 'a {
        let remove = self.inner.censor.removes();
        allow
            .iter()
            .filter(move |name| !(remove && self.is_sensitive_header(name)))
            .flat_map(move |name| {
                headers
                    .get_all(name)
                    .iter()
                    .map(move |value| (name, self.redact_header(name, value)))
            })
    }

    /// A query string (without the `?`), or an `application/x-www-form-urlencoded`
    /// body, with the values of sensitive parameters censored and value patterns
    /// applied to the rest (after percent-decoding). [`Censor::Remove`] drops
    /// sensitive parameters.
    pub fn redact_query<'q>(&self, query: &'q str) -> Cow<'q, str> {
        query::redact(&self.inner, query)
    }

    /// The path and query of `uri`, ready to log: the query through
    /// [`redact_query`](Self::redact_query), the path through the value patterns
    /// (`/verify/<jwt>`, `;jsessionid=...`). Scheme and authority are left out.
    pub fn redact_path_and_query<'u>(&self, uri: &'u Uri) -> Cow<'u, str> {
        let path = text::redact(&self.inner, uri.path());
        let Some(query) = uri.query() else {
            return path;
        };
        let query = self.redact_query(query);
        match (path, query) {
            (Cow::Borrowed(_), Cow::Borrowed(_)) => match uri.path_and_query() {
                Some(pq) => Cow::Borrowed(pq.as_str()),
                None => Cow::Borrowed(uri.path()),
            },
            (path, query) => Cow::Owned(format!("{path}?{query}")),
        }
    }

    /// Free text (error chains, panic messages, log fields) through the value
    /// patterns. Borrows `text` when nothing matched. [`Censor::Remove`] writes
    /// [`REDACTED`], as a hole in a sentence would mislead.
    ///
    /// ```
    /// use std::borrow::Cow;
    /// let redactor = tower_ops::redact::Redactor::default();
    /// assert!(matches!(redactor.redact_text("user 42 not found"), Cow::Borrowed(_)));
    /// assert_eq!(redactor.redact_text("charge 4242 4242 4242 4242 declined"), "charge [REDACTED] declined");
    /// ```
    pub fn redact_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        text::redact(&self.inner, text)
    }

    /// A JSON body, ready to log: compact JSON (no whitespace between tokens) with
    /// sensitive members censored at any depth and value patterns applied to all
    /// other strings; or, when the body is over a cap, not UTF-8 or not JSON,
    /// [`RedactedBody::Unparsed`], which prints as `<unparsed body: N bytes>`.
    pub fn redact_json_bytes<'b>(&self, body: &'b [u8]) -> RedactedBody<'b> {
        let unparsed = |reason| RedactedBody::Unparsed {
            len: body.len(),
            reason,
        };
        if body.len() > self.inner.limits.max_body_bytes {
            return unparsed(UnparsedReason::TooLarge);
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return unparsed(UnparsedReason::InvalidUtf8);
        };
        match json::redact(&self.inner, text, 0) {
            Ok(json) => RedactedBody::Json(json),
            Err(reason) => unparsed(reason),
        }
    }

    /// [`redact_json_bytes`](Self::redact_json_bytes) for text already known to be UTF-8.
    pub fn redact_json_str<'b>(&self, body: &'b str) -> RedactedBody<'b> {
        self.redact_json_bytes(body.as_bytes())
    }
}

/// A body as it may be logged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedactedBody<'a> {
    /// Redacted, compact JSON text (borrowed when nothing changed).
    Json(Cow<'a, str>),
    /// The body could not be redacted; only its length is shown.
    Unparsed {
        /// Length of the body in bytes.
        len: usize,
        /// Why it was not parsed.
        reason: UnparsedReason,
    },
}

impl<'a> RedactedBody<'a> {
    /// The redacted JSON text, if the body was parsed.
    pub fn as_json(&self) -> Option<&str> {
        match self {
            RedactedBody::Json(json) => Some(json),
            RedactedBody::Unparsed { .. } => None,
        }
    }

    /// The redacted JSON text, if the body was parsed, without copying it.
    pub fn into_json(self) -> Option<Cow<'a, str>> {
        match self {
            RedactedBody::Json(json) => Some(json),
            RedactedBody::Unparsed { .. } => None,
        }
    }
}

impl fmt::Display for RedactedBody<'_> {
    /// The JSON text, or `<unparsed body: N bytes>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedactedBody::Json(json) => f.write_str(json),
            RedactedBody::Unparsed { len, .. } => write!(f, "<unparsed body: {len} bytes>"),
        }
    }
}

/// Why a body was not parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnparsedReason {
    /// Longer than [`RedactorBuilder::max_body_bytes`].
    TooLarge,
    /// Not UTF-8.
    InvalidUtf8,
    /// Not JSON.
    InvalidJson,
    /// Nested deeper than [`RedactorBuilder::max_depth`].
    TooDeep,
    /// More values than [`RedactorBuilder::max_nodes`].
    TooManyNodes,
}

impl UnparsedReason {
    /// A short name: `too_large`, `invalid_utf8`, `invalid_json`, `too_deep`, `too_many_nodes`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnparsedReason::TooLarge => "too_large",
            UnparsedReason::InvalidUtf8 => "invalid_utf8",
            UnparsedReason::InvalidJson => "invalid_json",
            UnparsedReason::TooDeep => "too_deep",
            UnparsedReason::TooManyNodes => "too_many_nodes",
        }
    }
}

impl fmt::Display for UnparsedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds a [`Redactor`]; [`Redactor::builder`] starts from the default rules,
/// [`RedactorBuilder::empty`] from none.
#[derive(Clone, Debug)]
pub struct RedactorBuilder {
    headers: Vec<HeaderName>,
    not_headers: Vec<HeaderName>,
    keys: Vec<Box<[u8]>>,
    fragments: Vec<Box<[u8]>>,
    query_params: Vec<Box<[u8]>>,
    patterns: Vec<ValuePattern>,
    prefixes: Vec<Box<[u8]>>,
    censor: Censor,
    limits: Limits,
}

impl Default for RedactorBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn normalized_list(names: &[&str]) -> Vec<Box<[u8]>> {
    names.iter().map(|n| rules::normalize(n)).collect()
}

impl RedactorBuilder {
    /// The default rules and the `[REDACTED]` censor.
    pub fn new() -> Self {
        Self {
            headers: rules::DEFAULT_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
            keys: normalized_list(rules::DEFAULT_KEYS),
            fragments: normalized_list(rules::DEFAULT_FRAGMENTS),
            query_params: normalized_list(rules::DEFAULT_QUERY_PARAMS),
            patterns: ValuePattern::ALL.to_vec(),
            ..Self::empty()
        }
    }

    /// No rules and no value patterns: only what you add is censored.
    pub fn empty() -> Self {
        Self {
            headers: Vec::new(),
            not_headers: Vec::new(),
            keys: Vec::new(),
            fragments: Vec::new(),
            query_params: Vec::new(),
            patterns: Vec::new(),
            prefixes: Vec::new(),
            censor: Censor::default(),
            limits: Limits {
                max_body_bytes: 1024 * 1024,
                max_depth: 128,
                max_nodes: 100_000,
            },
        }
    }

    /// Censors every value of the header `name`.
    pub fn header(mut self, name: HeaderName) -> Self {
        self.not_headers.retain(|h| *h != name);
        if !self.headers.contains(&name) {
            self.headers.push(name);
        }
        self
    }

    /// Stops censoring the header `name` whole, even if its name matches a key
    /// rule (its values still go through the value patterns).
    pub fn without_header(mut self, name: HeaderName) -> Self {
        self.headers.retain(|h| *h != name);
        if !self.not_headers.contains(&name) {
            self.not_headers.push(name);
        }
        self
    }

    /// Censors query parameters and JSON members named `name` (compared
    /// case-insensitively, `-` and `_` ignored).
    pub fn key(mut self, name: &str) -> Self {
        self.keys.push(rules::normalize(name));
        self
    }

    /// Censors query parameters and JSON members whose name contains `fragment`
    /// (after the same normalisation).
    pub fn key_containing(mut self, fragment: &str) -> Self {
        self.fragments.push(rules::normalize(fragment));
        self
    }

    /// Censors the query parameter `name` (but not JSON members of that name).
    pub fn query_param(mut self, name: &str) -> Self {
        self.query_params.push(rules::normalize(name));
        self
    }

    /// Removes `name` from the names, fragments and query parameters, default or
    /// added.
    pub fn without_key(mut self, name: &str) -> Self {
        let name = rules::normalize(name);
        self.keys.retain(|k| *k != name);
        self.fragments.retain(|k| *k != name);
        self.query_params.retain(|k| *k != name);
        self
    }

    /// Turns a value pattern on.
    pub fn pattern(mut self, pattern: ValuePattern) -> Self {
        if !self.patterns.contains(&pattern) {
            self.patterns.push(pattern);
        }
        self
    }

    /// Turns a value pattern off.
    pub fn without_pattern(mut self, pattern: ValuePattern) -> Self {
        self.patterns.retain(|p| *p != pattern);
        self
    }

    /// Censors tokens that start with `prefix` (case-sensitive, at a word start)
    /// followed by at least 16 characters of `[A-Za-z0-9_-]`, wherever they appear.
    /// An empty prefix is ignored.
    pub fn token_prefix(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.prefixes.push(prefix.as_bytes().into());
        }
        self
    }

    /// How secrets are replaced (default: [`Censor::Fixed`] with [`REDACTED`]).
    pub fn censor(mut self, censor: Censor) -> Self {
        self.censor = censor;
        self
    }

    /// Longest JSON body parsed, in bytes (default 1 MiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_body_bytes = bytes;
        self
    }

    /// Deepest nesting of JSON arrays and objects parsed (default 128).
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.limits.max_depth = depth;
        self
    }

    /// Most JSON values parsed in one body (default 100,000).
    pub fn max_nodes(mut self, nodes: usize) -> Self {
        self.limits.max_nodes = nodes;
        self
    }

    /// Compiles the rules.
    pub fn build(self) -> Redactor {
        let mut prefixes = self.prefixes;
        if self.patterns.contains(&ValuePattern::TokenPrefix) {
            prefixes.extend(
                text::DEFAULT_TOKEN_PREFIXES
                    .iter()
                    .map(|p| p.as_bytes().into()),
            );
        }
        prefixes.sort();
        prefixes.dedup();
        let inner = Inner {
            headers: self.headers,
            not_headers: self.not_headers,
            keys: KeyRules::new(
                self.keys.iter().map(|k| &**k),
                self.fragments.iter().map(|k| &**k),
            ),
            query_keys: KeyRules::new(self.query_params.iter().map(|k| &**k), []),
            patterns: Patterns::new(&self.patterns, prefixes),
            censor: censor::Compiled::new(&self.censor),
            limits: self.limits,
        };
        Redactor {
            inner: Arc::new(inner),
        }
    }
}

#[cfg(test)]
mod tests;
