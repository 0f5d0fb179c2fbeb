"""Phases 4 and 6: the whole pipeline at once — sustained rate, half-rate latency, 10x burst.

Latency from acceptance to queryable uses each row's `stored_at` (the sink
transaction's `now()`, on the same clock as the load generator) minus the
moment the client received the 202 for the request that carried the event.
`now()` is when the transaction began, not when it committed, so that figure leaves out the
sink's write; the half-rate phase also reports the sink's own figure (`committed_ms`), which
runs from the door's receipt of the request to after the commit.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from bench.context import BenchContext
from bench.events import bodies, endless_bodies
from bench.load import OpenLoopResult, RequestRecord, closed_loop, open_loop
from bench.procs import cpu_delta
from bench.raw import read_produce_times
from bench.stats import latency_ms, percentile, status_counts, timeline
from runtime.kafka import client_config
from store import latency_bins


def sustained(ctx: BenchContext, total: int, batch: int) -> dict[str, Any]:
    """Post `total` events with everything running; time until the sink committed them all."""
    group, topics = ctx.settings.sink_group, [ctx.topics.events]
    target = ctx.offsets.end_total(topics) + total
    key = ctx.keys[ctx.tenant("pipe")]
    work = [(b, b.count(b'"id":')) for b in bodies(f"{ctx.tag}-pipe", total, batch)]
    cpu_before, started = ctx.procs.cpu_seconds(), time.perf_counter()
    records = asyncio.run(closed_loop(ctx.procs.base_url, key, work, ctx.cfg.concurrency))
    accepted_at = time.perf_counter()
    deadline = accepted_at + ctx.cfg.phase_timeout
    while ctx.offsets.committed_total(group, topics) < target and time.perf_counter() < deadline:
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    cpu = cpu_delta(cpu_before, ctx.procs.cpu_seconds())
    return {
        "events": total,
        "seconds": seconds,
        "per_second": total / seconds,
        "door_per_second": sum(r.accepted for r in records) / (accepted_at - started),
        "door_latency_ms": latency_ms(records),
        "cpu_us_per_event": {n: 1e6 * s / total for n, s in cpu.items()},
        "cpu_us_per_event_total": 1e6 * sum(cpu.values()) / total,
        "cpu_bound_ceiling_per_second": (os.cpu_count() or 1)
        * total
        / max(sum(cpu.values()), 1e-9),
    }


def end_to_end(ctx: BenchContext, rate: float) -> dict[str, Any]:
    """Offer `rate` events/s for the configured time; latency from acceptance to queryable."""
    tenant, phase = ctx.tenant("e2e"), f"{ctx.tag}-e2e"
    start = ctx.offsets.end_offsets(ctx.topics.events)
    result = _offer(ctx, tenant, phase, rate, ctx.cfg.e2e_seconds, ctx.cfg.concurrency * 4)
    stored = _wait_stored(ctx, tenant, result.records, ctx.cfg.phase_timeout)
    accepted_at = _acceptance_times(result.records)
    waits = [1000 * (stored[i] - accepted_at[i]) for i in accepted_at if i in stored]
    produced = read_produce_times(
        client_config(ctx.settings), ctx.topics.events, start,
        f"{tenant}|native|{phase}-".encode(), ctx.cfg.phase_timeout,
    )  # fmt: skip
    on_events = {int(i): t for i, t in produced.items()}
    stream = [1000 * (on_events[i] - accepted_at[i]) for i in accepted_at if i in on_events]
    sink = [1000 * (stored[i] - on_events[i]) for i in stored if i in on_events]
    return {
        "stages_ms": {
            "acceptance_to_events_topic": _spread(stream),
            "events_topic_to_stored": _spread(sink),
        },
        "offered_per_second": rate,
        "seconds": ctx.cfg.e2e_seconds,
        "accepted": len(accepted_at),
        "answers": status_counts(result.records),
        "door_latency_ms": latency_ms(result.records),
        "queryable_ms": _spread(waits),
        "committed_ms": _committed_ms(ctx, tenant, len(accepted_at)),
        "missing": len(set(accepted_at) - set(stored)),
    }


def _committed_ms(ctx: BenchContext, tenant: str, accepted: int) -> dict[str, Any]:
    """The sink's own acceptance → queryable figure for `tenant`: the overview's histogram
    (`sink_latency`, bins 9 % wide), from the door's receipt of each request to after the
    commit that made its events queryable. The sink adds a poll's figures after its commit,
    so this waits until they cover the `accepted` events (at most 10 s)."""
    histogram: dict[int, int] = {}
    deadline = time.monotonic() + 10.0
    with psycopg.connect(ctx.settings.database_url, autocommit=True) as conn:
        while not histogram or sum(histogram.values()) < accepted:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
            rows = conn.execute(
                "SELECT bin, sum(events) FROM sink_latency WHERE tenant = %s GROUP BY bin",
                (tenant,),
            ).fetchall()
            histogram = {int(b): int(n) for b, n in rows}
    return {
        "p50": latency_bins.percentile(histogram, 0.50),
        "p99": latency_bins.percentile(histogram, 0.99),
        "events": sum(histogram.values()),
    }


def burst(ctx: BenchContext, rate: float) -> dict[str, Any]:
    """Offer `rate` events/s; sample every process's memory before, during and after."""
    tenant, phase = ctx.tenant("burst"), f"{ctx.tag}-burst"
    with _memory_sampler(ctx) as samples:
        time.sleep(2.0)
        started = time.time()
        result = _offer(ctx, tenant, phase, rate, ctx.cfg.burst_seconds, ctx.cfg.burst_max_inflight)
        stored = _wait_stored(ctx, tenant, result.records, ctx.cfg.phase_timeout)
    accepted = _acceptance_times(result.records)
    ended = started + ctx.cfg.burst_seconds
    before = [s for s in samples if s[0] < started]
    during = [s for s in samples if started <= s[0] <= ended]
    after = [s for s in samples if s[0] > ended]
    names = sorted({n for _, rss in samples for n in rss})
    return {
        "offered_per_second": rate,
        "seconds": ctx.cfg.burst_seconds,
        "offered_requests": result.offered_requests,
        "skipped_requests": result.skipped_requests,
        "answers": status_counts(result.records),
        "accepted": len(accepted),
        "missing": len(set(accepted) - set(stored)),
        "door_latency_ms": latency_ms(result.records),
        "rss_mb": {
            n: {
                "before": _peak(before, n),
                "peak": _peak(samples, n),
                # The burst's backlog drains after the offer stops: memory can stay flat
                # while requests arrive and grow only while a stage catches up.
                "peak_while_offered": _peak(during, n),
                "peak_draining_after": _peak(after, n),
            }
            for n in names
        },
        "timeline": timeline(result.records, started),
        "memory_timeline": {
            "t": [t - started for t, _ in samples],
            **{n: [r.get(n, 0) / 2**20 for _, r in samples] for n in names},
        },
    }


def _peak(samples: list[tuple[float, dict[str, int]]], name: str) -> float:
    """The largest RSS of process `name` among `samples`, in MB (0 with none)."""
    return max((rss.get(name, 0) for _, rss in samples), default=0) / 2**20


def _spread(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values, default=0.0)}  # fmt: skip


def _offer(
    ctx: BenchContext, tenant: str, phase: str, rate: float, seconds: float, inflight: int
) -> OpenLoopResult:
    batch = ctx.cfg.batch
    return asyncio.run(
        open_loop(
            ctx.procs.base_url,
            ctx.keys[tenant],
            endless_bodies(phase, batch),
            batch,
            rate,
            seconds,
            inflight,
        )
    )


def _acceptance_times(records: list[RequestRecord]) -> dict[int, float]:
    """Event index → when its request's 202 arrived, for every accepted event."""
    out: dict[int, float] = {}
    for r in records:
        if r.status == 202:
            for i in range(r.first, r.first + r.events):
                out[i] = r.done
    return out


def _wait_stored(
    ctx: BenchContext, tenant: str, records: list[RequestRecord], timeout: float
) -> dict[int, float]:
    """Wait until every accepted event of `tenant` is a row; event index → its `stored_at`."""
    accepted = sum(r.accepted for r in records)
    deadline = time.monotonic() + timeout
    with psycopg.connect(ctx.settings.database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM events WHERE tenant = %s", (tenant,)
            ).fetchone()
            if row is not None and row[0] >= accepted:
                break
            time.sleep(0.25)
        rows = conn.execute(
            "SELECT event_id, extract(epoch FROM stored_at) FROM events WHERE tenant = %s",
            (tenant,),
        ).fetchall()
    return {int(event_id.rsplit("-", 1)[1]): float(at) for event_id, at in rows}


@contextmanager
def _memory_sampler(
    ctx: BenchContext, interval: float = 0.25
) -> Iterator[list[tuple[float, dict[str, int]]]]:
    """Sample every process's RSS every `interval` seconds while the block runs."""
    samples: list[tuple[float, dict[str, int]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.time(), ctx.procs.rss_bytes()))
            stop.wait(interval)

    thread = threading.Thread(target=sample, name="bench-memory", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
