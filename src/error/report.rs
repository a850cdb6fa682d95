//! Error reports for trackers: one [`ErrorReport`] per 5xx problem and per panic
//! the error layer answers, handed to a hook of the application's on a thread of
//! its own.

use std::error::Error;
use std::fmt;
use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};

use super::{Problem, for_log};
use crate::client_ip::ClientIp;
use crate::redact::Redactor;
use crate::request_id::RequestId;
use crate::route::MatchedRoute;

/// Default number of reports waiting for the hook before new ones are dropped.
pub const DEFAULT_REPORT_QUEUE: usize = 1024;

/// What receives the [`ErrorReport`]s: implemented for every
/// `FnMut(ErrorReport) + Send + 'static` closure.
///
/// It runs on the reporter's own thread, one report after another, never on the
/// thread answering the request; see [`ErrorReporter`] for the contract.
pub trait ReportError: Send + 'static {
    /// Receives one report.
    fn report(&mut self, report: ErrorReport);
}

impl<F> ReportError for F
where
    F: FnMut(ErrorReport) + Send + 'static,
{
    fn report(&mut self, report: ErrorReport) {
        self(report)
    }
}

/// One 5xx answer or panic, for an error tracker.
///
/// Everything in it is redacted as the logs are (headers, query, error and
/// panic texts), except the error object itself behind
/// [`Problem::get_source`], which is handed over as the application made it so
/// that a tracker can read its type and chain.
pub struct ErrorReport {
    problem: Problem,
    request: RequestHead,
    route: Option<MatchedRoute>,
    chain: Vec<String>,
    panic: Option<PanicReport>,
}

impl ErrorReport {
    /// The problem the client was answered with (status, code, `rejected_by`,
    /// request and trace ids, timestamp), its source included.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// The request, redacted.
    pub fn request(&self) -> &RequestHead {
        &self.request
    }

    /// The request id: the problem's, or the request's when the problem has none.
    pub fn request_id(&self) -> Option<&RequestId> {
        self.problem
            .get_request_id()
            .or(self.request.request_id.as_ref())
    }

    /// The route template that matched (`/users/{id}`), when the router said so.
    /// Unknown for panics: no response came back to carry it.
    pub fn route(&self) -> Option<&str> {
        self.route.as_ref().map(MatchedRoute::as_str)
    }

    /// The source error and its causes, outermost first, each one redacted and
    /// cleaned of control characters as in the logs. Empty when the problem has
    /// no source.
    pub fn error_chain(&self) -> &[String] {
        &self.chain
    }

    /// The panic, when this report is for one.
    pub fn panic(&self) -> Option<&PanicReport> {
        self.panic.as_ref()
    }
}

impl fmt::Debug for ErrorReport {
    /// Leaves the raw source error out (its redacted text is `error_chain`), so
    /// that printing a report never leaks what the logs would not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.problem;
        f.debug_struct("ErrorReport")
            .field("status", &p.status().as_u16())
            .field("code", p.get_code())
            .field("rejected_by", &p.get_rejected_by())
            .field("request_id", &self.request_id())
            .field("trace_id", &p.get_trace_id())
            .field("request", &self.request)
            .field("route", &self.route())
            .field("error_chain", &self.chain)
            .field("panic", &self.panic)
            .finish()
    }
}

/// The head of the request an [`ErrorReport`] is about, redacted.
#[derive(Clone, Debug)]
pub struct RequestHead {
    method: Method,
    uri: String,
    version: Version,
    headers: HeaderMap,
    client_ip: Option<IpAddr>,
    request_id: Option<RequestId>,
}

impl RequestHead {
    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path and query, the query's secrets censored (`?token=[REDACTED]`).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Every header, values of sensitive ones censored (`authorization`,
    /// cookies, API keys...) and the others through the value patterns.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The client address, when a [`ClientIpLayer`](crate::client_ip::ClientIpLayer)
    /// is outside the error layer.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }
}

/// The panic an [`ErrorReport`] is about.
#[derive(Clone, Debug)]
pub struct PanicReport {
    message: String,
    location: Option<PanicLocation>,
}

impl PanicReport {
    /// The panic message, redacted and cleaned as in the logs.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where it panicked. Known when a panic hook of tower-ops saw the panic:
    /// the one [`log::init_from_env`](crate::log::init_from_env) installs, or
    /// [`capture_panic_locations`](super::capture_panic_locations).
    pub fn location(&self) -> Option<&PanicLocation> {
        self.location.as_ref()
    }
}

/// A source location: file, line and column.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PanicLocation {
    file: Box<str>,
    line: u32,
    column: u32,
}

impl PanicLocation {
    /// The source file, as the compiler named it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line, from 1.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The column, from 1.
    pub fn column(&self) -> u32 {
        self.column
    }
}

impl fmt::Display for PanicLocation {
    /// `file:line:column`, as in the panic log event.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Makes every later panic's location known to error reports, for applications
/// that do not install tower-ops' logging (whose panic hook already does it).
///
/// Wraps the panic hook in place at the time of the call (the standard one, or a
/// tracker's) with one that notes the location on the panicking thread, then
/// calls it; a hook set afterwards replaces it. Later calls do nothing.
pub fn capture_panic_locations() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        crate::panics::record(crate::panics::message(info.payload()), info.location());
        previous(info);
    }));
}

/// A panic the error layer caught: its raw message and, when a hook noted it,
/// its location.
pub(crate) struct Caught {
    pub(crate) message: String,
    location: Option<PanicLocation>,
}

impl Caught {
    pub(crate) fn new(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = crate::panics::message(payload);
        let location = crate::panics::take_location(message)
            .map(|(file, line, column)| PanicLocation { file, line, column });
        Self {
            message: message.to_owned(),
            location,
        }
    }
}

/// Sends error reports to a [`ReportError`] hook, off the request path.
///
/// Give it to [`ErrorLayer::reporter`](super::ErrorLayer::reporter) (or
/// [`Stack::error_reporter`](crate::stack::Stack::error_reporter)). The layer
/// then copies the head of each request it sees (method, URI, version, headers,
/// client address: a few small allocations, header values are reference
/// counted), and for
/// each response it answers with a 5xx [`Problem`], panics included, queues one
/// report. 4xx answers, successes and 5xx responses the application rendered as
/// JSON itself (such as `/health/ready`'s 503) are not reported.
///
/// # The contract
///
/// - **The response never waits for the hook.** Reports go through a bounded
///   queue ([`DEFAULT_REPORT_QUEUE`] by default) to one thread that calls the
///   hook, one report at a time, in the order the responses were made.
///   Redaction happens there too. A hook may block (a synchronous HTTP call to a
///   tracker is fine), but while it does, reports queue up; when the queue is
///   full, new reports are dropped and counted ([`dropped`](Self::dropped)), and
///   a warning is logged at the first drop and every 1,000th after it. A burst of
///   errors therefore costs the service nothing beyond the copy of each report.
/// - **A panicking hook loses only that report.** The panic is caught and
///   logged; the thread goes on with the next report.
/// - **The hook runs outside the request's task:** `request_id::current()`
///   and the request's tracing span are not in scope there; the report carries
///   the ids instead.
/// - **At exit,** reports still queued are lost unless [`flush`](Self::flush) is
///   called (a shutdown hook is the place).
///
/// Why a thread rather than a call in the response path: trackers' clients are
/// synchronous and some block on I/O; with a call in place, one slow upload would
/// hold a runtime worker and every request behind it. Handing over owned reports
/// costs a copy of the problem (reference counts) and of the request head per
/// report, which a 5xx answer can afford.
///
/// Cloning is cheap; clones share the queue and the thread, which ends once
/// every clone is dropped and the queue is empty.
#[derive(Clone)]
pub struct ErrorReporter {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Option<SyncSender<Pending>>,
    progress: Arc<Progress>,
}

#[derive(Default)]
struct Progress {
    queued: AtomicU64,
    dropped: AtomicU64,
    done: Mutex<u64>,
    changed: Condvar,
}

impl ErrorReporter {
    /// A reporter calling `hook`, with a queue of [`DEFAULT_REPORT_QUEUE`].
    pub fn new(hook: impl ReportError) -> Self {
        Self::with_capacity(DEFAULT_REPORT_QUEUE, hook)
    }

    /// A reporter calling `hook`, with room for `capacity` reports waiting for
    /// it (at least 1).
    pub fn with_capacity(capacity: usize, hook: impl ReportError) -> Self {
        let (queue, rx) = sync_channel(capacity.max(1));
        let progress = Arc::new(Progress::default());
        let worker = progress.clone();
        let spawned = std::thread::Builder::new()
            .name("tower-ops-error-reports".into())
            .spawn(move || run(rx, hook, &worker));
        let queue = match spawned {
            Ok(_) => Some(queue),
            Err(error) => {
                tracing::error!(%error, "cannot start the error report thread; reports are dropped");
                None
            }
        };
        Self {
            shared: Arc::new(Shared { queue, progress }),
        }
    }

    /// Reports dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.progress.dropped.load(Ordering::Acquire)
    }

    /// Waits until the hook has returned for every report queued before this
    /// call, or `timeout` passed; true when it has. Blocks the calling thread:
    /// in async code, run it through `tokio::task::spawn_blocking`.
    pub fn flush(&self, timeout: Duration) -> bool {
        let progress = &self.shared.progress;
        let target = progress.queued.load(Ordering::Acquire);
        let done = progress.done.lock().unwrap_or_else(PoisonError::into_inner);
        let (_done, waited) = progress
            .changed
            .wait_timeout_while(done, timeout, |done| *done < target)
            .unwrap_or_else(PoisonError::into_inner);
        !waited.timed_out()
    }

    fn send(&self, pending: Pending) {
        let progress = &self.shared.progress;
        let sent = match &self.shared.queue {
            Some(queue) => {
                // Counted first, so that a flush racing with the hook never
                // sees more done than queued.
                progress.queued.fetch_add(1, Ordering::AcqRel);
                match queue.try_send(pending) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                        progress.queued.fetch_sub(1, Ordering::AcqRel);
                        false
                    }
                }
            }
            None => false,
        };
        if !sent {
            let dropped = progress.dropped.fetch_add(1, Ordering::AcqRel) + 1;
            if dropped == 1 || dropped.is_multiple_of(1000) {
                tracing::warn!(dropped, "error report queue full; reports dropped");
            }
        }
    }
}

impl fmt::Debug for ErrorReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorReporter")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

fn run(rx: Receiver<Pending>, mut hook: impl ReportError, progress: &Progress) {
    for pending in rx {
        // Read per report: a redactor installed after start-up applies too.
        let redactor = Redactor::installed();
        let request_id = pending.problem.get_request_id().cloned();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            hook.report(pending.finish(&redactor));
        }));
        if let Err(payload) = outcome {
            tracing::error!(
                request_id = request_id.as_ref().map(RequestId::as_str),
                panic = %for_log(crate::panics::message(&*payload)),
                "the error report hook panicked; this report is lost"
            );
        }
        let mut done = progress.done.lock().unwrap_or_else(PoisonError::into_inner);
        *done += 1;
        drop(done);
        progress.changed.notify_all();
    }
}

/// What the error layer keeps of a request while it is served, when a reporter
/// is set. Boxed in the response future.
pub(crate) struct Capture {
    reporter: ErrorReporter,
    head: RawHead,
    panic: Option<Caught>,
}

impl Capture {
    pub(crate) fn new<B>(reporter: &ErrorReporter, req: &Request<B>) -> Box<Self> {
        let extensions = req.extensions();
        Box::new(Self {
            reporter: reporter.clone(),
            head: RawHead {
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                headers: req.headers().clone(),
                client_ip: extensions.get::<ClientIp>().map(ClientIp::ip),
                request_id: extensions
                    .get::<RequestId>()
                    .cloned()
                    .or_else(crate::request_id::current),
            },
            panic: None,
        })
    }

    /// Notes the panic the layer answers for.
    pub(crate) fn panicked(&mut self, caught: Caught) {
        self.panic = Some(caught);
    }

    /// Queues a report when `response` is a 5xx carrying a problem.
    pub(crate) fn finish<B>(self: Box<Self>, response: &Response<B>) {
        if !response.status().is_server_error() {
            return;
        }
        let Some(problem) = response.extensions().get::<Problem>() else {
            return;
        };
        let capture = *self;
        let pending = Pending {
            problem: problem.clone(),
            route: response.extensions().get::<MatchedRoute>().cloned(),
            head: capture.head,
            panic: capture.panic,
        };
        capture.reporter.send(pending);
    }
}

struct RawHead {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    client_ip: Option<IpAddr>,
    request_id: Option<RequestId>,
}

/// A report on its way to the hook, not yet redacted.
struct Pending {
    problem: Problem,
    route: Option<MatchedRoute>,
    head: RawHead,
    panic: Option<Caught>,
}

impl Pending {
    fn finish(self, redactor: &Redactor) -> ErrorReport {
        let head = self.head;
        let mut headers = HeaderMap::with_capacity(head.headers.len());
        for (name, value) in &head.headers {
            let redacted = redactor.redact_header(name, value);
            // Redaction only writes visible ASCII into a valid value, or
            // U+FFFD for bytes that were not UTF-8: always a valid value again.
            if let Ok(value) = HeaderValue::from_bytes(redacted.as_bytes()) {
                headers.append(name.clone(), value);
            }
        }
        let chain = match self.problem.get_source() {
            Some(source) => chain_of(source),
            None => Vec::new(),
        };
        ErrorReport {
            request: RequestHead {
                method: head.method,
                uri: redactor.redact_path_and_query(&head.uri).into_owned(),
                version: head.version,
                headers,
                client_ip: head.client_ip,
                request_id: head.request_id,
            },
            route: self.route,
            chain,
            panic: self.panic.map(|caught| PanicReport {
                message: for_log(&caught.message).into_owned(),
                location: caught.location,
            }),
            problem: self.problem,
        }
    }
}

/// Each link of an error chain, prepared for the report as for the log.
fn chain_of(error: &(dyn Error + 'static)) -> Vec<String> {
    crate::error_chain::links(error)
        .map(|e| for_log(&e.to_string()).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use http::StatusCode;

    use super::*;

    #[test]
    fn chains_are_redacted_and_cleaned() {
        let inner = std::io::Error::other("password=hunter2 rejected\nby db");
        let chain = chain_of(&Wrapped("pool exhausted", inner));
        assert_eq!(chain.len(), 2, "{chain:?}");
        assert_eq!(chain[0], "pool exhausted");
        assert!(
            chain
                .iter()
                .all(|l| !l.contains("hunter2") && !l.contains('\n'))
        );
        assert!(chain[1].contains("password=[REDACTED]"), "{chain:?}");
    }

    #[derive(Debug)]
    struct Wrapped(&'static str, std::io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn only_server_errors_with_a_problem_are_queued() {
        let (tx, rx) = mpsc::channel();
        let reporter = ErrorReporter::new(move |r: ErrorReport| {
            tx.send(r.problem().status()).unwrap();
        });
        let req = Request::get("/x?token=abc")
            .header("authorization", "Bearer abc.def")
            .body(())
            .unwrap();
        let answer = |status: StatusCode, problem: bool| {
            let mut res = Response::new(());
            *res.status_mut() = status;
            if problem {
                res.extensions_mut().insert(Problem::new(status));
            }
            res
        };
        Capture::new(&reporter, &req).finish(&answer(StatusCode::NOT_FOUND, true));
        Capture::new(&reporter, &req).finish(&answer(StatusCode::BAD_GATEWAY, false));
        Capture::new(&reporter, &req).finish(&answer(StatusCode::OK, false));
        Capture::new(&reporter, &req).finish(&answer(StatusCode::SERVICE_UNAVAILABLE, true));
        // No deadline at all is a valid wait, not an overflow.
        assert!(reporter.flush(Duration::MAX));
        assert_eq!(
            rx.try_iter().collect::<Vec<_>>(),
            [StatusCode::SERVICE_UNAVAILABLE]
        );
        assert_eq!(reporter.dropped(), 0);
    }
}
