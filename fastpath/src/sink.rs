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
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::avro::Reader;

/// The last tenant and family answered, as Python strings: a batch holds few of each,
/// so consecutive events share one object instead of a new one each (and Python hashes
/// it once, not once per event, when the sink groups rows by tenant).
static RECENT: Mutex<[Option<Held>; 2]> = Mutex::new([None, None]);

/// A text and the Python string made of it.
type Held = (String, Py<PyString>);

/// `text` as a Python string, the one held in `slot` of `RECENT` when it is equal.
///
/// The lock is held only while no Python code can run (making a `str` and dropping one
/// never call back into Python), so a thread never waits on it while another waits for the
/// GIL it holds (see `EventReader::moment_of`).
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
    Some(fields_of(py, &e))
}

/// `e`'s fields as Python values, in schema order.
fn fields_of<'py>(py: Python<'py>, e: &Event<'_>) -> Fields<'py> {
    let text = |s: &str| PyString::new(py, s);
    (
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
    )
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01), which binary
/// `timestamptz` counts from.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// The instants a Python `datetime` can hold (years 1 to 9999), in microseconds since the
/// Unix epoch: the Python path makes a datetime of each time, and fails past them.
const DATETIME_US: std::ops::RangeInclusive<i64> =
    -62_135_596_800_000_000..=253_402_300_799_999_999;

/// The columns of a stored row, as `sinks.bulk.copy_event_rows` sends them with
/// `with_partition`: `EVENT_COLUMNS`, then `kafka_partition`.
const ROW_FIELDS: i16 = 13;

/// Where a row's bytes go: counted first (`usize`), then written into the Python bytes
/// made of exactly that length (`Filling`), so both passes follow one field order.
trait Out {
    fn put(&mut self, bytes: &[u8]);
}

impl Out for usize {
    fn put(&mut self, bytes: &[u8]) {
        *self += bytes.len();
    }
}

/// A buffer being filled from its start.
struct Filling<'a> {
    buffer: &'a mut [u8],
    at: usize,
}

impl Out for Filling<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buffer[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

/// One field of a binary COPY tuple: its length (-1 for NULL), then its bytes; a `jsonb`
/// field's bytes open with version byte 1, then the JSON text unparsed (as
/// `sinks.bulk.JsonTextBinaryDumper` dumps it). Lengths fit `i32` (`copy_row` checks).
fn put_field(out: &mut impl Out, version: &[u8], value: Option<&[u8]>) {
    match value {
        None => out.put(&(-1i32).to_be_bytes()),
        Some(bytes) => {
            out.put(&((version.len() + bytes.len()) as i32).to_be_bytes());
            out.put(version);
            out.put(bytes);
        }
    }
}

const TEXT: &[u8] = b"";
const JSONB: &[u8] = &[1];

/// `e`'s row of `events` with `partition`, as one binary COPY tuple into `out`.
fn put_row(out: &mut impl Out, e: &Event<'_>, schema_id: Option<i32>, partition: i32) {
    out.put(&ROW_FIELDS.to_be_bytes());
    for text in [e.tenant, e.family, e.event_id, e.type_, e.source] {
        put_field(out, TEXT, Some(text.as_bytes()));
    }
    put_field(out, TEXT, e.subject.map(str::as_bytes));
    put_field(out, TEXT, Some(&(e.time - PG_EPOCH_US).to_be_bytes()));
    put_field(out, JSONB, Some(e.data_json.as_bytes()));
    put_field(
        out,
        TEXT,
        Some(&(e.received_at - PG_EPOCH_US).to_be_bytes()),
    );
    put_field(out, TEXT, Some(&e.version.to_be_bytes()));
    put_field(out, JSONB, e.attributes_json.map(str::as_bytes));
    put_field(
        out,
        TEXT,
        schema_id.map(i32::to_be_bytes).as_ref().map(|b| &b[..]),
    );
    put_field(out, TEXT, Some(&partition.to_be_bytes()));
}

/// `e`'s row of `events` as Python bytes, the binary COPY tuple psycopg's `write_row` makes
/// of the same values on a UTF-8 connection, written once into the bytes object; None for
/// a value the Python path would not send (a time no datetime holds, a schema id past
/// `int4`) or a text past `i32`'s length.
fn copy_row<'py>(
    py: Python<'py>,
    e: &Event<'_>,
    partition: i32,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let texts = [
        e.tenant,
        e.family,
        e.event_id,
        e.type_,
        e.source,
        e.data_json,
    ];
    let longest = texts
        .iter()
        .chain(&e.subject)
        .chain(&e.attributes_json)
        .map(|t| t.len());
    let (Some(schema_id), true) = (
        e.schema_id.map(i32::try_from).transpose().ok(),
        DATETIME_US.contains(&e.time)
            && DATETIME_US.contains(&e.received_at)
            && longest.max().unwrap_or(0) < i32::MAX as usize,
    ) else {
        return Ok(None);
    };
    let mut length = 0usize;
    put_row(&mut length, e, schema_id, partition);
    let row = PyBytes::new_with(py, length, |buffer| {
        put_row(&mut Filling { buffer, at: 0 }, e, schema_id, partition);
        Ok(())
    })?;
    Ok(Some(row))
}

/// A cursor over one binary COPY tuple that `copy_row` made.
struct RowReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> RowReader<'a> {
    fn field(&mut self) -> Option<Option<&'a [u8]>> {
        let head: [u8; 4] = self.bytes.get(self.at..self.at + 4)?.try_into().ok()?;
        self.at += 4;
        let length = i32::from_be_bytes(head);
        if length < 0 {
            return Some(None);
        }
        let end = self.at + usize::try_from(length).ok()?;
        let value = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(Some(value))
    }

    fn text(&mut self) -> Option<Option<&'a str>> {
        self.field()?.map(std::str::from_utf8).transpose().ok()
    }

    fn jsonb(&mut self) -> Option<Option<&'a str>> {
        match self.field()? {
            None => Some(None),
            Some([1, text @ ..]) => Some(Some(std::str::from_utf8(text).ok()?)),
            Some(_) => None,
        }
    }

    fn int8(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.field()??.try_into().ok()?))
    }

    fn int4(&mut self) -> Option<Option<i32>> {
        self.field()?
            .map(|b| b.try_into().map(i32::from_be_bytes))
            .transpose()
            .ok()
    }
}

/// The event of a row `copy_row` made, read back; None if `row` is not one.
fn read_row(row: &[u8]) -> Option<Event<'_>> {
    if row.get(..2)? != ROW_FIELDS.to_be_bytes() {
        return None;
    }
    let mut r = RowReader { bytes: row, at: 2 };
    let event = Event {
        tenant: r.text()??,
        family: r.text()??,
        event_id: r.text()??,
        type_: r.text()??,
        source: r.text()??,
        subject: r.text()?,
        time: r.int8()? + PG_EPOCH_US,
        data_json: r.jsonb()??,
        received_at: r.int8()? + PG_EPOCH_US,
        version: r.int8()?,
        attributes_json: r.jsonb()?,
        schema_id: r.int4()?.map(i64::from),
    };
    r.int4()??;
    (r.at == row.len()).then_some(event)
}

/// A version read by the compiled reader with its row of `events` already encoded for
/// binary COPY (`row`): the sink keeps only what it decides by (identity, version,
/// partition, receipt and headers) as Python objects, and the other columns in `row`,
/// read back by `fields()` on the rare paths that need them.
#[pyclass(frozen, module = "sluice_fastpath")]
pub struct EncodedEvent {
    #[pyo3(get)]
    tenant: Py<PyString>,
    #[pyo3(get)]
    family: Py<PyString>,
    #[pyo3(get)]
    event_id: Py<PyString>,
    #[pyo3(get)]
    version: i64,
    #[pyo3(get)]
    partition: i32,
    #[pyo3(get)]
    received_at: Py<PyAny>,
    #[pyo3(get)]
    from_sink: bool,
    #[pyo3(get)]
    request_id: Option<Py<PyString>>,
    #[pyo3(get)]
    replay_of: Option<Py<PyString>>,
    #[pyo3(get)]
    row: Py<PyBytes>,
}

#[pymethods]
impl EncodedEvent {
    /// (tenant, family, event_id), as `EventRow.identity`.
    #[getter]
    fn identity<'py>(&self, py: Python<'py>) -> Bound<'py, PyTuple> {
        let parts = [&self.tenant, &self.family, &self.event_id];
        PyTuple::new(py, parts.map(|s| s.clone_ref(py))).expect("three strings make a tuple")
    }

    /// The record's fields in schema order, times as int microseconds, as
    /// `canonical_event` answers them.
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Fields<'py>> {
        let row = self.row.bind(py).as_bytes();
        let e = read_row(row)
            .ok_or_else(|| pyo3::exceptions::PyValueError::new_err("not a row of events"))?;
        Ok(fields_of(py, &e))
    }
}

/// Reads versions into `EncodedEvent`s: the header names it looks for and the function
/// that makes a receipt time's datetime, given once (`sinks.records`), and the last datetime
/// made: the versions of one envelope share their receipt time, so a batch makes one per
/// envelope.
#[pyclass(frozen, module = "sluice_fastpath")]
pub struct EventReader {
    request_header: String,
    replay_header: String,
    origin_header: String,
    own_origin: Vec<u8>,
    moment: Py<PyAny>,
    last_moment: Mutex<Option<(i64, Py<PyAny>)>>,
}

/// A version's headers as `sinks.records.version_headers` reads them.
struct Headers {
    from_sink: bool,
    request_id: Option<Py<PyString>>,
    replay_of: Option<Py<PyString>>,
}

impl EventReader {
    /// A header's value, bytes read as UTF-8 (Some(None) for no value); None for text or
    /// bytes that are not UTF-8, which `version_headers` reads otherwise.
    fn plain_value<'b>(value: &'b Bound<'_, PyAny>) -> Option<Option<&'b str>> {
        if value.is_none() {
            return Some(None);
        }
        let bytes = value.cast::<PyBytes>().ok()?.as_bytes();
        Some(Some(std::str::from_utf8(bytes).ok()?))
    }

    /// `received_at` as the datetime `moment` makes of it, the last one made when equal.
    ///
    /// `moment` is called with the lock released: Python may switch threads inside it, and
    /// a second thread reading then would wait on the lock holding the GIL, which the
    /// first needs back (two sink lanes deadlocked so).
    fn moment_of(&self, py: Python<'_>, received_at: i64) -> PyResult<Py<PyAny>> {
        if let Ok(held) = self.last_moment.lock() {
            if let Some((at, value)) = held.as_ref() {
                if *at == received_at {
                    return Ok(value.clone_ref(py));
                }
            }
        }
        let value = self.moment.bind(py).call1((received_at,))?.unbind();
        let replaced = match self.last_moment.lock() {
            Ok(mut held) => held.replace((received_at, value.clone_ref(py))),
            Err(_) => None,
        };
        drop(replaced); // released after the lock: a drop may run Python code too
        Ok(value)
    }

    /// The headers (a list of (name, value) pairs, or None), each name's last value
    /// winning; None for what the Python path reads otherwise: a value that is text rather
    /// than bytes, or bytes that are not UTF-8 (it replaces them), or another container.
    fn headers(&self, py: Python<'_>, raw: &Bound<'_, PyAny>) -> Option<Headers> {
        let mut found = Headers {
            from_sink: false,
            request_id: None,
            replay_of: None,
        };
        if raw.is_none() {
            return Some(found);
        }
        let list = raw.cast::<PyList>().ok()?;
        for pair in list.iter() {
            let (name, value): (Bound<'_, PyString>, Bound<'_, PyAny>) = pair.extract().ok()?;
            let name = name.to_str().ok()?;
            let slot = if name == self.request_header {
                &mut found.request_id
            } else if name == self.replay_header {
                &mut found.replay_of
            } else if name == self.origin_header {
                let text = Self::plain_value(&value)?;
                found.from_sink = text.is_some_and(|t| t.as_bytes() == self.own_origin.as_slice());
                continue;
            } else {
                continue;
            };
            *slot = Self::plain_value(&value)?.map(|t| PyString::new(py, t).unbind());
        }
        Some(found)
    }
}

#[pymethods]
impl EventReader {
    #[new]
    fn new(
        request_header: String,
        replay_header: String,
        origin_header: String,
        own_origin: Vec<u8>,
        moment: Py<PyAny>,
    ) -> Self {
        EventReader {
            request_header,
            replay_header,
            origin_header,
            own_origin,
            moment,
            last_moment: Mutex::new(None),
        }
    }

    /// The version a `CanonicalEvent` message of `partition` holds, its row encoded for
    /// COPY; None for anything `canonical_event` declines, a value `copy_row` would not
    /// send, or headers `headers` does not read.
    fn read(
        &self,
        py: Python<'_>,
        payload: &[u8],
        head: &[u8],
        partition: i32,
        headers: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<EncodedEvent>>> {
        let Some(body) = payload.strip_prefix(head) else {
            return Ok(None);
        };
        let Some(e) = read_event(&mut Reader::new(body, 0)) else {
            return Ok(None);
        };
        let Some(found) = self.headers(py, headers) else {
            return Ok(None);
        };
        let Some(row) = copy_row(py, &e, partition)? else {
            return Ok(None);
        };
        let event = Bound::new(
            py,
            EncodedEvent {
                tenant: shared(py, 0, e.tenant).unbind(),
                family: shared(py, 1, e.family).unbind(),
                event_id: PyString::new(py, e.event_id).unbind(),
                version: e.version,
                partition,
                received_at: self.moment_of(py, e.received_at)?,
                from_sink: found.from_sink,
                request_id: found.request_id,
                replay_of: found.replay_of,
                row: row.unbind(),
            },
        )?;
        // Out of the cycle collector's sight, as a tuple of strings is: its fields are
        // strings, bytes and a datetime, which can reference nothing back. Tracked, the
        // versions in flight (tens of thousands) were most of what each full collection
        // walked, pausing the sink 40-200 ms at a time (`make bench`, 2026-12-07).
        // SAFETY: `event` is a live object of a GC type, just created and fully built;
        // untracking it only keeps the collector from visiting it (its dealloc still
        // untracks, which is harmless on an untracked object).
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(event.as_ptr().cast()) };
        Ok(Some(event.unbind()))
    }
}

/// Adds the sink's functions to the module (one line in `lib.rs`).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(canonical_event, m)?)?;
    m.add_class::<EventReader>()?;
    m.add_class::<EncodedEvent>()
}
