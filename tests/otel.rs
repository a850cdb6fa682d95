//! OpenTelemetry export to a real OTLP/gRPC receiver running in this process, over
//! loopback: the server span, its parent, attributes, status, the trace id in the
//! log line and in error envelopes, and flushing on shutdown.
#![cfg(all(feature = "otel", feature = "axum"))]

#[path = "common/capture.rs"]
mod capture;
mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use capture::Capture;
use common::{get as http_get, serve};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use serde_json::Value;
use tower::ServiceBuilder;
use tower_ops::client_ip::ClientIpLayer;
use tower_ops::error::Problem;
use tower_ops::log::{JsonLayer, RequestLogLayer};
use tower_ops::otel::{OtelBuilder, OtelGuard, Sampler};
use tower_ops::request_id::RequestIdLayer;
use tower_ops::route::CaptureRouteLayer;
use tracing_subscriber::layer::SubscriberExt;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

// ---------------------------------------------------------------- the receiver

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ProtoSpan>>>,
    /// `key=value` of every string resource attribute seen.
    resource: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for rs in request.into_inner().resource_spans {
            if let Some(resource) = &rs.resource {
                for kv in &resource.attributes {
                    if let Some(AnyValue::StringValue(s)) = value(kv) {
                        self.resource
                            .lock()
                            .unwrap()
                            .push(format!("{}={s}", kv.key));
                    }
                }
            }
            for ss in rs.scope_spans {
                self.spans.lock().unwrap().extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn value(kv: &opentelemetry_proto::tonic::common::v1::KeyValue) -> Option<&AnyValue> {
    kv.value.as_ref()?.value.as_ref()
}

/// Runs `serve` on its own thread and runtime with a fresh loopback listener, like
/// a collector in another process: the application blocking in `shutdown` cannot
/// stall it.
fn spawn_collector<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            serve(listener).await;
        });
    });
    rx.recv().unwrap()
}

/// An OTLP/gRPC receiver.
fn start_receiver() -> (SocketAddr, Receiver) {
    let receiver = Receiver::default();
    let service = receiver.clone();
    let addr = spawn_collector(|listener| async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(service))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (addr, receiver)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr<'a>(span: &'a ProtoSpan, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(value)
}

fn attr_str<'a>(span: &'a ProtoSpan, key: &str) -> Option<&'a str> {
    match attr(span, key)? {
        AnyValue::StringValue(s) => Some(s),
        _ => None,
    }
}

// ---------------------------------------------------------------- the app

fn app() -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route(
            "/fail",
            get(|| async { Problem::internal(std::io::Error::other("db password=hunter2 down")) }),
        )
        .route(
            "/missing",
            get(|| async { Problem::new(StatusCode::NOT_FOUND) }),
        )
        .layer(CaptureRouteLayer::new())
        .layer(
            ServiceBuilder::new()
                .layer(RequestIdLayer::new())
                .layer(ClientIpLayer::new())
                .layer(RequestLogLayer::new()),
        )
}

/// An exporter to `addr` plus a subscriber with our JSON lines, installed on this
/// thread (the tests run on a current-thread runtime, so the server's tasks see it).
fn setup(
    addr: SocketAddr,
    sampler: Sampler,
) -> (OtelGuard, Capture, tracing::subscriber::DefaultGuard) {
    let guard = OtelBuilder::new()
        .endpoint(format!("http://{addr}"))
        .service_name("otel-test")
        .sampler(sampler)
        .build()
        .unwrap();
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(guard.layer())
        .with(JsonLayer::new(capture.clone()));
    let default = tracing::subscriber::set_default(subscriber);
    (guard, capture, default)
}

fn traceparent(trace: &str) -> String {
    format!("traceparent: 00-{trace}-{PARENT}-01\r\n")
}

#[tokio::test(flavor = "current_thread")]
async fn server_span_is_a_child_of_the_incoming_traceparent() {
    let (collector, receiver) = start_receiver();
    let (otel, logs, _default) = setup(collector, Sampler::ParentBasedAlwaysOn);
    let server = serve(app()).await;

    let ok = http_get(
        server,
        "/users/7?token=s3cr3t&page=2",
        &format!("{}user-agent: probe/1.0\r\n", traceparent(TRACE)),
    )
    .await;
    assert_eq!(ok.status, 200);
    let failing_trace = "0af7651916cd43dd8448eb211c80319c";
    let failed = http_get(server, "/fail", &traceparent(failing_trace)).await;
    assert_eq!(failed.status, 500);
    let missing = http_get(server, "/missing", "").await;
    assert_eq!(missing.status, 404);

    // The trace id is in the error envelope...
    assert_eq!(failed.json()["trace_id"], failing_trace);
    assert!(!failed.text().contains("hunter2"));
    // ...and in the log lines.
    let lines = logs.completed();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["trace_id"], TRACE);
    assert_eq!(lines[1]["trace_id"], failing_trace);
    // A request without traceparent gets a fresh trace, in the line and the envelope.
    let fresh = missing.json()["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(lines[2]["trace_id"], fresh.as_str());
    assert_eq!(fresh.len(), 32);
    // Attribute keys do not leak into the JSON lines.
    assert!(lines[0].get("otel.name").is_none() && lines[0].get("url.path").is_none());

    // Blocks this (only) runtime thread: exports run on their own thread.
    otel.shutdown().unwrap();

    let spans = receiver.spans.lock().unwrap().clone();
    let resource = receiver.resource.lock().unwrap().clone();
    assert!(
        resource.contains(&"service.name=otel-test".to_owned()),
        "{resource:?}"
    );
    let span = spans
        .iter()
        .find(|s| hex(&s.trace_id) == TRACE)
        .expect("the server span was exported");
    assert_eq!(hex(&span.parent_span_id), PARENT);
    assert_eq!(span.name, "GET /users/{id}");
    assert_eq!(span.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(attr_str(span, "http.request.method"), Some("GET"));
    assert_eq!(attr_str(span, "http.route"), Some("/users/{id}"));
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(&AnyValue::IntValue(200))
    );
    assert_eq!(attr_str(span, "url.path"), Some("/users/7"));
    let query = attr_str(span, "url.query").unwrap();
    assert!(
        query.contains("page=2") && !query.contains("s3cr3t"),
        "{query}"
    );
    assert_eq!(attr_str(span, "url.scheme"), Some("http"));
    assert_eq!(attr_str(span, "client.address"), Some("127.0.0.1"));
    assert_eq!(attr_str(span, "user_agent.original"), Some("probe/1.0"));
    assert_eq!(attr_str(span, "network.protocol.version"), Some("1.1"));
    assert_eq!(attr(span, "error.type"), None);
    assert_ne!(
        span.status.as_ref().map_or(0, |s| s.code),
        2,
        "not an error"
    );

    let failed = spans
        .iter()
        .find(|s| hex(&s.trace_id) == failing_trace)
        .expect("the failing span was exported");
    assert_eq!(failed.name, "GET /fail");
    assert_eq!(attr_str(failed, "error.type"), Some("500"));
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(2),
        "STATUS_CODE_ERROR"
    );

    let not_found = spans
        .iter()
        .find(|s| hex(&s.trace_id) == fresh)
        .expect("the fresh trace was exported");
    assert!(not_found.parent_span_id.is_empty());
    assert_ne!(
        not_found.status.as_ref().map_or(0, |s| s.code),
        2,
        "4xx is not an error"
    );
    assert_eq!(attr(not_found, "error.type"), None);
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_traceparents_start_fresh_traces() {
    let (collector, receiver) = start_receiver();
    let (otel, logs, _default) = setup(collector, Sampler::AlwaysOn);
    let server = serve(app()).await;
    let long = format!(
        "traceparent: cc-{TRACE}-{PARENT}-01-{}\r\n",
        "a".repeat(8192)
    );
    let repeated = format!("{}{}", traceparent(TRACE), traceparent(TRACE));
    let cases = [
        format!("traceparent: ff-{TRACE}-{PARENT}-01\r\n"),
        format!("traceparent: 00-00000000000000000000000000000000-{PARENT}-01\r\n"),
        format!("traceparent: 00-{TRACE}-0000000000000000-01\r\n"),
        format!("traceparent: 00-{}-{PARENT}-01\r\n", TRACE.to_uppercase()),
        format!("traceparent: 00-{TRACE}-{PARENT}-zz\r\n"),
        format!("traceparent: 00-{}-{PARENT}-01\r\n", &TRACE[1..]),
        format!("traceparent: 00-{TRACE}-{PARENT}-01-extra\r\n"),
        long,
        repeated,
    ];
    for case in &cases {
        let response = http_get(server, "/missing", case).await;
        assert_eq!(response.status, 404, "{case:.80}");
        let id = response.json()["trace_id"].as_str().unwrap().to_owned();
        assert_ne!(id, TRACE, "{case:.80}");
        assert_eq!(id.len(), 32);
    }
    let lines = logs.completed();
    assert_eq!(lines.len(), cases.len());
    otel.shutdown().unwrap();
    let spans = receiver.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), cases.len());
    for (span, line) in spans.iter().zip(&lines) {
        assert_ne!(hex(&span.trace_id), TRACE);
        assert!(span.parent_span_id.is_empty(), "a root span");
        assert!(
            lines
                .iter()
                .any(|l| l["trace_id"] == hex(&span.trace_id).as_str()),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn sampled_out_traces_keep_their_id_and_export_nothing() {
    let (collector, receiver) = start_receiver();
    let (otel, logs, _default) = setup(collector, Sampler::ParentBasedAlwaysOff);
    let server = serve(app()).await;
    let unsampled = format!("traceparent: 00-{TRACE}-{PARENT}-00\r\n");
    assert_eq!(http_get(server, "/users/1", &unsampled).await.status, 200);
    assert_eq!(http_get(server, "/users/2", "").await.status, 200);
    otel.shutdown().unwrap();
    assert!(receiver.spans.lock().unwrap().is_empty());
    let lines = logs.completed();
    assert_eq!(lines[0]["trace_id"], TRACE);
    assert_eq!(lines[1]["trace_id"].as_str().map(str::len), Some(32));
}

/// Spans still queued when the guard shuts down reach the receiver, whatever the
/// runtime flavour of the caller, and shutdown returns.
async fn flush_on_shutdown() {
    let (collector, receiver) = start_receiver();
    let otel = OtelBuilder::new()
        .endpoint(format!("http://{collector}"))
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(otel.layer());
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..50 {
            let span = tracing::info_span!("work", i);
            let _enter = span.enter();
        }
    });
    // The batch processor exports every 5 s by default: these are still queued.
    assert!(receiver.spans.lock().unwrap().is_empty());
    otel.shutdown().unwrap();
    assert_eq!(receiver.spans.lock().unwrap().len(), 50);
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_flushes_on_a_current_thread_runtime() {
    flush_on_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_on_a_multi_thread_runtime() {
    flush_on_shutdown().await;
}

#[test]
fn shutdown_flushes_outside_any_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(flush_on_shutdown());
    // Built and shut down with no runtime at all.
    let (collector, receiver) = start_receiver();
    let otel = OtelBuilder::new()
        .endpoint(format!("http://{collector}"))
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(otel.layer());
    tracing::subscriber::with_default(subscriber, || {
        let _span = tracing::info_span!("outside").entered();
    });
    drop(otel); // dropping flushes too
    assert_eq!(receiver.spans.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn unreachable_collector_does_not_hang_shutdown() {
    // A port nobody listens on: exports fail, shutdown still returns.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let otel = OtelBuilder::new()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .export_timeout(std::time::Duration::from_millis(500))
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(otel.layer());
    tracing::subscriber::with_default(subscriber, || {
        let _span = tracing::info_span!("lost").entered();
    });
    // Shut down on a thread of its own, so a hang fails the test at the bound
    // instead of blocking it for ever.
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(otel.shutdown()).unwrap());
    let result = result
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("shutdown returns within 10 s with the collector unreachable");
    // The failed export is the exporter's to report; stopping still succeeds.
    result.expect("shutdown succeeds though the export failed");
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf).
fn start_http_receiver() -> (SocketAddr, Arc<Mutex<Vec<ProtoSpan>>>) {
    use prost::Message as _;
    let spans: Arc<Mutex<Vec<ProtoSpan>>> = Arc::default();
    let sink = spans.clone();
    let app = Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                return (StatusCode::BAD_REQUEST, Vec::new());
            };
            for rs in request.resource_spans {
                for ss in rs.scope_spans {
                    sink.lock().unwrap().extend(ss.spans);
                }
            }
            let response = ExportTraceServiceResponse::default();
            (StatusCode::OK, response.encode_to_vec())
        }),
    );
    let addr = spawn_collector(|listener| async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, spans)
}

#[tokio::test(flavor = "current_thread")]
async fn http_protobuf_export_reaches_the_receiver() {
    let (collector, spans) = start_http_receiver();
    let otel = OtelBuilder::new()
        .endpoint(format!("http://{collector}/"))
        .protocol(tower_ops::otel::Protocol::HttpProtobuf)
        .build()
        .unwrap();
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(otel.layer())
        .with(JsonLayer::new(capture.clone()));
    let default = tracing::subscriber::set_default(subscriber);
    let server = serve(app()).await;
    let response = http_get(server, "/users/9", &traceparent(TRACE)).await;
    assert_eq!(response.status, 200);
    drop(default);
    otel.shutdown().unwrap();
    let spans = spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 1);
    assert_eq!(hex(&spans[0].trace_id), TRACE);
    assert_eq!(hex(&spans[0].parent_span_id), PARENT);
    assert_eq!(spans[0].name, "GET /users/{id}");
    assert_eq!(capture.completed()[0]["trace_id"], TRACE);
}

#[test]
fn https_is_refused_for_http_protobuf_and_bad_endpoints_fail_to_build() {
    let https = OtelBuilder::new()
        .endpoint("https://127.0.0.1:4318")
        .protocol(tower_ops::otel::Protocol::HttpProtobuf)
        .build();
    assert!(https.unwrap_err().to_string().contains("TLS"));
    assert!(
        OtelBuilder::new()
            .endpoint("127.0.0.1:4317")
            .build()
            .is_err()
    );
}

/// Runs the ignored test `name` in a child process with `vars`; its stdout when it
/// passed.
fn child(name: &str, vars: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs the child's `serve` mode with `vars` (plus a JSON log and an endpoint at a
/// receiver running here): its output and what the receiver got.
///
/// Edition 2024 makes `set_var` unsafe and the crate forbids unsafe code, so the
/// configuration is read by a child process.
fn serve_child(vars: &[(&str, &str)]) -> (String, Receiver) {
    let (collector, receiver) = start_receiver();
    let endpoint = format!("http://{collector}");
    let mut all = vec![
        ("OTEL_TEST_MODE", "serve"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("LOG_FORMAT", "json"),
    ];
    all.extend_from_slice(vars);
    (child("env_child", &all), receiver)
}

#[test]
fn init_from_env_gives_json_logs_and_export_in_one_call() {
    let (stdout, receiver) = serve_child(&[
        ("OTEL_SERVICE_NAME", "env-service"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=test,team=ops",
        ),
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.0"),
        ("LOG_LEVEL", "info"),
    ]);
    assert!(stdout.contains("outgoing traceparent: true"), "{stdout}");
    assert_eq!(request_line(&stdout)["trace_id"], TRACE);
    let spans = server_spans(&receiver);
    assert_eq!(spans.len(), 1, "exported before the child exited");
    assert_eq!(hex(&spans[0].parent_span_id), PARENT);
    let resource = receiver.resource.lock().unwrap().clone();
    for expected in [
        "service.name=env-service",
        "deployment.environment=test",
        "team=ops",
    ] {
        assert!(resource.contains(&expected.to_owned()), "{resource:?}");
    }
}

/// The `request completed` line in a child's output.
fn request_line(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .find(|l| l.contains("request completed"))
        .unwrap_or_else(|| panic!("no request line in {stdout}"));
    // The harness may print on the same line before the JSON object.
    serde_json::from_str(&line[line.find('{').unwrap()..]).unwrap()
}

/// The server spans a child exported (it also exports the span of its
/// [`outgoing_has_traceparent`] check).
fn server_spans(receiver: &Receiver) -> Vec<ProtoSpan> {
    let spans = receiver.spans.lock().unwrap();
    spans
        .iter()
        .filter(|s| s.name != "outgoing")
        .cloned()
        .collect()
}

/// Whether `PropagateContext` writes a `traceparent` from inside a span.
async fn outgoing_has_traceparent() -> bool {
    use tower::{Service, ServiceExt, service_fn};
    use tower_layer::Layer;
    let mut client = tower_ops::otel::PropagateContextLayer::new().layer(service_fn(
        |req: axum::http::Request<()>| async move {
            Ok::<_, std::convert::Infallible>(req.headers().contains_key("traceparent"))
        },
    ));
    client.ready().await.unwrap();
    let span = tracing::info_span!("outgoing");
    let call = span.in_scope(|| client.call(axum::http::Request::new(())));
    call.await.unwrap()
}

#[test]
fn propagators_without_trace_context_ignore_and_send_no_traceparent() {
    let (stdout, receiver) = serve_child(&[("OTEL_PROPAGATORS", "baggage")]);
    assert!(stdout.contains("outgoing traceparent: false"), "{stdout}");
    let line = request_line(&stdout);
    let spans = server_spans(&receiver);
    assert_eq!(spans.len(), 1, "{spans:?}");
    // A trace of its own, not the caller's.
    assert_ne!(hex(&spans[0].trace_id), TRACE);
    assert!(spans[0].parent_span_id.is_empty());
    assert_eq!(line["trace_id"], hex(&spans[0].trace_id));
}

#[test]
fn sdk_disabled_exports_nothing_and_keeps_the_callers_trace() {
    let (stdout, receiver) = serve_child(&[("OTEL_SDK_DISABLED", "TRUE")]);
    assert!(stdout.contains("outgoing traceparent: true"), "{stdout}");
    assert_eq!(request_line(&stdout)["trace_id"], TRACE);
    assert!(receiver.spans.lock().unwrap().is_empty());
}

#[test]
fn from_env_reads_signal_variables_propagators_and_the_switch() {
    child(
        "env_child",
        &[
            ("OTEL_TEST_MODE", "valid"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            ("OTEL_PROPAGATORS", " baggage , baggage "),
            ("OTEL_SDK_DISABLED", "true"),
        ],
    );
}

#[test]
fn from_env_lists_every_bad_value() {
    child(
        "env_child",
        &[
            ("OTEL_TEST_MODE", "invalid"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0"),
            ("OTEL_PROPAGATORS", "tracecontext,b3"),
            ("OTEL_SDK_DISABLED", "maybe"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ],
    );
}

#[test]
#[ignore = "entry point of the from_env tests, run in a child process"]
fn env_child() {
    match std::env::var("OTEL_TEST_MODE").as_deref() {
        Ok("serve") => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let otel = tower_ops::otel::init_from_env().unwrap();
                let server = serve(app()).await;
                let response = http_get(server, "/users/3", &traceparent(TRACE)).await;
                assert_eq!(response.status, 200);
                println!("outgoing traceparent: {}", outgoing_has_traceparent().await);
                otel.shutdown().unwrap();
            });
        }
        Ok("valid") => {
            let builder = format!("{:?}", OtelBuilder::from_env().unwrap());
            for expected in [
                "protocol: HttpProtobuf",
                "timeout: 2.5s",
                "propagators: Propagators { trace_context: false, baggage: true }",
                "disabled: true",
            ] {
                assert!(builder.contains(expected), "{expected} in {builder}");
            }
        }
        Ok("invalid") => {
            let err = OtelBuilder::from_env().unwrap_err();
            let vars: Vec<&str> = err.problems().iter().map(|p| p.variable.as_str()).collect();
            assert_eq!(
                vars,
                [
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                    "OTEL_EXPORTER_OTLP_TIMEOUT",
                    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                    "OTEL_PROPAGATORS",
                    "OTEL_SDK_DISABLED",
                    "OTEL_TRACES_SAMPLER_ARG",
                    "OTEL_TRACES_SAMPLER"
                ],
                "{err}"
            );
            let text = err.to_string();
            assert!(text.contains("\"b3\" is not built in"), "{text}");
        }
        _ => {}
    }
}
