"""The door's core: from a request's raw events to the Kafka messages that carry them.

Pure and transport-free. Valid events are grouped by partition (computed from
each event's identity) into one `IngestEnvelope` per partition; rejected
events become dead letters with their bytes untouched. `ingest.entry` sends the
messages; the route maps its outcome to a status code.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import msgspec

from runtime.kafka import OutgoingMessage
from schemas.contracts import NO_CONTRACTS, Contracts, enforce
from schemas.deadletter import Origin, build_dead_letter
from schemas.deletes import DeleteFilter
from schemas.identity import (
    OBJECT_ID_FAMILIES,
    Identity,
    derived_event_id,
    new_event_id,
    object_id_of,
    partition_for,
)
from schemas.outcome import Rejected, Violation
from schemas.topics import TopicNames
from schemas.validators import Validator, validate_all
from schemas.writers import encode_envelope, envelope_head, item, upsert_item

try:  # Sluice's own extension (fastpath/): the common native request, compiled
    from sluice_fastpath import plan_native as _compiled_plan_native
except ImportError:  # not built: every request takes `plan_events`
    _compiled_plan_native = None  # type: ignore[assignment]

COMPILED = _compiled_plan_native is not None
"""Whether the door plans common native requests with the compiled path (logged at start)."""

BATCH_REJECTED = Violation(
    "batch_rejected", "$", "valid, but another event of the batch is not; nothing was ingested"
)
"""The reason given to valid events of an all-or-nothing batch that was rejected."""


def new_request_id() -> str:
    """A random UUIDv4 to correlate a request's answer, envelopes and dead letters.

    From `random`, not `uuid.uuid4()`: the id guards nothing, and `os.urandom` lets go of
    the GIL on every call, which costs up to ~180 µs whenever another thread (the Kafka
    delivery thread) is waiting for it, against ~1.4 µs. `random` is reseeded in a fork.
    """
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


@dataclass(frozen=True)
class RequestContext:
    """Who sent what, where: everything about a request except its events."""

    tenant: str
    family: str
    route: Mapping[str, str]
    content_type: str
    received_at: datetime
    request_id: str = field(default_factory=new_request_id)
    caller: str | None = None
    """The prefix of the API key that sent the request, whose event budget it spends
    (None: a request of no key, e.g. a replay, which spends its tenant's)."""
    idempotency_key: str | None = None
    """The request's `Idempotency-Key`: the ids the door assigns to its id-less events are
    derived from it, so a retry of a request whose answer was lost (a 503 or 408 can
    still mean written) writes the same identities again instead of new ones."""

    def assigned_id(self, index: int) -> str:
        """The id the door gives the request's `index`-th event when it carries none:
        new, or derived from (tenant, family, idempotency key, index). The tenant, not the
        key, so a retry with a rotated key still names the same events."""
        if self.idempotency_key is None:
            return new_event_id(self.family)
        name = "\x00".join((self.tenant, self.family, self.idempotency_key, str(index)))
        return derived_event_id(self.family, name)

    def origin(self) -> Origin:
        return Origin(self.tenant, self.family, self.route, self.content_type, self.received_at,
                      request_id=self.request_id)  # fmt: skip

    def envelope_head(self) -> bytes:
        """The encoded start of each of the request's envelopes (all but their items)."""
        return envelope_head(self.request_id, self.tenant, self.family, self.route,
                             self.content_type, self.received_at)  # fmt: skip

    def key_prefix(self) -> bytes:
        """The key of the request's identities up to the event id (`Identity.key`)."""
        return Identity(self.tenant, self.family, "").key()


@dataclass(frozen=True)
class ReplayOf:
    """A replay's lineage: the dead letter it re-sends, and the attempt it becomes.

    `event_id` is the id a replayed event without one gets (the dead letter's
    event id, else its dead-letter id), so replaying it again collapses by id.
    """

    dead_letter_id: str
    attempt: int
    event_id: str

    def fallback_id(self, index: int) -> str:
        """A stable id for the `index`-th event of the replayed body when it carries none."""
        return self.event_id if index == 0 else f"{self.event_id}.{index}"


class EventResult(msgspec.Struct, frozen=True, gc=False):
    """What became of one event of the request (a Struct: one is built per event)."""

    index: int
    event_id: str | None
    accepted: bool
    reasons: tuple[Violation, ...] = ()
    dead_letter_id: str | None = None
    id_assigned: bool = False
    """True when the door made the id up (the event carried none): it cannot replace anything."""
    replayed: tuple[str, datetime] | None = None
    """A replay's accepted event: its (type, time), which retention judges (`ingest.replay`).
    None for every event of a request: nothing is kept per event on the door's path."""

    def as_dict(self) -> dict[str, Any]:
        if self.accepted:
            return {"index": self.index, "id": self.event_id, "status": "accepted"}
        return {
            "index": self.index,
            "id": self.event_id,
            "status": "rejected",
            "dead_letter_id": self.dead_letter_id,
            "reasons": [r.as_dict() for r in self.reasons],
        }


class IngestPlan:
    """Messages to produce for a request, and the per-event results to answer with.

    A compiled plan (`plan_native_body`) accepted every event with the id it carried: it
    holds those ids (`every_id`) and builds its `results` only when someone asks, since
    the native answer and the replaced lookup need only the ids.
    """

    def __init__(
        self,
        messages: list[OutgoingMessage] | None = None,
        results: list[EventResult] | None = None,
        *,
        every_id: list[str] | None = None,
    ) -> None:
        self.messages: list[OutgoingMessage] = [] if messages is None else messages
        self._results = results
        self.every_id = every_id

    @property
    def results(self) -> list[EventResult]:
        if self._results is None:
            ids = self.every_id or []
            self._results = [
                EventResult(index, event_id, True) for index, event_id in enumerate(ids)
            ]
        return self._results

    def accepted_ids(self) -> list[str]:
        """The ids of the accepted events, in the request's order."""
        if self.every_id is not None:
            return self.every_id
        return [r.event_id for r in self.results if r.accepted and r.event_id is not None]

    def carried_ids(self) -> list[str]:
        """The ids the accepted events carried themselves (ids the door assigned are new)."""
        if self.every_id is not None:
            return self.every_id
        return [r.event_id for r in self.results if r.accepted and r.event_id and not r.id_assigned]

    def rejected(self) -> list[EventResult]:
        """The results of the events that were not accepted, in the request's order."""
        if self.every_id is not None:
            return []
        return [r for r in self.results if not r.accepted]

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r.accepted)


def plan_events(
    ctx: RequestContext,
    raws: Sequence[bytes],
    validate: Validator,
    topics: TopicNames,
    partitions: int,
    *,
    all_or_nothing: bool = False,
    replay: ReplayOf | None = None,
    contracts: Contracts = NO_CONTRACTS,
) -> IngestPlan:
    """Validate each raw event; envelope the valid ones by partition, dead-letter the rest.

    Events the family's validator accepts are then checked against the tenant's data
    contracts (`schemas.contracts.enforce`, as the stream does): one that breaks its
    subject's latest version is rejected with its `schema_violation`s.

    With `all_or_nothing`, one invalid event rejects the whole request: nothing is
    enveloped and every event, valid ones too (reason `batch_rejected`), is dead-lettered.
    With `replay`, events and dead letters carry its attempt and lineage.
    """
    plan = IngestPlan()
    origin = ctx.origin()
    if replay is not None:
        origin = replace(origin, attempt=replay.attempt, replay_of=replay.dead_letter_id)
    outcomes = enforce(contracts, ctx.tenant, ctx.family, validate_all(validate, raws, ctx.route))
    reject_all = all_or_nothing and any(isinstance(o, Rejected) for o in outcomes)
    # The per-event loop is the door's hot path: ids are encoded once, for both the
    # partitioning key and the item, and items are written straight to Avro bytes.
    key_prefix = ctx.key_prefix()
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    results = plan.results
    for index, (raw, outcome) in enumerate(zip(raws, outcomes, strict=True)):
        if reject_all and not isinstance(outcome, Rejected):
            outcome = Rejected((BATCH_REJECTED,), outcome.event_id)
        if isinstance(outcome, Rejected):
            dead = build_dead_letter(
                raw=raw, reasons=outcome.violations, origin=origin, stage="door",
                event_id=outcome.event_id or _fallback_id(replay, index, ctx.family),
            )  # fmt: skip
            dlq_partition = partition_for(dead.key, partitions)
            plan.messages.append((topics.dlq, dlq_partition, dead.key, dead.value, dead.headers))
            results.append(
                EventResult(index, outcome.event_id, False, outcome.violations, dead.dead_letter_id)
            )
            continue
        event_id = (
            outcome.event_id or _fallback_id(replay, index, ctx.family) or ctx.assigned_id(index)
        )
        id_bytes = event_id.encode()
        if replay is None:
            encoded = upsert_item(id_bytes, raw)
        else:
            encoded = item("upsert", event_id, raw, attempt=replay.attempt,
                           replay_of=replay.dead_letter_id)  # fmt: skip
        by_partition[partition_for(key_prefix + id_bytes, partitions)].append(encoded)
        if replay is None:
            results.append(EventResult(index, event_id, True, id_assigned=outcome.event_id is None))
        else:
            results.append(
                EventResult(index, event_id, True, replayed=(outcome.type, outcome.time))
            )
    plan.messages += _envelopes(ctx, by_partition, topics)
    return plan


def plan_native_body(
    ctx: RequestContext,
    body: bytes,
    topics: TopicNames,
    partitions: int,
    max_events: int,
    contracts: Contracts = NO_CONTRACTS,
) -> IngestPlan | None:
    """`plan_events` for a native body whose events are all plainly valid and carry an id,
    done by the compiled path (`fastpath/src/lib.rs`): split, validate, partition and write
    the items in one call, ~0.45 µs per event against ~2.4 µs in Python.

    None when it does not apply (an invalid, unusual or id-less event, a possibly
    unstorable value, more than `max_events` events, not an array) or the extension is
    not built, or the tenant has a data contract for native events (the compiled path
    cannot apply one): the caller splits the body and calls `plan_events`, which has every
    rule.
    When it applies, the plan is the one `plan_events` would make, byte for byte
    (property tests in tests/ingest/test_fastpath.py).
    """
    if _compiled_plan_native is None or ctx.family != "native" or ctx.route:
        return None
    if contracts.covers(ctx.tenant, "native"):
        return None
    planned = _compiled_plan_native(
        body, ctx.key_prefix(), partitions, ctx.envelope_head(), max_events
    )
    if planned is None:
        return None
    ids, envelopes = planned
    messages: list[OutgoingMessage] = [
        (topics.ingest_raw, partition, None, value, None) for partition, value in envelopes
    ]
    return IngestPlan(messages, every_id=ids)


def plan_unsplittable(
    ctx: RequestContext, body: bytes, reason: str, topics: TopicNames, partitions: int
) -> IngestPlan:
    """A body that cannot be split into events is one dead letter of the whole body."""
    violation = Violation("unsplittable_body", "$", reason)
    dead = build_dead_letter(raw=body, reasons=(violation,), origin=ctx.origin(), stage="door")
    partition = partition_for(dead.key, partitions)
    return IngestPlan(
        messages=[(topics.dlq, partition, dead.key, dead.value, dead.headers)],
        results=[EventResult(0, None, False, (violation,), dead.dead_letter_id)],
    )


def plan_deletes(
    ctx: RequestContext,
    event_ids: Sequence[str],
    receipt_id: str,
    topics: TopicNames,
    partitions: int,
) -> IngestPlan:
    """Deletes by id travel through each id's partition, after every version accepted before."""
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for event_id in event_ids:
        key = Identity(ctx.tenant, ctx.family, event_id).key()
        encoded = item("delete", event_id, b"", receipt_id=receipt_id)
        by_partition[partition_for(key, partitions)].append(encoded)
    results = [EventResult(i, eid, True) for i, eid in enumerate(event_ids)]
    return IngestPlan(_envelopes(ctx, by_partition, topics), results)


def _fallback_id(replay: ReplayOf | None, index: int, family: str) -> str | None:
    """A replayed id-less event's id; an ObjectId in the families that show one."""
    if replay is None:
        return None
    fallback = replay.fallback_id(index)
    return object_id_of(fallback) if family in OBJECT_ID_FAMILIES else fallback


def _envelopes(
    ctx: RequestContext, by_partition: Mapping[int, list[bytes]], topics: TopicNames
) -> list[OutgoingMessage]:
    """One `IngestEnvelope` per partition, from items already encoded."""
    head = ctx.envelope_head()
    return [
        (topics.ingest_raw, partition, None, encode_envelope(head, items), None)
        for partition, items in sorted(by_partition.items())
    ]


def plan_filter_delete(
    ctx: RequestContext,
    flt: DeleteFilter,
    receipt_id: str,
    topics: TopicNames,
    partitions: int,
) -> IngestPlan:
    """A delete by filter goes to every partition of `ingest.raw`.

    In each partition it lands after everything accepted there before it, so it
    covers the matching events already stored and those still in flight, and
    nothing accepted after it.
    """
    encoded = item("delete", "", b"", receipt_id=receipt_id, delete_filter=flt.to_record())
    by_partition = {partition: [encoded] for partition in range(partitions)}
    return IngestPlan(messages=_envelopes(ctx, by_partition, topics))
