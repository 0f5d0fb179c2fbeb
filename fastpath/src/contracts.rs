//! Data contracts for the compiled stream path: a tenant's JSON Schema, compiled once.
//!
//! `CompiledContract` is built from Python (`streams.compiled`) once per contract version,
//! with what `schemas.contracts.compile_schema` gives jsonschema-rs: the same crate at the
//! version the installed Python binding builds (`=0.60.2` for jsonschema-rs 0.60.3), the
//! draft the schema names, `pattern`s on the `regex` crate with the same size limit, and
//! no retrieval of any remote `$ref`. Its verdict on an event's `data` is then the Python
//! path's `contract.validator.is_valid(document)`, which the property tests in
//! `tests/streams/test_fastpath_contracts.py` check.
//!
//! Where the two could read a number apart, Rust does not answer: a schema holding any
//! number that is not a 64-bit integer is not built (the binding reads schema numbers with
//! arbitrary precision, this crate as `f64`), and a document with an integer past 64 bits
//! gets no verdict (Python's int is exact). The Python path decides those.

use jsonschema::{Draft, PatternOptions, Validator};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use serde_json::Value;

/// `schemas.contracts.REGEX_SIZE_LIMIT`.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One contract version, compiled: its schema id and validator.
#[pyclass(frozen, module = "sluice_fastpath")]
pub(crate) struct CompiledContract {
    schema_id: i32,
    validator: Validator,
}

fn draft_named(name: &str) -> Option<Draft> {
    Some(match name {
        "2020-12" => Draft::Draft202012,
        "2019-09" => Draft::Draft201909,
        "7" => Draft::Draft7,
        "6" => Draft::Draft6,
        "4" => Draft::Draft4,
        _ => return None,
    })
}

/// Whether every number in `value` is an integer that fits 64 bits.
fn integers_only(value: &Value) -> bool {
    match value {
        Value::Number(n) => !n.is_f64(),
        Value::Array(items) => items.iter().all(integers_only),
        Value::Object(map) => map.values().all(integers_only),
        _ => true,
    }
}

/// Whether `text` may hold an integer literal outside `i64`/`u64` (serde_json reads those
/// as `f64`): some run of 19 or more digits that is not a fraction's or an exponent's and
/// does not fit. Digits inside strings can only make it say yes: never a wrong answer.
fn may_hold_wide_integer(text: &str) -> bool {
    let b = text.as_bytes();
    let mut at = 0;
    while at < b.len() {
        if !b[at].is_ascii_digit() {
            at += 1;
            continue;
        }
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        if at - start < 19 {
            continue;
        }
        let before = start.checked_sub(1).map(|i| b[i]);
        let after = b.get(at).copied();
        let float_part = matches!(before, Some(b'.' | b'e' | b'E' | b'+'))
            || matches!(after, Some(b'.' | b'e' | b'E'));
        if float_part {
            continue;
        }
        let fits = text[start..at].parse::<u128>().is_ok_and(|n| {
            if before == Some(b'-') {
                n <= 1 << 63
            } else {
                n <= u128::from(u64::MAX)
            }
        });
        if !fits {
            return true;
        }
    }
    false
}

impl CompiledContract {
    /// The verdict on one document's JSON text; `None`: Rust cannot tell it as Python would.
    pub(crate) fn verdict(&self, data: &str) -> Option<bool> {
        if may_hold_wide_integer(data) {
            return None;
        }
        let document: Value = serde_json::from_str(data).ok()?;
        Some(self.validator.is_valid(&document))
    }

    pub(crate) fn schema_id(&self) -> i32 {
        self.schema_id
    }
}

#[pymethods]
impl CompiledContract {
    /// Compile `schema` (JSON text) under `draft` ("2020-12", "2019-09", "7", "6", "4");
    /// ValueError when Rust cannot build it the way the Python path does.
    #[new]
    fn new(schema_id: i32, schema: &str, draft: &str) -> PyResult<Self> {
        let refuse = |why: String| PyValueError::new_err(why);
        let draft = draft_named(draft).ok_or_else(|| refuse(format!("unknown draft {draft:?}")))?;
        let document: Value = serde_json::from_str(schema).map_err(|e| refuse(e.to_string()))?;
        if !integers_only(&document) {
            return Err(refuse("a number that is not a 64-bit integer".into()));
        }
        let validator = jsonschema::options()
            .with_draft(draft)
            .with_pattern_options(PatternOptions::regex().size_limit(REGEX_SIZE_LIMIT))
            .build(&document)
            .map_err(|e| refuse(e.to_string()))?;
        Ok(Self {
            schema_id,
            validator,
        })
    }

    /// The verdict on `document` (JSON text): what `is_valid` of the Python contract says of
    /// it decoded, or None when Rust does not answer (see the module).
    fn is_valid(&self, document: &str) -> Option<bool> {
        self.verdict(document)
    }
}
