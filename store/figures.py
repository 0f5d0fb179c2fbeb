"""The overview's figures in PostgreSQL: what the processes record (migration 0015).

Writers: the API adds its door counts (`add_door_counts`, through the one function its
role may call); the sink adds its latency histogram (`add_latency`) and each worker and
sink its group's lag (`record_lag`); each worker replaces its open breaker keys
(`replace_breakers`); the sink prunes them all (`prune_figures`). Writers for the worker
and the sink are synchronous (their loops are threads); the API's are async.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

log = logging.getLogger(__name__)

BUCKET_SECONDS = 10
"""Every figure is kept, and every series sampled, on this grid."""

TallyKey = tuple[str, int, str]
"""(tenant, bucket start in epoch seconds, family) of a door count."""

REPORT_TIMEOUT_MS = 5000
"""A report's statements are cancelled after this: a slow database delays figures only."""


async def add_door_counts(
    conn: AsyncConnection[Any], counts: Mapping[TallyKey, tuple[int, int]]
) -> None:
    """Add one flush of every tenant's door counts, in one statement (`sluice_add_door_counts`
    runs as the table's owner: the API's role has no direct write on `door_counts`)."""
    if not counts:
        return
    keys = list(counts)
    await conn.execute(
        "SELECT sluice_add_door_counts(%s::text[], %s::timestamptz[], %s::text[],"
        " %s::bigint[], %s::bigint[])",
        (
            [k[0] for k in keys],
            [datetime.fromtimestamp(k[1], UTC) for k in keys],
            [k[2] for k in keys],
            [counts[k][0] for k in keys],
            [counts[k][1] for k in keys],
        ),
    )


def bucket_start(epoch: float) -> datetime:
    """The start of the 10 s bucket `epoch` falls in."""
    whole = int(epoch)
    return datetime.fromtimestamp(whole - whole % BUCKET_SECONDS, UTC)


def add_latency(
    conn: psycopg.Connection[Any], histogram: Mapping[tuple[str, datetime, int], int]
) -> None:
    """Add (tenant, bucket, bin) → events to `sink_latency` in one statement."""
    if not histogram:
        return
    keys = sorted(histogram)  # one order for every sink: concurrent upserts cannot deadlock
    conn.execute(
        "INSERT INTO sink_latency AS l (tenant, bucket, bin, events)"
        " SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::smallint[], %s::bigint[])"
        " ON CONFLICT (tenant, bucket, bin) DO UPDATE SET events = l.events + EXCLUDED.events",
        (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [histogram[k] for k in keys],
        ),
    )


def record_lag(conn: psycopg.Connection[Any], consumer: str, lag: int, at: float) -> None:
    """The group lag of `consumer` ('worker' or 'sink') measured at `at` (epoch seconds)."""
    conn.execute(
        "INSERT INTO consumer_lag (consumer, bucket, lag, measured_at)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (consumer, bucket) DO UPDATE"
        " SET lag = EXCLUDED.lag, measured_at = EXCLUDED.measured_at"
        " WHERE consumer_lag.measured_at <= EXCLUDED.measured_at",
        (consumer, bucket_start(at), lag, datetime.fromtimestamp(at, UTC)),
    )


@dataclass(frozen=True)
class BreakerRow:
    """One key the DLQ circuit breaker of a worker holds open."""

    tenant: str
    partition: int
    family: str
    state: str
    held: int
    since: float
    """Epoch seconds of the trip."""
    reason: str


def replace_breakers(
    conn: psycopg.Connection[Any], worker: str, rows: Sequence[BreakerRow]
) -> None:
    """Make `worker`'s rows exactly `rows`, stamped now, in one transaction."""
    with conn.transaction():
        conn.execute("DELETE FROM breaker_states WHERE worker = %s", (worker,))
        if not rows:
            return
        conn.execute(
            "INSERT INTO breaker_states (tenant, worker, kafka_partition, family, state, held,"
            " since, reason) SELECT t, %s, p, f, s, h, to_timestamp(at), r FROM unnest("
            "%s::text[], %s::int[], %s::text[], %s::text[], %s::int[], %s::float8[],"
            " %s::text[]) AS u(t, p, f, s, h, at, r)",
            (
                worker,
                [r.tenant for r in rows],
                [r.partition for r in rows],
                [r.family for r in rows],
                [r.state for r in rows],
                [r.held for r in rows],
                [r.since for r in rows],
                [r.reason for r in rows],
            ),
        )


_PRUNED = (
    ("door_counts", "bucket", ("tenant", "ctid")),
    ("sink_latency", "bucket", ("tenant", "ctid")),
    ("consumer_lag", "bucket", ("ctid",)),
    ("breaker_states", "reported_at", ("tenant", "ctid")),
)
"""(table, age column, what names a row). A tenant table's rows are named by (tenant,
ctid): sharded by tenant (docs/design.md#running-on-citus), a ctid is a place in one shard
and the tenant says which. `consumer_lag` has no tenant and stays on one node."""
_PRUNE = """
DELETE FROM {table}
WHERE ({row}) IN (
    SELECT {row} FROM {table} WHERE {column} < now() - make_interval(secs => %s) LIMIT %s)
"""


def prune_figures(conn: psycopg.Connection[Any], retention_seconds: float, limit: int) -> int:
    """Drop up to `limit` rows per table older than `retention_seconds`; how many went."""
    gone = 0
    for table, column, row in _PRUNED:
        query = sql.SQL(_PRUNE).format(
            table=sql.Identifier(table), column=sql.Identifier(column),
            row=sql.SQL(", ").join(map(sql.Identifier, row)),
        )  # fmt: skip
        gone += conn.execute(query, (retention_seconds, limit)).rowcount
    return gone


class FigureReporter:
    """Calls `report(conn)` every `interval` seconds on a daemon thread of its own, on its
    own autocommit connection (reopened after an error): the worker's and the sink's
    figures are written beside their loops, never in them, and a database outage costs
    figures, not progress."""

    def __init__(
        self, name: str, database_url: str, interval: float,
        report: Callable[[psycopg.Connection[Any]], None],
    ) -> None:  # fmt: skip
        self.name = name
        self._url = database_url
        self._interval = max(interval, 0.1)
        self._report = report
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._failing = False

    def start(self) -> None:
        """Begin reporting (not at all without a database URL); idempotent."""
        if self._thread is not None or not self._url:
            return
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-figures")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def report_once(self) -> bool:
        """One report now; False when the database did not take it."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self._url, autocommit=True, connect_timeout=5,
                    options=f"-c statement_timeout={REPORT_TIMEOUT_MS}",
                )  # fmt: skip
            self._report(self._conn)
        except psycopg.Error as exc:
            if not self._failing:
                log.warning("%s: could not record the overview's figures: %s", self.name, exc)
            self._failing = True
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return False
        self._failing = False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.report_once()
        if self._conn is not None:
            self._conn.close()
