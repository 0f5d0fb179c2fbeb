"""A dakkio data source's `schema` ↔ its data contract's JSON Schema: the round trip, the
problems reported, and the compatibility verdicts the mapping is designed for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.compatibility import incompatibilities, parse
from schemas.contracts import compile_schema
from schemas.families.dakkio_schema import contract_of, fields_of, parse_fields

SENSOR = {
    "temperature": {"type": "number", "unit": "celsius", "description": "reading",
                    "min": -40, "max": 85.5},
    "humidity": {"type": "number", "unit": "percent", "required": True},
    "label": {"type": "string"},
    "on": {"type": "boolean"},
}  # fmt: skip


def contract(schema: dict[str, Any]) -> str:
    fields, problems = parse_fields(schema)
    assert problems == []
    return contract_of(fields)


def test_the_mapping_round_trips_and_is_stable() -> None:
    text = contract(SENSOR)
    assert fields_of(text) == SENSOR
    reordered = dict(reversed(list(SENSOR.items())))
    assert json.loads(contract(reordered)) == json.loads(text)


def test_the_contract_validates_points_values() -> None:
    validator = compile_schema(contract(SENSOR))
    assert validator.is_valid({"values": {"humidity": 40, "temperature": 20}, "metadata": {"a": 1}})
    refused = ({"temperature": 20}, {"humidity": 40, "temperature": 90},
               {"humidity": 40, "wind": 1}, {"humidity": "40"},
               {"humidity": 1, "on": 1})  # fmt: skip
    for values in refused:
        assert not validator.is_valid({"values": values}), values
    assert not validator.is_valid({"metadata": {}})


@pytest.mark.parametrize(
    ("change", "compatible"),
    [
        ({**SENSOR, "co2": {"type": "number"}}, True),
        ({**SENSOR, "temperature": {"type": "number", "unit": "kelvin"}}, True),
        ({k: v for k, v in SENSOR.items() if k != "label"}, False),
        ({**SENSOR, "label": {"type": "number"}}, False),
        ({**SENSOR, "on": {"type": "boolean", "required": True}}, False),
        ({**SENSOR, "temperature": {"type": "number", "min": 0}}, False),
        ({**SENSOR, "co2": {"type": "number", "required": True}}, False),
    ],
)
def test_backward_compatibility_of_typical_changes(
    change: dict[str, Any], compatible: bool
) -> None:
    reasons = incompatibilities("BACKWARD", parse("JSON", contract(change)),
                                [parse("JSON", contract(SENSOR))])  # fmt: skip
    assert (reasons == []) is compatible, reasons


@pytest.mark.parametrize(
    ("schema", "paths"),
    [
        ([], [()]),
        ({}, [()]),
        ({"t": {"type": "integer"}}, [("t", "type")]),
        ({"t": {"type": "number", "min": 5, "max": 1}}, [("t", "min")]),
        ({"t": {"type": "number", "min": True}}, [("t", "min")]),
        ({"t": {"type": "boolean", "max": 1}}, [("t", "max")]),
        (
            {"t": {"type": "string", "unit": 3, "required": "yes"}},
            [("t", "unit"), ("t", "required")],
        ),
        ({"t": {"type": "string", "extra": 1}}, [("t",)]),
        ({"": {"type": "string"}, "u": None}, [("",), ("u",)]),
    ],
)
def test_every_problem_names_its_place(schema: Any, paths: list[tuple[str, ...]]) -> None:
    fields, problems = parse_fields(schema)
    assert [path for path, _ in problems] == paths and fields == []


def test_a_schema_in_another_shape_shows_what_maps() -> None:
    inner = {"n": {"type": "integer"}, "x": {"anyOf": [{"type": "string"}]}}
    other = {"type": "object",
             "properties": {"values": {"required": ["n"], "properties": inner}}}  # fmt: skip
    assert fields_of(json.dumps(other)) == {"n": {"type": "number", "required": True},
                                            "x": {"type": "any"}}  # fmt: skip
    assert fields_of("{}") == {} and fields_of("not json") == {}
