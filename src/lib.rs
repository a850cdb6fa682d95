//! Production middleware for tower-based HTTP servers.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod client_ip;
pub mod config;
pub mod error;
mod json;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
pub mod request_id;
pub mod route;
mod time;
