//! Production middleware for tower-based HTTP servers.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod body_limit;
pub mod client_ip;
pub mod config;
pub mod error;
mod json;
pub mod request_id;
pub mod route;
pub mod security_headers;
mod time;
pub mod timeout;
