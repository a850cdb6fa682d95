use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::header::{FORWARDED, HeaderName};
use http::{HeaderMap, Request};
use ipnet::IpNet;
use tower_layer::Layer;
use tower_service::Service;

use super::parse::{self, Node};
use super::{ClientIp, ClientIpSource, ForwardedHeader};
use crate::config::{self, ConfigError};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Entries walked past at most; a longer chain of trusted hops fails closed.
const MAX_HOPS: usize = 32;

#[derive(Clone, Debug, Default)]
enum Trust {
    #[default]
    Nobody,
    Proxies(Vec<IpNet>),
    Hops(usize),
}

#[derive(Debug, Default)]
struct Config {
    trust: Trust,
    header: ForwardedHeader,
    warned: AtomicBool,
}

/// Resolves the client address into a [`ClientIp`] extension. See the
/// [module docs](super).
#[derive(Clone, Debug, Default)]
pub struct ClientIpLayer {
    config: Arc<Config>,
}

impl ClientIpLayer {
    /// A layer that trusts no proxy: the client is the connection's peer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `TRUSTED_PROXIES`: a list of CIDRs or bare addresses separated by commas
    /// or spaces. Unset or empty means no proxy is trusted.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let mut layer = Self::new();
        if let Some(list) = config::var("TRUSTED_PROXIES", &mut errors) {
            match parse_proxies(&list) {
                Ok(nets) => layer = layer.trusted_proxies(nets),
                Err(bad) => errors.push(
                    "TRUSTED_PROXIES",
                    &list,
                    format!("a list of CIDRs such as 10.0.0.0/8, ::1 ({bad:?} is not one)"),
                ),
            }
        }
        errors.into_result(layer)
    }

    /// Trusts proxies in these networks (a bare address is a /32 or /128).
    ///
    /// Replaces any earlier trust setting. An empty list trusts nobody.
    pub fn trusted_proxies(self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        let nets: Vec<IpNet> = nets.into_iter().map(|n| n.trunc()).collect();
        let trust = if nets.is_empty() {
            Trust::Nobody
        } else {
            Trust::Proxies(nets)
        };
        self.with_config(|c| c.trust = trust)
    }

    /// Trusts exactly `hops` proxies in front of the service: the client is the
    /// `hops`-th forwarding entry from the right. Use only when every request
    /// provably passes through that many proxies. Replaces any earlier trust setting;
    /// `0` trusts nobody.
    pub fn trusted_hops(self, hops: usize) -> Self {
        let trust = if hops == 0 {
            Trust::Nobody
        } else {
            Trust::Hops(hops)
        };
        self.with_config(|c| c.trust = trust)
    }

    /// Chooses the forwarding header to read (default `X-Forwarded-For`).
    pub fn header(self, header: ForwardedHeader) -> Self {
        self.with_config(|c| c.header = header)
    }

    fn with_config(self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            trust: self.config.trust.clone(),
            header: self.config.header,
            warned: AtomicBool::new(false),
        };
        f(&mut config);
        Self {
            config: Arc::new(config),
        }
    }

    /// Resolves the client address of a request without running a service.
    pub fn resolve<B>(&self, request: &Request<B>) -> Option<ClientIp> {
        let peer = crate::peer::ip(request.extensions());
        self.config.resolve(peer, request.headers())
    }
}

/// Parses a `TRUSTED_PROXIES`-style list; on error returns the bad item.
pub(crate) fn parse_proxies(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| {
                    item.parse::<IpAddr>()
                        .map(|ip| IpNet::from(ip.to_canonical()))
                })
                .map_err(|_| item.to_owned())
        })
        .collect()
}

impl Config {
    fn resolve(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<ClientIp> {
        let peer = peer.map(|p| p.to_canonical());
        if let Trust::Nobody = self.trust {
            self.warn_if_forwarded(headers);
            return peer.map(ClientIp::from_peer);
        }
        let source = match self.header {
            ForwardedHeader::XForwardedFor => ClientIpSource::XForwardedFor,
            ForwardedHeader::Forwarded => ClientIpSource::Forwarded,
        };
        let forwarded;
        let mut xff;
        let nodes: &mut dyn Iterator<Item = Node> = match self.header {
            ForwardedHeader::XForwardedFor => {
                xff = parse::xff_rev(headers.get_all(X_FORWARDED_FOR).iter());
                &mut xff
            }
            ForwardedHeader::Forwarded => {
                forwarded = parse::forwarded_rev(headers.get_all(FORWARDED).iter());
                &mut forwarded.into_iter()
            }
        };
        let header_ip = |ip| ClientIp {
            ip,
            source,
            via_trusted_proxy: true,
        };
        match &self.trust {
            Trust::Nobody => unreachable!("handled above"),
            Trust::Proxies(nets) => {
                let peer = peer?;
                let trusted = |ip: &IpAddr| nets.iter().any(|n| n.contains(ip));
                if !trusted(&peer) {
                    return Some(ClientIp::from_peer(peer));
                }
                let fallback = ClientIp {
                    ip: peer,
                    source: ClientIpSource::Peer,
                    via_trusted_proxy: true,
                };
                let mut last_trusted = None;
                for node in nodes.take(MAX_HOPS + 1).enumerate() {
                    match node {
                        (MAX_HOPS, _) | (_, Node::Opaque | Node::Malformed) => {
                            return Some(fallback);
                        }
                        (_, Node::Ip(ip)) if trusted(&ip) => last_trusted = Some(ip),
                        (_, Node::Ip(ip)) => return Some(header_ip(ip)),
                    }
                }
                // Every hop was trusted: the request started inside the trusted
                // network, at the left-most hop.
                Some(last_trusted.map_or(fallback, header_ip))
            }
            Trust::Hops(hops) => {
                let fallback = peer.map(|ip| ClientIp {
                    ip,
                    source: ClientIpSource::Peer,
                    via_trusted_proxy: true,
                });
                match nodes.take(*hops).nth(hops - 1) {
                    Some(Node::Ip(ip)) => Some(header_ip(ip)),
                    _ => fallback,
                }
            }
        }
    }

    #[cold]
    fn warn_forwarded(&self) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "forwarding headers (X-Forwarded-For or Forwarded) arrived but no proxy is \
                 trusted, so they are ignored and the peer address is the client; set \
                 TRUSTED_PROXIES if this service runs behind a proxy"
            );
        }
    }

    #[inline]
    fn warn_if_forwarded(&self, headers: &HeaderMap) {
        if !self.warned.load(Ordering::Relaxed)
            && (headers.contains_key(X_FORWARDED_FOR) || headers.contains_key(FORWARDED))
        {
            self.warn_forwarded();
        }
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ResolveClientIp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResolveClientIp {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`ClientIpLayer`].
#[derive(Clone, Debug)]
pub struct ResolveClientIp<S> {
    inner: S,
    layer: ClientIpLayer,
}

impl<S> ResolveClientIp<S> {
    /// Wraps `inner`, trusting no proxy.
    pub fn new(inner: S) -> Self {
        ClientIpLayer::new().layer(inner)
    }

    /// A layer trusting no proxy: [`ClientIpLayer::new`].
    pub fn layer() -> ClientIpLayer {
        ClientIpLayer::new()
    }

    define_inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for ResolveClientIp<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(ip) = self.layer.resolve(&req) {
            req.extensions_mut().insert(ip);
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http::HeaderValue;

    use super::*;

    fn req(peer: Option<&str>, headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::new(());
        for (n, v) in headers {
            r.headers_mut().append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        if let Some(p) = peer {
            r.extensions_mut().insert(p.parse::<SocketAddr>().unwrap());
        }
        r
    }

    fn ip_of(layer: &ClientIpLayer, peer: Option<&str>, h: &[(&str, &str)]) -> Option<String> {
        layer.resolve(&req(peer, h)).map(|c| c.ip().to_string())
    }

    fn proxies() -> ClientIpLayer {
        ClientIpLayer::new()
            .trusted_proxies(parse_proxies("10.0.0.0/8, 2001:db8:ffff::/48").unwrap())
    }

    #[test]
    fn nobody_trusted_ignores_headers() {
        let l = ClientIpLayer::new();
        let h = [("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=1.2.3.4")];
        assert_eq!(ip_of(&l, Some("9.9.9.9:1"), &h).unwrap(), "9.9.9.9");
        assert!(l.config.warned.load(Ordering::Relaxed));
        assert_eq!(ip_of(&l, None, &h), None);
        let mapped = ip_of(&l, Some("[::ffff:9.9.9.9]:1"), &[]).unwrap();
        assert_eq!(mapped, "9.9.9.9");
    }

    #[test]
    fn untrusted_peer_ignores_headers() {
        let got = ip_of(
            &proxies(),
            Some("9.9.9.9:1"),
            &[("x-forwarded-for", "1.2.3.4")],
        );
        assert_eq!(got.unwrap(), "9.9.9.9");
    }

    #[test]
    fn walks_right_to_left() {
        let l = proxies();
        let p = Some("10.0.0.1:1");
        let x = |v| ip_of(&l, p, &[("x-forwarded-for", v)]).unwrap();
        assert_eq!(x("6.6.6.6, 1.2.3.4"), "1.2.3.4");
        assert_eq!(x("6.6.6.6, 1.2.3.4, 10.1.1.1, 10.2.2.2"), "1.2.3.4");
        // Left-to-right scanners are fooled by `forged, trusted`; we are not.
        assert_eq!(x("10.9.9.9, 1.2.3.4"), "1.2.3.4");
        // Garbage left of the client is never reached.
        assert_eq!(x("garbage, 1.2.3.4"), "1.2.3.4");
        // Garbage reached during the walk fails closed.
        assert_eq!(x("1.2.3.4, garbage, 10.1.1.1"), "10.0.0.1");
        assert_eq!(x("1.2.3.4, unknown"), "10.0.0.1");
        // Every hop trusted: the left-most one.
        assert_eq!(x("10.3.3.3, 10.1.1.1"), "10.3.3.3");
        assert_eq!(x("[2001:db8::1]:80, 2001:db8:ffff::2"), "2001:db8::1");
        assert_eq!(x("::ffff:1.2.3.4"), "1.2.3.4");
        assert_eq!(ip_of(&l, p, &[]).unwrap(), "10.0.0.1");
        let two_lines = [
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ];
        assert_eq!(ip_of(&l, p, &two_lines).unwrap(), "2.2.2.2");
    }

    #[test]
    fn long_chains_fail_closed() {
        let l = proxies();
        let p = Some("10.0.0.1:1");
        let many_trusted = vec!["10.0.0.2"; 1000].join(", ");
        let got = ip_of(&l, p, &[("x-forwarded-for", &many_trusted)]).unwrap();
        assert_eq!(got, "10.0.0.1");
        let long_left = format!("{}, 1.2.3.4", vec!["6.6.6.6"; 1000].join(", "));
        assert!(long_left.len() > 8 * 1024);
        let got = ip_of(&l, p, &[("x-forwarded-for", &long_left)]).unwrap();
        assert_eq!(got, "1.2.3.4");
    }

    #[test]
    fn hops() {
        let l = ClientIpLayer::new().trusted_hops(2);
        let x = |v| ip_of(&l, Some("9.9.9.9:1"), &[("x-forwarded-for", v)]).unwrap();
        assert_eq!(x("6.6.6.6, 1.2.3.4, 35.0.0.1"), "1.2.3.4");
        assert_eq!(x("35.0.0.1"), "9.9.9.9");
        assert_eq!(x("bad, 35.0.0.1"), "9.9.9.9");
        assert_eq!(ip_of(&l, Some("9.9.9.9:1"), &[]).unwrap(), "9.9.9.9");
    }

    #[test]
    fn forwarded_header() {
        let l = proxies().header(ForwardedHeader::Forwarded);
        let p = Some("10.0.0.1:1");
        let f = |v| ip_of(&l, p, &[("forwarded", v)]).unwrap();
        assert_eq!(
            f("for=6.6.6.6, for=\"[2001:db8::5]:4711\";proto=https"),
            "2001:db8::5"
        );
        assert_eq!(f("for=1.2.3.4, for=10.1.1.1;by=10.0.0.1"), "1.2.3.4");
        assert_eq!(f("for=1.2.3.4, for=_hidden"), "10.0.0.1");
        assert_eq!(f("for=1.2.3.4, for=unknown"), "10.0.0.1");
        assert_eq!(f("for=\"1.2.3.4"), "10.0.0.1");
        // X-Forwarded-For is not read in this mode.
        let got = ip_of(&l, p, &[("x-forwarded-for", "1.2.3.4")]).unwrap();
        assert_eq!(got, "10.0.0.1");
        let c = l.resolve(&req(p, &[("forwarded", "for=1.2.3.4")])).unwrap();
        assert_eq!(c.source(), ClientIpSource::Forwarded);
        assert!(c.via_trusted_proxy());
    }

    #[test]
    fn proxy_list_parsing() {
        assert_eq!(
            parse_proxies("10.0.0.0/8 ::1,192.168.1.1").unwrap().len(),
            3
        );
        assert_eq!(parse_proxies("10.0.0.0/33").unwrap_err(), "10.0.0.0/33");
        assert_eq!(parse_proxies("").unwrap().len(), 0);
    }
}
