//! The path grammar: `PathSet` matches exactly what its docs say, a set is the
//! union of its patterns, each pattern covers what it names, and the per-route
//! rules of the body-limit and timeout layers (the same grammar) pick the first
//! pattern that matches.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_ops::__fuzz;
use tower_ops::paths::PathSet;

/// Whether `pat` matches all of `s` (or, with `prefix`, the start of it), where a
/// `*` matches any run of bytes without a `/`: a table, so any input is quick.
fn segments(pat: &[u8], s: &[u8], prefix: bool) -> bool {
    let (m, n) = (pat.len(), s.len());
    // done[i][j]: pat[i..] matches s[j..].
    let mut done = vec![vec![false; n + 1]; m + 1];
    for j in 0..=n {
        done[m][j] = prefix || j == n;
    }
    for i in (0..m).rev() {
        for j in (0..=n).rev() {
            done[i][j] = if pat[i] == b'*' {
                done[i + 1][j] || (j < n && s[j] != b'/' && done[i][j + 1])
            } else {
                j < n && pat[i] == s[j] && done[i + 1][j + 1]
            };
        }
    }
    done[0][0]
}

/// The documented meaning of one pattern: a `*` at the end matches the rest of
/// the path, `/` included (`**` there means the same); a pattern ending in `/*`
/// also matches the path before it; any other `*` stays within one segment.
fn documented(pattern: &str, path: &str) -> bool {
    let pattern = match pattern.strip_suffix("**") {
        Some(head) => &pattern[..head.len() + 1],
        None => pattern,
    };
    if let Some(dir) = pattern.strip_suffix("/*")
        && segments(dir.as_bytes(), path.as_bytes(), false)
    {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(head) => segments(head.as_bytes(), path.as_bytes(), true),
        None => segments(pattern.as_bytes(), path.as_bytes(), false),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines: Vec<&str> = text.split('\n').take(9).collect();
    let path = lines.pop().unwrap_or_default();
    // Bounded, so that the table of the oracle stays small.
    let path = &path[..path.floor_char_boundary(512)];
    let patterns: Vec<&str> = lines
        .into_iter()
        .map(|p| &p[..p.floor_char_boundary(64)])
        .collect();

    let set = PathSet::new(&patterns);
    assert_eq!(set.is_empty(), patterns.is_empty());
    let hit = set.contains(path);
    assert_eq!(
        hit,
        patterns.iter().any(|p| documented(p, path)),
        "{patterns:?} {path:?}"
    );
    for p in &patterns {
        assert_eq!(
            PathSet::new([p]).contains(path),
            documented(p, path),
            "{p:?} {path:?}"
        );
        // Each pattern covers what it names: its own text, and below a
        // directory or after a trailing star anything at all.
        if let Some(dir) = p.strip_suffix("/*") {
            assert!(set.contains(&format!("{dir}/{path}")), "{p:?} {path:?}");
        } else if let Some(prefix) = p.strip_suffix('*') {
            assert!(set.contains(&format!("{prefix}{path}")), "{p:?} {path:?}");
        } else {
            assert!(set.contains(p), "{p:?}");
        }
    }

    // The per-route rules: the first pattern that matches wins.
    let first = patterns.iter().position(|p| documented(p, path));
    assert_eq!(
        __fuzz::route_index(&patterns, path),
        first,
        "{patterns:?} {path:?}"
    );
});
