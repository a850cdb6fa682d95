//! One redaction configuration for every output: a redactor installed at
//! start-up reaches the request log, the error layer's log and the health
//! checks' messages, none of which are handed it. Its own binary, because the
//! installed redactor is process-wide.

#[path = "common/capture.rs"]
mod capture;

use bytes::Bytes;
use capture::Capture;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ops::error::{ErrorLayer, Problem};
use tower_ops::health::{HealthRegistry, check_fn};
use tower_ops::log::{JsonLayer, RequestLogLayer};
use tower_ops::redact::Redactor;
use tracing_subscriber::layer::SubscriberExt;

/// A secret under a name only this application knows to be one.
const SECRET: &str = "tenant_key=t-998877";

#[tokio::test(flavor = "current_thread")]
async fn the_installed_redactor_reaches_every_output() {
    Redactor::builder().key("tenant_key").build().install();
    // Not a default rule: without the installed redactor it would show.
    assert!(Redactor::default().redact_text(SECRET).contains("t-998877"));

    let cap = Capture::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(JsonLayer::new(cap.clone())),
    );

    // The request log (its query) and the error layer (a 5xx's hidden source).
    let app = ServiceBuilder::new()
        .layer(RequestLogLayer::new())
        .layer(ErrorLayer::new())
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            let mut response = Response::new(Full::<Bytes>::default());
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            let source = std::io::Error::other(format!("upstream refused {SECRET}"));
            response.extensions_mut().insert(Problem::internal(source));
            Ok::<_, std::convert::Infallible>(response)
        }));
    let request = Request::get(format!("/orders?{SECRET}"))
        .body(Full::default())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("t-998877"));

    // A health check's error message.
    let registry = HealthRegistry::builder()
        .check(check_fn("db", || async {
            Err::<(), _>(format!("auth failed {SECRET}"))
        }))
        .build();
    registry.readiness().mark_ready();
    let response = registry
        .service()
        .oneshot(
            Request::get("/health")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let health = response.into_body().collect().await.unwrap().to_bytes();
    let health = String::from_utf8_lossy(&health);
    assert!(
        health.contains("auth failed tenant_key=[REDACTED]"),
        "{health}"
    );

    let text = cap.text();
    assert!(!text.contains("t-998877"), "{text}");
    assert!(text.contains("tenant_key=[REDACTED]"), "{text}");
    let completed = cap.completed();
    assert_eq!(completed.len(), 1, "{text}");
    assert_eq!(
        completed[0]["path"], "/orders?tenant_key=[REDACTED]",
        "{text}"
    );
}
