"""The data contracts every process enforces, read from the registry (migration 0017).

Both reads go through SECURITY DEFINER functions, so the API's role (row-level security)
reads every tenant's contracts without seeing any registry row itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection


@dataclass(frozen=True)
class ContractRow:
    """The latest live JSON version of one tenant's contract subject."""

    tenant: str
    subject: str
    version: int
    schema_id: int
    schema: str


async def registry_generation(conn: AsyncConnection[Any]) -> int:
    """A number that grows with every change of any subject's versions: one cheap read."""
    cur = await conn.execute("SELECT sluice_registry_generation()")
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


async def latest_contracts(conn: AsyncConnection[Any]) -> list[ContractRow]:
    cur = await conn.execute(
        "SELECT tenant, subject, version, schema_id, schema FROM sluice_data_contracts()"
    )
    return [ContractRow(str(t), str(s), int(v), int(i), str(x)) for t, s, v, i, x in
            await cur.fetchall()]  # fmt: skip
