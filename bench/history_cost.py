"""What an event's history costs in PostgreSQL, per stored version: `python -m bench.history_cost`.

Writes `--rows` synthetic versions through the sink's own `record_history` into a
temporary copy of `event_history` (same columns, defaults and indexes; a session's
temporary table shadows the real one, so nothing real is touched), then reports bytes
per row: the tuple (`pg_column_size`), the heap and the indexes (relation sizes), and
the seconds the COPY took. DATABASE_URL names a migrated database (`sluice migrate`).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import click
import psycopg

from runtime.settings import load_settings
from sinks.history import record_history
from sinks.rows import EventRow
from sluice.devstate import environ_with_dev_stack


def versions(count: int) -> list[EventRow]:
    """Versions as the sink sees them: a UUIDv4 id, a request id, one in ten a replay."""
    now = datetime.now(UTC)
    return [
        EventRow(
            "acme-production",
            "native",
            str(uuid.uuid4()),
            "t",
            "s",
            None,
            now,
            "{}",
            now,
            (1_000_000 + i) << 20 | (i % 50),
            i % 12,
            False,
            str(uuid.uuid4()),
            str(uuid.uuid4()) if i % 10 == 0 else None,
        )
        for i in range(count)
    ]


_SCRATCH = """
CREATE TEMPORARY TABLE event_history
    (LIKE event_history INCLUDING DEFAULTS INCLUDING INDEXES)
"""


def measure(database_url: str, rows: int) -> dict[str, float]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(_SCRATCH)
        batch = versions(rows)
        began = time.perf_counter()
        with conn.transaction():
            for start in range(0, rows, 20_000):  # the sink's batch size
                record_history(conn, batch[start : start + 20_000])
        seconds = time.perf_counter() - began
        conn.execute("VACUUM ANALYZE pg_temp.event_history")
        found = conn.execute(
            "SELECT avg(pg_column_size(h.*)), pg_relation_size('pg_temp.event_history'),"
            " pg_indexes_size('pg_temp.event_history') FROM pg_temp.event_history h"
        ).fetchone()
        request = conn.execute("SELECT pg_column_size(%s::text)", (str(uuid.uuid4()),))
        request_bytes = request.fetchone()
    assert found is not None and request_bytes is not None
    tuple_bytes, heap, indexes = found
    return {
        "rows": rows,
        "tuple_bytes": round(float(tuple_bytes), 1),
        "heap_bytes_per_row": round(heap / rows, 1),
        "index_bytes_per_row": round(indexes / rows, 1),
        "request_id_bytes": float(request_bytes[0]),
        "copy_us_per_row": round(seconds / rows * 1e6, 2),
    }


@click.command()
@click.option("--rows", type=int, default=100_000, show_default=True)
def main(rows: int) -> None:
    """Print the per-version cost of `event_history` as one JSON object."""
    settings = load_settings(environ_with_dev_stack())
    click.echo(json.dumps(measure(settings.database_url, rows)))


if __name__ == "__main__":
    main()
