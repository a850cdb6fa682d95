//! `/admin/log-level`: the answers, the body of a change, and its WARN line.

use std::future::Future;
use std::net::IpAddr;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use super::{AdminBody, MAX_BODY_BYTES};
use crate::body::ResponseBody;
use crate::client_ip::ClientIp;
use crate::error::{Code, FieldError, Problem, Renderer};
use crate::json::push_str;
use crate::log::{FilterError, LogFilter};

/// The target of the line logged on each change.
const TARGET: &str = "tower_ops::admin";

/// 503: nothing to read or change.
pub(super) fn no_filter() -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE).detail(
        "no reloadable log filter is installed: initialise logging with \
         tower_ops::log::LogBuilder, or give AdminRoutes::filter a LogFilter",
    )
}

/// 200 `{"filter":"<directives>"}`.
pub(super) fn current(filter: &LogFilter, head: bool) -> Response<AdminBody> {
    let mut body = String::from(r#"{"filter":"#);
    push_str(&mut body, &filter.current());
    body.push('}');
    json(if head { String::new() } else { body })
}

/// The answer to a `PUT`: refused from its head (not JSON, declared too large),
/// or read, parsed and applied.
pub(super) fn change<B>(
    req: Request<B>,
    filter: LogFilter,
    renderer: Renderer,
) -> impl Future<Output = Response<AdminBody>> + Send + 'static
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    let refused = refusal(req.headers());
    let client_ip = req
        .extensions()
        .get::<ClientIp>()
        .map(ClientIp::ip)
        .or_else(|| crate::peer::ip(req.extensions()));
    let body = req.into_body();
    async move {
        let problem = match refused {
            Some(problem) => problem,
            None => match read_directives(body).await {
                Ok(directives) => match set(&filter, &directives, client_ip) {
                    Ok(old) => return changed(&directives, &old),
                    Err(e) => filter_problem(e),
                },
                Err(problem) => problem,
            },
        };
        renderer.response(problem.rejected_by("admin"))
    }
}

/// What refuses a `PUT` before its body is read.
fn refusal(headers: &HeaderMap) -> Option<Problem> {
    if !crate::media::is_json(headers) {
        return Some(
            Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .detail(r#"send application/json: {"filter":"<directives>"}"#),
        );
    }
    if declared_length(headers).is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Some(too_large());
    }
    None
}

/// The `filter` of a `{"filter":"<directives>"}` body of at most
/// [`MAX_BODY_BYTES`]. Other fields are refused: a field this version does not
/// know would be silently ignored otherwise.
async fn read_directives<B>(body: B) -> Result<String, Problem>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::BoxError>,
{
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(e) => {
            return Err(Problem::bad_request("the request body could not be read").source(e));
        }
    };
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::bad_request(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(invalid(FieldError::pointer(
            "",
            r#"expected an object: {"filter":"<directives>"}"#,
        )));
    };
    let mut errors = Vec::new();
    let mut directives = None;
    let mut has_filter = false;
    for (name, value) in fields {
        match (name.as_str(), value) {
            ("filter", Value::String(s)) => directives = Some(s),
            ("filter", _) => errors.push(FieldError::pointer("/filter", "must be a string")),
            (other, _) => errors.push(FieldError::pointer(pointer(other), "unknown field")),
        }
        has_filter |= name == "filter";
    }
    if !has_filter {
        errors.push(FieldError::pointer("/filter", "required"));
    }
    match directives {
        Some(directives) if errors.is_empty() => Ok(directives),
        _ => Err(errors
            .into_iter()
            .fold(invalid_base(), |problem, e| problem.error(e))),
    }
}

/// Makes the change, logging it at WARN under whichever of the old and new
/// filters lets the line through.
fn set(
    filter: &LogFilter,
    directives: &str,
    client_ip: Option<IpAddr>,
) -> Result<String, FilterError> {
    filter.set_announced(directives, |old, new| {
        if !tracing::enabled!(target: TARGET, tracing::Level::WARN) {
            return false;
        }
        tracing::warn!(
            target: TARGET,
            old_filter = old,
            new_filter = new,
            client_ip = client_ip.map(tracing::field::display),
            "log filter changed"
        );
        true
    })
}

fn filter_problem(e: FilterError) -> Problem {
    match e {
        FilterError::Invalid(message) => invalid(FieldError::pointer("/filter", message)),
        FilterError::Gone => Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .detail("the subscriber holding the log filter is gone"),
    }
}

/// 200 `{"filter":"<new>","previous":"<old>"}`.
fn changed(new: &str, old: &str) -> Response<AdminBody> {
    let mut body = String::from(r#"{"filter":"#);
    push_str(&mut body, new.trim());
    body.push_str(r#","previous":"#);
    push_str(&mut body, old);
    body.push('}');
    json(body)
}

fn json(body: String) -> Response<AdminBody> {
    let mut response = Response::new(ResponseBody::full(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large() -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
        .detail(format!("the body is over {MAX_BODY_BYTES} bytes"))
}

/// 400 `VALIDATION_FAILED`: the filter was not changed.
fn invalid_base() -> Problem {
    Problem::new(StatusCode::BAD_REQUEST)
        .code(Code::VALIDATION_FAILED)
        .detail("the log filter was not changed")
}

fn invalid(error: FieldError) -> Problem {
    invalid_base().error(error)
}

/// The JSON pointer (RFC 6901) of a top-level member.
fn pointer(name: &str) -> String {
    format!("/{}", name.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape() {
        assert_eq!(pointer("filter"), "/filter");
        assert_eq!(pointer("a/b~c"), "/a~1b~0c");
        assert_eq!(pointer(""), "/");
    }

    #[test]
    fn declared_lengths() {
        let mut h = HeaderMap::new();
        assert_eq!(declared_length(&h), None);
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("4097"));
        assert_eq!(declared_length(&h), Some(4097));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("many"));
        assert_eq!(declared_length(&h), None);
    }
}
