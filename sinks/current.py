"""What is stored right now, asked once per request: which of these ids have a version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

STORED_IDS = "SELECT sluice_stored_ids(%s, %s, %b::text[])"
"""One round trip (migration 0006): sets the caller's tenant for row-level security and reads.

The ids travel as a binary array: psycopg's text rendering escapes each element in Python.
"""


async def stored_ids(
    conn: AsyncConnection[Any], tenant: str, family: str, event_ids: Sequence[str]
) -> set[str]:
    """The ids among `event_ids` that have a current version for `tenant` and `family`.

    `conn` should be in autocommit mode (the door's lookup pool): the call is then its
    own transaction, and the tenant setting it makes ends with it.
    """
    if not event_ids:
        return set()
    cur = await conn.execute(STORED_IDS, (tenant, family, list(event_ids)), prepare=True)
    return {row[0] for row in await cur.fetchall()}
