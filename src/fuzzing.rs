//! Entry points for the fuzz targets in `fuzz/`, behind the `fuzzing` feature.
//!
//! The parsers of client input that are private to their modules are reached
//! here through thin wrappers that return only public types, so the targets can
//! check what those parsers promise. Nothing here is a stable API.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};

use crate::body_limit::layer;
use crate::client_ip::parse::{self, Node};
use crate::paths::PathRules;
use crate::request_id::RequestId;

/// One hop of a forwarding header as the client-IP walk judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// A usable address (IPv4-mapped IPv6 normalised, zone removed).
    Ip(IpAddr),
    /// `unknown`, an obfuscated name, or a `Forwarded` element without `for=`.
    Opaque,
    /// Not an address.
    Malformed,
}

impl From<Node> for Hop {
    fn from(node: Node) -> Self {
        match node {
            Node::Ip(ip) => Hop::Ip(ip),
            Node::Opaque => Hop::Opaque,
            Node::Malformed => Hop::Malformed,
        }
    }
}

/// The id `RequestIdLayer` would keep from these request headers.
pub fn incoming_request_id(headers: &HeaderMap) -> Option<RequestId> {
    crate::request_id::layer::incoming(headers)
}

/// One `X-Forwarded-For` entry or `Forwarded` `for=` value.
pub fn forwarding_node(text: &str) -> Hop {
    parse::node(text).into()
}

/// The hops of `X-Forwarded-For` header values, right-most first.
pub fn x_forwarded_for(values: &[HeaderValue]) -> Vec<Hop> {
    parse::xff_rev(values.iter()).map(Hop::from).collect()
}

/// The `for=` hops of `Forwarded` header values, right-most first.
pub fn forwarded(values: &[HeaderValue]) -> Vec<Hop> {
    parse::forwarded_rev(values.iter())
        .into_iter()
        .map(Hop::from)
        .collect()
}

/// One `Content-Length` number: `1*DIGIT` that fits in a `u64`.
pub fn content_length_digits(bytes: &[u8]) -> Option<u64> {
    layer::parse_digits(bytes)
}

/// Why the `Content-Length` headers give no usable length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthError {
    /// An element is not a decimal number that fits in 64 bits.
    Invalid,
    /// Elements disagree.
    Conflicting,
}

/// The declared body length of a request, as `BodyLimitLayer` reads it.
pub fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, LengthError> {
    layer::declared_length(headers).map_err(|e| match e {
        layer::LengthProblem::Invalid => LengthError::Invalid,
        layer::LengthProblem::Conflicting => LengthError::Conflicting,
    })
}

/// The index of the first of `patterns` that matches `path`, under the per-route
/// grammar of the body-limit and timeout layers.
pub fn route_index(patterns: &[&str], path: &str) -> Option<usize> {
    let mut routes = PathRules::default();
    for (i, pattern) in patterns.iter().enumerate() {
        routes.push(pattern, i);
    }
    routes.get(path)
}
