//! The path grammar: `PathSet` matches exactly what its docs say (exact paths,
//! `/*` for a directory and everything below it, `*` for a prefix), a set is the
//! union of its patterns, and the per-route rules of the body-limit and timeout
//! layers agree with it on every pattern both grammars accept.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_ops::__fuzz;
use tower_ops::paths::PathSet;

/// The documented meaning of one pattern.
fn documented(pattern: &str, path: &str) -> bool {
    if let Some(dir) = pattern.strip_suffix("/*") {
        path == if dir.is_empty() { "/" } else { dir } || path.starts_with(&format!("{dir}/"))
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        path.starts_with(prefix)
    } else {
        path == pattern
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines: Vec<&str> = text.split('\n').take(9).collect();
    let path = lines.pop().unwrap_or_default();
    let patterns = lines;

    let set = PathSet::new(&patterns);
    assert_eq!(set.is_empty(), patterns.is_empty());
    let hit = set.contains(path);
    assert_eq!(
        hit,
        patterns.iter().any(|p| documented(p, path)),
        "{patterns:?} {path:?}"
    );
    for p in &patterns {
        assert_eq!(PathSet::new([p]).contains(path), documented(p, path));
        // Each pattern covers what it names.
        if let Some(dir) = p.strip_suffix("/*") {
            assert!(set.contains(&format!("{dir}/{path}")));
        } else if let Some(prefix) = p.strip_suffix('*') {
            assert!(set.contains(&format!("{prefix}{path}")));
        } else {
            assert!(set.contains(p));
        }
    }

    // The per-route grammar has exact paths and `/*` only; on those, and on
    // request paths (which start with `/`), it must agree, first match winning.
    if path.starts_with('/')
        && patterns
            .iter()
            .all(|p| p.ends_with("/*") || !p.ends_with('*'))
    {
        let first = patterns.iter().position(|p| documented(p, path));
        assert_eq!(
            __fuzz::route_index(&patterns, path),
            first,
            "{patterns:?} {path:?}"
        );
    }
});
