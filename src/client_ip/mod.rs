//! The client's address, resolved safely behind proxies.
//!
//! [`ClientIpLayer`] inserts a [`ClientIp`] request extension. By default nobody is
//! trusted and the client is the peer of the TCP connection, taken from axum's
//! `ConnectInfo<SocketAddr>`, tonic's `TcpConnectInfo` (feature `tonic`), or a
//! `SocketAddr` request extension. Forwarding headers
//! are then ignored, because any client can write them; a one-time warning says so
//! when they arrive.
//!
//! Behind your own proxies, say which ones to trust:
//! - [`ClientIpLayer::trusted_proxies`] (or `TRUSTED_PROXIES`, a CIDR list): when the
//!   peer is trusted, the forwarding header is walked **right to left** past trusted
//!   addresses, and the first untrusted one is the client.
//! - [`ClientIpLayer::trusted_hops`]: exactly `n` proxies stand in front of the
//!   service, so the client is the `n`-th entry from the right.
//!
//! The left-most entry is never trusted for what it is: whatever the client wrote.
//! When the walk reaches an entry that is malformed, `unknown` or an obfuscated
//! identifier, resolution fails closed to the peer address. IPv4-mapped IPv6
//! addresses are normalised to IPv4 and IPv6 zones are dropped, before any check.
//!
//! `X-Forwarded-For` is read by default; [`ForwardedHeader::Forwarded`] switches to
//! RFC 7239 `Forwarded`. Read only the header your proxy writes: a header it merely
//! passes through is written by the client.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_ops::client_ip::{ClientIp, ClientIpLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     .layer(ClientIpLayer::new().trusted_proxies(["10.0.0.0/8".parse()?]))
//!     .service(service_fn(|req: Request<()>| async move {
//!         let ip = req.extensions().get::<ClientIp>().unwrap().ip();
//!         Ok::<_, std::convert::Infallible>(Response::new(ip.to_string()))
//!     }));
//!
//! // The load balancer at 10.0.0.5 appended the real client; the client wrote
//! // a spoofed entry on the left, which is never reached.
//! let mut request = Request::builder()
//!     .header("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.7")
//!     .body(())?;
//! request.extensions_mut().insert("10.0.0.5:41000".parse::<SocketAddr>()?);
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.body(), "203.0.113.9");
//! # Ok(())
//! # }
//! ```

mod layer;
pub(crate) mod parse;

use std::net::IpAddr;

pub use self::layer::{ClientIpLayer, ResolveClientIp};

/// The old name of [`ResolveClientIp`].
#[deprecated(note = "renamed to `ResolveClientIp`, after the `X<S>` naming of the other services")]
pub type ClientIpService<S> = ResolveClientIp<S>;

/// Where the address in a [`ClientIp`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientIpSource {
    /// The peer of the connection.
    Peer,
    /// `X-Forwarded-For`, written by a trusted proxy.
    XForwardedFor,
    /// RFC 7239 `Forwarded`, written by a trusted proxy.
    Forwarded,
}

/// The forwarding header a [`ClientIpLayer`] reads when a proxy is trusted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded`, its `for=` parameters.
    Forwarded,
}

/// The resolved address of the client: a request extension set by [`ClientIpLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp {
    ip: IpAddr,
    source: ClientIpSource,
    via_trusted_proxy: bool,
}

impl ClientIp {
    /// An address resolved from the connection itself, trusting nothing.
    pub fn from_peer(ip: IpAddr) -> Self {
        Self {
            ip: ip.to_canonical(),
            source: ClientIpSource::Peer,
            via_trusted_proxy: false,
        }
    }

    /// The client's address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Where the address came from.
    pub fn source(&self) -> ClientIpSource {
        self.source
    }

    /// Whether the connection came from a trusted proxy, so that other forwarding
    /// headers it writes (such as `X-Forwarded-Proto`) can be believed.
    pub fn via_trusted_proxy(&self) -> bool {
        self.via_trusted_proxy
    }
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.ip.fmt(f)
    }
}
