"""The door's side of deletes by filter and of the replaced-ids answer (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

from ingest.plan import (
    EventResult,
    IngestPlan,
    RequestContext,
    plan_events,
    plan_filter_delete,
)
from ingest.replaced import replaced_ids
from schemas.codec import decode
from schemas.deletes import DeleteFilter
from schemas.identity import Identity, partition_for
from schemas.topics import TopicNames
from schemas.validators import validator_for
from schemas.versions import version_of

TOPICS = TopicNames.for_prefix("t.")
CTX = RequestContext("acme", "datahub", {}, "", datetime(2024, 1, 1, tzinfo=UTC))


def test_a_delete_by_filter_is_written_to_every_partition() -> None:
    flt = DeleteFilter(sources=("Datadog", "Snowflake"))
    plan = plan_filter_delete(CTX, flt, "receipt-1", TOPICS, 4)
    assert sorted(m[1] for m in plan.messages) == [0, 1, 2, 3]
    for topic, _partition, key, value, _headers in plan.messages:
        assert topic == TOPICS.ingest_raw and key is None and value is not None
        _, envelope = decode(value, "IngestEnvelope")
        (item,) = envelope["items"]
        assert item["op"] == "delete" and item["receipt_id"] == "receipt-1"
        assert DeleteFilter.from_record(item["delete_filter"]) == flt


def test_filters_match_any_listed_value_and_a_half_open_time_range() -> None:
    day = datetime(2024, 1, 2, tzinfo=UTC)
    flt = DeleteFilter(types=("a", "b"), time_from=day, time_to=datetime(2024, 1, 3, tzinfo=UTC))
    assert flt.matches("b", "any", day)
    assert not flt.matches("c", "any", day)
    assert not flt.matches("a", "any", datetime(2024, 1, 3, tzinfo=UTC))
    assert DeleteFilter().is_all and not flt.is_all


def test_replaced_ids_are_those_stored_before_or_earlier_in_the_request() -> None:
    plan = IngestPlan(results=[
        EventResult(0, "old", True), EventResult(1, "new", True), EventResult(2, "new", True),
        EventResult(3, "bad", False), EventResult(4, "fresh", True), EventResult(5, "mine", True),
        EventResult(6, "later", True),
    ])  # fmt: skip
    partitions = 4
    offsets = {p: 100 + p for p in range(partitions)}  # this request's envelope in each

    def at(event_id: str, offset_delta: int) -> int:
        """A version of `event_id` at its partition's envelope offset plus `offset_delta`."""
        partition = partition_for(Identity("acme", "datahub", event_id).key(), partitions)
        return version_of(offsets[partition] + offset_delta, 3)

    stored = {
        "old": at("old", -1),  # stored from an earlier envelope: replaced
        "bad": at("bad", -1),  # rejected here: not in the answer
        "mine": at("mine", 0),  # this request's own version, stored already: not replaced
        "later": at("later", +1),  # a later request's version: this one replaced nothing
    }
    assert replaced_ids(CTX, plan, stored, offsets, partitions) == ["old", "new"]


def test_a_compiled_plan_answers_from_its_ids() -> None:
    # A compiled plan carries ids only; repeats within the request still count, with or
    # without stored versions, and its results appear when asked for.
    plan = IngestPlan(every_id=["a", "b", "a", "c", "b"])
    assert replaced_ids(CTX, plan, {}, {}, 4) == ["a", "b"]
    assert replaced_ids(CTX, IngestPlan(every_id=["a", "b"]), {}, {}, 4) == []
    offsets = {p: 100 for p in range(4)}
    assert replaced_ids(CTX, plan, {"c": version_of(50, 0)}, offsets, 4) == ["a", "c", "b"]
    assert plan.carried_ids() == ["a", "b", "a", "c", "b"]
    assert [(r.index, r.event_id, r.accepted) for r in plan.results][:2] == [
        (0, "a", True), (1, "b", True)
    ]  # fmt: skip


def _native(body: str) -> bytes:
    return (
        b'{"type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{}' + body.encode() + b"}"
    )


def _planned(raws: list[bytes]) -> IngestPlan:
    ctx = RequestContext("acme", "native", {}, "", datetime(2024, 1, 1, tzinfo=UTC))
    return plan_events(ctx, raws, validator_for("native"), TOPICS, 4)


def test_carried_ids_skip_events_without_a_readable_id() -> None:
    raws = [_native(',"id":"a"'), _native(""), b'{"id":7}', b"not json", _native(',"id":"b"')]
    assert _planned(raws).carried_ids() == ["a", "b"]


def test_replaced_is_unknown_when_the_lookup_failed() -> None:
    from ingest.plan import IngestPlan

    assert replaced_ids(CTX, IngestPlan(), None, {}, 4) is None


def test_ids_with_invalid_utf8_are_skipped_not_fatal() -> None:
    assert _planned([_native(',"id":"ok"'), b'{"id": "\xff"}']).carried_ids() == ["ok"]
