//! JSON bodies: a validating, iterative scanner that copies the input and rewrites
//! only what must change (secrets, and whitespace between tokens so the result
//! fits on one log line). No tree is built and nothing recurses on the input's
//! depth: nesting lives in an explicit stack capped by `max_depth`.

use std::borrow::Cow;

use super::rewrite::Rewriter;
use super::{Inner, UnparsedReason, text};

/// How many times JSON held in a string is itself parsed (`"{\"a\":\"{...}\"}"`).
const MAX_EMBEDDED_LEVELS: u8 = 2;

struct Frame {
    object: bool,
    /// A member was written to the output (removal needs to know about commas).
    kept_any: bool,
    /// The member before was removed while first: drop the comma that follows it.
    skip_comma: bool,
    /// Output mark before the last comma.
    comma_mark: usize,
    /// Output mark at the current member's key.
    member_mark: usize,
    /// Output mark and input position of the current member's value.
    value_mark: usize,
    value_start: usize,
    /// The current member's key is sensitive.
    sensitive: bool,
}

impl Frame {
    fn new(object: bool) -> Self {
        Self {
            object,
            kept_any: false,
            skip_comma: false,
            comma_mark: 0,
            member_mark: 0,
            value_mark: 0,
            value_start: 0,
            sensitive: false,
        }
    }
}

/// What kind of value just ended (for the censor).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `null`, `true`, `false` or `""`: never a secret, kept even under a sensitive key.
    Harmless,
    String {
        escaped: bool,
    },
    Other,
}

enum State {
    Value,
    Key,
    After,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// Redacts the JSON text `src`, or says why it cannot.
pub(crate) fn redact<'a>(
    inner: &Inner,
    src: &'a str,
    level: u8,
) -> Result<Cow<'a, str>, UnparsedReason> {
    Walk {
        inner,
        src,
        b: src.as_bytes(),
        pos: 0,
        w: Rewriter::new(src),
        stack: Vec::new(),
        censoring: None,
        nodes: 0,
        level,
    }
    .run()
}

struct Walk<'a, 'r> {
    inner: &'r Inner,
    src: &'a str,
    b: &'a [u8],
    pos: usize,
    w: Rewriter<'a>,
    stack: Vec<Frame>,
    /// While a container under a sensitive key is being skipped: its depth.
    censoring: Option<usize>,
    nodes: usize,
    level: u8,
}

impl<'a> Walk<'a, '_> {
    fn run(mut self) -> Result<Cow<'a, str>, UnparsedReason> {
        let invalid = UnparsedReason::InvalidJson;
        let mut state = State::Value;
        loop {
            match state {
                State::Value => {
                    self.ws();
                    self.nodes += 1;
                    if self.nodes > self.inner.limits.max_nodes {
                        return Err(UnparsedReason::TooManyNodes);
                    }
                    let start = self.pos;
                    match *self.b.get(start).ok_or(invalid)? {
                        open @ (b'{' | b'[') => {
                            if self.stack.len() >= self.inner.limits.max_depth {
                                return Err(UnparsedReason::TooDeep);
                            }
                            if self.censoring.is_none() && self.in_sensitive_member() {
                                self.censoring = Some(self.stack.len());
                            }
                            let object = open == b'{';
                            self.stack.push(Frame::new(object));
                            self.pos += 1;
                            self.ws();
                            let close = if object { b'}' } else { b']' };
                            if self.b.get(self.pos) == Some(&close) {
                                self.pos += 1;
                                self.close_container();
                                state = State::After;
                            } else {
                                state = if object { State::Key } else { State::Value };
                            }
                        }
                        b'"' => {
                            let (end, escaped) = string_end(self.b, start).ok_or(invalid)?;
                            self.pos = end;
                            let kind = if end - start == 2 {
                                Kind::Harmless
                            } else {
                                Kind::String { escaped }
                            };
                            if self.censoring.is_none()
                                && !self.in_sensitive_member()
                                && kind != Kind::Harmless
                            {
                                self.string_value(start, end, escaped);
                            }
                            self.value_done(end, kind);
                            state = State::After;
                        }
                        b'-' | b'0'..=b'9' => {
                            let (end, card) = number_end(self.b, start).ok_or(invalid)?;
                            self.pos = end;
                            if card && self.censoring.is_none() && !self.in_sensitive_member() {
                                let secret = &self.src[start..end];
                                let censor = &self.inner.censor;
                                self.w.replace(start, end, |out| {
                                    write_json_string(out, &censor.render(secret));
                                });
                            }
                            self.value_done(end, Kind::Other);
                            state = State::After;
                        }
                        _ => {
                            let rest = &self.b[start..];
                            let len = [&b"true"[..], b"false", b"null"]
                                .iter()
                                .find(|lit| rest.starts_with(lit))
                                .map(|lit| lit.len())
                                .ok_or(invalid)?;
                            self.pos += len;
                            self.value_done(self.pos, Kind::Harmless);
                            state = State::After;
                        }
                    }
                }
                State::Key => {
                    self.ws();
                    let start = self.pos;
                    if self.b.get(start) != Some(&b'"') {
                        return Err(invalid);
                    }
                    let (end, escaped) = string_end(self.b, start).ok_or(invalid)?;
                    let sensitive = self.censoring.is_none() && {
                        let raw = &self.src[start + 1..end - 1];
                        if escaped {
                            self.inner.keys.matches(unescape(raw).as_bytes())
                        } else {
                            self.inner.keys.matches(raw.as_bytes())
                        }
                    };
                    let member_mark = self.w.mark(start);
                    self.pos = end;
                    self.ws();
                    if self.b.get(self.pos) != Some(&b':') {
                        return Err(invalid);
                    }
                    self.pos += 1;
                    self.ws();
                    let value_mark = self.w.mark(self.pos);
                    let value_start = self.pos;
                    if let Some(frame) = self.stack.last_mut() {
                        frame.sensitive = sensitive;
                        frame.member_mark = member_mark;
                        frame.value_mark = value_mark;
                        frame.value_start = value_start;
                    }
                    state = State::Value;
                }
                State::After => {
                    self.ws();
                    let Some(frame) = self.stack.last_mut() else {
                        return if self.pos == self.b.len() {
                            Ok(self.w.finish())
                        } else {
                            Err(invalid)
                        };
                    };
                    let c = *self.b.get(self.pos).ok_or(invalid)?;
                    match c {
                        b',' => {
                            if frame.object {
                                if self.censoring.is_none() {
                                    if frame.skip_comma {
                                        frame.skip_comma = false;
                                        let mark = self.w.mark(self.pos);
                                        self.w.cut(mark, self.pos + 1);
                                    } else {
                                        frame.comma_mark = self.w.mark(self.pos);
                                    }
                                }
                                self.pos += 1;
                                state = State::Key;
                            } else {
                                self.pos += 1;
                                state = State::Value;
                            }
                        }
                        b'}' | b']' if (c == b'}') == frame.object => {
                            self.pos += 1;
                            self.close_container();
                        }
                        _ => return Err(invalid),
                    }
                }
            }
        }
    }

    /// Skips whitespace, dropping it from the output (unless inside a subtree
    /// that will be replaced whole anyway).
    fn ws(&mut self) {
        let start = self.pos;
        while self.pos < self.b.len() && is_ws(self.b[self.pos]) {
            self.pos += 1;
        }
        if self.pos > start && self.censoring.is_none() {
            let mark = self.w.mark(start);
            self.w.cut(mark, self.pos);
        }
    }

    fn in_sensitive_member(&self) -> bool {
        self.stack.last().is_some_and(|f| f.object && f.sensitive)
    }

    fn close_container(&mut self) {
        self.stack.pop();
        if self.censoring == Some(self.stack.len()) {
            self.censoring = None;
        }
        self.value_done(self.pos, Kind::Other);
    }

    /// A value ended at `end`: when it was a sensitive member's, censor it.
    fn value_done(&mut self, end: usize, kind: Kind) {
        if self.censoring.is_some() {
            return;
        }
        let Some(frame) = self.stack.last_mut() else {
            return;
        };
        if !frame.object {
            return;
        }
        if !frame.sensitive || kind == Kind::Harmless {
            frame.kept_any = true;
            return;
        }
        frame.sensitive = false;
        let censor = &self.inner.censor;
        if censor.removes() {
            if frame.kept_any {
                self.w.cut(frame.comma_mark, end);
            } else {
                self.w.cut(frame.member_mark, end);
                frame.skip_comma = true;
            }
            return;
        }
        frame.kept_any = true;
        let raw = &self.src[frame.value_start..end];
        let secret: Cow<'_, str> = match kind {
            Kind::String { escaped: false } => Cow::Borrowed(&raw[1..raw.len() - 1]),
            Kind::String { escaped: true } => Cow::Owned(unescape(&raw[1..raw.len() - 1])),
            _ => Cow::Borrowed(raw),
        };
        let out = self.w.cut(frame.value_mark, end);
        write_json_string(out, &censor.render(&secret));
    }

    /// A string value not under a sensitive key: value patterns, and JSON held in it.
    fn string_value(&mut self, start: usize, end: usize, escaped: bool) {
        let raw = &self.src[start + 1..end - 1];
        let decoded: Cow<'_, str> = if escaped {
            Cow::Owned(unescape(raw))
        } else {
            Cow::Borrowed(raw)
        };
        let trimmed = decoded.trim_start();
        if self.level < MAX_EMBEDDED_LEVELS
            && (trimmed.starts_with('{') || trimmed.starts_with('['))
            && let Ok(inner_json) = redact(self.inner, &decoded, self.level + 1)
        {
            if let Cow::Owned(changed) = inner_json {
                self.w
                    .replace(start, end, |out| write_json_string(out, &changed));
            }
            return;
        }
        if let Cow::Owned(changed) = text::redact(self.inner, &decoded) {
            self.w
                .replace(start, end, |out| write_json_string(out, &changed));
        }
    }
}

/// End of the string starting at `start` (its opening quote), and whether it
/// holds escapes. `None` when it is not valid JSON.
fn string_end(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        let c = *b.get(i)?;
        match c {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                match *b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                }
            }
            0..=0x1f => return None,
            _ => i += 1,
        }
    }
}

/// End of the number starting at `start`, and whether it is an integer that
/// passes the payment card checks.
fn number_end(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let digits = |i: usize| {
        let mut j = i;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        j
    };
    let mut i = start;
    let negative = b[i] == b'-';
    if negative {
        i += 1;
    }
    let int_start = i;
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(i),
        _ => return None,
    }
    let int_end = i;
    let mut integer = true;
    if b.get(i) == Some(&b'.') {
        integer = false;
        let j = digits(i + 1);
        if j == i + 1 {
            return None;
        }
        i = j;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        integer = false;
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let j = digits(i);
        if j == i {
            return None;
        }
        i = j;
    }
    let int = &b[int_start..int_end];
    let card = integer
        && !negative
        && (13..=19).contains(&int.len())
        && (b'2'..=b'6').contains(&int[0])
        && {
            let mut d = [0u8; 19];
            for (slot, c) in d.iter_mut().zip(int) {
                *slot = c - b'0';
            }
            text::luhn(&d[..int.len()])
        };
    Some((i, card))
}

/// Decodes the content of a valid JSON string (lone surrogates become U+FFFD).
pub(crate) fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let b = rest.as_bytes();
        let Some(&kind) = b.get(at + 1) else {
            break;
        };
        let mut used = 2;
        match kind {
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'u' => {
                let unit = |from: usize| {
                    rest.get(from..from + 4)
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                };
                used = 6;
                let ch = match unit(at + 2) {
                    Some(hi @ 0xd800..=0xdbff) => match (rest.get(at + 6..at + 8), unit(at + 8)) {
                        (Some("\\u"), Some(lo @ 0xdc00..=0xdfff)) => {
                            used = 12;
                            char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                        }
                        _ => None,
                    },
                    Some(code) => char::from_u32(code),
                    None => None,
                };
                out.push(ch.unwrap_or('\u{fffd}'));
            }
            other => out.push(char::from(other)),
        }
        rest = rest.get(at + used..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Writes `s` as a JSON string literal.
pub(crate) fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 || c == '\u{7f}' => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push_str(escape);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_handles_every_escape() {
        assert_eq!(
            unescape(r#"a\"b\\c\/d\n\u0041\ud83d\ude00\ud800x"#),
            "a\"b\\c/d\nA\u{1F600}\u{fffd}x"
        );
    }

    #[test]
    fn escaping_round_trips_through_serde() {
        let s = "q\"b\\\n\t\u{1}\u{7f}é😀";
        let mut out = String::new();
        write_json_string(&mut out, s);
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
    }

    #[test]
    fn numbers() {
        assert_eq!(number_end(b"-0.5e+3,", 0), Some((7, false)));
        assert_eq!(number_end(b"01", 0), Some((1, false)));
        assert_eq!(number_end(b"1.", 0), None);
        assert_eq!(number_end(b"-", 0), None);
        assert_eq!(number_end(b"4111111111111111", 0), Some((16, true)));
    }
}
