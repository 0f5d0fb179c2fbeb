//! The stream's per-envelope work for the common native envelope, compiled.
//!
//! `forward_native` takes one `IngestEnvelope` message from `ingest.raw` (Confluent
//! wire format, the header the caller names) and does what `streams.process.process_envelope` and
//! `streams.outputs.to_messages` do for it in Python: read the envelope, validate each
//! item's event, and write each one's `CanonicalEvent` with its key and version, as the
//! Kafka messages the worker sends to `events`.
//!
//! Like the door's `plan_native`, it is partial. It answers only for a native envelope
//! with no route parameters whose every item is a fresh upsert (no replay, no delete, no
//! filter) of a plainly valid event, as the door's own checks define "plainly"
//! (`crate::plain_event`, `crate::may_be_unstorable`), whose time is an unescaped
//! plain timestamp. Anything else (another family, a delete, a replay, an invalid
//! event, an older schema id, odd Avro) returns `None` and the worker runs the Python
//! path, which has every rule. A data contract in force is applied (`crate::contracts`):
//! events that pass carry its schema id; any that fails sends the envelope to the Python
//! path, which makes the dead letters. The property tests in
//! `tests/streams/test_fastpath_stream.py` and `test_fastpath_contracts.py` check that
//! every answer is byte for byte what the Python path writes.

use std::borrow::Cow;
use std::cell::RefCell;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::avro::{write_long, write_string, Reader};
use crate::contracts::CompiledContract;
use crate::{chars_within, may_be_unstorable, plain_event, NativeEvent, MAX_ID_CHARS};

/// `schemas.versions.INDEX_BITS`: a version is `offset << 20 | index`.
const INDEX_BITS: u32 = 20;
/// The largest `timestamp-micros` fastavro turns into a Python datetime (9999-12-31).
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// The envelope fields a canonical event needs, and its items' ids and raw events.
struct Envelope<'a> {
    request_id: &'a str,
    tenant: &'a str,
    family: &'a str,
    received_at: i64,
    items: Vec<(&'a str, &'a [u8])>,
}

fn read_envelope<'a>(message: &'a [u8], header: &[u8]) -> Option<Envelope<'a>> {
    if header.len() != 5 || message.get(..5)? != header {
        return None;
    }
    let mut r = Reader::new(message, 5);
    let (request_id, tenant, family) = (r.text()?, r.text()?, r.text()?);
    if r.long()? != 0 {
        return None; // route parameters: a binary-mode CloudEvent, or another shape
    }
    r.text()?; // content_type: only dead letters carry it
    let received_at = r.long()?;
    if !(0..=MAX_MICROS).contains(&received_at) {
        return None;
    }
    let mut items = Vec::new();
    loop {
        let count = r.long()?;
        if count == 0 {
            break;
        }
        for _ in 0..usize::try_from(count).ok()? {
            items.push(read_upsert(&mut r)?);
        }
    }
    (r.at_end() && items.len() <= 1 << INDEX_BITS).then_some(Envelope {
        request_id,
        tenant,
        family,
        received_at,
        items,
    })
}

/// One item when it is a fresh upsert: op upsert, no replay, no filter.
fn read_upsert<'a>(r: &mut Reader<'a>) -> Option<(&'a str, &'a [u8])> {
    if r.long()? != 0 {
        return None; // a delete
    }
    let (event_id, raw) = (r.text()?, r.bytes()?);
    i32::try_from(r.long()?).ok()?; // attempt, an Avro int
    if r.optional(Reader::text)?.is_some() {
        return None; // a replay: its version names the dead letter in a header
    }
    r.optional(Reader::text)?; // receipt_id: for deletes only
    (r.long()? == 0).then_some((event_id, raw))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn number(b: &[u8]) -> i64 {
    b.iter()
        .fold(0, |n, digit| n * 10 + i64::from(digit - b'0'))
}

/// Microseconds since the epoch, in UTC, of a timestamp `crate::plain_timestamp` accepted:
/// what msgspec reads it as, moved to UTC (`schemas.native._as_utc`) and written by
/// `schemas.writers._micros`. A fraction is padded to six digits; no offset means UTC.
fn plain_micros(text: &str) -> i64 {
    let b = text.as_bytes();
    let days = days_from_civil(number(&b[0..4]), number(&b[5..7]), number(&b[8..10]));
    let mut seconds = days * 86_400 + number(&b[11..13]) * 3_600 + number(&b[14..16]) * 60;
    seconds += number(&b[17..19]);
    let mut rest = &b[19..];
    let mut fraction = 0;
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        fraction = number(&rest[1..=digits]) * 10_i64.pow(6 - digits as u32);
        rest = &rest[1 + digits..];
    }
    if let [sign, ..] = rest {
        if *sign != b'Z' {
            let offset = number(&rest[1..3]) * 3_600 + number(&rest[4..6]) * 60;
            seconds -= if *sign == b'-' { -offset } else { offset };
        }
    }
    seconds * 1_000_000 + fraction
}

/// The data contracts of an envelope's tenant for native events, by subject (`native.<type>`):
/// a compiled one, or Python's `None` for one Rust could not build. `None`: the tenant has no
/// contract for the family.
struct InForce<'py> {
    by_subject: Option<Bound<'py, PyDict>>,
    /// The last event type looked up and its subject's entry (`None`: no contract), so an
    /// envelope of one type asks the dict once.
    last: RefCell<Option<(String, Option<Bound<'py, PyAny>>)>>,
}

impl<'py> InForce<'py> {
    fn new(by_subject: Option<Bound<'py, PyDict>>) -> Self {
        let last = RefCell::new(None);
        Self { by_subject, last }
    }

    /// The entry for the subject of `type_`; `None` when no contract covers it.
    fn entry(&self, by_subject: &Bound<'py, PyDict>, type_: &str) -> Option<Bound<'py, PyAny>> {
        let mut last = self.last.borrow_mut();
        if let Some((known, found)) = last.as_ref() {
            if known == type_ {
                return found.clone();
            }
        }
        let found = by_subject
            .get_item(format!("native.{type_}"))
            .ok()
            .flatten();
        *last = Some((type_.to_owned(), found.clone()));
        found
    }

    /// The schema id an event of `type_` with `data` carries: `Some(None)` when no contract
    /// covers its subject, `None` when Rust cannot pass it (it fails, or Rust cannot tell).
    fn schema_id(&self, type_: &str, data: &str) -> Option<Option<i32>> {
        let Some(by_subject) = &self.by_subject else {
            return Some(None);
        };
        let Some(found) = self.entry(by_subject, type_) else {
            return Some(None);
        };
        let contract = found.cast::<CompiledContract>().ok()?.get();
        contract
            .verdict(data)?
            .then_some(Some(contract.schema_id()))
    }
}

/// Append one item's `CanonicalEvent` (fields in the schema's order) to `out`, or None when
/// its event is not plainly valid, or a data contract does not pass it. `head` is the wire
/// header, tenant and family, the same for every event.
fn write_canonical_event(
    out: &mut Vec<u8>,
    head: &[u8],
    contracts: &InForce<'_>,
    (event_id, raw): (&str, &[u8]),
    received_at: i64,
    version: i64,
) -> Option<()> {
    if raw.first() != Some(&b'{') || raw.last() != Some(&b'}') || may_be_unstorable(raw) {
        return None;
    }
    let text = std::str::from_utf8(raw).ok()?;
    let event: NativeEvent<'_> = serde_json::from_str(text).ok()?;
    let Cow::Borrowed(time) = event.time else {
        return None; // an escape in the time: left to msgspec's reading
    };
    let plain_id = event
        .id
        .as_deref()
        .is_none_or(|id| chars_within(id, MAX_ID_CHARS));
    if !plain_id || !plain_event(&event, text) {
        return None;
    }
    let schema_id = contracts.schema_id(&event.type_, event.data.get())?;
    out.extend_from_slice(head);
    write_string(out, event_id);
    write_string(out, &event.type_);
    write_string(out, &event.source);
    match event.subject.as_deref() {
        None => out.push(0),
        Some(subject) => {
            out.push(2);
            write_string(out, subject);
        }
    }
    write_long(out, plain_micros(time));
    write_string(out, event.data.get());
    write_long(out, received_at);
    write_long(out, version);
    out.push(0); // no CloudEvent attributes
    match schema_id {
        None => out.push(0),
        Some(id) => {
            out.push(2);
            write_long(out, i64::from(id));
        }
    }
    Some(())
}

/// Every item's `CanonicalEvent`, one after another, and where each ends; None when any
/// item's event is not plainly valid.
fn canonical_events(
    envelope: &Envelope<'_>,
    offset: i64,
    header: &[u8],
    contracts: &InForce<'_>,
) -> Option<(Vec<u8>, Vec<usize>)> {
    let mut head = header.to_vec();
    write_string(&mut head, envelope.tenant);
    write_string(&mut head, envelope.family);
    let raw_bytes: usize = envelope
        .items
        .iter()
        .map(|(id, raw)| id.len() + raw.len())
        .sum();
    let mut values = Vec::with_capacity(raw_bytes + envelope.items.len() * (head.len() + 40));
    let mut ends = Vec::with_capacity(envelope.items.len());
    for (index, item) in envelope.items.iter().enumerate() {
        let version = offset << INDEX_BITS | index as i64;
        let at = envelope.received_at;
        write_canonical_event(&mut values, &head, contracts, *item, at, version)?;
        ends.push(values.len());
    }
    Some((values, ends))
}

/// `tenant|family|event_id`, the identity's key (`schemas.identity.Identity.key`).
fn identity_key<'py>(
    py: Python<'py>,
    prefix: &[u8],
    event_id: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, prefix.len() + event_id.len(), |buffer| {
        buffer[..prefix.len()].copy_from_slice(prefix);
        buffer[prefix.len()..].copy_from_slice(event_id.as_bytes());
        Ok(())
    })
}

/// The tenant, the family and the Kafka messages for `events` of one envelope.
type Forwarded<'py> = (
    Bound<'py, PyString>,
    Bound<'py, PyString>,
    Bound<'py, PyList>,
);

/// The messages `to_messages(process_envelope(...))` makes of a plainly valid native envelope
/// at `offset` of `partition`, or `None` when the Python path must (see the module).
///
/// `envelope_header` and `canonical_header` are the wire headers this process reads and
/// writes (`schemas.codec.wire_header`: an external registry's ids change them). Each
/// message is `(topic, partition, key, value, headers)`; the first carries
/// `[(request_header, request_id)]` when the request id is not empty, the others `None`.
/// `contracts(tenant, family)` is asked once, before any event is read: `None` when no
/// data contract covers them, else the tenant's `{subject: CompiledContract | None}`. An
/// event whose subject has one is written with its schema id when it passes; when it does
/// not, or Rust cannot tell, or the subject's contract is `None`, the envelope goes to the
/// Python path (which makes the dead letters).
#[pyfunction]
#[allow(clippy::too_many_arguments)] // one call per envelope from Python: all of it at once
pub(crate) fn forward_native<'py>(
    py: Python<'py>,
    message: &[u8],
    offset: i64,
    partition: i32,
    topic: &Bound<'py, PyString>,
    request_header: &Bound<'py, PyString>,
    envelope_header: &[u8],
    canonical_header: &[u8],
    contracts: &Bound<'py, PyAny>,
) -> PyResult<Option<Forwarded<'py>>> {
    let Some(envelope) = read_envelope(message, envelope_header) else {
        return Ok(None);
    };
    if envelope.family != "native" || !(0..1 << (62 - INDEX_BITS)).contains(&offset) {
        return Ok(None);
    }
    let found = contracts.call1((envelope.tenant, envelope.family))?;
    let in_force = if found.is_none() {
        InForce::new(None)
    } else {
        InForce::new(Some(found.cast_into::<PyDict>()?))
    };
    let Some((values, ends)) = canonical_events(&envelope, offset, canonical_header, &in_force)
    else {
        return Ok(None);
    };
    let prefix = format!("{}|{}|", envelope.tenant, envelope.family);
    let (topic, partition) = (topic.as_any(), partition.into_pyobject(py)?.into_any());
    let mut messages = Vec::with_capacity(ends.len());
    let mut start = 0;
    for (index, ((event_id, _), end)) in envelope.items.iter().zip(ends).enumerate() {
        let headers = if index == 0 && !envelope.request_id.is_empty() {
            let request_id = PyBytes::new(py, envelope.request_id.as_bytes());
            PyList::new(py, [(request_header, request_id).into_pyobject(py)?])?.into_any()
        } else {
            py.None().into_bound(py)
        };
        let parts = [
            topic.clone(),
            partition.clone(),
            identity_key(py, prefix.as_bytes(), event_id)?.into_any(),
            PyBytes::new(py, &values[start..end]).into_any(),
            headers,
        ];
        messages.push(PyTuple::new(py, parts)?);
        start = end;
    }
    let messages = PyList::new(py, messages)?;
    let tenant = PyString::new(py, envelope.tenant);
    Ok(Some((tenant, PyString::new(py, envelope.family), messages)))
}
