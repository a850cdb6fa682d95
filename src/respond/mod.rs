//! The respond core: the one way a layer that answers by itself turns a
//! [`Problem`](crate::error::Problem) into a response.
//!
//! A layer builds the `Problem`, takes its [`Renderer`] for the request with
//! [`Renderer::for_request`], and calls [`Renderer::response`] (or `rewrite` for a
//! response that already has a head). The renderer picks the answer:
//! problem+json, the wrapped format or a format of the user's own for HTTP
//! clients, and a trailers-only gRPC status for gRPC clients (see [`grpc`]). The
//! body is always [`ResponseBody`](crate::body::ResponseBody), and the problem
//! always ends in the response's extensions, where the log and metrics layers
//! read it.

pub(crate) mod grpc;
mod render;

pub use self::render::{ErrorFormat, RenderProblem, Renderer};
