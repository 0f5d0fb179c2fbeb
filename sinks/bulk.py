"""COPY-based bulk writing of event rows: the fast path for loading many rows at once.

`copy_event_rows` streams rows into a table with binary COPY, the cheapest way
into PostgreSQL (no per-row statement, no array building). The benchmark uses
it as the raw baseline the sink is measured against, and a sink can use it to
fill a staging table before one newest-wins `INSERT ... SELECT`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.array import ListBinaryDumper

from sinks.rows import EventRow, Version, decoded

EVENT_COLUMNS = ("tenant", "family", "event_id", "type", "source", "subject", "time", "data",
                 "received_at", "version", "attributes", "schema_id")  # fmt: skip
EVENT_TYPES = ("text", "text", "text", "text", "text", "text", "timestamptz", "jsonb",
               "timestamptz", "int8", "jsonb", "int4")  # fmt: skip


class JsonTextBinaryDumper(Dumper):
    """Dumps JSON that is already text (an event's `data_json`) as binary jsonb, unparsed.

    Binary jsonb is a version byte (1) then the JSON text; PostgreSQL parses it
    once on arrival, so Python never has to load and dump it again.
    """

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        text = obj if isinstance(obj, str) else str(obj)
        return b"\x01" + text.encode()


def binary_array_parameters(conn: psycopg.Connection[Any]) -> None:
    """Send list parameters of `conn`'s statements in binary, not as quoted text arrays.

    Deletes, tombstones and receipt steps pass their rows as one array per column
    (`unnest(%s::text[], ...)`). By default psycopg renders such arrays as text, escaping
    every element with a regular expression in Python (~19 µs per row when event batches
    went this way); binary arrays cost ~3 µs per row, and every array parameter in the
    writer has an explicit cast, so the values PostgreSQL sees are the same. Event
    versions, the bulk of a batch, go by COPY instead (`copy_event_rows`, ~0.7 µs).
    """
    conn.adapters.register_dumper(list, ListBinaryDumper)


COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
"""What opens binary COPY data: the signature, then flags and header extension length (0)."""
COPY_TRAILER = b"\xff\xff"
"""What ends it: a tuple of field count -1."""


def copy_event_rows(
    cur: psycopg.Cursor[Any],
    table: str,
    rows: Sequence[Version],
    tenant: str | None = None,
    *,
    with_partition: bool = False,
) -> int:
    """COPY `rows` into `table` (same columns as `events`); return how many were sent.

    `tenant` replaces every row's tenant (the benchmark copies into a tenant of its own);
    `with_partition` adds the `kafka_partition` column (the sink's staging table).
    Rows are formatted by psycopg's C code: ~0.7 µs per row of client CPU, against
    ~2.4 µs for the same rows as array parameters (dumped element by element in Python).
    The sink's rows mostly come encoded already (`sluice_fastpath.EncodedEvent`, the bytes
    psycopg would make of them): with the partition and their own tenants, on a UTF-8
    connection, those are sent as one block, unformatted.
    """
    columns = (*EVENT_COLUMNS, "kafka_partition") if with_partition else EVENT_COLUMNS
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    encoded = _encoded_rows(cur, rows) if with_partition and tenant is None else None
    if encoded is not None:
        with cur.copy(statement) as copy:
            copy.write(b"".join((COPY_SIGNATURE, *encoded, COPY_TRAILER)))
        return len(encoded)
    jsonb_oid = cur.adapters.types["jsonb"].oid
    dumper = type("JsonbText", (JsonTextBinaryDumper,), {"oid": jsonb_oid})
    cur.adapters.register_dumper(None, dumper)
    sent = 0
    with cur.copy(statement) as copy:
        copy.set_types(list((*EVENT_TYPES, "int4") if with_partition else EVENT_TYPES))
        write = copy.write_row
        for r in rows:
            if not isinstance(r, EventRow):  # a mixed batch: its encoded rows read back
                r = decoded(r)
            row = (tenant or r.tenant, r.family, r.event_id, r.type, r.source, r.subject, r.time,
                   r.data_json, r.received_at, r.version, r.attributes_json,
                   r.schema_id)  # fmt: skip
            write((*row, r.partition) if with_partition else row)
            sent += 1
    return sent


def _encoded_rows(cur: psycopg.Cursor[Any], rows: Sequence[Version]) -> list[bytes] | None:
    """Every row's COPY tuple, when all of them are encoded (UTF-8 text, as the connection's
    own encoding must be for the bytes to mean the same); else None."""
    if cur.connection.info.encoding != "utf-8":
        return None
    encoded = []
    for r in rows:
        if isinstance(r, EventRow):
            return None
        encoded.append(r.row)
    return encoded
