"""Which events of a native request replaced an existing version.

One query per request (`event_id = ANY(...)`), run before the request is
published, so the answer reflects what was stored when the request arrived:
an id counts as replaced if a version of it was stored then, or if an earlier
element of the same request carried it. A version still in the pipeline when
the request arrived is not seen; newest-wins holds either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from producer_api.ingest import IngestPlan, RequestContext
from producer_api.resources import Door
from sinks.current import stored_ids
from sinks.tenancy import tenant_connection


class _WithId(msgspec.Struct):
    id: Any = None


_decode_id = msgspec.json.Decoder(_WithId)


def body_ids(raws: Sequence[bytes]) -> list[str]:
    """The ids the raw events carry (events without one, or unreadable, have none yet)."""
    ids = []
    for raw in raws:
        try:
            found = _decode_id.decode(raw).id
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if isinstance(found, str) and found:
            ids.append(found)
    return ids


async def stored_before(door: Door, ctx: RequestContext, raws: Sequence[bytes]) -> set[str]:
    """The request's ids that had a stored version when it arrived (one query)."""
    ids = body_ids(raws)
    if not ids:
        return set()
    async with tenant_connection(door.pool, ctx.tenant) as conn:
        return await stored_ids(conn, ctx.tenant, ctx.family, sorted(set(ids)))


def replaced_ids(plan: IngestPlan, stored: set[str]) -> list[str]:
    """Accepted ids that replaced a version: stored before, or earlier in the request."""
    out: list[str] = []
    seen: set[str] = set()
    for result in plan.results:
        if not result.accepted or result.event_id is None:
            continue
        if result.event_id in stored or result.event_id in seen:
            out.append(result.event_id)
        seen.add(result.event_id)
    return out
