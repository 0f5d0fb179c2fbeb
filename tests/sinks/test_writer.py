"""First writes by plain insert: the same rows as the upsert, the same guards against deletes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from schemas.deletes import DeleteFilter
from sinks.bulk import binary_array_parameters
from sinks.rows import EventRow, FilterRow, TombstoneRow
from sinks.writer import STAGE, FirstWrites, apply_filters, write_events

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


def _staged(conn: psycopg.Connection[Any]) -> bool:
    """Whether this session ever created the staging table (the copy-straight path never does)."""
    row = conn.execute("SELECT to_regclass('pg_temp.' || %s) IS NOT NULL", (STAGE,)).fetchone()
    return bool(row and row[0])


@pytest.mark.integration
def test_new_identities_no_delete_could_refuse_are_copied_straight_into_events(
    database_url: str,
) -> None:
    tenant = f"cs-{uuid.uuid4().hex[:8]}"
    rows = [_row(tenant, "a", 10), _row(tenant, "b", 11)]
    with psycopg.connect(database_url, autocommit=True) as conn:
        binary_array_parameters(conn)
        with conn.transaction():
            write_events(conn, rows, [], first_writes=FirstWrites())
        assert _stored(conn, tenant) == {"a": 10, "b": 11}
        assert not _staged(conn)
        # a stored identity: the COPY fails, the savepoint goes, the upsert decides
        with conn.transaction():
            write_events(conn, [_row(tenant, "a", 20), _row(tenant, "c", 5)], [],
                         first_writes=FirstWrites())  # fmt: skip
        assert _stored(conn, tenant) == {"a": 20, "b": 11, "c": 5}
        assert _staged(conn)
    with psycopg.connect(database_url, autocommit=True) as conn:  # without FirstWrites: staged
        with conn.transaction():
            write_events(conn, [_row(tenant, "d", 10)], [])
        assert _staged(conn) and _stored(conn, tenant)["d"] == 10


@pytest.mark.integration
@pytest.mark.parametrize("deleted_by", ["id", "filter"])
def test_a_recorded_newer_delete_sends_the_batch_through_the_checked_insert(
    database_url: str, deleted_by: str
) -> None:
    """A delete newer than the batch's lowest version in its partition keeps the batch off
    the straight COPY, and refuses the version it covers; one older than the batch does
    not, and the batch goes straight."""
    tenant = f"cg-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        binary_array_parameters(conn)
        with conn.transaction():
            if deleted_by == "id":
                write_events(conn, [], [TombstoneRow(tenant, "native", "x", 30, 0)])
            else:
                apply_filters(conn, [FilterRow(tenant, "native", "f-1", 0, 30, DeleteFilter(),
                                               T0)])  # fmt: skip
        with conn.transaction():
            write_events(conn, [_row(tenant, "x", 25), _row(tenant, "y", 40)], [],
                         first_writes=FirstWrites())  # fmt: skip
        assert _staged(conn)
        assert _stored(conn, tenant) == {"y": 40}  # x is older than its delete
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():  # newer than every recorded delete: straight in
            write_events(conn, [_row(tenant, "x", 35), _row(tenant, "z", 31)], [],
                         first_writes=FirstWrites())  # fmt: skip
        assert not _staged(conn)
        assert _stored(conn, tenant) == {"x": 35, "y": 40, "z": 31}
