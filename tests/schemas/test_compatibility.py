"""The registry's Avro compatibility rules, as a table: (writer-then-reader change, whether
the new schema reads old data (BACKWARD), whether the old schema reads new data (FORWARD)).
FULL is both, NONE always passes; the transitive modes check every earlier version."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.compatibility import (
    MODES,
    InvalidSchema,
    UnknownSchemaType,
    incompatibilities,
    parse,
)


def record(*fields: dict[str, Any], name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields)}


def f(name: str, kind: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, **extra}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "E", "symbols": list(symbols), **extra}


INT = record(f("a", "int"))
# (case, old schema, new schema, new reads old: BACKWARD, old reads new: FORWARD)
CASES: list[tuple[str, Any, Any, bool, bool]] = [
    ("identical", INT, INT, True, True),
    (
        "add field with default",
        INT,
        record(f("a", "int"), f("b", "string", default="")),
        True,
        True,
    ),
    ("add field without default", INT, record(f("a", "int"), f("b", "string")), False, True),
    ("remove field with default", record(f("a", "int"), f("b", "int", default=0)), INT, True, True),
    ("remove field without default", record(f("a", "int"), f("b", "int")), INT, True, False),
    ("int promoted to long", INT, record(f("a", "long")), True, False),
    ("long narrowed to int", record(f("a", "long")), INT, False, True),
    ("int to float", INT, record(f("a", "float")), True, False),
    ("int to double", INT, record(f("a", "double")), True, False),
    ("long to double", record(f("a", "long")), record(f("a", "double")), True, False),
    ("float to double", record(f("a", "float")), record(f("a", "double")), True, False),
    ("string to bytes", record(f("a", "string")), record(f("a", "bytes")), True, True),
    ("int to string", INT, record(f("a", "string")), False, False),
    ("boolean to int", record(f("a", "boolean")), INT, False, False),
    (
        "add enum symbol",
        record(f("e", enum("A", "B"))),
        record(f("e", enum("A", "B", "C"))),
        True,
        False,
    ),
    (
        "remove enum symbol",
        record(f("e", enum("A", "B", "C"))),
        record(f("e", enum("A", "B"))),
        False,
        True,
    ),
    (
        "remove enum symbol, reader default",
        record(f("e", enum("A", "B", "C"))),
        record(f("e", enum("A", "B", default="A"))),
        True,
        True,
    ),
    ("int widened to union", INT, record(f("a", ["null", "int"], default=None)), True, False),
    ("union narrowed to int", record(f("a", ["null", "int"], default=None)), INT, False, True),
    (
        "add union branch",
        record(f("a", ["null", "int"])),
        record(f("a", ["null", "int", "string"])),
        True,
        False,
    ),
    ("rename record", INT, record(f("a", "int"), name="S"), False, False),
    (
        "rename record with alias",
        INT,
        {**record(f("a", "int"), name="S"), "aliases": ["R"]},
        True,
        False,
    ),
    ("rename field with alias", INT, record(f("b", "int", aliases=["a"])), True, False),
    (
        "fixed size changed",
        record(f("x", {"type": "fixed", "name": "F", "size": 4})),
        record(f("x", {"type": "fixed", "name": "F", "size": 8})),
        False,
        False,
    ),
    (
        "array items promoted",
        record(f("x", {"type": "array", "items": "int"})),
        record(f("x", {"type": "array", "items": "long"})),
        True,
        False,
    ),
    (
        "map values changed",
        record(f("x", {"type": "map", "values": "int"})),
        record(f("x", {"type": "map", "values": "string"})),
        False,
        False,
    ),
    (
        "nested record gains field with default",
        record(f("n", record(f("a", "int"), name="N"))),
        record(f("n", record(f("a", "int"), f("b", "int", default=1), name="N"))),
        True,
        True,
    ),
    (
        "nested record gains required field",
        record(f("n", record(f("a", "int"), name="N"))),
        record(f("n", record(f("a", "int"), f("b", "int"), name="N"))),
        False,
        True,
    ),
    ("record to primitive", INT, "int", False, False),
    ("doc changed only", INT, {**INT, "doc": "now documented"}, True, True),
]


def schema(document: Any) -> Any:
    return parse("AVRO", json.dumps(document))


def ok(mode: str, old: Any, new: Any) -> bool:
    return not incompatibilities(mode, schema(new), [schema(old)])


@pytest.mark.parametrize(("case", "old", "new", "backward", "forward"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_modes(case: str, old: Any, new: Any, backward: bool, forward: bool) -> None:
    assert ok("BACKWARD", old, new) is backward
    assert ok("FORWARD", old, new) is forward
    assert ok("FULL", old, new) is (backward and forward)
    assert ok("NONE", old, new)
    # one earlier version: the transitive modes agree with their plain ones
    assert ok("BACKWARD_TRANSITIVE", old, new) is backward
    assert ok("FORWARD_TRANSITIVE", old, new) is forward
    assert ok("FULL_TRANSITIVE", old, new) is (backward and forward)


def test_enough_cases_per_mode() -> None:
    assert len(CASES) >= 20
    assert {b for *_, b, _ in CASES} == {True, False} and {fw for *_, fw in CASES} == {True, False}


V1 = record(f("a", "int"))
V2 = record(f("a", "int"), f("b", "int", default=0))
V3 = record(f("b", "int", default=0))  # drops a: v1 (a without a default) cannot read it


@pytest.mark.parametrize(
    ("mode", "chain", "new", "expected"),
    [
        # v2 adds b with a default; the new one adds c without one: it cannot read v2
        ("BACKWARD", [V1, V2], record(f("a", "int"), f("c", "int")), False),
        # new reads v2 (latest) but not v1: only the transitive mode sees v1
        (
            "BACKWARD",
            [record(f("a", "string")), record(f("a", "int"))],
            record(f("a", "long")),
            True,
        ),
        (
            "BACKWARD_TRANSITIVE",
            [record(f("a", "string")), record(f("a", "int"))],
            record(f("a", "long")),
            False,
        ),
        # v1 cannot read v3 (a is gone, v1 has no default for it); v2 can (b defaults)
        ("FORWARD", [V1, V2], V3, False),
        ("FORWARD", [V2, record(f("a", "int", default=0), f("b", "int", default=0))], V3, True),
        (
            "FORWARD_TRANSITIVE",
            [V2, record(f("a", "int", default=0), f("b", "int", default=0))],
            V3,
            False,
        ),
        (
            "FULL",
            [record(f("a", "int")), record(f("a", "int"), f("b", "int", default=0))],
            record(f("b", "int", default=0), f("a", "int")),
            True,
        ),
        (
            "FULL_TRANSITIVE",
            [record(f("a", "string")), record(f("a", "int"))],
            record(f("a", "int")),
            False,
        ),
        ("NONE", [V1], record(f("z", "boolean")), True),
    ],
)
def test_transitive(mode: str, chain: list[Any], new: Any, expected: bool) -> None:
    assert (not incompatibilities(mode, schema(new), [schema(s) for s in chain])) is expected


def test_reasons_name_the_field_and_the_direction() -> None:
    reasons = incompatibilities("FULL", schema(record(f("a", "string"))), [schema(INT)])
    assert any(r.startswith("BACKWARD:") and "/fields/0" in r for r in reasons), reasons
    assert any(r.startswith("FORWARD:") for r in reasons), reasons


def test_every_mode_is_known() -> None:
    assert set(MODES) == {"NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD",
                          "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"}  # fmt: skip
    with pytest.raises(ValueError, match="unknown compatibility mode"):
        incompatibilities("SIDEWAYS", schema(INT), [schema(INT)])


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("AVRO", "{not json"),
        ("AVRO", '{"type": "record", "name": "R"}'),
        ("AVRO", '{"type": "nope"}'),
        ("AVRO", '{"type": "enum", "name": "E", "symbols": ["A", "A"]}'),
        ("JSON", '{"type": 12}'),
        ("JSON", '{"minLength": -1}'),
        ("JSON", "[1, 2]"),
        ("JSON", '{"$schema": "https://example.com/my-own-draft", "type": "object"}'),
        ("JSON", '{"$schema": []}'),
        ("JSON", '{"$schema": 5}'),
    ],
)
def test_invalid_schemas(kind: str, text: str) -> None:
    with pytest.raises(InvalidSchema):
        parse(kind, text)


@pytest.mark.parametrize(
    "draft",
    ["https://json-schema.org/draft/2020-12/schema", "http://json-schema.org/draft-07/schema#",
     "http://json-schema.org/draft-04/schema#", None],
)  # fmt: skip
def test_known_json_schema_drafts(draft: str | None) -> None:
    document: dict[str, Any] = {"type": "object", "properties": {"a": {"type": "integer"}}}
    if draft is not None:
        document["$schema"] = draft
    assert parse("JSON", json.dumps(document)).document == document


def test_unknown_type_and_equal_fingerprints() -> None:
    with pytest.raises(UnknownSchemaType):
        parse("PROTOBUF", 'syntax = "proto3";')
    spaced = parse("AVRO", json.dumps(INT, indent=4))
    reordered = parse("AVRO", json.dumps(dict(reversed(list(INT.items())))))
    assert spaced.fingerprint == reordered.fingerprint == schema(INT).fingerprint
    assert spaced.text == json.dumps(INT, separators=(",", ":"))


@pytest.mark.parametrize(
    ("old", "new", "backward", "forward"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {"a": {"type": "string"}, "b": {}}},
            True,
            True,
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            False,
            True,
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {"a": {"type": "integer"}}},
            False,
            False,
        ),
        ({"type": "object"}, {"type": "array"}, False, False),
        (
            {"type": "object", "properties": {"a": {}, "b": {}}},
            {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
            False,
            True,
        ),
    ],
)
def test_json_schema_rules(old: Any, new: Any, backward: bool, forward: bool) -> None:
    o, n = parse("JSON", json.dumps(old)), parse("JSON", json.dumps(new))
    assert (not incompatibilities("BACKWARD", n, [o])) is backward
    assert (not incompatibilities("FORWARD", n, [o])) is forward
