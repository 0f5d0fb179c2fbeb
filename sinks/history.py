"""The sink's half of "where is my event?": one `event_history` row per version it stores.

`events` keeps only the current version of an identity; the history keeps, per version
the sink received, what the current row forgets once it is replaced: which request (or
replay of which dead letter) brought it, where it sat in `ingest.raw` (the version is
that position, `schemas.versions`), when it was received and when it was stored. The
rows are COPYed in the sink's own transaction (`sinks.batch.write_batch`), once per
batch, never per event at the door, so a version and its history commit together.

No unique key: COPY cannot skip duplicates, and a redelivered batch (a sink restarted
before its offsets were committed) writes its rows again; readers collapse them
(`store.history`), which is cheaper than checking every row here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from sinks.rows import EventRow

_COPY = """
COPY event_history (tenant, family, event_id, version, kafka_partition, request_id,
                    replay_of, received_at)
FROM STDIN (FORMAT BINARY)
"""
_TYPES = ("text", "text", "text", "int8", "int4", "text", "uuid", "timestamptz")

_PRUNE = """
DELETE FROM event_history
WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM event_history WHERE stored_at < now() - make_interval(secs => %s)
    LIMIT %s))
"""


def record_history(conn: psycopg.Connection[Any], versions: Sequence[EventRow]) -> int:
    """COPY a history row for each version of a batch (not the sink's own write-backs,
    whose original is recorded already); return how many were written."""
    rows = [v for v in versions if not v.from_sink]
    if not rows:
        return 0
    with conn.cursor() as cur, cur.copy(_COPY) as copy:
        copy.set_types(list(_TYPES))
        write = copy.write_row
        for r in rows:
            write((r.tenant, r.family, r.event_id, r.version, r.partition, r.request_id,
                   _dead_letter_id(r.replay_of), r.received_at))  # fmt: skip
    return len(rows)


def _dead_letter_id(text: str | None) -> uuid.UUID | None:
    """The replayed dead letter's id; a header that is no UUID (a producer other than
    Sluice's stream wrote it) is dropped rather than failing the batch."""
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def prune_history(conn: psycopg.Connection[Any], older_than_seconds: float, limit: int) -> int:
    """Delete up to `limit` history rows stored more than `older_than_seconds` ago."""
    return conn.execute(_PRUNE, (older_than_seconds, limit)).rowcount
