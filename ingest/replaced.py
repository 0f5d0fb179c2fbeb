"""Which events of a native request replaced an existing version.

An accepted id counts as replaced when a version of it older than this request's
was stored, or when an earlier element of the same request carried it. The
stored versions come from one statement (`sluice_stored_ids`, migration 0006),
shared by concurrent requests of the tenant, which runs while the request's
envelopes are being published: "older than this request's" is decided by
position, so the lookup can neither count the request's own version (stored by
a fast pipeline before the lookup ran) nor a later request's. A version still in
the pipeline when the lookup ran is not seen; newest-wins holds either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import psycopg
from psycopg_pool import PoolTimeout

from ingest.plan import IngestPlan, RequestContext
from schemas.identity import Identity, partition_for
from schemas.versions import version_of
from store.current import StoredIdLookups

log = logging.getLogger(__name__)

LOOKUP_SECONDS = 1.0
"""The longest the door waits for the lookup; ingestion never depends on PostgreSQL."""


async def stored_versions(
    lookups: StoredIdLookups, ctx: RequestContext, plan: IngestPlan
) -> dict[str, int] | None:
    """The stored version of each id of the planned request that has one.

    None when PostgreSQL does not answer within `LOOKUP_SECONDS`: the events are
    still accepted (Kafka is what acknowledges them) and the answer says `replaced:
    null`, unknown, instead of the request failing with the database.
    """
    ids = plan.carried_ids()
    if not ids:
        return {}
    try:
        async with asyncio.timeout(LOOKUP_SECONDS):
            return await lookups.stored(ctx.tenant, ctx.family, ids)
    except (TimeoutError, PoolTimeout, psycopg.Error) as exc:
        log.warning("replaced-ids lookup skipped, PostgreSQL did not answer: %s", exc)
        return None


def replaced_ids(
    ctx: RequestContext,
    plan: IngestPlan,
    stored: Mapping[str, int] | None,
    envelope_offsets: Mapping[int, int],
    partitions: int,
) -> list[str] | None:
    """Accepted ids that replaced a version: an older one stored, or earlier in the request.

    `envelope_offsets` is the offset on `ingest.raw` of the request's envelope in each
    partition; a stored version below that envelope's first version is older. None
    (unknown) when the stored versions could not be looked up.
    """
    if stored is None:
        return None
    ids = plan.accepted_ids()
    if not stored and len(set(ids)) == len(ids):  # the common answer, without a loop
        return []
    out: list[str] = []
    seen: set[str] = set()
    for event_id in ids:
        if event_id in seen or (
            event_id in stored
            and _older(stored[event_id], ctx, event_id, envelope_offsets, partitions)
        ):
            out.append(event_id)
        seen.add(event_id)
    return out


def _older(
    version: int, ctx: RequestContext, event_id: str, offsets: Mapping[int, int], partitions: int
) -> bool:
    partition = partition_for(Identity(ctx.tenant, ctx.family, event_id).key(), partitions)
    offset = offsets.get(partition)
    return offset is None or version < version_of(offset, 0)
