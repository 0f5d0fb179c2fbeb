"""JSON Schema compatibility, as a table per mode, with an outside oracle for the verdicts.

Each case is (old, new, does the new schema accept every document the old one accepted
(BACKWARD), does the old accept every document of the new (FORWARD), and a fragment of the
reason for each direction that breaks). Every mode gets every case: FULL is both
directions, NONE never refuses, and each `_TRANSITIVE` mode sees the case as the first of
two versions (the second equal to the new schema, so only a transitive check can refuse).

The oracle: hypothesis-jsonschema generates documents from the writer's schema wherever
the rules say a reader accepts them all, and `jsonschema` must accept each under the
reader: a "compatible" verdict that is wrong fails here.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema.validators
import pytest
from hypothesis import HealthCheck, assume, find, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from schemas.compatibility import MODES, ParsedSchema, incompatibilities, parse


def obj(closed: bool | None = None, required: tuple[str, ...] = (), **props: Any) -> Any:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    if closed is not None:
        schema["additionalProperties"] = not closed
    return schema


STR, INT, NUM = {"type": "string"}, {"type": "integer"}, {"type": "number"}
D7 = "http://json-schema.org/draft-07/schema#"
D4 = "http://json-schema.org/draft-04/schema#"
PARTLY_OPEN = {
    "type": "object",
    "properties": {"a": STR},
    "patternProperties": {"^x-": STR},
    "additionalProperties": False,
}
TREE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"value": INT, "children": {"type": "array", "items": {"$ref": "#"}}},
}

# (case, old, new, BACKWARD holds, FORWARD holds, BACKWARD reason, FORWARD reason)
CASES: list[tuple[str, Any, Any, bool, bool, str, str]] = [
    ("identical", obj(a=STR), obj(a=STR), True, True, "", ""),
    ("integer widened to number", INT, NUM, True, False, "", "non-integer numbers"),
    ("string changed to integer", STR, INT, False, False, "allows string", "allows integer"),
    ("null added to type", STR, {"type": ["string", "null"]}, True, False, "", "allows null"),
    (
        "required added",
        obj(a=STR),
        obj(required=("a",), a=STR),
        False,
        True,
        "'a' became required",
        "",
    ),
    (
        "required removed",
        obj(required=("a",), a=STR),
        obj(a=STR),
        True,
        False,
        "",
        "became required",
    ),
    (
        "closed: optional property added",
        obj(True, a=STR),
        obj(True, a=STR, b=INT),
        True,
        False,
        "",
        "'b' is no longer allowed",
    ),
    (
        "closed: property removed",
        obj(True, a=STR, b=INT),
        obj(True, a=STR),
        False,
        True,
        "'b' is no longer allowed",
        "",
    ),
    (
        "open: typed property added",
        obj(a=STR),
        obj(a=STR, b=INT),
        False,
        True,
        "open content model",
        "",
    ),
    (
        "open: typed property removed",
        obj(a=STR, b=INT),
        obj(a=STR),
        True,
        False,
        "",
        "open content model",
    ),
    (
        "open model closed",
        obj(a=STR),
        obj(True, a=STR),
        False,
        True,
        "closes the content model",
        "",
    ),
    (
        "partly open: property under the pattern added",
        PARTLY_OPEN,
        {**PARTLY_OPEN, "properties": {"a": STR, "x-b": STR}},
        True,
        True,
        "",
        "",
    ),
    (
        "partly open: pattern's schema narrowed",
        {**PARTLY_OPEN, "patternProperties": {"^x-": {}}},
        PARTLY_OPEN,
        False,
        True,
        "#/patternProperties/^x-/type",
        "",
    ),
    ("enum widened", {"enum": ["a", "b"]}, {"enum": ["a", "b", "c"]}, True, False, "", "'c'"),
    ("enum narrowed", {"enum": ["a", "b", "c"]}, {"enum": ["a", "b"]}, False, True, "'c'", ""),
    ("const widened to enum", {"const": "x"}, {"enum": ["x", "y"]}, True, False, "", "'y'"),
    ("enum added to string", STR, {"enum": ["a"]}, False, True, "only listed values", ""),
    ("minimum raised", {**NUM, "minimum": 0}, {**NUM, "minimum": 10}, False, True, "/minimum", ""),
    (
        "maximum lowered",
        {**NUM, "maximum": 100},
        {**NUM, "maximum": 50},
        False,
        True,
        "/maximum",
        "",
    ),
    (
        "integer > 0 is integer >= 1",
        {**INT, "exclusiveMinimum": 0},
        {**INT, "minimum": 1},
        True,
        True,
        "",
        "",
    ),
    (
        "number >= 0 made > 0",
        {**NUM, "minimum": 0},
        {**NUM, "exclusiveMinimum": 0},
        False,
        True,
        "/minimum",
        "",
    ),
    (
        "multipleOf 10 relaxed to 5",
        {**INT, "multipleOf": 10},
        {**INT, "multipleOf": 5},
        True,
        False,
        "",
        "/multipleOf",
    ),
    ("multipleOf 0.5 added to integers", INT, {**NUM, "multipleOf": 0.5}, True, False, "", "/type"),
    (
        "minLength raised",
        {**STR, "minLength": 1},
        {**STR, "minLength": 3},
        False,
        True,
        "/minLength",
        "",
    ),
    (
        "maxLength lowered",
        {**STR, "maxLength": 10},
        {**STR, "maxLength": 5},
        False,
        True,
        "/maxLength",
        "",
    ),
    (
        "pattern changed (not decided)",
        {**STR, "pattern": "^[a-z]+$"},
        {**STR, "pattern": "^[a-z0-9]+$"},
        False,
        False,
        "/pattern: changed",
        "/pattern: changed",
    ),
    ("format added", STR, {**STR, "format": "email"}, False, True, "/format: added", ""),
    (
        "items narrowed",
        {"type": "array", "items": NUM},
        {"type": "array", "items": INT},
        False,
        True,
        "#/items/type",
        "",
    ),
    (
        "tuple grows a position",
        {"type": "array", "prefixItems": [STR], "items": False},
        {"type": "array", "prefixItems": [STR, INT], "items": False},
        True,
        False,
        "",
        "#/prefixItems/1",
    ),
    (
        "minItems raised",
        {"type": "array", "minItems": 0},
        {"type": "array", "minItems": 1},
        False,
        True,
        "/minItems",
        "",
    ),
    (
        "maxItems lowered",
        {"type": "array", "maxItems": 5},
        {"type": "array", "maxItems": 3},
        False,
        True,
        "/maxItems",
        "",
    ),
    (
        "uniqueItems added",
        {"type": "array"},
        {"type": "array", "uniqueItems": True},
        False,
        True,
        "/uniqueItems",
        "",
    ),
    (
        "nested property changed",
        obj(address=obj(zip=STR)),
        obj(address=obj(zip=INT)),
        False,
        False,
        "#/properties/address/properties/zip/type",
        "#/properties/address/properties/zip/type",
    ),
    (
        "$ref to a widened definition",
        {"$defs": {"amount": INT}, **obj(a={"$ref": "#/$defs/amount"})},
        {"$defs": {"amount": NUM}, **obj(a={"$ref": "#/$defs/amount"})},
        True,
        False,
        "",
        "#/properties/a/type",
    ),
    (
        "recursive $ref",
        TREE,
        {**TREE, "properties": {**TREE["properties"], "value": NUM}},
        True,
        False,
        "",
        "/properties/value/type",
    ),
    (
        "anyOf widened",
        {"anyOf": [STR, INT]},
        {"anyOf": [STR, INT, {"type": "null"}]},
        True,
        False,
        "",
        "#/anyOf",
    ),
    (
        "oneOf changed (not decided)",
        {"oneOf": [STR, INT]},
        {"oneOf": [STR, NUM]},
        False,
        False,
        "'oneOf'",
        "'oneOf'",
    ),
    ("not added (not decided)", {}, {"not": {"type": "null"}}, False, True, "'not'", ""),
    (
        "if/then added (not decided)",
        {},
        {"if": obj(a=STR), "then": obj(required=("a",))},
        False,
        True,
        "'if/then/else'",
        "",
    ),
    ("true became false", True, False, False, True, "accepts nothing", ""),
    (
        "dependentRequired added",
        obj(a=STR, b=STR),
        {**obj(a=STR, b=STR), "dependentRequired": {"a": ["b"]}},
        False,
        True,
        "['b'] became required",
        "",
    ),
    (
        "minProperties raised",
        {"type": "object"},
        {"type": "object", "minProperties": 1},
        False,
        True,
        "/minProperties",
        "",
    ),
    (
        "allOf of the same parts",
        {"allOf": [obj(a=STR), obj(required=("a",))]},
        {"allOf": [obj(a=STR), obj(required=("a",))], "description": "v2"},
        True,
        True,
        "",
        "",
    ),
    (
        "draft-04 exclusive maximum dropped",
        {"$schema": D4, **NUM, "maximum": 10, "exclusiveMaximum": True},
        {"$schema": D4, **NUM, "maximum": 10},
        True,
        False,
        "",
        "/maximum",
    ),
    (
        "draft-07 tuple items closed",
        {"$schema": D7, "type": "array", "items": [STR]},
        {"$schema": D7, "type": "array", "items": [STR], "additionalItems": False},
        False,
        True,
        "#/items",
        "",
    ),
    (
        "unevaluatedProperties closes like additionalProperties",
        obj(True, a=STR),
        {**obj(a=STR), "unevaluatedProperties": False},
        True,
        True,
        "",
        "",
    ),
    (
        "remote $ref (not decided)",
        {"type": "object"},
        {"$ref": "https://example.com/s.json"},
        False,
        False,
        "not a local",
        "narrowed",
    ),
]


CASES.append(
    ("old schema wrapped in a wider anyOf", obj(a=INT), {"anyOf": [obj(a=INT), {"type": "null"}]},
     True, False, "", "#/anyOf/1")
)  # fmt: skip


def json_schema(document: Any) -> ParsedSchema:
    return parse("JSON", json.dumps(document))


def _expected(mode: str, backward: bool, forward: bool) -> tuple[bool, list[str]]:
    """Whether `mode` lets the case through, and the directions that must give reasons."""
    base = mode.removesuffix("_TRANSITIVE")
    directions = {
        "NONE": [],
        "BACKWARD": ["BACKWARD"],
        "FORWARD": ["FORWARD"],
        "FULL": ["BACKWARD", "FORWARD"],
    }[base]
    holds = {"BACKWARD": backward, "FORWARD": forward}
    return all(holds[d] for d in directions), [d for d in directions if not holds[d]]


TABLE = [pytest.param(mode, *case[1:], id=f"{mode}-{case[0]}") for mode in MODES for case in CASES]


@pytest.mark.parametrize(("mode", "old", "new", "backward", "forward", "why_b", "why_f"), TABLE)
def test_table(
    mode: str, old: Any, new: Any, backward: bool, forward: bool, why_b: str, why_f: str
) -> None:
    allowed, breaking = _expected(mode, backward, forward)
    versions = [json_schema(old)]
    if mode.endswith("_TRANSITIVE"):  # old, then new: only a transitive check reaches old
        versions.append(json_schema(new))
        assert not incompatibilities(mode.removesuffix("_TRANSITIVE"), json_schema(new), versions)
    reasons = incompatibilities(mode, json_schema(new), versions)
    assert (not reasons) is allowed, reasons
    for direction, fragment in (("BACKWARD", why_b), ("FORWARD", why_f)):
        mine = [r for r in reasons if r.startswith(f"{direction}: #")]
        assert bool(mine) is (direction in breaking), reasons
        if direction in breaking:
            assert any(fragment in r for r in mine), (fragment, reasons)


def test_every_mode_has_twenty_cases_each_way() -> None:
    assert len(CASES) >= 20
    assert sum(b for _, _, _, b, _, _, _ in CASES) >= 10
    assert sum(not b for _, _, _, b, _, _, _ in CASES) >= 10


def _accepts(schema: Any) -> Any:
    draft: Any = jsonschema.validators.validator_for(
        schema, default=jsonschema.validators.Draft202012Validator
    )
    return draft(schema).is_valid


NO_ORACLE = {"recursive $ref"}
"""hypothesis-jsonschema does not generate from recursive references."""
SOUND = [
    pytest.param(writer, reader, id=f"{case}-{direction}")
    for case, old, new, backward, forward, _, _ in CASES
    for direction, reader, writer, holds in (
        ("backward", new, old, backward),
        ("forward", old, new, forward),
    )
    if holds and writer is not False and case not in NO_ORACLE
]


@pytest.mark.parametrize(("writer", "reader"), SOUND)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_compatible_verdicts_hold_for_generated_documents(
    writer: Any, reader: Any, data: st.DataObject
) -> None:
    document = data.draw(from_schema(writer))
    assume(_accepts(writer)(document))  # it does not know every 2020-12 keyword
    assert _accepts(reader)(document), (document, writer, reader)


_SMALL = st.integers(-3, 3)
_LEAF = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["integer", "number"])},
        optional={
            "minimum": _SMALL,
            "maximum": _SMALL,
            "exclusiveMinimum": _SMALL,
            "multipleOf": st.sampled_from([1, 2, 0.5]),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("string")},
        optional={"minLength": st.integers(0, 3), "maxLength": st.integers(0, 3)},
    ),
    st.fixed_dictionaries(
        {
            "enum": st.lists(
                st.sampled_from(["a", "b", 1, None]), min_size=1, max_size=3, unique=True
            )
        }
    ),
    st.sampled_from([{}, {"type": "null"}, {"type": ["string", "integer"]}]),
)
_SCHEMAS = st.recursive(
    _LEAF,
    lambda inner: st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "properties": st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
            },
            optional={
                "required": st.lists(st.sampled_from(["a", "b"]), unique=True),
                "additionalProperties": st.one_of(st.booleans(), inner),
            },
        ),
        st.fixed_dictionaries(
            {"type": st.just("array"), "items": inner},
            optional={"minItems": st.integers(0, 2), "maxItems": st.integers(1, 3)},
        ),
        st.fixed_dictionaries({"anyOf": st.lists(inner, min_size=1, max_size=2)}),
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(reader=_SCHEMAS, writer=_SCHEMAS, data=st.data())
def test_compatible_verdicts_hold_for_generated_schemas(
    reader: Any, writer: Any, data: st.DataObject
) -> None:
    """Random pairs: whenever the rules say the reader accepts the writer's documents, the
    writer's generated documents must all be valid under the reader."""
    if incompatibilities("BACKWARD", json_schema(reader), [json_schema(writer)]):
        return
    try:
        document = data.draw(from_schema(writer))
    except Exception:  # an unsatisfiable writer generates nothing, which is vacuously fine
        return
    assert _accepts(reader)(document), (document, writer, reader)


def test_a_combinatorial_comparison_is_bounded() -> None:
    """Nested unions multiply the pairs to compare: the check stops at its bound, quickly,
    and calls the change breaking rather than guessing."""
    import time

    old: Any = {"type": "string"}
    new: Any = {"type": "string"}
    for level in range(9):
        old = {"anyOf": [old, {"type": "array", "items": old}], "description": f"old {level}"}
        new = {"anyOf": [new, {"type": "array", "items": new}], "description": f"new {level}"}
    started = time.perf_counter()
    reasons = incompatibilities("BACKWARD", json_schema({"anyOf": [new, {"type": "null"}]}),
                                [json_schema(old)])  # fmt: skip
    assert time.perf_counter() - started < 5
    assert any("too many combinations" in r and "treated as breaking" in r for r in reasons)


UNDECIDED_ON_PURPOSE = {"format added"}
"""Breaking by Sluice's conservative reading only: `format` is treated as an assertion,
while jsonschema's default validator treats it as an annotation."""
WITNESSES = {
    ("open: typed property added", "backward"): {"b": "x"},
    ("open: typed property removed", "forward"): {"b": "x"},
    ("tuple grows a position", "forward"): ["x", 1],
    ("recursive $ref", "forward"): {"value": 1.5},
}
"""Documents hypothesis-jsonschema does not generate (extra names of an open model,
2020-12 `prefixItems`, recursive references)."""
BREAKING = [
    pytest.param(case, direction, writer, reader, id=f"{case}-{direction}")
    for case, old, new, backward, forward, _, _ in CASES
    for direction, reader, writer, holds in (("backward", new, old, backward),
                                             ("forward", old, new, forward))
    if not holds and "not decided" not in case and case not in UNDECIDED_ON_PURPOSE
]  # fmt: skip


@pytest.mark.parametrize(("case", "direction", "writer", "reader"), BREAKING)
def test_breaking_verdicts_have_a_witness(case: str, direction: str, writer: Any,
                                          reader: Any) -> None:  # fmt: skip
    """Every change the table calls breaking (and does not call undecided) has a document
    the writer accepts and the reader refuses: the table does not cry wolf."""
    if (case, direction) in WITNESSES:
        witness = WITNESSES[case, direction]
    else:
        witness = find(
            from_schema(writer), lambda doc: _accepts(writer)(doc) and not _accepts(reader)(doc),
            settings=settings(max_examples=2000, database=None,
                              suppress_health_check=list(HealthCheck)),
        )  # fmt: skip
    assert _accepts(writer)(witness) and not _accepts(reader)(witness), witness
