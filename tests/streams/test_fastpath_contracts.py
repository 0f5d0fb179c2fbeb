"""Data contracts in the compiled stream path (`fastpath/src/contracts.rs`) against Python's.

A contract compiled in Rust must give the verdict jsonschema-rs gives the Python path
(`contract.validator.is_valid(document)`) whenever it answers at all, for generated
schemas and documents, valid and mutated; and when the compiled path forwards an envelope
of a tenant with contracts, its messages must be the Python path's with `enforce` applied,
byte for byte, schema ids included. The wire headers are this process's, read per call:
switched to an external registry's ids, the compiled path still writes what Python writes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from bench.contracts import CONTRACT
from bench.events import event_bytes
from runtime.kafka import OutgoingMessage
from schemas.codec import SCHEMA_IDS, SUPERSEDED, decode, use_own_ids, use_registry_ids
from schemas.contracts import Contract, Contracts, compile_schema
from streams.compiled import COMPILED, compiled_contract, forward_compiled
from streams.outputs import to_messages
from streams.process import Position, process_envelope
from tests.schemas.test_contracts import USAGE
from tests.streams.test_fastpath_stream import TOPIC, TOPICS, _envelope, _plain

pytestmark = pytest.mark.skipif(not COMPILED, reason="the compiled extension is not built")

SCHEMA_ID = 1042


def _contracts(
    schema: Any, subject: str = "native.usage.api_call", tenant: str = "sf"
) -> Contracts:
    validator = compile_schema(json.dumps(schema))
    return Contracts({(tenant, subject): Contract(subject, 3, SCHEMA_ID, validator)})


def _python(value: bytes, contracts: Contracts, offset: int = 40, partition: int = 2) -> Any:
    _, envelope = decode(value, "IngestEnvelope")
    processed = process_envelope(envelope, Position(TOPIC, partition, offset), contracts)
    return _plain(to_messages(processed, partition, TOPICS))


def _check(value: bytes, contracts: Contracts) -> bool:
    """Whether the compiled path took `value`; when it did, that it matched Python exactly."""
    fast = forward_compiled(value, 40, 2, TOPICS, contracts)
    if fast is None:
        return False
    assert _plain(fast[2]) == _python(value, contracts)
    return True


def _schema_id_of(message: OutgoingMessage) -> Any:
    return decode(message[3], "CanonicalEvent")[1]["schema_id"]


def test_the_bench_envelope_with_the_bench_contract_takes_the_compiled_path() -> None:
    contracts = _contracts(CONTRACT)
    value = _envelope([event_bytes("sf", i) for i in range(42)], tenant="sf")
    assert _check(value, contracts)
    fast = forward_compiled(value, 40, 2, TOPICS, contracts)
    assert fast is not None and {_schema_id_of(m) for m in fast[2]} == {SCHEMA_ID}


def _native(type_: str, data: Any, n: int = 0) -> bytes:
    event = {"type": type_, "source": "s", "time": "2026-01-01T00:00:00Z", "data": data}
    return json.dumps({"id": f"e-{n}", **event}, separators=(",", ":")).encode()


def test_a_failing_event_sends_the_envelope_to_the_python_path() -> None:
    contracts = _contracts(USAGE, "native.usage", "acme")
    good = _native("usage", {"units": 3, "plan": "pro"})
    bad = _native("usage", {"units": -1, "plan": "pro"}, 1)
    assert _check(_envelope([good, _native("other", {"x": 1}, 2)]), contracts)
    assert forward_compiled(_envelope([good, bad]), 40, 2, TOPICS, contracts) is None
    fast = forward_compiled(
        _envelope([good, _native("other", {"x": 1}, 2)]), 40, 2, TOPICS, contracts
    )
    assert fast is not None and [_schema_id_of(m) for m in fast[2]] == [SCHEMA_ID, None]


def test_a_schema_rust_does_not_build_alike_declines_its_subject_only() -> None:
    contracts = _contracts({"type": "number", "multipleOf": 0.1}, "native.usage", "acme")
    assert (
        compiled_contract(SCHEMA_ID, contracts.by_subject[("acme", "native.usage")].validator)
        is None
    )
    assert (
        forward_compiled(_envelope([_native("usage", {"x": 0.3})]), 40, 2, TOPICS, contracts)
        is None
    )
    assert _check(_envelope([_native("other", {"x": 0.3})]), contracts)


# Generated schemas: the kinds of keyword a contract uses, nested.
_leaf = st.one_of(
    st.sampled_from([{"type": t} for t in ("integer", "number", "string", "boolean", "null")]),
    st.builds(lambda lo, hi: {"type": "integer", "minimum": lo, "maximum": lo + hi},
              st.integers(-(2**63), 2**63 - 1), st.integers(0, 2**40)),
    st.builds(lambda lo: {"type": "number", "exclusiveMinimum": lo}, st.integers(-5, 5)),
    st.builds(lambda m: {"type": "integer", "multipleOf": m}, st.integers(1, 7)),
    st.builds(lambda v: {"enum": v}, st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=3),
              st.booleans(), st.none()), min_size=1, max_size=4, unique_by=repr)),
    st.sampled_from([{"type": "string", "pattern": "^[a-z]{1,3}-[0-9]+$"},
                     {"type": "string", "minLength": 2, "maxLength": 5},
                     {"const": 0}, {"const": "x"}, {"format": "date-time", "type": "string"}]),
)  # fmt: skip


def _object(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    props = st.dictionaries(st.sampled_from("abcde"), children, max_size=4)
    return st.builds(
        lambda p, req, extra: {"type": "object", "properties": p,
                               "required": [k for k in p if k in req],
                               **({} if extra else {"additionalProperties": False})},
        props, st.sets(st.sampled_from("abcde")), st.booleans(),
    )  # fmt: skip


_nodes = st.recursive(
    _leaf,
    lambda c: st.one_of(
        _object(c), st.builds(lambda i, n: {"type": "array", "items": i, "maxItems": n}, c,
                              st.integers(0, 4))),
    max_leaves=8,
)  # fmt: skip
_schemas = st.one_of(
    _nodes,
    _nodes.map(lambda n: {"$defs": {"n": n}, "type": "object",
                          "properties": {"a": {"$ref": "#/$defs/n"}}}),
    st.sampled_from([CONTRACT, USAGE, {"$schema": "http://json-schema.org/draft-04/schema#",
                     "type": "object", "properties": {"n": {"type": "integer", "maximum": 3}}}]),
)  # fmt: skip
_numbers = st.sampled_from(
    ["0", "-0", "-0.0", "1.0", "1e2", "1E2", "2.5", "-7", str(2**63 - 1), str(2**63),
     str(-(2**63)), str(-(2**63) - 1), str(2**64 - 1), str(2**64), "1e400", "123456789012345678901"]
)  # fmt: skip


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _mutated(draw: st.DrawFn, document: Any) -> str:
    """`document` as JSON text, sometimes with a value swapped for a number or another kind."""
    text = json.dumps(document, separators=(",", ":"))
    if draw(st.booleans()):
        return text
    if isinstance(document, dict) and document and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(document)))
        swapped = draw(st.one_of(_numbers, st.sampled_from(['"x"', "null", "[]", "{}", "true"])))
        body = ",".join(f"{json.dumps(k)}:{swapped if k == key else _compact(v)}"
                        for k, v in document.items())  # fmt: skip
        return "{" + body + "}"
    return draw(st.one_of(_numbers, st.just('{"zz":1}'), st.just("[1,2]")))


@st.composite
def _cases(draw: st.DrawFn) -> tuple[Any, str]:
    schema = draw(_schemas)
    document = draw(from_schema(schema))
    return schema, _mutated(draw, document)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_cases())
def test_rust_verdicts_are_the_python_contracts(case: tuple[Any, str]) -> None:
    schema, text = case
    validator = compile_schema(json.dumps(schema))
    compiled = compiled_contract(SCHEMA_ID, validator)
    try:
        document = msgspec.json.decode(text)
    except msgspec.DecodeError:
        document = None
        assume(False)
    if compiled is None:
        return
    verdict = compiled.is_valid(text)
    if verdict is not None:
        assert verdict == validator.is_valid(document), (schema, text)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(_cases(), st.integers(1, 3))
def test_whenever_the_compiled_path_answers_it_writes_what_python_writes(
    case: tuple[Any, str], copies: int
) -> None:
    schema, text = case
    contracts = _contracts(schema, "native.t", "acme")
    raws = [b'{"type":"t","source":"s","time":"2026-01-01T00:00:00Z","data":' + text.encode()
            + b',"id":"e-%d"}' % i for i in range(copies)]  # fmt: skip
    _check(_envelope([*raws, _native("u", {}, 9)]), contracts)


def test_the_bench_contract_passes_in_rust_what_it_passes_in_python() -> None:
    """Every bench event passes; so must it in Rust (else the bench would measure Python)."""
    compiled = compiled_contract(SCHEMA_ID, compile_schema(json.dumps(CONTRACT)))
    assert compiled is not None
    for i in range(200):
        data = json.loads(event_bytes("sf", i))["data"]
        assert compiled.is_valid(json.dumps(data)) is True


def test_with_an_external_registrys_ids_the_compiled_path_writes_those() -> None:
    mapping = {i: 500 + i for i in {*SCHEMA_IDS.values(), *SUPERSEDED}}
    contracts = _contracts(CONTRACT)
    try:
        use_registry_ids(mapping)
        value = _envelope([event_bytes("sf", i) for i in range(5)], tenant="sf")
        assert value[:5] == struct.pack(">bI", 0, 504)
        fast = forward_compiled(value, 40, 2, TOPICS, contracts)
        assert fast is not None
        assert {m[3][:5] for m in fast[2]} == {struct.pack(">bI", 0, 507)}
        assert _plain(fast[2]) == _python(value, contracts)
    finally:
        use_own_ids()
    assert forward_compiled(value, 40, 2, TOPICS, contracts) is None  # not this process's ids


class _Loaded:
    """The part of `ingest.contracts.ContractCache` the worker reads: fixed contracts."""

    def __init__(self, current: Contracts) -> None:
        import asyncio

        self.current = current
        self.loaded = asyncio.Event()
        self.loaded.set()

    async def refresh_if_older(self, moment: float) -> bool:
        return False


async def test_the_worker_sends_the_same_with_contracts_in_force_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streams.app
    from tests.streams import test_fastpath_stream

    contracts = _contracts(USAGE, "native.usage", "acme")
    good = [_native("usage", {"units": i, "plan": "free"}, i) for i in range(3)]
    bad = _native("usage", {"units": "many", "plan": "free"}, 7)
    values = [_envelope(good), _envelope([*good, bad]), _envelope(good, tenant="b")]
    taken: list[bytes] = []
    real = streams.app.Forwarder.__init__

    def with_contracts(self: Any, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        self.contracts = _Loaded(contracts)

    def spy(value: bytes | None, *args: Any) -> Any:
        found = forward_compiled(value, *args)
        if found is not None and value is not None:
            taken.append(value)
        return found

    monkeypatch.setattr(streams.app.Forwarder, "__init__", with_contracts)
    monkeypatch.setattr(streams.app, "forward_compiled", spy)
    compiled = await test_fastpath_stream._sent_by_forwarder(tmp_path / "compiled", values)
    assert taken == [values[0], values[2]]
    monkeypatch.setattr(streams.app, "forward_compiled", lambda *_: None)
    python = await test_fastpath_stream._sent_by_forwarder(tmp_path / "python", values)
    assert compiled == python
    dead = [m for m in compiled[0] if m[0] == TOPICS.dlq]
    assert len(dead) == 1
