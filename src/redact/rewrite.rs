//! Copy-on-write output shared by the scanners: the input is borrowed until the
//! first change, and only the changed spans are ever written by hand.

use std::borrow::Cow;

/// The output so far is `out` followed by `src[copied..position]`, where `position`
/// is how far the scanner has read. While nothing changed, `out` is `None` and the
/// output is a prefix of `src`.
pub(crate) struct Rewriter<'a> {
    src: &'a str,
    out: Option<String>,
    copied: usize,
}

impl<'a> Rewriter<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Self {
            src,
            out: None,
            copied: 0,
        }
    }

    /// Length of the output once the input up to `pos` is copied.
    pub(crate) fn mark(&self, pos: usize) -> usize {
        match &self.out {
            Some(out) => out.len() + (pos - self.copied),
            None => pos,
        }
    }

    /// Keeps the first `mark` bytes of the output and resumes copying the input
    /// at `resume`. `mark` must not exceed [`Rewriter::mark`] of the current
    /// position, and must fall on a character boundary.
    pub(crate) fn cut(&mut self, mark: usize, resume: usize) -> &mut String {
        let (src, copied) = (self.src, self.copied);
        self.copied = resume;
        let out = self.out.get_or_insert_with(|| {
            let mut out = String::with_capacity(src.len() + 32);
            out.push_str(&src[..mark]);
            out
        });
        if mark <= out.len() {
            out.truncate(mark);
        } else {
            let extra = mark - out.len();
            out.push_str(&src[copied..copied + extra]);
        }
        out
    }

    /// Replaces `src[from..to]` by what `write` appends.
    pub(crate) fn replace(&mut self, from: usize, to: usize, write: impl FnOnce(&mut String)) {
        let mark = self.mark(from);
        write(self.cut(mark, to));
    }

    /// The output, with the input after the last change copied.
    pub(crate) fn finish(self) -> Cow<'a, str> {
        match self.out {
            None => Cow::Borrowed(self.src),
            Some(mut out) => {
                out.push_str(&self.src[self.copied..]);
                Cow::Owned(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_input_is_borrowed() {
        let w = Rewriter::new("abc");
        assert!(matches!(w.finish(), Cow::Borrowed("abc")));
    }

    #[test]
    fn replace_and_cut_back() {
        let mut w = Rewriter::new("a, b, c");
        // Drop the space after the first comma.
        let m = w.mark(2);
        w.cut(m, 3);
        assert_eq!(w.mark(4), 3);
        // Replace "b" by "X", then take back ", X" entirely.
        w.replace(3, 4, |o| o.push('X'));
        let back = 1;
        w.cut(back, 4);
        assert_eq!(w.finish(), "a, c");
    }
}
