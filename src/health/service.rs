use std::convert::Infallible;
use std::fmt::Write as _;
use std::task::{Context, Poll};

use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use tower_service::Service;

use super::readiness::ReadinessState;
use super::registry::{HealthRegistry, HealthReport, HealthStatus};
use crate::body::EndpointBody;

/// Path of the liveness probe.
pub const LIVE_PATH: &str = "/health/live";
/// Path of the readiness probe.
pub const READY_PATH: &str = "/health/ready";
/// Path of the detailed report.
pub const HEALTH_PATH: &str = "/health";

/// The probe endpoints as a tower [`Service`]: `/health/live`,
/// `/health/ready` and `/health` (any other path answers 404).
///
/// Works with plain hyper (through hyper-util's `TowerToHyperService`) and
/// with axum (`Router::route_service`, or [`HealthRegistry::router`]).
/// Cloning is cheap.
#[derive(Clone, Debug)]
pub struct HealthService {
    registry: HealthRegistry,
}

impl HealthService {
    /// Serves the probes of `registry`.
    pub fn new(registry: HealthRegistry) -> Self {
        Self { registry }
    }

    /// The registry behind the endpoints.
    pub fn registry(&self) -> &HealthRegistry {
        &self.registry
    }
}

impl HealthRegistry {
    /// The probe endpoints as a tower service.
    pub fn service(&self) -> HealthService {
        HealthService::new(self.clone())
    }

    /// An axum router with the three probe routes, to merge into the
    /// application's router.
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let service = self.service();
        axum::Router::new()
            .route_service(LIVE_PATH, service.clone())
            .route_service(READY_PATH, service.clone())
            .route_service(HEALTH_PATH, service)
    }
}

/// The response body of the probe endpoints: [`EndpointBody`], the same type as
/// the metrics exporter's (feature `metrics`).
pub type HealthBody = EndpointBody;

/// The future of [`HealthService`]: ready at once for liveness and rejections,
/// awaiting the registry otherwise.
pub type ResponseFuture = crate::body::EndpointFuture;

impl<B> Service<Request<B>> for HealthService {
    type Response = Response<HealthBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let ready = ResponseFuture::ready;
        let endpoint = match req.uri().path() {
            LIVE_PATH => Endpoint::Live,
            READY_PATH => Endpoint::Ready,
            HEALTH_PATH => Endpoint::Health,
            _ => return ready(empty(StatusCode::NOT_FOUND)),
        };
        let head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut response = empty(StatusCode::METHOD_NOT_ALLOWED);
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                return ready(response);
            }
        };
        let registry = self.registry.clone();
        match endpoint {
            Endpoint::Live => ready(json(StatusCode::OK, r#"{"status":"alive"}"#.into(), head)),
            Endpoint::Ready => match registry.readiness().state() {
                ReadinessState::Ready
                    if registry.inner.ready_runs_checks && registry.has_critical() =>
                {
                    ResponseFuture::waiting(async move {
                        let report = registry.check_critical().await;
                        if report.status() == HealthStatus::Unhealthy {
                            not_ready("checks_failed", head)
                        } else {
                            ready_ok(head)
                        }
                    })
                }
                ReadinessState::Ready => ready(ready_ok(head)),
                ReadinessState::Starting => ready(not_ready("starting", head)),
                ReadinessState::Draining => ready(not_ready("draining", head)),
            },
            Endpoint::Health => {
                let details = registry.details_allowed(req.headers());
                ResponseFuture::waiting(async move {
                    let report = registry.check_all().await;
                    let status = if report.status() == HealthStatus::Unhealthy {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    };
                    json(status, render_report(&report, details), head)
                })
            }
        }
    }
}

enum Endpoint {
    Live,
    Ready,
    Health,
}

impl HealthRegistry {
    fn details_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.inner.detail_token else {
            return true;
        };
        crate::bearer::authorized(headers, expected)
    }
}

fn ready_ok(head: bool) -> Response<HealthBody> {
    json(StatusCode::OK, r#"{"status":"ready"}"#.into(), head)
}

fn not_ready(reason: &str, head: bool) -> Response<HealthBody> {
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(r#"{{"status":"not_ready","reason":"{reason}"}}"#),
        head,
    )
}

fn render_report(report: &HealthReport, details: bool) -> String {
    let mut out = String::with_capacity(64 + report.checks().len() * 96);
    out.push_str(r#"{"status":""#);
    out.push_str(report.status().as_str());
    out.push('"');
    if details {
        out.push_str(r#","checks":{"#);
        for (i, (name, result)) in report.checks().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, name);
            out.push_str(r#":{"status":""#);
            out.push_str(result.status().as_str());
            let _ = write!(
                out,
                r#"","duration_ms":{:.3}"#,
                result.duration().as_secs_f64() * 1000.0
            );
            if let Some(error) = result.error() {
                out.push_str(r#","error":"#);
                push_json_string(&mut out, error);
            }
            out.push('}');
        }
        out.push('}');
    }
    let _ = write!(out, r#","uptime_s":{}}}"#, report.uptime().as_secs());
    out
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json(status: StatusCode, body: String, head: bool) -> Response<HealthBody> {
    let mut response = empty(status);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if !head {
        *response.body_mut() = EndpointBody::full(body);
    }
    response
}

fn empty(status: StatusCode) -> Response<HealthBody> {
    let mut response = Response::new(EndpointBody::empty());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\n\u{1}");
        assert_eq!(out, r#""a\"b\\c\n\u0001""#.replace("\\n", "\\u000a"));
    }
}
