"""Deletion steps: the sink's half of a deletion receipt (`store.deletions`).

The sink adds one step per unit of a delete it applies, in the same transaction as
the delete: an id for a delete by id, a partition for a delete by filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

_STEPS = """
INSERT INTO deletion_steps (deletion_id, unit, tenant, events_removed, dead_letters_removed)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::int[])
ON CONFLICT (tenant, deletion_id, unit) DO NOTHING
"""


@dataclass(frozen=True)
class Step:
    """The sink applied one unit of a delete (an id, or a partition) and removed this much."""

    deletion_id: str
    unit: str
    tenant: str
    events_removed: int = 0
    dead_letters_removed: int = 0


def id_unit(event_id: str) -> str:
    """The step unit of one id of a delete by id."""
    return f"id:{event_id}"


def partition_unit(partition: int) -> str:
    """The step unit of one partition of a delete by filter."""
    return f"partition:{partition}"


def record_steps(conn: psycopg.Connection[Any], steps: list[Step]) -> None:
    """Record applied units inside the sink's transaction; a unit already recorded stays."""
    if not steps:
        return
    names = ("deletion_id", "unit", "tenant", "events_removed", "dead_letters_removed")
    conn.execute(_STEPS, [[getattr(s, name) for s in steps] for name in names])
