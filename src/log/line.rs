//! The request line: its level, its fields and the event that carries them.

use std::fmt;

use http::StatusCode;
use tracing::Level;

use super::layer::*;
use super::service::*;
use crate::body::BodyCapture;
use crate::error::{Problem, ShadowRejection};
use crate::request_id::RequestId;
use crate::route::MatchedRoute;

/// An IP address as text on the stack: the line needs it as a `&str`, and
/// IPv4, the usual case, is written without `core::fmt`.
pub(super) struct IpText {
    pub(super) buf: [u8; 45],
    pub(super) len: usize,
}

impl IpText {
    fn new(ip: std::net::IpAddr) -> Self {
        let mut text = Self {
            buf: [0; 45],
            len: 0,
        };
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            // At most 39 characters: always fits.
            std::net::IpAddr::V6(v6) => {
                let _ = fmt::Write::write_fmt(&mut text, format_args!("{v6}"));
            }
        }
        text
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[derive(Clone, Copy)]
pub(super) enum Outcome<'a> {
    Completed,
    Aborted,
    Failed(&'a dyn fmt::Display),
    BodyFailed(&'a str),
}

pub(super) fn emit(p: &Pending, done: Option<&Done>, outcome: Outcome<'_>) {
    emit_line(p, done, outcome);
    // The OpenTelemetry span gets its name and status once the line is out.
    #[cfg(feature = "otel")]
    crate::otel::server::finish(
        &p.span,
        &p.method,
        done.and_then(|d| d.route.as_ref()),
        done.map(|d| d.status),
        matches!(outcome, Outcome::Failed(_) | Outcome::BodyFailed(_)),
    );
}

/// The status that decides the level: the response's, or the rejection's when
/// the answer travels in a successful HTTP status (a gRPC call over its quota
/// gets HTTP 200 with `grpc-status: 8`, and is a 429 for the log).
pub(super) fn level_status(status: StatusCode, problem: Option<&Problem>) -> StatusCode {
    match problem {
        Some(p) if p.status().as_u16() >= 400 && status.as_u16() < 400 => p.status(),
        _ => status,
    }
}

pub(super) fn emit_line(p: &Pending, done: Option<&Done>, outcome: Outcome<'_>) {
    let duration = p.start.elapsed();
    let config = &p.config;
    let slow = duration >= config.slow;
    let status = done.map(|d| d.status);
    let problem = done.and_then(|d| d.problem.as_ref());
    let failed = !matches!(outcome, Outcome::Completed);
    let mut level = match status {
        Some(s) => (config.levels)(level_status(s, problem)),
        None => Level::WARN,
    };
    if matches!(outcome, Outcome::Failed(_) | Outcome::BodyFailed(_)) {
        level = Level::ERROR;
    }
    let server_error = status.is_some_and(|s| s.is_server_error());
    if p.probe && !server_error && !failed {
        match config.probe_level {
            Some(l) => level = l,
            None => return,
        }
    }
    if slow && level > Level::WARN {
        level = Level::WARN;
    }
    let shadow = done.and_then(|d| d.shadow.as_ref());
    // An ordinary success is logged only when its request was sampled in; the
    // decision was drawn before the handler ran.
    let ordinary = matches!(outcome, Outcome::Completed)
        && !slow
        && problem.is_none()
        && shadow.is_none()
        && status.is_some_and(|s| s.as_u16() < 400);
    if ordinary && !p.sample.is_logged() {
        return;
    }
    let sample_rate = (ordinary && p.sample.rate() < 1.0).then(|| p.sample.rate());
    let path = config.redactor.redact_path_and_query(&p.uri);
    let route = done.and_then(|d| d.route.as_ref());
    let user_agent = p
        .user_agent
        .as_ref()
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    let error = match &outcome {
        Outcome::Failed(e) => Some(config.redactor.redact_text(&e.to_string()).into_owned()),
        Outcome::BodyFailed(e) => Some(config.redactor.redact_text(e).into_owned()),
        _ => None,
    };
    let client_ip = p.client_ip.map(|c| IpText::new(c.ip()));
    let mut hex = [0; 32];
    let trace_id = match p.trace_id {
        Some(id) => Some(id.encode(&mut hex)),
        None => problem.and_then(Problem::get_trace_id),
    };
    if let Some(headers) = &p.headers {
        p.fields.set("headers", headers.clone());
    }
    if let Some(limit) = config.capture {
        if let Some(body) = p.request_body.as_ref().and_then(BodyCapture::take) {
            let value = captured(&config.redactor, &body, body.len() as u64, limit);
            p.fields.set("request_body", value);
        }
        if let Some(d) = done
            && let Some(copy) = &d.response_body
            && d.response_bytes > 0
        {
            let value = captured(&config.redactor, copy, d.response_bytes, limit);
            p.fields.set("response_body", value);
        }
    }
    let method = p.method.as_str();
    let route = route.map_or("unmatched", MatchedRoute::as_str);
    let path: &str = &path;
    let status = status.map(|s| s.as_u16());
    let duration_ms = duration.as_micros() as f64 / 1000.0;
    let request_id = p.request_id.as_ref().map(RequestId::as_str);
    let client_request_id = p.client_request_id.as_ref().map(RequestId::as_str);
    let client_ip = client_ip.as_ref().map(IpText::as_str);
    let user_agent = user_agent.as_deref();
    let response_bytes = done.map(|d| d.response_bytes);
    let code = problem.map(|pr| pr.get_code().as_str());
    let rejected_by = problem.and_then(Problem::get_rejected_by);
    let slow = slow.then_some(true);
    let aborted = matches!(outcome, Outcome::Aborted).then_some(true);
    let error = error.as_deref();
    let shadow_rejected_by = shadow.map(ShadowRejection::rejected_by);
    let shadow_policy = shadow.and_then(ShadowRejection::policy_name);
    if !p.fields.is_empty() {
        // In `fields::LINE_FIELDS` order. The handler's fields are copied out
        // first: a formatter may read them from the span while the line is
        // written.
        let values: [Option<&dyn tracing::Value>; super::fields::LINE_FIELDS.len()] = [
            Some(&MESSAGE),
            Some(&method),
            Some(&route),
            Some(&path),
            Some(&status),
            Some(&duration_ms),
            Some(&request_id),
            Some(&client_request_id),
            Some(&client_ip),
            Some(&user_agent),
            Some(&p.request_bytes),
            Some(&response_bytes),
            Some(&trace_id),
            Some(&code),
            Some(&rejected_by),
            Some(&slow),
            Some(&aborted),
            Some(&error),
            Some(&sample_rate),
            Some(&shadow_rejected_by),
            Some(&shadow_policy),
        ];
        let handler = p.fields.with(<[_]>::to_vec);
        if super::fields::emit(level, &p.span, &values, &handler) {
            return;
        }
    }
    // No handler fields, or no run-time callsite left for them: their text.
    let fields = (!p.fields.is_empty()).then(|| tracing::field::display(Readable(&p.fields)));
    macro_rules! event {
        ($lvl:expr) => {
            tracing::event!(
                target: "tower_ops::request",
                parent: &p.span,
                $lvl,
                method,
                route,
                path,
                status,
                duration_ms,
                request_id,
                client_request_id,
                client_ip,
                user_agent,
                request_bytes = p.request_bytes,
                response_bytes,
                trace_id,
                code,
                rejected_by,
                slow,
                aborted,
                error,
                sample_rate,
                shadow_rejected_by,
                shadow_policy,
                { super::format::HANDLER_FIELDS } = fields,
                "request completed"
            )
        };
    }
    match level {
        Level::ERROR => event!(Level::ERROR),
        Level::WARN => event!(Level::WARN),
        Level::INFO => event!(Level::INFO),
        Level::DEBUG => event!(Level::DEBUG),
        _ => event!(Level::TRACE),
    }
}

/// The request line's message (the event macro above spells it too).
pub(super) const MESSAGE: &str = "request completed";

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::IpText;

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)),
            IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 100, 9)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::new(
                0xffff, 1, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )),
            IpAddr::V6(Ipv4Addr::new(192, 168, 255, 255).to_ipv6_mapped()),
        ] {
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }

    proptest! {
        #[test]
        fn any_ip_text_matches_display(v4 in any::<u32>(), v6 in any::<u128>()) {
            let v4 = IpAddr::V4(Ipv4Addr::from(v4));
            let text = IpText::new(v4);
            prop_assert_eq!(text.as_str(), v4.to_string());
            let v6 = IpAddr::V6(Ipv6Addr::from(v6));
            let text = IpText::new(v6);
            prop_assert_eq!(text.as_str(), v6.to_string());
        }
    }
}
