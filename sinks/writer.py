"""Idempotent batch writes into PostgreSQL: one statement per batch, newest version wins.

Redelivery, a sink restarted from an older offset, or a replay can present an
older version again; the `WHERE` clauses let it change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

from sinks.rows import EventRow, TombstoneRow, newest_wins

_UPSERT_EVENTS = """
INSERT INTO events AS e
    (tenant, family, event_id, type, source, subject, time, data, received_at, version)
SELECT s.tenant, s.family, s.event_id, s.type, s.source, s.subject, s.time, s.data::jsonb,
       s.received_at, s.version
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
            %s::timestamptz[], %s::text[], %s::timestamptz[], %s::bigint[])
     AS s(tenant, family, event_id, type, source, subject, time, data, received_at, version)
WHERE NOT EXISTS (
    SELECT 1 FROM event_deletions d
    WHERE d.tenant = s.tenant AND d.family = s.family AND d.event_id = s.event_id
      AND d.version > s.version)
ON CONFLICT (tenant, family, event_id) DO UPDATE SET
    type = EXCLUDED.type, source = EXCLUDED.source, subject = EXCLUDED.subject,
    time = EXCLUDED.time, data = EXCLUDED.data, received_at = EXCLUDED.received_at,
    version = EXCLUDED.version, stored_at = now()
WHERE e.version < EXCLUDED.version
"""

_RECORD_DELETIONS = """
INSERT INTO event_deletions AS d (tenant, family, event_id, version)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[])
ON CONFLICT (tenant, family, event_id) DO UPDATE SET
    version = EXCLUDED.version, deleted_at = now()
WHERE d.version < EXCLUDED.version
"""

_DELETE_EVENTS = """
DELETE FROM events e
USING unnest(%s::text[], %s::text[], %s::text[], %s::bigint[])
      AS t(tenant, family, event_id, version)
WHERE e.tenant = t.tenant AND e.family = t.family AND e.event_id = t.event_id
  AND e.version < t.version
"""

_INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (dead_letter_id, tenant, family, route, content_type, raw, stage,
    reasons, received_at, event_id, attempt, replay_of, source_topic, source_partition,
    source_offset)
VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (dead_letter_id) DO NOTHING
"""


def _columns(rows: Sequence[Any], names: Sequence[str]) -> list[list[Any]]:
    return [[getattr(r, n) for r in rows] for n in names]


def write_events(
    conn: psycopg.Connection[Any], upserts: Sequence[EventRow], tombstones: Sequence[TombstoneRow]
) -> None:
    """Apply a batch of versions and deletes inside the caller's transaction."""
    deletes = newest_wins(tombstones)
    if deletes:
        cols = _columns(deletes, ("tenant", "family", "event_id", "version"))
        conn.execute(_RECORD_DELETIONS, cols)
        conn.execute(_DELETE_EVENTS, cols)
    latest = newest_wins(upserts)
    if latest:
        names = ("tenant", "family", "event_id", "type", "source", "subject", "time",
                 "data_json", "received_at", "version")  # fmt: skip
        conn.execute(_UPSERT_EVENTS, _columns(latest, names))


def write_dead_letters(conn: psycopg.Connection[Any], records: Sequence[dict[str, Any]]) -> None:
    """Store dead letters raw; a redelivered one (same id) changes nothing."""
    if not records:
        return
    with conn.cursor() as cur:
        cur.executemany(_INSERT_DEAD_LETTER, [_dead_letter_params(r) for r in records])


def _dead_letter_params(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["dead_letter_id"], r["tenant"], r["family"], json.dumps(r["route"]),
        r["content_type"], r["raw"], r["stage"], json.dumps(r["reasons"]), r["received_at"],
        r["event_id"], r["attempt"], r["replay_of"], r["source_topic"], r["source_partition"],
        r["source_offset"],
    )  # fmt: skip
