"""The sink's half of "where is my event?": which request brought each stored version.

`events` holds each identity's current version; when a version leaves it (replaced or
deleted) a trigger keeps it in `event_history` (migration 0011). What neither knows is the
request: it travels in a header of each version (`schemas.history`), and the sink records
it once per envelope, not per event: one `ingest_envelopes` row per (request, partition)
envelope of a batch, with the ids it carried, COPYed in the sink's own transaction
(`sinks.batch.write_batch`), so versions and their envelopes commit together.

No unique key: COPY cannot skip duplicates, and a redelivered batch (a sink restarted
before its offsets were committed) writes its envelope rows again, or one envelope split
across two batches writes two; readers merge them (`store.history`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from schemas.versions import INDEX_BITS
from sinks.rows import Version

_COPY = """
COPY ingest_envelopes (tenant, family, kafka_partition, envelope_offset, request_id,
                       replay_of, received_at, event_ids)
FROM STDIN (FORMAT BINARY)
"""
_TYPES = ("text", "text", "int4", "int8", "text", "uuid", "timestamptz", "text[]")

_PRUNE = """
DELETE FROM {table}
WHERE (tenant, ctid) IN (
    SELECT tenant, ctid FROM {table} WHERE {column} < now() - make_interval(secs => %s) LIMIT %s)
"""
"""A row is named by (tenant, ctid), not ctid alone: on a database sharded by tenant
(docs/design.md#running-on-citus) a ctid is a place in one shard, and the tenant says which."""
_PRUNED = (("ingest_envelopes", "stored_at"), ("event_history", "left_at"))

Envelope = tuple[str, str, int, int, str | None, Any]
"""(tenant, family, partition, offset, replayed dead letter, received at)."""


def envelopes_of(versions: Sequence[Version]) -> dict[Envelope, tuple[str | None, list[str]]]:
    """The envelopes `versions` came from, each with its request and the ids it carried,
    in batch order. Only an envelope's first version names the request
    (`streams.outputs.request_headers`): the others take it from the version before them
    at the same position. An envelope whose first version is in another batch gets a row
    without its request here, and readers find it by position (`store.history`). The
    sink's own write-backs are left out: their envelope is recorded already."""
    found: dict[Envelope, tuple[str | None, list[str]]] = {}
    for v in versions:
        if v.from_sink or v.partition is None:
            continue
        key = (v.tenant, v.family, v.partition, v.version >> INDEX_BITS, v.replay_of,
               v.received_at)  # fmt: skip
        group = found.get(key)
        if group is None:
            found[key] = (v.request_id, [v.event_id])
        elif group[0] is None and v.request_id is not None:
            found[key] = (v.request_id, [*group[1], v.event_id])
        else:
            group[1].append(v.event_id)
    return found


def record_envelopes(conn: psycopg.Connection[Any], versions: Sequence[Version]) -> int:
    """COPY one `ingest_envelopes` row per envelope of a batch's versions; return how many."""
    envelopes = envelopes_of(versions)
    if not envelopes:
        return 0
    with conn.cursor() as cur, cur.copy(_COPY) as copy:
        copy.set_types(list(_TYPES))
        for (tenant, family, partition, offset, replay_of, received), (
            request,
            ids,
        ) in envelopes.items():
            copy.write_row((tenant, family, partition, offset, request,
                            _dead_letter_id(replay_of), received, ids))  # fmt: skip
    return len(envelopes)


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
    """Delete up to `limit` rows of each history table older than `older_than_seconds`."""
    gone = 0
    for table, column in _PRUNED:
        query = sql.SQL(_PRUNE).format(table=sql.Identifier(table), column=sql.Identifier(column))
        gone += conn.execute(query, (older_than_seconds, limit)).rowcount
    return gone
