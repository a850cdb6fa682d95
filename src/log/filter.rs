//! The process's log filter, changeable while it runs.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, Weak};

use tracing::level_filters::LevelFilter;
use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::reload;

/// A handle on a log filter that can be changed while the process runs: read the
/// directives in force with [`current`](Self::current), replace them with
/// [`set`](Self::set). Cloning is cheap; clones change the same filter.
///
/// [`LogBuilder::init`](super::LogBuilder::init) (and so `init_from_env` and
/// `otel::init_from_env`) builds its filter as a
/// [`LogFilterLayer`] and [installs](Self::install) its handle for the process;
/// the [admin routes](crate::admin) find it there. With a subscriber of your own,
/// put a [`LogFilterLayer`] in it, or wrap your `EnvFilter` in tracing-subscriber's
/// [`reload::Layer`] and hand its handle to [`from_reload`](Self::from_reload):
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
/// use tower_ops::log::{JsonLayer, LogFilter, LogFilterLayer};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let filter_layer = LogFilterLayer::new("info")?;
/// let filter = filter_layer.handle();
/// let subscriber = tracing_subscriber::registry()
///     .with(filter_layer)
///     .with(JsonLayer::new(std::io::stdout));
/// // tracing::subscriber::set_global_default(subscriber)?;
/// # let _default = tracing::subscriber::set_default(subscriber);
/// filter.clone().install();
///
/// assert!(!tracing::enabled!(tracing::Level::DEBUG));
/// let old = filter.set("debug,hyper=info")?;
/// assert_eq!(old, "info");
/// assert!(tracing::enabled!(tracing::Level::DEBUG));
/// assert_eq!(LogFilter::installed().unwrap().current(), "debug,hyper=info");
/// assert!(filter.set("debug,hyper=loud").is_err()); // nothing changes
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LogFilter {
    text: Arc<Text>,
    target: Arc<dyn Reload>,
}

/// The directives in force, shared by every handle on one filter.
struct Text {
    directives: Mutex<String>,
    /// Held for the whole of a change, so that concurrent changes apply one
    /// after the other. Not the lock of `directives`, which readers take: what a
    /// change logs may read the filter.
    changes: Mutex<()>,
}

impl Text {
    fn new(directives: String) -> Arc<Self> {
        Arc::new(Self {
            directives: Mutex::new(directives),
            changes: Mutex::new(()),
        })
    }

    fn get(&self) -> String {
        lock(&self.directives).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a [`LogFilter`] swaps the filter of: a [`LogFilterLayer`], or
/// tracing-subscriber's reload handle.
trait Reload: Send + Sync + 'static {
    /// Whether the subscriber holding the filter still exists.
    fn alive(&self) -> bool;

    /// Puts `filter` in force.
    fn reload(&self, filter: EnvFilter, dynamic: bool) -> Result<(), FilterError>;
}

impl<S: 'static> Reload for reload::Handle<EnvFilter, S> {
    fn alive(&self) -> bool {
        self.with_current(|_| ()).is_ok()
    }

    fn reload(&self, filter: EnvFilter, _dynamic: bool) -> Result<(), FilterError> {
        // `reload` rebuilds the callsite interest cache itself.
        reload::Handle::reload(self, filter).map_err(|_| FilterError::Gone)
    }
}

impl Reload for Weak<Cell> {
    fn alive(&self) -> bool {
        self.strong_count() > 0
    }

    fn reload(&self, filter: EnvFilter, dynamic: bool) -> Result<(), FilterError> {
        let cell = self.upgrade().ok_or(FilterError::Gone)?;
        {
            let mut current = cell.filter.write().unwrap_or_else(PoisonError::into_inner);
            *current = filter;
            cell.dynamic.store(dynamic, Ordering::Release);
        }
        // Callsites cache whether they are enabled: ask every one again, with
        // the lock released (the question reads the new filter).
        tracing_core::callsite::rebuild_interest_cache();
        Ok(())
    }
}

/// The filter installed for the process, if any ([`LogFilter::install`]).
static INSTALLED: RwLock<Option<LogFilter>> = RwLock::new(None);

impl LogFilter {
    /// A handle on an `EnvFilter` wrapped in tracing-subscriber's
    /// [`reload::Layer`], for a subscriber you build yourself; `directives` is
    /// the text the filter was built from, which [`current`](Self::current)
    /// reports until the first [`set`](Self::set). Make one `LogFilter` per
    /// reload handle and clone it: two made from the same handle would each
    /// keep their own text.
    ///
    /// [`LogFilterLayer`] does the same job for less: `reload::Layer` takes a
    /// read lock on every span and event callback, which threads logging at
    /// once contend for.
    ///
    /// ```
    /// use tracing_subscriber::layer::SubscriberExt;
    /// use tracing_subscriber::{EnvFilter, reload};
    /// use tower_ops::log::LogFilter;
    ///
    /// let (filter, handle) = reload::Layer::new(EnvFilter::new("warn"));
    /// let subscriber = tracing_subscriber::registry()
    ///     .with(filter)
    ///     .with(tracing_subscriber::fmt::layer());
    /// let log_filter = LogFilter::from_reload(handle, "warn");
    /// # let _default = tracing::subscriber::set_default(subscriber);
    /// log_filter.set("info").unwrap();
    /// assert!(tracing::enabled!(tracing::Level::INFO));
    /// ```
    pub fn from_reload<S: 'static>(
        handle: reload::Handle<EnvFilter, S>,
        directives: impl Into<String>,
    ) -> Self {
        Self {
            text: Text::new(directives.into().trim().to_owned()),
            target: Arc::new(handle),
        }
    }

    /// The directives in force, as they were given (trimmed).
    pub fn current(&self) -> String {
        self.text.get()
    }

    /// Parses `directives` (a level, or `target=level` pairs separated by commas,
    /// as in `RUST_LOG`) and puts them in force at once, for every callsite;
    /// returns the directives they replace.
    ///
    /// Fails, changing nothing, when the directives do not parse or are empty
    /// ([`FilterError::Invalid`], whose message names the directive at fault),
    /// or when the subscriber holding the filter is gone ([`FilterError::Gone`]).
    /// Concurrent calls apply one after the other.
    pub fn set(&self, directives: &str) -> Result<String, FilterError> {
        self.set_announced(directives, |_, _| true)
    }

    /// [`set`](Self::set), calling `announce(old, new)` so that what it logs is
    /// written under whichever of the two filters lets it through: first with
    /// the old filter in force, then, when that call returns `false` (its event
    /// was filtered out), once more with the new one.
    pub(crate) fn set_announced(
        &self,
        directives: &str,
        mut announce: impl FnMut(&str, &str) -> bool,
    ) -> Result<String, FilterError> {
        let (text, filter) = parse(directives)?;
        let dynamic = is_dynamic(&text);
        let _change = lock(&self.text.changes);
        if !self.target.alive() {
            return Err(FilterError::Gone);
        }
        let old = self.text.get();
        let announced = announce(&old, &text);
        self.target.reload(filter, dynamic)?;
        *lock(&self.text.directives) = text.clone();
        if !announced {
            announce(&old, &text);
        }
        Ok(old)
    }

    /// Makes this the process's log filter, the one
    /// [`installed`](Self::installed) returns (replacing any other);
    /// [`LogBuilder::init`](super::LogBuilder::init) calls it.
    pub fn install(self) {
        *INSTALLED.write().unwrap_or_else(PoisonError::into_inner) = Some(self);
    }

    /// The process's log filter, if one was [installed](Self::install).
    pub fn installed() -> Option<Self> {
        INSTALLED
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl fmt::Debug for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogFilter")
            .field("current", &self.text.get())
            .finish()
    }
}

/// Parses directives as `LogBuilder` and `RUST_LOG` do; the error names the
/// directive at fault.
pub(crate) fn parse(directives: &str) -> Result<(String, EnvFilter), FilterError> {
    let text = directives.trim();
    if text.is_empty() {
        return Err(FilterError::Invalid(
            "no directives: give a level (trace, debug, info, warn, error, off) \
             or target=level pairs"
                .to_owned(),
        ));
    }
    match EnvFilter::builder().parse(text) {
        Ok(filter) => Ok((text.to_owned(), filter)),
        Err(e) => {
            // The parser does not say which directive it refused; find it,
            // splitting as the parser does.
            let culprit = text
                .split(',')
                .filter(|d| !d.is_empty())
                .find(|d| EnvFilter::builder().parse(d).is_err());
            Err(FilterError::Invalid(match culprit {
                Some(d) if d != text => format!("{e} (in {:?})", d.trim()),
                _ => e.to_string(),
            }))
        }
    }
}

/// Whether the directives filter on spans or fields, which only the `[...]`
/// part of a directive (`target[span{field=value}]=level`) does. Such a filter
/// follows spans as they open, enter, exit and close; one without needs only
/// the callsites' metadata.
fn is_dynamic(directives: &str) -> bool {
    directives.contains('[')
}

/// A log filter made of `EnvFilter` directives, changeable at run time through
/// its [`handle`](Self::handle), for a subscriber you build yourself (the one
/// [`LogBuilder`](super::LogBuilder) builds has it already).
///
/// It costs no more than the `EnvFilter` alone, usually less: a filter without
/// span or field directives decides from callsite metadata only, so it skips the
/// span callbacks (with their `EnvFilter` locks) altogether, and tracing's
/// per-callsite cache answers most questions without calling it. A change
/// rebuilds that cache. tracing-subscriber's [`reload::Layer`] instead takes a
/// read lock on every callback, which threads logging at once contend for.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
/// use tower_ops::log::LogFilterLayer;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = LogFilterLayer::new("warn,my_app=debug")?;
/// let filter = layer.handle();
/// let subscriber = tracing_subscriber::registry()
///     .with(layer)
///     .with(tracing_subscriber::fmt::layer());
/// # let _default = tracing::subscriber::set_default(subscriber);
/// assert_eq!(filter.current(), "warn,my_app=debug");
/// # Ok(())
/// # }
/// ```
pub struct LogFilterLayer {
    cell: Arc<Cell>,
    text: Arc<Text>,
}

/// The filter in force, and whether it follows spans.
struct Cell {
    filter: RwLock<EnvFilter>,
    dynamic: AtomicBool,
}

impl LogFilterLayer {
    /// A layer filtering with `directives` (see [`LogFilter::set`]).
    pub fn new(directives: &str) -> Result<Self, FilterError> {
        let (text, filter) = parse(directives)?;
        Ok(Self {
            cell: Arc::new(Cell {
                filter: RwLock::new(filter),
                dynamic: AtomicBool::new(is_dynamic(&text)),
            }),
            text: Text::new(text),
        })
    }

    /// The handle that reads and changes this layer's filter. It does not keep
    /// the layer alive: once the subscriber is dropped, [`LogFilter::set`] fails
    /// with [`FilterError::Gone`].
    pub fn handle(&self) -> LogFilter {
        let target: Weak<Cell> = Arc::downgrade(&self.cell);
        LogFilter {
            text: self.text.clone(),
            target: Arc::new(target),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, EnvFilter> {
        self.cell
            .filter
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The filter, when it follows spans; `None` (without locking) otherwise.
    #[inline]
    fn dynamic(&self) -> Option<RwLockReadGuard<'_, EnvFilter>> {
        self.cell
            .dynamic
            .load(Ordering::Acquire)
            .then(|| self.read())
    }
}

impl fmt::Debug for LogFilterLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogFilterLayer")
            .field("directives", &self.text.get())
            .finish()
    }
}

// Every callback `EnvFilter` implements is forwarded; the span callbacks only to
// a filter with span or field directives, since a static `EnvFilter` does
// nothing in them but look its span table up. A span opened before a change is
// unknown to the new filter, as with `reload::Layer`.
//
// This stands in for tracing-subscriber's `reload::Layer<EnvFilter>` because of
// `benches/layers/log_filter.rs`: at `info` under `JsonLayer`, `reload::Layer`
// adds 0.15 us to a request through `RequestLogLayer` (2.60 -> 2.75 us) and
// 0.6 us to a span with an event on each of two threads (1.11 -> 1.73 us), its
// lock's cache line bouncing between them; this layer adds nothing measurable
// (2.62 us, 1.10 us) and is faster than `EnvFilter` alone on one thread
// (383 against 421 ns).
impl<S: Subscriber> Layer<S> for LogFilterLayer {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        Layer::<S>::register_callsite(&*self.read(), metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        Layer::<S>::enabled(&*self.read(), metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Layer::<S>::max_level_hint(&*self.read())
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if let Some(filter) = self.dynamic() {
            Layer::<S>::on_new_span(&*filter, attrs, id, ctx);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(filter) = self.dynamic() {
            Layer::<S>::on_record(&*filter, id, values, ctx);
        }
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        if let Some(filter) = self.dynamic() {
            Layer::<S>::on_enter(&*filter, id, ctx);
        }
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        if let Some(filter) = self.dynamic() {
            Layer::<S>::on_exit(&*filter, id, ctx);
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        if let Some(filter) = self.dynamic() {
            Layer::<S>::on_close(&*filter, id, ctx);
        }
    }
}

/// A log filter that could not be changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilterError {
    /// The directives do not parse, or there are none; the parser's message,
    /// with the directive at fault.
    Invalid(String),
    /// The subscriber holding the filter was dropped: nothing is filtered by it
    /// any more.
    Gone,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(message) => write!(f, "invalid filter directives: {message}"),
            Self::Gone => f.write_str("the subscriber holding the log filter is gone"),
        }
    }
}

impl std::error::Error for FilterError {}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tracing::{Event, Level};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Counts the events that reach it.
    #[derive(Clone, Default)]
    struct Count(Arc<AtomicUsize>);

    impl<S: Subscriber> Layer<S> for Count {
        fn on_event(&self, _event: &Event<'_>, _ctx: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Count {
        fn get(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    fn subscriber(directives: &str) -> (impl Subscriber + Send + Sync, LogFilter, Count) {
        let layer = LogFilterLayer::new(directives).unwrap();
        let filter = layer.handle();
        let count = Count::default();
        let subscriber = tracing_subscriber::registry()
            .with(layer)
            .with(count.clone());
        (subscriber, filter, count)
    }

    #[test]
    fn a_change_applies_at_once() {
        let (subscriber, filter, count) = subscriber("info");
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("hidden");
            assert_eq!(count.get(), 0);
            assert_eq!(filter.set(" debug ").unwrap(), "info");
            assert_eq!(filter.current(), "debug");
            tracing::debug!("shown");
            assert_eq!(count.get(), 1);
            assert_eq!(filter.set("warn").unwrap(), "debug");
            tracing::info!("hidden again");
            tracing::warn!("shown");
            assert_eq!(count.get(), 2);
        });
    }

    #[test]
    fn targets_and_spans() {
        let (subscriber, filter, count) = subscriber("warn,my_app::db=debug");
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "my_app::db", "shown");
            tracing::debug!(target: "my_app::http", "hidden");
            assert_eq!(count.get(), 1);
            // A span directive: debug inside `checkout` spans only.
            filter.set("warn,[checkout]=debug").unwrap();
            tracing::debug!("outside: hidden");
            assert_eq!(count.get(), 1);
            tracing::info_span!("checkout").in_scope(|| tracing::debug!("inside: shown"));
            assert_eq!(count.get(), 2);
            tracing::info_span!("browse").in_scope(|| tracing::debug!("elsewhere: hidden"));
            assert_eq!(count.get(), 2);
            // Back to static directives: spans are no longer followed.
            filter.set("warn").unwrap();
            tracing::info_span!("checkout").in_scope(|| tracing::debug!("hidden"));
            assert_eq!(count.get(), 2);
        });
    }

    #[test]
    fn invalid_directives_change_nothing_and_name_the_culprit() {
        let (subscriber, filter, count) = subscriber("info");
        tracing::subscriber::with_default(subscriber, || {
            for bad in ["", "  ", "info,my_app=loud", "[unclosed", "=info", "a=b=c"] {
                let err = filter.set(bad).unwrap_err();
                assert!(matches!(err, FilterError::Invalid(_)), "{bad:?}: {err}");
            }
            let FilterError::Invalid(message) = filter.set("info,my_app=loud").unwrap_err() else {
                unreachable!()
            };
            assert!(message.contains(r#"(in "my_app=loud")"#), "{message}");
            assert_eq!(filter.current(), "info");
            tracing::info!("still info");
            assert_eq!(count.get(), 1);
        });
    }

    #[test]
    fn a_dropped_subscriber_is_reported() {
        let (subscriber, filter, _count) = subscriber("info");
        drop(subscriber);
        assert_eq!(filter.set("debug"), Err(FilterError::Gone));
        assert_eq!(filter.current(), "info");
    }

    #[test]
    fn the_announcement_is_written_under_the_filter_that_lets_it_through() {
        let (subscriber, filter, _count) = subscriber("info");
        tracing::subscriber::with_default(subscriber, || {
            // Each call to `announce`: old, new, whether a WARN got through, and
            // the filter it reads then (reading does not wait for the change).
            let change = |to: &str| {
                let mut seen = Vec::new();
                filter
                    .set_announced(to, |old, new| {
                        let enabled = tracing::enabled!(Level::WARN);
                        seen.push(format!("{old}->{new}:{enabled}@{}", filter.current()));
                        enabled
                    })
                    .unwrap();
                seen
            };
            // From info to error: the old filter lets a WARN through.
            assert_eq!(change("error"), ["info->error:true@info"]);
            // From error to info: only the new one does.
            assert_eq!(
                change("info"),
                ["error->info:false@error", "error->info:true@info"]
            );
            // Neither does: announced twice, written by neither.
            change("error");
            assert_eq!(
                change("off"),
                ["error->off:false@error", "error->off:false@off"]
            );
        });
    }

    #[test]
    fn a_reload_handle_works_too() {
        let (layer, handle) = reload::Layer::new(EnvFilter::new("info"));
        let count = Count::default();
        let subscriber = tracing_subscriber::registry()
            .with(layer)
            .with(count.clone());
        let filter = LogFilter::from_reload(handle, "info");
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("hidden");
            assert_eq!(filter.set("debug").unwrap(), "info");
            tracing::debug!("shown");
            assert_eq!(count.get(), 1);
            assert!(matches!(
                filter.set("nope=nope"),
                Err(FilterError::Invalid(_))
            ));
        });
        assert_eq!(filter.set("trace"), Err(FilterError::Gone));
    }

    #[test]
    fn concurrent_changes_leave_text_and_filter_in_step() {
        let (subscriber, filter, _count) = subscriber("info");
        let dispatch = tracing::Dispatch::new(subscriber);
        let levels = ["trace", "debug", "info", "warn", "error"];
        std::thread::scope(|s| {
            for t in 0..8 {
                let filter = filter.clone();
                s.spawn(move || {
                    for i in 0..50 {
                        filter.set(levels[(t + i) % levels.len()]).unwrap();
                    }
                });
            }
        });
        let text = filter.current();
        tracing::dispatcher::with_default(&dispatch, || {
            let enabled: Vec<bool> = [Level::TRACE, Level::DEBUG, Level::INFO, Level::WARN]
                .iter()
                .map(|l| match *l {
                    Level::TRACE => tracing::enabled!(Level::TRACE),
                    Level::DEBUG => tracing::enabled!(Level::DEBUG),
                    Level::INFO => tracing::enabled!(Level::INFO),
                    _ => tracing::enabled!(Level::WARN),
                })
                .collect();
            let expected = match text.as_str() {
                "trace" => [true, true, true, true],
                "debug" => [false, true, true, true],
                "info" => [false, false, true, true],
                "warn" => [false, false, false, true],
                "error" => [false, false, false, false],
                other => panic!("unexpected filter {other}"),
            };
            assert_eq!(enabled, expected, "{text}");
        });
    }

    #[test]
    fn debug_shows_the_directives() {
        let layer = LogFilterLayer::new("info,my_app=debug").unwrap();
        assert_eq!(
            format!("{:?}", layer.handle()),
            r#"LogFilter { current: "info,my_app=debug" }"#
        );
        assert!(format!("{layer:?}").contains("info,my_app=debug"));
    }
}
