"""Which events of a native request replaced an existing version.

One statement per request (`sluice_stored_ids`, migration 0006), run before the request is
published, so the answer reflects what was stored when the request arrived:
an id counts as replaced if a version of it was stored then, or if an earlier
element of the same request carried it. A version still in the pipeline when
the request arrived is not seen; newest-wins holds either way.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from psycopg_pool import PoolTimeout

from producer_api.ingest import IngestPlan, RequestContext
from producer_api.resources import Door

log = logging.getLogger(__name__)

LOOKUP_SECONDS = 1.0
"""The longest the door waits for the lookup; ingestion never depends on PostgreSQL."""


def carried_ids(plan: IngestPlan) -> list[str]:
    """Ids the accepted events carried themselves (ids the door assigned are new)."""
    return [r.event_id for r in plan.results if r.accepted and r.event_id and not r.id_assigned]


async def stored_before(door: Door, ctx: RequestContext, plan: IngestPlan) -> set[str] | None:
    """The planned request's ids that had a stored version when it arrived (one query, run
    after validation and before publishing; the validators already read each id).

    None when PostgreSQL does not answer within `LOOKUP_SECONDS`: the events are
    still accepted (Kafka is what acknowledges them) and the answer says `replaced:
    null`, unknown, instead of the request failing with the database.
    """
    ids = carried_ids(plan)
    if not ids:
        return set()
    try:
        async with asyncio.timeout(LOOKUP_SECONDS):
            return await door.stored.stored(ctx.tenant, ctx.family, ids)
    except (TimeoutError, PoolTimeout, psycopg.Error) as exc:
        log.warning("replaced-ids lookup skipped, PostgreSQL did not answer: %s", exc)
        return None


def replaced_ids(plan: IngestPlan, stored: set[str] | None) -> list[str] | None:
    """Accepted ids that replaced a version: stored before, or earlier in the request.

    None (unknown) when the stored versions could not be looked up.
    """
    if stored is None:
        return None
    out: list[str] = []
    seen: set[str] = set()
    for result in plan.results:
        if not result.accepted or result.event_id is None:
            continue
        if result.event_id in stored or result.event_id in seen:
            out.append(result.event_id)
        seen.add(result.event_id)
    return out
