"""Short versions of the fault suite (`tests/faults/`) for the default run.

Each drives bounded HTTP load, injects a fault, and checks every acknowledged id
against PostgreSQL: no acknowledged event lost, none stored twice (see
`tests/faults/scenarios.py`; the full suite runs the same scenarios longer).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from runtime.metrics import STALLED_EXIT_CODE
from runtime.settings import settings_env
from sluice.launchers.kafka import KafkaLauncher, free_ports
from tests.conftest import eventually
from tests.faults.check import figure, wait_for_dead_letters, wait_until_landed
from tests.faults.load import LoadGenerator
from tests.faults.pipeline import own_postgres, pipeline
from tests.faults.poison import produce_poison
from tests.faults.scenarios import leader_kills, postgres_and_sink_crashes, worker_restarts
from tests.httpclient import call
from tests.producer_api.test_metrics import _sample

pytestmark = pytest.mark.integration


def test_postgres_crash_and_sink_sigkill_lose_nothing(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Invariants 1-3 through a PostgreSQL `immediate` stop and SIGKILLs of the sink
    mid-batch: rows are exactly the acknowledged valid ids, and the committed offset is
    never ahead of what the database holds."""
    with own_postgres() as pg:
        postgres_and_sink_crashes(
            "short-5", kafka_bootstrap, pg, tmp_path / "logs", cycles=1, requests=60
        )


def test_worker_restarts_with_poison_lose_nothing(
    tmp_path: Path, kafka_bootstrap: str, database_url: str
) -> None:
    """Invariant 2 while two Faust workers are restarted in turn (rebalancing each time),
    one of them SIGKILLed, with invalid events and undecodable messages mixed in: every
    accepted event is a row, every rejected one a dead letter."""
    worker_restarts(
        "short-6", kafka_bootstrap, database_url, tmp_path / "logs", restarts=3, requests=60
    )


def test_partition_leader_sigkill_on_three_brokers_loses_nothing(
    tmp_path: Path, database_url: str
) -> None:
    """Invariant 1 on a 3-node cluster (RF 3, min ISR 2): SIGKILL the leader of a partition
    of `ingest.raw` during a burst; every acknowledged id lands, once."""
    kafka = KafkaLauncher(tmp_path / "kafka", nodes=3)
    kafka.start()
    try:
        leader_kills("short-1", kafka, database_url, tmp_path / "logs", kills=1, requests=40)
    finally:
        kafka.kill()  # the data is checked; no need for a graceful shutdown


def _scrape(port: int, name: str) -> str | None:
    """The metrics text at `port` once it holds `name` (None until it is served)."""
    try:
        text = call("GET", f"http://127.0.0.1:{port}/metrics", timeout=5).body.decode()
    except OSError:
        return None
    return text if name in text else None


def _scrape_at_least(port: int, name: str, least: float, **labels: str) -> str | None:
    """The metrics text at `port` once sample `name` (with `labels`) reaches `least`."""
    text = _scrape(port, name)
    if text is None or (_sample(text, name, **labels) or 0) < least:
        return None
    return text


def test_a_stuck_sink_exits_for_a_restart_and_metrics_are_served(
    tmp_path: Path, kafka_bootstrap: str, database_url: str
) -> None:
    """The sink serves its metrics; blocked by a table lock while its lag grows, its
    watchdog exits it (code 70) so a supervisor restarts it; restarted, it catches up."""
    sink_port, worker_port = free_ports(2)
    with pipeline(
        kafka_bootstrap, database_url, tmp_path / "logs", watchdog_stall_seconds=4.0,
        sink_metrics_port=sink_port, worker_metrics_port=worker_port,
    ) as p:  # fmt: skip
        first = LoadGenerator(p.base_url, p.key, requests=5, batch=10, run_id="before").run()
        wait_until_landed(database_url, p.tenant, first.acked)
        # The sink counts a batch after committing its offsets, a moment after its rows
        # are visible: wait for the count, not just for the metric to be served.
        sink_text = eventually(
            lambda: _scrape_at_least(sink_port, "sluice_sink_rows_total", 50, kind="event"),
            timeout=90,  # a loaded machine commits late; the check is the count
        )
        assert _sample(sink_text, "sluice_sink_batch_seconds_count") is not None
        eventually(lambda: _scrape_at_least(worker_port, "sluice_stream_envelopes_total", 1))
        topic, parts = f"{p.settings.topic_prefix}ingest.raw", p.settings.partitions
        poison: set[str] = set()
        sink = p.stack.procs["sink"]
        with psycopg.connect(database_url) as blocker:
            # Dead letters only (poison on ingest.raw), so nothing but the sink needs the table.
            blocker.execute("LOCK TABLE dead_letters IN ACCESS EXCLUSIVE MODE")  # until commit
            began = time.monotonic()
            while sink.poll() is None and time.monotonic() - began < 90:
                poison |= produce_poison(kafka_bootstrap, topic, 2, parts)  # the lag grows
                time.sleep(0.5)
            exited_after = time.monotonic() - began
        code = sink.wait(timeout=10)
        p.stack.procs.pop("sink")
        # Restarted with a limit above the group's session timeout (10 s), as in production
        # (120 s): a new member waits that long for a killed one's partitions.
        patient = replace(p.settings, watchdog_stall_seconds=60.0)
        p.stack.start_role("sink", {**os.environ, **settings_env(patient)})
        missing = wait_for_dead_letters(database_url, poison)
        landing = wait_until_landed(database_url, p.tenant, first.acked)
    figure(
        f"stuck sink (table locked, stall limit 4 s): exited with {code} after "
        f"{exited_after:.1f}s; after restart lost: {len(missing)} of {len(poison)} dead letters, "
        f"{len(landing.lost)} of {len(first.acked)} events"
    )
    assert code == STALLED_EXIT_CODE
    assert not missing and not landing.lost
