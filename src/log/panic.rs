//! The panic hook installed by the logging set-up: each panic becomes one ERROR
//! event, target `tower_ops::panic`, wherever it happens (a request, a spawned
//! task, `main`).
//!
//! The event has the message `panic` and the fields `panic` (the payload, redacted
//! and cleaned like every error text the error layer logs), `location`
//! (`file:line:col`), `thread`, `request_id` when a request is in scope, and
//! `backtrace` when `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` asks for one.
//!
//! The hook also notes the panic's location on its thread, for the
//! [error reports](crate::error::ErrorReporter) of the error layer that catches it.
//!
//! The previous hook is not called, so nothing raw (an unredacted message) reaches
//! stderr. After the event the flush callback runs: a panic in `main` may end the
//! process before the writer thread writes its next batch.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::Cell;
use std::panic::{Location, PanicHookInfo};
use std::sync::{Arc, PoisonError, RwLock};

use crate::error::for_log;
use crate::request_id::RequestId;

type Flush = Arc<dyn Fn() + Send + Sync>;

static FLUSH: RwLock<Option<Flush>> = RwLock::new(None);

thread_local! {
    /// Set while this thread runs the hook: a panic inside it (a `Debug` impl, a
    /// subscriber) must not start it again.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Installs the hook; later calls replace the flush callback.
pub(crate) fn install(flush: impl Fn() + Send + Sync + 'static) {
    let previous = FLUSH
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .replace(Arc::new(flush));
    // Dropped outside the lock: the hook never waits on a drop.
    drop(previous);
    if crate::panics::mark_hook_installed() {
        std::panic::set_hook(Box::new(hook));
    }
}

fn hook(info: &PanicHookInfo<'_>) {
    crate::panics::record(crate::panics::message(info.payload()), info.location());
    guarded(|| {
        emit(crate::panics::message(info.payload()), info.location());
        flush();
    });
}

/// Runs `f` unless this thread is already inside it.
fn guarded(f: impl FnOnce()) {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            let _ = IN_HOOK.try_with(|busy| busy.set(false));
        }
    }
    // While the thread's locals are torn down there is no guard to keep; the
    // panic is still worth a line.
    let entered = IN_HOOK.try_with(|busy| !busy.replace(true)).unwrap_or(true);
    if entered {
        let _leave = Leave;
        f();
    }
}

fn emit(payload: &str, location: Option<&Location<'_>>) {
    let message = for_log(payload);
    let location = location.map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    let request_id = crate::request_id::current();
    let thread = std::thread::current();
    // `capture` reads RUST_LIB_BACKTRACE and RUST_BACKTRACE, and costs nothing
    // when they ask for no backtrace.
    let backtrace = Backtrace::capture();
    let backtrace =
        (backtrace.status() == BacktraceStatus::Captured).then(|| backtrace.to_string());
    tracing::error!(
        target: "tower_ops::panic",
        panic = %message,
        location = location.as_deref(),
        request_id = request_id.as_ref().map(RequestId::as_str),
        thread = thread.name().unwrap_or("<unnamed>"),
        backtrace = backtrace.as_deref(),
        "panic"
    );
}

fn flush() {
    let flush = FLUSH.read().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(flush) = flush {
        flush();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::*;

    type Fields = BTreeMap<String, String>;

    /// Records each event's level, target and fields.
    #[derive(Clone, Default)]
    struct Events(Arc<Mutex<Vec<Fields>>>);

    struct Record<'a>(&'a mut Fields);

    impl Visit for Record<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut fields = Fields::new();
            let meta = event.metadata();
            fields.insert("level".into(), meta.level().to_string());
            fields.insert("target".into(), meta.target().to_owned());
            event.record(&mut Record(&mut fields));
            self.0.lock().unwrap().push(fields);
        }
    }

    fn captured(f: impl FnOnce()) -> Vec<Fields> {
        let events = Events::default();
        let subscriber = tracing_subscriber::registry().with(events.clone());
        tracing::subscriber::with_default(subscriber, f);
        events.0.lock().unwrap().clone()
    }

    #[test]
    fn one_redacted_event_with_its_location() {
        let here = Location::caller();
        let got = captured(|| {
            emit("login failed password=hunter2\nnext", Some(here));
        });
        assert_eq!(got.len(), 1, "{got:?}");
        let e = &got[0];
        assert_eq!(e["level"], "ERROR");
        assert_eq!(e["target"], "tower_ops::panic");
        assert_eq!(e["message"], "panic");
        assert!(!e["panic"].contains("hunter2"), "{e:?}");
        assert!(e["panic"].contains("password=[REDACTED]"), "{e:?}");
        assert!(!e["panic"].contains('\n'), "{e:?}");
        let location = format!("{}:{}:{}", here.file(), here.line(), here.column());
        assert_eq!(e["location"], location);
        assert!(e["location"].starts_with("src/log/panic.rs:"), "{e:?}");
        assert_eq!(
            e.get("thread").map(String::as_str),
            std::thread::current().name()
        );
        assert!(!e.contains_key("request_id"), "{e:?}");
        // Present only when the environment asks for backtraces (it usually does
        // not under `cargo test`).
        let wanted = Backtrace::capture().status() == BacktraceStatus::Captured;
        assert_eq!(e.contains_key("backtrace"), wanted, "{e:?}");
    }

    #[test]
    fn carries_the_request_id_and_odd_payloads() {
        let context = crate::context::RequestContext::default()
            .with_request_id(RequestId::new("req-panic-1").unwrap());
        let got = captured(|| {
            let payload: Box<dyn std::any::Any + Send> = Box::new(42_u8);
            context.sync_scope(|| {
                emit(crate::panics::message(&*payload), None);
            });
        });
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["request_id"], "req-panic-1");
        assert!(got[0]["panic"].contains("not a string"), "{:?}", got[0]);
        assert!(!got[0].contains_key("location"), "{:?}", got[0]);
    }

    #[test]
    fn the_guard_stops_reentry() {
        let runs = Cell::new(0);
        guarded(|| {
            runs.set(runs.get() + 1);
            guarded(|| runs.set(runs.get() + 10));
        });
        assert_eq!(runs.get(), 1);
        // Left, even by a panic: the next panic is reported again.
        let _ = std::panic::catch_unwind(|| guarded(|| std::panic::resume_unwind(Box::new(()))));
        guarded(|| runs.set(runs.get() + 1));
        assert_eq!(runs.get(), 2);
    }
}
