from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.codec import decode
from schemas.identity import Identity
from schemas.outcome import Outcome
from streams import process as process_module
from streams.process import Position, process_envelope, version_of

AT = Position("t.ingest.raw", 2, 40)


def _envelope(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": "r", "tenant": "acme", "family": "native", "route": {},
        "content_type": "application/json", "received_at": datetime(2024, 1, 1, tzinfo=UTC),
        "items": list(items),
    }  # fmt: skip


def _item(event_id: str, raw: bytes, op: str = "upsert") -> dict[str, Any]:
    return {"op": op, "event_id": event_id, "raw": raw, "attempt": 1, "replay_of": None,
            "receipt_id": None}  # fmt: skip


GOOD = b'{"type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{"v":1}}'


def test_valid_items_get_versions_from_their_position() -> None:
    out = process_envelope(_envelope(_item("a", GOOD), _item("a", GOOD)), AT)
    versions = [decode(e.value, "CanonicalEvent")[1]["version"] for e in out.events]
    assert versions == [version_of(40, 0), version_of(40, 1)]
    assert version_of(41, 0) > version_of(40, 5)
    assert out.events[0].key == Identity("acme", "native", "a").key()


def test_invalid_items_are_dead_lettered_raw_with_stable_ids() -> None:
    bad = b'{"type": 7}'
    first = process_envelope(_envelope(_item("a", GOOD), _item("b", bad)), AT)
    again = process_envelope(_envelope(_item("a", GOOD), _item("b", bad)), AT)
    assert len(first.events) == 1 and len(first.dead_letters) == 1
    record = decode(first.dead_letters[0].value, "DeadLetter")[1]
    assert record["raw"] == bad and record["stage"] == "stream"
    assert (record["source_partition"], record["source_offset"]) == (2, 40)
    assert first.dead_letters[0].dead_letter_id == again.dead_letters[0].dead_letter_id


def test_deletes_become_tombstones_with_a_version() -> None:
    out = process_envelope(_envelope(_item("a", GOOD), _item("a", b"", op="delete")), AT)
    assert [t.version for t in out.tombstones] == [version_of(40, 1)]
    assert out.tombstones[0].key == Identity("acme", "native", "a").key()


def test_an_exception_on_one_event_dead_letters_only_that_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = process_module.VALIDATORS["native"]

    def explode(raw: bytes, route: Mapping[str, str]) -> Outcome:
        if b"boom" in raw:
            raise RuntimeError("validator bug")
        return real(raw, route)

    monkeypatch.setitem(process_module.VALIDATORS, "native", explode)
    out = process_envelope(_envelope(_item("a", b'{"boom":1}'), _item("b", GOOD)), AT)
    assert len(out.events) == 1
    (dead,) = out.dead_letters
    assert decode(dead.value, "DeadLetter")[1]["reasons"][0]["code"] == "processing_error"


def test_a_delete_by_filter_becomes_a_filter_deletion_at_its_position() -> None:
    from schemas.deletes import DeleteFilter, filter_key

    flt = DeleteFilter(types=("t",))
    item = {**_item("", b"", op="delete"), "receipt_id": "r-1", "delete_filter": flt.to_record()}
    out = process_envelope(_envelope(_item("a", GOOD), item), AT)
    assert len(out.events) == 1 and not out.tombstones
    (deletion,) = out.filter_deletions
    assert deletion.key == filter_key("r-1")
    record = decode(deletion.value, "FilterDeletion")[1]
    assert record["version"] == version_of(40, 1) and record["tenant"] == "acme"
    assert DeleteFilter.from_record(record["filter"]) == flt


def test_tombstones_carry_their_receipt_and_request_time() -> None:
    from schemas.topics import TopicNames
    from streams.outputs import to_messages

    item = {**_item("a", b"", op="delete"), "receipt_id": "r-2"}
    out = process_envelope(_envelope(item), AT)
    ((topic, partition, _key, value, headers),) = to_messages(out, 2, TopicNames.for_prefix("t."))
    assert (topic, partition, value) == ("t.events", 2, None)
    sent = dict(headers or [])
    assert sent["sluice.version"] == str(version_of(40, 0)).encode()
    assert sent["sluice.deletion"] == b"r-2"
    assert int(sent["sluice.requested_at"]) == 1704067200_000000


def test_unstorable_items_of_an_envelope_are_dead_lettered_and_the_rest_go_on() -> None:
    """The stream scans an envelope once for NUL and huge numbers (items a door of another
    version, or any producer, let through) and checks item by item only when it fires."""
    huge = GOOD.replace(b'"v":1', b'"v":1e5000')
    nul = GOOD.replace(b'"type":"t"', b'"type":"t\\u0000"')
    items = [_item("a", GOOD), _item("b", huge), _item("c", nul), _item("d", GOOD)]
    out = process_envelope(_envelope(*items), AT)
    assert [decode(e.value, "CanonicalEvent")[1]["event_id"] for e in out.events] == ["a", "d"]
    reasons = [decode(d.value, "DeadLetter")[1]["reasons"][0]["code"] for d in out.dead_letters]
    assert reasons == ["unsupported_number", "unsupported_character"]


def test_a_contract_dead_letters_breakers_and_stamps_passers_with_its_schema_id() -> None:
    from schemas.contracts import Contract, Contracts, compile_schema

    schema = '{"type":"object","required":["v"],"properties":{"v":{"type":"integer"}}}'
    contracts = Contracts({("acme", "native.t"): Contract("native.t", 3, 1042,
                                                          compile_schema(schema))})  # fmt: skip
    breaker = b'{"type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{"v":"x"}}'
    untyped = b'{"type":"u","source":"s","time":"2024-01-01T00:00:00Z","data":{"v":"x"}}'
    out = process_envelope(
        _envelope(_item("a", GOOD), _item("b", breaker), _item("c", untyped)), AT, contracts
    )
    stored = {decode(e.value, "CanonicalEvent")[1]["event_id"]:
              decode(e.value, "CanonicalEvent")[1]["schema_id"] for e in out.events}  # fmt: skip
    assert stored == {"a": 1042, "c": None}
    (dead,) = out.dead_letters
    record = decode(dead.value, "DeadLetter")[1]
    assert record["raw"] == breaker and record["event_id"] == "b"
    ((code, path, message),) = [(r["code"], r["path"], r["message"]) for r in record["reasons"]]
    assert (code, path) == ("schema_violation", "/v")
    assert message.endswith("(native.t version 3, schema 1042)")
    assert out.rejected == []  # a contract's rejection is not a door bug
    # without contracts, the same envelope is stored whole, as before
    plain = process_envelope(_envelope(_item("b", breaker)), AT)
    assert len(plain.events) == 1 and decode(plain.events[0].value)[1]["schema_id"] is None
