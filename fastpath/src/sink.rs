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

use crate::avro::Reader;

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

/// A current `CanonicalEvent`'s body, read to its last byte.
fn read_event<'a>(r: &mut Reader<'a>) -> Option<Event<'a>> {
    let event = Event {
        tenant: r.text()?,
        family: r.text()?,
        event_id: r.text()?,
        type_: r.text()?,
        source: r.text()?,
        subject: r.optional(Reader::text)?,
        time: r.long()?,
        data_json: r.text()?,
        received_at: r.long()?,
        version: r.long()?,
        attributes_json: r.optional(Reader::text)?,
        schema_id: r.optional(Reader::long)?,
    };
    r.at_end().then_some(event)
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
    let e = read_event(&mut Reader::new(body, 0))?;
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
