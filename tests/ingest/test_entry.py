"""The one ingest entry: each outcome kind, what it published, and what it admitted.

Kafka is a fake that acknowledges at once (the publisher's accounting has its own tests);
nothing here reaches a service.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from ingest import entry
from ingest.entry import Body, IngestDeps, IngestOptions, IngestRequest, Kind, ingest
from ingest.plan import COMPILED, RequestContext
from ingest.publish import Publisher
from ingest.split import Unsplittable, given, refuse, split_body, split_json_events
from runtime.kafka import AsyncProducer, OutgoingMessage
from schemas.outcome import Outcome
from schemas.topics import TopicNames
from schemas.validators import validator_for

TOPICS = TopicNames.for_prefix("t")


class _Acknowledged:
    def __init__(self, messages: Sequence[OutgoingMessage]) -> None:
        self.offsets = {(m[0], m[1]): 7 for m in messages}

    async def wait(self) -> None:
        return None


class _Kafka:
    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    def send_batch(
        self, messages: Sequence[OutgoingMessage], *, record_offsets: bool = False
    ) -> _Acknowledged:
        self.sent += messages
        return _Acknowledged(messages)


class _Door:
    def __init__(self) -> None:
        self.kafka = _Kafka()
        self.admitted: list[tuple[str, int]] = []
        self.tenants: list[str | None] = []
        publisher = Publisher(cast(AsyncProducer, self.kafka), 10**9)
        self.deps = IngestDeps(TOPICS, 4, publisher, self._admit, cast(Any, None), cast(Any, None))

    async def _admit(self, key: str, count: int, tenant: str | None = None) -> None:
        self.admitted.append((key, count))
        self.tenants.append(tenant)

    def topics_sent(self) -> list[str]:
        return [m[0] for m in self.kafka.sent]


def _ctx(caller: str | None = "prefix-a") -> RequestContext:
    return RequestContext("acme", "native", {}, "application/json", datetime.now(UTC),
                          caller=caller)  # fmt: skip


EVENT = b'{"type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{}}'
WITH_ID = b'{"id":"e1","type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{}}'


async def test_accepted_events_are_admitted_against_the_caller_then_published() -> None:
    door = _Door()
    body = Body(b"[" + EVENT + b"," + EVENT + b"]")
    outcome = await ingest(door.deps, IngestRequest(_ctx(), body, split_json_events))
    assert outcome.kind is Kind.ACCEPTED and outcome.plan.accepted == 2
    assert door.admitted == [("prefix-a", 2)] and door.tenants == ["acme"]  # and its tenant
    assert set(door.topics_sent()) == {TOPICS.ingest_raw}
    assert set(outcome.offsets.values()) == {7}


async def test_a_request_without_a_key_spends_its_tenants_budget() -> None:
    door = _Door()
    await ingest(door.deps, IngestRequest(_ctx(caller=None), Body(EVENT)))
    assert door.admitted == [("tenant:acme", 1)]


@pytest.mark.parametrize(
    ("body", "split", "kind"),
    [
        (Body(b"\x1f\x8b", undecodable="gzip body is truncated"), split_json_events,
         Kind.UNDECODABLE),
        (Body(b"not json"), split_json_events, Kind.UNSPLITTABLE),
        (Body(EVENT), refuse("dataset 'x' does not exist"), Kind.UNSPLITTABLE),
    ],
)  # fmt: skip
async def test_a_body_that_cannot_be_split_is_one_dead_letter_and_spends_no_budget(
    body: Body, split: Any, kind: Kind
) -> None:
    door = _Door()
    outcome = await ingest(door.deps, IngestRequest(_ctx(), body, split))
    assert outcome.kind is kind and outcome.reason
    (result,) = outcome.plan.results
    assert not result.accepted and result.reasons[0].code == "unsplittable_body"
    assert door.topics_sent() == [TOPICS.dlq] and door.admitted == []


async def test_a_splitter_hitting_the_recursion_limit_is_unsplittable_in_every_family() -> None:
    def deep(_body: bytes) -> list[bytes]:
        raise RecursionError("maximum recursion depth exceeded")

    with pytest.raises(Unsplittable, match="nests too deeply"):
        split_body(deep, b"[[[[")
    door = _Door()
    outcome = await ingest(door.deps, IngestRequest(_ctx(), Body(b"[[[["), deep))
    assert outcome.kind is Kind.UNSPLITTABLE and door.topics_sent() == [TOPICS.dlq]


async def test_outside_the_event_bounds_nothing_is_published() -> None:
    door = _Door()
    options = IngestOptions(min_events=1, max_events=2)
    few = await ingest(door.deps, IngestRequest(_ctx(), Body(b"[]"), split_json_events, options))
    raws = [EVENT] * 3
    many = await ingest(door.deps, IngestRequest(_ctx(), Body(b""), given(raws), options))
    assert (few.kind, many.kind) == (Kind.NO_EVENTS, Kind.TOO_MANY_EVENTS)
    assert len(many.events) == 3
    assert door.kafka.sent == [] and door.admitted == []


async def test_a_body_of_too_many_items_is_refused_before_it_is_split() -> None:
    """Three million array items: counted in the bytes, never decoded one object each."""

    def never(_body: bytes) -> list[bytes]:
        raise AssertionError("the splitter ran on a body already known to be too large")

    door = _Door()
    options = IngestOptions(min_events=1, max_events=10_000)
    for body in (b"[" + b"0," * 3_000_000 + b"0]", b'{"events":[' + b"{}," * 10_000 + b"{}]}"):
        outcome = await ingest(door.deps, IngestRequest(_ctx(), Body(body), never, options))
        assert outcome.kind is Kind.TOO_MANY_EVENTS
    assert door.kafka.sent == [] and door.admitted == []


async def test_all_or_nothing_and_unlimited_options_reach_the_plan() -> None:
    door = _Door()
    options = IngestOptions(all_or_nothing=True, rate_limited=False)
    raws = [EVENT, b'{"type": 1}']
    outcome = await ingest(door.deps, IngestRequest(_ctx(), Body(b""), given(raws), options))
    assert outcome.kind is Kind.ACCEPTED and outcome.plan.accepted == 0
    assert door.topics_sent() == [TOPICS.dlq, TOPICS.dlq] and door.admitted == []


@pytest.mark.skipif(not COMPILED, reason="sluice_fastpath is not built")
async def test_the_compiled_planner_takes_a_common_native_body_and_is_admitted_after() -> None:
    door = _Door()
    options = IngestOptions(max_events=10, compiled=True)
    body = Body(b"[" + WITH_ID + b"]")
    outcome = await ingest(door.deps, IngestRequest(_ctx(), body, split_json_events, options))
    assert outcome.kind is Kind.ACCEPTED and outcome.plan.every_id == ["e1"]
    assert outcome.events == () and door.admitted == [("prefix-a", 1)]


@pytest.mark.parametrize("in_thread", [False, True])
async def test_a_csv_slice_is_validated_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, in_thread: bool
) -> None:
    threads: list[threading.Thread] = []
    native = validator_for("native")

    def validate(raw: bytes, route: Mapping[str, str]) -> Outcome:
        threads.append(threading.current_thread())
        return native(raw, route)

    monkeypatch.setattr(entry, "validator_for", lambda _family: validate)
    door = _Door()
    options = IngestOptions(rate_limited=False, in_thread=in_thread)
    outcome = await ingest(door.deps, IngestRequest(_ctx(), Body(b""), given([WITH_ID]), options))
    assert outcome.plan.accepted == 1
    assert (threads[0] is threading.main_thread()) is not in_thread
