//! Drop-in replacements for axum's `Json`, `Query`, `Path` and `Form` whose
//! rejections are [`Problem`]s.

// `Problem` is the rejection type, as axum's rejections are theirs; boxing it would
// cost an allocation on every rejection to save a copy on success.
#![allow(clippy::result_large_err)]

use std::borrow::Cow;
use std::fmt::Write;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{
    FromRequest, FromRequestParts, OptionalFromRequest, OptionalFromRequestParts, RawForm, Request,
};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{Method, StatusCode, Uri};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::{Code, FieldError, Problem};
use crate::media::is_json;

/// The `rejected_by` of extractor rejections.
const REJECTED_BY: &str = "extract";

/// Longest message taken from a deserializer: serde quotes offending input values,
/// and a client's megabyte string has no business coming back in full.
const MAX_MESSAGE: usize = 200;

macro_rules! wrapper {
    ($name:ident) => {
        impl<T> std::ops::Deref for $name<T> {
            type Target = T;

            #[inline]
            fn deref(&self) -> &T {
                &self.0
            }
        }

        impl<T> std::ops::DerefMut for $name<T> {
            #[inline]
            fn deref_mut(&mut self) -> &mut T {
                &mut self.0
            }
        }

        impl<T> From<T> for $name<T> {
            fn from(inner: T) -> Self {
                Self(inner)
            }
        }
    };
}

/// JSON body extractor and response, like `axum::Json`, whose rejections are
/// problems:
///
/// - no JSON `content-type` (`application/json`, `application/*+json`): 415
///   `UNSUPPORTED_MEDIA_TYPE`;
/// - body over axum's `DefaultBodyLimit`: 413 `PAYLOAD_TOO_LARGE`;
/// - malformed JSON: 400 `BAD_REQUEST`, with the line and column in `detail`;
/// - valid JSON of the wrong shape: 422 `VALIDATION_FAILED`, with an `errors` entry
///   whose `pointer` (RFC 6901) names the offending field.
///
/// As a response it serializes `T` exactly as `axum::Json` does.
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct Json<T>(pub T);

wrapper!(Json);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(unsupported_media_type("application/json"));
        }
        let capture = req.extensions().get::<crate::body::BodyCapture>().cloned();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| body_problem(r.status(), r))?;
        if let Some(capture) = capture {
            capture.record(bytes.clone());
        }
        Self::from_bytes(&bytes)
    }
}

/// `Option<Json<T>>`: `None` without a `content-type`; a body that is there must be
/// valid.
impl<T, S> OptionalFromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if req.headers().contains_key(http::header::CONTENT_TYPE) {
            <Self as FromRequest<S>>::from_request(req, state)
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    }
}

impl<T: DeserializeOwned> Json<T> {
    /// Parses a JSON body, with the rejections described on [`Json`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Problem> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| json_problem(&e))?;
        de.end().map_err(|e| json_syntax(&e))?;
        Ok(Self(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_problem(error: &serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let inner = error.inner();
    if inner.classify() != serde_json::error::Category::Data {
        return json_syntax(inner);
    }
    let message = message_without_position(inner);
    let mut pointer = String::new();
    for segment in error.path().iter() {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(pointer, "/{index}");
            }
            Segment::Map { key } => push_pointer_segment(&mut pointer, key),
            Segment::Enum { variant } => push_pointer_segment(&mut pointer, variant),
            Segment::Unknown => break,
        }
    }
    if let Some(field) = named_field(&message) {
        let mut last = String::new();
        push_pointer_segment(&mut last, field);
        // serde_path_to_error already has an unknown field's key, never a missing one.
        if message.starts_with("missing") || !pointer.ends_with(&last) {
            pointer.push_str(&last);
        }
    }
    Problem::validation([FieldError::pointer(pointer, cap(&message))])
        .detail("the JSON body does not have the expected shape")
        .rejected_by(REJECTED_BY)
}

fn json_syntax(error: &serde_json::Error) -> Problem {
    Problem::bad_request(format!(
        "the body is not valid JSON: {}",
        cap(&error.to_string())
    ))
    .rejected_by(REJECTED_BY)
}

/// RFC 6901 escaping: `~` as `~0`, `/` as `~1`.
fn push_pointer_segment(pointer: &mut String, segment: &str) {
    pointer.push('/');
    for c in segment.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// serde_json's message without its ` at line L column C` suffix.
fn message_without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// The field that serde names in "missing field `x`" and "unknown field `x`, ...":
/// the error is raised at the enclosing object, whose path does not include it.
fn named_field(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split_once('`').map(|(field, _)| field)
}

/// Shortens deserializer text and drops control characters.
fn cap(message: &str) -> Cow<'_, str> {
    let mut end = message.len().min(MAX_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let short = &message[..end];
    if end == message.len() && !short.chars().any(char::is_control) {
        return Cow::Borrowed(message);
    }
    let mut out: String = short
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if end < message.len() {
        out.push_str("...");
    }
    Cow::Owned(out)
}

fn unsupported_media_type(expected: &str) -> Problem {
    Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        .detail(format!("expected a request with content-type: {expected}"))
        .rejected_by(REJECTED_BY)
}

/// A failure to read the body (axum's `BytesRejection` and relatives, by status).
fn body_problem(
    status: StatusCode,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Problem {
    let problem = if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(status).detail("the request body is too large")
    } else {
        Problem::bad_request("the request body could not be read")
    };
    problem.source(source).rejected_by(REJECTED_BY)
}

/// Query string extractor, like `axum::extract::Query`. A query that does not fit
/// `T` gives 400 `VALIDATION_FAILED` with an `errors` entry naming the `field`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

wrapper!(Query);

impl<T: DeserializeOwned> Query<T> {
    /// Parses the query string of `uri` (an absent query counts as empty).
    pub fn try_from_uri(uri: &Uri) -> Result<Self, Problem> {
        let query = uri.query().unwrap_or_default();
        urlencoded(
            query.as_bytes(),
            StatusCode::BAD_REQUEST,
            "the query string",
        )
        .map(Self)
    }
}

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::try_from_uri(&parts.uri)
    }
}

/// `Option<Query<T>>`: `None` without a query string; one that is there must fit.
impl<T, S> OptionalFromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match parts.uri.query() {
            Some(_) => Self::try_from_uri(&parts.uri).map(Some),
            None => Ok(None),
        }
    }
}

/// URL-encoded form extractor and response, like `axum::Form`.
///
/// For `GET` and `HEAD` it reads the query string (a misfit gives 400), otherwise the
/// body, which must be `application/x-www-form-urlencoded` (else 415) and fit `T`
/// (else 422). Misfits are `VALIDATION_FAILED` with an `errors` entry naming the
/// `field`; a body over axum's limit gives 413.
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct Form<T>(pub T);

wrapper!(Form);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let in_query = req.method() == Method::GET || req.method() == Method::HEAD;
        let RawForm(bytes) = RawForm::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                unsupported_media_type("application/x-www-form-urlencoded")
            } else {
                body_problem(r.status(), r)
            }
        })?;
        if in_query {
            urlencoded(&bytes, StatusCode::BAD_REQUEST, "the query string").map(Self)
        } else {
            urlencoded(&bytes, StatusCode::UNPROCESSABLE_ENTITY, "the form").map(Self)
        }
    }
}

impl<T: Serialize> IntoResponse for Form<T> {
    fn into_response(self) -> Response {
        axum::Form(self.0).into_response()
    }
}

fn urlencoded<T: DeserializeOwned>(
    bytes: &[u8],
    status: StatusCode,
    what: &str,
) -> Result<T, Problem> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(bytes));
    serde_path_to_error::deserialize(de).map_err(|error| {
        let message = error.inner().to_string();
        let mut field = String::new();
        for segment in error.path().iter() {
            match segment {
                Segment::Seq { index } => {
                    let _ = write!(field, "[{index}]");
                }
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    if !field.is_empty() {
                        field.push('.');
                    }
                    field.push_str(key);
                }
                Segment::Unknown => break,
            }
        }
        if field.is_empty() {
            field = named_field(&message).unwrap_or_default().to_owned();
        }
        let message = cap(&message).into_owned();
        let error = if field.is_empty() {
            FieldError {
                location: None,
                message,
            }
        } else {
            FieldError::field(cap(&field), message)
        };
        Problem::new(status)
            .code(Code::VALIDATION_FAILED)
            .detail(format!("{what} does not have the expected fields"))
            .error(error)
            .rejected_by(REJECTED_BY)
    })
}

/// Path parameters extractor, like `axum::extract::Path`.
///
/// A segment that does not parse (`/users/abc` for a numeric id) gives 400
/// `VALIDATION_FAILED` with an `errors` entry naming the parameter as `field`. 400,
/// not 404: the client sent a malformed address, which it can fix, and a handler's
/// own 404 keeps meaning "no such resource". A `Path<T>` that does not match its
/// route (wrong number of parameters) is a server bug: 500, logged.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

wrapper!(Path);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match <axum::extract::Path<T> as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
        {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_problem(rejection, sole_parameter(parts).await)),
        }
    }
}

/// `Option<Path<T>>`: `None` on a route without parameters.
impl<T, S> OptionalFromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send + 'static,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match <axum::extract::Path<T> as OptionalFromRequestParts<S>>::from_request_parts(
            parts, state,
        )
        .await
        {
            Ok(value) => Ok(value.map(|axum::extract::Path(v)| Self(v))),
            Err(rejection) => Err(path_problem(rejection, sole_parameter(parts).await)),
        }
    }
}

fn path_problem(rejection: PathRejection, sole_parameter: Option<String>) -> Problem {
    use axum::extract::path::ErrorKind;

    let status = rejection.status();
    let PathRejection::FailedToDeserializePathParams(failed) = &rejection else {
        return path_bug(rejection);
    };
    if status.is_server_error() {
        return path_bug(rejection);
    }
    let error = match failed.kind() {
        ErrorKind::ParseErrorAtKey {
            key, expected_type, ..
        } => FieldError::field(cap(key), expected(expected_type)),
        ErrorKind::ParseErrorAtIndex {
            index,
            expected_type,
            ..
        } => FieldError::field(index.to_string(), expected(expected_type)),
        // A single parameter deserialized as a whole: axum gives no key, the route does.
        ErrorKind::ParseError { expected_type, .. } => match sole_parameter {
            Some(key) => FieldError::field(cap(&key), expected(expected_type)),
            None => FieldError {
                location: None,
                message: expected(expected_type),
            },
        },
        ErrorKind::InvalidUtf8InPathParam { key } => FieldError::field(cap(key), "not valid UTF-8"),
        ErrorKind::DeserializeError { key, message, .. } => {
            FieldError::field(cap(key), cap(message))
        }
        other => FieldError {
            location: None,
            message: cap(&other.to_string()).into_owned(),
        },
    };
    Problem::new(StatusCode::BAD_REQUEST)
        .code(Code::VALIDATION_FAILED)
        .detail("a path parameter is not valid")
        .error(error)
        .rejected_by(REJECTED_BY)
}

/// The name of the route's only parameter.
async fn sole_parameter(parts: &mut Parts) -> Option<String> {
    let params = axum::extract::RawPathParams::from_request_parts(parts, &())
        .await
        .ok()?;
    let mut iter = params.iter();
    let (key, _) = iter.next()?;
    iter.next().is_none().then(|| key.to_owned())
}

/// "expected an integer"-style text that does not reveal application type names.
fn expected(type_name: &str) -> String {
    let what = match type_name {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "bool" => "true or false",
        "char" => "a single character",
        _ => "a value of another form",
    };
    format!("expected {what}")
}

fn path_bug(rejection: PathRejection) -> Problem {
    tracing::error!(
        error = %super::for_log(&rejection.body_text()),
        "Path extractor does not match its route"
    );
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
        .source(rejection)
        .rejected_by(REJECTED_BY)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use http::Request;
    use serde::Deserialize;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct User {
        name: String,
        age: u8,
        tags: Vec<Tag>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Tag {
        #[serde(rename = "a/b~c")]
        label: String,
    }

    fn problem(result: Result<impl Sized, Problem>) -> Problem {
        match result {
            Ok(_) => panic!("expected a rejection"),
            Err(p) => p,
        }
    }

    #[test]
    fn json_pointers() {
        let p = problem(Json::<User>::from_bytes(
            br#"{"name":"x","age":300,"tags":[]}"#,
        ));
        assert_eq!(p.status(), 422);
        assert_eq!(
            p.errors()[0],
            FieldError::pointer("/age", "invalid value: integer `300`, expected u8")
        );
        let p = problem(Json::<User>::from_bytes(
            br#"{"name":"x","age":3,"tags":[{"a/b~c":1}]}"#,
        ));
        assert_eq!(
            p.errors()[0].location,
            Some(super::super::Location::Pointer("/tags/0/a~1b~0c".into()))
        );
        let p = problem(Json::<User>::from_bytes(br#"{"name":"x","tags":[]}"#));
        assert_eq!(
            p.errors()[0].location,
            Some(super::super::Location::Pointer("/age".into()))
        );
        let p = problem(Json::<User>::from_bytes(
            br#"{"name":"x","age":1,"tags":[{"zz":1}]}"#,
        ));
        assert_eq!(
            p.errors()[0].location,
            Some(super::super::Location::Pointer("/tags/0/zz".into()))
        );
        assert_eq!(p.get_rejected_by(), Some("extract"));
    }

    #[test]
    fn json_syntax_and_trailing() {
        for body in [&b"{"[..], b"{\"name\":", b"{} x", b"", b"\xff"] {
            let p = problem(Json::<HashMap<String, u8>>::from_bytes(body));
            assert_eq!(p.status(), 400, "{body:?}");
            assert_eq!(p.get_code(), &Code::BAD_REQUEST);
        }
    }

    #[test]
    fn long_values_are_not_echoed_in_full() {
        let body = format!(
            r#"{{"name":"x","age":"{}","tags":[]}}"#,
            "A".repeat(100_000)
        );
        let p = problem(Json::<User>::from_bytes(body.as_bytes()));
        assert!(p.errors()[0].message.len() <= MAX_MESSAGE + 3);
    }

    #[test]
    fn query_fields() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Page {
            page: u32,
        }
        let p = problem(Query::<Page>::try_from_uri(&"/x?page=abc".parse().unwrap()));
        assert_eq!(p.status(), 400);
        assert_eq!(p.get_code(), &Code::VALIDATION_FAILED);
        assert_eq!(
            p.errors()[0].location,
            Some(super::super::Location::Field("page".into()))
        );
        let p = problem(Query::<Page>::try_from_uri(&"/x".parse().unwrap()));
        assert_eq!(
            p.errors()[0].location,
            Some(super::super::Location::Field("page".into()))
        );
        assert_eq!(
            Query::<Page>::try_from_uri(&"/x?page=7&q=1".parse().unwrap())
                .unwrap()
                .page,
            7
        );
        // Duplicates are ambiguous: rejected, never a panic.
        let p = problem(Query::<Page>::try_from_uri(
            &"/x?page=7&page=8".parse().unwrap(),
        ));
        assert_eq!(p.status(), 400);
        let p = problem(Query::<Page>::try_from_uri(
            &"/x?page=%FF%FE".parse().unwrap(),
        ));
        assert_eq!(p.status(), 400);
    }

    #[test]
    fn path_messages_hide_type_names() {
        assert_eq!(expected("u64"), "expected a non-negative integer");
        assert_eq!(
            expected("my_app::UserId"),
            "expected a value of another form"
        );
    }

    async fn send(app: Router, req: Request<Body>) -> (StatusCode, Value) {
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn rejections_through_a_router() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct F {
            n: u8,
        }
        let app = Router::new()
            .route(
                "/j",
                post(|Json(v): Json<HashMap<String, u8>>| async move { Json(v) }),
            )
            .route(
                "/f",
                post(|Form(f): Form<F>| async move { f.n.to_string() })
                    .get(|Form(f): Form<F>| async move { f.n.to_string() }),
            )
            .route(
                "/p/{id}",
                get(|Path(id): Path<u32>| async move { id.to_string() }),
            )
            .route(
                "/bug/{id}",
                get(|Path((a, b)): Path<(u32, u32)>| async move { (a + b).to_string() }),
            )
            .route(
                "/o",
                post(|j: Option<Json<HashMap<String, u8>>>| async move { j.is_some().to_string() }),
            );

        let req = Request::post("/j").body(Body::from("{}")).unwrap();
        assert_eq!(send(app.clone(), req).await.0, 415);
        let req = Request::post("/j")
            .header("content-type", "application/vnd.x+json")
            .body(Body::from(r#"{"a":1000}"#))
            .unwrap();
        let (s, v) = send(app.clone(), req).await;
        assert_eq!(
            (s.as_u16(), v["errors"][0]["pointer"].as_str()),
            (422, Some("/a"))
        );
        let req = Request::post("/f")
            .header("content-type", "text/plain")
            .body(Body::from("n=1"))
            .unwrap();
        assert_eq!(send(app.clone(), req).await.0, 415);
        let req = Request::post("/f")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("n=x"))
            .unwrap();
        let (s, v) = send(app.clone(), req).await;
        assert_eq!(
            (s.as_u16(), v["errors"][0]["field"].as_str()),
            (422, Some("n"))
        );
        let req = Request::get("/f?n=300").body(Body::empty()).unwrap();
        assert_eq!(send(app.clone(), req).await.0, 400);
        let (s, v) = send(
            app.clone(),
            Request::get("/p/abc").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(
            (s.as_u16(), v["errors"][0]["field"].as_str()),
            (400, Some("id"))
        );
        let (s, v) = send(
            app.clone(),
            Request::get("/bug/1").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!((s.as_u16(), v["code"].as_str()), (500, Some("INTERNAL")));
        assert!(v.get("detail").is_none(), "{v}");

        let res = app
            .clone()
            .oneshot(Request::post("/o").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            axum::body::to_bytes(res.into_body(), 100).await.unwrap(),
            "false"
        );
    }
}

#[cfg(test)]
mod props {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Arbitrary bytes never panic the JSON extractor and are rejected as
        /// client errors.
        #[test]
        fn json_rejects_garbage_as_client_error(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(p) = Json::<HashMap<String, u32>>::from_bytes(&body) {
                prop_assert!(p.status() == 400 || p.status() == 422);
                for e in p.errors() {
                    prop_assert!(e.message.len() <= MAX_MESSAGE + 3);
                }
            }
        }

        #[test]
        fn query_never_panics(query in "[ -~]{0,200}") {
            let Ok(uri) = format!("/x?{query}").parse::<Uri>() else { return Ok(()) };
            if let Err(p) = Query::<HashMap<String, u32>>::try_from_uri(&uri) {
                prop_assert_eq!(p.status(), 400);
            }
        }
    }
}
