"""What an event's history costs the sink, per event: `python -m bench.history_cost`.

Run it against a scratch database migrated by `sluice migrate` (DATABASE_URL): it writes
`--events` versions of a tenant of its own through the sink's real writer
(`sinks.writer.write_events`) and `sinks.history.record_envelopes`, then the same ids again
as newer versions (the upsert, where the `event_history` trigger fires), and deletes its
rows at the end. It reports, per event: bytes of the `ingest_envelopes` rows
(`pg_column_size`) and of their indexes (growth of `pg_indexes_size`), bytes per replaced
version kept in `event_history`, and the sink's write time with and without the history
(envelopes on inserts, the trigger on replacements), median of `--rounds`.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
import psycopg

from runtime.settings import load_settings
from sinks.bulk import binary_array_parameters
from sinks.history import record_envelopes
from sinks.rows import EventRow
from sinks.writer import write_events
from sluice.devstate import environ_with_dev_stack

BATCH = 20_000
"""The sink's batch (SLUICE_SINK_BATCH_SIZE)."""


def versions(tenant: str, ids: list[str], per_envelope: int, base: int) -> list[EventRow]:
    """Versions as the sink sees them: `per_envelope` events per request and partition."""
    now = datetime.now(UTC)
    out = []
    for i, event_id in enumerate(ids):
        offset, index = base + i // per_envelope, i % per_envelope
        out.append(EventRow(
            tenant, "native", event_id, "usage", "bench", None, now, '{"units": 1}', now,
            offset << 20 | index, offset % 12, False, f"req-{offset}-{tenant}",
        ))  # fmt: skip
    return out


def _timed(conn: psycopg.Connection[Any], work: Callable[[], object]) -> float:
    began = time.perf_counter()
    with conn.transaction():
        work()
    return time.perf_counter() - began


def _call(work: Callable[..., object], *args: Any) -> Callable[[], object]:
    return lambda: work(*args)


def _sizes(conn: psycopg.Connection[Any], tenant: str) -> dict[str, float]:
    row = conn.execute(
        "SELECT (SELECT coalesce(sum(pg_column_size(g.*)), 0) FROM ingest_envelopes g"
        "        WHERE tenant = %(t)s),"
        "       (SELECT coalesce(sum(pg_column_size(h.*)), 0) FROM event_history h"
        "        WHERE tenant = %(t)s),"
        "       pg_indexes_size('ingest_envelopes'), pg_indexes_size('event_history')",
        {"t": tenant},
    ).fetchone()
    assert row is not None
    return dict(zip(("envelopes", "history", "envelope_indexes", "history_indexes"),
                    map(float, row), strict=True))  # fmt: skip


def _round(conn: psycopg.Connection[Any], events: int, per_envelope: int) -> dict[str, float]:
    tenant = f"bench-history-{uuid.uuid4().hex[:8]}"
    ids = [str(uuid.uuid4()) for _ in range(events)]
    first = versions(tenant, ids, per_envelope, 1_000)
    newer = versions(tenant, ids, per_envelope, 9_000_000)
    before = _sizes(conn, tenant)
    batches = [first[i : i + BATCH] for i in range(0, events, BATCH)]
    inserts = sum(_timed(conn, _call(write_events, conn, b, [])) for b in batches)
    envelopes = sum(_timed(conn, _call(record_envelopes, conn, b)) for b in batches)
    conn.execute("ALTER TABLE events DISABLE TRIGGER events_keep_replaced")
    plain = _timed(conn, lambda: write_events(conn, newer[:BATCH], []))
    conn.execute("ALTER TABLE events ENABLE TRIGGER events_keep_replaced")
    again = versions(tenant, ids, per_envelope, 18_000_000)
    kept = _timed(conn, lambda: write_events(conn, again[:BATCH], []))
    after = _sizes(conn, tenant)
    replaced = min(events, BATCH)
    for table in ("events", "ingest_envelopes", "event_history"):
        conn.execute(f"DELETE FROM {table} WHERE tenant = %s", (tenant,))
    return {
        "envelope_bytes_per_event": (after["envelopes"] - before["envelopes"]) / events,
        "envelope_index_bytes_per_event":
            (after["envelope_indexes"] - before["envelope_indexes"]) / events,
        "history_bytes_per_replaced": (after["history"] - before["history"]) / replaced,
        "history_index_bytes_per_replaced":
            (after["history_indexes"] - before["history_indexes"]) / replaced,
        "insert_us_per_event": inserts / events * 1e6,
        "envelopes_us_per_event": envelopes / events * 1e6,
        "replace_us_per_event_without_trigger": plain / replaced * 1e6,
        "replace_us_per_event_with_trigger": kept / replaced * 1e6,
    }  # fmt: skip


def measure(database_url: str, events: int, per_envelope: int, rounds: int) -> dict[str, float]:
    """The median of `rounds` rounds of `_round`."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        binary_array_parameters(conn)
        found = [_round(conn, events, per_envelope) for _ in range(rounds)]
    return {k: round(statistics.median(r[k] for r in found), 2) for k in found[0]}


@click.command()
@click.option("--events", type=int, default=100_000, show_default=True)
@click.option("--per-envelope", type=int, default=100, show_default=True,
              help="Events per request and partition.")  # fmt: skip
@click.option("--rounds", type=int, default=3, show_default=True)
def main(events: int, per_envelope: int, rounds: int) -> None:
    """Print the per-event cost of the history as one JSON object."""
    settings = load_settings(environ_with_dev_stack())
    figures = measure(settings.database_url, events, per_envelope, rounds)
    click.echo(json.dumps({"events": events, "per_envelope": per_envelope, **figures}))


if __name__ == "__main__":
    main()
