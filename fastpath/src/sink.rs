//! The sink's per-message work for a `CanonicalEvent`, compiled.
//!
//! `canonical_event` reads one message of the `events` topic written with the
//! current `CanonicalEvent` schema and answers the fields that
//! `schemas.codec.decode_underlying` would answer (its times as int
//! microseconds), as one tuple in the schema's field order. fastavro spends
//! ~5 µs of the sink's ~8 µs per event there; this reads it in well under one.
//!
//! Partial, as the door's path is: it answers only what it reads exactly as
//! fastavro reads it, and returns `None` for everything else (another schema id,
//! a varint longer than a 64-bit value takes, a negative length, a union branch
//! the schema lacks, text that is not UTF-8, bytes left over after the record,
//! a record cut short), and the caller runs the Python path, which decodes what
//! it can and raises for the rest. The property tests in
//! `tests/sinks/test_fastpath_sink.py` check "answered here" implies "the same
//! values as fastavro".

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyString;

/// The last tenant and family answered, as Python strings: a batch holds few of each,
/// so consecutive events share one object instead of a new one each (and Python hashes
/// it once, not once per event, when the sink groups rows by tenant).
static RECENT: Mutex<[Option<Held>; 2]> = Mutex::new([None, None]);

/// A text and the Python string made of it.
type Held = (String, Py<PyString>);

/// `text` as a Python string, the one held in `slot` of `RECENT` when it is equal.
fn shared<'py>(py: Python<'py>, slot: usize, text: &str) -> Bound<'py, PyString> {
    let Ok(mut recent) = RECENT.lock() else {
        return PyString::new(py, text);
    };
    if let Some((held, string)) = &recent[slot] {
        if held == text {
            return string.bind(py).clone();
        }
    }
    let string = PyString::new(py, text);
    recent[slot] = Some((text.to_owned(), string.clone().unbind()));
    string
}

/// The schema's fields in order, as read: the twelve of `canonical_event.avsc`.
struct Event<'a> {
    tenant: &'a str,
    family: &'a str,
    event_id: &'a str,
    type_: &'a str,
    source: &'a str,
    subject: Option<&'a str>,
    time: i64,
    data_json: &'a str,
    received_at: i64,
    version: i64,
    attributes_json: Option<&'a str>,
    schema_id: Option<i64>,
}

/// A cursor over an Avro body; every read is `None` past what it can read exactly.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A zigzag varint of at most 64 bits (Avro's `long`; `int` is read the same way).
    fn long(&mut self) -> Option<i64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return None; // past 64 bits: fastavro would read a larger int
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Some((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        None
    }

    fn text(&mut self) -> Option<&'a str> {
        let length = usize::try_from(self.long()?).ok()?;
        let end = self.at.checked_add(length)?;
        let raw = self.bytes.get(self.at..end)?;
        self.at = end;
        std::str::from_utf8(raw).ok()
    }

    /// A `["null", T]` union: its branch index, then the value for branch 1.
    fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.long()? {
            0 => Some(None),
            1 => Some(Some(read(self)?)),
            _ => None,
        }
    }

    fn event(&mut self) -> Option<Event<'a>> {
        let event = Event {
            tenant: self.text()?,
            family: self.text()?,
            event_id: self.text()?,
            type_: self.text()?,
            source: self.text()?,
            subject: self.optional(Self::text)?,
            time: self.long()?,
            data_json: self.text()?,
            received_at: self.long()?,
            version: self.long()?,
            attributes_json: self.optional(Self::text)?,
            schema_id: self.optional(Self::long)?,
        };
        (self.at == self.bytes.len()).then_some(event)
    }
}

type Fields<'py> = (
    Bound<'py, PyString>,
    Bound<'py, PyString>,
    Bound<'py, PyString>,
    Bound<'py, PyString>,
    Bound<'py, PyString>,
    Option<Bound<'py, PyString>>,
    i64,
    Bound<'py, PyString>,
    i64,
    i64,
    Option<Bound<'py, PyString>>,
    Option<i64>,
);

/// The fields of a `CanonicalEvent` message whose wire header is `head`, in schema order
/// (times as microseconds since the epoch); None for anything not read exactly.
#[pyfunction]
fn canonical_event<'py>(py: Python<'py>, payload: &[u8], head: &[u8]) -> Option<Fields<'py>> {
    let body = payload.strip_prefix(head)?;
    let e = Reader { bytes: body, at: 0 }.event()?;
    let text = |s: &str| PyString::new(py, s);
    Some((
        shared(py, 0, e.tenant),
        shared(py, 1, e.family),
        text(e.event_id),
        text(e.type_),
        text(e.source),
        e.subject.map(text),
        e.time,
        text(e.data_json),
        e.received_at,
        e.version,
        e.attributes_json.map(text),
        e.schema_id,
    ))
}

/// Adds the sink's functions to the module (one line in `lib.rs`).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(canonical_event, m)?)
}
