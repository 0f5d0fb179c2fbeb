"""Retention policies and the reads the retention runner plans its steps with (migration 0021).

A policy says how long a tenant keeps one kind of record: `events` of a family (or of one
event type of it) by their event `time`, or `dead_letters` of a family by `received_at`.
Every statement runs inside the caller's tenant transaction (`store.tenancy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

KINDS = ("events", "dead_letters")


@dataclass(frozen=True)
class Policy:
    tenant: str
    kind: str
    family: str
    event_type: str
    """'' for the whole family."""
    keep_seconds: int
    updated_at: datetime | None = None
    last_run_at: datetime | None = None
    last_cut: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "family": self.family, "type": self.event_type or None,
            "keep_days": self.keep_seconds / 86400,
            "updated_at": _iso(self.updated_at), "last_run_at": _iso(self.last_run_at),
            "last_cut": _iso(self.last_cut),
        }  # fmt: skip


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


_COLUMNS = "tenant, kind, family, event_type, keep_seconds, updated_at, last_run_at, last_cut"


async def put_policy(
    conn: AsyncConnection[Any], tenant: str, kind: str, family: str, event_type: str,
    keep_seconds: int,
) -> Policy:  # fmt: skip
    """Set a policy (replacing the one of the same kind, family and type)."""
    async with conn.cursor(row_factory=class_row(Policy)) as cur:
        await cur.execute(
            "INSERT INTO retention_policies (tenant, kind, family, event_type, keep_seconds)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant, kind, family, event_type)"
            " DO UPDATE SET keep_seconds = EXCLUDED.keep_seconds, updated_at = now()"
            f" RETURNING {_COLUMNS}",
            (tenant, kind, family, event_type, keep_seconds),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def policies(conn: AsyncConnection[Any], tenant: str) -> list[Policy]:
    """The tenant's policies, by kind, family and type."""
    async with conn.cursor(row_factory=class_row(Policy)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM retention_policies WHERE tenant = %s"
            " ORDER BY kind, family, event_type",
            (tenant,),
        )
        return await cur.fetchall()


async def clear_policy(
    conn: AsyncConnection[Any], tenant: str, kind: str, family: str, event_type: str
) -> bool:
    """Remove one policy; whether there was one."""
    cur = await conn.execute(
        "DELETE FROM retention_policies"
        " WHERE tenant = %s AND kind = %s AND family = %s AND event_type = %s",
        (tenant, kind, family, event_type),
    )
    return cur.rowcount > 0


async def mark_run(
    conn: AsyncConnection[Any], tenant: str, kind: str, family: str, event_type: str,
    cut: datetime,
) -> None:  # fmt: skip
    """Record that a run applied `cut` for this policy (a default has no row: nothing)."""
    await conn.execute(
        "UPDATE retention_policies SET last_run_at = now(), last_cut = %s"
        " WHERE tenant = %s AND kind = %s AND family = %s AND event_type = %s",
        (cut, tenant, kind, family, event_type),
    )


async def tenants(conn: AsyncConnection[Any]) -> list[str]:
    """Every tenant with a policy or a key (`sluice_retention_tenants()`)."""
    cur = await conn.execute("SELECT sluice_retention_tenants()")
    return [str(r[0]) for r in await cur.fetchall()]


def _type_clause(event_type: str | None, excepted: list[str]) -> tuple[str, list[Any]]:
    if event_type:
        return " AND type = %s", [event_type]
    if excepted:
        return " AND type <> ALL(%s::text[])", [excepted]
    return "", []


async def step_cut(
    conn: AsyncConnection[Any], tenant: str, family: str, cut: datetime,
    event_type: str | None, excepted: list[str], rows: int,
) -> datetime | None:  # fmt: skip
    """Where the next step of an expiry ends: the `time` of the (rows+1)-th event older
    than `cut` (so a delete up to it removes at most `rows`), `cut` itself when fewer
    remain, None when none does. Reads the `events_by_time` index in order."""
    clause, params = _type_clause(event_type, excepted)
    base = f"FROM events WHERE tenant = %s AND family = %s AND time < %s{clause}"
    cur = await conn.execute(
        f"SELECT time {base} ORDER BY time LIMIT 1",
        [tenant, family, cut, *params],
    )
    first = await cur.fetchone()
    if first is None:
        return None
    cur = await conn.execute(
        f"SELECT time {base} ORDER BY time OFFSET %s LIMIT 1",
        [tenant, family, cut, *params, rows],
    )
    found = await cur.fetchone()
    if found is None:
        return cut
    if found[0] <= first[0]:  # more than `rows` share the first instant: take them all
        return min(cut, _just_after(first[0]))
    end: datetime = found[0]
    return end


def _just_after(moment: datetime) -> datetime:
    return moment + timedelta(microseconds=1)


async def types_before(
    conn: AsyncConnection[Any], tenant: str, family: str, end: datetime, excepted: list[str]
) -> list[str]:
    """The event types of the family's events older than `end`, but the `excepted` ones
    (types with a policy of their own): what a family-wide step deletes."""
    clause, params = _type_clause(None, excepted)
    cur = await conn.execute(
        f"SELECT DISTINCT type FROM events WHERE tenant = %s AND family = %s AND time < %s{clause}",
        [tenant, family, end, *params],
    )
    return sorted(str(r[0]) for r in await cur.fetchall())


async def expire_dead_letters(
    conn: AsyncConnection[Any], tenant: str, family: str, cut: datetime, rows: int
) -> int:
    """Delete up to `rows` of the family's dead letters received before `cut` that no
    replay holds a claim on; how many went."""
    cur = await conn.execute(
        "WITH picked AS MATERIALIZED (SELECT dead_letter_id FROM dead_letters"
        " WHERE tenant = %s AND family = %s AND received_at < %s"
        " AND (claimed_until IS NULL OR claimed_until < now())"
        " ORDER BY dead_letter_id LIMIT %s FOR UPDATE SKIP LOCKED)"
        " DELETE FROM dead_letters d USING picked"
        " WHERE d.tenant = %s AND d.dead_letter_id = picked.dead_letter_id",
        (tenant, family, cut, rows, tenant),
    )
    return cur.rowcount


RUNS_KEPT = 100
"""Runs kept per tenant; older ones are pruned when a new one starts."""


async def start_run(conn: AsyncConnection[Any], tenant: str, run_id: str) -> None:
    await conn.execute(
        "INSERT INTO retention_runs (tenant, run_id) VALUES (%s, %s)", (tenant, run_id)
    )
    await conn.execute(
        "DELETE FROM retention_runs WHERE tenant = %s AND run_id IN (SELECT run_id"
        " FROM retention_runs WHERE tenant = %s ORDER BY started_at DESC OFFSET %s)",
        (tenant, tenant, RUNS_KEPT),
    )


async def update_run(
    conn: AsyncConnection[Any], tenant: str, run_id: str, *, events: int = 0,
    dead_letters: int = 0, receipt: str | None = None, state: str | None = None,
    error: str | None = None,
) -> None:  # fmt: skip
    """Add to a run's counts (and receipts); finish it with `state` done or failed."""
    await conn.execute(
        "UPDATE retention_runs SET events_removed = events_removed + %s,"
        " dead_letters_removed = dead_letters_removed + %s,"
        " receipts = CASE WHEN %s::text IS NULL THEN receipts"
        "            ELSE receipts || to_jsonb(%s::text) END,"
        " state = coalesce(%s, state), error = coalesce(%s, error),"
        " finished_at = CASE WHEN %s::text IS NULL THEN finished_at ELSE now() END"
        " WHERE tenant = %s AND run_id = %s",
        (events, dead_letters, receipt, receipt, state, error, state, tenant, run_id),
    )


async def get_run(conn: AsyncConnection[Any], tenant: str, run_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT run_id, state, started_at, finished_at, events_removed, dead_letters_removed,"
        " receipts, error FROM retention_runs WHERE tenant = %s AND run_id::text = %s",
        (tenant, run_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    names = ("run_id", "state", "started_at", "finished_at", "events_removed",
             "dead_letters_removed", "receipts", "error")  # fmt: skip
    found = dict(zip(names, row, strict=True))
    for stamp in ("started_at", "finished_at"):
        found[stamp] = _iso(found[stamp])
    found["run_id"] = str(found["run_id"])
    return found
