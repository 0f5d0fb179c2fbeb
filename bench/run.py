"""Run every phase in order against one Kafka and one PostgreSQL, then write the results.

Order matters: the door phases fill `ingest.raw` with the api process alone;
the worker then drains it alone, and a second worker drains a copy of it with a data
contract on every event (`bench.contracts`); the sink then drains `events` alone; only
then does the whole pipeline run together (sustained rate, half-rate latency,
10x burst). Each stage's raw baseline runs right after it, on the same broker
or database, in the same run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench import contracts, door, drain, pipeline
from bench.config import BenchConfig, load_config
from bench.context import BenchContext
from bench.plots import plot_burst
from bench.procs import BenchProcesses
from bench.raw import delete_tenants
from bench.report import markdown, write
from bench.watch import Offsets
from runtime.kafka import client_config
from runtime.registry_client import use_external_registry
from runtime.settings import Settings, load_settings
from runtime.topic_admin import ensure_topics
from schemas.topics import TopicNames
from sinks.migrate import migrate
from sluice.keys_cli import create_key
from sluice.launchers.services import kafka_service, postgres_service

log = logging.getLogger("bench")

PURPOSES = ("door", "pipe", "e2e", "burst")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for an API process the bench starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _settings(kafka: str, database: str, tag: str) -> Settings:
    return replace(
        load_settings(),
        kafka_bootstrap_servers=kafka,
        database_url=database,
        topic_prefix=f"bench-{tag}.",
        http_port=free_port(),
        key_cache_seconds=60.0,
        # Measure the pipeline, not the per-key budget (0 turns rate limiting off).
        rate_requests_per_second=0.0,
        rate_events_per_second=0.0,
        rate_tenant_requests_per_second=0.0,
        rate_tenant_events_per_second=0.0,
        worker_id=f"bench-{tag}-streams",
        sink_group=f"bench-{tag}-sink",
    )


def _create_raw_topics(ctx: BenchContext) -> None:
    admin = AdminClient(client_config(ctx.settings))
    topics = [
        NewTopic(t, num_partitions=ctx.settings.partitions)
        for t in (ctx.raw_door_topic, ctx.raw_stream_topic)
    ]
    for future in admin.create_topics(topics).values():
        future.result(30)


def run_bench(cfg: BenchConfig, kafka: str, database: str, log_dir: Path) -> dict[str, Any]:
    """Every phase against the given services; the results as one JSON-ready dict."""
    tag = uuid.uuid4().hex[:6]
    settings = _settings(kafka, database, tag)
    migrate(database)
    ensure_topics(settings)
    use_external_registry(settings)  # the phases that read topics decode its ids too
    offsets = Offsets(client_config(settings), settings.partitions)
    procs = BenchProcesses(settings, log_dir / tag)
    procs.attach_service("kafka", kafka.split(",")[0])
    procs.attach_service("postgres", database)
    ctx = BenchContext(
        cfg, settings, TopicNames.for_prefix(settings.topic_prefix), procs, offsets, tag
    )
    _create_raw_topics(ctx)
    for purpose in PURPOSES:
        tenant = ctx.tenant(purpose)
        ctx.keys[tenant] = create_key(settings, tenant, ["events:write", "events:read"])
    results: dict[str, Any] = {"meta": _meta(cfg, tag)}
    try:
        _phases(ctx, results)
    finally:
        procs.stop_all()
        offsets.close()
        _clean_up(ctx)
    return results


def _clean_up(ctx: BenchContext) -> None:
    """Remove the run's topics and its tenants' rows: a run leaves ~1 GiB on Kafka (and its
    compacted topics keep the broker's log cleaner busy), so without this each later run
    on the same broker and database measured a slower machine."""
    prefix = ctx.settings.topic_prefix
    admin = AdminClient(client_config(ctx.settings))
    try:
        ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        for future in admin.delete_topics(ours, operation_timeout=30).values():
            future.result(60)
    except KafkaException as exc:
        log.warning("could not delete the run's topics (%s*): %s", prefix, exc)
        ours = []
    rows = delete_tenants(ctx.settings.database_url, f"bench-{ctx.tag}-")
    log.info("cleaned up: %d topics, %d rows of the run's tenants", len(ours), rows)


def _phases(ctx: BenchContext, results: dict[str, Any]) -> None:
    cfg, procs = ctx.cfg, ctx.procs
    procs.start("api-1", "api")
    procs.wait_ready()
    accepted = door.warm_up(ctx)
    _step(results, "door, 255 events per request")
    rounds = door.door_rounds(ctx, cfg.events, cfg.batch)
    results["door"], results["door_raw"] = rounds["door"], rounds["door_raw"]
    results["door_rounds"] = rounds["rounds"]
    accepted += rounds["accepted"]
    _step(results, "door, large requests")
    results["door_large"] = door.drive_door(ctx, "door-large", cfg.events, cfg.large_batch)
    _step(results, "two doors on one port")
    results["door_two"] = door.two_doors(ctx, cfg.events, cfg.batch)
    if cfg.until == "door":
        return
    accepted += sum(results[k]["accepted"] for k in ("door_large", "door_two"))
    accepted += results["door_two"]["warm_accepted"]
    _step(results, "stream: Faust worker drains ingest.raw")
    results["stream"] = drain.stream_stage(ctx, accepted)
    results["stream_raw"] = drain.raw_stream(ctx, accepted)
    _step(results, "stream again, a data contract on every event's type")
    results["stream_contracts"] = contracts.stream_with_contracts(ctx, [ctx.tenant("door")])
    if cfg.until == "stream":
        return
    _step(results, "sink: drains events into PostgreSQL")
    results["sink"] = drain.sink_stage(ctx, "sink", ctx.settings.sink_group)
    results["sink_raw"] = drain.raw_sink(ctx, accepted)
    procs.stop("sink")
    _step(results, "sink replay: a new group stores the same events again")
    results["sink_replay"] = drain.sink_stage(ctx, "sink-replay", drain.sink_group(ctx, "replay"))
    procs.stop("sink-replay")
    if cfg.until == "sink":
        return
    procs.start("sink", "sink")
    _step(results, "whole pipeline, closed loop")
    results["sustained"] = pipeline.sustained(ctx, cfg.events, cfg.batch)
    rate = results["sustained"]["per_second"]
    _step(results, f"end to end at half the sustainable rate ({rate / 2:,.0f} events/s)")
    results["e2e"] = pipeline.end_to_end(ctx, rate / 2)
    _step(
        results, f"burst at {cfg.burst_multiplier:g}x ({rate * cfg.burst_multiplier:,.0f} events/s)"
    )
    results["burst"] = pipeline.burst(ctx, rate * cfg.burst_multiplier)


def _step(results: dict[str, Any], what: str) -> None:
    """Log the phase, and note the machine's load as it begins (others may share the cores)."""
    log.info("bench: %s", what)
    results["meta"].setdefault("load_average_by_phase", {})[what] = os.getloadavg()[0]


def _meta(cfg: BenchConfig, tag: str) -> dict[str, Any]:
    return {
        "tag": tag,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "config": {k: str(v) for k, v in vars(cfg).items()},
        "note": "figures are noisy on a shared machine; compare each with its same-run baseline",
    }


def main(cfg: BenchConfig | None = None) -> None:
    """`python -m bench`: find or start the services, run, write JSON/Markdown/PNG, print."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = cfg or load_config()
    state = Path(load_settings().state_dir).resolve() / "bench"
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        kafka = stack.enter_context(kafka_service(state / "kafka"))
        database = stack.enter_context(postgres_service(state / "postgres"))
        results = run_bench(cfg, kafka, database, state / "logs")
    results["meta"]["seconds"] = time.monotonic() - started
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    json_path, md_path = write(results, cfg.results_dir, stamp)
    burst = results.get("burst")
    plots = plot_burst(burst, cfg.results_dir, stamp) if cfg.plots and burst else []
    print(markdown(results))
    print(f"wrote {json_path}, {md_path}" + "".join(f", {p}" for p in plots))
