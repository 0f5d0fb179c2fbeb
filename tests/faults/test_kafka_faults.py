"""Fault suite, Kafka: cases 1, 2, 3 and 7 of issue 8."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from sluice.launchers.kafka import KafkaLauncher
from tests.conftest import eventually
from tests.faults.check import figure, wait_until_landed
from tests.faults.cluster import leader_of, signal_node, wait_fully_in_sync
from tests.faults.conftest import OUTAGE_SECONDS, PAUSE_SECONDS
from tests.faults.load import LoadGenerator
from tests.faults.pipeline import Supervisor, pipeline
from tests.faults.scenarios import assert_exact, leader_kills, redelivered, wait_for_more_rows
from tests.httpclient import call

pytestmark = pytest.mark.faults


def test_1_leader_sigkills_clean_stops_and_bounces(
    tmp_path: Path, cluster3: KafkaLauncher, database_url: str
) -> None:
    """Five partition-leader SIGKILLs during a burst, a clean shutdown and a bounce."""
    leader_kills(
        "case-1", cluster3, database_url, tmp_path / "logs",
        kills=5, clean_stops=1, bounces=1, requests=5000,
    )  # fmt: skip


def test_2_two_of_three_brokers_down_answers_503_then_recovers(
    tmp_path: Path, cluster3: KafkaLauncher, database_url: str
) -> None:
    """With two of three brokers SIGKILLed (fewer than min ISR 2 in sync) no request is
    acknowledged: 503 with Retry-After instead; when they return, the door recovers and
    everything acknowledged lands."""
    bootstrap = cluster3.bootstrap_servers
    down_for = 15.0
    with pipeline(bootstrap, database_url, tmp_path / "logs", replication_factor=3) as p:
        prefix = p.settings.topic_prefix
        topics = [f"{prefix}ingest.raw", f"{prefix}events", f"{prefix}events.dlq"]
        load = LoadGenerator(
            p.base_url, p.key, requests=5000, batch=10, concurrency=2, pause_seconds=0.2,
            deadline_seconds=600,
        ).start()  # fmt: skip
        eventually(lambda: load.done_requests >= 10, timeout=60)
        killed = time.monotonic()
        cluster3.kill(2)
        cluster3.kill(3)
        time.sleep(down_for)
        returned = time.monotonic()
        cluster3.start()
        wait_fully_in_sync(bootstrap, topics, 3)
        eventually(lambda: load.result.first_ack_after(returned) is not None, timeout=120)
        time.sleep(2.0)
        load.stop()
        result = load.join()
        landing = wait_until_landed(database_url, p.tenant, result.acked)
    during = result.started_between(killed + 0.5, returned)
    acked_during = sum(n for status, n in during.items() if 200 <= status < 300)
    recovery = result.first_ack_after(returned)
    figure(
        f"case-2 two of three brokers SIGKILLed for {down_for:.0f}s: 2xx while fewer than 2 in "
        f"sync: {acked_during} of {sum(during.values())} requests; 503: {during[503]} (without "
        f"Retry-After: {result.unavailable_without_retry_after}); first 2xx after they "
        f"returned: {recovery:.1f}s; acknowledged lost: {len(landing.lost)} of "
        f"{len(result.acked)}"
    )
    assert acked_during == 0
    assert during[503] > 0 and result.unavailable_without_retry_after == 0
    assert_exact(result, landing)


def test_3_sigstop_a_broker_beyond_the_replica_lag_limit(
    tmp_path: Path, cluster3: KafkaLauncher, database_url: str
) -> None:
    """SIGSTOP the leader of a partition for longer than replica.lag.time.max.ms, then
    SIGCONT: the cluster moves on without it, nothing acknowledged is lost, and it rejoins.

    Under a supervisor, as in production: a worker that met stale leader metadata long
    enough exits for a restart (its watchdog, exit 70); without one, a run here left 1701
    acknowledged ids unprocessed on `ingest.raw` (issue 21). The watchdog acts after 30 s
    here, as after the default 120 s a stuck worker's restart could come too late for the
    two minutes the check waits (a CI run: stuck from the stop, restarted at 120 s, 1326
    acknowledged ids still on `ingest.raw` when the check gave up)."""
    bootstrap = cluster3.bootstrap_servers
    with (
        pipeline(bootstrap, database_url, tmp_path / "logs", replication_factor=3,
                 watchdog_stall_seconds=30.0) as p,
        Supervisor(p.stack) as supervisor,
    ):  # fmt: skip
        prefix = p.settings.topic_prefix
        topics = [f"{prefix}ingest.raw", f"{prefix}events", f"{prefix}events.dlq"]
        load = LoadGenerator(
            p.base_url, p.key, requests=5000, batch=20, invalid_every=29, concurrency=2,
            pause_seconds=0.2, deadline_seconds=600,
        ).start()  # fmt: skip
        eventually(lambda: load.done_requests >= 10, timeout=60)
        paused = leader_of(bootstrap, topics[0], 0)
        stopped = time.monotonic()
        signal_node(cluster3, paused, signal.SIGSTOP)
        time.sleep(PAUSE_SECONDS)
        continued = time.monotonic()
        signal_node(cluster3, paused, signal.SIGCONT)
        rejoined = wait_fully_in_sync(bootstrap, topics, 3, timeout=180)
        time.sleep(2.0)
        load.stop()
        result = load.join()
        landing = wait_until_landed(database_url, p.tenant, result.acked, result.dead_letter_ids)
        copies = redelivered(p)
    first_after_stop = result.first_ack_after(stopped + 0.5)
    during = result.started_between(stopped + 0.5, continued)
    figure(
        f"case-3 leader SIGSTOPped {PAUSE_SECONDS:.0f}s then SIGCONT: acknowledged lost: "
        f"{len(landing.lost)} of {len(result.acked)}; duplicates: {landing.duplicates}; "
        f"first 2xx after the stop: {first_after_stop:.1f}s; 2xx while it was stopped: "
        f"{sum(n for s, n in during.items() if 200 <= s < 300)}; back in sync "
        f"{rejoined:.1f}s after SIGCONT; redelivered copies on events topic: {copies}; "
        f"supervisor restarts (role:exit code): {dict(supervisor.restarts)}"
    )
    assert_exact(result, landing)


def test_7_kafka_fully_down(tmp_path: Path, database_url: str) -> None:
    """Kafka down for `SLUICE_FAULT_OUTAGE_SECONDS`: the door answers 503 + Retry-After,
    readiness reports Kafka unreachable, and every consumer recovers on its own."""
    kafka = KafkaLauncher(tmp_path / "kafka")
    kafka.start()
    try:
        with pipeline(
            kafka.bootstrap_servers, database_url, tmp_path / "logs", produce_timeout_ms=3000,
            watchdog_stall_seconds=30.0,
        ) as p, Supervisor(p.stack) as supervisor:  # fmt: skip
            load = LoadGenerator(
                p.base_url, p.key, requests=5000, batch=20, concurrency=2, pause_seconds=0.2,
                deadline_seconds=OUTAGE_SECONDS + 300,
            ).start()  # fmt: skip
            wait_for_more_rows(database_url, p.tenant, 100)  # the whole pipeline is running
            down = time.monotonic()
            kafka.kill()
            readiness: list[tuple[int, str]] = []
            while time.monotonic() - down < OUTAGE_SECONDS:
                ready = call("GET", f"{p.base_url}/readyz", timeout=10)
                readiness.append((ready.status, ready.json().get("kafka", "")))
                time.sleep(2.0)
            up = time.monotonic()
            kafka.start()
            eventually(lambda: load.result.first_ack_after(up) is not None, timeout=120)
            time.sleep(2.0)
            load.stop()
            result = load.join()
            landing = wait_until_landed(database_url, p.tenant, result.acked, timeout=180)
            alive = {role: proc.poll() is None for role, proc in p.stack.procs.items()}
    finally:
        kafka.kill()
    during = result.started_between(down + 0.5, up)
    figure(
        f"case-7 Kafka down {OUTAGE_SECONDS:.0f}s: 2xx during the outage: "
        f"{sum(n for s, n in during.items() if 200 <= s < 300)}; 503: {during[503]} (without "
        f"Retry-After: {result.unavailable_without_retry_after}); readiness while down: "
        f"{sorted(set(readiness))}; first 2xx after Kafka returned: "
        f"{result.first_ack_after(up):.1f}s; every acknowledged id landed "
        f"{landing.seconds:.1f}s after the load stopped; lost: {len(landing.lost)} of "
        f"{len(result.acked)}; processes alive: {alive}; supervisor restarts: "
        f"{dict(supervisor.restarts)}"
    )
    assert not any(200 <= s < 300 for s in during)
    assert during[503] > 0 and result.unavailable_without_retry_after == 0
    assert all(status == 503 and kafka_state == "unreachable" for status, kafka_state in readiness)
    assert all(alive.values()), alive
    assert_exact(result, landing)


def test_7b_kafka_dies_while_the_consumers_start(tmp_path: Path, database_url: str) -> None:
    """Kafka dies while the worker and sink start. Seen: the Faust worker exits ("Unable to
    bootstrap"), or starts but never joins its group once Kafka returns until its watchdog
    exits it. Under a supervisor that restarts what exits, everything acknowledged after
    Kafka returns lands."""
    kafka = KafkaLauncher(tmp_path / "kafka")
    kafka.start()
    try:
        with pipeline(
            kafka.bootstrap_servers, database_url, tmp_path / "logs", produce_timeout_ms=3000,
            watchdog_stall_seconds=30.0,
        ) as p, Supervisor(p.stack) as supervisor:  # fmt: skip
            kafka.kill()
            time.sleep(OUTAGE_SECONDS)
            kafka.start()
            load = LoadGenerator(
                p.base_url,
                p.key,
                requests=100,
                batch=20,
                concurrency=2,
                pause_seconds=0.2,
                deadline_seconds=300,
            ).run()
            landing = wait_until_landed(database_url, p.tenant, load.acked, timeout=240)
    finally:
        kafka.kill()
    figure(
        f"case-7b Kafka down {OUTAGE_SECONDS:.0f}s while the consumers start: acknowledged "
        f"lost: {len(landing.lost)} of {len(load.acked)}; landed {landing.seconds:.1f}s after "
        f"the load; supervisor restarts (role:exit code): {dict(supervisor.restarts)}"
    )
    assert_exact(load, landing)
