//! Per-route settings matched on the request path: the per-route limits of the
//! body-limit and timeout layers.

use super::Pattern;

/// A list of `(pattern, value)` rules, patterns in the grammar of
/// [`PathSet`](super::PathSet): `/upload`, `/files/*` (`/files` and every path
/// under it), `/v*/items`. Paths are compared byte for byte, without decoding or
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

impl<T: Copy> PathRules<T> {
    pub(crate) fn push(&mut self, pattern: &str, value: T) {
        self.rules.push((Pattern::new(pattern), value));
    }

    /// The value of the first rule matching `path`.
    #[inline]
    pub(crate) fn get(&self, path: &str) -> Option<T> {
        if self.rules.is_empty() {
            return None;
        }
        self.rules
            .iter()
            .find_map(|(pattern, value)| pattern.matches(path).then_some(*value))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::paths::PathSet;

    proptest! {
        /// Rules and sets read a pattern the same way.
        #[test]
        fn rules_and_sets_share_the_grammar(
            pattern in "[/ab*]{0,10}",
            path in "[/ab]{0,10}",
        ) {
            let mut rules = PathRules::default();
            rules.push(&pattern, ());
            prop_assert_eq!(rules.get(&path).is_some(), PathSet::new([&pattern]).contains(&path));
        }
    }

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
