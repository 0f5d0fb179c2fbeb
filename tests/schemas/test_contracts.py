"""Data contracts, pure: subjects, what each one's schema validates, compilation and its
bounds (drafts, regex engine, no remote `$ref`), and the bounded violations."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.contracts import (
    MAX_MESSAGE_CHARS,
    Contract,
    Contracts,
    InvalidContract,
    compile_schema,
    document_of,
    enforce,
    is_contract_subject,
    subject_of,
    violations,
)
from schemas.families.dakkio import validate_dakkio
from schemas.native import validate_native
from schemas.outcome import MAX_VIOLATIONS, Rejected, ValidEvent
from schemas.validators import validate_all

USAGE = {
    "type": "object",
    "required": ["units", "plan"],
    "properties": {
        "units": {"type": "integer", "minimum": 0},
        "plan": {"enum": ["free", "pro"]},
        "region": {"type": "string", "pattern": "^[a-z]{2}-[a-z]+-[0-9]$"},
    },
}


def _contract(schema: Any, subject: str = "native.usage", version: int = 2) -> Contract:
    return Contract(subject, version, 1001, compile_schema(json.dumps(schema)))


def _native(type_: str, data: Any, event_id: str = "e1") -> bytes:
    return json.dumps({"id": event_id, "type": type_, "source": "s",
                       "time": "2026-01-01T00:00:00Z", "data": data}).encode()  # fmt: skip


def test_subjects_of_each_family() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    event = ValidEvent("1", "usage.api_call", "ds", "abc", at, "{}")
    assert subject_of("native", event) == "native.usage.api_call"
    assert subject_of("dynatrace", event) == "dynatrace.usage.api_call"
    assert subject_of("baselime", event) == "baselime.ds"
    assert subject_of("dakkio", event) == "dakkio.abc"
    assert subject_of("posthog", event) is None
    assert is_contract_subject("native.x") and is_contract_subject("dakkio.ab12")
    assert not is_contract_subject("native.") and not is_contract_subject("sluice.events-value")
    assert not is_contract_subject("posthog.x")


def test_a_dakkio_points_contract_sees_its_values_and_metadata_only() -> None:
    route = {"received_at": "2026-01-01T00:00:00+00:00"}
    raw = json.dumps({"bucketId": "a" * 24, "dataSourceId": "B" * 24,
                      "values": {"t": 21.5}, "metadata": {"room": "x"}}).encode()  # fmt: skip
    event = validate_dakkio(raw, route)
    assert isinstance(event, ValidEvent)
    assert subject_of("dakkio", event) == "dakkio." + "b" * 24
    assert document_of("dakkio", event) == {"values": {"t": 21.5}, "metadata": {"room": "x"}}
    bare = validate_dakkio(json.dumps({"bucketId": "a" * 24, "dataSourceId": "b" * 24,
                                       "values": {"t": 1}}).encode(), route)  # fmt: skip
    assert isinstance(bare, ValidEvent)
    assert document_of("dakkio", bare) == {"values": {"t": 1}}


def test_violations_name_pointer_subject_version_and_are_bounded() -> None:
    contract = _contract(USAGE)
    assert violations(contract, {"units": 3, "plan": "pro", "region": "eu-west-1"}) == []
    found = violations(contract, {"units": -1, "region": "EU"})
    by_path = {v.path: v for v in found}
    assert set(by_path) == {"", "/units", "/region"}
    assert all(v.code == "schema_violation" for v in found)
    assert all("(native.usage version 2, schema 1001)" in v.message for v in found)
    assert "plan" in by_path[""].message
    # every property wrong, with a huge value: at most MAX_VIOLATIONS + 1, messages cut
    many = {"type": "object", "additionalProperties": {"type": "integer"}}
    wide = violations(_contract(many), {f"k~/{i}": "x" * 10_000 for i in range(100)})
    assert len(wide) == MAX_VIOLATIONS + 1
    assert wide[-1].code == "too_many_violations"
    assert all(len(v.message) <= MAX_MESSAGE_CHARS for v in wide)
    assert wide[0].path.startswith("/k~0~1")  # RFC 6901 escapes


def test_enforce_rejects_breakers_stamps_passers_and_leaves_other_events_alone() -> None:
    contracts = Contracts({("acme", "native.usage"): _contract(USAGE)}, generation=1)
    raws = [_native("usage", {"units": 1, "plan": "free"}, "ok"),
            _native("usage", {"units": "1"}, "bad"),
            _native("other", {"anything": True}, "free")]  # fmt: skip
    plain = validate_all(validate_native, raws, {})
    ok, bad, other = enforce(contracts, "acme", "native", plain)
    assert isinstance(ok, ValidEvent) and ok.schema_id == 1001
    assert isinstance(bad, Rejected) and bad.event_id == "bad"
    assert {v.path for v in bad.violations} == {"", "/units"}
    assert other is plain[2] and isinstance(other, ValidEvent) and other.schema_id is None
    # another tenant's events are not validated by acme's contract
    assert enforce(contracts, "globex", "native", plain) is plain
    assert contracts.covers("acme", "native") and not contracts.covers("acme", "baselime")


@pytest.mark.parametrize(
    "schema",
    [
        {"$schema": "http://json-schema.org/draft-03/schema#"},
        {"$schema": "https://example.com/my-draft"},
        {"type": "object", "properties": {"a": {"pattern": "(a)\\1"}}},  # backreference
        {"pattern": "(?=a)a"},  # look-ahead: needs backtracking
        {"$ref": "http://127.0.0.1:9/remote.json"},  # never fetched
        {"type": 12},
        [1, 2],
    ],
)
def test_schemas_a_contract_refuses(schema: Any) -> None:
    with pytest.raises(InvalidContract):
        compile_schema(json.dumps(schema))


@pytest.mark.parametrize(
    "draft",
    [
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2019-09/schema",
        "http://json-schema.org/draft-07/schema#",
        "http://json-schema.org/draft-06/schema#",
        "http://json-schema.org/draft-04/schema#",
    ],
)
def test_the_drafts_a_contract_takes(draft: str) -> None:
    validator = compile_schema(json.dumps({"$schema": draft, "type": "object"}))
    assert validator.is_valid({}) and not validator.is_valid([])


def test_a_nested_quantifier_pattern_cannot_backtrack_catastrophically() -> None:
    """`^(a+)+$` takes exponential time in a backtracking engine on 'aaa…!'; the regex
    crate's automaton matches it in time linear in the input."""
    contract = _contract({"properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}})
    began = time.perf_counter()
    found = violations(contract, {"s": "a" * 100_000 + "!"})
    assert time.perf_counter() - began < 0.5
    assert [v.path for v in found] == ["/s"]
    assert violations(contract, {"s": "a" * 100_000}) == []


def test_local_refs_resolve() -> None:
    schema = {"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}}
    contract = _contract(schema)
    assert violations(contract, {"a": 1}) == []
    assert [v.path for v in violations(contract, {"a": "x"})] == ["/a"]
