"""What is stored right now, asked once per request: which of these ids have a version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection


async def stored_ids(
    conn: AsyncConnection[Any], tenant: str, family: str, event_ids: Sequence[str]
) -> set[str]:
    """The ids among `event_ids` that have a current version for `tenant` and `family`."""
    if not event_ids:
        return set()
    cur = await conn.execute(
        "SELECT event_id FROM events WHERE tenant = %s AND family = %s AND event_id = ANY(%s)",
        (tenant, family, list(event_ids)),
    )
    return {row[0] for row in await cur.fetchall()}
