use std::any::TypeId;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use http::HeaderName;
use sha2::{Digest, Sha256};

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
/// - [`KeyBy::header`]: the value of a header such as `x-api-key`.
///   Requests without the header are not counted by this policy.
/// - [`KeyBy::extension`]: a value of your own type that your authentication
///   layer inserted in the request extensions (a user or tenant id).
///   Requests without one are not counted by this policy.
/// - [`KeyBy::from_fn`]: whatever a closure computes from the [`RequestHead`]
///   (a tenant and a plan, a header and an extension...). Requests for which it
///   returns `None` are not counted by this policy.
/// - [`KeyBy::global`]: one bucket for every request.
///
/// Keys are never stored as they are: header values, extension values and
/// closure results are hashed with a keyed hash, and the limiter holds the 64-bit
/// result, so a key costs the same memory however long it is.
///
/// A policy keyed by an extension or a closure that has found no key in the
/// first requests it applies to (100 by default,
/// [`Policy::warn_missing_key_after`](super::Policy::warn_missing_key_after)) logs
/// one warning: the layer that inserts the key most likely runs after the rate
/// limiter (put it in [`Stack::auth`](crate::stack::Stack::auth)'s slot, or
/// outside the limiter when you stack by hand).
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
    /// A typed request extension, hashed ([`KeyBy::extension`]).
    Extension(CustomKey),
    /// The result of a closure over the request head, hashed ([`KeyBy::from_fn`]).
    Fn(CustomKey),
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

    /// The request extension of type `T`, which your authentication layer
    /// inserts (`request.extensions_mut().insert(UserId(42))`); requests without
    /// one are not counted by this policy.
    ///
    /// `T` only needs [`Hash`] (derive it) on top of what extensions require
    /// anyway (`Clone + Send + Sync + 'static`): requests whose values hash alike,
    /// equal values for a derived `Hash`, share a bucket. Per request this costs
    /// one lookup in the extensions and one keyed SipHash of the value; nothing
    /// is allocated and the value is not kept. With a shared backend, every
    /// instance must hash the type alike: a derived `Hash` of the same type
    /// definition does (integers are read as little-endian bytes).
    ///
    /// The layer that inserts `T` must run before the rate limiter: in
    /// [`Stack::auth`](crate::stack::Stack::auth)'s slot, or outside
    /// [`RateLimitLayer`](super::RateLimitLayer) when you stack by hand. If it
    /// does not, the policy limits nothing and says so once in a warning.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_ops::rate_limit::{KeyBy, Policy, Quota, RateLimitLayer};
    ///
    /// /// Inserted by the application's authentication.
    /// #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    /// struct UserId(u64);
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limits = RateLimitLayer::new()
    ///     .policy(Policy::new("user", Quota::per_minute(2)).key(KeyBy::extension::<UserId>()));
    /// let service = ServiceBuilder::new().layer(limits).service(service_fn(|_req: Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    /// }));
    /// let as_user = |id| {
    ///     let mut request = Request::new(());
    ///     request.extensions_mut().insert(UserId(id));
    ///     request
    /// };
    /// let first = service.clone().oneshot(as_user(42)).await?;
    /// assert_eq!(first.headers()["ratelimit"], "\"user\";r=1;t=30");
    /// service.clone().oneshot(as_user(42)).await?;
    /// assert_eq!(service.clone().oneshot(as_user(42)).await?.status(), 429);
    /// // Another user has a bucket of their own; a request without a user is not counted.
    /// assert_eq!(service.clone().oneshot(as_user(43)).await?.status(), 200);
    /// let anonymous = service.clone().oneshot(Request::new(())).await?;
    /// assert!(anonymous.headers().get("ratelimit").is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn extension<T>() -> Self
    where
        T: Hash + Send + Sync + 'static,
    {
        Self::Extension(CustomKey {
            source: Arc::new(ExtensionSource::<T>(PhantomData)),
            name: std::any::type_name::<T>(),
            id: KeyId::Type(TypeId::of::<T>()),
        })
    }

    /// The key `key` computes from the request head (method, URI, headers and
    /// extensions); `None` means this policy does not count the request.
    ///
    /// The closure returns an owned value that implements [`Hash`] (an integer, a
    /// tuple, a `String`...): requests whose values hash alike share a bucket. It
    /// runs once per request the policy applies to, so keep it cheap; an integer
    /// or a tuple of them costs no allocation. With a shared backend, every
    /// instance must compute the same values (integers are read as
    /// little-endian bytes). As with [`KeyBy::extension`], extensions read here
    /// must be inserted by a layer that runs before the rate limiter.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_ops::rate_limit::{KeyBy, Policy, Quota, RateLimitLayer};
    ///
    /// #[derive(Clone, Copy)]
    /// struct Tenant(u32);
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // One bucket per tenant and method: writes do not use up the reads.
    /// let per_tenant = KeyBy::from_fn(|head| {
    ///     let tenant = head.extensions().get::<Tenant>()?;
    ///     Some((tenant.0, head.method() == http::Method::GET))
    /// });
    /// let limits = RateLimitLayer::new().policy(Policy::new("tenant", Quota::per_minute(1)).key(per_tenant));
    /// let service = ServiceBuilder::new().layer(limits).service(service_fn(|_req: Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    /// }));
    /// let call = |method: &str| {
    ///     let mut request = Request::builder().method(method).body(()).unwrap();
    ///     request.extensions_mut().insert(Tenant(7));
    ///     request
    /// };
    /// assert_eq!(service.clone().oneshot(call("GET")).await?.status(), 200);
    /// assert_eq!(service.clone().oneshot(call("GET")).await?.status(), 429);
    /// assert_eq!(service.clone().oneshot(call("POST")).await?.status(), 200);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_fn<F, K>(key: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> Option<K> + Send + Sync + 'static,
        K: Hash,
    {
        let source = Arc::new(FnSource(key));
        let id = KeyId::Closure(Arc::as_ptr(&source) as *const () as usize);
        Self::Fn(CustomKey {
            source,
            name: std::any::type_name::<F>(),
            id,
        })
    }

    /// One bucket for everything.
    pub fn global() -> Self {
        Self::Global
    }

    /// The key material of a request, or `None` when this policy does not count
    /// it. Keys of your own (extensions, closures) have no material: they are
    /// hashed straight from the value.
    #[inline]
    fn material<'a>(&self, head: &RequestHead<'a>) -> Option<Material<'a>> {
        match self {
            KeyBy::ClientIp { ipv6_prefix } => {
                let ip = client_ip(head.extensions);
                Some(Material::Ip(mask_ip(ip, *ipv6_prefix)))
            }
            KeyBy::Header(name) => head
                .headers
                .get(name)
                .map(|v| Material::Bytes(v.as_bytes())),
            KeyBy::Global => Some(Material::Global),
            KeyBy::Extension(_) | KeyBy::Fn(_) => None,
        }
    }

    /// The in-process key of a request, or `None` when this policy does not
    /// count it: `hasher.key(&material)`, with client addresses turned into their
    /// key directly (no [`Material`] in between, which would go through memory).
    #[inline]
    pub(crate) fn local_key(&self, head: &RequestHead<'_>, hasher: &KeyHasher) -> Option<u64> {
        match self {
            KeyBy::ClientIp { ipv6_prefix } => {
                Some(hasher.ip_key(client_ip(head.extensions), *ipv6_prefix))
            }
            KeyBy::Extension(custom) | KeyBy::Fn(custom) => custom.source.local(head, &hasher.sip),
            _ => self.material(head).map(|m| hasher.key(&m)),
        }
    }

    /// The in-process key and the key shown to a shared backend, or `None` when
    /// this policy does not count the request.
    pub(crate) fn remote_key(
        &self,
        head: &RequestHead<'_>,
        hasher: &KeyHasher,
        secret: &[u8],
    ) -> Option<(u64, String)> {
        match self {
            KeyBy::Extension(custom) | KeyBy::Fn(custom) => Some((
                custom.source.local(head, &hasher.sip)?,
                custom.source.shared(head, secret)?,
            )),
            _ => self
                .material(head)
                .map(|m| (hasher.key(&m), m.shared(secret))),
        }
    }

    /// For keys the application supplies (extensions, closures), what they are:
    /// the policy warns once when it never finds one.
    pub(crate) fn supplied_by_app(&self) -> Option<&CustomKey> {
        match self {
            KeyBy::Extension(custom) | KeyBy::Fn(custom) => Some(custom),
            _ => None,
        }
    }
}

/// A key of the application's own: a typed extension ([`KeyBy::extension`]) or a
/// closure ([`KeyBy::from_fn`]). Its `Debug` shows the type it reads.
#[derive(Clone)]
pub struct CustomKey {
    source: Arc<dyn KeySource>,
    name: &'static str,
    id: KeyId,
}

/// What makes two custom keys equal: the extension type, or the same closure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyId {
    Type(TypeId),
    Closure(usize),
}

impl CustomKey {
    /// The extension's type name, or the closure's.
    pub fn type_name(&self) -> &'static str {
        self.name
    }
}

impl PartialEq for CustomKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for CustomKey {}

impl fmt::Debug for CustomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Reads a key of the application's own from a request head.
trait KeySource: Send + Sync {
    /// The keyed SipHash of the value, for the in-process limiter.
    fn local(&self, head: &RequestHead<'_>, sip: &RandomState) -> Option<u64>;
    /// The key sent to a shared backend: a SHA-256 of the secret and the value.
    fn shared(&self, head: &RequestHead<'_>, secret: &[u8]) -> Option<String>;
}

struct ExtensionSource<T>(PhantomData<fn() -> T>);

impl<T: Hash + Send + Sync + 'static> KeySource for ExtensionSource<T> {
    #[inline]
    fn local(&self, head: &RequestHead<'_>, sip: &RandomState) -> Option<u64> {
        head.extensions.get::<T>().map(|v| sip.hash_one(v))
    }

    fn shared(&self, head: &RequestHead<'_>, secret: &[u8]) -> Option<String> {
        head.extensions.get::<T>().map(|v| shared_digest(secret, v))
    }
}

struct FnSource<F>(F);

impl<F, K> KeySource for FnSource<F>
where
    F: Fn(&RequestHead<'_>) -> Option<K> + Send + Sync,
    K: Hash,
{
    #[inline]
    fn local(&self, head: &RequestHead<'_>, sip: &RandomState) -> Option<u64> {
        (self.0)(head).map(|v| sip.hash_one(&v))
    }

    fn shared(&self, head: &RequestHead<'_>, secret: &[u8]) -> Option<String> {
        (self.0)(head).map(|v| shared_digest(secret, &v))
    }
}

/// The backend key of a value of the application's own: `h:` and the digest of
/// the secret and the bytes its `Hash` writes, integers as little-endian bytes
/// so that instances on any platform agree.
fn shared_digest<T: Hash + ?Sized>(secret: &[u8], value: &T) -> String {
    let mut sha = StableHasher(Sha256::new());
    sha.0.update(secret);
    value.hash(&mut sha);
    digest_key(sha.0)
}

/// `h:` and the first 160 bits of the SHA-256 `sha` has seen, in hex: as long as
/// a key can be without a collision in any realistic key space mattering.
fn digest_key(sha: Sha256) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = sha.finalize();
    let mut key = String::with_capacity(2 + 40);
    key.push_str("h:");
    for &byte in &digest[..20] {
        key.push(char::from(HEX[usize::from(byte >> 4)]));
        key.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    key
}

/// A [`Hasher`] that feeds SHA-256, independent of the platform's byte order and
/// word size.
struct StableHasher(Sha256);

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        // Only the digest is read (`shared_digest`); this is its first 8 bytes.
        let digest = self.0.clone().finalize();
        u64::from_le_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ])
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn write_u16(&mut self, n: u16) {
        self.0.update(n.to_le_bytes());
    }

    fn write_u32(&mut self, n: u32) {
        self.0.update(n.to_le_bytes());
    }

    fn write_u64(&mut self, n: u64) {
        self.0.update(n.to_le_bytes());
    }

    fn write_u128(&mut self, n: u128) {
        self.0.update(n.to_le_bytes());
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
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
    /// The key shown to a shared backend: the masked address, or a SHA-256 of the
    /// secret and the value (stable across instances that share the secret).
    pub(crate) fn shared(&self, secret: &[u8]) -> String {
        match self {
            Material::Ip(ip) => format!("ip:{ip}"),
            Material::Bytes(bytes) => {
                let mut sha = Sha256::new();
                sha.update(secret);
                sha.update(bytes);
                digest_key(sha)
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

    #[test]
    fn backend_digests_of_values_do_not_depend_on_the_platform() {
        // A u64 is read as its 8 little-endian bytes, a usize as a u64.
        let mut sha = Sha256::new();
        sha.update(b"s");
        sha.update(42u64.to_le_bytes());
        assert_eq!(shared_digest(b"s", &42u64), digest_key(sha));
        assert_eq!(shared_digest(b"s", &42usize), shared_digest(b"s", &42u64));
        assert_ne!(shared_digest(b"s", &42u64), shared_digest(b"t", &42u64));
        let long = "x".repeat(1 << 20);
        assert_eq!(shared_digest(b"s", long.as_str()).len(), 2 + 40);
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
