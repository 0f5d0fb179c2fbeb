"""Fault scenarios shared by the short versions (default run) and the full fault suite.

Each runs bounded HTTP load, injects its fault `cycles` times, then checks every
acknowledged id against PostgreSQL, asserts nothing was lost or stored twice, and
prints one figure line.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from sluice.launchers.kafka import KafkaLauncher
from sluice.launchers.postgres import PostgresLauncher
from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.faults.check import (
    Landing,
    committed_but_not_stored,
    figure,
    stored,
    topic_copies,
    wait_for_dead_letters,
    wait_until_landed,
)
from tests.faults.cluster import leader_of, signal_node, wait_fully_in_sync
from tests.faults.load import LoadGenerator, LoadResult
from tests.faults.pipeline import Pipeline, pipeline
from tests.faults.poison import produce_poison


def offsets_behind(p: Pipeline) -> tuple[int, int]:
    """(messages below the sink's committed offsets missing from PostgreSQL, checked)."""
    s = p.settings
    prefix = s.topic_prefix
    return committed_but_not_stored(
        s.kafka_bootstrap_servers, s.sink_group, f"{prefix}events", f"{prefix}events.dlq",
        s.database_url,
    )  # fmt: skip


def rows(database_url: str, tenant: str) -> int:
    return len(stored(database_url, tenant).rows)


def wait_for_more_rows(database_url: str, tenant: str, more: int) -> None:
    before = rows(database_url, tenant)
    eventually(lambda: rows(database_url, tenant) >= before + more, timeout=90)


def redelivered(p: Pipeline) -> int:
    """Extra copies of the tenant's events on the `events` topic (the sink absorbs them)."""
    copies = topic_copies(
        p.settings.kafka_bootstrap_servers, f"{p.settings.topic_prefix}events", p.tenant
    )
    return sum(n - 1 for n in copies.values())


def _statuses(result: LoadResult) -> str:
    counts = sorted(result.statuses.items())
    return ", ".join(f"{status or 'no answer'}: {n}" for status, n in counts)


def assert_exact(result: LoadResult, landing: Landing) -> None:
    """Every acknowledged id landed, once, and nothing that was not acknowledged."""
    assert result.requests_unacknowledged == 0, result.summary()
    assert not landing.lost, sorted(landing.lost)[:10]
    assert not landing.lost_dead_letters
    assert landing.rows == result.acked
    assert landing.duplicates == 0


def postgres_and_sink_crashes(
    name: str, kafka: str, pg: PostgresLauncher, logs: Path, *, cycles: int, requests: int
) -> None:
    """PostgreSQL `immediate` stop with a sink SIGKILL while it is down, then a sink SIGKILL
    mid-batch with PostgreSQL up, `cycles` times; the committed offsets are compared with
    the database at each kill (no sink runs then, so they are one consistent moment)."""
    with pipeline(kafka, pg.url, logs, sink_batch_size=50, key_cache_seconds=600.0) as p:
        load = LoadGenerator(
            p.base_url, p.key, requests=requests, batch=20, invalid_every=17, concurrency=2,
            pause_seconds=0.15,
        ).start()  # fmt: skip
        missing = checked = 0
        for _ in range(cycles):
            wait_for_more_rows(pg.url, p.tenant, 100)
            pg.stop("immediate")
            time.sleep(2.0)  # the sink meets the outage mid-batch and retries
            p.stack.stop_role("sink", signal.SIGKILL)
            pg.start()
            behind = offsets_behind(p)
            p.stack.start_role("sink")
            wait_for_more_rows(pg.url, p.tenant, 100)
            p.stack.stop_role("sink", signal.SIGKILL)
            again = offsets_behind(p)
            p.stack.start_role("sink")
            # Each check follows 100 more stored rows, so it must have read some messages
            # below committed offsets: a check that read none proves nothing.
            assert behind[1] > 0 and again[1] > 0, (
                f"nothing below committed offsets: {behind, again}"
            )
            missing, checked = missing + behind[0] + again[0], checked + behind[1] + again[1]
        load.stop()
        result = load.join()
        landing = wait_until_landed(pg.url, p.tenant, result.acked, result.dead_letter_ids)
        copies = redelivered(p)
    figure(
        f"{name} {cycles} postgres immediate stops + {2 * cycles} sink SIGKILLs: acknowledged "
        f"lost: {len(landing.lost)} of {len(result.acked)}; dead letters lost: "
        f"{len(landing.lost_dead_letters)} of {len(result.dead_letter_ids)}; duplicates: "
        f"{landing.duplicates}; committed offsets ahead of the database: {missing} of {checked} "
        f"messages checked; redelivered copies on events topic: {copies}; answers: "
        f"{_statuses(result)}"
    )
    assert checked > 0 and missing == 0, (missing, checked)
    assert result.statuses[500] == 0, "ingestion must not fail with PostgreSQL down"
    assert_exact(result, landing)


def worker_restarts(
    name: str, kafka: str, database_url: str, logs: Path, *, restarts: int, requests: int
) -> None:
    """Two Faust workers restarted in turn (every other one SIGKILLed), rebalancing each
    time, with invalid events in the HTTP batches and undecodable messages on `ingest.raw`."""
    with pipeline(kafka, database_url, logs / "a") as p:
        second = ProcessStack(p.settings, logs / "b")
        second.start(("worker",))
        try:
            load = LoadGenerator(
                p.base_url, p.key, requests=requests, batch=20, invalid_every=13, concurrency=2,
                pause_seconds=0.2,
            ).start()  # fmt: skip
            topic, parts = f"{p.settings.topic_prefix}ingest.raw", p.settings.partitions
            poison: set[str] = set()
            for n in range(restarts):
                wait_for_more_rows(database_url, p.tenant, 40)  # work flows again first
                poison |= produce_poison(kafka, topic, 2, parts)
                stack = (p.stack, second)[n % 2]
                stack.stop_role("worker", signal.SIGKILL if n % 2 else signal.SIGTERM)
                stack.start_role("worker")
            load.stop()
            result = load.join()
            landing = wait_until_landed(
                database_url, p.tenant, result.acked, result.dead_letter_ids
            )
            poison_missing = wait_for_dead_letters(database_url, poison)
            copies = redelivered(p)
        finally:
            second.stop()
    figure(
        f"{name} {restarts} worker restarts ({restarts // 2} SIGKILL), 2 workers: acknowledged "
        f"lost: {len(landing.lost)} of {len(result.acked)}; door dead letters lost: "
        f"{len(landing.lost_dead_letters)} of {len(result.dead_letter_ids)}; poison dead letters "
        f"lost: {len(poison_missing)} of {len(poison)}; duplicates: {landing.duplicates}; "
        f"redelivered copies on events topic: {copies}; answers: {_statuses(result)}"
    )
    assert not poison_missing
    assert_exact(result, landing)


def leader_kills(
    name: str,
    kafka: KafkaLauncher,
    database_url: str,
    logs: Path,
    *,
    kills: int,
    requests: int,
    clean_stops: int = 0,
    bounces: int = 0,
) -> None:
    """On a 3-node cluster (RF 3, min ISR 2): SIGKILL the leader of a partition of
    `ingest.raw` `kills` times during a burst, then stop one cleanly (SIGTERM) `clean_stops`
    times, then bounce one (SIGKILL and start at once) `bounces` times."""
    bootstrap = kafka.bootstrap_servers
    with pipeline(bootstrap, database_url, logs, replication_factor=3) as p:
        prefix = p.settings.topic_prefix
        topics = [f"{prefix}ingest.raw", f"{prefix}events", f"{prefix}events.dlq"]
        load = LoadGenerator(
            p.base_url, p.key, requests=requests, batch=20, invalid_every=29, concurrency=2,
            pause_seconds=0.2, deadline_seconds=600,
        ).start()  # fmt: skip
        plan = (
            [(signal.SIGKILL, 2.0)] * kills
            + [(signal.SIGTERM, 2.0)] * clean_stops
            + [(signal.SIGKILL, 0.0)] * bounces
        )
        in_sync: list[float] = []
        for n, (sig, down) in enumerate(plan):
            eventually(lambda n=n: load.done_requests >= 10 + n * 8, timeout=120)
            signal_node(kafka, leader_of(bootstrap, topics[0], n % p.settings.partitions), sig)
            time.sleep(down)
            kafka.start()
            in_sync.append(wait_fully_in_sync(bootstrap, topics, 3) + down)
        time.sleep(2.0)
        load.stop()
        result = load.join()
        landing = wait_until_landed(database_url, p.tenant, result.acked, result.dead_letter_ids)
        copies = redelivered(p)
    non_2xx = sum(v for k, v in result.statuses.items() if not 200 <= k < 300)
    figure(
        f"{name} {kills} leader SIGKILLs + {clean_stops} clean stops + {bounces} bounces, "
        f"3 brokers RF 3 min ISR 2: acknowledged lost: {len(landing.lost)} of "
        f"{len(result.acked)}; duplicates: {landing.duplicates}; redelivered copies on events "
        f"topic: {copies}; non-2xx answers (retried): {non_2xx}; replicas back in sync after "
        f"max {max(in_sync):.1f}s"
    )
    assert_exact(result, landing)
