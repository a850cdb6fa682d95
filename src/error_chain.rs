//! The one walk of an error's `source` chain, for every layer that prints one.

use std::error::Error;

/// Most links walked: a chain that loops (a buggy `source`) must not hang the
/// caller, and no real chain is this deep.
const MAX_LINKS: usize = 64;

/// `error` and its sources, outermost first, at most 64 of them.
pub(crate) fn links<'a>(
    error: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |&e| e.source()).take(MAX_LINKS)
}

/// `error` and its sources, joined with `: `.
pub(crate) fn joined(error: &(dyn Error + 'static)) -> String {
    let mut out = String::new();
    for (i, e) in links(error).enumerate() {
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(&e.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    #[derive(Debug)]
    struct Link(&'static str, Option<Box<Link>>);

    impl fmt::Display for Link {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Link {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    /// An error whose source is itself.
    #[derive(Debug)]
    struct Loop;

    impl fmt::Display for Loop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("again")
        }
    }

    impl Error for Loop {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self)
        }
    }

    #[test]
    fn joins_outermost_first_and_stops_on_loops() {
        let e = Link("query failed", Some(Box::new(Link("pool exhausted", None))));
        assert_eq!(joined(&e), "query failed: pool exhausted");
        assert_eq!(joined(&Link("alone", None)), "alone");
        assert_eq!(links(&Loop).count(), MAX_LINKS);
        assert!(joined(&Loop).starts_with("again: again"));
    }
}
