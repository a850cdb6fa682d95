//! Per-route settings matched on the request path: the per-route limits of the
//! body-limit and timeout layers.

/// A list of `(pattern, value)` rules.
///
/// A pattern is either an exact path (`/upload`) or a prefix ending in `/*`
/// (`/files/*`), which matches the prefix itself (`/files`) and every path under it
/// (`/files/a/b`). Paths are compared byte for byte, without decoding or
/// normalisation, the way axum's router compares them: `/upload/` and `/Upload`
/// are not `/upload`. The first rule that matches wins, in the order they were
/// added.
#[derive(Clone, Debug)]
pub(crate) struct PathRules<T> {
    rules: Vec<(Pattern, T)>,
}

impl<T> Default for PathRules<T> {
    fn default() -> Self {
        Self { rules: Vec::new() }
    }
}

#[derive(Clone, Debug)]
enum Pattern {
    Exact(Box<str>),
    Prefix(Box<str>),
}

impl<T: Copy> PathRules<T> {
    pub(crate) fn push(&mut self, pattern: &str, value: T) {
        let pattern = match pattern.strip_suffix("/*") {
            Some(prefix) => Pattern::Prefix(prefix.into()),
            None => Pattern::Exact(pattern.into()),
        };
        self.rules.push((pattern, value));
    }

    /// The value of the first rule matching `path`.
    #[inline]
    pub(crate) fn get(&self, path: &str) -> Option<T> {
        if self.rules.is_empty() {
            return None;
        }
        self.rules.iter().find_map(|(pattern, value)| {
            let hit = match pattern {
                Pattern::Exact(p) => path == &**p,
                Pattern::Prefix(p) => path
                    .strip_prefix(&**p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            };
            hit.then_some(*value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_order() {
        let mut r = PathRules::default();
        r.push("/upload", 1);
        r.push("/files/*", 2);
        r.push("/*", 3);
        assert_eq!(r.get("/upload"), Some(1));
        assert_eq!(r.get("/upload/"), Some(3));
        assert_eq!(r.get("/files"), Some(2));
        assert_eq!(r.get("/files/a/b"), Some(2));
        assert_eq!(r.get("/filesystem"), Some(3));
        assert_eq!(r.get(""), Some(3));
        let mut only = PathRules::default();
        only.push("/a", 1);
        assert_eq!(only.get("/A"), None);
        assert_eq!(only.get("/%61"), None);
        assert_eq!(PathRules::<u8>::default().get("/a"), None);
    }
}
