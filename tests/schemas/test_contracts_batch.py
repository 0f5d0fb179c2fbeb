"""Checking an envelope's events against their contract in one call (`ContractValidator.
all_valid`) decides exactly what checking them one by one decides: for each contract below
(refs, drafts 4 to 2020-12 with their own exclusive bounds and format rules, patterns,
enums) and each set of documents, "all valid" in one call iff each is valid alone; and
`enforce` returns the same outcomes as the one-by-one check, batched or not."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from schemas.contracts import Contract, Contracts, compile_schema, enforce, violations
from schemas.outcome import Rejected, ValidEvent

CONTRACTS: list[dict[str, Any]] = [
    {"type": "object", "required": ["n"], "additionalProperties": False,
     "properties": {"n": {"$ref": "#/$defs/count"}, "r": {"enum": ["eu", "us"]}},
     "$defs": {"count": {"type": "integer", "minimum": 0, "maximum": 10}}},
    {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
     "properties": {"n": {"type": "number", "minimum": 0, "exclusiveMinimum": True}}},
    {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
     "definitions": {"mail": {"type": "string", "format": "email"}},
     "properties": {"m": {"$ref": "#/definitions/mail"}}},
    {"type": "object", "properties": {"m": {"type": "string", "format": "email"},
                                      "s": {"type": "string", "pattern": "^c[0-9]+$"}}},
    {"$schema": "http://json-schema.org/draft-04/schema#", "id": "urn:mine",
     "properties": {"n": {"$ref": "urn:mine#/definitions/d"}},
     "definitions": {"d": {"type": "integer"}}},
]  # fmt: skip
DOCUMENTS: list[Any] = [
    {"n": 1},
    {"n": 0},
    {"n": 11},
    {"n": "x"},
    {"n": 2, "r": "eu"},
    {"n": 2, "r": "asia"},
    {"m": "a@b.example"},
    {"m": "not-mail"},
    {"s": "c12"},
    {"s": "d12"},
    {},
    [],
    None,
]


@pytest.mark.parametrize("schema", CONTRACTS)
def test_one_call_decides_as_each_alone(schema: dict[str, Any]) -> None:
    validator = compile_schema(json.dumps(schema))
    alone = [validator.is_valid(d) for d in DOCUMENTS]
    batched = 0
    for size in (1, 2, 3):
        for chosen in itertools.combinations(range(len(DOCUMENTS)), size):
            batch = [DOCUMENTS[i] for i in chosen]
            if validator.all_valid(batch):
                assert all(alone[i] for i in chosen), batch
                batched += 1
            elif "id" not in schema:  # batched: "not all" means one is invalid
                assert not all(alone[i] for i in chosen), batch
    assert (batched > 0) is ("id" not in schema)  # a contract naming itself is never batched


def _event(index: int, data: Any) -> ValidEvent:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    return ValidEvent(event_id=f"e-{index}", type="t.x", source="/s", subject=None,
                      time=when, data_json=json.dumps(data))  # fmt: skip


@pytest.mark.parametrize("schema", CONTRACTS)
def test_enforce_agrees_with_the_one_by_one_check(schema: dict[str, Any]) -> None:
    contract = Contract("native.t.x", 1, 1001, compile_schema(json.dumps(schema)))
    contracts = Contracts({("t", "native.t.x"): contract}, 1)
    for chosen in itertools.combinations(range(len(DOCUMENTS)), 3):
        events = [_event(i, DOCUMENTS[i]) for i in chosen]
        got = enforce(contracts, "t", "native", events)
        for event, outcome in zip(events, got, strict=True):
            found = violations(contract, msgspec.json.decode(event.data_json))
            if found:
                assert isinstance(outcome, Rejected) and list(outcome.violations) == found
            else:
                assert outcome == msgspec.structs.replace(event, schema_id=1001)
