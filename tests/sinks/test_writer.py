"""First writes by plain insert: the same rows as the upsert, the same guards against deletes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from sinks.bulk import binary_array_parameters
from sinks.rows import EventRow, TombstoneRow
from sinks.writer import FirstWrites, write_events

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _row(tenant: str, event_id: str, version: int) -> EventRow:
    return EventRow(tenant, "native", event_id, "t", "s", None, T0, f'{{"v": {version}}}', T0,
                    version, 0)  # fmt: skip


def _stored(conn: psycopg.Connection[Any], tenant: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT event_id, version FROM events WHERE tenant = %s", (tenant,)
    ).fetchall()
    return {str(event_id): int(version) for event_id, version in rows}


def test_after_a_conflict_the_next_batches_skip_the_plain_insert() -> None:
    first = FirstWrites(patience=2)
    assert first.worth_trying() and first.worth_trying()
    first.conflicted()
    assert [first.worth_trying() for _ in range(4)] == [False, False, True, True]


@pytest.mark.integration
def test_plain_inserts_fall_back_to_the_upsert_and_keep_every_guard(database_url: str) -> None:
    tenant = f"fw-{uuid.uuid4().hex[:8]}"
    first = FirstWrites(patience=1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        binary_array_parameters(conn)

        def write(rows: list[EventRow], tombstones: Sequence[TombstoneRow] = ()) -> None:
            with conn.transaction():
                write_events(conn, rows, tombstones, first_writes=first)

        write([_row(tenant, "a", 10), _row(tenant, "b", 10)])  # new identities: no conflict
        assert _stored(conn, tenant) == {"a": 10, "b": 10}
        assert first.worth_trying()

        # "a" is stored: the plain insert fails, the upsert applies the batch instead.
        write([_row(tenant, "a", 20), _row(tenant, "c", 10), _row(tenant, "b", 5)])
        assert _stored(conn, tenant) == {"a": 20, "b": 10, "c": 10}
        assert not first.worth_trying()  # skipped once (patience 1), then tried again
        assert first.worth_trying()

        # "d" was deleted at version 30 before any version of it was stored: the plain
        # insert must refuse an older version as the upsert does, and take a newer one.
        write([], [TombstoneRow(tenant, "native", "d", 30, 0)])
        write([_row(tenant, "d", 25), _row(tenant, "e", 10)])
        assert _stored(conn, tenant) == {"a": 20, "b": 10, "c": 10, "e": 10}
        assert first.worth_trying()  # nothing stored conflicted
        write([_row(tenant, "d", 35)])
        assert _stored(conn, tenant)["d"] == 35
