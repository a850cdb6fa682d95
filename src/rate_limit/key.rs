use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use http::HeaderName;

use super::policy::RequestHead;
use crate::client_ip::ClientIp;
#[allow(unused_imports)] // linked from the docs
use crate::client_ip::ClientIpLayer;

/// What a policy counts requests by.
///
/// - [`KeyBy::client_ip`]: the [`ClientIp`] request extension set by
///   [`ClientIpLayer`] (which decides whether proxies are trusted; forwarding
///   headers are never read here). Without that layer the peer address of the
///   connection is used. IPv4-mapped IPv6 addresses count as IPv4, and IPv6
///   addresses are grouped by their /56 prefix, the block one subscriber usually
///   holds, so rotating addresses inside it gains nothing.
/// - [`KeyBy::header`]: the value of a header such as `x-api-key`. Values are
///   hashed with a keyed hash before they are stored; the raw value is never kept.
///   Requests without the header are not counted by this policy.
/// - [`KeyBy::extension`]: a [`RateLimitKey`] the application inserted in the
///   request extensions (a user or tenant id, set by an authentication layer).
///   Requests without one are not counted by this policy.
/// - [`KeyBy::global`]: one bucket for every request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyBy {
    /// The client address, IPv6 grouped by a prefix of `ipv6_prefix` bits.
    ClientIp {
        /// The IPv6 prefix length that forms one key (56 by default).
        ipv6_prefix: u8,
    },
    /// The value of a request header, hashed.
    Header(HeaderName),
    /// A [`RateLimitKey`] request extension.
    Extension,
    /// Every request shares one bucket.
    Global,
}

impl Default for KeyBy {
    fn default() -> Self {
        Self::client_ip()
    }
}

impl KeyBy {
    /// The client address, IPv6 grouped by /56.
    pub fn client_ip() -> Self {
        Self::ClientIp { ipv6_prefix: 56 }
    }

    /// The client address, IPv6 grouped by a prefix of `len` bits (at most 128).
    pub fn client_ip_v6_prefix(len: u8) -> Self {
        Self::ClientIp {
            ipv6_prefix: len.min(128),
        }
    }

    /// The value of the header `name`.
    pub fn header(name: HeaderName) -> Self {
        Self::Header(name)
    }

    /// The [`RateLimitKey`] extension set by the application.
    pub fn extension() -> Self {
        Self::Extension
    }

    /// One bucket for everything.
    pub fn global() -> Self {
        Self::Global
    }

    /// The key material of a request, or `None` when this policy does not count it.
    #[inline]
    pub(crate) fn material<'a>(&self, head: &RequestHead<'a>) -> Option<Material<'a>> {
        match self {
            KeyBy::ClientIp { ipv6_prefix } => {
                let ip = client_ip(head.extensions);
                Some(Material::Ip(mask_ip(ip, *ipv6_prefix)))
            }
            KeyBy::Header(name) => head
                .headers
                .get(name)
                .map(|v| Material::Bytes(v.as_bytes())),
            KeyBy::Extension => head
                .extensions
                .get::<RateLimitKey>()
                .map(|k| Material::Bytes(k.0.as_bytes())),
            KeyBy::Global => Some(Material::Global),
        }
    }
}

impl KeyBy {
    /// The in-process key of a request, or `None` when this policy does not
    /// count it: `hasher.key(&material)`, with client addresses turned into their
    /// key directly (no [`Material`] in between, which would go through memory).
    #[inline]
    pub(crate) fn local_key(&self, head: &RequestHead<'_>, hasher: &KeyHasher) -> Option<u64> {
        match self {
            KeyBy::ClientIp { ipv6_prefix } => {
                Some(hasher.ip_key(client_ip(head.extensions), *ipv6_prefix))
            }
            _ => self.material(head).map(|m| hasher.key(&m)),
        }
    }
}

/// The [`ClientIp`] extension; without [`ClientIpLayer`], the peer of the
/// connection (trusting no header); with no peer either, one shared "unknown" key.
#[inline]
fn client_ip(extensions: &http::Extensions) -> IpAddr {
    if let Some(ip) = extensions.get::<ClientIp>() {
        return ip.ip();
    }
    crate::peer::ip(extensions).unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
}

/// The part of a request that identifies its bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Material<'a> {
    Ip(IpAddr),
    Bytes(&'a [u8]),
    Global,
}

/// Turns key material into the 64-bit keys of the in-process limiter.
///
/// Header and extension values go through the standard library's keyed SipHash,
/// so raw values are never stored. Addresses, which are not secret and are hashed
/// on every request, take a cheaper path: a keyed bijective mix (xor with a random
/// key, multiply by a random odd number, xorshift, multiply, xorshift). Being a
/// permutation of the 64 bits it maps, it gives distinct IPv4 addresses, and IPv6
/// prefixes of up to 64 bits, distinct keys, so such clients never share a bucket;
/// the random keys keep the map's buckets unpredictable to clients.
#[derive(Clone, Debug)]
pub(crate) struct KeyHasher {
    sip: RandomState,
    k0: u64,
    k1: u64,
    k2: u64,
}

impl KeyHasher {
    pub(crate) fn new() -> Self {
        let sip = RandomState::new();
        Self {
            k0: sip.hash_one(0x5eed_u64),
            // Odd, so that multiplying by it is a bijection.
            k1: sip.hash_one(0x5eee_u64) | 1,
            k2: sip.hash_one(0x5eef_u64),
            sip,
        }
    }

    #[inline]
    fn mix(&self, x: u64, k0: u64) -> u64 {
        let mut x = (x ^ k0).wrapping_mul(self.k1);
        x ^= x >> 32;
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 29)
    }

    /// The in-process key of `material`.
    #[inline]
    pub(crate) fn key(&self, material: &Material<'_>) -> u64 {
        match material {
            Material::Ip(IpAddr::V4(v4)) => self.v4_key(v4.to_bits()),
            Material::Ip(IpAddr::V6(v6)) => self.v6_key(v6.to_bits()),
            Material::Bytes(bytes) => self.sip.hash_one(bytes),
            Material::Global => 0,
        }
    }

    /// The key of `ip` masked as [`mask_ip`] does, that is
    /// `self.key(&Material::Ip(mask_ip(ip, ipv6_prefix)))`, computed in registers.
    #[inline]
    pub(crate) fn ip_key(&self, ip: IpAddr, ipv6_prefix: u8) -> u64 {
        match ip {
            IpAddr::V4(v4) => self.v4_key(v4.to_bits()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.v4_key(v4.to_bits()),
                None => self.v6_key(v6.to_bits() & v6_mask(ipv6_prefix)),
            },
        }
    }

    #[inline]
    fn v4_key(&self, bits: u32) -> u64 {
        self.mix(u64::from(bits), self.k0)
    }

    #[inline]
    fn v6_key(&self, bits: u128) -> u64 {
        let (high, low) = ((bits >> 64) as u64, bits as u64);
        // Prefixes of up to 64 bits (the default /56) leave `low` zero.
        let high = if low == 0 {
            high
        } else {
            high ^ self.mix(low, self.k2)
        };
        // Another key than IPv4's: the two families map differently.
        self.mix(high, self.k0 ^ self.k2)
    }
}

impl Material<'_> {
    /// The key shown to a shared backend: the masked address, or a SHA-1 of the
    /// secret and the value (stable across instances that share the secret).
    pub(crate) fn shared(&self, secret: &[u8]) -> String {
        match self {
            Material::Ip(ip) => format!("ip:{ip}"),
            Material::Bytes(bytes) => {
                let mut sha = sha1_smol::Sha1::new();
                sha.update(secret);
                sha.update(bytes);
                format!("h:{}", sha.digest())
            }
            Material::Global => "global".to_owned(),
        }
    }
}

/// Canonicalises IPv4-mapped addresses and keeps the first `prefix` bits of IPv6.
pub(crate) fn mask_ip(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & v6_mask(prefix))),
        v4 => v4,
    }
}

/// The mask that keeps the first `prefix` bits of an IPv6 address.
#[inline]
fn v6_mask(prefix: u8) -> u128 {
    match prefix.min(128) {
        0 => 0,
        n => u128::MAX << (128 - u32::from(n)),
    }
}

/// A rate-limit key the application sets: insert it in the request extensions
/// (for example in an authentication layer) and use [`KeyBy::extension`].
///
/// ```
/// use tower_ops::rate_limit::RateLimitKey;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(RateLimitKey::new("user:42"));
/// assert_eq!(request.extensions().get::<RateLimitKey>().unwrap().as_str(), "user:42");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RateLimitKey(Arc<str>);

impl RateLimitKey {
    /// A key from any string (a user id, a tenant, a plan and a user...).
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self(key.into())
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RateLimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RateLimitKey").field(&self.0).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_grouped_by_prefix() {
        assert_eq!(
            mask_ip(ip("2001:db8:1:ff12:aaaa::1"), 56),
            ip("2001:db8:1:ff00::")
        );
        assert_eq!(
            mask_ip(ip("2001:db8:1:ff12:aaaa::1"), 56),
            mask_ip(ip("2001:0db8:0001:ffee:0:0:0:ffff"), 56)
        );
        assert_ne!(
            mask_ip(ip("2001:db8:1:ff00::"), 56),
            mask_ip(ip("2001:db8:1:fe00::"), 56)
        );
        assert_eq!(mask_ip(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(mask_ip(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(mask_ip(ip("2001:db8::1"), 200), ip("2001:db8::1"));
    }

    #[test]
    fn ipv4_mapped_is_ipv4_and_not_masked() {
        assert_eq!(mask_ip(ip("::ffff:203.0.113.9"), 56), ip("203.0.113.9"));
        assert_ne!(
            mask_ip(ip("::ffff:203.0.113.9"), 56),
            mask_ip(ip("::ffff:198.51.100.1"), 56)
        );
        assert_eq!(mask_ip(IpAddr::V4(Ipv4Addr::LOCALHOST), 8), ip("127.0.0.1"));
    }

    #[test]
    fn shared_keys_hide_values() {
        let secret = b"s";
        let k = Material::Bytes(b"sk_live_123").shared(secret);
        assert!(k.starts_with("h:") && !k.contains("sk_live"));
        assert_eq!(k.len(), 2 + 40);
        assert_ne!(k, Material::Bytes(b"sk_live_123").shared(b"other"));
        assert_eq!(Material::Ip(ip("10.0.0.1")).shared(secret), "ip:10.0.0.1");
        assert_eq!(Material::Global.shared(secret), "global");
        let h = KeyHasher::new();
        assert_eq!(h.key(&Material::Global), h.key(&Material::Global));
        assert_ne!(h.key(&Material::Bytes(b"a")), h.key(&Material::Bytes(b"b")));
    }

    proptest::proptest! {
        /// The direct address key is the key of the masked address, for every
        /// family, IPv4-mapped form and prefix length.
        #[test]
        fn direct_ip_keys_match_the_material(bits: u128, v4: u32, prefix in 0u8..=200) {
            let h = KeyHasher::new();
            let mapped = Ipv4Addr::from(v4).to_ipv6_mapped();
            for ip in [
                IpAddr::V6(Ipv6Addr::from(bits)),
                IpAddr::V4(Ipv4Addr::from(v4)),
                IpAddr::V6(mapped),
            ] {
                proptest::prop_assert_eq!(
                    h.ip_key(ip, prefix),
                    h.key(&Material::Ip(mask_ip(ip, prefix)))
                );
            }
            proptest::prop_assert_eq!(
                h.ip_key(IpAddr::V6(mapped), prefix),
                h.ip_key(IpAddr::V4(Ipv4Addr::from(v4)), 0)
            );
        }
    }

    #[test]
    fn address_keys_never_collide() {
        let h = KeyHasher::new();
        let mut seen = std::collections::HashSet::new();
        // Neighbouring IPv4 addresses, /56 prefixes, and full IPv6 addresses.
        for i in 0..20_000u32 {
            assert!(seen.insert(h.key(&Material::Ip(IpAddr::V4(Ipv4Addr::from(i))))));
            let v6 = Ipv6Addr::from(u128::from(i) << 72);
            assert!(seen.insert(h.key(&Material::Ip(mask_ip(IpAddr::V6(v6), 56)))));
            let full = Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(i));
            assert!(seen.insert(h.key(&Material::Ip(IpAddr::V6(full)))));
        }
        // Keys are random per process.
        let other = KeyHasher::new();
        let ip = Material::Ip(ip("192.0.2.1"));
        assert_ne!(h.key(&ip), other.key(&ip));
    }
}
