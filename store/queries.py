"""Reads and lookups the API runs against PostgreSQL, always scoped to one tenant."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

_EVENT_COLUMNS = (
    "family, event_id, type, source, subject, time, data, received_at, version, attributes"
)


@dataclass(frozen=True)
class EventFilter:
    """What `GET /v1/events` may filter on; all optional."""

    type: str | None = None
    source: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None


class BadCursor(ValueError):
    """A pagination cursor that this server did not issue."""


def encode_cursor(time: datetime, event_id: str) -> str:
    raw = json.dumps([time.isoformat(), event_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        moment, event_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(moment), str(event_id)
    except (ValueError, TypeError) as exc:
        raise BadCursor("invalid cursor") from exc


async def get_event(
    conn: AsyncConnection[Any], tenant: str, family: str, event_id: str
) -> dict[str, Any] | None:
    """One current event of `tenant`, or None."""
    query = (
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE tenant = %s AND family = %s AND event_id = %s"
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (tenant, family, event_id))
        return await cur.fetchone()


async def find_events(
    conn: AsyncConnection[Any],
    tenant: str,
    family: str,
    flt: EventFilter,
    *,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of `tenant`'s events ordered by (time, id), and the cursor of the next page."""
    where: list[sql.Composable] = [sql.SQL("tenant = %s"), sql.SQL("family = %s")]
    params: list[Any] = [tenant, family]
    for column, op, value in (
        ("type", "=", flt.type),
        ("source", "=", flt.source),
        ("time", ">=", flt.time_from),
        ("time", "<", flt.time_to),
    ):
        if value is not None:
            where.append(sql.SQL("{} {} %s").format(sql.Identifier(column), sql.SQL(op)))
            params.append(value)
    if cursor is not None:
        after_time, after_id = decode_cursor(cursor)
        where.append(sql.SQL("(time, event_id) > (%s, %s)"))
        params += [after_time, after_id]
    query = sql.SQL("SELECT {} FROM events WHERE {} ORDER BY time, event_id LIMIT %s").format(
        sql.SQL(_EVENT_COLUMNS), sql.SQL(" AND ").join(where)
    )
    params.append(limit + 1)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]["time"], rows[-1]["event_id"])
