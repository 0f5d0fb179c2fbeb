"""The replay core's pure half: corrections, lineage, stable ids, bytes kept exactly."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest import replay
from ingest.replay import (
    Refusal,
    ReplayDeps,
    ReplayError,
    corrected_body,
    plan_replay,
    replay_one,
    summarize,
)
from schemas.codec import decode
from schemas.identity import Identity, partition_for
from schemas.topics import TopicNames
from schemas.validators import VALIDATORS
from store.dead_letters import StoredDeadLetter

TOPICS = TopicNames.for_prefix("t.")
GOOD = b'{"id":"ev-1","type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{}}'
BAD = b'{"id":"ev-1","type":"t","source":"s","time":"yesterday","data":{}}'


def _dead(raw: bytes = BAD, **changes: Any) -> StoredDeadLetter:
    now = datetime(2024, 1, 2, tzinfo=UTC)
    base = StoredDeadLetter(
        dead_letter_id=uuid.uuid4(), tenant="acme", family="native", route={"r": "1"},
        content_type="application/json", raw=raw, stage="stream",
        reasons=[{"code": "invalid_timestamp", "path": "$.time", "message": "m"}],
        received_at=now, event_id="ev-1", attempt=1, replay_of=None, source_topic=None,
        source_partition=None, source_offset=None, status="pending", stored_at=now,
        resolved_at=None, outcome=None,
    )  # fmt: skip
    return replace(base, **changes)


def _items(plan_messages: list[Any]) -> list[dict[str, Any]]:
    items = []
    for topic, _p, _k, value, _h in plan_messages:
        if topic == TOPICS.ingest_raw:
            items += decode(value, "IngestEnvelope")[1]["items"]
    return items


def _dead_letters(plan_messages: list[Any]) -> list[dict[str, Any]]:
    return [decode(m[3], "DeadLetter")[1] for m in plan_messages if m[0] == TOPICS.dlq]


def test_the_body_is_the_raw_a_replacement_or_the_patched_raw() -> None:
    assert corrected_body(BAD, None) == BAD
    assert corrected_body(BAD, b"new") == b"new"
    patch = [{"op": "replace", "path": "/time", "value": "2024-01-01T00:00:00Z"}]
    assert json.loads(corrected_body(BAD, None, patch)) == json.loads(GOOD)


@pytest.mark.parametrize(
    ("raw", "patch"),
    [
        (BAD, [{"op": "remove", "path": "/nope"}]),
        (b"\xff\xfe not json", [{"op": "remove", "path": "/time"}]),
        (BAD, "not a patch"),
    ],
)
def test_a_patch_that_does_not_apply_is_a_400(raw: bytes, patch: Any) -> None:
    with pytest.raises(ReplayError) as caught:
        corrected_body(raw, None, patch)
    assert caught.value.refusal is Refusal.INVALID and caught.value.code == "bad_patch"


async def test_the_patch_is_applied_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = _dead()
    threads: list[threading.Thread] = []

    async def found(*_args: Any) -> StoredDeadLetter:
        return dead

    def patched(*_args: Any) -> bytes:
        threads.append(threading.current_thread())
        return GOOD

    monkeypatch.setattr(replay, "get_or_not_found", found)
    monkeypatch.setattr(replay, "corrected_body", patched)
    deps = ReplayDeps(None, None, TOPICS, 4)  # type: ignore[arg-type]
    result = await replay_one(deps, "acme", dead.id, patch=[], dry_run=True)
    assert result.outcome == "valid"
    assert len(threads) == 1 and threads[0] is not threading.main_thread()


def test_a_corrected_replay_is_one_event_with_lineage_on_the_ids_partition() -> None:
    dead = _dead()
    plan = plan_replay(dead, GOOD, TOPICS, 4)
    (item,) = _items(plan.messages)
    assert item["event_id"] == "ev-1" and item["raw"] == GOOD
    assert item["attempt"] == 2 and item["replay_of"] == dead.id
    (message,) = plan.messages
    assert message[1] == partition_for(Identity("acme", "native", "ev-1").key(), 4)
    envelope = decode(message[3], "IngestEnvelope")[1]
    assert envelope["tenant"] == "acme" and envelope["route"] == {"r": "1"}
    assert summarize(dead, plan, dry_run=False).outcome == "replayed"


def test_a_still_invalid_replay_is_a_new_dead_letter_with_attempt_and_lineage() -> None:
    dead = _dead(attempt=3)
    plan = plan_replay(dead, BAD, TOPICS, 4)
    (record,) = _dead_letters(plan.messages)
    assert record["attempt"] == 4 and record["replay_of"] == dead.id
    assert record["raw"] == BAD and record["stage"] == "door"
    result = summarize(dead, plan, dry_run=False)
    assert result.outcome == "still_invalid"
    assert result.new_dead_letter_ids == [record["dead_letter_id"]]
    assert result.reasons[0]["code"] == "invalid_timestamp"
    assert summarize(dead, plan, dry_run=True).outcome == "invalid"


def test_an_event_without_id_gets_a_stable_id_so_replays_collapse() -> None:
    no_id = b'{"type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{}}'
    dead = _dead(no_id, event_id=None)
    first = _items(plan_replay(dead, no_id, TOPICS, 4).messages)
    again = _items(plan_replay(dead, no_id, TOPICS, 4).messages)
    assert first[0]["event_id"] == again[0]["event_id"] == dead.id


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe\x00garbage", b'\xef\xbb\xbf{"type": 1}', b"\x1f\x8b\x08\x00broken gzip"],
)
def test_raw_bytes_survive_a_failed_replay_exactly(raw: bytes) -> None:
    (record,) = _dead_letters(plan_replay(_dead(raw), raw, TOPICS, 4).messages)
    assert record["raw"] == raw


def test_an_unsplittable_body_is_split_again_when_replayed() -> None:
    dead = _dead(b"[{oops", reasons=[{"code": "unsplittable_body", "path": "$", "message": ""}])
    second = GOOD.replace(b"ev-1", b"ev-2")
    plan = plan_replay(dead, b"[" + GOOD + b"," + second + b"]", TOPICS, 4)
    assert sorted(i["event_id"] for i in _items(plan.messages)) == ["ev-1", "ev-2"]


def test_a_fixed_rule_turns_the_same_bytes_into_an_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """The door re-validates with the family's current validator: fix the rule, replay as is."""
    dead = _dead()
    assert summarize(dead, plan_replay(dead, BAD, TOPICS, 4), True).outcome == "invalid"
    strict = VALIDATORS["native"]

    def lenient(raw: bytes, route: Any) -> Any:
        """The rule, fixed: "yesterday" is read as a date (for this test)."""
        return strict(raw.replace(b"yesterday", b"2024-01-01T00:00:00Z"), route)

    monkeypatch.setitem(VALIDATORS, "native", lenient)
    plan = plan_replay(dead, BAD, TOPICS, 4)
    assert summarize(dead, plan, dry_run=False).outcome == "replayed"
    assert _items(plan.messages)[0]["raw"] == BAD


def test_a_replayed_body_of_more_events_than_the_door_takes_is_refused() -> None:
    dead = _dead(b"[{oops", reasons=[{"code": "unsplittable_body", "path": "$", "message": ""}])
    body = b"[" + b",".join(GOOD.replace(b"ev-1", b"ev-%d" % n) for n in range(11)) + b"]"
    assert len(plan_replay(dead, body, TOPICS, 4, max_events=11).results) == 11
    with pytest.raises(ReplayError) as refused:
        plan_replay(dead, body, TOPICS, 4, max_events=10)
    assert refused.value.refusal is Refusal.TOO_LARGE and refused.value.code == "too_many_events"


async def test_a_replay_charges_its_events_before_claiming(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = _dead(b"[{oops", reasons=[{"code": "unsplittable_body", "path": "$", "message": ""}])
    body = b"[" + GOOD + b"," + GOOD.replace(b"ev-1", b"ev-2") + b"]"
    charged: list[int] = []

    async def found(*_args: Any) -> StoredDeadLetter:
        return dead

    async def over_budget(count: int) -> None:
        charged.append(count)
        raise RuntimeError("over budget")

    monkeypatch.setattr(replay, "get_or_not_found", found)
    deps = ReplayDeps(None, None, TOPICS, 4)  # type: ignore[arg-type]  # never reached
    with pytest.raises(RuntimeError, match="over budget"):
        await replay_one(deps, "acme", dead.id, body=body, admit=over_budget)
    assert charged == [2]
    dry = await replay_one(deps, "acme", dead.id, body=body, dry_run=True, admit=over_budget)
    assert dry.outcome == "valid" and charged == [2]  # a dry run costs nothing
