//! The one place where error text is prepared for the log.

use std::borrow::Cow;

/// The longest error text written to the log, in bytes.
const MAX_LOG_LEN: usize = 2048;

/// Prepares untrusted error text (panic payloads, error chains, response bodies) for
/// the log: redacts secrets (passwords in connection strings, tokens, keys), caps
/// its length and replaces control characters, so a hostile message can neither
/// leak credentials, flood the log nor forge lines in it.
///
/// Every error text the error layer logs goes through here.
pub(crate) fn for_log(text: &str) -> Cow<'_, str> {
    match crate::redact::Redactor::installed().redact_text(text) {
        Cow::Borrowed(clean) => sanitize(clean),
        Cow::Owned(redacted) => Cow::Owned(sanitize(&redacted).into_owned()),
    }
}

fn sanitize(text: &str) -> Cow<'_, str> {
    let capped = if text.len() > MAX_LOG_LEN {
        let mut end = MAX_LOG_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end]
    } else {
        text
    };
    let truncated = capped.len() < text.len();
    if !truncated && !capped.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out: String = capped
        .chars()
        .map(|c| if is_unsafe(c) { ' ' } else { c })
        .collect();
    if truncated {
        out.push_str("...");
    }
    Cow::Owned(out)
}

/// Control characters and the bidirectional overrides that can disguise log text.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn clean_text_is_borrowed() {
        assert!(matches!(for_log("db refused: timeout"), Cow::Borrowed(_)));
    }

    #[test]
    fn control_characters_and_length() {
        assert_eq!(for_log("a\nb\r\u{1b}[31mc\u{202e}d"), "a b  [31mc d");
        let long = "é".repeat(3000);
        let out = for_log(&long);
        assert!(out.len() <= MAX_LOG_LEN + 3);
        assert!(out.ends_with("..."));
    }

    proptest! {
        #[test]
        fn never_multiline_never_long(s in any::<String>()) {
            let out = for_log(&s);
            prop_assert!(!out.chars().any(char::is_control));
            prop_assert!(out.len() <= MAX_LOG_LEN + 3);
        }
    }
}
