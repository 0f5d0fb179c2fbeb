//! The door's per-event work for the common native request, compiled.
//!
//! `plan_native` takes a request body that is a JSON array of native events and
//! does what `producer_api.ingest.plan_events` does for it in Python: split the
//! array into each event's original bytes, validate each event, find its
//! partition from its identity (Kafka's murmur2), write its `IngestEnvelope`
//! item, and join the items of each partition into one envelope.
//!
//! It is deliberately partial. It answers only when every event is plainly valid
//! and carries its own id, and nothing in the body could be unstorable; for
//! anything else (an invalid event, an event without an id, a CloudEvent (one with
//! `specversion`), a NUL escape, a long
//! number, an unusual timestamp, a duplicate key, any surrogate escape, nesting past
//! `schemas.nesting.MAX_DEPTH`, ...) it
//! returns `None` and the caller runs the Python path, which has the full rules
//! and the explanations. So "accepted here" must imply "accepted by the Python
//! validators, with the same id and the same bytes": the property tests in
//! `tests/ingest/test_fastpath.py` check exactly that.

use std::borrow::Cow;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use serde::Deserialize;
use serde_json::value::RawValue;

mod avro;
mod contracts;
mod sink;
mod stream;

const MAX_ID_CHARS: usize = 256;
const MAX_TEXT_CHARS: usize = 1024;
const MAX_NUMBER_DIGITS: usize = 3000;
/// `schemas.nesting.MAX_DEPTH`: the nesting an event may have, checked before any decoding.
const MAX_DEPTH: usize = 64;

/// One native event, borrowed from the body where no escape had to be decoded.
/// Unknown fields are ignored, as msgspec ignores them; a duplicate field is a
/// serde error, which sends the request to the Python path.
#[derive(Deserialize)]
struct NativeEvent<'a> {
    #[serde(rename = "type", borrow)]
    type_: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    subject: Option<Cow<'a, str>>,
    /// Set on a CloudEvent, which `schemas.cloudevents` validates with its own rules:
    /// any event with one sends the request to the Python path.
    #[serde(default)]
    specversion: Option<serde::de::IgnoredAny>,
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), as an unsigned 32-bit value.
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let length = data.len();
    let mut h = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

fn partition_of(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Avro's `long` for a length or count (never negative).
fn write_length(out: &mut Vec<u8>, n: usize) {
    avro::write_long(out, n as i64);
}

fn chars_within(text: &str, most: usize) -> bool {
    // Bytes bound characters from above: most texts need no count at all.
    !text.is_empty() && (text.len() <= most || text.chars().count() <= most)
}

fn two_digits(b: &[u8], at: usize) -> Option<u32> {
    let (hi, lo) = (b[at], b[at + 1]);
    if hi.is_ascii_digit() && lo.is_ascii_digit() {
        Some(u32::from(hi - b'0') * 10 + u32::from(lo - b'0'))
    } else {
        None
    }
}

fn days_in(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

/// A plain RFC 3339 timestamp: `YYYY-MM-DDTHH:MM:SS`, an optional fraction of up to
/// six digits, then `Z`, an offset `±HH:MM`, or nothing (taken as UTC). Years stay
/// away from 1 and 9999 so that moving to UTC cannot leave Python's range.
fn plain_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let (Some(y1), Some(y2), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        two_digits(b, 0),
        two_digits(b, 2),
        two_digits(b, 5),
        two_digits(b, 8),
        two_digits(b, 11),
        two_digits(b, 14),
        two_digits(b, 17),
    ) else {
        return false;
    };
    let year = y1 * 100 + y2;
    if !(2..=9998).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 6 {
            return false;
        }
        rest = &rest[1 + digits..];
    }
    match rest {
        b"" | b"Z" => true,
        [b'+' | b'-', _, _, b':', _, _] => {
            matches!((two_digits(rest, 1), two_digits(rest, 4)), (Some(h), Some(m)) if h <= 23 && m <= 59)
                && rest != b"-00:00"
        }
        _ => false,
    }
}

/// What `schemas.validators.may_be_unstorable` looks for, over the whole body: a NUL
/// byte, a `\u0000` escape, or a number that may pass the digit or exponent bounds.
/// Between the events of an array there are only brackets, commas and whitespace,
/// which break every pattern, so the body scans like the events joined by a newline.
fn may_be_unstorable(body: &[u8]) -> bool {
    memchr::memchr(0, body).is_some()
        || memchr::memmem::find(body, b"\\u0000").is_some()
        || surrogate_escape(body)
        || may_hold_long_number(body)
}

/// Whether a number of `body` may pass the digit or exponent bounds. The scans read every
/// byte, so text inside strings that looks like a number (an id such as `e2e-65284`, or
/// one of the UUIDs whose `e` is followed by four decimal digits: about one in six) sent
/// its whole body to Python. A body they flag is scanned again without its strings'
/// contents: a JSON number is a token outside every string, so what that second scan
/// clears holds no long number. A string that does not end leaves the first answer.
fn may_hold_long_number(body: &[u8]) -> bool {
    let flagged = |text: &[u8]| long_exponent(text) || long_mantissa(text);
    flagged(body) && outside_strings(body).is_none_or(|rest| flagged(&rest))
}

/// `body` with each string's contents left out (a string becomes its opening quote, which
/// is neither a digit, a point, a sign nor an exponent mark, so it joins no number), or None
/// when a string does not end.
fn outside_strings(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    while let Some(found) = memchr::memchr(b'"', &body[at..]) {
        let quote = at + found;
        out.extend_from_slice(&body[at..=quote]);
        at = end_of_string(body, quote + 1)? + 1;
    }
    out.extend_from_slice(&body[at..]);
    Some(out)
}

/// A surrogate escape that is not half of a well-formed pair (`\uD800`-`\uDBFF` then
/// `\uDC00`-`\uDFFF`), anywhere: serde checks surrogates in the strings it decodes but not
/// in the `data` it skips, and msgspec refuses them, so such a body is left to Python.
/// Only backslashes that start an escape count (an even run of backslashes before them).
fn surrogate_escape(body: &[u8]) -> bool {
    let mut after_pair = 0;
    for at in memchr::memmem::find_iter(body, b"\\u") {
        if at < after_pair || !starts_escape(body, at) {
            continue;
        }
        match surrogate_at(body, at + 2) {
            Some(high) if high < 0xdc00 => match surrogate_at(body, at + 8) {
                Some(low) if low >= 0xdc00 && body.get(at + 6..at + 8) == Some(b"\\u") => {
                    after_pair = at + 12;
                }
                _ => return true,
            },
            Some(_) => return true,
            None => {}
        }
    }
    false
}

/// Whether the backslash at `at` starts an escape: an even number of backslashes before it.
fn starts_escape(body: &[u8], at: usize) -> bool {
    body[..at].iter().rev().take_while(|c| **c == b'\\').count() % 2 == 0
}

/// The code unit of the four hex digits at `at` when it is a surrogate (D800-DFFF).
fn surrogate_at(body: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(body.get(at..at + 4)?).ok()?;
    let unit = u32::from_str_radix(digits, 16).ok()?;
    (0xd800..=0xdfff).contains(&unit).then_some(unit)
}

/// Whether `text` nests containers deeper than `cap` (the event itself is level 1), read
/// the way `schemas.nesting.json_depth` reads it: brackets outside strings open and close
/// levels (a close never goes below zero), a backslash in a string skips the next byte, an
/// unterminated string runs to the end. It is defined for any bytes, valid JSON or not.
fn nested_deeper_than(text: &[u8], cap: usize) -> bool {
    // Fewer than cap + 1 opening brackets cannot nest deeper than cap: the common event.
    if memchr::memchr2_iter(b'{', b'[', text).nth(cap).is_none() {
        return false;
    }
    let mut depth = 0usize;
    let mut at = 0;
    while at < text.len() {
        match text[at] {
            b'"' => match end_of_string(text, at + 1) {
                Some(end) => at = end,
                None => return false,
            },
            b'{' | b'[' => {
                depth += 1;
                if depth > cap {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    false
}

/// Whether an outermost array of `text` holds more than `cap` items, read the way
/// `schemas.nesting.outer_items_past` reads it: the body itself when it is an array, or
/// else each array that is a member of the top-level object (`{"events": [...]}`),
/// counting its commas at its own level outside strings. Defined for any bytes; an
/// empty array counts its one "item" too (a bound, never an exact count).
fn outer_items_past(text: &[u8], cap: usize) -> bool {
    // Fewer than `cap` commas cannot separate more than `cap` items: the common body.
    if memchr::memchr_iter(b',', text)
        .nth(cap.saturating_sub(1))
        .is_none()
    {
        return false;
    }
    let mut depth = 0usize;
    let mut counted: Option<usize> = None; // the level of the array being counted
    let mut items = 0usize;
    let mut at = 0;
    while at < text.len() {
        match text[at] {
            b'"' => match end_of_string(text, at + 1) {
                Some(end) => at = end,
                None => return false,
            },
            b'[' | b'{' => {
                depth += 1;
                if counted.is_none() && text[at] == b'[' && (depth == 1 || depth == 2) {
                    counted = Some(depth);
                    items = 1;
                }
            }
            b']' | b'}' => {
                if counted == Some(depth) {
                    counted = None;
                }
                depth = depth.saturating_sub(1);
            }
            b',' if counted == Some(depth) => {
                items += 1;
                if items > cap {
                    return true;
                }
            }
            _ => {}
        }
        at += 1;
    }
    false
}

/// Where the string whose text starts at `from` ends (its closing quote), or None.
fn end_of_string(text: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let found = from + memchr::memchr2(b'"', b'\\', text.get(from..)?)?;
        if text[found] == b'"' {
            return Some(found);
        }
        from = found + 2;
    }
}

fn is_mantissa(c: u8) -> bool {
    c.is_ascii_digit() || c == b'.'
}

fn is_sign(c: u8) -> bool {
    c == b'+' || c == b'-'
}

/// Python's scan deletes signs, maps digits and points to `0` and `e`/`E` to `e`, then
/// looks for `0e0000`: a mark with mantissa before it and four mantissa after it.
fn long_exponent(body: &[u8]) -> bool {
    memchr::memchr2_iter(b'e', b'E', body).any(|at| {
        let mut unsigned_before = body[..at].iter().rev().filter(|c| !is_sign(**c));
        let unsigned_after = body[at + 1..].iter().filter(|c| !is_sign(**c));
        unsigned_before.next().is_some_and(|c| is_mantissa(*c))
            && unsigned_after.take(4).filter(|c| is_mantissa(**c)).count() == 4
    })
}

/// A run of more than `MAX_NUMBER_DIGITS` mantissa characters (signs within it deleted)
/// spans a multiple of `MAX_NUMBER_DIGITS` in the body: only runs there are counted.
fn long_mantissa(body: &[u8]) -> bool {
    (MAX_NUMBER_DIGITS..body.len())
        .step_by(MAX_NUMBER_DIGITS)
        .any(|at| {
            let part_of_run = |c: &&u8| is_mantissa(**c) || is_sign(**c);
            let left = body[..at]
                .iter()
                .rev()
                .take_while(part_of_run)
                .filter(|c| is_mantissa(**c));
            let right = body[at..]
                .iter()
                .take_while(part_of_run)
                .filter(|c| is_mantissa(**c));
            left.count() + right.count() > MAX_NUMBER_DIGITS
        })
}

/// Whether every field but the id (checked where `plan` takes it) is plainly valid.
fn plain_event(event: &NativeEvent<'_>, text: &str) -> bool {
    event.specversion.is_none()
        && !nested_deeper_than(text.as_bytes(), MAX_DEPTH)
        && chars_within(&event.type_, MAX_TEXT_CHARS)
        && chars_within(&event.source, MAX_TEXT_CHARS)
        && event
            .subject
            .as_deref()
            .is_none_or(|s| chars_within(s, MAX_TEXT_CHARS))
        && event.data.get().starts_with('{')
        && plain_timestamp(&event.time)
}

/// Envelopes' items by partition, and each event's id, in the body's order.
struct Planned<'a> {
    ids: Vec<Cow<'a, str>>,
    items: Vec<(Vec<u8>, usize)>,
}

/// The events of a JSON array, each parsed once: the event and the exact bytes it was
/// read from (what `msgspec.json.decode(body, type=list[msgspec.Raw])` slices out).
/// None when `body` is not an array of native events.
fn events(body: &str) -> Option<Vec<(NativeEvent<'_>, &str)>> {
    let rest = body.trim_start_matches(JSON_SPACE);
    let mut rest = rest.strip_prefix('[')?.trim_start_matches(JSON_SPACE);
    let mut found = Vec::new();
    if let Some(after) = rest.strip_prefix(']') {
        return after
            .trim_start_matches(JSON_SPACE)
            .is_empty()
            .then_some(found);
    }
    loop {
        // One value from the front of `rest`; the stream reports where it ended.
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<NativeEvent<'_>>();
        let event = stream.next()?.ok()?;
        let (raw, after) = rest.split_at(stream.byte_offset());
        found.push((event, raw));
        let after = after.trim_start_matches(JSON_SPACE);
        if let Some(next) = after.strip_prefix(',') {
            rest = next.trim_start_matches(JSON_SPACE);
        } else {
            let end = after.strip_prefix(']')?;
            return end
                .trim_start_matches(JSON_SPACE)
                .is_empty()
                .then_some(found);
        }
    }
}

/// JSON's whitespace (RFC 8259): narrower than Rust's, which would also skip e.g. U+00A0.
const JSON_SPACE: [char; 4] = [' ', '\t', '\n', '\r'];

fn plan<'a>(
    body: &'a [u8],
    key_prefix: &[u8],
    partitions: u32,
    max_events: usize,
) -> Option<Planned<'a>> {
    if partitions == 0 || may_be_unstorable(body) {
        return None;
    }
    // Checked whole, once: the parser then need not check each string, and ignored
    // fields are checked too (msgspec refuses invalid UTF-8 anywhere in an event).
    let body = std::str::from_utf8(body).ok()?;
    let events = events(body)?;
    if events.is_empty() || events.len() > max_events {
        return None;
    }
    // Each partition's share of the body, with room for the items' framing.
    let share = body.len() / partitions as usize + 16 * events.len() / partitions as usize;
    let mut planned = Planned {
        ids: Vec::with_capacity(events.len()),
        items: vec![(Vec::with_capacity(share), 0); partitions as usize],
    };
    let mut key = key_prefix.to_vec();
    for (event, text) in events {
        if !plain_event(&event, text) {
            return None;
        }
        // Only an event that carries its id: the door would assign one to the others.
        let id_text = event.id.filter(|id| chars_within(id, MAX_ID_CHARS))?;
        let id = id_text.as_ref();
        key.truncate(key_prefix.len());
        key.extend_from_slice(id.as_bytes());
        let (items, count) = &mut planned.items[partition_of(&key, partitions) as usize];
        // An upsert item of a fresh event: op, id, raw bytes, attempt 1, no lineage.
        items.push(0);
        write_length(items, id.len());
        items.extend_from_slice(id.as_bytes());
        write_length(items, text.len());
        items.extend_from_slice(text.as_bytes());
        items.extend_from_slice(b"\x02\x00\x00\x00");
        *count += 1;
        planned.ids.push(id_text);
    }
    Some(planned)
}

/// The events' ids, and each partition's envelope.
type PlannedForPython<'py> = (Vec<Bound<'py, PyString>>, Vec<(u32, Bound<'py, PyBytes>)>);

/// Plan a native request body, or `None` when the Python path must (see the module).
///
/// Returns the events' ids in the body's order and one `(partition, envelope)` per
/// partition that got events, in partition order; `head` is the envelope's
/// encoded start (`schemas.writers.envelope_head`), the same for each.
#[pyfunction]
fn plan_native<'py>(
    py: Python<'py>,
    body: &[u8],
    key_prefix: &[u8],
    partitions: u32,
    head: &[u8],
    max_events: usize,
) -> Option<PlannedForPython<'py>> {
    let planned = plan(body, key_prefix, partitions, max_events)?;
    let ids = planned.ids.iter().map(|id| PyString::new(py, id)).collect();
    let mut envelopes = Vec::new();
    for (partition, (items, count)) in planned.items.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        // head, the item count, the items, the empty block that ends the array
        let mut count_bytes = Vec::with_capacity(10);
        write_length(&mut count_bytes, *count);
        let parts = [head, &count_bytes, items, b"\x00"];
        let size = parts.iter().map(|part| part.len()).sum();
        let envelope = PyBytes::new_with(py, size, |buffer| {
            let mut at = 0;
            for part in parts {
                buffer[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Ok(())
        })
        .ok()?;
        envelopes.push((partition as u32, envelope));
    }
    Some((ids, envelopes))
}

/// The indexes of the events of `raws` that nest deeper than `cap` (see
/// `nested_deeper_than`): one call for a whole request or envelope.
#[pyfunction]
fn too_deep(raws: &Bound<'_, PyAny>, cap: usize) -> PyResult<Vec<usize>> {
    let mut found = Vec::new();
    for (index, raw) in raws.try_iter()?.enumerate() {
        if nested_deeper_than(raw?.cast::<PyBytes>()?.as_bytes(), cap) {
            found.push(index);
        }
    }
    Ok(found)
}

/// Whether `raw` holds more than `cap` items in an outermost array (see
/// `outer_items_past`): checked before a splitter decodes the body into one object per item.
#[pyfunction]
fn too_many_items(raw: &[u8], cap: usize) -> bool {
    outer_items_past(raw, cap)
}

/// The partition Kafka's default partitioner picks for `key` (murmur2); holds the GIL.
#[pyfunction]
fn partition_for(key: &[u8], partitions: u32) -> PyResult<u32> {
    if partitions == 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "partitions must be positive",
        ));
    }
    Ok(partition_of(key, partitions))
}

#[pymodule]
fn sluice_fastpath(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(plan_native, m)?)?;
    m.add_function(wrap_pyfunction!(partition_for, m)?)?;
    m.add_function(wrap_pyfunction!(too_deep, m)?)?;
    m.add_function(wrap_pyfunction!(too_many_items, m)?)?;
    m.add_function(wrap_pyfunction!(stream::forward_native, m)?)?;
    m.add_class::<contracts::CompiledContract>()?;
    sink::register(m)?;
    Ok(())
}
