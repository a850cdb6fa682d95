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
use tracing::{Event, Level, Span, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::LogFields;
use crate::json::{write_f64, write_int, write_str};

/// The target of the request log's events.
pub(crate) const REQUEST_TARGET: &str = "tower_ops::request";

/// The field of the request line that stands for its [`LogFields`]: this
/// formatter writes the typed fields found in the request span's extensions
/// instead, other formatters show the field's readable text.
pub(crate) const HANDLER_FIELDS: &str = "fields";

/// Appended to a value cut at the limit, inside its quotes.
pub(crate) const TRUNCATED_MARKER: &str = "…[truncated]";

/// The default of [`JsonLayer::max_field_bytes`].
const DEFAULT_MAX_FIELD_BYTES: usize = 1024;

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
///
/// # Bounded values
///
/// Every string the line carries (message, fields of the event and of its spans,
/// `Debug` and error values, the request line's [`LogFields`], the keys of those)
/// is cut so that its JSON-escaped text, quotes aside, is at most
/// [`max_field_bytes`](Self::max_field_bytes) bytes: for text with nothing to
/// escape, its first `max_field_bytes` bytes, on a character boundary; a control
/// character counts for the six bytes of its `\u00XX` escape. A cut value ends
/// with `…[truncated]` and the line gets `"truncated":true` at its root (a key
/// this formatter keeps for itself, like `timestamp`, `level`, `message` and
/// `target`). With the default of 1024 bytes, a request line stays under 4 KB
/// whatever the client sends.
#[derive(Debug)]
pub struct JsonLayer<W> {
    make_writer: W,
    max_field_bytes: usize,
}

impl<W> JsonLayer<W> {
    /// Writes to whatever `make_writer` makes (stdout, a non-blocking writer, ...).
    pub fn new(make_writer: W) -> Self {
        Self {
            make_writer,
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
        }
    }

    /// Cuts string values at this many bytes of escaped text (default 1024; see
    /// [bounded values](Self#bounded-values)).
    pub fn max_field_bytes(self, bytes: usize) -> Self {
        Self {
            max_field_bytes: bytes,
            ..self
        }
    }
}

/// Puts the request's [`LogFields`] in the extensions of its span, where
/// [`JsonLayer`] finds them for the request line. Does nothing when the span's
/// subscriber is not built on tracing-subscriber's `Registry`.
pub(crate) fn attach(span: &Span, fields: &LogFields) {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(span) = registry.span(id)
        {
            span.extensions_mut().replace(fields.clone());
        }
    });
}

/// The bytes `b` takes once escaped by serde_json.
#[inline]
const fn escaped_len(b: u8) -> usize {
    match b {
        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
        0..=0x1f => 6,
        _ => 1,
    }
}

/// Where `s` must be cut for its escaped text to fit in `max` bytes, on a
/// character boundary; `None` when it fits whole.
#[inline]
fn cut_at(s: &str, max: usize) -> Option<usize> {
    // Short enough even if every byte were a control character.
    if s.len().saturating_mul(6) <= max {
        return None;
    }
    let mut used = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        used += escaped_len(b);
        if used > max {
            let mut at = i;
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            return Some(at);
        }
    }
    None
}

/// Where values are written: the buffer, the cut and whether something was cut.
struct Values<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut String,
    max: usize,
    truncated: &'a mut bool,
}

impl Values<'_> {
    #[inline]
    fn str(&mut self, s: &str) {
        self.str_cut(s, false);
    }

    /// `s` as a JSON string, cut; `more` when `s` is already a prefix of the value.
    fn str_cut(&mut self, s: &str, more: bool) {
        let at = match cut_at(s, self.max) {
            None if !more => return write_str(self.out, s),
            at => at.unwrap_or(s.len()),
        };
        write_str(self.out, &s[..at]);
        self.out.pop();
        self.out.extend_from_slice(TRUNCATED_MARKER.as_bytes());
        self.out.push(b'"');
        *self.truncated = true;
    }

    /// A `Debug` value, rendered no further than the cut.
    fn debug(&mut self, value: &dyn fmt::Debug) {
        let mut capped = Capped {
            text: std::mem::take(self.scratch),
            room: self.max,
            more: false,
        };
        capped.text.clear();
        let _ = write!(capped, "{value:?}");
        self.str_cut(&capped.text, capped.more);
        *self.scratch = capped.text;
    }

    fn bool(&mut self, value: bool) {
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// A handler's value, typed: numbers stay numbers, strings are cut.
    fn json(&mut self, value: &serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::Null => self.out.extend_from_slice(b"null"),
            Value::Bool(b) => self.bool(*b),
            Value::Number(n) => {
                let _ = serde_json::to_writer(&mut *self.out, n);
            }
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.json(item);
                }
                self.out.push(b']');
            }
            Value::Object(map) => {
                self.out.push(b'{');
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.str(k);
                    self.out.push(b':');
                    self.json(v);
                }
                self.out.push(b'}');
            }
        }
    }
}

/// Keeps the first `room` bytes written to it (on a character boundary) and
/// stops the formatting there.
struct Capped {
    text: String,
    room: usize,
    more: bool,
}

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() <= self.room {
            self.text.push_str(s);
            self.room -= s.len();
            return Ok(());
        }
        let mut at = self.room;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        self.text.push_str(&s[..at]);
        self.room = 0;
        self.more = true;
        Err(fmt::Error)
    }
}

/// The rendered fields of a span, kept in its extensions.
#[derive(Default)]
struct SpanFields(Vec<SpanField>);

struct SpanField {
    name: &'static str,
    json: Vec<u8>,
    /// Whether the value was cut.
    cut: bool,
}

impl SpanFields {
    fn set(&mut self, field: SpanField) {
        match self.0.iter_mut().find(|f| f.name == field.name) {
            Some(slot) => *slot = field,
            None => self.0.push(field),
        }
    }
}

/// `otel.kind`, `otel.name`, `otel.status_code`: instructions to the
/// OpenTelemetry layer, not data for the log line.
fn is_otel_control(name: &str) -> bool {
    name.starts_with("otel.")
}

/// Renders each field value of a span as JSON.
struct ValueVisitor<'a> {
    out: &'a mut SpanFields,
    max: usize,
}

impl ValueVisitor<'_> {
    fn put(&mut self, field: &Field, write: impl FnOnce(&mut Values<'_>)) {
        let name = field.name();
        if is_otel_control(name) {
            return;
        }
        let mut json = Vec::new();
        let mut cut = false;
        write(&mut Values {
            out: &mut json,
            scratch: &mut String::new(),
            max: self.max,
            truncated: &mut cut,
        });
        self.out.set(SpanField { name, json, cut });
    }
}

impl Visit for ValueVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |v| v.str(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |v| write_int(v.out, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |v| write_int(v.out, value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put(field, |v| write_int(v.out, value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.put(field, |v| write_int(v.out, value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, |v| write_f64(v.out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |v| v.bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, |v| v.str(&crate::error_chain::joined(value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |v| v.debug(value));
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
    rendered: Option<Box<[u8]>>,
    bit: u128,
    /// A handler field of a request line with handler fields (see
    /// `log::fields`), written from the span's typed copy instead.
    handler: bool,
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
        let handler_from = if meta.name() == super::fields::EVENT_NAME {
            super::fields::LINE_FIELDS.len()
        } else {
            usize::MAX
        };
        let keys = meta
            .fields()
            .iter()
            .map(|field| {
                let name = field.name();
                let rendered = (name != "message" && !is_otel_control(name)).then(|| {
                    let mut key = Vec::with_capacity(name.len() + 4);
                    push_key(&mut key, name);
                    key.into_boxed_slice()
                });
                Key {
                    name,
                    rendered,
                    bit: Written::bit(name),
                    handler: field.index() >= handler_from,
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
/// first by [`MessageVisitor`]), keys already written and, on the request line
/// whose typed handler fields are at hand, [`HANDLER_FIELDS`].
struct LineVisitor<'a, 'v> {
    values: &'a mut Values<'v>,
    written: &'a mut Written,
    /// The event's callsite's keys, by field index.
    keys: &'a [Key],
    skip_handler_fields: bool,
}

impl LineVisitor<'_, '_> {
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
                handler,
            }) => {
                if (self.skip_handler_fields && (*handler || *name == HANDLER_FIELDS))
                    || !self.written.insert_with_bit(name, *bit)
                {
                    return false;
                }
                self.values.out.extend_from_slice(rendered);
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
                push_key(self.values.out, name);
                true
            }
        }
    }
}

impl Visit for LineVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.key(field) {
            self.values.str(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.key(field) {
            write_int(self.values.out, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.key(field) {
            write_int(self.values.out, value);
        }
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        if self.key(field) {
            write_int(self.values.out, value);
        }
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        if self.key(field) {
            write_int(self.values.out, value);
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.key(field) {
            write_f64(self.values.out, value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.key(field) {
            self.values.bool(value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.key(field) {
            self.values.str(&crate::error_chain::joined(value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field) {
            self.values.debug(value);
        }
    }
}

/// Writes only the `message` field.
struct MessageVisitor<'a, 'v> {
    values: &'a mut Values<'v>,
    found: bool,
}

impl Visit for MessageVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" && !self.found {
            self.found = true;
            self.values.str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" && !self.found {
            self.found = true;
            self.values.debug(value);
        }
    }
}

/// A thread's buffers for formatting lines, reused from one event to the next.
#[derive(Default)]
struct Buffers {
    line: Vec<u8>,
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
fn push_key(out: &mut Vec<u8>, name: &str) {
    out.reserve(name.len() + 4);
    out.push(b',');
    write_str(out, name);
    out.push(b':');
}

/// Appends a span's field unless its key was written already.
fn push_span_field(values: &mut Values<'_>, written: &mut Written, field: &SpanField) {
    if !written.insert(field.name) {
        return;
    }
    push_key(values.out, field.name);
    values.out.extend_from_slice(&field.json);
    if field.cut {
        *values.truncated = true;
    }
}

/// Appends the request's handler fields, typed, except those whose key the
/// line has or the request event defines (`status`, `slow`, ..., present or not).
fn push_handler_fields(
    values: &mut Values<'_>,
    written: &Written,
    meta: &tracing::Metadata<'_>,
    fields: &[(String, serde_json::Value)],
) {
    // The event's own fields win; on a request line with handler fields, those
    // that stand for the handler's are written from here.
    let handler_from = if meta.name() == super::fields::EVENT_NAME {
        super::fields::LINE_FIELDS.len()
    } else {
        usize::MAX
    };
    let own = |key: &str| {
        meta.fields()
            .field(key)
            .is_some_and(|f| f.index() < handler_from)
    };
    for (key, value) in fields {
        if written.contains(key) || own(key) || is_otel_control(key) {
            continue;
        }
        values.out.push(b',');
        values.str(key);
        values.out.push(b':');
        values.json(value);
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
        attrs.record(&mut ValueVisitor {
            out: &mut fields,
            max: self.max_field_bytes,
        });
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut rendered = SpanFields::default();
        values.record(&mut ValueVisitor {
            out: &mut rendered,
            max: self.max_field_bytes,
        });
        let mut ext = span.extensions_mut();
        match ext.get_mut::<SpanFields>() {
            Some(fields) => {
                for field in rendered.0 {
                    fields.set(field);
                }
            }
            None => ext.insert(rendered),
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
            // The request line's span, when it holds the typed handler fields.
            let handler_span = (meta.target() == REQUEST_TARGET
                && (meta.name() == super::fields::EVENT_NAME
                    || meta.fields().field(HANDLER_FIELDS).is_some()))
            .then(|| ctx.event_span(event))
            .flatten()
            .filter(|span| span.extensions().get::<LogFields>().is_some());
            scratch.clear();
            crate::time::push_rfc3339(scratch, SystemTime::now(), 6);
            out.extend_from_slice(b"{\"timestamp\":\"");
            out.extend_from_slice(scratch.as_bytes());
            out.extend_from_slice(b"\",\"level\":\"");
            out.extend_from_slice(level_str(meta.level()).as_bytes());
            out.extend_from_slice(b"\",\"message\":");
            let mut truncated = false;
            let mut values = Values {
                out,
                scratch,
                max: self.max_field_bytes,
                truncated: &mut truncated,
            };
            let mut message = MessageVisitor {
                values: &mut values,
                found: false,
            };
            event.record(&mut message);
            if !message.found {
                values.out.extend_from_slice(b"\"\"");
            }
            values.out.extend_from_slice(b",\"target\":");
            // The callsite's own text, not data: never cut.
            write_str(values.out, meta.target());
            for key in ["timestamp", "level", "message", "target", "truncated"] {
                written.insert(key);
            }
            event.record(&mut LineVisitor {
                values: &mut values,
                written,
                keys: keys.get(meta),
                skip_handler_fields: handler_span.is_some(),
            });
            if let Some(scope) = ctx.event_scope(event) {
                for span in scope {
                    let ext = span.extensions();
                    if let Some(span_fields) = ext.get::<SpanFields>() {
                        for field in &span_fields.0 {
                            push_span_field(&mut values, written, field);
                        }
                    }
                }
            }
            if let Some(span) = handler_span
                && let Some(fields) = span.extensions().get::<LogFields>()
            {
                fields.with(|list| push_handler_fields(&mut values, written, meta, list));
            }
            if truncated {
                out.extend_from_slice(b",\"truncated\":true");
            }
            out.extend_from_slice(b"}\n");
            let mut writer = self.make_writer.make_writer_for(meta);
            let _ = writer.write_all(out);
            if out.capacity() > 64 * 1024 {
                *out = Vec::new();
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
        raw_lines(DEFAULT_MAX_FIELD_BYTES, f)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// The lines as written, each checked for duplicate keys.
    fn raw_lines(max: usize, f: impl FnOnce()) -> Vec<String> {
        let cap = Capture::default();
        let layer = JsonLayer::new(cap.clone()).max_field_bytes(max);
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| {
                assert_no_duplicate_keys(l);
                l.to_owned()
            })
            .collect()
    }

    /// Bytes of `s` once escaped, quotes aside.
    fn escaped_size(s: &str) -> usize {
        serde_json::to_string(s).unwrap().len() - 2
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
    fn long_values_are_cut_with_one_flag() {
        let huge = "a".repeat(400 * 1024);
        let control = "\u{1}".repeat(2000);
        let got = raw_lines(DEFAULT_MAX_FIELD_BYTES, || {
            let span = tracing::info_span!("s", path = huge.as_str());
            span.in_scope(|| {
                tracing::info!(user_agent = huge.as_str(), control = control.as_str(), "x");
                tracing::info!(message = huge.as_str(), debug = ?huge);
            });
            tracing::info!(short = "ok", "fine");
        });
        let v: Vec<serde_json::Value> = got
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for (line, value) in got.iter().zip(&v).take(2) {
            assert!(line.len() < 4096, "{} bytes", line.len());
            assert_eq!(value["truncated"], true);
            assert_eq!(line.matches("\"truncated\"").count(), 1);
        }
        let ua = v[0]["user_agent"].as_str().unwrap();
        assert_eq!(ua, format!("{}{TRUNCATED_MARKER}", &huge[..1024]));
        let path = v[0]["path"].as_str().unwrap();
        assert!(path.ends_with(TRUNCATED_MARKER), "span fields are cut too");
        // Six bytes per escaped control character: 170 of them fit in 1024.
        let control_cut = v[0]["control"].as_str().unwrap();
        assert_eq!(
            control_cut,
            format!("{}{TRUNCATED_MARKER}", &control[..170])
        );
        assert!(
            v[1]["message"]
                .as_str()
                .unwrap()
                .ends_with(TRUNCATED_MARKER)
        );
        let debug = v[1]["debug"].as_str().unwrap();
        // The opening quote of `Debug` escapes to two bytes.
        assert_eq!(debug, format!("\"{}{TRUNCATED_MARKER}", &huge[..1022]));
        assert!(v[2].get("truncated").is_none());
    }

    #[test]
    fn multibyte_values_are_cut_on_a_boundary() {
        let got = lines(|| tracing::info!(v = "é".repeat(600).as_str(), w = "😀é", "x"));
        // 1024 bytes is 512 two-byte characters exactly.
        assert_eq!(
            got[0]["v"],
            format!("{}{TRUNCATED_MARKER}", "é".repeat(512))
        );
        assert_eq!(got[0]["w"], "😀é");
        let got = raw_lines(5, || tracing::info!(v = "😀é", "x"));
        let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
        assert_eq!(v["v"], format!("😀{TRUNCATED_MARKER}"));
    }

    #[test]
    fn reserved_truncated_key_is_the_formatter_s() {
        let got = lines(|| {
            tracing::info!(truncated = "spoof", "x");
            tracing::info!(truncated = false, long = "y".repeat(2000).as_str(), "x");
        });
        assert!(got[0].get("truncated").is_none(), "{}", got[0]);
        assert_eq!(got[1]["truncated"], true);
    }

    /// The request line of `layer.rs`, by hand: its span holds the handler's
    /// fields, its event names them.
    fn request_line(fields: &LogFields) -> Vec<serde_json::Value> {
        lines(|| {
            let span =
                tracing::info_span!(target: "tower_ops::request", "request", request_id = "r-1");
            attach(&span, fields);
            span.in_scope(|| tracing::info!(step = 1, "inside the handler"));
            tracing::info!(
                target: "tower_ops::request",
                parent: &span,
                status = 200,
                slow = None::<bool>,
                { HANDLER_FIELDS } = tracing::field::display("readable form"),
                "request completed"
            );
        })
    }

    #[test]
    fn handler_fields_are_typed_at_the_root() {
        let fields = LogFields::default();
        fields.insert("user_id", 42);
        fields.insert("ratio", 0.5);
        fields.insert("plan", "pro");
        fields.insert("nested", serde_json::json!({"a": [1, "b", null, true]}));
        for spoof in [
            "status",
            "slow",
            "request_id",
            "level",
            "truncated",
            "otel.kind",
        ] {
            fields.insert(spoof, "spoofed");
        }
        let got = request_line(&fields);
        let (handler, line) = (&got[0], &got[1]);
        assert!(
            handler.get("user_id").is_none(),
            "only the request line: {handler}"
        );
        assert_eq!(line["user_id"], 42);
        assert_eq!(line["ratio"], 0.5);
        assert_eq!(line["plan"], "pro");
        assert_eq!(
            line["nested"],
            serde_json::json!({"a": [1, "b", null, true]})
        );
        assert_eq!(line["status"], 200);
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["level"], "INFO");
        for absent in ["slow", "truncated", "otel.kind", "fields", "log.fields"] {
            assert!(line.get(absent).is_none(), "{absent}: {line}");
        }
    }

    #[test]
    fn handler_fields_are_cut_like_any_value() {
        let fields = LogFields::default();
        fields.insert("bio", "\u{0}".repeat(2000));
        fields.insert("k".repeat(2000), 1);
        let got = request_line(&fields);
        let line = &got[1];
        assert_eq!(line["truncated"], true);
        let bio = line["bio"].as_str().unwrap();
        assert!(bio.ends_with(TRUNCATED_MARKER));
        assert!(escaped_size(bio) <= 1024 + TRUNCATED_MARKER.len());
        let key = format!("{}{TRUNCATED_MARKER}", "k".repeat(1024));
        assert_eq!(line[key.as_str()], 1);
    }

    /// A request line whose span holds no fields (not attached): the event's
    /// readable text is all there is, and it is written as such.
    #[test]
    fn request_line_without_typed_fields_keeps_the_text() {
        let got = lines(|| {
            tracing::info!(
                target: "tower_ops::request",
                status = 200,
                { HANDLER_FIELDS } = tracing::field::display("user_id=42"),
                "request completed"
            );
        });
        assert_eq!(got[0]["fields"], "user_id=42");
    }

    proptest::proptest! {
        #[test]
        fn any_string_any_limit(s in ".*", max in 0usize..80) {
            let got = raw_lines(max, || tracing::info!(v = s.as_str(), d = ?s));
            let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
            let mut cut = false;
            for (key, original) in [("v", s.clone()), ("d", format!("{s:?}"))] {
                let text = v[key].as_str().unwrap();
                if escaped_size(&original) <= max {
                    proptest::prop_assert_eq!(text, original.as_str());
                } else {
                    cut = true;
                    let kept = text.strip_suffix(TRUNCATED_MARKER).unwrap();
                    proptest::prop_assert!(original.starts_with(kept));
                    proptest::prop_assert!(escaped_size(kept) <= max);
                    // The longest prefix that fits.
                    let next = original[kept.len()..].chars().next().unwrap();
                    let longer = &original[..kept.len() + next.len_utf8()];
                    proptest::prop_assert!(escaped_size(longer) > max);
                }
            }
            proptest::prop_assert_eq!(v.get("truncated").is_some(), cut);
        }

        #[test]
        fn numbers_and_strings_read_back(
            i in proptest::num::i64::ANY,
            u in proptest::num::u64::ANY,
            f in proptest::num::f64::ANY,
            big in proptest::num::i128::ANY,
            s in proptest::prelude::any::<String>(),
        ) {
            let got = raw_lines(usize::MAX, || {
                let span = tracing::info_span!("s", sf = f, ss = s.as_str());
                let _e = span.enter();
                tracing::info!(i, u, f, big, s = s.as_str(), "x");
            });
            let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
            proptest::prop_assert_eq!(v["i"].as_i64(), Some(i));
            proptest::prop_assert_eq!(v["u"].as_u64(), Some(u));
            let text = &got[0];
            proptest::prop_assert!(text.contains(&format!("\"big\":{big}")), "{}", text);
            for key in ["f", "sf"] {
                if f.is_finite() {
                    // serde_json (without `float_roundtrip`) may read large
                    // exponents a few units off; the text itself is exact.
                    let read = v[key].as_f64().unwrap();
                    proptest::prop_assert!((read - f).abs() <= f.abs() * 1e-14, "{}", text);
                    let token = text.split(&format!("\"{key}\":")).nth(1).unwrap();
                    let token = &token[..token.find([',', '}']).unwrap()];
                    proptest::prop_assert_eq!(token.parse::<f64>().unwrap().to_bits(), f.to_bits());
                    proptest::prop_assert!(token.contains(['.', 'e']), "{}", token);
                } else {
                    proptest::prop_assert!(v[key].is_null());
                }
            }
            proptest::prop_assert_eq!(v["s"].as_str(), Some(s.as_str()));
            proptest::prop_assert_eq!(v["ss"].as_str(), Some(s.as_str()));
            proptest::prop_assert!(v.get("truncated").is_none());
        }
    }
}
