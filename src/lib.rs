//! Production middleware for tower-based HTTP servers (axum, hyper, tonic).
//!
//! Every concern is an independent [`Layer`](tower_layer::Layer) that keeps
//! the inner service's error type and composes with the others in any order. The
//! layers talk to each other only through typed extensions:
//!
//! | extension | set by | read by |
//! |---|---|---|
//! | [`request_id::RequestId`] (request and response) | [`request_id::RequestIdLayer`] | logs, error envelopes, handlers |
//! | [`client_ip::ClientIp`] (request) | [`client_ip::ClientIpLayer`] | logs, rate limiting, security headers |
//! | [`route::MatchedRoute`] (response) | [`route::CaptureRouteLayer`] inside the router | logs, metrics |
//! | [`error::Problem`] (response) | every layer that answers by itself | logs, metrics |
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{Router, routing::get};
//! use tower::ServiceBuilder;
//! use tower_ops::{client_ip::ClientIpLayer, request_id::RequestIdLayer, route::CaptureRouteLayer};
//!
//! # fn build() -> Result<Router, tower_ops::config::ConfigError> {
//! let app = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     // Inside the router: records the route template for the outer layers.
//!     .layer(CaptureRouteLayer::new())
//!     // Outermost first, in the canonical order.
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(RequestIdLayer::new())
//!             .layer(ClientIpLayer::from_env()?),
//!     );
//! # Ok(app)
//! # }
//! # build().unwrap();
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `axum` | yes | route capture from axum's `MatchedPath`, `ConnectInfo` peer addresses, `IntoResponse` for [`error::Problem`] |
//! | `full` | no | every feature |
//!
//! # Configuration
//!
//! Layers have builders and a `from_env()` that reads the variables of the
//! README's environment table. `from_env()` never stops at the first mistake: its
//! [`config::ConfigError`] lists every invalid variable with the value found and what
//! was expected.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod client_ip;
pub mod config;
pub mod error;
pub mod health;
mod json;
pub mod log;
#[cfg(feature = "otel")]
pub mod otel;
pub mod paths;
pub mod redact;
pub mod request_id;
pub mod route;
pub mod shutdown;
mod time;
pub mod trace_context;
