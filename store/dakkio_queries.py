"""dakkio's query: a bucket's data points by data source and time range, one tenant only.

Points are dakkio-family rows of `events` whose `source` is the bucket id and
`subject` the data source id (see `schemas/families/dakkio.py`), ordered by
time, paged by limit and offset like dakkio's list endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

FAMILY = "dakkio"


@dataclass(frozen=True)
class PointQuery:
    """What `GET /dakkio/api/data` filters on."""

    bucket_id: str
    data_source_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 100
    offset: int = 0


async def find_points(
    conn: AsyncConnection[Any], tenant: str, query: PointQuery
) -> tuple[list[dict[str, Any]], int]:
    """A page of the tenant's points matching `query`, and how many match in all."""
    where: list[sql.Composable] = [
        sql.SQL("tenant = %s"), sql.SQL("family = %s"), sql.SQL("source = %s"),
    ]  # fmt: skip
    params: list[Any] = [tenant, FAMILY, query.bucket_id]
    for clause, value in (
        ("subject = %s", query.data_source_id),
        ("time >= %s", query.start),
        ("time <= %s", query.end),
    ):
        if value is not None:
            where.append(sql.SQL(clause))
            params.append(value)
    statement = sql.SQL(
        "SELECT event_id, source, subject, time, data, received_at, count(*) OVER () AS total"
        " FROM events WHERE {} ORDER BY time, event_id LIMIT %s OFFSET %s"
    ).format(sql.SQL(" AND ").join(where))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, [*params, query.limit, query.offset])
        rows = await cur.fetchall()
    total = int(rows[0]["total"]) if rows else await _count(conn, where, params)
    return rows, total


async def _count(conn: AsyncConnection[Any], where: list[sql.Composable], params: list[Any]) -> int:
    """The match count when the page is empty (an offset past the end)."""
    statement = sql.SQL("SELECT count(*) FROM events WHERE {}").format(sql.SQL(" AND ").join(where))
    cur = await conn.execute(statement, params)
    row = await cur.fetchone()
    return int(row[0]) if row else 0
