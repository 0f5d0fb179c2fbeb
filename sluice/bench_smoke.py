"""`make bench-smoke`: post N events in batches, report accepted events/s and the time until
all of them are queryable, beside a raw confluent-kafka produce loop on the same broker.

Bounded: N events (BENCH_EVENTS, default 100000) in batches of BENCH_BATCH (255), at most
BENCH_CONCURRENCY (8) requests in flight, all to 127.0.0.1; it stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path

import aiohttp
import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from sinks.migrate import migrate
from sluice.kafka import producer_config
from sluice.keys_cli import create_key
from sluice.launchers.services import kafka_service, postgres_service
from sluice.settings import Settings, load_settings
from sluice.stack import ProcessStack
from sluice.topic_admin import ensure_topics


def _batch(start: int, size: int) -> bytes:
    events = [
        {"id": f"bench-{start + i}", "type": "usage.api_call", "source": "/bench",
         "time": "2024-11-23T10:00:00Z", "data": {"units": i, "customer": f"c{i % 97}"}}
        for i in range(size)
    ]  # fmt: skip
    return json.dumps(events).encode()


async def _post_all(base: str, key: str, total: int, batch: int, concurrency: int) -> float:
    bodies = [_batch(s, min(batch, total - s)) for s in range(0, total, batch)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"X-API-Key": key, "Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            while True:
                async with session.post(f"{base}/v1/events", data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status == 202:
                        break
                    await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return time.perf_counter() - started


def _raw_produce(settings: Settings, total: int, batch: int) -> float:
    """Baseline: the same bytes, one message per batch, straight to Kafka."""
    topic = f"{settings.topic_prefix}baseline"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=settings.partitions)])[topic].result(30)
    producer = Producer(producer_config(settings))
    started = time.perf_counter()
    for s in range(0, total, batch):
        producer.produce(topic, _batch(s, min(batch, total - s)), partition=0)
        producer.poll(0)
    producer.flush(60)
    return time.perf_counter() - started


def _wait_queryable(database_url: str, tenant: str, total: int, timeout: float) -> float:
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        while time.perf_counter() - started < timeout:
            (count,) = conn.execute(  # type: ignore[misc]
                "SELECT count(*) FROM events WHERE tenant = %s", (tenant,)
            ).fetchone()
            conn.commit()
            if count >= total:
                return time.perf_counter() - started
            time.sleep(0.2)
    raise TimeoutError(f"only {count} of {total} events queryable after {timeout}s")


def main() -> None:
    total = int(os.environ.get("BENCH_EVENTS", "100000"))
    batch = int(os.environ.get("BENCH_BATCH", "255"))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "8"))
    base_settings = load_settings()
    state = Path(base_settings.state_dir).resolve() / "bench"
    with contextlib.ExitStack() as stack:
        kafka = stack.enter_context(kafka_service(state / "kafka"))
        database = stack.enter_context(postgres_service(state / "postgres"))
        settings = replace(
            base_settings, kafka_bootstrap_servers=kafka, database_url=database,
            topic_prefix=f"bench-{uuid.uuid4().hex[:6]}.", http_port=18080 + os.getpid() % 1000,
        )  # fmt: skip
        migrate(database)
        ensure_topics(settings)
        tenant = f"bench-{uuid.uuid4().hex[:6]}"
        key = create_key(settings, tenant, ["events:write", "events:read"])
        processes = ProcessStack(settings, state / "logs")
        stack.callback(processes.stop)
        processes.start()
        processes.wait_ready(120)
        door_s = asyncio.run(_post_all(processes.base_url, key, total, batch, concurrency))
        drain_s = _wait_queryable(database, tenant, total, timeout=600)
        raw_s = _raw_produce(settings, total, batch)
    print(f"events: {total} in batches of {batch}, {concurrency} requests in flight")
    print(f"door accepted:        {total / door_s:10.0f} events/s ({door_s:.2f}s)")
    print(f"raw producer baseline:{total / raw_s:10.0f} events/s ({raw_s:.2f}s, same bytes)")
    print(f"door / raw:           {raw_s / door_s:10.2f}")
    print(f"queryable after last acceptance: {drain_s:.2f}s (end to end {door_s + drain_s:.2f}s)")


if __name__ == "__main__":
    main()
