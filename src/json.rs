//! Minimal JSON writing shared by the error renderers and the log formatter.
//!
//! The log formatter writes every request's line through these functions, so
//! they avoid `core::fmt`: strings are scanned eight bytes at a time for
//! characters that need escaping, and integers are written digit by digit.

/// Eight copies of byte `b`.
const fn splat(b: u8) -> u64 {
    (b as u64) * 0x0101_0101_0101_0101
}

const HIGH: u64 = splat(0x80);

/// Whether any of the eight bytes in `w` is below 0x20, `"`, `\` or 0x7f.
///
/// `(x - splat(n)) & !x & HIGH` is non-zero exactly when some byte of `x` is
/// below `n` (for `n <= 0x80`); a byte equal to `b` is a zero byte of `x ^ splat(b)`.
#[inline]
fn word_needs_escape(w: u64) -> bool {
    let below = |x: u64, n: u8| x.wrapping_sub(splat(n)) & !x & HIGH;
    let control = below(w, 0x20);
    let quote = below(w ^ splat(b'"'), 1);
    let backslash = below(w ^ splat(b'\\'), 1);
    let delete = below(w ^ splat(0x7f), 1);
    control | quote | backslash | delete != 0
}

#[inline]
fn byte_needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f
}

/// Whether any byte of `bytes` needs escaping, a word at a time: whole words,
/// then the last eight bytes again (overlapping), or two overlapping halves
/// for strings of four to seven bytes.
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    let n = bytes.len();
    let word = |at: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    if n >= 8 {
        let mut at = 0;
        while at + 8 <= n {
            if word_needs_escape(word(at)) {
                return true;
            }
            at += 8;
        }
        return at < n && word_needs_escape(word(n - 8));
    }
    if n >= 4 {
        let half = |at: usize| {
            let mut w = [0; 4];
            w.copy_from_slice(&bytes[at..at + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        return word_needs_escape(half(0) | half(n - 4) << 32);
    }
    bytes.iter().any(|&b| byte_needs_escape(b))
}

/// Appends `s` as a JSON string literal (quotes included).
#[inline]
pub(crate) fn push_str(out: &mut String, s: &str) {
    if needs_escape(s.as_bytes()) {
        push_escaped(out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// `push_str` for a string with something to escape.
#[cold]
#[inline(never)]
fn push_escaped(out: &mut String, s: &str) {
    out.reserve(s.len() + 8);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Two-digit pairs "00" to "99".
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The decimal digits of `n`, written two at a time at the end of `buf`.
#[inline]
pub(crate) fn digits(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + n as u8;
    }
    &buf[i..]
}

/// Appends the decimal digits of `n`.
pub(crate) fn push_u64(out: &mut String, n: u64) {
    push_ascii(out, digits(&mut [0; 20], n));
}

/// Appends `n` in decimal, with a leading `-` when negative.
pub(crate) fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_u64(out, n.unsigned_abs());
}

/// Appends `n` zero-padded to exactly `width` digits (`n` must fit).
pub(crate) fn push_padded(out: &mut String, mut n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let width = width.min(buf.len());
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    push_ascii(out, &buf[..width]);
}

/// Appends a few ASCII bytes (digits) without validating them as UTF-8.
#[inline]
fn push_ascii(out: &mut String, digits: &[u8]) {
    out.reserve(digits.len());
    for &d in digits {
        out.push(char::from(d));
    }
}

/// Appends a finite `value` as a JSON number that reads back as exactly
/// `value`, with a fractional part (`2.0`, not `2`). Values that are a whole
/// number of thousandths (durations in milliseconds from microseconds) are
/// written without `core::fmt`; others fall back to the shortest round-trip form.
pub(crate) fn push_f64(out: &mut String, value: f64) {
    use std::fmt::Write;
    if !value.is_finite() {
        out.push_str("null");
        return;
    }
    let thousandths = (value * 1000.0).round();
    if thousandths.abs() < 1e15 && thousandths / 1000.0 == value {
        // Exact: `thousandths / 1000` parses back to the same double as `value`.
        let t = thousandths as i64;
        if value.is_sign_negative() {
            out.push('-');
        }
        let t = t.unsigned_abs();
        push_u64(out, t / 1000);
        out.push('.');
        let frac = (t % 1000) as u32;
        let (digits, width) = match frac {
            0 => (0, 1),
            f if f % 100 == 0 => (f / 100, 1),
            f if f % 10 == 0 => (f / 10, 2),
            f => (f, 3),
        };
        push_padded(out, digits, width);
        return;
    }
    let magnitude = value.abs();
    let _ = if magnitude >= 1e15 || (magnitude < 1e-6 && magnitude != 0.0) {
        // Shortest round-trip digits with an exponent, not hundreds of zeros.
        write!(out, "{value:e}")
    } else if value.fract() == 0.0 {
        write!(out, "{value}.0")
    } else {
        write!(out, "{value}")
    };
}

/// Numbers around every digit-count boundary, for the integer writers' tests.
#[cfg(test)]
pub(crate) fn number_cases() -> Vec<u64> {
    let mut cases = vec![
        0,
        7,
        9,
        10,
        11,
        99,
        100,
        101,
        999,
        1000,
        1_000_000,
        u64::MAX,
    ];
    cases.extend((0..20).map(|p| 10u64.pow(p)));
    cases.extend((1..20).map(|p| 10u64.pow(p) - 1));
    cases
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn quoted(s: &str) -> String {
        let mut out = String::new();
        push_str(&mut out, s);
        out
    }

    #[test]
    fn escapes_round_trip() {
        for s in [
            "plain",
            "q\"b\\",
            "nl\n\r\t",
            "\u{0}\u{1f}\u{7f}",
            "é✓😀",
            "",
            "exactly8",
            "sixteen bytes ok",
            "sixteen bytes o\"",
            "\u{7f}seven b",
        ] {
            let out = quoted(s);
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
            assert!(!out.contains('\n'));
        }
        assert_eq!(quoted("a\u{1}b"), "\"a\\u0001b\"");
        assert_eq!(quoted("a\u{7f}"), "\"a\\u007f\"");
    }

    #[test]
    fn word_scan_agrees_with_bytes() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut w = [b'a'; 8];
                w[pos] = b;
                assert_eq!(
                    word_needs_escape(u64::from_le_bytes(w)),
                    byte_needs_escape(b),
                    "byte {b:#x} at {pos}"
                );
            }
        }
    }

    #[test]
    fn every_length_and_position_is_seen() {
        for len in 0..=24 {
            let clean = vec![b'k'; len];
            assert!(!needs_escape(&clean), "clean, length {len}");
            for pos in 0..len {
                for bad in [b'"', b'\\', 0, 0x1f, 0x7f, b'\n'] {
                    let mut s = clean.clone();
                    s[pos] = bad;
                    assert!(needs_escape(&s), "byte {bad:#x} at {pos} of {len}");
                }
            }
        }
    }

    #[test]
    fn integers() {
        let text = |f: &dyn Fn(&mut String)| {
            let mut s = String::new();
            f(&mut s);
            s
        };
        for n in number_cases() {
            assert_eq!(digits(&mut [0; 20], n), n.to_string().as_bytes(), "{n}");
            assert_eq!(text(&|s| push_u64(s, n)), n.to_string());
        }
        for n in [0, -1, 42, i64::MIN, i64::MAX] {
            assert_eq!(text(&|s| push_i64(s, n)), n.to_string());
        }
        assert_eq!(text(&|s| push_padded(s, 7, 3)), "007");
        assert_eq!(text(&|s| push_padded(s, 123_456, 6)), "123456");
    }

    #[test]
    fn floats() {
        let text = |v: f64| {
            let mut s = String::new();
            push_f64(&mut s, v);
            s
        };
        assert_eq!(text(2.0), "2.0");
        assert_eq!(text(0.5), "0.5");
        assert_eq!(text(1.234), "1.234");
        assert_eq!(text(0.001), "0.001");
        assert_eq!(text(-3.05), "-3.05");
        assert_eq!(text(-0.0), "-0.0");
        assert_eq!(text(f64::NAN), "null");
        assert_eq!(text(f64::INFINITY), "null");
        assert_eq!(text(1e300), "1e300");
        assert_eq!(text(0.1234567), "0.1234567");
    }

    proptest! {
        #[test]
        fn any_string_round_trips(s in any::<String>()) {
            let out = quoted(&s);
            prop_assert!(!out.contains('\n'));
            let back: String = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(back, s);
        }

        #[test]
        fn any_float_reads_back_exactly(v in any::<f64>()) {
            let mut s = String::new();
            push_f64(&mut s, v);
            if v.is_finite() {
                let back: f64 = s.parse().unwrap();
                prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", s);
                prop_assert!(s.contains(['.', 'e', 'E']), "{}", s);
            } else {
                prop_assert_eq!(s, "null");
            }
        }

        #[test]
        fn millisecond_durations_read_back_exactly(micros in any::<u64>()) {
            let v = micros as f64 / 1000.0;
            let mut s = String::new();
            push_f64(&mut s, v);
            let back: f64 = s.parse().unwrap();
            prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", s);
        }
    }
}
