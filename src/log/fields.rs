//! A request line that carries its handler's [`LogFields`] as real tracing fields.
//!
//! tracing names an event's fields in its callsite's `'static` metadata, so a line
//! whose keys are chosen by a handler at run time needs a callsite made at run
//! time. One is made, registered and kept for each distinct (level, keys) pair the
//! process logs, up to [`MAX_CALLSITES`]; past that, or for a key longer than
//! [`MAX_KEY_BYTES`], the line falls back to the single `fields` text field.
//!
//! Every subscriber then sees the handler's values as fields of the request event:
//! integers, floats and booleans typed, strings as strings, arrays and objects as
//! their JSON text. [`JsonLayer`](super::JsonLayer) skips them there and writes the
//! typed values it finds in the request span's extensions instead, so objects stay
//! objects.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, FieldSet, Value, display};
use tracing::{Level, Metadata, Span};
use tracing_core::callsite::{Callsite, Identifier};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, Kind};

use super::format::REQUEST_TARGET;

/// The `name` of every run-time request callsite's metadata; [`JsonLayer`]
/// recognises them by it.
///
/// [`JsonLayer`]: super::JsonLayer
pub(crate) const EVENT_NAME: &str = "tower_ops request line with handler fields";

/// The request line's own fields, in the order the request log records them; the
/// handler's keys follow.
pub(crate) const LINE_FIELDS: [&str; 21] = [
    "message",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "request_id",
    "client_request_id",
    "client_ip",
    "user_agent",
    "request_bytes",
    "response_bytes",
    "trace_id",
    "code",
    "rejected_by",
    "slow",
    "aborted",
    "error",
    "sample_rate",
    "shadow_rejected_by",
    "shadow_policy",
];

/// The most handler keys one line carries: the 64 a [`LogFields`] keeps, and the
/// request log's own `headers`, `request_body` and `response_body`.
///
/// [`LogFields`]: super::LogFields
const MAX_HANDLER_KEYS: usize = 64 + 3;
/// The most run-time callsites the process makes.
pub(crate) const MAX_CALLSITES: usize = 256;
/// The longest handler key a run-time callsite names.
pub(crate) const MAX_KEY_BYTES: usize = 128;

const ALL: usize = LINE_FIELDS.len() + MAX_HANDLER_KEYS;

/// One run-time callsite: its metadata is set once, right after the callsite
/// has its `'static` address, which the metadata's field set must name.
struct DynCallsite {
    meta: OnceLock<Metadata<'static>>,
}

impl Callsite for DynCallsite {
    fn set_interest(&self, _interest: Interest) {
        // Asked again at each event through `Dispatch::enabled`, like a callsite
        // that caches nothing.
    }

    fn metadata(&self) -> &Metadata<'_> {
        self.meta
            .get()
            .expect("set before the callsite is registered")
    }
}

/// The callsites made so far, by a hash of their level and keys.
struct Callsites {
    by_hash: HashMap<u64, Vec<&'static DynCallsite>>,
    made: usize,
}

fn callsites() -> &'static Mutex<Callsites> {
    static CALLSITES: OnceLock<Mutex<Callsites>> = OnceLock::new();
    CALLSITES.get_or_init(|| {
        Mutex::new(Callsites {
            by_hash: HashMap::new(),
            made: 0,
        })
    })
}

fn level_index(level: Level) -> u8 {
    match level {
        Level::ERROR => 0,
        Level::WARN => 1,
        Level::INFO => 2,
        Level::DEBUG => 3,
        _ => 4,
    }
}

/// The callsite for `level` and `keys`, made and registered on first use;
/// `None` once [`MAX_CALLSITES`] exist or when a key is too long.
fn callsite(level: Level, keys: &[&str]) -> Option<&'static Metadata<'static>> {
    if keys.iter().any(|k| k.len() > MAX_KEY_BYTES) {
        return None;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    level_index(level).hash(&mut hasher);
    keys.hash(&mut hasher);
    let hash = hasher.finish();
    let mut all = callsites().lock().unwrap_or_else(|e| e.into_inner());
    let found = all.by_hash.get(&hash).and_then(|list| {
        list.iter().copied().find(|cs| {
            let meta = cs.metadata();
            *meta.level() == level
                && meta
                    .fields()
                    .iter()
                    .skip(LINE_FIELDS.len())
                    .map(|f| f.name())
                    .eq(keys.iter().copied())
        })
    });
    if let Some(cs) = found {
        return Some(meta_of(cs));
    }
    if all.made >= MAX_CALLSITES {
        return None;
    }
    all.made += 1;
    // Leaked on purpose: a callsite lives as long as the process, and there are
    // at most MAX_CALLSITES of them.
    let names: Vec<&'static str> = LINE_FIELDS
        .iter()
        .copied()
        .chain(keys.iter().map(|k| &*Box::leak(Box::<str>::from(*k))))
        .collect();
    let names: &'static [&'static str] = Box::leak(names.into_boxed_slice());
    let cs: &'static DynCallsite = Box::leak(Box::new(DynCallsite {
        meta: OnceLock::new(),
    }));
    let meta = Metadata::new(
        EVENT_NAME,
        REQUEST_TARGET,
        level,
        Some(file!()),
        Some(line!()),
        Some(module_path!()),
        FieldSet::new(names, Identifier(cs)),
        Kind::EVENT,
    );
    if cs.meta.set(meta).is_err() {
        unreachable!("a new callsite's metadata is set once");
    }
    all.by_hash.entry(hash).or_default().push(cs);
    drop(all);
    tracing_core::callsite::register(cs);
    Some(meta_of(cs))
}

fn meta_of(cs: &'static DynCallsite) -> &'static Metadata<'static> {
    cs.meta.get().expect("set at creation")
}

/// A handler value as a tracing value.
enum Typed<'a> {
    I(i64),
    U(u64),
    F(f64),
    B(bool),
    S(&'a str),
    Json(tracing::field::DisplayValue<&'a serde_json::Value>),
    Null,
}

impl<'a> Typed<'a> {
    fn new(value: &'a serde_json::Value) -> Self {
        use serde_json::Value as J;
        match value {
            J::Null => Self::Null,
            J::Bool(b) => Self::B(*b),
            J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Self::I(i),
                (_, Some(u), _) => Self::U(u),
                (_, _, Some(f)) => Self::F(f),
                _ => Self::Json(display(value)),
            },
            J::String(s) => Self::S(s),
            J::Array(_) | J::Object(_) => Self::Json(display(value)),
        }
    }

    fn as_value(&self) -> Option<&dyn Value> {
        match self {
            Self::I(v) => Some(v),
            Self::U(v) => Some(v),
            Self::F(v) => Some(v),
            Self::B(v) => Some(v),
            Self::S(v) => Some(v),
            Self::Json(v) => Some(v),
            Self::Null => None,
        }
    }
}

/// Emits the request line at `level` under `parent` with the line's own
/// `values` (in [`LINE_FIELDS`] order) and the handler's `fields`. Returns
/// `false`, having emitted nothing, when no run-time callsite can be had; the
/// caller then logs the line with the `fields` text instead.
pub(crate) fn emit(
    level: Level,
    parent: &Span,
    values: &[Option<&dyn Value>; LINE_FIELDS.len()],
    fields: &[(String, serde_json::Value)],
) -> bool {
    // The line's own keys win over a handler's of the same name.
    let mut keys: Vec<&str> = Vec::with_capacity(fields.len());
    let mut typed: Vec<Typed<'_>> = Vec::with_capacity(fields.len());
    for (key, value) in fields.iter().take(MAX_HANDLER_KEYS) {
        if LINE_FIELDS.contains(&key.as_str()) || keys.contains(&key.as_str()) {
            continue;
        }
        keys.push(key);
        typed.push(Typed::new(value));
    }
    if level > tracing::level_filters::LevelFilter::current() {
        // Handled: the line is filtered out whatever its fields.
        return true;
    }
    let Some(meta) = callsite(level, &keys) else {
        return false;
    };
    if !tracing::dispatcher::get_default(|d| d.enabled(meta)) {
        return true;
    }
    let field_set = meta.fields();
    let all: Vec<Field> = field_set.iter().collect();
    let mut entries: [(&Field, Option<&dyn Value>); ALL] = [(&all[0], None); ALL];
    for (i, value) in values.iter().enumerate() {
        entries[i] = (&all[i], *value);
    }
    for (i, value) in typed.iter().enumerate() {
        let at = LINE_FIELDS.len() + i;
        entries[at] = (&all[at], value.as_value());
    }
    let value_set = field_set.value_set(&entries);
    Event::child_of(parent.id(), meta, &value_set);
    true
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::Visit;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::*;

    /// One event's field names and values, as text.
    type Recorded = Vec<(String, String)>;

    /// Records every event's fields.
    #[derive(Clone, Default)]
    struct Fields(Arc<Mutex<Vec<Recorded>>>);

    struct Collect(Recorded);

    impl Visit for Collect {
        fn record_i64(&mut self, f: &Field, v: i64) {
            self.0.push((f.name().into(), format!("i64 {v}")));
        }
        fn record_u64(&mut self, f: &Field, v: u64) {
            self.0.push((f.name().into(), format!("u64 {v}")));
        }
        fn record_f64(&mut self, f: &Field, v: f64) {
            self.0.push((f.name().into(), format!("f64 {v}")));
        }
        fn record_bool(&mut self, f: &Field, v: bool) {
            self.0.push((f.name().into(), format!("bool {v}")));
        }
        fn record_str(&mut self, f: &Field, v: &str) {
            self.0.push((f.name().into(), format!("str {v}")));
        }
        fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
            self.0.push((f.name().into(), format!("debug {v:?}")));
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Fields {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut c = Collect(Vec::new());
            event.record(&mut c);
            self.0.lock().unwrap().push(c.0);
        }
    }

    fn line_values() -> [Option<&'static dyn Value>; LINE_FIELDS.len()] {
        let mut values: [Option<&'static dyn Value>; LINE_FIELDS.len()] = [None; LINE_FIELDS.len()];
        values[0] = Some(&"request completed");
        values[1] = Some(&"GET");
        values[4] = Some(&200u64);
        values
    }

    fn fields(pairs: &[(&str, serde_json::Value)]) -> Vec<(String, serde_json::Value)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn handler_values_are_typed_fields_and_line_keys_win() {
        let seen = Fields::default();
        let subscriber = tracing_subscriber::registry().with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            let handler = fields(&[
                ("user_id", serde_json::json!(42)),
                ("big", serde_json::json!(u64::MAX)),
                ("ratio", serde_json::json!(0.5)),
                ("pro", serde_json::json!(true)),
                ("plan", serde_json::json!("gold")),
                ("tags", serde_json::json!(["a", {"b": 1}])),
                ("gone", serde_json::Value::Null),
                ("status", serde_json::json!(999)),
                ("user_id", serde_json::json!(7)),
            ]);
            assert!(emit(Level::INFO, &Span::none(), &line_values(), &handler));
        });
        let events = seen.0.lock().unwrap();
        assert_eq!(events.len(), 1);
        let got: Vec<(&str, &str)> = events[0]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("message", "str request completed"),
                ("method", "str GET"),
                ("status", "u64 200"),
                ("user_id", "i64 42"),
                ("big", &*format!("u64 {}", u64::MAX)),
                ("ratio", "f64 0.5"),
                ("pro", "bool true"),
                ("plan", "str gold"),
                ("tags", r#"debug ["a",{"b":1}]"#),
            ]
        );
    }

    #[test]
    fn one_callsite_per_level_and_key_set() {
        let a = callsite(Level::WARN, &["one_callsite_a", "b"]).unwrap();
        let again = callsite(Level::WARN, &["one_callsite_a", "b"]).unwrap();
        let other_level = callsite(Level::ERROR, &["one_callsite_a", "b"]).unwrap();
        let other_order = callsite(Level::WARN, &["b", "one_callsite_a"]).unwrap();
        assert!(std::ptr::eq(a, again));
        assert!(!std::ptr::eq(a, other_level));
        assert!(!std::ptr::eq(a, other_order));
        assert_eq!(a.name(), EVENT_NAME);
        assert_eq!(a.target(), REQUEST_TARGET);
        let names: Vec<&str> = a.fields().iter().map(|f| f.name()).collect();
        assert_eq!(names[..LINE_FIELDS.len()], LINE_FIELDS);
        assert_eq!(names[LINE_FIELDS.len()..], ["one_callsite_a", "b"]);
    }

    #[test]
    fn an_overlong_key_has_no_callsite() {
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(callsite(Level::INFO, &[&long]).is_none());
        assert!(callsite(Level::INFO, &[&long[..MAX_KEY_BYTES]]).is_some());
    }

    #[test]
    fn a_filtered_out_line_is_handled_and_not_written() {
        let seen = Fields::default();
        let subscriber = tracing_subscriber::registry()
            .with(seen.clone())
            .with(tracing_subscriber::filter::LevelFilter::WARN);
        tracing::subscriber::with_default(subscriber, || {
            let handler = fields(&[("filtered_key_only_here", serde_json::json!(1))]);
            assert!(emit(Level::INFO, &Span::none(), &line_values(), &handler));
        });
        assert!(seen.0.lock().unwrap().is_empty());
    }
}
