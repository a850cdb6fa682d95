//! Parsing of forwarding headers, right to left.

use std::net::IpAddr;
use std::str::FromStr;

/// One hop named by a forwarding header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    /// A parsed address, IPv4-mapped IPv6 normalised and zone removed.
    Ip(IpAddr),
    /// `unknown`, an obfuscated identifier (`_hidden`), or a `Forwarded` element
    /// without `for=`: a hop that cannot be judged.
    Opaque,
    /// Not an address at all.
    Malformed,
}

/// The longest node text looked at; longer entries are malformed.
const MAX_NODE_LEN: usize = 64;

/// Parses an `X-Forwarded-For` entry or the value of a `Forwarded` `for=` parameter
/// (quotes already removed): `v4`, `v4:port`, `v6`, `v6%zone`, `[v6]`, `[v6]:port`.
pub(crate) fn node(text: &str) -> Node {
    let text = text.trim_matches(|c: char| c == ' ' || c == '\t');
    if text.is_empty() || text.len() > MAX_NODE_LEN {
        return Node::Malformed;
    }
    if text.eq_ignore_ascii_case("unknown") || text.starts_with('_') {
        return Node::Opaque;
    }
    let addr = if let Some(rest) = text.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Node::Malformed;
        };
        if !(after.is_empty() || port(after.strip_prefix(':'))) {
            return Node::Malformed;
        }
        v6(inside)
    } else if text.contains(':') && text.matches(':').count() > 1 {
        v6(text)
    } else if let Some((host, p)) = text.split_once(':') {
        if !port(Some(p)) {
            return Node::Malformed;
        }
        std::net::Ipv4Addr::from_str(host).ok().map(IpAddr::V4)
    } else {
        std::net::Ipv4Addr::from_str(text).ok().map(IpAddr::V4)
    };
    addr.map_or(Node::Malformed, |ip| Node::Ip(ip.to_canonical()))
}

fn v6(text: &str) -> Option<IpAddr> {
    let text = text.split_once('%').map_or(text, |(addr, _zone)| addr);
    std::net::Ipv6Addr::from_str(text).ok().map(IpAddr::V6)
}

/// A port is digits (RFC 7239 also allows an obfuscated `_port`).
fn port(p: Option<&str>) -> bool {
    match p {
        Some(p) if p.starts_with('_') => p.len() > 1,
        Some(p) => !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok(),
        None => false,
    }
}

/// The entries of `X-Forwarded-For` header values, right-most first.
pub(crate) fn xff_rev<'a>(
    values: impl DoubleEndedIterator<Item = &'a http::HeaderValue> + 'a,
) -> impl Iterator<Item = Node> + 'a {
    values.rev().flat_map(|value| {
        let text = value.to_str();
        let malformed = text.is_err();
        text.unwrap_or_default().rsplit(',').map(move |entry| {
            if malformed {
                Node::Malformed
            } else {
                node(entry)
            }
        })
    })
}

/// The `for=` nodes of `Forwarded` header values (RFC 7239), right-most first.
///
/// Elements are split on commas outside quoted strings. An element without `for=`
/// is [`Node::Opaque`]; one whose syntax is broken is [`Node::Malformed`].
pub(crate) fn forwarded_rev<'a>(
    values: impl DoubleEndedIterator<Item = &'a http::HeaderValue>,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for value in values {
        let Ok(text) = value.to_str() else {
            nodes.push(Node::Malformed);
            continue;
        };
        for element in split_outside_quotes(text, b',') {
            nodes.push(element.map_or(Node::Malformed, forwarded_element));
        }
    }
    nodes.reverse();
    nodes
}

fn forwarded_element(element: &str) -> Node {
    let mut found = Node::Opaque;
    let mut seen_for = false;
    for pair in split_outside_quotes(element, b';') {
        let Some(pair) = pair else {
            return Node::Malformed;
        };
        let pair = pair.trim_matches(|c: char| c == ' ' || c == '\t');
        if pair.is_empty() {
            continue;
        }
        let Some((name, value)) = pair.split_once('=') else {
            return Node::Malformed;
        };
        if !name.trim_end().eq_ignore_ascii_case("for") {
            continue;
        }
        let value = value.trim_start();
        let value = match value.strip_prefix('"') {
            Some(rest) => match rest.strip_suffix('"') {
                Some(inner) if !inner.contains('"') && !inner.contains('\\') => inner,
                _ => return Node::Malformed,
            },
            None => value,
        };
        if seen_for {
            // Two `for=` in one element: ambiguous.
            return Node::Malformed;
        }
        seen_for = true;
        found = node(value);
    }
    found
}

/// Splits on `sep` outside double-quoted strings. A piece with an unterminated
/// quote is `None`.
fn split_outside_quotes(text: &str, sep: u8) -> impl Iterator<Item = Option<&str>> {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut quoted = false;
        let mut i = start;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b if b == sep && !quoted => break,
                _ => {}
            }
            i += 1;
        }
        let end = i.min(bytes.len());
        let piece = &text[start..end];
        if i >= bytes.len() {
            done = true;
        } else {
            start = i + 1;
        }
        Some((!quoted).then_some(piece))
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> Node {
        Node::Ip(s.parse().unwrap())
    }

    #[test]
    fn nodes() {
        assert_eq!(node("1.2.3.4"), ip("1.2.3.4"));
        assert_eq!(node(" 1.2.3.4 "), ip("1.2.3.4"));
        assert_eq!(node("1.2.3.4:8080"), ip("1.2.3.4"));
        assert_eq!(node("2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(node("[2001:db8::1]"), ip("2001:db8::1"));
        assert_eq!(node("[2001:db8::1]:443"), ip("2001:db8::1"));
        assert_eq!(node("fe80::1%eth0"), ip("fe80::1"));
        assert_eq!(
            node("::ffff:10.0.0.1"),
            Node::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!(node("unknown"), Node::Opaque);
        assert_eq!(node("_hidden"), Node::Opaque);
        for bad in [
            "",
            "abc",
            "1.2.3",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "[2001:db8::1",
            "[::1]x",
            "[::1]:",
            "1.2.3.4.5",
            "300.1.1.1",
            "<script>",
            "1.2.3.4 5.6.7.8",
        ] {
            assert_eq!(node(bad), Node::Malformed, "{bad}");
        }
        assert_eq!(node(&"1".repeat(65)), Node::Malformed);
        assert_eq!(node("::1"), Node::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }

    #[test]
    fn xff_order_across_lines() {
        let a = HeaderValue::from_static("1.1.1.1, 2.2.2.2");
        let b = HeaderValue::from_static("3.3.3.3");
        let got: Vec<_> = xff_rev([&a, &b].into_iter()).collect();
        assert_eq!(got, vec![ip("3.3.3.3"), ip("2.2.2.2"), ip("1.1.1.1")]);
        let bin = HeaderValue::from_bytes(b"1.1.1.1, \xff").unwrap();
        assert_eq!(xff_rev([&bin].into_iter()).next(), Some(Node::Malformed));
    }

    #[test]
    fn forwarded_elements() {
        let v = HeaderValue::from_static(
            "for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\", for=unknown, proto=https",
        );
        let got = forwarded_rev([&v].into_iter());
        assert_eq!(
            got,
            vec![
                Node::Opaque,
                Node::Opaque,
                ip("2001:db8:cafe::17"),
                ip("192.0.2.60")
            ]
        );
        let quoted_comma = HeaderValue::from_static("for=\"a,b\";proto=http, for=1.2.3.4");
        assert_eq!(
            forwarded_rev([&quoted_comma].into_iter()),
            vec![ip("1.2.3.4"), Node::Malformed]
        );
        for bad in [
            "for=\"1.2.3.4",
            "for",
            "for=1.2.3.4;for=5.6.7.8",
            "for=\"1.2.3.4\\\"\"",
        ] {
            let v = HeaderValue::from_str(bad).unwrap();
            assert_eq!(
                forwarded_rev([&v].into_iter()),
                vec![Node::Malformed],
                "{bad}"
            );
        }
        let obfuscated = HeaderValue::from_static("for=\"_hidden:_port\"");
        assert_eq!(forwarded_rev([&obfuscated].into_iter()), vec![Node::Opaque]);
    }
}
