//! The server span: OpenTelemetry parent, attributes, name and status of the
//! `request` span opened by [`RequestLogLayer`](crate::log::RequestLogLayer).

use http::{HeaderMap, Method, Request, StatusCode};
use opentelemetry::baggage::{BaggageExt, KeyValueMetadata};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_http::HeaderExtractor;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::client_ip::ClientIp;
use crate::redact::Redactor;
use crate::route::MatchedRoute;
use crate::trace_context::{TRACEPARENT, TRACESTATE, TraceContext, TraceId};

/// Sets the parent and the request attributes of `span`, and returns the
/// effective trace id: the span's own when OpenTelemetry is installed, else the
/// incoming one.
pub(crate) fn start<B>(
    span: &Span,
    req: &Request<B>,
    parent: Option<&TraceContext>,
    redactor: &Redactor,
) -> Option<TraceId> {
    // Propagators without W3C trace context: the incoming one is not ours to follow.
    let parent = parent.filter(|_| super::trace_context_on());
    let incoming = parent.map(TraceContext::trace_id);
    if span.is_disabled() {
        return incoming;
    }
    // Fails only when the span is filtered out for OpenTelemetry, or no
    // OpenTelemetry layer is installed: the logs still get the incoming id.
    if span
        .set_parent(parent_context(req.headers(), parent))
        .is_err()
    {
        return incoming;
    }
    // Starting the span here lets the sampler decide before any attribute is
    // built: an unsampled request pays for ids only.
    let cx = span.context();
    let otel_span = cx.span();
    let context = otel_span.span_context();
    let trace_id = if context.is_valid() {
        TraceId::from_bytes(context.trace_id().to_bytes())
    } else {
        incoming
    };
    if !otel_span.is_recording() {
        return trace_id;
    }
    let method = known_method(req.method());
    let uri = req.uri();
    let mut attributes = Vec::with_capacity(10);
    attributes.push(KeyValue::new(
        "http.request.method",
        method.unwrap_or("_OTHER"),
    ));
    if method.is_none() {
        attributes.push(KeyValue::new(
            "http.request.method_original",
            redactor.redact_text(req.method().as_str()).into_owned(),
        ));
    }
    attributes.push(KeyValue::new(
        "url.path",
        redactor.redact_text(uri.path()).into_owned(),
    ));
    if let Some(query) = uri.query() {
        attributes.push(KeyValue::new(
            "url.query",
            redactor.redact_query(query).into_owned(),
        ));
    }
    attributes.push(KeyValue::new(
        "url.scheme",
        uri.scheme_str().unwrap_or("http").to_owned(),
    ));
    if let Some(ip) = req.extensions().get::<ClientIp>() {
        attributes.push(KeyValue::new("client.address", ip.ip().to_string()));
    }
    if let Some(agent) = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
    }
    attributes.push(KeyValue::new(
        "network.protocol.version",
        protocol_version(req.version()),
    ));
    otel_span.set_attributes(attributes);
    trace_id
}

/// Records the route, status code and error type, then names the span
/// `{method} {route}` and marks it failed for 5xx responses and errors.
pub(crate) fn finish(
    span: &Span,
    method: &Method,
    route: Option<&MatchedRoute>,
    status: Option<StatusCode>,
    failed: bool,
) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    let otel_span = cx.span();
    if !otel_span.is_recording() {
        return;
    }
    let method = known_method(method).unwrap_or("HTTP");
    if let Some(route) = route {
        otel_span.set_attribute(KeyValue::new("http.route", route.as_str().to_owned()));
    }
    if let Some(status) = status {
        otel_span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
    }
    let server_error = status.is_some_and(|s| s.is_server_error());
    if let Some(status) = status.filter(|_| server_error) {
        otel_span.set_attribute(KeyValue::new("error.type", status.as_str().to_owned()));
    } else if failed {
        otel_span.set_attribute(KeyValue::new("error.type", "_OTHER"));
    }
    // Started spans are not renamed by an `otel.name` field: rename the
    // OpenTelemetry span itself (which also keeps the name out of log lines).
    otel_span.update_name(match route {
        Some(route) => format!("{method} {}", route.as_str()),
        None => method.to_owned(),
    });
    if server_error || failed {
        otel_span.set_status(opentelemetry::trace::Status::error(""));
    }
}

/// The parent context: our strict parse of `traceparent` decides the remote span;
/// the installed propagator contributes the rest (baggage, or another trace format
/// when no `traceparent` was sent).
fn parent_context(headers: &HeaderMap, parent: Option<&TraceContext>) -> Context {
    let extracted = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    match parent {
        Some(tc) => extracted.with_remote_span_context(remote_span_context(headers, tc)),
        // An invalid traceparent (or any, with trace context off) starts a
        // fresh trace, whatever a lenient propagator made of it.
        None if headers.contains_key(TRACEPARENT) => {
            let baggage = extracted.baggage();
            if baggage.is_empty() {
                Context::new()
            } else {
                let entries: Vec<_> = baggage
                    .iter()
                    .map(|(k, (v, m))| KeyValueMetadata::new(k.clone(), v.clone(), m.clone()))
                    .collect();
                Context::new().with_baggage(entries)
            }
        }
        None => extracted,
    }
}

fn remote_span_context(headers: &HeaderMap, tc: &TraceContext) -> SpanContext {
    let mut values = headers.get_all(TRACESTATE).iter();
    let state = match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default(),
        _ => TraceState::default(),
    };
    SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes(tc.trace_id().to_bytes()),
        opentelemetry::trace::SpanId::from_bytes(tc.parent_id().to_bytes()),
        TraceFlags::new(tc.flags()),
        true,
        state,
    )
}

/// The method name when it is one of the known methods, else `None` (`_OTHER`).
fn known_method(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return None,
    })
}

fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_known_set_are_other() {
        assert_eq!(known_method(&Method::GET), Some("GET"));
        assert_eq!(known_method(&Method::from_bytes(b"PURGE").unwrap()), None);
    }

    #[test]
    fn tracestate_is_kept_only_when_single() {
        let tc = TraceContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        let mut headers = HeaderMap::new();
        headers.insert(TRACESTATE, "vendor=abc".parse().unwrap());
        let sc = remote_span_context(&headers, &tc);
        assert_eq!(sc.trace_state().get("vendor"), Some("abc"));
        assert!(sc.is_remote() && sc.is_sampled());
        headers.append(TRACESTATE, "other=1".parse().unwrap());
        assert_eq!(
            remote_span_context(&headers, &tc)
                .trace_state()
                .get("vendor"),
            None
        );
    }
}
