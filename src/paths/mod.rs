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

mod rules;
pub(crate) use self::rules::PathRules;

/// Exact paths and prefixes (a pattern ending in `/*` matches the prefix itself
/// and everything below it; one ending in `*` matches any path starting with what
/// precedes it). Cheap to clone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathSet {
    exact: Arc<[Box<str>]>,
    prefixes: Arc<[Box<str>]>,
}

impl PathSet {
    /// A set of the given patterns.
    pub fn new<I, P>(patterns: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let mut exact = Vec::new();
        let mut prefixes = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            if let Some(dir) = p.strip_suffix("/*") {
                exact.push(Box::from(if dir.is_empty() { "/" } else { dir }));
                prefixes.push(Box::from(format!("{dir}/")));
            } else if let Some(prefix) = p.strip_suffix('*') {
                prefixes.push(Box::from(prefix));
            } else {
                exact.push(Box::from(p));
            }
        }
        Self {
            exact: exact.into(),
            prefixes: prefixes.into(),
        }
    }

    /// The usual probe and noise routes: `/health/*` and `/metrics`.
    pub fn probes() -> Self {
        Self::new(["/health/*", "/metrics"])
    }

    /// Whether `path` (without query) is in the set.
    #[inline]
    pub fn contains(&self, path: &str) -> bool {
        self.exact.iter().any(|e| **e == *path)
            || self.prefixes.iter().any(|p| path.starts_with(&**p))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
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
