"""Dead letters in PostgreSQL: list, read, claim for replay, mark, discard; replay jobs.

Every function is scoped to one tenant in its SQL (row-level security is the
second wall). A replay *claims* a pending dead letter first (`claimed_by`,
`claimed_until`), so two replayers never publish the same one; the claim turns
into `replayed` only after Kafka acknowledged the replay, and is released when
publishing failed. A claim whose holder died expires after its time to live.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row, dict_row

from store.queries import decode_cursor, encode_cursor

STATUSES = ("pending", "replayed", "discarded")
STAGES = ("door", "stream", "sink")


@dataclass(frozen=True)
class DeadLetterFilter:
    """What listing and bulk replay may filter on; all optional."""

    family: str | None = None
    stage: str | None = None
    reason: str | None = None
    status: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    text: str | None = None
    subject: str | None = None
    """Dead letters refused by this data-contract subject: a `schema_violation` reason
    naming it (`schemas.contracts.violations` ends each message with the subject)."""

    def as_json(self) -> dict[str, Any]:
        """A JSON-able form, stored with a replay job."""
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            if value is not None:
                out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeadLetterFilter:
        """The inverse of `as_json`."""
        merged: dict[str, Any] = dict(data)
        for k in ("time_from", "time_to"):
            if k in data:
                merged[k] = datetime.fromisoformat(data[k])
        return cls(**merged)


@dataclass(frozen=True)
class StoredDeadLetter:
    """One row of `dead_letters`, raw bytes included."""

    dead_letter_id: uuid.UUID
    tenant: str
    family: str
    route: dict[str, str]
    content_type: str
    raw: bytes
    stage: str
    reasons: list[dict[str, str]]
    received_at: datetime
    event_id: str | None
    attempt: int
    replay_of: uuid.UUID | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    status: str
    stored_at: datetime
    resolved_at: datetime | None
    outcome: dict[str, Any] | None

    @property
    def id(self) -> str:
        return str(self.dead_letter_id)


_COLUMNS = sql.SQL(
    "dead_letter_id, tenant, family, route, content_type, raw, stage, reasons, received_at,"
    " event_id, attempt, replay_of, source_topic, source_partition, source_offset, status,"
    " stored_at, resolved_at, outcome"
)
_CLAIMABLE = sql.SQL("status = 'pending' AND (claimed_until IS NULL OR claimed_until < now())")


def as_uuid(value: str) -> uuid.UUID | None:
    """`value` as a UUID, or None: a malformed id is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def subject_mark(subject: str) -> str:
    """What a `schema_violation` message of `subject` holds (`schemas.contracts`)."""
    return f"({subject} version "


def _where(tenant: str, flt: DeadLetterFilter) -> tuple[list[sql.Composable], list[Any]]:
    where: list[sql.Composable] = [sql.SQL("tenant = %s")]
    params: list[Any] = [tenant]
    for column, op, value in (
        ("family", "=", flt.family),
        ("stage", "=", flt.stage),
        ("status", "=", flt.status),
        ("received_at", ">=", flt.time_from),
        ("received_at", "<", flt.time_to),
    ):
        if value is not None:
            where.append(sql.SQL("{} {} %s").format(sql.Identifier(column), sql.SQL(op)))
            params.append(value)
    if flt.reason is not None:
        where.append(sql.SQL("reasons @> %s::jsonb"))
        params.append(json.dumps([{"code": flt.reason}]))
    if flt.subject is not None:
        where.append(sql.SQL(
            "reasons @> '[{\"code\": \"schema_violation\"}]'::jsonb AND EXISTS (SELECT 1"
            " FROM jsonb_array_elements(reasons) r WHERE r ->> 'code' = 'schema_violation'"
            " AND strpos(r ->> 'message', %s) > 0)"
        ))  # fmt: skip
        params.append(subject_mark(flt.subject))
    if flt.text:
        # A byte search inside the tenant's (already filtered) rows: raw may be any bytes.
        where.append(sql.SQL("position(%s::bytea in raw) > 0"))
        params.append(flt.text.encode())
    return where, params


async def find_dead_letters(
    conn: AsyncConnection[Any],
    tenant: str,
    flt: DeadLetterFilter,
    *,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[StoredDeadLetter], str | None]:
    """A page of `tenant`'s dead letters by (received_at, id), and the next page's cursor."""
    where, params = _where(tenant, flt)
    if cursor is not None:
        after_time, after_id = decode_cursor(cursor)
        where.append(sql.SQL("(received_at, dead_letter_id) > (%s, %s::uuid)"))
        params += [after_time, after_id]
    query = sql.SQL(
        "SELECT {} FROM dead_letters WHERE {} ORDER BY received_at, dead_letter_id LIMIT %s"
    ).format(_COLUMNS, sql.SQL(" AND ").join(where))
    params.append(limit + 1)
    async with conn.cursor(row_factory=class_row(StoredDeadLetter)) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].received_at, rows[-1].id)


async def get_dead_letter(
    conn: AsyncConnection[Any], tenant: str, dead_letter_id: str
) -> StoredDeadLetter | None:
    """One dead letter of `tenant`, or None (also for another tenant's id)."""
    key = as_uuid(dead_letter_id)
    if key is None:
        return None
    query = sql.SQL("SELECT {} FROM dead_letters WHERE tenant = %s AND dead_letter_id = %s")
    async with conn.cursor(row_factory=class_row(StoredDeadLetter)) as cur:
        await cur.execute(query.format(_COLUMNS), (tenant, key))
        return await cur.fetchone()


async def count_dead_letters(conn: AsyncConnection[Any], tenant: str, flt: DeadLetterFilter) -> int:
    """How many of `tenant`'s dead letters match `flt`."""
    where, params = _where(tenant, flt)
    query = sql.SQL("SELECT count(*) FROM dead_letters WHERE {}").format(
        sql.SQL(" AND ").join(where)
    )
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def claim_one(
    conn: AsyncConnection[Any], tenant: str, dead_letter_id: str, owner: str, ttl_seconds: float
) -> StoredDeadLetter | None:
    """Claim one pending, unclaimed dead letter for replay; None when it is not claimable."""
    key = as_uuid(dead_letter_id)
    if key is None:
        return None
    query = sql.SQL(
        "UPDATE dead_letters SET claimed_by = %s,"
        " claimed_until = now() + make_interval(secs => %s)"
        " WHERE tenant = %s AND dead_letter_id = %s AND {} RETURNING {}"
    ).format(_CLAIMABLE, _COLUMNS)
    async with conn.cursor(row_factory=class_row(StoredDeadLetter)) as cur:
        await cur.execute(query, (owner, ttl_seconds, tenant, key))
        return await cur.fetchone()


async def claim_batch(
    conn: AsyncConnection[Any],
    tenant: str,
    flt: DeadLetterFilter,
    owner: str,
    ttl_seconds: float,
    limit: int,
    exclude: Sequence[uuid.UUID] = (),
) -> list[StoredDeadLetter]:
    """Claim up to `limit` pending dead letters matching `flt`, skipping rows others hold.

    `FOR UPDATE SKIP LOCKED` plus the claim columns make concurrent replayers
    of one filter take disjoint sets. `exclude`: ids this replayer already gave up on.
    """
    where, params = _where(tenant, flt)
    where.append(_CLAIMABLE)
    if exclude:
        where.append(sql.SQL("dead_letter_id <> ALL(%s::uuid[])"))
        params.append(list(exclude))
    # The rows are picked once, in a materialized CTE: as an `IN (subquery)` the planner may
    # rescan the LIMIT … SKIP LOCKED subquery per outer row, and so claim more than `limit`,
    # some of them after another claimer took them (seen once the key led with tenant).
    query = sql.SQL(
        "WITH picked AS MATERIALIZED (SELECT dead_letter_id AS picked_id FROM dead_letters"
        " WHERE tenant = %s AND {} ORDER BY received_at, dead_letter_id LIMIT %s"
        " FOR UPDATE SKIP LOCKED)"
        " UPDATE dead_letters d SET claimed_by = %s,"
        " claimed_until = now() + make_interval(secs => %s)"
        " FROM picked WHERE d.tenant = %s AND d.dead_letter_id = picked.picked_id"
        " RETURNING {}"
    ).format(sql.SQL(" AND ").join(where[1:]), _COLUMNS)  # where[0]: the tenant's, written out
    async with conn.cursor(row_factory=class_row(StoredDeadLetter)) as cur:
        await cur.execute(query, [tenant, *params[1:], limit, owner, ttl_seconds, tenant])
        rows = await cur.fetchall()
    return sorted(rows, key=lambda r: (r.received_at, r.id))


async def mark_replayed(
    conn: AsyncConnection[Any],
    tenant: str,
    owner: str,
    outcomes: Iterable[tuple[uuid.UUID, dict[str, Any]]],
) -> int:
    """Turn `owner`'s claims into `replayed`, recording each replay's outcome."""
    pairs = list(outcomes)
    if not pairs:
        return 0
    cur = await conn.execute(
        "UPDATE dead_letters d SET status = 'replayed', resolved_at = now(), outcome = o.outcome,"
        " claimed_by = NULL, claimed_until = NULL"
        " FROM unnest(%s::uuid[], %s::jsonb[]) AS o(id, outcome)"
        " WHERE d.tenant = %s AND d.dead_letter_id = o.id AND d.claimed_by = %s"
        " AND d.status = 'pending'",
        ([p[0] for p in pairs], [json.dumps(p[1]) for p in pairs], tenant, owner),
    )
    return cur.rowcount


async def release(
    conn: AsyncConnection[Any], tenant: str, owner: str, ids: Sequence[uuid.UUID]
) -> None:
    """Give back `owner`'s claims (publishing failed): the dead letters stay pending."""
    await conn.execute(
        "UPDATE dead_letters SET claimed_by = NULL, claimed_until = NULL"
        " WHERE tenant = %s AND dead_letter_id = ANY(%s) AND claimed_by = %s",
        (tenant, list(ids), owner),
    )


async def refresh_reasons(
    conn: AsyncConnection[Any],
    tenant: str,
    owner: str,
    reasons: Iterable[tuple[uuid.UUID, list[dict[str, str]]]],
) -> int:
    """Replace the reasons of `owner`'s claimed dead letters and give the claims back:
    they stay pending, explained against the contract they were checked with (a heal)."""
    pairs = list(reasons)
    if not pairs:
        return 0
    cur = await conn.execute(
        "UPDATE dead_letters d SET reasons = r.reasons, claimed_by = NULL, claimed_until = NULL"
        " FROM unnest(%s::uuid[], %s::jsonb[]) AS r(id, reasons)"
        " WHERE d.tenant = %s AND d.dead_letter_id = r.id AND d.claimed_by = %s"
        " AND d.status = 'pending'",
        ([p[0] for p in pairs], [json.dumps(p[1]) for p in pairs], tenant, owner),
    )
    return cur.rowcount


async def discard(conn: AsyncConnection[Any], tenant: str, dead_letter_id: str) -> str | None:
    """Discard a pending dead letter; return its status afterwards (None: no such id)."""
    key = as_uuid(dead_letter_id)
    if key is None:
        return None
    query = sql.SQL(
        "UPDATE dead_letters SET status = 'discarded', resolved_at = now()"
        " WHERE tenant = %s AND dead_letter_id = %s AND {} RETURNING 1"
    ).format(_CLAIMABLE)
    cur = await conn.execute(query, (tenant, key))
    if await cur.fetchone():
        return "discarded"
    cur = await conn.execute(
        "SELECT status, claimed_until > now() FROM dead_letters"
        " WHERE tenant = %s AND dead_letter_id = %s",
        (tenant, key),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return "replaying" if row[0] == "pending" and row[1] else str(row[0])


async def deleted_after(
    conn: AsyncConnection[Any], tenant: str, candidates: Sequence[tuple[str, str, datetime]]
) -> set[tuple[str, str]]:
    """The (family, event id) pairs among `candidates` deleted after the given time."""
    if not candidates:
        return set()
    cur = await conn.execute(
        "SELECT d.family, d.event_id FROM event_deletions d"
        " JOIN unnest(%s::text[], %s::text[], %s::timestamptz[]) AS c(family, event_id, since)"
        " ON d.family = c.family AND d.event_id = c.event_id"
        " WHERE d.tenant = %s AND d.deleted_at > c.since",
        ([c[0] for c in candidates], [c[1] for c in candidates], [c[2] for c in candidates],
         tenant),
    )  # fmt: skip
    return {(str(r[0]), str(r[1])) for r in await cur.fetchall()}


async def superseded_after(
    conn: AsyncConnection[Any], tenant: str, candidates: Sequence[tuple[str, str, datetime]]
) -> set[tuple[str, str]]:
    """The (family, event id) pairs among `candidates` whose stored version arrived after the
    given time: a replay of what was rejected before would overwrite newer data."""
    if not candidates:
        return set()
    cur = await conn.execute(
        "SELECT e.family, e.event_id FROM events e"
        " JOIN unnest(%s::text[], %s::text[], %s::timestamptz[]) AS c(family, event_id, since)"
        " ON e.family = c.family AND e.event_id = c.event_id"
        " WHERE e.tenant = %s AND e.received_at > c.since",
        ([c[0] for c in candidates], [c[1] for c in candidates], [c[2] for c in candidates],
         tenant),
    )  # fmt: skip
    return {(str(r[0]), str(r[1])) for r in await cur.fetchall()}


JOB_COUNTS = ("total", "replayed", "still_invalid", "failed", "skipped")


JOB_KINDS = ("replay", "heal")


async def create_job(
    conn: AsyncConnection[Any], tenant: str, flt: DeadLetterFilter, dry_run: bool, total: int,
    kind: str = "replay",
) -> str:  # fmt: skip
    """Record a queued replay job (`kind` heal: the heal of `flt.subject`); return its id."""
    job_id = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO replay_jobs (job_id, tenant, filter, dry_run, total, kind)"
        " VALUES (%s, %s, %s::jsonb, %s, %s, %s)",
        (job_id, tenant, json.dumps(flt.as_json()), dry_run, total, kind),
    )
    return job_id


async def get_job(conn: AsyncConnection[Any], tenant: str, job_id: str) -> dict[str, Any] | None:
    """One replay job of `tenant`, or None."""
    key = as_uuid(job_id)
    if key is None:
        return None
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT * FROM replay_jobs WHERE tenant = %s AND job_id = %s", (tenant, key)
        )
        return await cur.fetchone()


async def adopt_stale_job(
    conn: AsyncConnection[Any], tenant: str, job_id: str, stale_seconds: float
) -> dict[str, Any] | None:
    """Take over an unfinished job whose runner stopped beating (its process died); None
    unless it was stale. The conditional update makes exactly one adopter win."""
    key = as_uuid(job_id)
    if key is None:
        return None
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "UPDATE replay_jobs SET heartbeat_at = now()"
            " WHERE tenant = %s AND job_id = %s AND state IN ('queued', 'running')"
            " AND coalesce(heartbeat_at, created_at) < now() - make_interval(secs => %s)"
            " RETURNING *",
            (tenant, key, stale_seconds),
        )
        return await cur.fetchone()


async def update_job(
    conn: AsyncConnection[Any], tenant: str, job_id: str, *, state: str | None = None,
    add: dict[str, int] | None = None, error: str | None = None,
) -> None:  # fmt: skip
    """Add to a job's counts and move its state; stamps the heartbeat."""
    add = add or {}
    sets: list[sql.Composable] = [sql.SQL("heartbeat_at = now()")]
    params: list[Any] = []
    for name in JOB_COUNTS:
        if add.get(name):
            sets.append(sql.SQL("{0} = {0} + %s").format(sql.Identifier(name)))
            params.append(add[name])
    if state is not None:
        sets.append(sql.SQL("state = %s"))
        params.append(state)
        stamp = {"running": "started_at", "done": "finished_at", "failed": "finished_at"}
        if state in stamp:
            sets.append(sql.SQL("{} = now()").format(sql.Identifier(stamp[state])))
    if error is not None:
        sets.append(sql.SQL("error = %s"))
        params.append(error)
    query = sql.SQL("UPDATE replay_jobs SET {} WHERE tenant = %s AND job_id = %s").format(
        sql.SQL(", ").join(sets)
    )
    await conn.execute(query, [*params, tenant, job_id])


MAX_GROUPS = 200
TREND_HOURS = 24

_SUMMARY = """
WITH matching AS MATERIALIZED (
    SELECT family, status, received_at, reasons FROM dead_letters WHERE {where}
), coded AS (
    SELECT m.family, m.status, m.received_at, coalesce(r.code, '') AS code
    FROM matching m
    LEFT JOIN LATERAL (
        SELECT DISTINCT e ->> 'code' AS code FROM jsonb_array_elements(m.reasons) e
    ) r ON true
    WHERE {code}
), groups AS (
    SELECT code, family, count(*) AS n, count(*) FILTER (WHERE status = 'pending') AS pending,
           min(received_at) AS first, max(received_at) AS last
    FROM coded GROUP BY code, family ORDER BY n DESC, code, family LIMIT {limit}
)
SELECT g.code, g.family, g.n, g.pending, extract(epoch FROM g.first)::float8,
       extract(epoch FROM g.last)::float8, (SELECT count(*) FROM matching),
       coalesce((
           SELECT jsonb_agg(jsonb_build_array(h.t, h.n) ORDER BY h.t) FROM (
               SELECT extract(epoch FROM date_trunc('hour', c.received_at))::bigint AS t,
                      count(*) AS n
               FROM coded c
               WHERE c.code = g.code AND c.family = g.family
                 AND c.received_at >= date_trunc('hour', now()) - make_interval(hours => {hours})
               GROUP BY 1
           ) h
       ), '[]'::jsonb)
FROM groups g ORDER BY g.n DESC, g.code, g.family
"""


async def summarize_dead_letters(
    conn: AsyncConnection[Any], tenant: str, flt: DeadLetterFilter
) -> dict[str, Any]:
    """`tenant`'s dead letters matching `flt`, grouped by (reason code, family), largest
    first, at most `MAX_GROUPS`: counts, pending, first and last received, and a trend of
    counts per hour over the last `TREND_HOURS` (hours without any left out). A dead letter
    with several reason codes counts in each code's group; `total` counts it once."""
    where, params = _where(tenant, flt)
    code: sql.Composable = sql.SQL("true")
    if flt.reason is not None:
        code = sql.SQL("r.code = %s")
        params.append(flt.reason)
    query = sql.SQL(_SUMMARY).format(
        where=sql.SQL(" AND ").join(where), code=code, limit=sql.Literal(MAX_GROUPS),
        hours=sql.Literal(TREND_HOURS - 1),
    )  # fmt: skip
    cur = await conn.execute(query, params)
    rows = await cur.fetchall()
    total = int(rows[0][6]) if rows else 0  # every matching dead letter is in a group
    groups = [
        {"reason": r[0], "family": r[1], "count": int(r[2]), "pending": int(r[3]),
         "first": round(r[4], 3), "last": round(r[5], 3), "trend": r[7]}
        for r in rows
    ]  # fmt: skip
    return {"groups": groups, "total": total}
