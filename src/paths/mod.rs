//! A set of request paths named once and shared by several layers.
//!
//! Probe and noise routes (`/health/*`, `/metrics`) are usually excluded from logs,
//! metrics and rate limits alike. A [`PathSet`] names them once:
//!
//! ```
//! use tower_ops::paths::PathSet;
//!
//! let probes = PathSet::new(["/health/*", "/metrics"]);
//! assert!(probes.contains("/health/ready"));
//! assert!(probes.contains("/health"));
//! assert!(probes.contains("/metrics"));
//! assert!(!probes.contains("/metrics/extra"));
//! assert!(!probes.contains("/healthz"));
//! ```

use std::sync::Arc;

mod pattern;
mod rules;
use self::pattern::Pattern;
pub(crate) use self::rules::PathRules;

/// A set of path patterns, in the one grammar every layer that takes paths uses
/// (`skip_paths`, `probes`, per-route limits and timeouts, rate-limit policies).
///
/// Paths are compared byte for byte as the router sees them: no decoding, no
/// normalisation, case kept, query excluded. In a pattern:
///
/// | pattern | matches | does not match |
/// |---|---|---|
/// | `/metrics` (no `*`) | `/metrics` | `/metrics/`, `/metricsx` |
/// | `/health/*` or `/health/**` | `/health`, `/health/live`, `/health/a/b` | `/healthz` |
/// | `/static*` (a `*` at the end) | `/static`, `/static.css`, `/static/a/b` | `/stat` |
/// | `/users/*/avatar` (any other `*`) | `/users/7/avatar` | `/users/7/8/avatar` |
///
/// A `*` at the end of a pattern matches the rest of the path, `/` included,
/// and a pattern ending in `/*` also matches the path before it; any other `*`
/// matches any characters within one segment. Cheap to clone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathSet {
    /// Exact paths, compared first: most sets are mostly these.
    exact: Arc<[Box<str>]>,
    patterns: Arc<[Pattern]>,
}

impl PathSet {
    /// A set of the given patterns.
    pub fn new<I, P>(patterns: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let mut exact = Vec::new();
        let mut others = Vec::new();
        for p in patterns {
            let pattern = Pattern::new(p.as_ref());
            match pattern.exact() {
                Some(path) => exact.push(Box::from(path)),
                None => others.push(pattern),
            }
        }
        Self {
            exact: exact.into(),
            patterns: others.into(),
        }
    }

    /// The usual probe and noise routes: `/health/*` and `/metrics`.
    pub fn probes() -> Self {
        Self::new(["/health/*", "/metrics"])
    }

    /// The routes the stack serves for operators: the [probes](Self::probes) and
    /// the admin routes, `/health/*`, `/metrics` and `/admin/*`. What load
    /// shedding never sheds, so that an overloaded service still answers its
    /// orchestrator and an operator turning the log level up.
    pub fn probes_and_admin() -> Self {
        Self::new(["/health/*", "/metrics", "/admin/*"])
    }

    /// Whether `path` (without query) is in the set.
    #[inline]
    pub fn contains(&self, path: &str) -> bool {
        self.exact.iter().any(|e| **e == *path) || self.patterns.iter().any(|p| p.matches(path))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }
}

impl<P: AsRef<str>, const N: usize> From<[P; N]> for PathSet {
    fn from(patterns: [P; N]) -> Self {
        Self::new(patterns)
    }
}

impl<P: AsRef<str>> From<Vec<P>> for PathSet {
    fn from(patterns: Vec<P>) -> Self {
        Self::new(patterns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let s = PathSet::new(["/a/*", "/exact", "/pre*"]);
        for yes in ["/a", "/a/", "/a/b/c", "/exact", "/pre", "/prefix/x"] {
            assert!(s.contains(yes), "{yes}");
        }
        for no in ["/ab", "/exact/", "/exactly", "/", "", "/pr"] {
            assert!(!s.contains(no), "{no}");
        }
        assert!(PathSet::default().is_empty());
        assert!(!PathSet::default().contains("/"));
    }
}
