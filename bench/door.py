"""Phase 1 and 7: the door alone (api processes only) against a raw produce loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil

from bench.context import BenchContext
from bench.events import bodies, event_bytes
from bench.load import closed_loop
from bench.procs import cpu_delta
from bench.profile import profiled, top_frames
from bench.raw import produce_loop
from bench.stats import latency_ms, status_counts
from runtime.kafka import producer_config
from schemas.identity import Identity


def drive_door(
    ctx: BenchContext, phase: str, total: int, batch: int, concurrency: int | None = None
) -> dict[str, Any]:
    """Post `total` events in requests of `batch` (`concurrency` in flight, by default the
    configured number) and summarise what the door did."""
    concurrency = concurrency or ctx.cfg.concurrency
    key = ctx.keys[ctx.tenant("door")]
    work = [(b, b.count(b'"id":')) for b in bodies(f"{ctx.tag}-{phase}", total, batch)]
    with profiled(ctx.procs, "api-1", ctx.profile_dir, phase) as profile:
        cpu_before, clock_cpu = ctx.procs.cpu_seconds(), time.process_time()
        started = time.perf_counter()
        records = asyncio.run(closed_loop(ctx.procs.base_url, key, work, concurrency))
        seconds = time.perf_counter() - started
    accepted = sum(r.accepted for r in records)
    cpu = cpu_delta(cpu_before, ctx.procs.cpu_seconds())
    return {
        "events": total,
        "batch": batch,
        "concurrency": concurrency,
        "accepted": accepted,
        "seconds": seconds,
        "per_second": accepted / seconds,
        "latency_ms": latency_ms(records),
        "answers": status_counts(records),
        "cpu_us_per_event": {n: 1e6 * s / max(accepted, 1) for n, s in cpu.items()},
        "profile": top_frames(profile),
        "load_generator_cpu_us_per_event": 1e6
        * (time.process_time() - clock_cpu)
        / max(accepted, 1),
    }


def raw_door(ctx: BenchContext, phase: str, total: int, min_seconds: float = 0.0) -> dict[str, Any]:
    """The same events, one keyed message each, produced straight to Kafka (again and
    again until `min_seconds` have passed, so both sides are measured over as long)."""
    tenant, prefix = ctx.tenant("door"), f"{ctx.tag}-{phase}"
    messages = [
        (Identity(tenant, "native", f"{prefix}-{i}").key(), event_bytes(prefix, i))
        for i in range(total)
    ]
    before = ctx.procs.cpu_seconds()
    config = producer_config(ctx.settings)
    run = produce_loop(config, ctx.raw_door_topic, messages, min_seconds).as_dict()
    broker = cpu_delta(before, ctx.procs.cpu_seconds()).get("kafka")
    if broker is not None:
        run["kafka_cpu_us_per_event"] = 1e6 * broker / max(run["units"], 1)
    return run


def door_rounds(ctx: BenchContext, total: int, batch: int) -> dict[str, Any]:
    """The door and the raw produce loop, alternately, `door_rounds` times.

    Returns the round whose door ÷ raw ratio is the median as `door` and `door_raw` (each
    pair measured back to back, so they saw the same machine), and every round's rates as
    `rounds`; `accepted` counts the events all door rounds put on `ingest.raw`.
    """
    runs = []
    for i in range(ctx.cfg.door_rounds):
        phase = "door" if ctx.cfg.door_rounds == 1 else f"door-{i + 1}"
        run = drive_door(ctx, phase, total, batch)
        raw = raw_door(ctx, phase, total, min_seconds=run["seconds"])
        runs.append((run["per_second"] / max(raw["per_second"], 1e-9), run, raw))
    _, run, raw = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    rounds = [{"door": r["per_second"], "raw": w["per_second"], "ratio": q} for q, r, w in runs]
    return {
        "door": run,
        "door_raw": raw,
        "rounds": rounds,
        "accepted": sum(r["accepted"] for _, r, _ in runs),
    }


def two_doors(ctx: BenchContext, total: int, batch: int) -> dict[str, Any]:
    """Start a second api process on the same port, drive both, stop the second.

    Each process is offered as many requests in flight as the one door was: with the
    same total, the closed loop's bound (requests in flight ÷ Kafka's acknowledgement
    time) would cap two doors where it capped one.
    """
    ctx.procs.start("api-2", "api")
    _wait_listening(ctx, "api-2", timeout=60)
    try:
        concurrency = 2 * ctx.cfg.concurrency
        warmed = warm_up(ctx, "warm-two", concurrency=concurrency)
        driven = drive_door(ctx, "door-two", total, batch, concurrency)
        return {**driven, "warm_accepted": warmed}
    finally:
        ctx.procs.stop("api-2")


def _wait_listening(ctx: BenchContext, name: str, timeout: float) -> None:
    """Wait until process `name` listens on the API port (SO_REUSEPORT lets both bind it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ctx.procs.check_alive()
        try:
            conns = ctx.procs.handles[name].net_connections(kind="tcp")
        except psutil.Error:
            conns = []
        if any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr[1] == ctx.settings.http_port
            for c in conns
        ):
            time.sleep(1.0)  # let it finish start-up (Kafka producer, key pool) after binding
            return
        time.sleep(0.2)
    raise TimeoutError(f"{name} did not listen within {timeout}s:\n{ctx.procs.log_tail(name)}")


def warm_up(ctx: BenchContext, phase: str = "warm", concurrency: int = 2) -> int:
    """A few requests so each door's key cache, pool and producer are warm before timing.

    Returns how many events the door accepted (they flow down the pipeline too).
    """
    key = ctx.keys[ctx.tenant("door")]
    work = [(b, b.count(b'"id":')) for b in bodies(f"{ctx.tag}-{phase}", 255 * 16, 255)]
    records = asyncio.run(closed_loop(ctx.procs.base_url, key, work, concurrency))
    return sum(r.accepted for r in records)
