//! One path pattern of the grammar every layer shares (see [`PathSet`](super::PathSet)).

/// A compiled pattern. The common forms get their own cheap test; only patterns
/// with a `*` inside are walked byte by byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// No `*`: the path itself.
    Exact(Box<str>),
    /// `/dir/*` (or `/dir/**`) with no other `*`: `/dir` and everything below.
    Dir(Box<str>),
    /// `/pre*` with no other `*`: any path starting with `/pre`.
    Prefix(Box<str>),
    /// Anything else with a `*`.
    Glob(Box<str>),
}

impl Pattern {
    pub(crate) fn new(pattern: &str) -> Self {
        let dir = pattern
            .strip_suffix("/**")
            .or_else(|| pattern.strip_suffix("/*"));
        match dir {
            Some(dir) if !dir.contains('*') => return Self::Dir(dir.into()),
            _ => {}
        }
        match pattern.find('*') {
            None => Self::Exact(pattern.into()),
            Some(at) if at == pattern.len() - 1 => Self::Prefix(pattern[..at].into()),
            Some(_) => Self::Glob(pattern.into()),
        }
    }

    /// Whether this pattern is an exact path, for sets that keep those apart.
    pub(crate) fn exact(&self) -> Option<&str> {
        match self {
            Self::Exact(path) => Some(path),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == &**p,
            Self::Dir(dir) => path
                .strip_prefix(&**dir)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            Self::Prefix(p) => path.starts_with(&**p),
            Self::Glob(p) => glob(p, path),
        }
    }
}

/// A pattern with `*`s: a `*` at the very end matches the rest of the path
/// (`/` included), and a pattern ending in `/*` or `/**` also matches the path
/// before that ending; every other `*` matches any run of bytes inside one
/// segment (no `/`).
fn glob(pattern: &str, path: &str) -> bool {
    let pattern = pattern.strip_suffix("**").map_or(pattern, |p| {
        // `**` at the end means what `*` there means.
        &pattern[..p.len() + 1]
    });
    if let Some(dir) = pattern.strip_suffix("/*")
        && within_segments(dir.as_bytes(), path.as_bytes(), false)
    {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(head) => within_segments(head.as_bytes(), path.as_bytes(), true),
        None => within_segments(pattern.as_bytes(), path.as_bytes(), false),
    }
}

/// Whether `pat`, whose `*`s never match a `/`, matches all of `s` or (with
/// `prefix`) the start of it. Backtracks only to the last `*`: a later `*` can
/// always make up what an earlier one would have taken, because a `*` never
/// crosses the `/` that separates them.
fn within_segments(pat: &[u8], s: &[u8], prefix: bool) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if prefix && p == pat.len() {
            return true;
        }
        if i == s.len() {
            return pat[p..].iter().all(|&c| c == b'*');
        }
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if p < pat.len() && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some((sp, si)) = star
            && s[si] != b'/'
        {
            // The last `*` takes one more byte, unless that byte ends its segment.
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Pattern::new(pattern).matches(path)
    }

    #[test]
    fn forms() {
        assert_eq!(Pattern::new("/a"), Pattern::Exact("/a".into()));
        assert_eq!(Pattern::new("/a/*"), Pattern::Dir("/a".into()));
        assert_eq!(Pattern::new("/a/**"), Pattern::Dir("/a".into()));
        assert_eq!(Pattern::new("/*"), Pattern::Dir("".into()));
        assert_eq!(Pattern::new("/a*"), Pattern::Prefix("/a".into()));
        assert_eq!(Pattern::new("/u/*/x"), Pattern::Glob("/u/*/x".into()));
    }

    #[test]
    fn examples() {
        for (pattern, yes, no) in [
            (
                "/health/*",
                &["/health", "/health/live", "/health/a/b"][..],
                &["/healthz", "/Health/live", "/"][..],
            ),
            (
                "/metrics",
                &["/metrics"],
                &["/metrics/", "/metricsx", "/metrics/x"],
            ),
            (
                "/pre*",
                &["/pre", "/prefix", "/prefix/x"],
                &["/pr", "/xpre"],
            ),
            (
                "/users/*/avatar",
                &["/users/7/avatar", "/users//avatar"],
                &["/users/7/8/avatar", "/users/7/avatar/x"],
            ),
            ("/v*/items", &["/v1/items", "/v/items"], &["/v1/x/items"]),
            (
                "/files/*.png",
                &["/files/a.png"],
                &["/files/a/b.png", "/files/a.pngx"],
            ),
            (
                "/users/*/files/*",
                &["/users/7/files", "/users/7/files/a/b"],
                &["/users/7/8/files/a", "/users/7/filesx"],
            ),
            ("/a/*/b*", &["/a/x/b", "/a/x/bc/d"], &["/a/x/y/b"]),
            ("/*", &["/", "/a", "/a/b", ""], &["a"]),
        ] {
            for path in yes {
                assert!(m(pattern, path), "{pattern} should match {path}");
            }
            for path in no {
                assert!(!m(pattern, path), "{pattern} should not match {path}");
            }
        }
    }

    #[test]
    fn hostile_paths_are_cheap() {
        let long = format!("/{}", "a".repeat(100_000));
        assert!(!m("/*a*a*a*a*a*b", &long));
        assert!(m("/*a*a*a*a*a*", &long));
        assert!(m("/**", &long));
        assert!(!m(
            "/x/*a*a*a*a*a*b",
            &format!("/x/{}", "a/".repeat(50_000))
        ));
    }

    /// Paths and patterns over a small alphabet, so that matches are common.
    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[/ab*]{0,12}").unwrap()
    }

    fn literal() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[/ab]{0,10}").unwrap()
    }

    proptest! {
        #[test]
        fn never_panics(pattern in text(), path in text()) {
            let _ = m(&pattern, &path);
        }

        #[test]
        fn a_pattern_without_a_star_matches_only_itself(pattern in literal(), path in literal()) {
            prop_assert_eq!(m(&pattern, &path), pattern == path);
        }

        #[test]
        fn a_dir_pattern_matches_the_dir_and_what_is_below(dir in literal(), path in literal()) {
            let expected = path == dir || path.starts_with(&format!("{dir}/"));
            prop_assert_eq!(m(&format!("{dir}/*"), &path), expected);
            prop_assert_eq!(m(&format!("{dir}/**"), &path), expected);
        }

        #[test]
        fn a_trailing_star_is_a_prefix(head in literal(), path in literal()) {
            prop_assume!(!head.ends_with('/'));
            prop_assert_eq!(m(&format!("{head}*"), &path), path.starts_with(&head));
        }

        #[test]
        fn an_inner_star_stays_in_its_segment(a in literal(), b in literal(), seg in "[ab]{0,4}", path in literal()) {
            prop_assume!(b.starts_with('/'));
            let pattern = format!("{a}/*{b}");
            let inside = format!("{a}/{seg}{b}");
            prop_assert!(m(&pattern, &inside));
            // A `*` that is not at the end never takes a `/`.
            if m(&pattern, &path) {
                prop_assert_eq!(path.matches('/').count(), pattern.matches('/').count());
            }
        }

        /// The glob walk agrees with the fast forms where both apply.
        #[test]
        fn the_glob_agrees_with_the_fast_forms(pattern in literal(), path in literal()) {
            for p in [format!("{pattern}*"), format!("{pattern}/*")] {
                prop_assert_eq!(Pattern::new(&p).matches(&path), glob(&p, &path), "{}", p);
            }
        }
    }
}
