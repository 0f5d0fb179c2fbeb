"""What the sink writes back to the compacted `events` topic, so Kafka forgets deletes too.

Only the sink knows which identities a delete by filter removed (they are rows
in PostgreSQL), so after applying one it produces, on the same partition:

* a tombstone (null value, the filter's version in `sluice.version`) for each
  identity it removed, so compaction drops their records;
* a tombstone for the filter's own record (key `~deletion|<id>`), which has
  done its work once applied.

These are appended after records the stream may have written in the meantime.
If a newer version of a removed identity landed between the filter and the
tombstone, compaction would keep the tombstone and lose that version; so when
the sink later reads back one of its own records and PostgreSQL holds something
newer for that identity, it writes the current state again (the row, or a
tombstone if it is gone). That repeats only while such races happen.

Every record it writes carries `sluice.origin: sink`. The sink produces them and
waits for Kafka's acknowledgement before its database transaction commits, so a
crash replays the batch and writes them again (harmless) rather than never.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from psycopg.rows import dict_row

from runtime.kafka import ProduceFailed
from schemas.codec import encode
from schemas.deletes import ORIGIN_HEADER, REQUESTED_AT_HEADER, VERSION_HEADER, filter_key
from schemas.identity import Identity
from sinks.records import SINK_ORIGIN
from sinks.rows import FilterRow, TombstoneRow, Version
from sinks.writer import Removed, WriteResult

WriteBack = tuple[int, bytes, bytes | None, list[tuple[str, bytes]]]
"""(partition, key, value or None, headers) on the `events` topic."""

_CURRENT = """
SELECT k.tenant, k.family, k.event_id, e.type, e.source, e.subject, e.time, e.data::text AS data,
       e.received_at, e.version, e.attributes::text AS attributes, e.schema_id,
       d.version AS deleted_version, d.requested_at
FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(tenant, family, event_id)
LEFT JOIN events e
       ON e.tenant = k.tenant AND e.family = k.family AND e.event_id = k.event_id
LEFT JOIN event_deletions d
       ON d.tenant = k.tenant AND d.family = k.family AND d.event_id = k.event_id
"""


def write_back(
    conn: psycopg.Connection[Any],
    upserts: Sequence[Version],
    tombstones: Sequence[TombstoneRow],
    filters: Sequence[FilterRow],
    result: WriteResult,
) -> list[WriteBack]:
    """Records to produce to `events` for this batch (after its writes, same transaction)."""
    out = [_removed_tombstone(r) for r in result.removed_by_filters]
    out += [(f.partition, filter_key(f.deletion_id), None, _own()) for f in filters]
    out += _repairs(conn, upserts, tombstones)
    return out


def _own(*extra: tuple[str, bytes]) -> list[tuple[str, bytes]]:
    return [(ORIGIN_HEADER, SINK_ORIGIN), *extra]


def _removed_tombstone(r: Removed) -> WriteBack:
    key = Identity(r.tenant, r.family, r.event_id).key()
    micros = int(r.requested_at.timestamp() * 1_000_000)
    headers = _own(
        (VERSION_HEADER, str(r.version).encode()), (REQUESTED_AT_HEADER, str(micros).encode())
    )
    return (r.partition, key, None, headers)


def _repairs(
    conn: psycopg.Connection[Any], upserts: Sequence[Version], tombstones: Sequence[TombstoneRow]
) -> list[WriteBack]:
    """For the sink's own records read back: write the current state if it is newer."""
    seen: dict[tuple[str, str, str], tuple[int, int, bool]] = {}
    rows: list[Version | TombstoneRow] = [*upserts, *tombstones]
    for row in rows:
        if row.from_sink and row.partition is not None:
            held = seen.get(row.identity)
            if held is None or held[0] < row.version:
                seen[row.identity] = (row.version, row.partition, not isinstance(row, TombstoneRow))
    if not seen:
        return []
    keys = list(seen)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_CURRENT, [[k[i] for k in keys] for i in range(3)])
        current = cur.fetchall()
    out: list[WriteBack] = []
    for now in current:
        identity = (now["tenant"], now["family"], now["event_id"])
        version, partition, was_event = seen[identity]
        repair = _repair(now, version, partition, was_event)
        if repair is not None:
            out.append(repair)
    return out


def _repair(now: dict[str, Any], version: int, partition: int, was_event: bool) -> WriteBack | None:
    key = Identity(now["tenant"], now["family"], now["event_id"]).key()
    if now["version"] is not None and now["version"] > version:
        record = {
            "tenant": now["tenant"], "family": now["family"], "event_id": now["event_id"],
            "type": now["type"], "source": now["source"], "subject": now["subject"],
            "time": now["time"], "data_json": now["data"], "received_at": now["received_at"],
            "version": now["version"], "attributes_json": now["attributes"],
            "schema_id": now["schema_id"],
        }  # fmt: skip
        return (partition, key, encode("CanonicalEvent", record), _own())
    if now["version"] is None and was_event and now["deleted_version"] is not None:
        headers = _own((VERSION_HEADER, str(now["deleted_version"]).encode()))
        return (partition, key, None, headers)
    return None


class WriteBackProducer:
    """Produces write-backs to `events` and waits for Kafka's acknowledgement of all of them.

    Created lazily: a sink that never applies a delete by filter never connects. The
    sink's writer threads share it (a confluent-kafka producer is thread-safe; each
    `send` counts only its own messages' errors, and its flush waits for them too).
    """

    def __init__(self, config: dict[str, Any], topic: str, timeout: float = 30.0) -> None:
        self._config = config
        self._topic = topic
        self._timeout = timeout
        self._producer: Producer | None = None
        self._creating = threading.Lock()

    def send(self, records: Sequence[WriteBack]) -> None:
        """Produce `records`; raise `ProduceFailed` unless Kafka acknowledged every one."""
        if not records:
            return
        with self._creating:
            if self._producer is None:
                self._producer = Producer(self._config)
        errors: list[str] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(str(err))

        try:
            for partition, key, value, headers in records:
                sent: list[tuple[str, str | bytes | None]] = list(headers)
                self._producer.produce(
                    self._topic, value=value, key=key, partition=partition, headers=sent,
                    on_delivery=delivered,
                )  # fmt: skip
        except (BufferError, KafkaException) as exc:
            raise ProduceFailed(str(exc)) from exc
        if self._producer.flush(self._timeout) or errors:
            raise ProduceFailed(errors[0] if errors else "write-backs not acknowledged in time")
