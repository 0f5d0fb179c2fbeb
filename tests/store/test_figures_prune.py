"""Pruning the overview's figures on real PostgreSQL: old rows go, in bounded batches, and
recent ones stay, in tenant tables (rows named by tenant and ctid) and in `consumer_lag`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from store.figures import prune_figures

pytestmark = pytest.mark.integration

DAY = 86400.0
OLD = "timestamptz '1990-01-01' + make_interval(secs => %(i)s)"
NEW = "now() + interval '365 days' + make_interval(secs => %(i)s)"
"""Ages no other writer uses, so the counts below see only this test's rows."""

_ROWS = {
    "door_counts": "INSERT INTO door_counts (tenant, bucket, family)"
    " VALUES (%(t)s, {at}, 'native')",
    "sink_latency": "INSERT INTO sink_latency (tenant, bucket, bin, events)"
    " VALUES (%(t)s, {at}, 0, 1)",
    "breaker_states": "INSERT INTO breaker_states (tenant, worker, kafka_partition, family,"
    " state, held, since, reason, reported_at)"
    " VALUES (%(t)s, 'w', %(p)s, 'native', 'open', 1, now(), 'r', {at})",
    "consumer_lag": "INSERT INTO consumer_lag (consumer, bucket, lag) VALUES ('sink', {at}, 0)",
}
_AGE = {"door_counts": "bucket", "sink_latency": "bucket", "consumer_lag": "bucket",
        "breaker_states": "reported_at"}  # fmt: skip


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A transaction rolled back at the end, with no figure older than a day left in it."""
    with psycopg.connect(database_url) as c, c.transaction(force_rollback=True):
        prune_figures(c, DAY, 10**9)
        yield c


def _counts(conn: psycopg.Connection[Any], table: str) -> tuple[int, int]:
    """(this test's rows older than a day, this test's newer rows) of `table`."""
    age = _AGE[table]
    row = conn.execute(
        f"SELECT count(*) FILTER (WHERE {age} < '2000-01-01'),"
        f" count(*) FILTER (WHERE {age} > now() + interval '300 days') FROM {table}"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_prune_removes_only_old_rows_a_bounded_batch_at_a_time(
    conn: psycopg.Connection[Any],
) -> None:
    for i in range(3):
        tenant = f"prune-{uuid.uuid4().hex[:6]}"
        for p, at in enumerate((OLD, NEW)):
            for statement in _ROWS.values():
                conn.execute(statement.format(at=at), {"t": tenant, "i": i, "p": p})
    assert prune_figures(conn, DAY, 2) == 8  # at most 2 per table
    assert {t: _counts(conn, t) for t in _ROWS} == dict.fromkeys(_ROWS, (1, 3))
    assert prune_figures(conn, DAY, 100) == 4
    assert {t: _counts(conn, t) for t in _ROWS} == dict.fromkeys(_ROWS, (0, 3))
    assert prune_figures(conn, DAY, 100) == 0
