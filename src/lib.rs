//! Production middleware for tower-based HTTP servers.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod client_ip;
pub mod config;
pub mod health;
pub mod request_id;
pub mod route;
pub mod shutdown;
