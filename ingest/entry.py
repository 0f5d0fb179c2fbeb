"""The one ingest entry: every route of every API family, and the CSV upload, call `ingest`.

`ingest` splits a body with the family's splitter, admits its events against the
caller's budget, plans them (the compiled native planner where allowed, else
`plan_events`), dead-letters a body that did not decode or cannot be split, publishes
and waits for Kafka's acknowledgement, and returns an `IngestOutcome`. The route maps
the outcome to its dialect's status and body; no route publishes by itself. Deletes
have their entries here too (`delete_ids`, `delete_matching`).

Failures that are not about the input propagate: `Overloaded` and `ProduceFailed` from
the publisher, and whatever the `admit` callable raises past a budget.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool

from ingest.contracts import ContractCache
from ingest.plan import (
    IngestPlan,
    RequestContext,
    plan_deletes,
    plan_events,
    plan_filter_delete,
    plan_native_body,
    plan_unsplittable,
)
from ingest.publish import Publisher
from ingest.replaced import replaced_ids, stored_versions
from ingest.split import Splitter, Unsplittable, one_event, split_body
from ingest.tally import DoorTally
from schemas.contracts import NO_CONTRACTS, Contracts
from schemas.deletes import DeleteFilter, unique_ids
from schemas.nesting import too_many_items
from schemas.topics import TopicNames
from schemas.validators import validator_for
from store.current import StoredIdLookups
from store.deletions import create_receipt
from store.tenancy import tenant_connection


class Admit(Protocol):
    """Counts `count` events against the budget of `key` (and of `tenant`, all its keys'
    together); raises when one is spent."""

    def __call__(self, key: str, count: int, tenant: str | None = None) -> Awaitable[None]: ...


@dataclass(frozen=True)
class IngestDeps:
    """What the entry needs from the process around it; nothing of HTTP."""

    topics: TopicNames
    partitions: int
    publisher: Publisher
    admit: Admit
    stored: StoredIdLookups | None
    """The `replaced` lookup (see `ingest.replaced`); None where no route asks for it (the
    replay core)."""
    pool: AsyncConnectionPool
    """Where deletion receipts are written."""
    contracts: ContractCache | None = None
    """The tenants' data contracts, applied at the door (None: none are, e.g. a replay,
    which the stream checks)."""

    tally: DoorTally | None = None
    """Where acknowledged requests are counted for the overview (`ingest.tally`); None
    counts nothing (the replay core)."""

    def current_contracts(self) -> Contracts:
        return NO_CONTRACTS if self.contracts is None else self.contracts.current


@dataclass(frozen=True)
class Body:
    """A request body as the door received it: decoded, or (`undecodable` says why) the
    bytes exactly as they arrived, when their `Content-Encoding` did not decode."""

    data: bytes
    undecodable: str | None = None


@dataclass(frozen=True)
class IngestOptions:
    """How a route wants its request ingested."""

    all_or_nothing: bool = False
    """One invalid event dead-letters every event of the request (see `plan_events`)."""
    rate_limited: bool = True
    """Count the events against the caller's budget (off for a CSV upload, bounded by
    its size instead: it must not be cut off half-ingested)."""
    min_events: int = 0
    max_events: int | None = None
    """Outside these bounds nothing is published (`NO_EVENTS`, `TOO_MANY_EVENTS`)."""
    compiled: bool = False
    """The compiled native planner may take the body (see `plan_native_body`)."""
    replaced: bool = False
    """Find which accepted ids replaced a stored version, while Kafka acknowledges."""
    in_thread: bool = False
    """Validate off the event loop (a CSV upload's slices of thousands of rows)."""


@dataclass(frozen=True)
class IngestRequest:
    """A request to ingest: its context, its body, the family's splitter, the options."""

    ctx: RequestContext
    body: Body
    split: Splitter = one_event
    options: IngestOptions = IngestOptions()
    plan: IngestPlan | None = None
    """A plan the caller made with the same planner (`plan_events`), which the entry then
    admits and publishes as it would its own: the replay core plans with lineage and
    checks the plan (claims, newer versions, deletes, the catalog) before publishing."""


class Kind(enum.Enum):
    """What became of a request as a whole."""

    ACCEPTED = "accepted"
    """Planned and acknowledged: each event accepted or dead-lettered (`plan.results`)."""
    UNDECODABLE = "undecodable"
    """The body did not decode: recorded as one dead letter of the bytes received."""
    UNSPLITTABLE = "unsplittable"
    """The splitter refused the body: recorded whole as one dead letter."""
    NO_EVENTS = "no_events"
    """Fewer events than `min_events`; nothing was published."""
    TOO_MANY_EVENTS = "too_many_events"
    """More events than `max_events`; nothing was published."""


@dataclass(frozen=True)
class IngestOutcome:
    """What `ingest` did, for the route to answer in its dialect."""

    kind: Kind
    plan: IngestPlan
    """The messages published and each event's result (one dead letter when the body
    did not decode or split; empty when nothing was published)."""
    events: Sequence[bytes] = ()
    """The raw events the body split into (empty when the compiled planner took it)."""
    reason: str = ""
    """Why the body did not decode or split."""
    refusal: Unsplittable | None = None
    """The splitter's exception, for a route whose answer details it."""
    offsets: Mapping[int, int] = field(default_factory=dict)
    """The offset Kafka gave the request's envelope in each partition of `ingest.raw`."""
    replaced: list[str] | None = field(default_factory=list)
    """With `replaced`: the accepted ids that replaced a version; None when the stored
    versions could not be looked up (unknown). Empty otherwise."""


async def ingest(deps: IngestDeps, request: IngestRequest) -> IngestOutcome:
    """Split, admit, plan, publish (dead letters included), and say what happened."""
    ctx, body, options = request.ctx, request.body, request.options
    if body.undecodable is not None:
        return await _dead_letter(deps, ctx, body.data, Kind.UNDECODABLE, body.undecodable)
    given = request.plan
    if given is None and options.compiled:
        given = _compiled_plan(deps, request)
    plan = given
    events: Sequence[bytes] = ()
    if plan is None:
        if options.max_events is not None and too_many_items(body.data, options.max_events):
            return IngestOutcome(Kind.TOO_MANY_EVENTS, IngestPlan(), events)  # before splitting
        try:
            events = split_body(request.split, body.data)
        except Unsplittable as exc:
            return await _dead_letter(deps, ctx, body.data, Kind.UNSPLITTABLE, str(exc), exc)
        if len(events) < options.min_events:
            return IngestOutcome(Kind.NO_EVENTS, IngestPlan(), events)
        if options.max_events is not None and len(events) > options.max_events:
            return IngestOutcome(Kind.TOO_MANY_EVENTS, IngestPlan(), events)
    if options.rate_limited:
        count = len(events) if given is None else len(given.accepted_ids())
        await deps.admit(ctx.caller or f"tenant:{ctx.tenant}", count, tenant=ctx.tenant)
    if plan is None:
        planning = functools.partial(
            plan_events, ctx, events, validator_for(ctx.family), deps.topics, deps.partitions,
            all_or_nothing=options.all_or_nothing, contracts=deps.current_contracts(),
        )  # fmt: skip
        plan = await asyncio.to_thread(planning) if options.in_thread else planning()
    if options.replaced:
        outcome = await _publish_with_replaced(deps, ctx, plan, events)
    else:
        offsets = _offsets(deps, await deps.publisher.publish(plan.messages))
        outcome = IngestOutcome(Kind.ACCEPTED, plan, events, offsets=offsets)
    _count(deps, ctx, plan)
    return outcome


def _count(deps: IngestDeps, ctx: RequestContext, plan: IngestPlan) -> None:
    """Count an acknowledged plan's accepted and rejected events (a dict update)."""
    if deps.tally is None:
        return
    if plan.every_id is not None:  # the compiled plan accepted every event
        deps.tally.add(ctx.tenant, ctx.family, ctx.received_at, len(plan.every_id), 0)
        return
    rejected = len(plan.rejected())
    deps.tally.add(ctx.tenant, ctx.family, ctx.received_at, len(plan.results) - rejected,
                   rejected)  # fmt: skip


def _compiled_plan(deps: IngestDeps, request: IngestRequest) -> IngestPlan | None:
    """The common native request, planned by the compiled path in one call; None sends it
    to the Python path with its full rules."""
    limit = request.options.max_events
    return plan_native_body(request.ctx, request.body.data, deps.topics, deps.partitions,
                            limit if limit is not None else 2**31,
                            deps.current_contracts())  # fmt: skip


async def _publish_with_replaced(
    deps: IngestDeps, ctx: RequestContext, plan: IngestPlan, events: Sequence[bytes]
) -> IngestOutcome:
    """Publish while looking up the stored versions: the lookup decides by position, so
    it need not finish before publishing (see `ingest.replaced`)."""
    if deps.stored is None:
        raise ValueError("this process has no stored-version lookups for `replaced`")
    lookup = asyncio.create_task(stored_versions(deps.stored, ctx, plan))
    try:
        acknowledged = await deps.publisher.publish(plan.messages)
    except BaseException:
        lookup.cancel()
        raise
    stored = await lookup
    offsets = _offsets(deps, acknowledged)
    replaced = replaced_ids(ctx, plan, stored, offsets, deps.partitions)
    return IngestOutcome(Kind.ACCEPTED, plan, events, offsets=offsets, replaced=replaced)


def _offsets(deps: IngestDeps, acknowledged: Mapping[tuple[str, int], int]) -> dict[int, int]:
    topic = deps.topics.ingest_raw
    return {p: o for (t, p), o in acknowledged.items() if t == topic}


async def _dead_letter(
    deps: IngestDeps, ctx: RequestContext, body: bytes, kind: Kind, reason: str,
    refusal: Unsplittable | None = None,
) -> IngestOutcome:  # fmt: skip
    """Record a body that cannot be ingested as events as one dead letter (invariant 2)."""
    plan = plan_unsplittable(ctx, body, reason, deps.topics, deps.partitions)
    await deps.publisher.publish(plan.messages)
    _count(deps, ctx, plan)
    return IngestOutcome(kind, plan, reason=reason, refusal=refusal)


class ReceiptsUnavailable(Exception):
    """PostgreSQL did not take a deletion receipt; nothing was published (retry)."""


@dataclass(frozen=True)
class DeleteOutcome:
    """A published delete: its receipt (`GET /v1/deletions/{id}`) and what was sent."""

    receipt_id: str
    plan: IngestPlan


async def delete_ids(
    deps: IngestDeps, ctx: RequestContext, event_ids: Sequence[str]
) -> DeleteOutcome:
    """Publish deletes by id, each through its id's partition, after a pending receipt."""
    receipt_id = str(uuid.uuid4())
    ids = unique_ids(event_ids)
    await _pending_receipt(deps, ctx, receipt_id, "ids", {"ids": ids}, len(ids))
    plan = plan_deletes(ctx, event_ids, receipt_id, deps.topics, deps.partitions)
    await deps.publisher.publish(plan.messages)
    return DeleteOutcome(receipt_id, plan)


async def delete_matching(
    deps: IngestDeps, ctx: RequestContext, flt: DeleteFilter
) -> DeleteOutcome:
    """Publish a delete by filter to every partition, after a pending receipt.

    It covers the tenant's events of `ctx.family` matching `flt` that were accepted
    before Kafka acknowledged it (stored or still in flight), and their dead letters.
    `DeleteFilter()` (no constraint) deletes all of the family's events.
    """
    receipt_id = str(uuid.uuid4())
    partitions = deps.partitions
    await _pending_receipt(deps, ctx, receipt_id, "filter", flt.as_json(), partitions)
    plan = plan_filter_delete(ctx, flt, receipt_id, deps.topics, partitions)
    await deps.publisher.publish(plan.messages)
    return DeleteOutcome(receipt_id, plan)


async def _pending_receipt(
    deps: IngestDeps, ctx: RequestContext, receipt_id: str, kind: str, target: dict[str, Any],
    expected: int,
) -> None:  # fmt: skip
    """Write the receipt before publishing, so `GET /v1/deletions/{id}` knows it at once."""
    try:
        async with tenant_connection(deps.pool, ctx.tenant) as conn:
            await create_receipt(
                conn, deletion_id=receipt_id, tenant=ctx.tenant, family=ctx.family, kind=kind,
                target=target, expected=expected, requested_at=ctx.received_at,
            )  # fmt: skip
    except psycopg.OperationalError as exc:
        raise ReceiptsUnavailable("deletion receipts unavailable; retry") from exc
