"""One tenant's overview (`GET /v1/overview`) from what the processes recorded.

Every series is a list of `[epoch seconds, value…]` points on the 10 s grid, oldest first,
buckets without data left out. Sources (migration 0015 unless said):

- accepted / rejected at the door: `door_counts` (added by every API process);
- rejected in the stream or the sink, and dead letters by reason: `dead_letters` itself,
  by received time (a dead letter with several reason codes counts once under each code);
- acceptance → queryable: the `sink_latency` histograms (p50/p99 of the window, and per
  bucket);
- lag: `consumer_lag`, pipeline-wide (no tenant), null when no measurement is fresh;
- breakers: `breaker_states` of the tenant, refreshed recently by a live worker.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from store.figures import BUCKET_SECONDS
from store.latency_bins import merged, percentile

Series = list[list[float]]


def window_start(now: float, window_seconds: int) -> int:
    """The first bucket of a window ending now: `window_seconds / 10` buckets, the newest
    one still filling."""
    current = int(now) - int(now) % BUCKET_SECONDS
    return current - window_seconds + BUCKET_SECONDS


async def _rows(conn: AsyncConnection[Any], query: str, params: tuple[Any, ...]) -> list[Any]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


_DOOR = """
SELECT extract(epoch FROM bucket)::bigint, family, accepted, rejected FROM door_counts
WHERE tenant = %s AND bucket >= %s ORDER BY bucket
"""
# Bucketed with date_bin and turned into epoch seconds only per group: `extract(epoch …)`
# is numeric, and per row it cost ~20 % of the query (100k dead letters in the window).
_LATE_REJECTS = """
SELECT extract(epoch FROM t)::bigint, family, n FROM (
    SELECT date_bin('10 s', received_at, 'epoch') AS t, family, count(*) AS n
    FROM dead_letters WHERE tenant = %s AND received_at >= %s AND stage <> 'door'
    GROUP BY 1, 2
) g ORDER BY 1
"""
_BY_REASON = """
SELECT extract(epoch FROM t)::bigint, code, n FROM (
    SELECT date_bin('10 s', d.received_at, 'epoch') AS t, r.code, count(*) AS n
    FROM dead_letters d,
         LATERAL (SELECT DISTINCT e ->> 'code' AS code FROM jsonb_array_elements(d.reasons) e) r
    WHERE d.tenant = %s AND d.received_at >= %s AND r.code IS NOT NULL
    GROUP BY 1, 2
) g ORDER BY 1
"""
_LATENCY = """
SELECT extract(epoch FROM bucket)::bigint, bin, events FROM sink_latency
WHERE tenant = %s AND bucket >= %s
"""
_LAG = """
SELECT consumer, extract(epoch FROM bucket)::bigint, lag, extract(epoch FROM measured_at)
FROM consumer_lag WHERE bucket >= %s ORDER BY bucket
"""
_BREAKERS = """
SELECT worker, kafka_partition, family, state, held, extract(epoch FROM since)::float8
FROM breaker_states
WHERE tenant = %s AND reported_at > now() - make_interval(secs => %s)
ORDER BY kafka_partition, family, worker
"""
_PENDING = "SELECT count(*) FROM dead_letters WHERE tenant = %s AND status = 'pending'"


def _per_second(counts: dict[str, dict[int, int]]) -> dict[str, Series]:
    return {
        name: [[t, round(n / BUCKET_SECONDS, 3)] for t, n in sorted(points.items()) if n]
        for name, points in sorted(counts.items())
        if any(points.values())
    }


async def read_overview(
    conn: AsyncConnection[Any], tenant: str, window_seconds: int, now: float, fresh_seconds: float
) -> dict[str, Any]:
    """The overview of `tenant` over the last `window_seconds`; lag and breakers count as
    current when measured within `fresh_seconds`."""
    start = datetime.fromtimestamp(window_start(now, window_seconds), UTC)
    accepted: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    rejected: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for t, family, acc, rej in await _rows(conn, _DOOR, (tenant, start)):
        accepted[family][int(t)] += int(acc)
        rejected[family][int(t)] += int(rej)
    for t, family, n in await _rows(conn, _LATE_REJECTS, (tenant, start)):
        rejected[family][int(t)] += int(n)
    by_reason: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for t, code, n in await _rows(conn, _BY_REASON, (tenant, start)):
        by_reason[str(code)][int(t)] += int(n)
    (pending,) = (await _rows(conn, _PENDING, (tenant,)))[0]
    return {
        "tenant": tenant,
        "now": round(now, 3),
        "window_seconds": window_seconds,
        "bucket_seconds": BUCKET_SECONDS,
        "accepted": _per_second(accepted),
        "rejected": _per_second(rejected),
        "dead_letters": _per_second(by_reason),
        "latency_ms": await _latency(conn, tenant, start),
        "lag": await _lag(conn, start, now, fresh_seconds),
        "breakers": await _breakers(conn, tenant, fresh_seconds),
        "totals": {
            "accepted": sum(sum(p.values()) for p in accepted.values()),
            "rejected": sum(sum(p.values()) for p in rejected.values()),
            "dead_letters_pending": int(pending),
        },
    }


async def _latency(conn: AsyncConnection[Any], tenant: str, start: datetime) -> dict[str, Any]:
    buckets: dict[int, dict[int, int]] = defaultdict(dict)
    for t, index, events in await _rows(conn, _LATENCY, (tenant, start)):
        buckets[int(t)][int(index)] = int(events)
    whole = merged(buckets.values())
    return {
        "p50": percentile(whole, 0.5),
        "p99": percentile(whole, 0.99),
        "series": [
            [t, percentile(h, 0.5), percentile(h, 0.99)] for t, h in sorted(buckets.items())
        ],
    }


async def _lag(
    conn: AsyncConnection[Any], start: datetime, now: float, fresh_seconds: float
) -> dict[str, Any]:
    series: dict[str, Series] = {"worker": [], "sink": []}
    latest: dict[str, int | None] = {"worker": None, "sink": None}
    for consumer, t, lag, measured in await _rows(conn, _LAG, (start,)):
        series[consumer].append([int(t), int(lag)])
        if now - float(measured) <= fresh_seconds:
            latest[consumer] = int(lag)
    return {**latest, "series": series}


async def _breakers(
    conn: AsyncConnection[Any], tenant: str, fresh_seconds: float
) -> list[dict[str, Any]]:
    return [
        {"worker": worker, "partition": int(partition), "family": family, "state": state,
         "held": int(held), "since": round(float(since), 3)}
        for worker, partition, family, state, held, since
        in await _rows(conn, _BREAKERS, (tenant, fresh_seconds))
    ]  # fmt: skip
