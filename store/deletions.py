"""Deletion receipts: written by the door, completed by the sink, read by the API.

A receipt is created (pending) before the door publishes the delete. The sink
adds one step per unit it applies, in the same transaction as the delete
(`sinks.deletions`): an id for a delete by id, a partition for a delete by filter.
The receipt is finished when every expected unit has a step; it reports how many
stored events and dead letters the delete removed from PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

_CREATE = """
INSERT INTO deletions (deletion_id, tenant, family, kind, target, expected, requested_at)
VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s)
"""

_RECEIPT = """
SELECT d.deletion_id, d.family, d.kind, d.target, d.expected, d.requested_at,
       count(s.unit) AS applied,
       coalesce(sum(s.events_removed), 0) AS events_removed,
       coalesce(sum(s.dead_letters_removed), 0) AS dead_letters_removed,
       max(s.applied_at) AS last_applied_at
FROM deletions d
LEFT JOIN deletion_steps s ON s.tenant = d.tenant AND s.deletion_id = d.deletion_id
WHERE d.tenant = %s AND d.deletion_id = %s
GROUP BY d.tenant, d.deletion_id
"""


async def create_receipt(
    conn: AsyncConnection[Any],
    *,
    deletion_id: str,
    tenant: str,
    family: str,
    kind: str,
    target: dict[str, Any],
    expected: int,
    requested_at: datetime,
) -> None:
    """Record a pending receipt; call before publishing the delete."""
    params = (deletion_id, tenant, family, kind, json.dumps(target), expected, requested_at)
    await conn.execute(_CREATE, params)


async def get_receipt(
    conn: AsyncConnection[Any], tenant: str, deletion_id: str
) -> dict[str, Any] | None:
    """The receipt as the API answers it, or None (also for another tenant's receipt)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_RECEIPT, (tenant, deletion_id))
        row = await cur.fetchone()
    if row is None:
        return None
    finished = row["applied"] >= row["expected"]
    return {
        "deletion_id": row["deletion_id"],
        "family": row["family"],
        "kind": row["kind"],
        "target": row["target"],
        "status": "finished" if finished else "pending",
        "requested_at": row["requested_at"].isoformat(),
        "finished_at": row["last_applied_at"].isoformat() if finished else None,
        "steps_applied": row["applied"],
        "steps_expected": row["expected"],
        "removed": {
            "events": int(row["events_removed"]),
            "dead_letters": int(row["dead_letters_removed"]),
        },
    }
