"""The sink's fast paths against real PostgreSQL: binary COPY of rows, and binary array
parameters giving the writer exactly the same newest-wins results as text arrays."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from sinks.bulk import binary_array_parameters, copy_event_rows
from sinks.rows import EventRow
from sinks.writer import write_events

pytestmark = pytest.mark.integration

T0 = datetime(2024, 11, 23, 10, 0, tzinfo=UTC)


def _row(tenant: str, i: int, version: int, subject: str | None = "s") -> EventRow:
    data = json.dumps({"n": i, "quote": 'a "b" \\ c', "unicode": "é€"})
    return EventRow(tenant, "native", f"e-{i}", "t.x", "/src", subject, T0 + timedelta(i),
                    data, T0, version, i % 4)  # fmt: skip


def _stored(conn: psycopg.Connection[Any], tenant: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT event_id, type, source, subject, time, data, received_at, version"
        " FROM events WHERE tenant = %s ORDER BY event_id",
        (tenant,),
    ).fetchall()


def _apply_batches(url: str, tenant: str, *, binary: bool) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        if binary:
            binary_array_parameters(conn)
        batches = [
            [_row(tenant, i, 10 + i) for i in range(6)],
            [_row(tenant, i, 5, subject=None) for i in range(3)],  # older: must change nothing
            [_row(tenant, i, 100, subject=None) for i in range(3, 6)],  # newer: replaces
        ]
        for batch in batches:
            with conn.transaction():
                write_events(conn, batch, [])
        return _stored(conn, tenant)


def test_binary_arrays_store_what_text_arrays_store(database_url: str) -> None:
    text = _apply_batches(database_url, f"bulk-t-{uuid.uuid4().hex[:8]}", binary=False)
    binary = _apply_batches(database_url, f"bulk-b-{uuid.uuid4().hex[:8]}", binary=True)
    assert binary == text
    assert [r[7] for r in binary] == [10, 11, 12, 100, 100, 100]


def test_copy_event_rows_round_trips_every_column(database_url: str) -> None:
    tenant = f"bulk-c-{uuid.uuid4().hex[:8]}"
    rows = [_row("ignored", i, 1 << 40 | i, subject=None if i % 2 else "s") for i in range(50)]
    with psycopg.connect(database_url) as conn:
        with conn.cursor() as cur:
            assert copy_event_rows(cur, "events", rows, tenant=tenant) == 50
        conn.commit()
        stored = _stored(conn, tenant)
    assert len(stored) == 50
    by_id = {r[0]: r for r in stored}
    for row in rows:
        _id, type_, source, subject, time, data, received_at, version = by_id[row.event_id]
        assert (type_, source, subject, time, received_at, version) == (
            row.type, row.source, row.subject, row.time, row.received_at, row.version,
        )  # fmt: skip
        assert data == json.loads(row.data_json)
