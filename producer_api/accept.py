"""The one ingest path every API family shares: plan, publish, return the plan.

A family adapter parses its body into raw events (or fails to), builds a
`RequestContext`, calls one of these, and maps the returned plan to its own
answer format. Kafka's acknowledgement of every message has happened when
these return; `Overloaded` / `ProduceFailed` propagate to the error middleware.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiohttp import web

from producer_api.auth import Principal
from producer_api.content import UndecodableBody, read_body
from producer_api.ingest import (
    IngestPlan,
    RequestContext,
    plan_deletes,
    plan_events,
    plan_filter_delete,
    plan_native_body,
    plan_unsplittable,
)
from producer_api.resources import DOOR, Door
from schemas.deletes import DeleteFilter, unique_ids
from schemas.families.received import RECEIVED_AT
from schemas.validators import validator_for
from store.deletions import create_receipt
from store.tenancy import tenant_connection


def door_of(request: web.Request) -> Door:
    """The shared door resources, from the root app (works inside family sub-apps)."""
    return request.config_dict[DOOR]


def request_context(request: web.Request, principal: Principal, family: str) -> RequestContext:
    """Context of a request: tenant from the key, route parameters from the URL."""
    return RequestContext(
        tenant=principal.tenant,
        family=family,
        route=dict(request.match_info),
        content_type=request.content_type,
        received_at=datetime.now(UTC),
    )


def timed_request_context(
    request: web.Request, principal: Principal, family: str
) -> RequestContext:
    """`request_context` with the door's receive time in the route, for families whose
    events may take "now" as their time: the stream re-validating later reads the same."""
    ctx = request_context(request, principal, family)
    return replace(ctx, route={**ctx.route, RECEIVED_AT: ctx.received_at.isoformat()})


async def prepare_events(
    door: Door,
    ctx: RequestContext,
    raws: Sequence[bytes],
    *,
    all_or_nothing: bool = False,
    rate_limited: bool = True,
    in_thread: bool = False,
) -> IngestPlan:
    """Admit the events against the tenant's budget and plan them (nothing sent yet).

    Every family's events count against the tenant's event budget (429 past it),
    except where `rate_limited` is off: a CSV upload, bounded by its size instead,
    must not be cut off half-ingested.
    `all_or_nothing`: one invalid event dead-letters the whole request (see `plan_events`).
    `in_thread`: validate off the event loop (a CSV upload's slices of thousands of rows).
    """
    if rate_limited:
        await door.limits.admit_events(len(raws), ctx.tenant)
    plan = functools.partial(
        plan_events, ctx, raws, validator_for(ctx.family), door.topics, door.settings.partitions,
        all_or_nothing=all_or_nothing,
    )  # fmt: skip
    return await asyncio.to_thread(plan) if in_thread else plan()


async def prepare_native_body(door: Door, ctx: RequestContext, body: bytes) -> IngestPlan | None:
    """`prepare_events` for a whole native body by the compiled path, when it applies (see
    `plan_native_body`); None sends the caller to `split_json_events` and `prepare_events`."""
    settings = door.settings
    plan = plan_native_body(ctx, body, door.topics, settings.partitions,
                            settings.max_events_per_request)  # fmt: skip
    if plan is not None:
        await door.limits.admit_events(len(plan.accepted_ids()), ctx.tenant)
    return plan


async def accept_events(
    door: Door,
    ctx: RequestContext,
    raws: Sequence[bytes],
    *,
    all_or_nothing: bool = False,
    rate_limited: bool = True,
    in_thread: bool = False,
) -> IngestPlan:
    """`prepare_events`, then publish envelopes and dead letters and wait for Kafka."""
    plan = await prepare_events(
        door, ctx, raws, all_or_nothing=all_or_nothing, rate_limited=rate_limited,
        in_thread=in_thread,
    )  # fmt: skip
    await door.publisher.publish(plan.messages)
    return plan


async def accept_unsplittable(
    door: Door, ctx: RequestContext, body: bytes, reason: str
) -> IngestPlan:
    """Record a body that cannot be split into events as one dead letter."""
    plan = plan_unsplittable(ctx, body, reason, door.topics, door.settings.partitions)
    await door.publisher.publish(plan.messages)
    return plan


async def read_events_body(request: web.Request, door: Door, ctx: RequestContext) -> bytes:
    """The request's body, decoded; for every family's ingest route.

    A body that does not decode (truncated or corrupt gzip, unknown coding) is
    recorded as one dead letter of the bytes received (invariant 2) before
    `UndecodableBody` goes on to the family's error format as a 400.
    """
    try:
        return await read_body(request)
    except UndecodableBody as exc:
        await accept_unsplittable(door, ctx, exc.raw, str(exc))
        raise


async def accept_deletes(
    door: Door, ctx: RequestContext, event_ids: Sequence[str]
) -> tuple[str, IngestPlan]:
    """Publish deletes by id; return the deletion receipt id and the plan."""
    receipt_id = str(uuid.uuid4())
    ids = unique_ids(event_ids)
    await _pending_receipt(door, ctx, receipt_id, "ids", {"ids": ids}, len(ids))
    plan = plan_deletes(ctx, event_ids, receipt_id, door.topics, door.settings.partitions)
    await door.publisher.publish(plan.messages)
    return receipt_id, plan


async def accept_filter_delete(
    door: Door, ctx: RequestContext, flt: DeleteFilter
) -> tuple[str, IngestPlan]:
    """Publish a delete by filter to every partition; return the receipt id and the plan.

    It covers the tenant's events of `ctx.family` matching `flt` that were accepted
    before Kafka acknowledged it (stored or still in flight), and their dead letters.
    `DeleteFilter()` (no constraint) deletes all of the family's events.
    """
    receipt_id = str(uuid.uuid4())
    partitions = door.settings.partitions
    await _pending_receipt(door, ctx, receipt_id, "filter", flt.as_json(), partitions)
    plan = plan_filter_delete(ctx, flt, receipt_id, door.topics, partitions)
    await door.publisher.publish(plan.messages)
    return receipt_id, plan


async def _pending_receipt(
    door: Door, ctx: RequestContext, receipt_id: str, kind: str, target: dict[str, Any],
    expected: int,
) -> None:  # fmt: skip
    """Write the receipt before publishing, so `GET /v1/deletions/{id}` knows it at once."""
    try:
        async with tenant_connection(door.pool, ctx.tenant) as conn:
            await create_receipt(
                conn, deletion_id=receipt_id, tenant=ctx.tenant, family=ctx.family, kind=kind,
                target=target, expected=expected, requested_at=ctx.received_at,
            )  # fmt: skip
    except psycopg.OperationalError as exc:
        raise web.HTTPServiceUnavailable(text="deletion receipts unavailable; retry") from exc
