//! The `X-Forwarded-For` and `Forwarded` walks: entries are read right to left,
//! every address found round-trips, and the resolved client is the right-most
//! hop that is not a trusted proxy, with every hop to its right trusted; anything
//! unreadable on the way falls back to the peer (fails closed).

#![no_main]

use std::net::{IpAddr, SocketAddr};

use http::{HeaderValue, Request};
use libfuzzer_sys::fuzz_target;
use tower_ops::__fuzz::{self, Hop};
use tower_ops::client_ip::{ClientIpLayer, ClientIpSource, ForwardedHeader};

/// Entries walked past at most (the layer's documented cap).
const MAX_HOPS: usize = 32;

const PEERS: [&str; 6] = [
    "10.0.0.1",
    "192.168.1.1",
    "203.0.113.9",
    "::1",
    "2001:db8::1",
    "::ffff:10.0.0.2",
];
const TRUSTED: [&str; 4] = ["10.0.0.0/8", "192.168.0.0/16", "::1/128", "fd00::/8"];

fn trusted(ip: IpAddr) -> bool {
    TRUSTED.iter().any(|net| {
        let (addr, bits) = net.split_once('/').unwrap();
        let bits: u32 = bits.parse().unwrap();
        match (addr.parse::<IpAddr>().unwrap(), ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    })
}

/// What every address the parser gives back must satisfy.
fn check_hop(hop: Hop) {
    let Hop::Ip(ip) = hop else { return };
    assert_eq!(
        ip,
        ip.to_canonical(),
        "IPv4-mapped addresses are normalised"
    );
    assert_eq!(__fuzz::forwarding_node(&ip.to_string()), hop);
    if let IpAddr::V6(v6) = ip {
        assert_eq!(__fuzz::forwarding_node(&format!("[{v6}]:8080")), hop);
    } else {
        assert_eq!(__fuzz::forwarding_node(&format!("{ip}:8080")), hop);
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, peer, rest @ ..] = data else {
        return;
    };
    let values: Vec<HeaderValue> = rest
        .split(|&b| b == b'\n')
        .take(6)
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect();

    // X-Forwarded-For: one hop per comma-separated entry, right-most first.
    let xff = __fuzz::x_forwarded_for(&values);
    let expected: Vec<Hop> = values
        .iter()
        .rev()
        .flat_map(|v| match v.to_str() {
            Ok(text) => text.rsplit(',').map(__fuzz::forwarding_node).collect(),
            Err(_) => vec![Hop::Malformed],
        })
        .collect();
    assert_eq!(xff, expected);
    xff.iter().copied().for_each(check_hop);

    // Forwarded: one hop per element; without quotes, elements are the commas.
    let fwd = __fuzz::forwarded(&values);
    fwd.iter().copied().for_each(check_hop);
    if values.iter().all(|v| !v.as_bytes().contains(&b'"')) {
        let elements: usize = values
            .iter()
            .map(|v| match v.to_str() {
                Ok(text) => text.split(',').count(),
                Err(_) => 1,
            })
            .sum();
        assert_eq!(fwd.len(), elements);
    }

    // The walk of the layer itself.
    let (header, source, hops) = if mode & 1 == 0 {
        (
            ForwardedHeader::XForwardedFor,
            ClientIpSource::XForwardedFor,
            &xff,
        )
    } else {
        (ForwardedHeader::Forwarded, ClientIpSource::Forwarded, &fwd)
    };
    let peer: IpAddr = PEERS[usize::from(*peer) % PEERS.len()].parse().unwrap();
    let peer = peer.to_canonical();
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(SocketAddr::new(peer, 40000));
    let name = if mode & 1 == 0 {
        "x-forwarded-for"
    } else {
        "forwarded"
    };
    for value in &values {
        request.headers_mut().append(name, value.clone());
    }

    let by_hops = mode >> 1 & 1 == 1;
    let layer = if by_hops {
        ClientIpLayer::new().trusted_hops(usize::from(mode >> 2 & 7) + 1)
    } else {
        ClientIpLayer::new().trusted_proxies(TRUSTED.iter().map(|n| n.parse().unwrap()))
    }
    .header(header);
    let got = layer.resolve(&request).expect("a peer is known");

    let from_header = |ip: IpAddr| (ip, source, true);
    let fallback = (peer, ClientIpSource::Peer, true);
    let expected = if by_hops {
        let n = usize::from(mode >> 2 & 7) + 1;
        match hops.get(n - 1) {
            Some(Hop::Ip(ip)) => from_header(*ip),
            _ => fallback,
        }
    } else if !trusted(peer) {
        (peer, ClientIpSource::Peer, false)
    } else {
        // The right-most hop that is not a trusted address decides.
        match hops
            .iter()
            .position(|h| !matches!(h, Hop::Ip(ip) if trusted(*ip)))
        {
            Some(i) if i < MAX_HOPS => match hops[i] {
                Hop::Ip(ip) => from_header(ip),
                Hop::Opaque | Hop::Malformed => fallback,
            },
            Some(_) => fallback,
            None if hops.len() > MAX_HOPS => fallback,
            // All trusted: the request started at the left-most hop.
            None => match hops.last() {
                Some(Hop::Ip(ip)) => from_header(*ip),
                _ => fallback,
            },
        }
    };
    assert_eq!((got.ip(), got.source(), got.via_trusted_proxy()), expected);
    if got.source() != ClientIpSource::Peer && !by_hops {
        // Never an address the client could have written past a trusted proxy.
        let at = hops.iter().position(|h| *h == Hop::Ip(got.ip())).unwrap();
        assert!(
            hops[..at]
                .iter()
                .all(|h| matches!(h, Hop::Ip(ip) if trusted(*ip)))
        );
    }
});
