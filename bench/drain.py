"""Phases 2 and 3: the stream processor and the sink, each draining what the phase before left.

The processes start after their input is complete, so each stage runs alone
with the whole machine; its rate is timed from its first output onwards.
"""

from __future__ import annotations

from typing import Any

from bench.context import BenchContext
from bench.profile import profiled, top_frames
from bench.raw import consume_produce_loop, copy_rows, read_event_rows
from bench.watch import Drained, wait_drained
from runtime.kafka import client_config, producer_config


def _summary(drained: Drained, per: str) -> dict[str, Any]:
    return {
        per: drained.units,
        "seconds": drained.seconds,
        "per_second": drained.rate,
        "complete": drained.reached,
        "cpu_us_per_unit": {n: 1e6 * s / max(drained.units, 1) for n, s in drained.cpu.items()},
    }


def stream_stage(ctx: BenchContext, events: int) -> dict[str, Any]:
    """Start the Faust worker on a full `ingest.raw`; time it until `events` hold them all."""
    before = ctx.offsets.end_total([ctx.topics.events])
    ctx.procs.start("worker", "worker")
    with profiled(ctx.procs, "worker", ctx.profile_dir, "stream") as profile:
        drained = wait_drained(
            lambda: ctx.offsets.end_total([ctx.topics.events]) - before,
            events,
            ctx.procs,
            ctx.cfg.phase_timeout,
        )
    return {**_summary(drained, "events"), "profile": top_frames(profile)}


def raw_stream(ctx: BenchContext, events: int) -> dict[str, Any]:
    """Consume `ingest.raw` and produce one message per event with the bare clients."""
    run = consume_produce_loop(
        client_config(ctx.settings),
        producer_config(ctx.settings),
        ctx.topics.ingest_raw,
        ctx.raw_stream_topic,
        events,
        ctx.cfg.phase_timeout,
    )
    return run.as_dict()


def sink_stage(ctx: BenchContext, name: str, group: str) -> dict[str, Any]:
    """Start a sink in consumer group `group`; time it until it committed every message."""
    topics = [ctx.topics.events, ctx.topics.dlq]
    target = ctx.offsets.end_total(topics)
    ctx.procs.start(name, "sink", SLUICE_SINK_GROUP=group)
    with profiled(ctx.procs, name, ctx.profile_dir, name) as profile:
        drained = wait_drained(
            lambda: ctx.offsets.committed_total(group, topics),
            target,
            ctx.procs,
            ctx.cfg.phase_timeout,
            interval=0.1,
        )
    return {**_summary(drained, "rows"), "profile": top_frames(profile)}


def raw_sink(ctx: BenchContext, rows: int) -> dict[str, Any]:
    """Binary COPY of the same rows into `events` under a tenant of the benchmark's own."""
    loaded = read_event_rows(
        client_config(ctx.settings), ctx.topics.events, rows, ctx.cfg.phase_timeout
    )
    run = copy_rows(ctx.settings.database_url, loaded, ctx.tenant("copy"),
                    lambda: ctx.procs.cpu_seconds().get("postgres"))  # fmt: skip
    return run.as_dict()


def sink_group(ctx: BenchContext, purpose: str) -> str:
    return f"{ctx.settings.sink_group}-{purpose}"
