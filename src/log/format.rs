//! A `tracing` layer that writes one flat JSON object per event.
//!
//! Unlike tracing-subscriber's JSON formatter, the fields of the enclosing spans
//! (`request_id`, `trace_id`, ...) are written at the root of the object, next to
//! `timestamp`, `level`, `message` and `target`, and never twice: an event's own
//! field wins over a span's, an inner span's over an outer one's.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::json::push_str;

/// The field whose value is a pre-rendered JSON object to splice into the line
/// (used by the request log for fields added by handlers).
pub(crate) const SPLICE_FIELD: &str = "log.fields";

/// A [`tracing_subscriber::Layer`] writing flat JSON lines to `W`.
///
/// Usually installed by [`init_from_env`](super::init_from_env) or
/// [`LogBuilder`](super::LogBuilder); use it directly to compose with other layers:
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
/// use tower_ops::log::JsonLayer;
///
/// let subscriber = tracing_subscriber::registry().with(JsonLayer::new(std::io::sink));
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info!(user = 7, "hello");
/// });
/// ```
#[derive(Debug)]
pub struct JsonLayer<W> {
    make_writer: W,
}

impl<W> JsonLayer<W> {
    /// Writes to whatever `make_writer` makes (stdout, a non-blocking writer, ...).
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

/// The rendered fields of a span, kept in its extensions.
#[derive(Default)]
struct SpanFields(Vec<(&'static str, String)>);

impl SpanFields {
    fn set(&mut self, name: &'static str, value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
}

/// `otel.kind`, `otel.name`, `otel.status_code`: instructions to the
/// OpenTelemetry layer, not data for the log line.
fn is_otel_control(name: &str) -> bool {
    name.starts_with("otel.")
}

/// Renders each field value as JSON.
struct ValueVisitor<'a> {
    out: &'a mut Vec<(&'static str, String)>,
}

impl ValueVisitor<'_> {
    fn put(&mut self, field: &Field, value: String) {
        let name = field.name();
        if is_otel_control(name) {
            return;
        }
        match self.out.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.out.push((name, value)),
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_str(&mut out, s);
    out
}

impl Visit for ValueVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == SPLICE_FIELD {
            self.put(field, value.to_owned());
            return;
        }
        self.put(field, json_string(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.to_string());
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put(field, value.to_string());
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.put(field, value.to_string());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let text = if value.is_finite() {
            let mut s = value.to_string();
            if !s.contains(['.', 'e', 'E']) {
                s.push_str(".0");
            }
            s
        } else {
            "null".to_owned()
        };
        self.put(field, text);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, if value { "true" } else { "false" }.to_owned());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, json_string(&crate::error::chain(value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == SPLICE_FIELD && text.starts_with('{') {
            self.put(field, text);
        } else {
            self.put(field, json_string(&text));
        }
    }
}

/// The keys already on the line. Lines have a couple of dozen keys, so a
/// list does; a 64-bit summary of the names skips most comparisons.
#[derive(Default)]
struct Written {
    names: Vec<&'static str>,
    summary: u128,
}

impl Written {
    #[inline]
    fn bit(name: &str) -> u128 {
        let b = name.as_bytes();
        let first = b.first().copied().unwrap_or(0) as usize;
        let last = b.last().copied().unwrap_or(0) as usize;
        let middle = b.get(b.len() / 2).copied().unwrap_or(0) as usize;
        1 << ((b.len() + first * 3 + last * 7 + middle * 13) & 127)
    }

    fn clear(&mut self) {
        self.names.clear();
        self.summary = 0;
    }

    /// Records `name`; false when it was there already.
    fn insert(&mut self, name: &'static str) -> bool {
        self.insert_with_bit(name, Self::bit(name))
    }

    /// `insert` with the name's bit computed beforehand.
    #[inline]
    fn insert_with_bit(&mut self, name: &'static str, bit: u128) -> bool {
        if self.summary & bit != 0 && self.names.contains(&name) {
            return false;
        }
        self.summary |= bit;
        self.names.push(name);
        true
    }

    fn contains(&self, name: &str) -> bool {
        self.summary & Self::bit(name) != 0 && self.names.contains(&name)
    }
}

/// One field of a callsite, prepared once: `,"name":` ready to copy (`None`
/// for `message` and the OpenTelemetry instructions, never written), and the
/// name's bit in [`Written`].
struct Key {
    name: &'static str,
    rendered: Option<Box<str>>,
    bit: u128,
}

/// The prepared keys of a callsite's fields, by field index.
struct CallsiteKeys {
    /// The callsite's metadata, by address: metadata is `'static`, one per
    /// callsite.
    meta: usize,
    keys: Box<[Key]>,
}

impl CallsiteKeys {
    fn new(meta: &'static tracing::Metadata<'static>) -> Self {
        let keys = meta
            .fields()
            .iter()
            .map(|field| {
                let name = field.name();
                let rendered = (name != "message" && !is_otel_control(name)).then(|| {
                    let mut key = String::with_capacity(name.len() + 4);
                    push_key(&mut key, name);
                    key.into_boxed_str()
                });
                Key {
                    name,
                    rendered,
                    bit: Written::bit(name),
                }
            })
            .collect();
        Self {
            meta: meta as *const _ as usize,
            keys,
        }
    }
}

/// The callsites a thread prepared keys for; emptied when full, since a
/// program logs from a bounded, usually small, set of places.
#[derive(Default)]
struct KeyCache(Vec<CallsiteKeys>);

impl KeyCache {
    const MAX: usize = 64;

    fn get(&mut self, meta: &'static tracing::Metadata<'static>) -> &[Key] {
        let address = meta as *const _ as usize;
        let at = match self.0.iter().position(|c| c.meta == address) {
            Some(at) => at,
            None => {
                if self.0.len() >= Self::MAX {
                    self.0.clear();
                }
                self.0.push(CallsiteKeys::new(meta));
                self.0.len() - 1
            }
        };
        &self.0[at].keys
    }
}

/// Writes an event's fields straight into the line, skipping `message` (written
/// first by [`MessageVisitor`]) and keys already written.
struct LineVisitor<'a> {
    out: &'a mut String,
    scratch: &'a mut String,
    written: &'a mut Written,
    /// The event's callsite's keys, by field index.
    keys: &'a [Key],
}

impl LineVisitor<'_> {
    fn key(&mut self, field: &Field) -> bool {
        // The same `&'static str` as the one prepared: the event's own callsite.
        let prepared = self
            .keys
            .get(field.index())
            .filter(|k| std::ptr::eq(k.name, field.name()));
        match prepared {
            Some(Key {
                name,
                rendered: Some(rendered),
                bit,
            }) => {
                if !self.written.insert_with_bit(name, *bit) {
                    return false;
                }
                self.out.push_str(rendered);
                true
            }
            // `message` and the OpenTelemetry instructions.
            Some(_) => false,
            // A field of another callsite than the event's: not expected, but
            // written correctly all the same.
            None => {
                let name = field.name();
                if name == "message" || is_otel_control(name) || !self.written.insert(name) {
                    return false;
                }
                push_key(self.out, name);
                true
            }
        }
    }

    fn raw(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.key(field) {
            let _ = self.out.write_fmt(value);
        }
    }
}

impl Visit for LineVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == SPLICE_FIELD {
            splice(self.out, self.written, value);
        } else if self.key(field) {
            push_str(self.out, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.key(field) {
            crate::json::push_i64(self.out, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.key(field) {
            crate::json::push_u64(self.out, value);
        }
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.key(field) {
            crate::json::push_f64(self.out, value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.key(field) {
            self.out.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.key(field) {
            push_str(self.out, &crate::error::chain(value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field) {
            self.scratch.clear();
            let _ = write!(self.scratch, "{value:?}");
            push_str(self.out, self.scratch);
        }
    }
}

/// Writes only the `message` field.
struct MessageVisitor<'a> {
    out: &'a mut String,
    scratch: &'a mut String,
    found: bool,
}

impl Visit for MessageVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" && !self.found {
            self.found = true;
            push_str(self.out, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" && !self.found {
            self.found = true;
            self.scratch.clear();
            let _ = write!(self.scratch, "{value:?}");
            push_str(self.out, self.scratch);
        }
    }
}

/// A thread's buffers for formatting lines, reused from one event to the next.
#[derive(Default)]
struct Buffers {
    line: String,
    scratch: String,
    written: Written,
    keys: KeyCache,
}

thread_local! {
    static BUF: RefCell<Buffers> = RefCell::new(Buffers::default());
}

fn level_str(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// Appends `,"name":`.
#[inline]
fn push_key(out: &mut String, name: &str) {
    out.reserve(name.len() + 4);
    out.push(',');
    push_str(out, name);
    out.push(':');
}

/// Appends `"key":value` unless `key` was written already.
fn push_field(out: &mut String, written: &mut Written, key: &'static str, value: &str) {
    if key == SPLICE_FIELD {
        // `{"a":1,"b":2}`: splice the members, skipping keys already written.
        splice(out, written, value);
        return;
    }
    if !written.insert(key) {
        return;
    }
    push_key(out, key);
    out.push_str(value);
}

fn splice(out: &mut String, written: &Written, object: &str) {
    // Handler fields are rare and small; parsing them keeps the line valid JSON
    // whatever the caller passed.
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(object)
    else {
        return;
    };
    for (k, v) in map {
        if written.contains(&k) {
            continue;
        }
        out.push(',');
        push_str(out, &k);
        out.push(':');
        out.push_str(&v.to_string());
    }
}

impl<S, W> tracing_subscriber::Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut ValueVisitor { out: &mut fields.0 });
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let mut rendered = Vec::new();
        values.record(&mut ValueVisitor { out: &mut rendered });
        match ext.get_mut::<SpanFields>() {
            Some(fields) => {
                for (k, v) in rendered {
                    fields.set(k, v);
                }
            }
            None => ext.insert(SpanFields(rendered)),
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        BUF.with(|buf| {
            let Ok(mut guard) = buf.try_borrow_mut() else {
                // An event emitted while formatting another one on this thread
                // (from a Debug impl, say) is dropped rather than deadlocking.
                return;
            };
            let Buffers {
                line: out,
                scratch,
                written,
                keys,
            } = &mut *guard;
            out.clear();
            written.clear();
            let meta = event.metadata();
            out.push_str("{\"timestamp\":\"");
            crate::time::push_rfc3339(out, SystemTime::now(), 6);
            out.push_str("\",\"level\":\"");
            out.push_str(level_str(meta.level()));
            out.push_str("\",\"message\":");
            let mut message = MessageVisitor {
                out,
                scratch,
                found: false,
            };
            event.record(&mut message);
            if !message.found {
                out.push_str("\"\"");
            }
            out.push_str(",\"target\":");
            push_str(out, meta.target());
            for key in ["timestamp", "level", "message", "target"] {
                written.insert(key);
            }
            event.record(&mut LineVisitor {
                out,
                scratch,
                written,
                keys: keys.get(meta),
            });
            if let Some(scope) = ctx.event_scope(event) {
                for span in scope {
                    let ext = span.extensions();
                    if let Some(span_fields) = ext.get::<SpanFields>() {
                        for (k, v) in &span_fields.0 {
                            push_field(out, written, k, v);
                        }
                    }
                }
            }
            out.push_str("}\n");
            let mut writer = self.make_writer.make_writer_for(meta);
            let _ = writer.write_all(out.as_bytes());
            if out.capacity() > 64 * 1024 {
                *out = String::new();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let cap = Capture::default();
        let sub = tracing_subscriber::registry().with(JsonLayer::new(cap.clone()));
        tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| {
                assert_no_duplicate_keys(l);
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))
            })
            .collect()
    }

    /// The top-level keys of a JSON object, duplicates included.
    struct Keys(Vec<String>);

    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }

    pub(crate) fn assert_no_duplicate_keys(line: &str) {
        let Keys(keys) = serde_json::from_str(line).unwrap();
        let unique: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "duplicate keys in {line}");
    }

    #[test]
    fn span_fields_at_root_without_duplicates() {
        let got = lines(|| {
            let outer = tracing::info_span!("request", request_id = "r-1", route = "/a");
            let _o = outer.enter();
            let inner =
                tracing::info_span!("inner", route = "/inner", trace_id = tracing::field::Empty);
            inner.record("trace_id", "abc");
            let _i = inner.enter();
            tracing::warn!(
                n = 3,
                ratio = 0.5,
                ok = true,
                route = "/event",
                "hello \"world\"\n"
            );
        });
        let v = &got[0];
        assert_eq!(v["message"], "hello \"world\"\n");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["request_id"], "r-1");
        assert_eq!(v["trace_id"], "abc");
        assert_eq!(v["route"], "/event");
        assert_eq!(v["n"], 3);
        assert_eq!(v["ratio"], 0.5);
        assert_eq!(v["ok"], true);
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(v["target"].as_str().unwrap().contains("format"));
    }

    #[test]
    fn hostile_values_stay_on_one_line() {
        let got = lines(|| {
            let span = tracing::info_span!("s", otel.kind = "server", request_id = "r");
            let _e = span.enter();
            tracing::info!(
                user_agent = "evil\r\n{\"level\":\"ERROR\"}\u{0}",
                f = f64::NAN,
                "x"
            );
        });
        assert_eq!(got.len(), 1);
        assert!(got[0].get("otel.kind").is_none(), "{:?}", got[0]);
        assert_eq!(got[0]["request_id"], "r", "{:?}", got[0]);
        assert_eq!(got[0]["user_agent"], "evil\r\n{\"level\":\"ERROR\"}\u{0}");
        assert!(got[0]["f"].is_null());
    }

    /// The keys prepared per callsite give the same lines as writing each key:
    /// across more callsites than a thread keeps, with repeated and reserved
    /// names, and with fields left empty.
    #[test]
    fn prepared_keys_keep_every_rule() {
        macro_rules! site {
            ($i:expr) => {
                tracing::info!(n = $i, dup = 1, dup = 2, level = "spoof", "site")
            };
        }
        let got = lines(|| {
            let span = tracing::info_span!("s", request_id = "r", n = 99);
            let _e = span.enter();
            for round in 0..3 {
                seq_macro(round);
            }
            let maybe: Option<u8> = None;
            tracing::info!(absent = maybe, present = 1, "x");
            site!(7);
        });
        fn seq_macro(round: u32) {
            // 70 distinct callsites, more than the cache keeps.
            macro_rules! many {
                ($($i:literal)*) => { $( tracing::info!(site = $i, round, "m"); )* };
            }
            many!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27
                28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52
                53 54 55 56 57 58 59 60 61 62 63 64 65 66 67 68 69);
        }
        assert_eq!(got.len(), 3 * 70 + 2);
        for (i, line) in got[..210].iter().enumerate() {
            assert_eq!(line["site"], (i % 70) as u64, "{line}");
            assert_eq!(line["round"], (i / 70) as u64, "{line}");
            assert_eq!(line["request_id"], "r");
            assert_eq!(line["n"], 99);
        }
        assert!(got[210].get("absent").is_none());
        assert_eq!(got[210]["present"], 1);
        let last = &got[211];
        assert_eq!(last["n"], 7, "the event's field wins over the span's");
        assert_eq!(last["dup"], 1, "the first of repeated names");
        assert_eq!(last["level"], "INFO", "reserved names stay the formatter's");
        assert_eq!(last["message"], "site");
    }

    #[test]
    fn splice_merges_handler_fields() {
        let got = lines(|| {
            let raw = r#"{"user_id":42,"plan":"pro","level":"spoof"}"#;
            tracing::info!({ SPLICE_FIELD } = raw, "done");
        });
        assert_eq!(got[0]["user_id"], 42);
        assert_eq!(got[0]["plan"], "pro");
        assert_eq!(got[0]["level"], "INFO");
    }
}
